"""The daemon's tokens: the configured ones, or a generated admin token in the state dir."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from callboard.config import DaemonSettings
from callboard.errors import ConfigError
from callboard.observability.logging import get_logger
from callboard.security import TokenStore, new_secret, read_secret, write_secret

__all__ = ["GENERATED_TOKEN_FILE", "GENERATED_TOKEN_ID", "load_tokens"]

GENERATED_TOKEN_FILE = "admin.token"
GENERATED_TOKEN_ID = "admin"


def load_tokens(settings: DaemonSettings) -> tuple[TokenStore, Path | None]:
    """The tokens the admin API accepts, and the generated token's file (or ``None``).

    With ``[[daemon.tokens]]`` configured, each secret is read from its ``secret_file``
    (relative paths are under ``state_dir``); a missing, unreadable or empty file, or two
    tokens sharing one secret, raise :class:`~callboard.errors.ConfigError`. A secret file
    that others may read is used, with a ``token_file_exposed`` warning in the log.

    With none configured, the token ``admin`` (role ``admin``) is read from
    ``state_dir/admin.token``; on the first start (or if that file is empty) a fresh
    secret is generated into it, mode 0600 in a 0700 directory. Its path is returned so
    the daemon can say where it is.
    """
    state = Path(settings.state_dir).expanduser()
    store = TokenStore()
    if settings.tokens:
        seen: dict[str, str] = {}
        for i, spec in enumerate(settings.tokens):
            path = Path(spec.secret_file).expanduser()
            if not path.is_absolute():
                path = state / path
            key = f"daemon.tokens.{i}.secret_file"
            try:
                secret = read_secret(path)
            except (OSError, ValueError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ConfigError(
                    "[daemon] tokens",
                    [(key, f"cannot read the secret of token {spec.id!r} from {path}: {why}")],
                ) from None
            if secret in seen:
                raise ConfigError(
                    "[daemon] tokens",
                    [(key, f"tokens {seen[secret]!r} and {spec.id!r} have the same secret")],
                )
            seen[secret] = spec.id
            _check_private(path, spec.id)
            store.add(spec.id, spec.role, secret)
        return store, None

    path = state / GENERATED_TOKEN_FILE
    existing: str | None = None
    if path.exists():
        try:
            existing = read_secret(path)
        except ValueError:  # empty: as if it were not there
            existing = None
        else:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                os.chmod(path, 0o600)  # our own file: put it back the way we made it
    if existing is None:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        existing = new_secret()
        write_secret(path, existing)
        get_logger().info("admin_token_generated", token_id=GENERATED_TOKEN_ID, file=str(path))
    store.add(GENERATED_TOKEN_ID, "admin", existing)
    return store, path


def _check_private(path: Path, token_id: str) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        get_logger().warning(
            "token_file_exposed", token_id=token_id, file=str(path), mode=oct(mode),
            hint="other users may read this secret: chmod 600 it",
        )  # fmt: skip
