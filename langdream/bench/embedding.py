"""Embedding: langdream's Embedder against raw sentence-transformers, and what ONNX and int8 keep.

Three measurements, in the same run, on the CPU:

* Throughput (texts/s) of ``Embedder(backend="torch")`` against what a user would write instead,
  ``SentenceTransformer(bundled_model_path(), device="cpu").encode(texts, batch_size=64,
  normalize_embeddings=True)`` (plus ``show_progress_bar=False``, which changes no computation).
  The texts are distinct and shuffled, and cut into rounds of 256; in each timed round every side
  embeds the same 256 texts at batch size 64, in an order balanced over rounds (``_order``), so
  machine noise hits all sides alike. A side's speed against raw sentence-transformers is the
  median over rounds of the two sides' time ratio on that round's texts. ``onnx`` and
  ``onnx-int8`` run in the same rounds.
* Single-text latency, p50 / p95, per backend: what a recall query pays. The queries are the
  bundled HotpotQA tasks, one per call, timed in interleaved chunks.
* Quality kept: CLINC150 and Banking77, embedded once per backend (the same rounds as above: with
  the shared data the throughput texts *are* these texts, so nothing is embedded twice), then
  clustered the way MTEB's ``ClusteringEvaluator`` does it: scikit-learn ``MiniBatchKMeans`` with
  k = the number of gold labels, ``batch_size=500``, ``n_init="auto"`` (one k-means++ start),
  scored by V-measure. The V-measure is averaged over several seeds (MTEB's 28042000, then +1,
  +2, ...), the same seeds for every backend, so k-means' own seed noise does not pass for a
  difference between backends. Quality kept = a backend's mean V-measure / torch fp32's.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from langdream.bench.common import BenchContext, SectionResult, summarize_ms, time_calls
from langdream.bench.data import LabelledTexts, banking77, clinc150
from langdream.embed import Embedder, bundled_model_path

BATCH_SIZE = 64
ROUND_TEXTS = 256
BACKENDS = ("torch", "onnx", "onnx-int8")
RAW = "sentence-transformers"
MTEB_SEED = 28042000
MTEB_CLUSTERING_BATCH = 500
THROUGHPUT_TARGET = 0.9
QUALITY_TARGET = 0.99

Encode = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class _Plan:
    timed_rounds: int  # rounds that every side, raw sentence-transformers included, embeds and times
    demo_rounds: int  # the same without the shared data (longer texts: episode messages)
    latency_calls: int  # one-text calls per side
    splits: tuple[str, ...]  # the dataset splits clustered
    per_label: int | None  # at most this many texts of each label (None: all)
    seeds: int  # k-means seeds averaged


QUICK = _Plan(timed_rounds=9, demo_rounds=3, latency_calls=30, splits=("test",), per_label=10, seeds=5)
FULL = _Plan(timed_rounds=16, demo_rounds=12, latency_calls=300, splits=("test",), per_label=None, seeds=10)


def _distinct(texts: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t.strip()))


def _demo_records() -> list[dict[str, Any]]:
    from langdream.demo import sample_lines

    return [json.loads(line) for line in sample_lines()]


def _demo_texts(records: list[dict[str, Any]]) -> list[str]:
    """Without the shared data: the bundled HotpotQA episodes' tasks and the agent's own sentences
    (task-sized texts, like the tasks and insights langdream embeds; tool output is left out)."""
    texts: list[str] = []
    for record in records:
        texts.append(record["task"])
        texts.extend(str(m.get("content") or "") for m in record.get("messages", []) if m.get("role") == "assistant")
    return _distinct(texts)


def _capped(data: LabelledTexts, per_label: int | None) -> LabelledTexts:
    """The first ``per_label`` texts of each label, in file order; repeated texts dropped."""
    counts: dict[str, int] = {}
    kept: set[str] = set()
    texts, labels = [], []
    for text, label in zip(data.texts, data.labels):
        if text in kept or (per_label is not None and counts.get(label, 0) >= per_label):
            continue
        counts[label] = counts.get(label, 0) + 1
        kept.add(text)
        texts.append(text)
        labels.append(label)
    return LabelledTexts(data.name, texts, labels)


def _labelled(ctx: BenchContext, plan: _Plan) -> list[LabelledTexts]:
    assert ctx.data_dir is not None
    out = []
    for load in (clinc150, banking77):
        parts = [load(ctx.data_dir, split) for split in plan.splits]
        whole = LabelledTexts(parts[0].name, [t for p in parts for t in p.texts], [x for p in parts for x in p.labels])
        out.append(_capped(whole, plan.per_label))
    return out


def _order(names: Sequence[str], turn: int) -> list[str]:
    """The sides' order in round ``turn``, balanced over every four rounds: the sides go in pairs
    (the raw peer with langdream torch, then onnx with onnx-int8), each pair's members swap every
    round and the pairs swap every other round, so each side is as often first, or after a side of
    the other runtime, as its partner."""
    pairs = [list(names[i : i + 2]) for i in range(0, len(names), 2)]
    if turn % 2:
        pairs = [pair[::-1] for pair in pairs]
    if (turn // 2) % 2:
        pairs = pairs[::-1]
    return [name for pair in pairs for name in pair]


def _embed_in_rounds(
    sides: dict[str, Encode], texts: list[str], timed_rounds: int, log: Callable[[str], None]
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Every side embeds ``texts`` round by round; the raw peer only in the timed rounds.

    Returns each side's seconds per timed round, and its vectors (the raw peer's cover the timed
    rounds' texts only, which come first).
    """
    rounds = [texts[i : i + ROUND_TEXTS] for i in range(0, len(texts), ROUND_TEXTS)]
    for encode in sides.values():  # warm up: first-call allocations, lazy graph optimisation
        encode(rounds[0][:BATCH_SIZE])
    parts: dict[str, list[np.ndarray]] = {name: [] for name in sides}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for turn, chunk in enumerate(rounds):
        timed = turn < timed_rounds
        if turn == timed_rounds:
            log(f"  embedding the other {len(texts) - timed_rounds * ROUND_TEXTS} texts with each backend")
        for name in _order(list(sides), turn) if timed else [n for n in sides if n != RAW]:
            if timed:
                sides[name](chunk[:1])  # untimed: whatever the previous side left behind is settled
            started = time.perf_counter()
            parts[name].append(np.asarray(sides[name](chunk), dtype=np.float32))
            if timed:
                seconds[name].append(time.perf_counter() - started)
        if timed:
            rates = ", ".join(f"{n} {len(chunk) / s[-1]:.0f}/s" for n, s in seconds.items())
            log(f"  round {turn + 1}/{min(timed_rounds, len(rounds))}: {rates}")
        elif (turn + 1) % 20 == 0:
            log(f"  {(turn + 1) * ROUND_TEXTS}/{len(texts)} texts")
    return seconds, {name: np.concatenate(p) for name, p in parts.items()}


