"""Recall: relevance, active-only, exact namespaces, the token budget, the ledger's last word."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from langdream import DreamJob, DreamMemory, Embedder, InsightAction, InsightStatus, count_tokens
from langdream.ledger import InsightWrite
from langdream.recall import HEADER, freshness
from langdream.types import DreamReport, utcnow
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def learned(tmp_path_factory, embedder, hotpotqa_records) -> DreamMemory:
    """A memory that dreamed over every shipped HotpotQA run, in namespace ("hotpotqa",)."""
    home = tmp_path_factory.mktemp("learned")
    memory = DreamMemory(home / "home", embedder=embedder)
    memory.ingest(write_jsonl(home / "runs.jsonl", hotpotqa_records))
    memory.dream("hotpotqa")
    yield memory
    memory.close()


TENNIS = "Who was born first, Serena Williams or Venus Williams?"


def test_recall_returns_active_insights_of_the_namespace_with_the_text_a_run_sees(learned):
    recall = learned.recall(TENNIS, "hotpotqa")
    assert recall.insights and recall.text.startswith(HEADER)
    for position, recalled in enumerate(recall.insights, start=1):
        insight = recalled.insight
        assert insight.status is InsightStatus.ACTIVE and insight.namespace == ("hotpotqa",)
        assert f"{position}. {insight.text}" in recall.text
        assert recalled.similarity >= learned.settings.recall_min_similarity
    scores = [r.score for r in recall.insights]
    assert scores == sorted(scores, reverse=True)
    assert recall.tokens == count_tokens(recall.text) <= learned.settings.recall_token_budget
    assert recall.insight_ids == [r.insight.id for r in recall.insights]


def test_a_close_past_task_brings_its_own_lessons(learned, hotpotqa_records):
    tennis = next(r["task"] for r in hotpotqa_records if "tennis player was born first" in r["task"])
    recall = learned.recall(tennis, "hotpotqa")
    tennis_runs = {r["id"] for r in hotpotqa_records if r["task"] == tennis}
    assert any(set(r.insight.evidence) & tennis_runs for r in recall.insights)


def test_general_lessons_reach_unrelated_tasks_but_never_other_namespaces(learned):
    general = learned.ledger.general_insights(("hotpotqa",), learned.settings.general_min_tasks, 10)
    assert general and all(i.tasks >= learned.settings.general_min_tasks for i in general)
    recall = learned.recall("Which river flows through the capital of the country that hosted Expo 2015?", "hotpotqa")
    assert {r.insight.id for r in recall.insights} & {i.id for i in general}
    for other in ["hotpot", "hotpotqa/x", "default"]:
        assert learned.recall(TENNIS, other).insights == []


def test_k_and_the_token_budget_are_respected(learned):
    assert len(learned.recall(TENNIS, "hotpotqa", k=1).insights) == 1
    full = learned.recall(TENNIS, "hotpotqa", k=5, token_budget=2000)
    tight_budget = count_tokens(HEADER) + 40
    tight = learned.recall(TENNIS, "hotpotqa", k=5, token_budget=tight_budget)
    assert len(tight.insights) < len(full.insights)
    assert tight.tokens <= tight_budget
    assert learned.recall(TENNIS, "hotpotqa", token_budget=5).text == ""


def test_async_recall_equals_sync(learned):
    sync = learned.recall(TENNIS, "hotpotqa")
    asynchronous = asyncio.run(learned.arecall(TENNIS, "hotpotqa"))
    assert asynchronous.model_dump() == sync.model_dump()


def test_a_namespace_without_insights_recalls_without_loading_the_model(make_memory):
    cold = Embedder()
    memory = make_memory(embedder=cold)
    assert memory.recall("anything at all", ("acme", "u1")).insights == []
    assert not cold.loaded


def test_the_ledger_has_the_last_word_over_a_stale_index(make_memory, hotpotqa_records, tmp_path):
    memory = make_memory()
    questions = sorted({r["metadata"]["question_id"] for r in hotpotqa_records})[:12]
    memory.ingest(write_jsonl(tmp_path / "r.jsonl", [r for r in hotpotqa_records if r["metadata"]["question_id"] in questions]))
    memory.dream("hotpotqa")
    task = next(r["task"] for r in hotpotqa_records if r["metadata"]["question_id"] == questions[0])
    recall = memory.recall(task, "hotpotqa", k=10)
    assert recall.insights
    target = recall.insights[0].insight

    # Retire it in the ledger only; the index still holds it (as after a crash before the sync).
    retired = target.model_copy(
        update={"status": InsightStatus.RETIRED, "version": target.version + 1, "updated_at": utcnow()}
    )
    job = DreamJob(id="dj_manual", namespace=target.namespace)
    memory.ledger.create_job(job)
    memory.ledger.commit_dream(job.id, [InsightWrite(retired, InsightAction.RETIRE, None)], [], DreamReport(namespace=target.namespace))
    assert target.id in memory.index.insight_ids()

    assert target.id not in memory.recall(task, "hotpotqa", k=10).insight_ids
    memory.dream("hotpotqa")  # a dream brings the index up to date first
    assert target.id not in memory.index.insight_ids()


def test_freshness_halves_per_half_life_and_has_a_floor():
    now = utcnow()
    assert freshness(now, now, 90) == 1.0
    assert freshness(now - timedelta(days=90), now, 90) == pytest.approx(0.5)
    assert freshness(now - timedelta(days=3650), now, 90) == 0.25
