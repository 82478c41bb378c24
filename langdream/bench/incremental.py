"""Incremental dreams: 10k consolidated + 100 new episodes, against a full dream over all 10,100.

Both dreams use the same fixed-latency fake LLM, the same embedder and the same settings; each
starts from its own data home. The incremental dream pays for what is new: the new episodes are
embedded, join the lasting clusters of the earlier dream, and only clusters that gained enough
new members are reflected on again.
"""

from __future__ import annotations

import time

from langdream.bench.common import BenchContext, SectionResult
from langdream.bench.dreaming import LATENCY_SECONDS, episodes_for, fixed_latency_model, request_texts

NAMESPACE = ("bench", "incremental")


def _memory(ctx: BenchContext, name: str):
    from langdream.memory import DreamMemory

    return DreamMemory(ctx.scratch(name), embedder=ctx.embedder, model=fixed_latency_model())


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("incremental")
    old_count, new_count = 10_000, 100
    train = request_texts(ctx, "train")
    test = request_texts(ctx, "test")
    old = episodes_for([train[i % len(train)] for i in range(old_count)], NAMESPACE, prefix="old", seed=ctx.seed)
    new = episodes_for(test[:new_count], NAMESPACE, prefix="new", seed=ctx.seed + 1)

    incremental = _memory(ctx, "incremental")
    full = _memory(ctx, "full")
    try:
        incremental.ledger.add_episodes(old)
        started = time.perf_counter()
        (first,) = incremental.dream(NAMESPACE)
        ctx.log(f"  first dream over {old_count}: {time.perf_counter() - started:.1f}s ({first.summary()})")
        incremental.ledger.add_episodes(new)
        started = time.perf_counter()
        (report_inc,) = incremental.dream(NAMESPACE)
        seconds_inc = time.perf_counter() - started

        full.ledger.add_episodes(old + new)
        started = time.perf_counter()
        (report_full,) = full.dream(NAMESPACE)
        seconds_full = time.perf_counter() - started
    finally:
        incremental.close()
        full.close()

    def figures(report, seconds: float) -> dict:
        return {
            "seconds": round(seconds, 3),
            "episodes": report.episodes,
            "clusters_reflected": report.clusters,
            "joined": report.joined,
            "waiting": report.waiting,
            "noise": report.noise,
            "llm_calls": report.llm_calls,
            "tokens": report.tokens_in + report.tokens_out,
            "stages": {k: round(v, 3) for k, v in report.stage_seconds.items()},
        }

    result.figures = {
        "consolidated_before": old_count,
        "new": new_count,
        "latency_seconds": LATENCY_SECONDS,
        "first_dream": figures(first, 0.0) | {"seconds": None},
        "incremental": figures(report_inc, seconds_inc),
        "full": figures(report_full, seconds_full),
    }
    inc, whole = result.figures["incremental"], result.figures["full"]
    ratio = seconds_inc / seconds_full
    result.figures["cost_ratio"] = round(ratio, 4)
    result.figures["llm_call_ratio"] = round(inc["llm_calls"] / max(1, whole["llm_calls"]), 4)
    for name, f in (("full dream, 10,100 episodes", whole), ("incremental, 10k + 100 new", inc)):
        result.row(
            name,
            f"{f['seconds']:.2f}s; {f['clusters_reflected']} clusters reflected, {f['llm_calls']} LLM calls, "
            f"{f['tokens']} tokens; stages {f['stages']}",
        )
    result.row("new episodes that joined earlier clusters", f"{inc['joined']} (+{inc['waiting']} waiting for company)")
    result.target("incremental / full dream wall time", ratio, "<=", 0.05)
    result.notes.append(
        f"reflection is a fake LLM answering in {LATENCY_SECONDS}s at the default concurrency; "
        "episodes are CLINC150 requests with seeded outcomes"
    )
    return result
