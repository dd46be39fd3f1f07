"""The audit log: one JSON line per admin request (who, what, on what, with what outcome)."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["AuditLog"]


class AuditLog:
    """Append-only JSON lines: ``time, token_id, role, action, target, outcome`` (+ extra).

    The token's secret never appears; a request without a valid token is logged with
    ``token_id`` null. Each line is one ``write`` on an O_APPEND descriptor, so lines from
    concurrent requests never interleave.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()

    def record(
        self, *, token_id: str | None, role: str | None, action: str, target: str | None,
        outcome: str, **extra: Any,
    ) -> None:  # fmt: skip
        line = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "token_id": token_id,
            "role": role,
            "action": action,
            "target": target,
            "outcome": outcome,
            **extra,
        }  # fmt: skip
        data = (json.dumps(line, default=str) + "\n").encode()
        with self._lock:
            os.write(self._fd, data)

    def close(self) -> None:
        os.close(self._fd)
