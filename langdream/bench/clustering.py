"""Clustering: ``cluster()`` at scale, and its quality against MTEB's k-means protocol.

Two measurements, in the same run:

* Scale: wall time and peak traced memory of ``cluster(vectors)`` (automatic k, default settings)
  at 1k, 10k and 100k vectors of 384 dimensions (and 1M in full mode), with the method that ran,
  its cell count and the estimate of its one quadratic allocation. The vectors are synthetic:
  unit vectors scattered around real embeddings (CLINC150 utterances embedded by the bench's
  embedder), because embedding 100k real texts on a CPU takes far longer than clustering them.
  Target: 100k vectors in at most 10 s.
* Quality: CLINC150 (in-scope intents) and Banking77, embedded with the bench's embedder and
  scored against the gold intents by V-measure and adjusted Rand index (x100). langdream's
  clusterer told k = the number of gold labels is compared with the MTEB ``ClusteringEvaluator``
  protocol computed here on the same vectors: scikit-learn ``MiniBatchKMeans(n_clusters=k,
  batch_size=500, n_init="auto")`` (one k-means++ start), fitted on all vectors. Both sides are
  averaged over the same seeds (MTEB's 28042000, then +1, +2, ...). Target per dataset: langdream's
  mean V-measure at least the baseline's minus 1 point. The automatic path (no k) is reported too:
  V-measure, ARI, cluster count and noise fraction (its noise counts as one extra label in the
  scores; no target, since it answers a different question: which episodes group at all).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from langdream.bench.common import BenchContext, SectionResult, peak_traced_memory, synthetic_unit_vectors
from langdream.bench.data import LabelledTexts, banking77, clinc150
from langdream.cluster import ClusterResult, cluster
from langdream.cluster.cpu import pairwise_bytes

MTEB_SEED = 28042000
MTEB_CLUSTERING_BATCH = 500
WALL_TARGET_S = 10.0
WALL_TARGET_N = 100_000
QUALITY_MARGIN = 1.0  # V-measure points (x100) langdream may trail the baseline by
# Noise of the synthetic vectors around their base embedding: norm 0.03 * sqrt(384) = 0.59, so a
# point keeps cosine ~0.86 to its base and ~0.74 to its siblings (base embeddings of one CLINC150
# intent are ~0.5-0.7 apart): groups at the scale of the real utterances, not random points.
SYNTHETIC_NOISE = 0.03


@dataclass(frozen=True)
class _Plan:
    sizes: tuple[int, ...]
    splits: tuple[str, ...]  # CLINC150 splits (in-scope); Banking77 has train and test only
    seeds: int


QUICK = _Plan(sizes=(1_000, 10_000, 100_000), splits=("test",), seeds=3)
FULL = _Plan(sizes=(1_000, 10_000, 100_000, 1_000_000), splits=("train", "val", "test"), seeds=5)


def _datasets(ctx: BenchContext, plan: _Plan) -> list[LabelledTexts]:
    assert ctx.data_dir is not None
    out = []
    for load, splits in ((clinc150, plan.splits), (banking77, tuple(s for s in plan.splits if s != "val"))):
        parts = [load(ctx.data_dir, split) for split in splits]
        out.append(
            LabelledTexts(parts[0].name, [t for p in parts for t in p.texts], [x for p in parts for x in p.labels])
        )
    return out


def _synthetic(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` synthetic vectors, made in chunks (one float64 noise matrix of 1M x 384 would be 3 GB)."""
    chunk = 100_000
    parts = [
        synthetic_unit_vectors(base, min(chunk, n - start), noise=SYNTHETIC_NOISE, seed=seed + i)
        for i, start in enumerate(range(0, n, chunk))
    ]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MB"


