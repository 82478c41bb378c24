"""The dream pass on real HotpotQA episodes: provenance, the journal, crash and rerun, twins."""

from __future__ import annotations

import asyncio
import json

import pytest

from langdream import (
    DreamMemory,
    ExtractiveReflector,
    InsightOrigin,
    InsightStatus,
    ReflectionError,
    UnknownNamespaceError,
)
from langdream.ledger import LedgerConflict
from langdream.testing import FakeReflectionModel
from tests.conftest import write_jsonl

QUESTIONS = 24  # questions whose runs a test ingests (about 240 real episodes)


@pytest.fixture(scope="module")
def sample(hotpotqa_records: list[dict]) -> list[dict]:
    """Every run of the first QUESTIONS questions of the shipped sample."""
    ids = sorted({r["metadata"]["question_id"] for r in hotpotqa_records})[:QUESTIONS]
    return [r for r in hotpotqa_records if r["metadata"]["question_id"] in ids]


def load(memory: DreamMemory, records: list[dict], tmp_path, namespace: str = "hotpotqa") -> None:
    path = write_jsonl(tmp_path / f"{namespace}.jsonl", [{**r, "namespace": [namespace]} for r in records])
    report = memory.ingest(path)
    assert not report.errors and report.added == len(records)


class CountingReflector(ExtractiveReflector):
    """The extractive reflector, counting calls and optionally failing on chosen clusters."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.calls: list[int] = []
        self.fail_on = fail_on or set()

    def reflect(self, view):
        self.calls.append(view.index)
        if view.index in self.fail_on:
            raise ReflectionError(f"simulated failure on cluster {view.index}")
        return super().reflect(view)


def snapshot(memory: DreamMemory) -> list[tuple]:
    return sorted((i.id, i.version, i.status.value, i.text, tuple(i.evidence)) for i in memory.insights(status="all"))


def test_dream_writes_insights_with_provenance(memory, sample, tmp_path):
    load(memory, sample, tmp_path)
    (report,) = memory.dream("hotpotqa")

    assert report.episodes == len(sample) and report.clusters > 0 and report.added > 0
    assert report.job_id and report.model_id == "langdream-extractive" and report.prompt_version == "extractive-v1"
    job = memory.ledger.get_job(report.job_id)
    assert job.status == "done"
    clustered = {i for ids in job.clusters for i in ids}
    by_id = {e.id: e for e in memory.episodes("hotpotqa", limit=10_000)}
    insights = memory.insights("hotpotqa", status="all")
    assert any(i.status is InsightStatus.ACTIVE for i in insights)
    for insight in insights:
        assert insight.origin is InsightOrigin.EXTRACTIVE and insight.display_text().endswith("[extractive]")
        assert insight.evidence and set(insight.evidence) <= clustered
        assert insight.support == len(insight.evidence)
        assert insight.threads == len({by_id[e].thread_id for e in insight.evidence})
        assert insight.job_id == report.job_id and insight.namespace == ("hotpotqa",)
        if insight.status is InsightStatus.ACTIVE:
            assert insight.support >= 3 and insight.threads >= 2 and insight.confidence >= 0.6
        history = memory.history(insight.id)
        assert [v.version for v in history] == list(range(1, insight.version + 1))
        assert history[0].action.value == "add" and history[-1].evidence == insight.evidence
    # Every clustered episode is consolidated by this job; unclustered ones wait for company.
    for episode_id in clustered:
        assert by_id[episode_id].consolidated_by == report.job_id
    for episode_id in job.noise:
        assert by_id[episode_id].consolidated_by is None


def test_contrast_insights_cite_runs_whose_behaviour_differs_by_outcome(memory, sample, tmp_path):
    load(memory, sample, tmp_path)
    memory.dream("hotpotqa")
    contrasts = [i for i in memory.insights("hotpotqa", status="all") if (i.signature or "").startswith("contrast:")]
    assert contrasts
    for insight in contrasts:
        stats = insight.stats
        assert stats["successes"] + stats["failures"] >= insight.support
        outcomes = {e.outcome.success for e in memory.ledger.get_episodes(insight.evidence)}
        assert outcomes == {True, False}, "a contrast cites both the runs that worked and the runs that did not"


def test_rerunning_a_finished_dream_changes_nothing(memory, sample, tmp_path):
    load(memory, sample, tmp_path)
    memory.dream("hotpotqa")
    before = snapshot(memory)
    assert memory.dream() == []  # no namespace has pending episodes
    again = memory.ingest(write_jsonl(tmp_path / "again.jsonl", [{**r, "namespace": ["hotpotqa"]} for r in sample]))
    assert again.added == 0 and again.duplicates == len(sample)  # importing the same episodes stores nothing
    assert memory.ledger.count_episodes() == len(sample)
    assert snapshot(memory) == before


def test_a_crash_before_apply_is_resumed_without_duplicates(make_memory, sample, tmp_path, monkeypatch):
    reference = make_memory(reflector=ExtractiveReflector())
    load(reference, sample, tmp_path)
    reference.dream("hotpotqa")

    reflector = CountingReflector()
    memory = make_memory(reflector=reflector)
    load(memory, sample, tmp_path)
    commit = memory.ledger.commit_dream

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed between the journal and the apply transaction")

    monkeypatch.setattr(memory.ledger, "commit_dream", crash)
    with pytest.raises(KeyboardInterrupt):
        memory.dream("hotpotqa")
    (job,) = memory.ledger.open_jobs(("hotpotqa",))
    assert len(memory.ledger.job_outputs(job.id)) == len(job.clusters)  # every reflection journaled
    assert memory.insights(status="all") == [] and memory.ledger.count_episodes(pending=True) == len(sample)

    monkeypatch.setattr(memory.ledger, "commit_dream", commit)
    calls_before = len(reflector.calls)
    (report,) = memory.dream("hotpotqa")

    assert report.resumed and report.job_id == job.id
    assert len(reflector.calls) == calls_before, "stored reflections are reused, not asked for again"
    assert snapshot(memory) == snapshot(reference)


def test_a_failed_reflection_keeps_the_others_and_reflects_only_the_missing_one(make_memory, sample, tmp_path):
    reflector = CountingReflector(fail_on={1})
    memory = make_memory(reflector=reflector)
    load(memory, sample, tmp_path)

    (parked,) = memory.dream("hotpotqa")
    assert parked.parked and "1 of" in parked.parked and "simulated failure on cluster 1" in parked.parked
    assert "parked" in parked.summary() and parked.added == 0
    (job,) = memory.ledger.open_jobs(("hotpotqa",))
    assert job.status == "parked" and job.parked_reason == parked.parked
    assert [j.id for j in memory.ledger.parked_jobs()] == [job.id]
    assert set(memory.ledger.job_outputs(job.id)) == set(range(len(job.clusters))) - {1}
    assert memory.insights(status="all") == []  # nothing applied: not "nothing learned", just not yet

    reflector.fail_on.clear()
    reflector.calls.clear()
    (report,) = memory.dream("hotpotqa")
    assert reflector.calls == [1] and report.resumed and report.added > 0 and report.parked is None
    assert memory.ledger.get_job(job.id).status == "done" and memory.ledger.get_job(job.id).attempts == 2


def test_an_apply_that_lost_a_race_writes_nothing(memory, sample, tmp_path, monkeypatch):
    load(memory, sample, tmp_path)
    first = sample[0]["id"]
    real_commit = memory.ledger.commit_dream

    def feedback_arrives_first(job_id, writes, consolidated, report, clusters, lease_owner):
        memory.feedback(first, success=False)  # the episode's revision changes under the dream
        return real_commit(job_id, writes, consolidated, report, clusters, lease_owner)

    monkeypatch.setattr(memory.ledger, "commit_dream", feedback_arrives_first)
    (report,) = memory.dream("hotpotqa")
    assert report.skipped and "input changed" in report.skipped
    assert memory.insights(status="all") == []
    assert memory.ledger.count_episodes(pending=True) == len(sample)
    with pytest.raises(LedgerConflict):
        real_commit(report.job_id, [], [], report)

    monkeypatch.setattr(memory.ledger, "commit_dream", real_commit)
    (report,) = memory.dream("hotpotqa")
    assert report.added > 0 and not report.skipped


def test_namespaces_are_dreamed_separately(memory, sample, tmp_path):
    half = len(sample) // 2
    load(memory, sample[:half], tmp_path, namespace="acme")
    load(memory, [{**r, "id": r["id"] + "-corp"} for r in sample[half:]], tmp_path, namespace="acme-corp")
    reports = {r.namespace: r for r in memory.dream()}
    assert set(reports) == {("acme",), ("acme-corp",)}
    acme_ids = {e.id for e in memory.episodes("acme", limit=10_000)}
    for insight in memory.insights("acme", status="all"):
        assert set(insight.evidence) <= acme_ids
    for insight in memory.insights("acme-corp", status="all"):
        assert not set(insight.evidence) & acme_ids
    with pytest.raises(UnknownNamespaceError) as caught:
        memory.dream("acme-c")
    assert "acme" in caught.value.hint


def test_async_dream_gives_the_same_insights_as_sync(make_memory, sample, tmp_path):
    sync_memory, async_memory = make_memory(), make_memory()
    load(sync_memory, sample, tmp_path)
    load(async_memory, sample, tmp_path)
    sync_memory.dream("hotpotqa")
    asyncio.run(async_memory.adream("hotpotqa"))
    assert snapshot(sync_memory) == snapshot(async_memory)


def test_llm_reflection_uses_structured_output_and_sees_nearby_insights(make_memory, sample, tmp_path):
    model = FakeReflectionModel()
    memory = make_memory(model=model)
    load(memory, sample, tmp_path)
    (report,) = memory.dream("hotpotqa")

    assert report.model_id == "FakeReflectionModel:fake-reflection" and report.prompt_version == "reflect-v1"
    mixed = [p for p in model.prompts if p.successes and p.failures]
    assert mixed and report.added + report.upvoted >= len(mixed)
    llm = memory.insights("hotpotqa", status="all")
    assert llm and all(i.origin is InsightOrigin.LLM for i in llm)
    # The raw model output is journaled before it is applied.
    outputs = memory.ledger.job_outputs(report.job_id)
    raws = [json.loads(raw) for raw, _ in outputs.values()]
    assert any(r["tool_calls"] and r["tool_calls"][0]["name"] == "ReflectionOutput" for r in raws)

    # A second batch of the same questions: the reflector is shown the existing insight and upvotes it.
    more = [{**r, "id": r["id"] + "-again", "thread_id": r["thread_id"] + "-again"} for r in sample]
    load(memory, more, tmp_path, namespace="hotpotqa")
    prompts_before = len(model.prompts)
    (second,) = memory.dream("hotpotqa")
    later = model.prompts[prompts_before:]
    assert any(p.insights for p in later)
    assert second.upvoted > 0 and second.added == 0


def test_evidence_outside_the_cluster_and_unknown_targets_are_dropped(make_memory, sample, tmp_path):
    def sloppy(prompt):
        shown = [e.id for e in prompt.episodes]
        return {
            "operations": [
                {"action": "add", "claim": "Verify each entity.", "evidence": [*shown, "ep-from-elsewhere"], "confidence": 0.9},
                {"action": "retire", "insight_id": "ins_never_shown", "evidence": [], "confidence": 0.9},
                {"action": "add", "claim": "Unsupported.", "evidence": ["ep-from-elsewhere"], "confidence": 0.9},
            ]
        }

    memory = make_memory(model=FakeReflectionModel(responder=sloppy))
    questions = sorted({r["metadata"]["question_id"] for r in sample})[:3]
    load(memory, [r for r in sample if r["metadata"]["question_id"] in questions], tmp_path)
    memory.dream("hotpotqa")
    recorded = {e.id for e in memory.episodes("hotpotqa", limit=10_000)}
    insights = memory.insights("hotpotqa", status="all")
    assert insights and all(set(i.evidence) <= recorded for i in insights)
    assert not any(i.text == "Unsupported." for i in insights)
