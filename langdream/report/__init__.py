"""``langdream report``: one self-contained HTML page of what an agent learned.

It shows a map of the episodes (PCA of their embeddings, coloured by lasting cluster, shaped by
outcome), each cluster's insights with their status, evidence and effect, what every dream
changed, and the namespaces. The file needs nothing but a browser: no network, no CDN, no fonts.

``build_report`` returns the page; ``write_report`` writes it (``abuild_report`` and
``awrite_report`` do the same off the event loop). The modules: ``gather`` reads the memory,
``projection`` places episodes in 2-D, ``svg`` and ``render`` draw the page.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from langdream.config import DEFAULT_REPORT_MAX_POINTS
from langdream.errors import UsageError
from langdream.report.gather import ReportData, gather
from langdream.report.render import render

if TYPE_CHECKING:
    from langdream.memory import DreamMemory


def build_report(
    memory: DreamMemory,
    *,
    namespace: str | Sequence[str] | None = None,
    max_points: int = DEFAULT_REPORT_MAX_POINTS,
) -> str:
    """The report of ``memory`` (one namespace, or all) as one HTML document.

    At most ``max_points`` episodes are drawn on the maps, over all namespaces; beyond that a
    fixed sample is, and the page says so. An unknown namespace raises ``UnknownNamespaceError``.
    """
    return render(gather(memory, namespace, max_points=max_points))


def write_report(
    memory: DreamMemory,
    path: str | os.PathLike[str],
    *,
    namespace: str | Sequence[str] | None = None,
    max_points: int = DEFAULT_REPORT_MAX_POINTS,
) -> Path:
    """Write the report of ``memory`` to ``path`` (an .html file, replaced if it exists); returns its path."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(
            f"the report path {target} is a directory",
            hint=f"name a file, e.g. {target / 'langdream-report.html'}",
        )
    page = build_report(memory, namespace=namespace, max_points=max_points)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target, then moved over it: a browser never opens half a report.
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(page, encoding="utf-8")
        partial.replace(target)
    except OSError as exc:
        raise UsageError(
            f"cannot write the report to {target}: {exc.strerror or exc}",
            hint="choose a writable location with --out",
        ) from exc
    return target


async def abuild_report(
    memory: DreamMemory,
    *,
    namespace: str | Sequence[str] | None = None,
    max_points: int = DEFAULT_REPORT_MAX_POINTS,
) -> str:
    """``build_report`` in a worker thread: reading the ledger and the index blocks."""
    return await asyncio.to_thread(build_report, memory, namespace=namespace, max_points=max_points)


async def awrite_report(
    memory: DreamMemory,
    path: str | os.PathLike[str],
    *,
    namespace: str | Sequence[str] | None = None,
    max_points: int = DEFAULT_REPORT_MAX_POINTS,
) -> Path:
    """``write_report`` in a worker thread."""
    return await asyncio.to_thread(write_report, memory, path, namespace=namespace, max_points=max_points)


__all__ = ["ReportData", "abuild_report", "awrite_report", "build_report", "gather", "write_report"]
