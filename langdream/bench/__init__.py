"""``langdream bench``: langdream's speed, memory and quality, each against a peer in the same run.

Every section compares langdream with what a user would do instead (an undecorated graph, a
LangGraph ``InMemoryStore``, raw ``SentenceTransformer.encode``, scikit-learn's MiniBatchKMeans,
a full dream) on this machine, now; the targets are ratios or bounds from issue 3 and the JSON
document says for each whether it was met. The reflection stage uses a fake LLM of fixed latency
so the figures are deterministic.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from langdream._version import __version__
from langdream.bench.common import BenchContext, SectionResult
from langdream.bench.data import find_data_dir
from langdream.embed import Embedder
from langdream.errors import ConfigError

# name -> module under langdream.bench with run(ctx) -> SectionResult, in the order they run.
SECTIONS: dict[str, str] = {
    "recall": "recall",
    "embedding": "embedding",
    "clustering": "clustering",
    "incremental": "incremental",
    "fanout": "fanout",
    "stores": "stores",
    "postgres": "postgres",
}
_PACKAGES = (
    "langdream",
    "langgraph",
    "langchain-core",
    "chromadb",
    "sentence-transformers",
    "torch",
    "onnxruntime",
    "numpy",
    "scikit-learn",
    "scipy",
    "tiktoken",
)


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda": bool(torch.cuda.is_available()),
    }
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        with open("/proc/meminfo") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_bench(
    *,
    quick: bool = False,
    sections: Sequence[str] | None = None,
    json_out: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run the chosen sections (all by default) and return, and optionally write, the JSON document."""
    chosen = list(sections or SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise ConfigError(
            f"unknown benchmark section(s): {', '.join(unknown)}", hint=f"choose from {', '.join(SECTIONS)}"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="langdream-bench-", dir=workdir) as scratch:
        embedder = Embedder()
        ctx = BenchContext(
            quick=quick, workdir=Path(scratch), data_dir=find_data_dir(data_dir), embedder=embedder, log=log
        )
        document: dict[str, Any] = {
            "langdream": __version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mode": "quick" if quick else "full",
            "machine": machine(),
            "versions": versions(),
            "device": {"embedding": embedder.backend_for(None), "embedding_query": embedder.backend_for(1)},
            "data_dir": str(ctx.data_dir) if ctx.data_dir else None,
            "sections": {},
        }
        results: list[SectionResult] = []
        for name in chosen:
            log(f"[{name}] running")
            module = importlib.import_module(f"langdream.bench.{SECTIONS[name]}")
            t = time.perf_counter()
            result: SectionResult = module.run(ctx)
            result.seconds = time.perf_counter() - t
            results.append(result)
            document["sections"][name] = result.as_dict()
            log(f"[{name}] done in {result.seconds:.1f}s")
    targets = [t.as_dict() | {"section": r.name} for r in results for t in r.targets]
    document["targets"] = targets
    document["all_targets_met"] = all(t["met"] for t in targets)
    document["seconds"] = round(time.perf_counter() - started, 1)
    document["table"] = format_table(results)
    if json_out is not None:
        Path(json_out).write_text(json.dumps(document, indent=2) + "\n")
    return document


def format_table(results: Sequence[SectionResult]) -> str:
    """A plain-text table: each section's rows, then its targets marked met or MISSED."""
    lines: list[str] = []
    width = max(
        [len(label) for r in results for label, _ in r.rows] + [len(t.name) for r in results for t in r.targets] + [10]
    )
    for result in results:
        lines.append(f"== {result.name} ({result.seconds:.1f}s)")
        for label, value in result.rows:
            lines.append(f"  {label:<{width}}  {value}")
        for t in result.targets:
            mark = "met" if t.met else "MISSED"
            lines.append(f"  {t.name:<{width}}  {t.value:.4g}{t.unit} {t.op} {t.bound:g}{t.unit}  [{mark}]")
        for note in result.notes:
            lines.append(f"  note: {note}")
    return "\n".join(lines)


__all__ = ["SECTIONS", "format_table", "run_bench"]
