"""The insight lifecycle: events, explain, review mode, churn caps, rollback, the drift guard."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langdream import (
    DreamMemory,
    Episode,
    InsightAction,
    InsightHold,
    InsightStatus,
    LifecycleError,
    Outcome,
)
from langdream.cli import app
from langdream.lifecycle import state_of
from langdream.testing import FakeReflectionModel
from tests.test_dream import load

NS = "hotpotqa"
QUESTIONS = 12


@pytest.fixture(scope="module")
def questions(hotpotqa_records: list[dict]) -> list[list[dict]]:
    """The runs of the first QUESTIONS questions whose runs both succeeded and failed, one list per
    question (10 runs: 5 trials x 2 variants), so every question's cluster has something to teach."""
    by_question: dict[str, list[dict]] = {}
    for record in hotpotqa_records:
        by_question.setdefault(record["metadata"]["question_id"], []).append(record)
    mixed = [
        runs for _, runs in sorted(by_question.items())
        if len({r["outcome"]["success"] for r in runs if r["outcome"].get("success") is not None}) == 2
    ]  # fmt: skip
    return mixed[:QUESTIONS]


def lesson_per_cluster(prompt):
    """One lesson per cluster with both outcomes, naming nothing the runs do not share, citing
    every success shown; an upvote when the cluster was shown its existing lesson."""
    if not prompt.successes or not prompt.failures:
        return {"operations": []}
    evidence = [e.id for e in prompt.successes]
    task = prompt.successes[0].text.splitlines()[0].removeprefix("Task: ")
    own = [i for i in prompt.insights if task in i.text]
    if own:
        return {"operations": [{"action": "upvote", "insight_id": own[0].id, "evidence": evidence, "confidence": 0.8}]}
    # The question itself: every run of the cluster shares it, so the claim stays grounded, and
    # lessons of different clusters read differently.
    return {
        "operations": [
            {
                "action": "add",
                "claim": f"Questions such as {task} need a search for each entity they name before answering.",
                "evidence": evidence,
                "confidence": 0.8,
            }
        ]
    }


def fake_model(responder=lesson_per_cluster) -> FakeReflectionModel:
    return FakeReflectionModel(responder=responder)


def insight_set(memory: DreamMemory) -> dict[str, dict]:
    return {i.id: state_of(i) for i in memory.insights(NS, status="all")}


def test_every_change_is_an_event_and_explain_shows_the_whole_chain(make_memory, questions, tmp_path):
    memory = make_memory(model=fake_model())
    load(memory, [r for q in questions for r in q], tmp_path)
    (report,) = memory.dream(NS)
    active = memory.insights(NS)
    assert active and report.added >= 1

    recorded = {e.id: e for e in memory.episodes(NS, limit=10_000)}
    for insight in active:  # 100% of active insights explain back to existing evidence
        explained = memory.explain(insight.id)
        assert explained.insight == insight
        assert [v.version for v in explained.versions] == list(range(1, insight.version + 1))
        seqs = [v.seq for v in explained.versions]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > 0
        first = explained.versions[0]
        assert first.action is InsightAction.ADD and first.actor == "dream" and first.cause
        assert first.job_id == report.job_id and first.model_id == report.model_id
        assert first.prompt_version == report.prompt_version
        assert {j.id for j in explained.jobs} == {v.job_id for v in explained.versions}
        assert explained.evidence and {e.id for e in explained.evidence} >= set(insight.evidence)
        for e in explained.evidence:
            assert e.id in recorded and e.task == recorded[e.id].task
            assert e.outcome == recorded[e.id].outcome.label
        assert explained.successes() + explained.failures() <= len(explained.evidence)

    runner = CliRunner()
    target = active[0].id
    shown = runner.invoke(app, ["--home", str(memory.home), "insights", "explain", target])
    assert shown.exit_code == 0, shown.output
    assert "versions:" in shown.output and "evidence:" in shown.output and report.job_id in shown.output
    as_json = json.loads(runner.invoke(app, ["--home", str(memory.home), "insights", "explain", target, "--json"]).stdout)
    assert as_json["insight"]["id"] == target and as_json["versions"][0]["actor"] == "dream"


