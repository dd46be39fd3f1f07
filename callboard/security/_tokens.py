"""Bearer tokens: generation, storage in 0600 files, constant-time lookup (pure + files)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Token", "TokenStore", "new_secret", "read_secret", "write_secret"]


def new_secret() -> str:
    """A fresh token secret: 256 bits, URL-safe; prefixed so it never starts with ``-``
    (a command line would take it for an option)."""
    return "cb_" + secrets.token_urlsafe(32)


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by the owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)


def read_secret(path: Path) -> str:
    """The secret in ``path`` (surrounding whitespace removed); ``ValueError`` if empty."""
    secret = path.read_text().strip()
    if not secret:
        raise ValueError(f"token file {path} is empty")
    return secret


@dataclass(frozen=True)
class Token:
    """A named credential: ``id`` shows in audit lines, the secret never does."""

    id: str
    role: str
    digest: bytes  # sha256 of the secret: the secret itself is not kept in memory


class TokenStore:
    """The daemon's tokens. :meth:`authenticate` compares in constant time against every
    token, so timing reveals neither which token nor how much of one matched."""

    def __init__(self) -> None:
        self._tokens: list[Token] = []

    def add(self, token_id: str, role: str, secret: str) -> None:
        if any(t.id == token_id for t in self._tokens):
            raise ValueError(f"duplicate token id {token_id!r}")
        self._tokens.append(Token(token_id, role, _digest(secret)))

    def authenticate(self, presented: str | None) -> Token | None:
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for token in self._tokens:  # no early exit: same work whatever matches
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found

    def __len__(self) -> int:
        return len(self._tokens)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
