"""No orphans: tie each actor process's life to its parent's (Linux).

Thespian leaves children running when their parent dies. Two mechanisms close that:

* :func:`die_with_parent` asks the kernel to SIGKILL this process the moment its parent
  exits (``PR_SET_PDEATHSIG``), so a SIGKILLed supervisor takes its whole subtree along.
* :func:`watch` runs a thread that waits on pidfds of processes this one depends on (the
  host application, the Thespian admin, the root supervisor) and calls back when any of
  them exits; the root and its direct children use it to SIGKILL the whole system's
  process group, which also removes Thespian's admin and logger processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["die_with_parent", "kill_own_group", "watch"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """SIGKILL this process when its parent exits. Returns False where unsupported.

    If the parent already died before the request took effect (we were re-parented),
    exit at once: there is nobody left to supervise us.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent == 1 or os.getppid() != parent:
        os._exit(70)
    return True


def kill_own_group() -> None:
    """SIGKILL every process of this process's group (the whole actor system), self too."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(0), signal.SIGKILL)


def watch(pids: list[int], on_death: Callable[[int], None], poll_s: float = 0.1) -> None:
    """Call ``on_death(pid)`` from a daemon thread as soon as any of ``pids`` exits."""
    pids = [p for p in pids if p and p > 1]
    if not pids:
        return
    threading.Thread(
        target=_watch_loop, args=(pids, on_death, poll_s), name="callboard-lifeline", daemon=True
    ).start()


def _watch_loop(pids: list[int], on_death: Callable[[int], None], poll_s: float) -> None:
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            on_death(pid)
            return
        except (OSError, AttributeError):
            break  # no pidfd here: fall back to polling
    else:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                on_death(fds[fd])
                return
    while True:  # polling fallback (no pidfd): a dead pid no longer accepts signal 0
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                on_death(pid)
                return
            except PermissionError:
                pass
        time.sleep(poll_s)
