"""Loading, overriding, validating and dumping the configuration.

:func:`load_config` turns a TOML file, a mapping or the packaged default into a validated
:class:`~callboard.config.Config`, applying ``CALLBOARD_<SECTION>__<KEY>`` environment
overrides first. Every failure (unreadable file, TOML syntax, validation) raises
:class:`~callboard.errors.ConfigError` naming the source and the dotted key path.
:func:`dump_config` renders a config back to TOML.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from pydantic import ValidationError

from callboard.config._models import Config
from callboard.errors import ConfigError

__all__ = ["ENV_PREFIX", "dump_config", "load_config"]

ENV_PREFIX = "CALLBOARD_"
"""Environment variables ``CALLBOARD_<SECTION>__<KEY>[__<KEY>...]`` override loaded values."""

_ENV_SEP = "__"
_DEFAULT_SOURCE = "<default>"
_DICT_SOURCE = "<dict>"
_TOML_POSITION = re.compile(r"\s*\((at line \d+, column \d+|at end of document)\)$")

Source = str | os.PathLike[str] | Mapping[str, Any] | Config | None


def load_config(source: Source = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load, override and validate a configuration.

    ``source`` is a TOML file path, a mapping (source name ``<dict>``), a :class:`Config`
    (returned unchanged, no overrides) or ``None`` for the packaged ``default.toml``
    (source name ``<default>``). ``env`` (default ``os.environ``) supplies the
    ``CALLBOARD_<SECTION>__<KEY>`` overrides. Raises :class:`ConfigError` on any failure.
    """
    if isinstance(source, Config):
        return source
    if source is None:
        name = _DEFAULT_SOURCE
        text = resources.files("callboard.config").joinpath("default.toml").read_text("utf-8")
        data = _parse_toml(text, name)
    elif isinstance(source, Mapping):
        name = _DICT_SOURCE
        data = _plain(source)
    else:
        name = os.fspath(source)
        data = _parse_toml(_read_file(name), name)
    origins = _apply_env(data, os.environ if env is None else env, name)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(name, _errors(exc, data, origins)) from None


def dump_config(config: Config) -> str:
    """Render ``config`` (every key, defaults included) as TOML that loads back equal.

    Optional tables and keys that are absent (a worker's ``supervisor``, a supervisor's
    ``actor``, an unset ``backoff``) are left out: TOML has no null. ``None`` inside
    ``args`` is not dropped; it raises ``ValueError``.
    """
    lines: list[str] = []
    # exclude_none reaches model fields only, never into the free-form ``args`` dict.
    _emit_table(lines, (), config.model_dump(mode="python", exclude_none=True))
    return "\n".join(lines).strip("\n") + "\n"


# --- reading ---------------------------------------------------------------------------


