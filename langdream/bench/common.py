"""What every benchmark section shares: its context, its result, targets and timing helpers.

A section measures langdream against a peer *in the same run* (same machine, same moment), so
its targets are ratios or bounds that do not depend on how fast or busy the machine is.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from langdream.embed import Embedder


@dataclass(frozen=True)
class Target:
    """One claim a section checks: ``value <op> bound``."""

    name: str
    value: float
    bound: float
    op: str  # "<=" or ">="
    unit: str = ""

    @property
    def met(self) -> bool:
        return self.value <= self.bound if self.op == "<=" else self.value >= self.bound

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(float(self.value), 4),
            "bound": self.bound,
            "op": self.op,
            "unit": self.unit,
            "met": self.met,
        }


@dataclass
class SectionResult:
    """A section's figures (JSON-able), its targets, and the rows it shows in the table."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, label: str, value: str) -> None:
        self.rows.append((label, value))

    def target(self, name: str, value: float, op: str, bound: float, unit: str = "") -> Target:
        target = Target(name, float(value), bound, op, unit)
        self.targets.append(target)
        return target

    def as_dict(self) -> dict[str, Any]:
        return {
            "figures": self.figures,
            "targets": [t.as_dict() for t in self.targets],
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class BenchContext:
    """What a section gets: the mode, a scratch directory, the shared data, one loaded embedder."""

    quick: bool
    workdir: Path
    data_dir: Path | None  # the shared labelled data (CLINC150, Banking77, HotpotQA), if present
    embedder: Embedder
    log: Callable[[str], None]
    seed: int = 0

    def scratch(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def summarize_ms(samples_seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / mean of samples given in seconds, in milliseconds."""
    ms = np.asarray(samples_seconds, dtype=np.float64) * 1000.0
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def time_calls(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> list[float]:
    """Wall time of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones, in seconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


@contextmanager
def peak_traced_memory() -> Iterator[dict[str, int]]:
    """Peak bytes allocated through Python's allocators (numpy included) inside the block.

    Memory that C libraries allocate behind numpy's back (BLAS work buffers) is not seen, so this
    is a lower bound; it is exact for the arrays a clusterer builds.
    """
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    out: dict[str, int] = {}
    try:
        yield out
    finally:
        out["peak_bytes"] = max(0, tracemalloc.get_traced_memory()[1] - base)
        if not was_tracing:
            tracemalloc.stop()


def synthetic_unit_vectors(base: np.ndarray, n: int, *, noise: float, seed: int) -> np.ndarray:
    """``n`` unit vectors scattered around rows of ``base`` (real embeddings), for scale tests
    where embedding ``n`` real texts would take longer than the thing being measured."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(base), size=n)
    out = base[rows] + rng.standard_normal((n, base.shape[1])).astype(np.float32) * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)
