"""``callboard run``: the actor system as a long-running daemon with an admin API.

Lifecycle: refuse to start if anything it needs is taken (Thespian admin port, API port,
another daemon on the same state dir); start the tree; serve the admin API; print one
``ready`` line; then wait for SIGTERM/SIGINT (graceful stop in reverse start order) or for
the root supervisor to give up. A second signal, or a stop that overruns its budget,
kills every process of the system at once.

Exit codes: 0 stopped cleanly; 1 could not start, or the root supervisor gave up;
3 killed (second signal or stop overrun). Argument errors exit 2 (argparse).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from callboard import _thespian
from callboard.config import Config
from callboard.errors import CallboardError, StartFailed, SystemFailed
from callboard.observability import logging as cblog

__all__ = ["EXIT_FAILED", "EXIT_KILLED", "EXIT_OK", "Daemon"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_KILLED = 3
_HEALTH_EVERY_S = 1.0


class Daemon:
    """One daemon run. :meth:`run` blocks until the daemon has stopped and returns the
    exit code; it must be called from the main thread (it installs signal handlers)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state_dir = Path(config.daemon.state_dir).expanduser()
        self.pid_file = self.state_dir / "callboard.pid"
        self.info_file = self.state_dir / "daemon.json"
        self._stop = threading.Event()
        self._signals = 0
        self._system: Any = None
        self._server: Any = None
        self._audit: Any = None
        self._log: Any = None

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self) -> int:
        cblog.configure_logging(
            self.config.system.log_level, None, component="daemon", pid=os.getpid()
        )
        self._log = cblog.get_logger()
        try:
            self._preflight()
        except _Refused as exc:
            self._log.error("daemon_refused", reason=str(exc))
            print(f"callboard run: {exc}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        self._write_pid()
        try:
            return self._serve()
        finally:
            self._cleanup()

    def _preflight(self) -> None:
        """Everything that can make the start fail before anything is started."""
        cfg = self.config
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        other = _read_pid(self.pid_file)
        if other and other != os.getpid() and _thespian.pid_alive(other):
            raise _Refused(f"another daemon (pid {other}) uses state dir {self.state_dir}")
        if cfg.system.transport == "tcp" and _thespian.port_in_use(cfg.system.admin_port):
            raise _Refused(
                f"Thespian admin port {cfg.system.admin_port} is already in use: another "
                "actor system (which Thespian would silently share, then shut down) or "
                "another program listens there; set [system] admin_port"
            )
        if cfg.daemon.api_port and _thespian.port_in_use(cfg.daemon.api_port, cfg.daemon.api_host):
            raise _Refused(
                f"admin API port {cfg.daemon.api_host}:{cfg.daemon.api_port} is already in "
                "use; set [daemon] api_port"
            )
        for module in self._message_modules():
            try:
                importlib.import_module(module)
            except Exception as exc:
                raise _Refused(f"cannot import {module}: {type(exc).__name__}: {exc}") from exc

    def _message_modules(self) -> list[str]:
        """Modules whose message types the admin API must know: every configured actor's
        module (imported here, before the fork, so actor processes also start faster)."""
        modules = list(self.config.daemon.message_modules)
        for _, spec in self.config.supervisor.walk():
            if spec.actor:
                modules.append(spec.actor.partition(":")[0])
        return list(dict.fromkeys(modules))

    def _serve(self) -> int:
        from callboard.admin import AdminServer, load_tokens
        from callboard.security import AuditLog
        from callboard.system import System

        try:
            tokens, token_file = load_tokens(self.config.daemon)
        except CallboardError as exc:  # e.g. a configured secret file is missing
            self._log.error("daemon_refused", reason=str(exc))
            print(f"callboard run: {exc}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        self._audit = AuditLog(self.state_dir / "audit.log")
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            try:
                self._system = System.start(self.config)
            except (StartFailed, CallboardError) as exc:
                self._log.error("daemon_start_failed", error=str(exc))
                print(f"callboard run: {exc}", file=sys.stderr, flush=True)
                return EXIT_FAILED
            d = self.config.daemon
            self._server = AdminServer(
                self._system, tokens, self._audit, d.api_host, d.api_port,
                tls_cert=d.tls_cert, tls_key=d.tls_key, on_stop=self._stop.set,
            )  # fmt: skip
            try:
                self._server.start()
            except OSError as exc:
                self._log.error("daemon_api_failed", error=str(exc))
                print(f"callboard run: admin API cannot listen: {exc}", file=sys.stderr, flush=True)
                self._system.stop()
                return EXIT_FAILED
            info = {
                "url": self._server.url,
                "pid": os.getpid(),
                "token_file": str(token_file) if token_file else None,
                "admin_port": self.config.system.admin_port,
                "system": self._system.name,
                "pgid": self._system.pgid,
            }
            _write_json(self.info_file, info)
            self._log.info("daemon_ready", **info)
            token_note = f"; admin token in {token_file}" if token_file else ""
            print(f"callboard ready: admin API {self._server.url}{token_note}", flush=True)
            return self._wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _wait(self) -> int:
        """Serve until asked to stop or the root gives up; then stop within the budget."""
        code = EXIT_OK
        while not self._stop.wait(_HEALTH_EVERY_S):
            try:
                self._system.check()
            except SystemFailed as exc:
                self._log.critical("daemon_system_failed", reason=exc.reason)
                print(
                    f"callboard run: the root supervisor gave up: {exc.reason}",
                    file=sys.stderr,
                    flush=True,
                )
                code = EXIT_FAILED
                break
        return self._graceful_stop(code)

    def _graceful_stop(self, code: int) -> int:
        self._log.info("daemon_stopping")
        if self._server is not None:
            self._server.close()
        budget = self._system._stop_budget() + (self.config.daemon.stop_timeout or 10.0)
        done = threading.Event()

        def stop() -> None:
            self._system.stop()
            done.set()

        threading.Thread(target=stop, name="callboard-stop", daemon=True).start()
        if not done.wait(budget):
            self._log.error("daemon_stop_overrun", budget_s=budget)
            self._kill_everything()
            return EXIT_KILLED
        self._log.info("daemon_stopped", exit_code=code)
        return code

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            self._log.info(
                "daemon_signal", signal=signal.Signals(signum).name, action="graceful stop"
            )
            self._stop.set()
            return
        # A second signal: the operator wants it gone now.
        self._log.warning("daemon_signal", signal=signal.Signals(signum).name, action="kill")
        self._kill_everything()
        self._cleanup()
        os._exit(EXIT_KILLED)

    def _kill_everything(self) -> None:
        system = self._system
        if system is not None and system.pgid is not None:
            _thespian.kill_group(system.pgid)

    def _write_pid(self) -> None:
        self.pid_file.write_text(f"{os.getpid()}\n")

    def _cleanup(self) -> None:
        paths = [self.info_file]
        if _read_pid(self.pid_file) == os.getpid():  # never remove another daemon's pid file
            paths.append(self.pid_file)
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self._audit is not None:
            with contextlib.suppress(OSError):
                self._audit.close()
            self._audit = None


class _Refused(Exception):
    pass


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)  # readers never see a half-written file