def _scale(ctx: BenchContext, plan: _Plan, base: np.ndarray, result: SectionResult) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    warm = _synthetic(base, 600, ctx.seed)  # untimed: first-call imports (scipy, threadpoolctl) of both paths
    cluster(warm)
    cluster(warm, memory_bytes=2**20)
    for n in plan.sizes:
        vectors = _synthetic(base, n, ctx.seed)
        with peak_traced_memory() as memory:
            started = time.perf_counter()
            clustered = cluster(vectors)
            wall = time.perf_counter() - started
        figures[str(n)] = {
            "n": n,
            "dim": int(vectors.shape[1]),
            "wall_s": round(wall, 3),
            "peak_traced_bytes": memory["peak_bytes"],
            "input_bytes": int(vectors.nbytes),
            "method": clustered.method,
            "device": clustered.device,
            "cells": clustered.cells,
            "quadratic_bytes_estimate": clustered.quadratic_bytes,
            "pairwise_bytes_estimate": pairwise_bytes(n),
            "clusters": clustered.n_clusters,
            "noise_fraction": round(clustered.noise / n, 4),
        }
        cells = f", {clustered.cells} cells" if clustered.cells else ""
        result.row(
            f"cluster() {n:,} x {vectors.shape[1]}",
            f"{wall:.2f}s, peak {_mb(memory['peak_bytes'])} traced (input {_mb(vectors.nbytes)}), "
            f"{clustered.method}{cells} on {clustered.device}, quadratic part {_mb(clustered.quadratic_bytes)} "
            f"(exact would need {_mb(pairwise_bytes(n))}); {clustered.n_clusters} clusters, "
            f"{clustered.noise / n:.1%} noise",
        )
        ctx.log(f"  {n:,} vectors: {wall:.2f}s, {clustered.method}, {clustered.n_clusters} clusters")
        if clustered.device != "cpu" and n == WALL_TARGET_N:
            figures[str(n)]["cpu"] = _on_cpu(vectors, clustered, result)
        del vectors
    return figures


def _on_cpu(vectors: np.ndarray, on_gpu: ClusterResult, result: SectionResult) -> dict[str, Any]:
    """On a CUDA machine: the same call on the CPU, and how far the two labelings agree."""
    from sklearn.metrics import adjusted_rand_score

    started = time.perf_counter()
    on_cpu = cluster(vectors, device="cpu")
    wall = time.perf_counter() - started
    agreement = float(adjusted_rand_score(on_cpu.labels, on_gpu.labels))
    result.row(
        f"  same {len(vectors):,} on cpu",
        f"{wall:.2f}s, {on_cpu.n_clusters} clusters, {on_cpu.noise / len(vectors):.1%} noise; "
        f"ARI {on_gpu.device} vs cpu labels {agreement:.3f}",
    )
    return {"wall_s": round(wall, 3), "clusters": on_cpu.n_clusters, "ari_vs_gpu": round(agreement, 4)}


