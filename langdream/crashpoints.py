"""Named crash points at langdream's durable boundaries, for crash-safety testing.

Every place where a step has just become durable (a ledger transaction committed, an index
write returned) calls ``crash_point(name)``. Normally that costs one dictionary lookup. With
``LANGDREAM_CRASH_AT`` set, the process kills itself with SIGKILL at the k-th boundary:

    LANGDREAM_CRASH_AT=apply:1     at the first "apply" boundary
    LANGDREAM_CRASH_AT=*:7         at the seventh boundary of any name

``LANGDREAM_CRASH_TRACE=FILE`` appends the name of every boundary reached to FILE, which is
how a sweep learns how many boundaries a run has. In-process tests install a handler instead
(``set_crash_handler``) that raises, which rolls the open transaction back as a kill would.

The points, in the order a record and a dream reach them, are ``POINTS``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

CRASH_AT_ENV = "LANGDREAM_CRASH_AT"
CRASH_TRACE_ENV = "LANGDREAM_CRASH_TRACE"

POINTS = (
    "episode.write",  # record / ingest: episodes committed to the ledger
    "lease",  # a dreamer took (or renewed) a namespace's lease
    "index.episodes",  # episode vectors upserted into the index
    "job.journal",  # the dream job (input and clusters) journaled
    "output.stored",  # one cluster's LLM output journaled
    "apply",  # insights written, episodes marked, job closed: one transaction
    "index.insights",  # changed insights upserted into / deleted from the index
    "job.done",  # the dreamer released its lease
)

_lock = threading.Lock()
_counts: dict[str, int] = {}
_handler: Callable[[str], None] | None = None


def set_crash_handler(handler: Callable[[str], None] | None) -> None:
    """Call ``handler(name)`` at every boundary (instead of reading the environment); ``None`` removes it."""
    global _handler
    _handler = handler


def _kill_now() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_point(name: str) -> None:
    """A step named ``name`` has just become durable."""
    if _handler is not None:
        _handler(name)
        return
    target = os.environ.get(CRASH_AT_ENV)
    trace = os.environ.get(CRASH_TRACE_ENV)
    if not target and not trace:
        return
    # One lock around tracing, counting and killing: reflection threads reach output.stored
    # concurrently, and another thread's trace line must not land between the k-th and the kill.
    with _lock:
        if trace:
            with open(trace, "a", encoding="utf-8") as out:
                out.write(name + "\n")
        if not target:
            return
        wanted, _, nth = target.rpartition(":")
        if wanted not in (name, "*"):
            return
        _counts[wanted] = _counts.get(wanted, 0) + 1
        if _counts[wanted] == int(nth):
            _kill_now()
