"""Reflection fan-out and token cost: a dream of C clusters at concurrency c takes ~ceil(C/c)·L
with a fake LLM of fixed latency L; tokens in and out per insight and per 1k episodes; a per-dream
token budget is respected."""

from __future__ import annotations

import math

from langdream.bench.common import BenchContext, SectionResult
from langdream.bench.dreaming import LATENCY_SECONDS, episodes_for, fixed_latency_model, request_texts
from langdream.config import Settings

NAMESPACE = ("bench", "fanout")


def _dream(ctx: BenchContext, name: str, episodes, **settings):
    from langdream.memory import DreamMemory

    memory = DreamMemory(
        ctx.scratch(name), embedder=ctx.embedder, model=fixed_latency_model(), settings=Settings(**settings)
    )
    try:
        memory.ledger.add_episodes(episodes)
        (report,) = memory.dream(NAMESPACE)
        return report
    finally:
        memory.close()


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("fanout")
    texts = request_texts(ctx, "test")[: 600 if ctx.quick else 2000]
    episodes = episodes_for(texts, NAMESPACE, prefix="fan", seed=ctx.seed)
    runs = {}
    for concurrency in (1, 4, 8) if not ctx.quick else (2, 8):
        report = _dream(ctx, f"fanout-c{concurrency}", episodes, reflect_concurrency=concurrency)
        clusters = report.clusters
        ideal = math.ceil(clusters / concurrency) * LATENCY_SECONDS
        took = report.stage_seconds.get("reflect", 0.0)
        runs[str(concurrency)] = {
            "clusters": clusters,
            "reflect_seconds": round(took, 3),
            "ideal_seconds": round(ideal, 3),
            "ratio_to_ideal": round(took / ideal, 3) if ideal else None,
            "tokens_in": report.tokens_in,
            "tokens_out": report.tokens_out,
            "llm_calls": report.llm_calls,
            "insights_changed": len(report.insight_ids),
        }
        result.row(
            f"C={clusters} clusters at concurrency {concurrency}",
            f"reflect {took:.2f}s vs ceil(C/c)·L = {ideal:.2f}s (x{took / ideal:.2f})",
        )
        result.target(f"reflect time / ceil(C/c)·L at c={concurrency}", took / ideal, "<=", 1.25)
    base = runs[str(max(int(c) for c in runs))]
    tokens = base["tokens_in"] + base["tokens_out"]
    per_insight_in = base["tokens_in"] / max(1, base["insights_changed"])
    per_insight_out = base["tokens_out"] / max(1, base["insights_changed"])
    per_1k = tokens / len(episodes) * 1000
    result.row("tokens per insight changed", f"{per_insight_in:.0f} in, {per_insight_out:.0f} out")
    result.row("tokens per 1k episodes", f"{per_1k:.0f}")
    budget = max(1, tokens // 2)
    limited = _dream(ctx, "fanout-budget", episodes, reflect_concurrency=8, dream_token_budget=budget)
    spent = limited.tokens_in + limited.tokens_out
    result.row(
        f"dream_token_budget={budget}",
        f"spent {spent} tokens on {limited.llm_calls} reflections; {limited.deferred} clusters deferred",
    )
    result.target("tokens spent / dream_token_budget", spent / budget, "<=", 1.0)
    result.figures = {
        "latency_seconds": LATENCY_SECONDS,
        "episodes": len(episodes),
        "concurrency": runs,
        "tokens_per_insight": {"in": round(per_insight_in, 1), "out": round(per_insight_out, 1)},
        "tokens_per_1k_episodes": round(per_1k, 1),
        "budget": {"limit": budget, "spent": spent, "deferred": limited.deferred, "llm_calls": limited.llm_calls},
    }
    result.notes.append("tokens are counted with tiktoken (cl100k_base) over prompts and raw answers")
    return result