def _throughput_figures(seconds: dict[str, list[float]], texts_per_round: list[int]) -> dict[str, dict[str, Any]]:
    total = sum(texts_per_round)
    figures: dict[str, dict[str, Any]] = {}
    for name, spent in seconds.items():
        ratios = [raw / own for raw, own in zip(seconds[RAW], spent)]  # >1: faster than raw
        figures[name] = {
            "texts_per_s": round(total / sum(spent), 1),
            "best_round_texts_per_s": round(max(n / s for n, s in zip(texts_per_round, spent)), 1),
            "speed_vs_raw_median": round(float(np.median(ratios)), 4),
            "speed_vs_raw_per_round": [round(r, 4) for r in ratios],
            "round_seconds": [round(s, 3) for s in spent],
        }
    return figures


def _one_text(encode: Encode, texts: Iterator[str]) -> np.ndarray:
    return encode([next(texts)])


def _latency(sides: dict[str, Encode], queries: list[str], calls: int, chunks: int) -> dict[str, dict[str, float]]:
    """p50 / p95 of one-text calls per side, timed in interleaved chunks, a different query each call."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    per_chunk = max(1, calls // chunks)
    for chunk in range(chunks):
        for name in _order(list(sides), chunk):
            call = functools.partial(_one_text, sides[name], itertools.cycle(queries[chunk:] + queries[:chunk]))
            samples[name] += time_calls(call, repeat=per_chunk, warmup=3 if chunk == 0 else 1)
    return {name: summarize_ms(spent) for name, spent in samples.items()}


def _v_measures(vectors: np.ndarray, labels: Sequence[str], seeds: int) -> list[float]:
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import v_measure_score
    from threadpoolctl import threadpool_limits

    k = len(set(labels))
    scores = []
    # One BLAS thread, the same for every backend: k-means++ on float32 vectors runs several times
    # faster so on a small or busy machine than with threads competing for the cores.
    with threadpool_limits(1):
        for i in range(seeds):
            model = MiniBatchKMeans(
                n_clusters=k, batch_size=MTEB_CLUSTERING_BATCH, n_init="auto", random_state=MTEB_SEED + i
            )
            scores.append(float(v_measure_score(labels, model.fit(vectors).labels_)))
    return scores


def _cosine_to(reference: np.ndarray, vectors: np.ndarray) -> dict[str, float]:
    cosines = (reference * vectors).sum(axis=1)  # both unit-norm
    return {"min": round(float(cosines.min()), 6), "mean": round(float(cosines.mean()), 6)}


def _quality(
    ctx: BenchContext, plan: _Plan, datasets: list[LabelledTexts], vectors: dict[str, np.ndarray], row: dict[str, int]
) -> dict[str, Any]:
    result_figures: dict[str, Any] = {}
    for data in datasets:
        rows = [row[t] for t in data.texts]
        own = {backend: vectors[f"langdream {backend}"][rows] for backend in BACKENDS}
        started = time.perf_counter()
        scores = {backend: _v_measures(own[backend], data.labels, plan.seeds) for backend in BACKENDS}
        mean = {backend: float(np.mean(s)) for backend, s in scores.items()}
        kept = {backend: mean[backend] / mean["torch"] for backend in BACKENDS if backend != "torch"}
        result_figures[data.name] = {
            "splits": list(plan.splits),
            "texts": len(data.texts),
            "labels": data.n_labels,
            "per_label_cap": plan.per_label,
            "v_measure": {b: [round(x, 5) for x in s] for b, s in scores.items()},
            "v_measure_mean": {b: round(m, 5) for b, m in mean.items()},
            "v_measure_std": {b: round(float(np.std(s)), 5) for b, s in scores.items()},
            "quality_kept": {b: round(k, 5) for b, k in kept.items()},
            "cosine_to_torch": {b: _cosine_to(own["torch"], own[b]) for b in BACKENDS if b != "torch"},
            "clustering_seconds": round(time.perf_counter() - started, 2),
        }
        means = ", ".join(f"{b} {m:.4f}" for b, m in mean.items())
        ctx.log(f"  {data.name}: {len(data.texts)} texts, V-measure {means}")
    return result_figures


def run(ctx: BenchContext) -> SectionResult:
    from sentence_transformers import SentenceTransformer

    from langdream.embed import _quiet_weight_loading

    result = SectionResult("embedding")
    plan = QUICK if ctx.quick else FULL
    records = _demo_records()
    queries = _distinct([r["task"] for r in records])
    rng = np.random.default_rng(ctx.seed)

    datasets: list[LabelledTexts] = []
    if ctx.data_dir is not None:
        datasets = _labelled(ctx, plan)
        texts = _distinct([t for d in datasets for t in d.texts])
        source = f"CLINC150 + Banking77 {'+'.join(plan.splits)} utterances"
        timed_rounds = plan.timed_rounds
    else:
        texts = _demo_texts(records)
        source = "bundled HotpotQA tasks and agent messages"
        timed_rounds = plan.demo_rounds
    texts = [texts[i] for i in rng.permutation(len(texts))]
    if ctx.data_dir is None:
        texts = texts[: timed_rounds * ROUND_TEXTS]

    loads: dict[str, float] = {}
    started = time.perf_counter()
    with _quiet_weight_loading():
        raw = SentenceTransformer(bundled_model_path(), device="cpu")
    loads[RAW] = time.perf_counter() - started
    embedders: dict[str, Embedder] = {}
    for backend in BACKENDS:
        started = time.perf_counter()
        embedders[backend] = Embedder(backend=backend, device="cpu", batch_size=BATCH_SIZE)
        embedders[backend].embed(["load the model"])  # the ONNX export happens here if not cached yet
        loads[backend] = time.perf_counter() - started

    def raw_encode(batch: list[str]) -> np.ndarray:
        return raw.encode(batch, batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False)

    sides: dict[str, Encode] = {RAW: raw_encode}
    sides.update({f"langdream {backend}": embedders[backend].embed for backend in BACKENDS})

    timed_rounds = min(timed_rounds, -(-len(texts) // ROUND_TEXTS))
    timed_texts = min(len(texts), timed_rounds * ROUND_TEXTS)
    ctx.log(f"  {len(texts)} distinct texts; {timed_rounds} timed rounds of {ROUND_TEXTS} per side")
    seconds, vectors = _embed_in_rounds(sides, texts, timed_rounds, ctx.log)
    per_round = [len(texts[i : i + ROUND_TEXTS]) for i in range(0, timed_texts, ROUND_TEXTS)]
    throughput = _throughput_figures(seconds, per_round)
    # Both sides did the same work: the same vectors, up to float rounding.
    torch_vs_raw = _cosine_to(vectors[RAW], vectors["langdream torch"][:timed_texts])

    ctx.log(f"  latency: {plan.latency_calls} one-text calls per side")
    latency = _latency(sides, queries, plan.latency_calls, chunks=3)

    raw_figures = throughput[RAW]
    result.row(
        "throughput texts",
        f"{timed_texts} distinct ({source}), {timed_rounds} rounds of {ROUND_TEXTS}, batch {BATCH_SIZE}",
    )
    result.row(f"raw {RAW} (cpu)", f"{raw_figures['texts_per_s']:.0f} texts/s")
    for backend in BACKENDS:
        figures = throughput[f"langdream {backend}"]
        result.row(
            f"langdream {backend} (cpu)",
            f"{figures['texts_per_s']:.0f} texts/s ({figures['speed_vs_raw_median']:.2f}x raw, median of rounds)",
        )
    result.row("langdream torch vs raw vectors (cosine)", f"min {torch_vs_raw['min']:.6f}")
    for name, summary in latency.items():
        result.row(f"one-text latency {name}", f"p50 {summary['p50_ms']:.2f} ms, p95 {summary['p95_ms']:.2f} ms")
    result.row(
        "recall query / bulk backend (auto)", f"{ctx.embedder.backend_for(1)} / {ctx.embedder.backend_for(None)}"
    )
    result.target(
        "embedding throughput ratio vs raw sentence-transformers",
        throughput["langdream torch"]["speed_vs_raw_median"],
        ">=",
        THROUGHPUT_TARGET,
    )
    result.notes.append(
        "throughput texts are distinct (Embedder.embed embeds each distinct text once, so repeats would "
        "flatter langdream); ratio = median over interleaved rounds of raw time / langdream time on the same texts"
    )
    result.figures.update(
        {
            "device": "cpu",
            "batch_size": BATCH_SIZE,
            "texts": len(texts),
            "timed_texts": timed_texts,
            "timed_rounds": timed_rounds,
            "round_texts": ROUND_TEXTS,
            "source": source,
            "load_seconds": {name: round(s, 2) for name, s in loads.items()},
            "throughput": throughput,
            "torch_vs_raw_cosine": torch_vs_raw,
            "latency_one_text": latency,
            "latency_queries": f"{len(queries)} bundled HotpotQA tasks",
            "auto_backend": {"query": ctx.embedder.backend_for(1), "bulk": ctx.embedder.backend_for(None)},
        }
    )

    if not datasets:
        result.notes.append(
            "quality not measured: no CLINC150 / Banking77 data (pass --data or set $LANGDREAM_SHARED_DATA)"
        )
        result.figures["quality"] = None
        return result

    ctx.log(f"  quality: {plan.seeds} k-means seeds per backend and dataset")
    row = {text: i for i, text in enumerate(texts)}
    quality = _quality(ctx, plan, datasets, vectors, row)
    for name, figures in quality.items():
        mean = figures["v_measure_mean"]
        result.row(
            f"V-measure {name} ({figures['texts']} texts, k={figures['labels']})",
            " / ".join(f"{b} {mean[b]:.4f}" for b in BACKENDS),
        )
        for backend, cos in figures["cosine_to_torch"].items():
            result.row(f"{backend} cosine to torch on {name}", f"min {cos['min']:.4f}, mean {cos['mean']:.4f}")
    for name, figures in quality.items():
        for backend, kept in figures["quality_kept"].items():
            result.target(f"{backend} quality kept on {name} (V-measure / torch fp32)", kept, ">=", QUALITY_TARGET)
    result.figures["quality"] = quality
    result.figures["quality_protocol"] = {
        "clusterer": "sklearn MiniBatchKMeans (MTEB ClusteringEvaluator)",
        "n_clusters": "number of gold labels",
        "batch_size": MTEB_CLUSTERING_BATCH,
        "n_init": "auto",
        "seeds": [MTEB_SEED + i for i in range(plan.seeds)],
        "score": "V-measure, mean over seeds; quality kept = backend mean / torch fp32 mean",
    }
    cap = f"the first {plan.per_label} texts of each label in " if plan.per_label else ""
    result.notes.append(
        f"quality: {cap}the {'+'.join(plan.splits)} split(s); MTEB clustering protocol (MiniBatchKMeans, "
        f"k = gold labels, batch 500), V-measure averaged over {plan.seeds} seeds shared by all backends"
    )
    return result