def test_review_mode_holds_new_insights_until_a_person_acts(make_memory, questions, tmp_path):
    memory = make_memory(model=fake_model(), review_mode=True)
    load(memory, [r for q in questions for r in q], tmp_path)
    (report,) = memory.dream(NS)
    held = memory.review_queue(NS)
    assert report.added >= 3 and report.held.get("review") == report.added
    assert len(held) == report.added and all(i.hold is InsightHold.REVIEW for i in held)
    assert not memory.insights(NS) and not memory.recall(recorded_task(memory), NS).insights

    supported = [i for i in held if i.support >= 3 and i.threads >= 2]
    approved = memory.approve(supported[0].id, actor="person:alice", note="looks right")
    assert approved.status is InsightStatus.ACTIVE and approved.hold is None
    last = memory.history(approved.id)[-1]
    assert last.action is InsightAction.APPROVE and last.actor == "person:alice" and "looks right" in last.cause
    assert approved.id in memory.index.insight_ids()

    others = [i for i in held if i.id != approved.id]
    rejected = memory.reject(others[0].id, actor="person:bob")
    assert rejected.status is InsightStatus.REVOKED and rejected.remembered
    retired = memory.retire(others[1].id, actor="person:bob", note="too narrow")
    assert retired.status is InsightStatus.RETIRED and retired.remembered
    with pytest.raises(LifecycleError):
        memory.approve(retired.id)
    waiting = others[2:]
    assert {i.id for i in memory.review_queue(NS)} == {i.id for i in waiting}

    # The same through the CLI.
    runner = CliRunner()
    home = ["--home", str(memory.home)]
    listed = runner.invoke(app, [*home, "insights", "review", "--json"])
    assert listed.exit_code == 0 and {i["id"] for i in json.loads(listed.stdout)} == {i.id for i in waiting}
    if waiting:
        done = runner.invoke(app, [*home, "insights", "reject", waiting[0].id, "--note", "spam", "--actor", "person:eve"])
        assert done.exit_code == 0 and "revoked" in done.stdout
    refused = runner.invoke(app, [*home, "insights", "approve", retired.id])
    assert refused.exit_code == 1 and "hint:" in refused.output


def recorded_task(memory: DreamMemory) -> str:
    return memory.episodes(NS, limit=1)[0].task


def test_a_decision_on_an_insight_that_changed_meanwhile_writes_nothing(make_memory, questions, tmp_path):
    from langdream.lifecycle import approve

    memory = make_memory(model=fake_model(), review_mode=True)
    load(memory, [r for q in questions[:4] for r in q], tmp_path)
    memory.dream(NS)
    target = memory.review_queue(NS)[0]
    stale = approve(memory.ledger, memory.settings, target.id, "person:alice")  # decided on version N
    memory.retire(target.id, actor="person:bob")  # meanwhile someone else acts: version N + 1
    with pytest.raises(LifecycleError, match="changed while"):
        memory.ledger.write_insights([stale])
    assert memory.insight(target.id).status is InsightStatus.RETIRED
    assert memory.history(target.id)[-1].actor == "person:bob"


def test_churn_caps_hold_the_excess_for_review(make_memory, questions, tmp_path):
    memory = make_memory(model=fake_model(), max_new_per_dream=2)
    load(memory, [r for q in questions for r in q], tmp_path)
    (report,) = memory.dream(NS)
    assert report.added > 2
    held = [i for i in memory.insights(NS, status="quarantined") if i.hold is InsightHold.CHURN]
    assert report.held.get("churn") == len(held) == report.added - 2
    assert all("cap" in i.status_reason for i in held)


