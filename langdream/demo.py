"""``langdream demo``: dream over real agent trajectories and show what was learned.

The data are real ReAct runs on HotpotQA from the Reflexion paper's logs (noahshinn/reflexion,
MIT, see ``_data/HOTPOTQA_REFLEXION_LICENSE``), converted to episodes by
``scripts/convert_hotpotqa.py`` and shipped inside the package. A few questions are held out
of the memory; the demo shows what a new run on them would be told.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from langdream.memory import DreamMemory
from langdream.types import Insight

NAMESPACE = ("hotpotqa",)
SAMPLE = "hotpotqa_react.jsonl.gz"


def sample_lines() -> list[str]:
    """The shipped episodes, one JSON line each."""
    path = resources.files("langdream") / "_data" / SAMPLE
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return [line for line in lines if line.strip()]


def split_held_out(lines: list[str], held_out: int) -> tuple[list[str], list[str]]:
    """Keep every run of ``held_out`` questions out of the memory (the same questions each time)."""
    questions = sorted({json.loads(line)["metadata"]["question_id"] for line in lines})
    # Spread the held-out questions over the set rather than taking its first few.
    step = max(1, len(questions) // held_out)
    hidden = set(questions[::step][:held_out])
    kept = [line for line in lines if json.loads(line)["metadata"]["question_id"] not in hidden]
    hidden_tasks = list(
        dict.fromkeys(json.loads(line)["task"] for line in lines if json.loads(line)["metadata"]["question_id"] in hidden)
    )
    return kept, hidden_tasks


def _outcomes(memory: DreamMemory, insight: Insight) -> str:
    evidence = memory.ledger.get_episodes(insight.evidence)
    wins = sum(1 for e in evidence if e.outcome.success is True)
    return f"{wins}✓ {len(evidence) - wins}✗"


def run_demo(
    out: Console,
    err: Console,
    *,
    home: Path | None,
    model: str | None,
    held_out: int,
    progress: Callable[[bool], AbstractContextManager[Callable[[str, int, int], None]]],
) -> None:
    started = time.perf_counter()
    home = Path(home) if home else Path(tempfile.mkdtemp(prefix="langdream-demo-"))
    lines = sample_lines()
    kept, hidden_tasks = split_held_out(lines, held_out)
    source = home / "hotpotqa_episodes.jsonl"
    home.mkdir(parents=True, exist_ok=True)
    source.write_text("".join(kept), encoding="utf-8")

    out.print(f"[bold]langdream demo[/bold]: real ReAct runs on HotpotQA (Reflexion logs, MIT), data home {home}")
    with DreamMemory(home, model=model) as memory:
        report = memory.ingest(source, namespace=NAMESPACE)
        outcomes = [json.loads(line)["outcome"]["success"] for line in kept]
        out.print(
            f"1. recorded {report.added} episodes ({sum(outcomes)} succeeded, {len(outcomes) - sum(outcomes)} failed); "
            f"{len(hidden_tasks)} questions held out"
        )
        out.print(f"2. dreaming with the {memory.reflector.origin.value} reflector ({memory.reflector.model_id})")
        with progress(True) as bars:
            (dream,) = memory.dream(NAMESPACE, progress=bars)
        out.print(f"   {dream.summary()}")
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in dream.stage_seconds.items())
        out.print(f"   stages: {stages}")

        insights = sorted(memory.insights(NAMESPACE, status="all"), key=lambda i: (-i.support, i.id))
        table = Table(
            "id", "status", "runs", "evidence ✓/✗", "conf.", "insight", title="3. what the agent learned (top 12 by support)"
        )
        for insight in insights[:12]:
            table.add_row(
                insight.id,
                insight.status.value,
                str(insight.support),
                _outcomes(memory, insight),
                f"{insight.confidence:.2f}",
                insight.display_text(),
            )
        out.print(table)
        if insights:
            top = insights[0]
            out.print(f"   provenance of {top.id}: {top.status_reason}; evidence episodes, e.g.:")
            for episode in memory.ledger.get_episodes(top.evidence[:3]):
                out.print(f"     {episode.id} ({episode.outcome.label}) {episode.task[:90]}", markup=False)

        out.print("4. what a new question's run would be told:")
        for task in hidden_tasks[:2]:
            recall = memory.recall(task, NAMESPACE)
            out.print(f"\n   [bold]question:[/bold] {task}")
            if recall.text:
                out.print(f"   ({len(recall.insights)} insights, {recall.tokens} tokens, shown as a system message)")
                out.print("   " + recall.text.replace("\n", "\n   "), markup=False)
            else:
                out.print("   nothing relevant was learned for this question")
    out.print(
        f"\ndone in {time.perf_counter() - started:.1f}s. Explore: langdream --home {home} insights list --status all"
    )
