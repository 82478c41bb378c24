"""Incremental dreams: lasting clusters that new episodes join, refresh rules, and the token budget."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np
import pytest

from langdream import DreamMemory
from langdream.testing import FakeReflectionModel
from tests.conftest import write_jsonl

QUESTIONS = 12
NS = ("hotpotqa",)


@pytest.fixture(scope="module")
def runs_by_question(hotpotqa_records: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for record in hotpotqa_records:
        grouped[record["metadata"]["question_id"]].append(record)
    chosen = sorted(q for q, runs in grouped.items() if len(runs) >= 8)[:QUESTIONS]
    return {q: grouped[q] for q in chosen}


def ingest(memory: DreamMemory, records: list[dict], tmp_path, name: str) -> None:
    path = write_jsonl(tmp_path / f"{name}.jsonl", [{**r, "namespace": list(NS)} for r in records])
    report = memory.ingest(path)
    assert not report.errors and report.added == len(records)


def first_and_rest(runs_by_question: dict[str, list[dict]], first: int) -> tuple[list[dict], dict[str, list[dict]]]:
    head = [r for runs in runs_by_question.values() for r in runs[:first]]
    return head, {q: runs[first:] for q, runs in runs_by_question.items()}


def episode_id(memory: DreamMemory, record: dict) -> str:
    episode = memory.ledger.get_episode(record["id"])
    assert episode is not None
    return episode.id


def test_new_episodes_join_lasting_clusters_and_only_those_are_reflected(make_memory, runs_by_question, tmp_path):
    memory = make_memory(model=FakeReflectionModel())
    head, rest = first_and_rest(runs_by_question, 5)
    ingest(memory, head, tmp_path, "head")
    (first,) = memory.dream(NS)
    assert first.clusters > 0 and first.joined == 0
    before = {c.id: c.size for c in memory.ledger.clusters(NS)}
    assert sum(before.values()) == memory.ledger.count_episodes(NS, pending=False)

    question, newcomers = next((q, runs[:3]) for q, runs in rest.items() if len(runs) >= 3)
    ingest(memory, newcomers, tmp_path, "newcomers")
    (second,) = memory.dream(NS)

    assert second.joined == 3 and second.waiting == 0
    job = memory.ledger.get_job(second.job_id)
    assert len(job.cluster_ids) == 1 and job.cluster_ids[0] in before  # an existing cluster, nothing else
    new_ids = {episode_id(memory, r) for r in newcomers}
    assert new_ids <= set(job.clusters[0])  # shown with earlier members for context
    assert len(job.clusters[0]) > len(new_ids)
    assert memory.ledger.count_episodes(NS, pending=True) == 0
    after = {c.id: c.size for c in memory.ledger.clusters(NS)}
    assert after[job.cluster_ids[0]] == before[job.cluster_ids[0]] + 3
    assert {k: v for k, v in after.items() if k != job.cluster_ids[0]} == {
        k: v for k, v in before.items() if k != job.cluster_ids[0]
    }


def test_a_lone_newcomer_waits_for_company_and_stays_pending(make_memory, runs_by_question, tmp_path):
    memory = make_memory(model=FakeReflectionModel())
    head, rest = first_and_rest(runs_by_question, 5)
    ingest(memory, head, tmp_path, "head")
    memory.dream(NS)
    lone = next(runs[:1] for runs in rest.values() if runs)
    ingest(memory, lone, tmp_path, "lone")

    (report,) = memory.dream(NS)

    assert report.waiting == 1 and report.joined == 0 and report.clusters == 0
    assert memory.ledger.get_episode(episode_id(memory, lone[0])).consolidated_by is None
    (again,) = memory.dream(NS)
    assert again.skipped  # nothing new: it keeps waiting without another job


def test_feedback_on_a_member_refreshes_its_cluster_without_counting_it_twice(make_memory, runs_by_question, tmp_path):
    model = FakeReflectionModel()
    memory = make_memory(model=model)
    head, _ = first_and_rest(runs_by_question, 6)
    ingest(memory, head, tmp_path, "head")
    memory.dream(NS)
    target = episode_id(memory, head[0])
    (cluster_id,) = memory.ledger.cluster_of([target]).values()
    size = {c.id: c.size for c in memory.ledger.clusters(NS)}[cluster_id]
    shown_before = len(model.prompts)

    memory.feedback(target, success=not memory.ledger.get_episode(target).outcome.success)
    (report,) = memory.dream(NS)

    job = memory.ledger.get_job(report.job_id)
    assert job.cluster_ids == [cluster_id]
    assert any(e.id == target for e in model.prompts[shown_before].episodes)
    assert {c.id: c.size for c in memory.ledger.clusters(NS)}[cluster_id] == size
    assert memory.ledger.get_episode(target).consolidated_by == report.job_id


def test_the_token_budget_is_respected_and_deferred_clusters_wait(make_memory, runs_by_question, tmp_path):
    records = [r for runs in runs_by_question.values() for r in runs]
    unbounded = make_memory(model=FakeReflectionModel())
    ingest(unbounded, records, tmp_path, "all-a")
    (full,) = unbounded.dream(NS)
    spent_full = full.tokens_in + full.tokens_out
    assert full.llm_calls == full.clusters > 2 and full.tokens_in > 0 and full.tokens_out > 0

    budget = spent_full // 3
    limited = make_memory(model=FakeReflectionModel(), dream_token_budget=budget)
    ingest(limited, records, tmp_path, "all-b")
    (report,) = limited.dream(NS)

    assert 0 < report.tokens_in + report.tokens_out <= budget
    assert report.deferred > 0 and report.llm_calls + report.deferred == report.clusters
    assert limited.ledger.count_episodes(NS, pending=True) > 0  # the deferred clusters' episodes wait

    roomy = make_memory(limited.home, model=FakeReflectionModel())
    limited.close()
    (rest,) = roomy.dream(NS)
    assert rest.clusters > 0 and rest.deferred == 0


def test_async_dream_respects_the_token_budget_too(make_memory, runs_by_question, tmp_path):
    records = [r for runs in runs_by_question.values() for r in runs]
    memory = make_memory(model=FakeReflectionModel(latency=0.01), dream_token_budget=4000, reflect_concurrency=3)
    ingest(memory, records, tmp_path, "all")

    (report,) = asyncio.run(memory.adream(NS))

    assert 0 < report.tokens_in + report.tokens_out <= 4000
    assert report.deferred > 0


def test_a_later_dream_reflects_the_clusters_a_budget_deferred(make_memory, runs_by_question, tmp_path):
    records = [r for runs in runs_by_question.values() for r in runs]
    memory = make_memory(model=FakeReflectionModel(), dream_token_budget=6000)
    ingest(memory, records, tmp_path, "all")
    (first,) = memory.dream(NS)
    assert first.deferred > 0 and first.llm_calls > 0

    waiting = memory.ledger.count_episodes(NS, pending=True)

    (second,) = memory.dream(NS)  # a fresh budget for the clusters left over

    assert not second.skipped and second.llm_calls > 0
    assert memory.ledger.count_episodes(NS, pending=True) < waiting


def test_a_budget_too_small_for_any_cluster_says_so(make_memory, runs_by_question, tmp_path):
    records = [r for runs in runs_by_question.values() for r in runs]
    memory = make_memory(model=FakeReflectionModel(), dream_token_budget=10)
    ingest(memory, records, tmp_path, "all")
    (first,) = memory.dream(NS)
    assert first.llm_calls == 0 and first.deferred == first.clusters > 0

    (second,) = memory.dream(NS)

    assert second.skipped and "dream_token_budget=10" in second.skipped and "raise it" in second.skipped
    roomy = make_memory(memory.home, model=FakeReflectionModel(), dream_token_budget=100_000)
    memory.close()
    (third,) = roomy.dream(NS)  # the same input under a larger budget is tried again
    assert third.job_id == f"{first.job_id}-1" and third.llm_calls == third.clusters > 0


def test_reindex_recomputes_the_lasting_clusters_from_the_new_vectors(make_memory, runs_by_question, tmp_path):
    memory = make_memory(model=FakeReflectionModel())
    head, _ = first_and_rest(runs_by_question, 5)
    ingest(memory, head, tmp_path, "head")
    memory.dream(NS)
    before = {c.id: c.vector_sum.copy() for c in memory.ledger.clusters(NS)}
    memory.ledger.set_cluster_sums({cluster_id: np.zeros_like(total) for cluster_id, total in before.items()})

    memory.reindex()

    after = {c.id: c.vector_sum for c in memory.ledger.clusters(NS)}
    assert after.keys() == before.keys()
    assert all(np.allclose(after[i], before[i], atol=1e-4) for i in before)


def test_jobs_journaled_before_lasting_clusters_still_load(memory):
    import sqlite3

    memory.ledger.get_meta("schema_version")  # the ledger file exists
    with sqlite3.connect(memory.ledger.path) as db:
        db.execute(
            "INSERT INTO dream_jobs (id, namespace, status, episodes, clusters, noise, prompt_version, model_id, "
            "created_at, updated_at) VALUES (?, ?, 'done', ?, ?, '[]', 'reflect-v1', 'm', 0, 0)",
            ("dj_old", '["ns"]', '[["e1", 0]]', '[["e1", "e2"]]'),
        )
    job = memory.ledger.get_job("dj_old")
    assert job.clusters == [["e1", "e2"]] and job.cluster_ids == ["cl_old_0"]