def test_a_rejected_edit_brings_the_approved_wording_back(make_memory, questions, tmp_path):
    def editor(prompt):
        if prompt.insights:
            target = prompt.insights[0].id
            evidence = [e.id for e in prompt.episodes]
            return {"operations": [{"action": "edit", "insight_id": target, "claim": "Search every entity twice.",
                                    "evidence": evidence, "confidence": 0.8}]}  # fmt: skip
        return lesson_per_cluster(prompt)

    memory = make_memory(model=fake_model(editor), review_mode=True)
    first = [r for q in questions for r in q]
    load(memory, first, tmp_path)
    memory.dream(NS)
    original = next(i for i in memory.review_queue(NS) if i.support >= 3 and i.threads >= 2)
    assert memory.approve(original.id).status is InsightStatus.ACTIVE

    again = [{**r, "id": r["id"] + "-again", "thread_id": r["thread_id"] + "-again"} for r in first]
    load(memory, again, tmp_path, namespace=NS)
    memory.dream(NS)
    edited = memory.insight(original.id)
    assert edited.text == "Search every entity twice." and edited.hold is InsightHold.REVIEW
    assert edited.status is InsightStatus.QUARANTINED

    restored = memory.reject(original.id)
    assert restored.text == original.text and restored.status is InsightStatus.ACTIVE and restored.hold is None
    assert memory.history(original.id)[-1].action is InsightAction.REJECT


def test_rollback_reproduces_a_past_dreams_insight_set_exactly(make_memory, questions, tmp_path):
    memory = make_memory(model=fake_model())
    load(memory, [r for q in questions[:6] for r in q], tmp_path)
    (first,) = memory.dream(NS)
    after_first = insight_set(memory)
    assert any(s["status"] is InsightStatus.ACTIVE for s in after_first.values())

    load(memory, [r for q in questions[6:] for r in q], tmp_path, namespace="hotpotqa")
    (second,) = memory.dream(NS)
    some = next(iter(after_first))
    memory.retire(some, note="a person changed their mind")
    after_second = insight_set(memory)
    assert after_second != after_first and set(after_second) > set(after_first)

    report = memory.rollback(first.job_id, actor="person:ops")
    now = insight_set(memory)
    assert {i: now[i] for i in after_first} == after_first
    later = set(now) - set(after_first)
    assert later and set(report.revoked) == later and all(now[i]["status"] is InsightStatus.REVOKED for i in later)
    active = {i for i, s in now.items() if s["status"] is InsightStatus.ACTIVE}
    assert memory.index.insight_ids() == active
    assert all(memory.history(i)[-1].actor == "person:ops" for i in report.restored + report.revoked)

    # Rolling forward to the second dream restores its set too (before the person's retire).
    memory.rollback(second.job_id)
    forward = insight_set(memory)
    expected = dict(after_second)
    expected[some] = next(
        state_of(v) for v in reversed(memory.history(some)) if v.action is not InsightAction.RETIRE and v.seq <= memory.ledger.get_job(second.job_id).committed_seq
    )
    assert forward == expected

    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(memory.home), "rollback", "--to-dream", first.job_id, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["to_dream"] == first.job_id
    assert {i: s for i, s in insight_set(memory).items() if i in after_first} == after_first
    jobs = runner.invoke(app, ["--home", str(memory.home), "jobs", "--json"])
    assert {first.job_id, second.job_id} <= {j["id"] for j in json.loads(jobs.stdout)}
    missing = runner.invoke(app, ["--home", str(memory.home), "rollback", "--to-dream", "dj_nope"])
    assert missing.exit_code == 1 and "hint:" in missing.output


