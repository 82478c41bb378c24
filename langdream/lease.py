"""Who is dreaming: the owner names of dream leases, and whether an owner is known to be dead.

A lease owner is ``host:pid:token``. A lease whose owner died is taken over at once when that
is certain (same machine and the process is gone, or this process and the dreamer is closed);
otherwise it is taken over only after it expires.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

_live: set[str] = set()  # owners in this process whose dream is still running
_live_lock = threading.Lock()


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def mark_live(owner: str, live: bool) -> None:
    with _live_lock:
        (_live.add if live else _live.discard)(owner)


def holder_dead(owner: str) -> bool:
    """True when ``owner`` certainly no longer dreams (so its lease can be taken before it expires)."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        with _live_lock:
            return owner not in _live
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def describe(owner: str) -> str:
    host, _, rest = owner.partition(":")
    pid, _, _ = rest.partition(":")
    return f"process {pid} on {host}"
