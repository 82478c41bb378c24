"""Recall overhead: what a decorated graph run pays for recall + record, at 1k, 10k and 100k insights.

Peers, in the same run: the same graph undecorated, and the recall a LangMem user gets by
default (LangGraph ``InMemoryStore`` with an embedding index, ``search(query=...)``) over the
same insights with the same embedding model.

The stored insights are real-sounding lessons about real user requests (CLINC150 utterances, or
the bundled HotpotQA questions without the shared data). Their vectors are scattered around real
embeddings of those texts rather than embedded one by one: embedding 100k texts on a 2-core CPU
would take minutes and measure the embedder, not recall. Queries are other real requests,
embedded for real on every run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from langdream.bench.common import BenchContext, SectionResult, summarize_ms, synthetic_unit_vectors
from langdream.bench.data import clinc150
from langdream.ledger import InsightWrite
from langdream.types import Insight, InsightAction, InsightOrigin, InsightStatus

NAMESPACE = ("bench", "recall")
_EVIDENCE = 3
_LESSONS = (
    "Confirm the amount and the account with the user before acting on: {text}",
    "Look the answer up with a tool instead of guessing when asked: {text}",
    "Ask one clarifying question first when a request is as short as: {text}",
    "Quote the exact figure from the tool result when answering: {text}",
)


def _texts(ctx: BenchContext) -> tuple[list[str], list[str]]:
    """(texts the stored lessons are about, different texts to query with)."""
    if ctx.data_dir is not None:
        return clinc150(ctx.data_dir, "train").texts, clinc150(ctx.data_dir, "test").texts
    from langdream.demo import sample_lines

    tasks = [json.loads(line)["task"] for line in sample_lines()]
    tasks = list(dict.fromkeys(tasks))
    return tasks[::2], tasks[1::2]


def _insight(number: int, text: str, evidence: list[str]) -> Insight:
    return Insight(
        id=f"bench-insight-{number:07d}",
        namespace=NAMESPACE,
        text=_LESSONS[number % len(_LESSONS)].format(text=text),
        applies_when=f"tasks like: {text}",
        status=InsightStatus.ACTIVE,
        origin=InsightOrigin.LLM,
        evidence=evidence,
        support=len(evidence),
        threads=len(evidence),
        tasks=6 if number % 997 == 0 else 1,  # a few general lessons, as real namespaces have
        confidence=0.6 + 0.4 * ((number * 7919) % 100) / 100,
        model_id="bench",
        prompt_version="bench",
        job_id="bench",
    )


def _grow(memory, base_texts: list[str], base_vectors: np.ndarray, start: int, stop: int, seed: int) -> None:
    """Add insights ``start..stop`` (and the episodes they cite) to the ledger and the index."""
    n = stop - start
    vectors = synthetic_unit_vectors(base_vectors, n, noise=0.02, seed=seed + start)
    rows = np.random.default_rng(seed + start).integers(0, len(base_texts), size=n)
    episodes_vectors = synthetic_unit_vectors(base_vectors, n // 10 + 1, noise=0.02, seed=seed + start + 1)
    episode_ids = [f"bench-episode-{start + i:07d}" for i in range(len(episodes_vectors))]
    rng = np.random.default_rng(seed)
    writes = []
    for i in range(n):
        cited = [episode_ids[j] for j in rng.integers(0, len(episode_ids), size=_EVIDENCE)]
        writes.append(InsightWrite(_insight(start + i, base_texts[rows[i]], cited), InsightAction.ADD, vectors[i]))
    ledger = memory.ledger
    with ledger._write() as db:  # bulk load: one transaction, the ledger's own row writer
        for write in writes:
            ledger._write_insight(db, write)
    memory.index.upsert_episodes(episode_ids, episodes_vectors, [NAMESPACE] * len(episode_ids))
    memory._dreamer(None).sync_index()


def _graph():
    from langchain_core.messages import AIMessage
    from langgraph.graph import START, MessagesState, StateGraph

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("done")]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    return builder.compile()


class _Stopwatch:
    """Times every call of one method of ``target`` while installed."""

    def __init__(self, target: Any, name: str) -> None:
        self.samples: list[float] = []
        self._target, self._name = target, name
        self._original: Callable = getattr(target, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.samples.append(time.perf_counter() - started)

        setattr(target, name, timed)

    def remove(self) -> None:
        setattr(self._target, self._name, self._original)


def _peer_store(embedder, insights_texts: list[str], vectors: np.ndarray):
    """An ``InMemoryStore`` holding the same insights: filled with their vectors, queried for real."""
    from langgraph.store.memory import InMemoryStore

    known = dict(zip(insights_texts, vectors.tolist()))

    def embed(texts: list[str]) -> list[list[float]]:
        missing = [t for t in texts if t not in known]
        fresh = dict(zip(missing, embedder.embed(missing).tolist())) if missing else {}
        return [known.get(t) or fresh[t] for t in texts]

    return InMemoryStore(index={"dims": vectors.shape[1], "embed": embed, "fields": ["text"]})


def run(ctx: BenchContext) -> SectionResult:
    from langdream.graph import dreaming
    from langdream.memory import DreamMemory

    result = SectionResult("recall")
    sizes = [1_000, 10_000, 100_000]
    runs = 60 if ctx.quick else 200
    peer_runs = 20 if ctx.quick else 30
    base_texts, query_texts = _texts(ctx)
    base_texts = base_texts[:2000]
    base_vectors = ctx.embedder.embed(base_texts)
    memory = DreamMemory(ctx.scratch("recall"), embedder=ctx.embedder)
    graph = _graph()
    dreamy = dreaming(graph, memory=memory, namespace=NAMESPACE, judge=lambda state: True)
    stored = 0
    per_size: dict[str, Any] = {}
    try:
        for size in sizes:
            t = time.perf_counter()
            _grow(memory, base_texts, base_vectors, stored, size, ctx.seed)
            stored = size
            ctx.log(f"  {size} insights stored in {time.perf_counter() - t:.1f}s")
            queries = [query_texts[(size + i) % len(query_texts)] for i in range(runs)]
            plain_samples, decorated_samples = [], []
            recall_watch = _Stopwatch(memory, "recall")
            record_watch = _Stopwatch(memory.ledger, "add_episodes")
            try:
                for warm in queries[:3]:
                    dreamy.invoke({"messages": [("user", warm)]})
                    graph.invoke({"messages": [("user", warm)]})
                recall_watch.samples.clear()
                record_watch.samples.clear()
                for query in queries:  # alternate, so machine noise hits both sides alike
                    started = time.perf_counter()
                    graph.invoke({"messages": [("user", query)]})
                    plain_samples.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    dreamy.invoke({"messages": [("user", query)]})
                    decorated_samples.append(time.perf_counter() - started)
            finally:
                recall_watch.remove()
                record_watch.remove()
            spent = [a + b for a, b in zip(recall_watch.samples, record_watch.samples, strict=True)]
            figures: dict[str, Any] = {
                "undecorated": summarize_ms(plain_samples),
                "decorated": summarize_ms(decorated_samples),
                "recall_plus_record": summarize_ms(spent),
                "recall": summarize_ms(recall_watch.samples),
                "record": summarize_ms(record_watch.samples),
            }
            figures["added_p50_ms"] = round(figures["decorated"]["p50_ms"] - figures["undecorated"]["p50_ms"], 3)
            figures["added_p95_ms"] = round(figures["decorated"]["p95_ms"] - figures["undecorated"]["p95_ms"], 3)
            if size == sizes[-1] or not ctx.quick:
                texts, vectors = _insight_texts_and_vectors(memory)
                t = time.perf_counter()
                store = _peer_store(ctx.embedder, texts, vectors)
                for number, text in enumerate(texts):
                    store.put(("bench",), f"i{number}", {"text": text})
                ctx.log(f"  InMemoryStore filled with {len(texts)} in {time.perf_counter() - t:.1f}s")
                peer = []
                for query in queries[:peer_runs]:
                    started = time.perf_counter()
                    store.search(("bench",), query=query, limit=5)
                    peer.append(time.perf_counter() - started)
                figures["inmemorystore_search"] = summarize_ms(peer)
                figures["speedup_vs_inmemorystore_p95"] = round(
                    figures["inmemorystore_search"]["p95_ms"] / figures["recall"]["p95_ms"], 1
                )
            per_size[str(size)] = figures
            line = (
                f"p50 {figures['recall_plus_record']['p50_ms']:.2f} / p95 {figures['recall_plus_record']['p95_ms']:.2f} ms"
                f" (record p95 {figures['record']['p95_ms']:.2f} ms; run undecorated p50 "
                f"{figures['undecorated']['p50_ms']:.2f} ms, decorated p50 {figures['decorated']['p50_ms']:.2f} ms)"
            )
            result.row(f"recall+record, {size:>7,} insights", line)
            if "inmemorystore_search" in figures:
                peer_figures = figures["inmemorystore_search"]
                result.row(
                    f"InMemoryStore search, {size:>7,}",
                    f"p50 {peer_figures['p50_ms']:.1f} / p95 {peer_figures['p95_ms']:.1f} ms",
                )
    finally:
        memory.close()
    top = per_size[str(sizes[-1])]
    result.figures = {"sizes": per_size, "runs": runs, "peer_runs": peer_runs, "namespace": list(NAMESPACE)}
    result.target("recall+record p95 at 100k insights", top["recall_plus_record"]["p95_ms"], "<=", 20.0, " ms")
    result.target("record p95 per run", max(f["record"]["p95_ms"] for f in per_size.values()), "<=", 2.0, " ms")
    result.target(
        "speed-up over InMemoryStore search at 100k (p95)", top["speedup_vs_inmemorystore_p95"], ">=", 10.0, "x"
    )
    result.notes.append(
        "recall+record is timed inside decorated runs (DreamMemory.recall + the ledger write); the run's "
        "end-to-end difference against the undecorated graph is reported beside it (added_p50/p95_ms)"
    )
    result.notes.append(
        "stored insight vectors are scattered around real embeddings of their texts (noise 0.02), queries are "
        "embedded for real; the InMemoryStore peer is given the same vectors and the same query embedder"
    )
    return result


def _insight_texts_and_vectors(memory) -> tuple[list[str], np.ndarray]:
    insights, vectors = memory.ledger.insights_with_vectors(NAMESPACE, [InsightStatus.ACTIVE])
    return [i.text for i in insights], vectors