def _read_file(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(path, [("", f"cannot read file: {exc.strerror or exc}")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [("", f"file is not UTF-8 text: {exc}")]) from None


def _parse_toml(text: str, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        match = _TOML_POSITION.search(msg)
        where = match.group(1) if match else "unknown position"
        reason = msg[: match.start()] if match else msg
        raise ConfigError(name, [("", f"TOML syntax error {where}: {reason}")]) from None


def _plain(value: Any) -> Any:
    """Deep copy of ``value`` with every mapping made a dict and every list/tuple a list."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- environment overrides -------------------------------------------------------------


def _apply_env(data: dict[str, Any], env: Mapping[str, str], name: str) -> dict[str, str]:
    """Apply the overrides in ``env`` to ``data`` in place.

    Returns ``{dotted key path: variable name}`` so validation errors can name the
    variable. Variables with the prefix but without ``__`` are not overrides and are
    ignored (they may configure something else).
    """
    overrides: list[tuple[list[str], str, str]] = []
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX) or _ENV_SEP not in var:
            continue
        parts = var[len(ENV_PREFIX) :].split(_ENV_SEP)
        if any(not p for p in parts):
            raise ConfigError(name, [("", f"malformed override variable {var}: empty key")])
        overrides.append((parts, var, raw))
    # Shallow paths first, so a more specific variable wins over a whole-table one.
    overrides.sort(key=lambda o: (len(o[0]), o[1]))
    origins: dict[str, str] = {}
    for parts, var, raw in overrides:
        for path in _set_path(data, parts, _parse_env_value(raw), var, name):
            origins[path] = var
    return origins


def _set_path(data: dict[str, Any], parts: list[str], value: Any, var: str, name: str) -> list[str]:
    """Set ``value`` at ``parts`` (keys matched case-insensitively, list items by index).

    Returns the dotted paths to attribute to ``var``: the key set and, if the override
    created tables that did not exist, the first one created (an unknown section fails
    validation there).
    """
    node: Any = data
    path: list[str] = []
    created: str | None = None
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, dict):
            key = next((k for k in node if str(k).lower() == part.lower()), part.lower())
            path.append(str(key))
            if last:
                node[key] = value
            else:
                if key not in node and created is None:
                    created = ".".join(path)
                node = node.setdefault(key, {})
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            path.append(part)
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        else:
            where = ".".join(path) or "<root>"
            if isinstance(node, list):
                msg = f"has no item {part!r} (it has {len(node)}) (set by {var})"
            else:
                msg = f"is not a table (its value is {node!r}) (set by {var})"
            raise ConfigError(name, [(where, msg)])
    return [".".join(path)] + ([created] if created is not None else [])


def _parse_env_value(raw: str) -> Any:
    """``5`` -> 5, ``true`` -> True, ``[1, 2]`` -> [1, 2], ``"x"`` -> "x"; else ``raw``."""
    if "\n" in raw or "\r" in raw:
        return raw
    try:
        parsed = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        return raw
    if set(parsed) != {"v"} or _has_datetime(parsed["v"]):
        return raw  # dates stay text: no config key takes one
    return parsed["v"]


def _has_datetime(value: Any) -> bool:
    if isinstance(value, _dt.date | _dt.time):
        return True
    if isinstance(value, dict):
        return any(_has_datetime(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_datetime(v) for v in value)
    return False


# --- validation errors -----------------------------------------------------------------


def _errors(exc: ValidationError, data: Any, origins: Mapping[str, str]) -> list[tuple[str, str]]:
    """pydantic's errors as ``(dotted key path, message)``, one entry per path."""
    merged: dict[str, list[str]] = {}
    for err in exc.errors():
        path = _key_path(err["loc"], data)
        ctx = err.get("ctx") or {}
        if err["type"] == "value_error" and "error" in ctx:
            msg = str(ctx["error"])  # our validators' text already leads with the reason
        else:
            msg = err["msg"]
        msgs = merged.setdefault(path, [])
        if msg not in msgs:
            msgs.append(msg)
    out: list[tuple[str, str]] = []
    for path, msgs in merged.items():
        msg = "; or ".join(msgs)  # several messages on one path: alternatives of a union
        var = _origin(path, origins)
        out.append((path, f"{msg} (set by {var})" if var else msg))
    return out


def _key_path(loc: Sequence[int | str], data: Any) -> str:
    """Dotted path of ``loc``, dropping the union-member tags pydantic appends.

    Follows ``loc`` through the input: a key that exists is a real key, as is a final key
    of a table (missing or extra field); anything past a non-container value is a tag.
    """
    parts: list[str] = []
    node = data
    for i, item in enumerate(loc):
        if isinstance(node, dict) and item in node:
            node = node[item]
        elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            node = node[item]
        elif not (isinstance(node, dict) and i == len(loc) - 1):
            break
        parts.append(str(item))
    return ".".join(parts)


def _origin(path: str, origins: Mapping[str, str]) -> str | None:
    """The variable that set ``path`` or the nearest table above it, if any."""
    hits = [p for p in origins if path == p or path.startswith(p + ".")]
    return origins[max(hits, key=len)] if hits else None


# --- TOML output -----------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _emit_table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    """Emit ``table``: plain keys first, then sub-tables, then arrays of tables."""
    subtables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in table.items():
        if isinstance(value, Mapping) and value:
            subtables.append((key, value))
        elif _is_table_array(value):
            arrays.append((key, value))
        elif value is not None:
            lines.append(f"{_key(key)} = {_value(value, (*path, key))}")
        else:
            raise ValueError(f"{'.'.join((*path, key))}: None has no TOML representation")
    for key, sub in subtables:
        lines += ["", f"[{_dotted((*path, key))}]"]
        _emit_table(lines, (*path, key), sub)
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{_dotted((*path, key))}]]"]
            _emit_table(lines, (*path, key), item)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise ValueError(f"key {key!r}: TOML keys must be strings")
    return key if _BARE_KEY.match(key) else _string(key)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(_key(k) for k in path)


def _value(value: Any, path: tuple[str, ...]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)  # "5.0", "1e-05", "inf", "-inf" are all TOML floats
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(k)} = {_value(v, (*path, k))}" for k, v in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, path) for v in value) + "]"
    if value is None:
        raise ValueError(f"{'.'.join(path)}: None has no TOML representation")
    raise ValueError(f"{'.'.join(path)}: {type(value).__name__} has no TOML representation")


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