def test_the_drift_guard_retires_a_harmful_insight_and_remembers_its_claim(make_memory, questions, tmp_path):
    memory = make_memory(model=fake_model(), drift_min_runs=8)
    base = [r for q in questions[:4] for r in q]
    load(memory, base, tmp_path)
    memory.dream(NS)
    harmful = max(memory.insights(NS), key=lambda i: i.support)
    sources = [r for r in base if r["id"] in harmful.evidence]

    # Later runs on the same tasks: those shown the insight fail, the others succeed.
    later = []
    for n in range(12):
        source = sources[n % len(sources)]
        for shown in (True, False):
            later.append(
                Episode.model_validate(
                    {**source, "id": f"{source['id']}-later-{n}-{shown}", "thread_id": f"later-{n}-{shown}",
                     "namespace": [NS], "outcome": {"success": not shown, "score": float(not shown)},
                     "injected_insight_ids": [harmful.id] if shown else []}  # fmt: skip
                )
            )
    for episode in later:
        memory.record(episode)
    reports = memory.dream(NS)
    retired = memory.insight(harmful.id)
    assert retired.status is InsightStatus.RETIRED and retired.remembered
    assert retired.status_reason.startswith("drift guard:") and reports[0].drift_retired >= 1
    effect = memory.explain(harmful.id).effect
    assert effect.shown >= 8 and effect.unshown >= 8 and effect.shown_successes == 0

    # The same claim proposed again later is not silently re-added: it waits for a person.
    def same_claim(prompt):
        evidence = [e.id for e in prompt.episodes]
        return {"operations": [{"action": "add", "claim": harmful.text, "evidence": evidence, "confidence": 0.9}]}

    returning = make_memory(memory.home, model=fake_model(same_claim))
    more = [{**r, "id": r["id"] + "-more", "thread_id": r["thread_id"] + "-more"} for r in sources * 2]
    more = list({r["id"]: r for r in more}.values())
    load(returning, more, tmp_path, namespace=NS)
    returning.dream(NS)
    comeback = [i for i in returning.insights(NS, status="all") if i.text == harmful.text and i.id != harmful.id]
    assert comeback and all(i.hold is InsightHold.RETIRED_CLAIM and i.status is InsightStatus.QUARANTINED for i in comeback)
    assert harmful.id in comeback[0].status_reason


def test_an_old_data_home_is_upgraded_in_place_without_losing_anything(tmp_path, embedder):
    home = tmp_path / "old"
    home.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "ledger-schema1.sqlite3", home / "ledger.sqlite3")
    before = sqlite3.connect(home / "ledger.sqlite3")
    counts = {t: before.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("episodes", "insights", "insight_versions")}
    before.close()
    with DreamMemory(home, embedder=embedder) as memory:
        assert memory.ledger.get_meta("schema_version") == "3"
        insights = memory.insights("v1", status="all")
        assert len(insights) == counts["insights"] and len(memory.episodes("v1", limit=1000)) == counts["episodes"]
        for insight in insights:
            history = memory.history(insight.id)
            assert history and all(v.seq > 0 and v.actor == "dream" for v in history)
            assert memory.explain(insight.id).evidence
        old_job = memory.jobs("v1")[0]
        with pytest.raises(LifecycleError):
            memory.rollback(old_job.id)
        episode = Episode(id="new-one", namespace=("v1",), task="A new task", outcome=Outcome(success=True))
        assert memory.record(episode)


def test_a_schema2_data_home_gains_parked_jobs_and_leases_and_keeps_dreaming(tmp_path, embedder):
    home = tmp_path / "v2"
    home.mkdir()
    # Written by the commit before schema 3 (one dream over 60 real HotpotQA runs).
    shutil.copy(Path(__file__).parent / "data" / "ledger-schema2.sqlite3", home / "ledger.sqlite3")
    with DreamMemory(home, embedder=embedder) as memory:
        assert memory.ledger.get_meta("schema_version") == "3"
        (job,) = memory.jobs("v2")
        assert job.status == "done" and job.parked_reason is None and job.attempts == 0
        active = memory.insights("v2")
        assert active and all(memory.explain(i.id).evidence for i in active)
        memory.reindex()  # its chroma index was not shipped with it
        assert memory.recall(memory.episodes("v2", limit=1)[0].task, "v2").insights
        assert memory.record(Episode(id="after-upgrade", namespace=("v2",), task="A new task", outcome=Outcome(success=True)))
        assert memory.ledger.leases() == []