def _scores(gold: list[str], labels: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import adjusted_rand_score, v_measure_score

    return 100 * float(v_measure_score(gold, labels)), 100 * float(adjusted_rand_score(gold, labels))


def _baseline(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import MiniBatchKMeans

    model = MiniBatchKMeans(n_clusters=k, batch_size=MTEB_CLUSTERING_BATCH, n_init="auto", random_state=seed)
    return model.fit(vectors).labels_


def _quality(plan: _Plan, data: LabelledTexts, vectors: np.ndarray) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    k = data.n_labels
    seeds = [MTEB_SEED + i for i in range(plan.seeds)]
    sides: dict[str, list[tuple[float, float]]] = {"langdream k": [], "MiniBatchKMeans": []}
    seconds = {name: 0.0 for name in sides}
    # One thread for BLAS and OpenMP on both sides: on a small or busy machine scikit-learn's
    # thread pools spin against each other (KMeans took 24 s instead of 3.5 s on 2 busy cores).
    # The labels do not depend on the thread count.
    with threadpool_limits(1):
        for seed in seeds:
            started = time.perf_counter()
            ours = cluster(vectors, k=k, seed=seed)
            sides["langdream k"].append(_scores(data.labels, ours.labels))
            seconds["langdream k"] += time.perf_counter() - started
            started = time.perf_counter()
            sides["MiniBatchKMeans"].append(_scores(data.labels, _baseline(vectors, k, seed)))
            seconds["MiniBatchKMeans"] += time.perf_counter() - started
    started = time.perf_counter()
    auto: ClusterResult = cluster(vectors)
    auto_seconds = time.perf_counter() - started
    auto_v, auto_ari = _scores(data.labels, auto.labels)
    mean = {name: np.mean(s, axis=0) for name, s in sides.items()}
    return {
        "texts": len(data.texts),
        "labels": k,
        "device": ours.device,
        "seeds": seeds,
        "v_measure": {name: [round(v, 3) for v, _ in s] for name, s in sides.items()},
        "ari": {name: [round(a, 3) for _, a in s] for name, s in sides.items()},
        "v_measure_mean": {name: round(float(m[0]), 3) for name, m in mean.items()},
        "ari_mean": {name: round(float(m[1]), 3) for name, m in mean.items()},
        "seconds_per_fit": {name: round(s / len(seeds), 3) for name, s in seconds.items()},
        "auto": {
            "method": auto.method,
            "v_measure": round(auto_v, 3),
            "ari": round(auto_ari, 3),
            "clusters": auto.n_clusters,
            "noise_fraction": round(auto.noise / len(data.texts), 4),
            "seconds": round(auto_seconds, 3),
        },
    }


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("clustering")
    plan = QUICK if ctx.quick else FULL
    datasets: list[LabelledTexts] = []
    embedded: dict[str, np.ndarray] = {}
    if ctx.data_dir is not None:
        datasets = _datasets(ctx, plan)
        for data in datasets:
            started = time.perf_counter()
            embedded[data.name] = np.asarray(ctx.embedder.embed(data.texts), dtype=np.float32)
            ctx.log(f"  embedded {len(data.texts)} {data.name} texts in {time.perf_counter() - started:.1f}s")
        base = embedded["clinc150"]
        base_source = f"{len(base)} embedded CLINC150 {'+'.join(plan.splits)} utterances"
    else:
        rng = np.random.default_rng(ctx.seed)
        base = rng.standard_normal((4500, 384)).astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        base_source = "4500 random unit vectors (no shared data)"
        result.notes.append("no shared data directory: scale measured around random base vectors, quality skipped")

    scale = _scale(ctx, plan, base, result)
    result.target("clustering 100k wall", scale[str(WALL_TARGET_N)]["wall_s"], "<=", WALL_TARGET_S, "s")
    result.notes.append(
        f"scale vectors are synthetic: {base_source}, each copied with Gaussian noise of norm "
        f"{SYNTHETIC_NOISE} x sqrt(dim) and renormalised (embedding 100k real texts on a CPU takes far longer "
        "than clustering them); imports are warmed up by an untimed call first"
    )
    result.notes.append(
        "peak memory is what Python's allocators saw (tracemalloc; numpy arrays included). Not seen: scipy's "
        "working copy of the distance matrix inside linkage (the exact path; pairwise_bytes counts it) and "
        "torch allocations (CUDA runs)"
    )

    quality: dict[str, Any] = {}
    for data in datasets:
        figures = _quality(plan, data, embedded[data.name])
        quality[data.name] = figures
        name = "CLINC150" if data.name == "clinc150" else "Banking77"
        ours, peer = figures["v_measure_mean"]["langdream k"], figures["v_measure_mean"]["MiniBatchKMeans"]
        result.row(
            f"{name} k={figures['labels']} ({figures['texts']} texts)",
            f"langdream V {ours:.2f} / ARI {figures['ari_mean']['langdream k']:.2f}; MiniBatchKMeans (MTEB) "
            f"V {peer:.2f} / ARI {figures['ari_mean']['MiniBatchKMeans']:.2f}; mean of {plan.seeds} seeds "
            f"(langdream on {figures['device']})",
        )
        auto = figures["auto"]
        result.row(
            f"{name} automatic k",
            f"V {auto['v_measure']:.2f} / ARI {auto['ari']:.2f}, {auto['clusters']} clusters, "
            f"{auto['noise_fraction']:.1%} noise ({auto['method']})",
        )
        result.target(
            f"{name} V-measure (k given) vs MiniBatchKMeans - {QUALITY_MARGIN:g}",
            ours,
            ">=",
            round(peer - QUALITY_MARGIN, 3),
        )
        ctx.log(f"  {name}: langdream V {ours:.2f}, MiniBatchKMeans V {peer:.2f}, auto V {auto['v_measure']:.2f}")
    if datasets:
        result.notes.append(
            "quality: V-measure and ARI x100 against the gold intents; k-means sides run with one BLAS/OpenMP "
            "thread (same labels, no thread pools spinning on a busy machine); automatic k scores count noise as "
            "one more label"
        )
    result.figures.update(
        {
            "mode": "quick" if ctx.quick else "full",
            "synthetic": {"base": base_source, "noise": SYNTHETIC_NOISE},
            "scale": scale,
            "quality": quality,
            "splits": {"clinc150": list(plan.splits), "banking77": [s for s in plan.splits if s != "val"]},
        }
    )
    return result
