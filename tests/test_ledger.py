"""The ledger, the transactional source of truth: every test runs on SQLite and on PostgreSQL,
except those about SQLite files themselves (WAL, file locks, bad files, data homes)."""

from __future__ import annotations

import os
import sqlite3
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from langdream import DreamMemory
from langdream.errors import DataHomeError, DataHomeLockedError, NotFoundError
from langdream.ledger import InsightWrite, Ledger, LedgerConflict, open_ledger
from langdream.ledger.postgres import PostgresLedger
from langdream.ledger.sqlite import SQLiteLedger
from langdream.namespace import namespace_key
from langdream.types import (
    DreamJob,
    DreamReport,
    Episode,
    Insight,
    InsightAction,
    InsightOrigin,
    InsightStatus,
    Message,
    Outcome,
    ToolCall,
)

NS = ("acme", "u1")


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a ledger lives: a SQLite file, or a URL naming a fresh schema of the test server."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def ledger(target):
    ledger = open_ledger(target)
    yield ledger
    ledger.close()


@pytest.fixture
def sqlite_ledger(tmp_path: Path):
    ledger = SQLiteLedger(tmp_path / "ledger.sqlite3")
    yield ledger
    ledger.close()


def episode(i: int | str, namespace=NS, **fields) -> Episode:
    data = {
        "id": f"ep-{i}",
        "namespace": namespace,
        "task": fields.pop("task", f"task number {i}"),
        "thread_id": fields.pop("thread_id", f"thread-{i}"),
        "run_id": fields.pop("run_id", f"run-{i}"),
    }
    data.update(fields)
    return Episode(**data)


def insight(iid: str, namespace=NS, *, evidence=(), version=1, status=InsightStatus.ACTIVE, **fields) -> Insight:
    return Insight(
        id=iid,
        namespace=namespace,
        text=fields.pop("text", f"lesson {iid}"),
        status=status,
        origin=InsightOrigin.EXTRACTIVE,
        evidence=list(evidence),
        support=len(evidence),
        version=version,
        **fields,
    )


def write(ins: Insight, action=InsightAction.ADD, vector=None) -> InsightWrite:
    if vector is None:
        rng = np.random.default_rng(zlib.crc32(ins.id.encode()))
        vector = rng.normal(size=8).astype(np.float32)
    return InsightWrite(insight=ins, action=action, vector=vector)


def make_job(ledger: Ledger, job_id: str, episodes: list[Episode], namespace=NS) -> DreamJob:
    job = DreamJob(
        id=job_id,
        namespace=namespace,
        episodes=[(e.id, e.revision) for e in episodes],
        clusters=[[e.id for e in episodes]],
        prompt_version="p1",
        model_id="extractive",
    )
    ledger.create_job(job)
    return job


def raw_rows(ledger: Ledger, sql: str) -> list[tuple]:
    """What a connection of its own (not the ledger's) reads from the ledger's database."""
    if isinstance(ledger, PostgresLedger):
        import psycopg

        with psycopg.connect(ledger.url, autocommit=True) as db:
            return db.execute(sql).fetchall()
    db = sqlite3.connect(ledger.path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def raw_count(ledger: Ledger, table: str) -> int:
    return raw_rows(ledger, f"SELECT COUNT(*) FROM {table}")[0][0]


# -- storage basics -------------------------------------------------------------------------------


def test_journal_mode_is_wal(sqlite_ledger, tmp_path):
    assert sqlite_ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # WAL is a property of the file: an independent connection sees it too.
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_add_episodes_reports_duplicates_and_stores_once(ledger):
    first = episode(1)
    assert ledger.add_episodes([first, episode(1, task="a different task, same id")]) == [True, False]
    assert ledger.count_episodes() == 1
    assert ledger.get_episode("ep-1").task == "task number 1"  # the first write wins
    assert ledger.add_episodes([first]) == [False]
    assert ledger.add_episodes([]) == []
    assert ledger.count_episodes() == 1


def test_episode_round_trip_keeps_every_field(ledger):
    created = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    original = episode(
        "full",
        messages=[
            Message(role="user", content="what is 2+2?"),
            Message(role="assistant", content="", tool_calls=[ToolCall(name="calc", args={"x": "2+2"}, id="c1")]),
            Message(role="tool", content="4", tool_call_id="c1", name="calc"),
            Message(role="assistant", content="4"),
        ],
        final_answer="4",
        outcome=Outcome(success=True, score=0.9, feedback="right"),
        created_at=created,
        injected_insight_ids=["ins-a"],
        metadata={"k": [1, 2], "ü": "ß"},
    )
    ledger.add_episodes([original])
    stored = ledger.get_episode("ep-full")
    assert stored.model_dump(exclude={"revision", "consolidated_by"}) == original.model_dump(
        exclude={"revision", "consolidated_by"}
    )
    assert stored.revision == 0
    assert stored.consolidated_by is None
    assert stored.created_at == created


def test_get_and_find_by_run_id(ledger):
    ledger.add_episodes([episode(1, run_id="run-x"), episode(2, run_id="run-y")])
    assert ledger.get_episode("ep-1").run_id == "run-x"
    assert ledger.get_episode("run-x") is None  # get is by episode id only
    assert ledger.find_episode("run-x").id == "ep-1"
    assert ledger.find_episode("ep-2").id == "ep-2"
    assert ledger.find_episode("nope") is None
    assert [e.id for e in ledger.get_episodes(["ep-2", "missing", "ep-1", "ep-2"])] == ["ep-2", "ep-1"]


def test_find_by_run_id_returns_latest(ledger):
    ledger.add_episodes([episode(1, run_id="shared"), episode(2, run_id="shared")])
    assert ledger.find_episode("shared").id == "ep-2"


def test_get_episodes_more_than_one_chunk(ledger):
    eps = [episode(i) for i in range(1203)]
    ledger.add_episodes(eps)
    ids = [e.id for e in reversed(eps)]
    assert [e.id for e in ledger.get_episodes(ids)] == ids


def test_list_and_count_with_namespace_and_pending_filters(ledger):
    other = ("acme", "u2")
    ledger.add_episodes([episode(i) for i in range(5)] + [episode(f"o{i}", namespace=other) for i in range(3)])
    assert ledger.count_episodes() == 8
    assert ledger.count_episodes(NS) == 5
    assert ledger.count_episodes(other) == 3
    assert ledger.count_episodes(NS, pending=True) == 5
    assert ledger.count_episodes(NS, pending=False) == 0

    job_eps = [ledger.get_episode(f"ep-{i}") for i in (0, 1)]
    make_job(ledger, "job-1", job_eps)
    ledger.commit_dream("job-1", [], [(e.id, e.revision) for e in job_eps], DreamReport(namespace=NS))

    assert ledger.count_episodes(NS, pending=True) == 3
    assert ledger.count_episodes(NS, pending=False) == 2
    assert ledger.count_episodes(pending=True) == 6
    assert {e.id for e in ledger.list_episodes(NS, pending=False)} == {"ep-0", "ep-1"}
    assert {e.id for e in ledger.list_episodes(NS, pending=True)} == {"ep-2", "ep-3", "ep-4"}
    # Newest first, with limit and offset.
    assert [e.id for e in ledger.list_episodes(NS)] == ["ep-4", "ep-3", "ep-2", "ep-1", "ep-0"]
    assert [e.id for e in ledger.list_episodes(NS, limit=2, offset=1)] == ["ep-3", "ep-2"]
    assert {e.id for e in ledger.list_episodes(other)} == {"ep-o0", "ep-o1", "ep-o2"}
    # pending_episodes: oldest first, this namespace only.
    assert [e.id for e in ledger.pending_episodes(NS, limit=2)] == ["ep-2", "ep-3"]


def test_namespaces_are_exact(ledger):
    spaces = [("u1",), ("u10",), ("u1", "x"), ("acme",), ("acme-corp",)]
    for n, ns in enumerate(spaces):
        ledger.add_episodes([episode(f"{n}-{j}", namespace=ns) for j in range(n + 1)])
    for n, ns in enumerate(spaces):
        listed = ledger.list_episodes(ns, limit=100)
        assert {e.namespace for e in listed} == {ns}
        assert len(listed) == n + 1
        assert ledger.count_episodes(ns) == n + 1
        assert all(e.id.startswith(f"ep-{n}-") for e in listed)
        assert ledger.has_namespace(ns)
        assert {e.id for e in ledger.pending_episodes(ns, 100)} == {e.id for e in listed}
    assert not ledger.has_namespace(("u",))
    assert not ledger.has_namespace(("u1", "x", "y"))
    assert ledger.count_episodes(("u100",)) == 0
    stats = {s.namespace: (s.episodes, s.pending) for s in ledger.namespaces()}
    assert stats == {ns: (n + 1, n + 1) for n, ns in enumerate(spaces)}


def test_insight_listing_is_namespace_exact(ledger):
    ledger.add_episodes([episode("a", namespace=("u1",)), episode("b", namespace=("u10",))])
    make_job(ledger, "j", [], namespace=("u1",))
    ledger.commit_dream(
        "j",
        [write(insight("i-u1", namespace=("u1",))), write(insight("i-u10", namespace=("u10",)))],
        [],
        DreamReport(namespace=("u1",)),
    )
    assert [i.id for i in ledger.list_insights(("u1",))] == ["i-u1"]
    assert [i.id for i in ledger.list_insights(("u10",))] == ["i-u10"]
    assert ledger.list_insights(("u1", "x")) == []
    assert ledger.has_insights(("u1",), InsightStatus.ACTIVE)
    assert not ledger.has_insights(("u1",), InsightStatus.RETIRED)
    assert not ledger.has_insights(("u1", "x"), InsightStatus.ACTIVE)
    assert ledger.has_insights(("u10",), InsightStatus.ACTIVE)


# -- outcomes -------------------------------------------------------------------------------------


def test_set_outcome_bumps_revision_and_requeues(ledger):
    ledger.add_episodes([episode(1)])
    ep = ledger.get_episode("ep-1")
    make_job(ledger, "job-1", [ep])
    ledger.commit_dream("job-1", [], [(ep.id, ep.revision)], DreamReport(namespace=NS))
    assert ledger.get_episode("ep-1").consolidated_by == "job-1"
    assert ledger.count_episodes(NS, pending=True) == 0

    updated = ledger.set_outcome("ep-1", Outcome(success=False, score=0.1, feedback="wrong answer"))
    assert updated.revision == 1
    assert updated.consolidated_by is None
    assert updated.outcome == Outcome(success=False, score=0.1, feedback="wrong answer")
    assert ledger.get_episode("ep-1") == updated
    assert ledger.count_episodes(NS, pending=True) == 1

    again = ledger.set_outcome("ep-1", Outcome(success=True))
    assert again.revision == 2
    assert again.outcome == Outcome(success=True)


def test_set_outcome_on_unknown_id_raises_not_found(ledger):
    ledger.add_episodes([episode(1)])
    with pytest.raises(NotFoundError) as info:
        ledger.set_outcome("nope", Outcome(success=True))
    assert "nope" in info.value.message
    assert info.value.hint
    assert ledger.get_episode("ep-1").revision == 0


# -- dream commits --------------------------------------------------------------------------------


def test_commit_dream_conflict_writes_nothing(ledger):
    eps = [episode(i) for i in range(4)]
    ledger.add_episodes(eps)
    stored = ledger.get_episodes([e.id for e in eps])
    make_job(ledger, "job-1", stored)
    writes = [
        write(insight("ins-1", evidence=["ep-0", "ep-1"])),
        write(insight("ins-2", evidence=["ep-2", "ep-3"])),
    ]
    # The last episode's revision is stale: the three before it would be updated first.
    consolidated = [(e.id, e.revision) for e in stored[:3]] + [(stored[3].id, stored[3].revision + 1)]

    with pytest.raises(LedgerConflict):
        ledger.commit_dream("job-1", writes, consolidated, DreamReport(namespace=NS, added=2))

    for table in ("insights", "insight_versions", "insight_evidence"):
        assert raw_count(ledger, table) == 0, table
    assert ledger.get_insight("ins-1") is None
    assert ledger.insight_history("ins-1") == []
    assert ledger.count_episodes(NS, pending=True) == 4
    assert all(e.consolidated_by is None for e in ledger.get_episodes([e.id for e in eps]))
    job = ledger.get_job("job-1")
    assert job.status == "open"
    assert job.report is None
    assert [j.id for j in ledger.open_jobs(NS)] == ["job-1"]

    # The same job commits fine with the right revisions afterwards.
    ledger.commit_dream("job-1", writes, [(e.id, e.revision) for e in stored], DreamReport(namespace=NS, added=2))
    assert ledger.get_job("job-1").status == "done"


def test_commit_dream_conflict_when_outcome_changed_meanwhile(ledger):
    ledger.add_episodes([episode(1), episode(2)])
    stored = ledger.get_episodes(["ep-1", "ep-2"])
    make_job(ledger, "job-1", stored)
    ledger.set_outcome("ep-2", Outcome(success=False))  # feedback arrives while the dream runs
    with pytest.raises(LedgerConflict):
        ledger.commit_dream(
            "job-1", [write(insight("ins-1"))], [(e.id, e.revision) for e in stored], DreamReport(namespace=NS)
        )
    assert ledger.get_insight("ins-1") is None
    assert ledger.get_episode("ep-1").consolidated_by is None


def test_commit_dream_conflict_when_episode_already_consolidated(ledger):
    ledger.add_episodes([episode(1)])
    ep = ledger.get_episode("ep-1")
    make_job(ledger, "job-a", [ep])
    make_job(ledger, "job-b", [ep])
    ledger.commit_dream("job-a", [], [(ep.id, ep.revision)], DreamReport(namespace=NS))
    with pytest.raises(LedgerConflict):
        ledger.commit_dream("job-b", [write(insight("ins-b"))], [(ep.id, ep.revision)], DreamReport(namespace=NS))
    assert ledger.get_episode("ep-1").consolidated_by == "job-a"
    assert ledger.get_insight("ins-b") is None
    assert ledger.get_job("job-b").status == "open"


def test_commit_dream_writes_everything(ledger, tmp_path):
    eps = [episode(i) for i in range(3)]
    ledger.add_episodes(eps)
    stored = ledger.get_episodes([e.id for e in eps])
    make_job(ledger, "job-1", stored)
    vector = np.arange(8, dtype=np.float32) / 10
    first = insight("ins-1", evidence=["ep-0", "ep-1"], job_id="job-1", applies_when="always", confidence=0.7)
    second = insight("ins-2", evidence=["ep-2"], status=InsightStatus.QUARANTINED, job_id="job-1")
    report = DreamReport(namespace=NS, job_id="job-1", episodes=3, added=2, insight_ids=["ins-1", "ins-2"])
    ledger.commit_dream(
        "job-1", [write(first, vector=vector), write(second)], [(e.id, e.revision) for e in stored], report
    )

    got = ledger.get_insight("ins-1")
    assert got.text == "lesson ins-1"
    assert got.evidence == ["ep-0", "ep-1"]
    assert got.applies_when == "always"
    assert got.confidence == pytest.approx(0.7)
    assert got.version == 1
    assert ledger.get_insight("ins-2").status is InsightStatus.QUARANTINED
    history = ledger.insight_history("ins-1")
    assert [(v.version, v.action) for v in history] == [(1, InsightAction.ADD)]
    assert history[0].job_id == "job-1"
    assert raw_count(ledger, "insight_evidence") == 3
    assert all(e.consolidated_by == "job-1" for e in ledger.get_episodes([e.id for e in eps]))
    assert ledger.count_episodes(NS, pending=True) == 0
    job = ledger.get_job("job-1")
    assert job.status == "done"
    assert job.report == report
    assert ledger.open_jobs(NS) == []
    # The vector is stored with the insight, exactly.
    insights, vectors = ledger.insights_with_vectors(NS, [InsightStatus.ACTIVE])
    assert [i.id for i in insights] == ["ins-1"]
    assert np.array_equal(vectors[0], vector)


def test_commit_dream_on_done_job_is_a_conflict(ledger):
    ledger.add_episodes([episode(1), episode(2)])
    ep1, ep2 = ledger.get_episodes(["ep-1", "ep-2"])
    make_job(ledger, "job-1", [ep1])
    ledger.commit_dream("job-1", [write(insight("ins-1"))], [(ep1.id, ep1.revision)], DreamReport(namespace=NS))
    with pytest.raises(LedgerConflict):
        ledger.commit_dream(
            "job-1", [write(insight("ins-2"))], [(ep2.id, ep2.revision)], DreamReport(namespace=NS, added=9)
        )
    assert ledger.get_insight("ins-2") is None
    assert ledger.get_episode("ep-2").consolidated_by is None
    assert ledger.get_job("job-1").report.added == 0


def test_commit_dream_unknown_or_abandoned_job_is_a_conflict(ledger):
    ledger.add_episodes([episode(1)])
    ep = ledger.get_episode("ep-1")
    with pytest.raises(LedgerConflict):
        ledger.commit_dream("no-such-job", [], [(ep.id, ep.revision)], DreamReport(namespace=NS))
    make_job(ledger, "job-x", [ep])
    ledger.abandon_job("job-x")
    assert ledger.get_job("job-x").status == "abandoned"
    with pytest.raises(LedgerConflict):
        ledger.commit_dream("job-x", [], [(ep.id, ep.revision)], DreamReport(namespace=NS))
    assert ledger.get_episode("ep-1").consolidated_by is None


def test_create_job_is_idempotent_and_round_trips(ledger):
    ledger.add_episodes([episode(1), episode(2)])
    job = make_job(ledger, "job-1", ledger.get_episodes(["ep-1", "ep-2"]))
    again = DreamJob(id="job-1", namespace=("other",), episodes=[("zzz", 9)])
    ledger.create_job(again)  # same id: the first journal entry is kept
    got = ledger.get_job("job-1")
    assert got.namespace == NS
    assert got.episodes == job.episodes
    assert got.clusters == job.clusters
    assert got.status == "open"
    assert ledger.get_job("nope") is None
    assert [j.id for j in ledger.list_jobs(NS)] == ["job-1"]
    assert ledger.list_jobs(("other",)) == []


def test_saved_outputs_survive_and_are_replaced_per_cluster(ledger):
    make_job(ledger, "job-1", [])
    ledger.save_output("job-1", 0, "raw-0", "[]")
    ledger.save_output("job-1", 1, "raw-1", '[{"op": "add"}]')
    ledger.save_output("job-1", 0, "raw-0b", "[1]")
    assert ledger.job_outputs("job-1") == {0: ("raw-0b", "[1]"), 1: ("raw-1", '[{"op": "add"}]')}
    assert ledger.job_outputs("other") == {}


def test_insight_edit_keeps_history(ledger):
    ledger.add_episodes([episode(i) for i in range(3)])
    make_job(ledger, "job-1", [])
    ledger.commit_dream("job-1", [write(insight("ins-1", evidence=["ep-0"]))], [], DreamReport(namespace=NS))
    make_job(ledger, "job-2", [])
    edited = insight("ins-1", evidence=["ep-0", "ep-1"], version=2, text="lesson, refined", job_id="job-2")
    ledger.commit_dream("job-2", [write(edited, InsightAction.EDIT)], [], DreamReport(namespace=NS))
    assert ledger.get_insight("ins-1").text == "lesson, refined"
    assert ledger.get_insight("ins-1").version == 2
    history = ledger.insight_history("ins-1")
    assert [(v.version, v.action, v.text) for v in history] == [
        (1, InsightAction.ADD, "lesson ins-1"),
        (2, InsightAction.EDIT, "lesson, refined"),
    ]
    assert ledger.insights_citing(["ep-1"], [InsightStatus.ACTIVE]) == {"ins-1": ["ep-1"]}


# -- index bookkeeping and queries -------------------------------------------------------------------


def _commit(ledger, job_id, writes):
    make_job(ledger, job_id, [])
    ledger.commit_dream(job_id, writes, [], DreamReport(namespace=NS))


def test_dirty_insights_and_mark_indexed_respect_the_version_guard(ledger):
    _commit(ledger, "job-1", [write(insight("a")), write(insight("b")), write(insight("c"), vector=None)])
    dirty = ledger.dirty_insights()
    assert [i.id for i, _ in dirty] == ["a", "b", "c"]
    assert all(v is not None and v.shape == (8,) and v.dtype == np.float32 for _, v in dirty)

    # A dream edits "b" to version 2 after the indexer read version 1 of it.
    _commit(ledger, "job-2", [write(insight("b", version=2, text="b v2"), InsightAction.EDIT)])
    ledger.mark_indexed([("a", 1), ("b", 1)])
    assert [(i.id, i.version) for i, _ in ledger.dirty_insights()] == [("b", 2), ("c", 1)]

    ledger.mark_indexed([("b", 2), ("c", 1)])
    assert ledger.dirty_insights() == []

    ledger.mark_all_dirty()
    assert [i.id for i, _ in ledger.dirty_insights()] == ["a", "b", "c"]
    assert [i.id for i, _ in ledger.dirty_insights(limit=2)] == ["a", "b"]


def test_insight_without_vector(ledger):
    _commit(ledger, "job-1", [InsightWrite(insight=insight("nv"), action=InsightAction.ADD, vector=None)])
    [(got, vector)] = ledger.dirty_insights()
    assert got.id == "nv"
    assert vector is None
    insights, vectors = ledger.insights_with_vectors(NS, [InsightStatus.ACTIVE])
    assert insights == []
    assert vectors.shape[0] == 0


def test_insights_citing(ledger):
    _commit(
        ledger,
        "job-1",
        [
            write(insight("a", evidence=["e1", "e2"])),
            write(insight("b", evidence=["e2", "e3"])),
            write(insight("r", evidence=["e1"], status=InsightStatus.RETIRED)),
        ],
    )
    citing = ledger.insights_citing(["e1", "e2"], [InsightStatus.ACTIVE])
    assert {k: sorted(v) for k, v in citing.items()} == {"a": ["e1", "e2"], "b": ["e2"]}
    assert ledger.insights_citing(["e1"], [InsightStatus.RETIRED]) == {"r": ["e1"]}
    assert set(ledger.insights_citing(["e1"], [InsightStatus.ACTIVE, InsightStatus.RETIRED])) == {"a", "r"}
    assert ledger.insights_citing(["e9"], [InsightStatus.ACTIVE]) == {}
    assert ledger.insights_citing([], [InsightStatus.ACTIVE]) == {}
    assert ledger.insights_citing(["e1"], []) == {}


def test_general_insights(ledger):
    _commit(
        ledger,
        "job-1",
        [
            write(insight("wide-low", tasks=6, confidence=0.6)),
            write(insight("wide-high", tasks=9, confidence=0.9)),
            write(insight("narrow", tasks=2, confidence=0.99)),
            write(insight("wide-quarantined", tasks=9, confidence=0.95, status=InsightStatus.QUARANTINED)),
            write(insight("wide-other-ns", namespace=("acme", "u10"), tasks=9, confidence=0.95)),
        ],
    )
    assert [i.id for i in ledger.general_insights(NS, min_tasks=5, limit=10)] == ["wide-high", "wide-low"]
    assert [i.id for i in ledger.general_insights(NS, min_tasks=5, limit=1)] == ["wide-high"]
    assert [i.id for i in ledger.general_insights(NS, min_tasks=1, limit=10)] == ["narrow", "wide-high", "wide-low"]
    assert ledger.general_insights(NS, min_tasks=10, limit=10) == []
    assert [i.id for i in ledger.general_insights(("acme", "u10"), 5, 10)] == ["wide-other-ns"]


def test_iter_episode_tasks_pages_through_everything(ledger):
    spaces = [("a",), ("b", "c")]
    eps = [episode(i, namespace=spaces[i % 2], task=f"task {i}") for i in range(23)]
    ledger.add_episodes(eps)
    pages = list(ledger.iter_episode_tasks(batch=5))
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    flat = [row for page in pages for row in page]
    assert flat == [(e.id, e.namespace, e.task) for e in eps]
    assert [row for page in ledger.iter_episode_tasks(batch=1000) for row in page] == flat
    assert next(type(ledger).iter_episode_tasks(ledger, batch=23)) == flat


def test_iter_episode_tasks_empty(ledger):
    assert list(ledger.iter_episode_tasks()) == []


def test_stored_namespace_key_is_canonical(ledger):
    ledger.add_episodes([episode(1, namespace=("acme", "u1"))])
    assert raw_rows(ledger, "SELECT namespace FROM episodes") == [(namespace_key(("acme", "u1")),)]


# -- durability, locking, bad data homes -------------------------------------------------------------


def test_reopen_keeps_everything(target):
    first = open_ledger(target)
    first.add_episodes([episode(1), episode(2)])
    _commit(first, "job-1", [write(insight("ins-1"))])
    first.close()
    second = open_ledger(target)
    try:
        assert second.count_episodes() == 2
        assert second.get_insight("ins-1") is not None
        assert second.get_job("job-1").status == "done"
    finally:
        second.close()


def test_closed_ledger_raises_data_home_error(target):
    ledger = open_ledger(target)
    ledger.close()
    with pytest.raises(DataHomeError) as info:
        ledger.count_episodes()
    assert "closed" in info.value.message and info.value.hint
    with pytest.raises(DataHomeError):
        ledger.add_episodes([episode(1)])


def test_locked_ledger_raises_data_home_locked_error_and_loses_nothing(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(path, busy_timeout=0.2)
    try:
        ledger.add_episodes([episode(1), episode(2)])
        other = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN EXCLUSIVE")
            other.execute(
                "UPDATE episodes SET feedback = 'from the other process' WHERE id = 'ep-1'"
            )
            with pytest.raises(DataHomeLockedError) as info:
                ledger.add_episodes([episode(3)])
            assert info.value.hint
            assert str(path) in info.value.message
            with pytest.raises(DataHomeLockedError):
                ledger.set_outcome("ep-2", Outcome(success=True))
            # WAL: readers are not blocked by the writer, and see the last committed state.
            assert ledger.count_episodes() == 2
            assert ledger.get_episode("ep-1").outcome.feedback is None
            # A second ledger opened on the locked file cannot migrate and says so.
            with pytest.raises(DataHomeLockedError):
                SQLiteLedger(path, busy_timeout=0.2)
            other.execute("COMMIT")
        finally:
            other.close()

        # Nothing stored was lost; the failed writes did not happen; the ledger works again.
        assert ledger.count_episodes() == 2
        assert ledger.get_episode("ep-1").outcome.feedback == "from the other process"
        assert ledger.get_episode("ep-2").revision == 0
        assert ledger.add_episodes([episode(3)]) == [True]
        assert ledger.count_episodes() == 3
    finally:
        ledger.close()
    reopened = SQLiteLedger(path)
    try:
        assert {e.id for e in reopened.list_episodes()} == {"ep-1", "ep-2", "ep-3"}
    finally:
        reopened.close()


def test_ledger_under_a_regular_file_raises_data_home_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DataHomeError) as info:
        SQLiteLedger(blocker / "ledger.sqlite3")
    assert not isinstance(info.value, DataHomeLockedError)
    assert info.value.hint
    assert blocker.read_text() == "not a directory"


def test_ledger_file_that_is_not_sqlite_raises_data_home_error(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not a database " * 100)
    with pytest.raises(DataHomeError) as info:
        SQLiteLedger(path)
    assert info.value.hint


def test_memory_on_a_file_raises_data_home_error(tmp_path):
    home = tmp_path / "home-is-a-file"
    home.write_text("x")
    with pytest.raises(DataHomeError) as info:
        DreamMemory(home)
    assert "not a directory" in info.value.message
    assert info.value.hint


def test_memory_under_a_file_raises_data_home_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(DataHomeError) as info:
        DreamMemory(blocker / "home")
    assert info.value.hint


def test_memory_on_a_directory_without_permissions_raises_data_home_error(tmp_path):
    home = tmp_path / "locked-home"
    home.mkdir()
    home.chmod(0)
    try:
        if os.access(home, os.R_OK | os.W_OK | os.X_OK):
            pytest.skip("running with privileges that ignore directory permissions (root)")
        with pytest.raises(DataHomeError) as info:
            DreamMemory(home)
        assert "chmod" in info.value.hint
    finally:
        home.chmod(0o700)


def test_memory_records_through_the_same_ledger(make_memory):
    memory = make_memory()
    assert memory.record(episode(1)) is True
    assert memory.record(episode(1)) is False
    assert memory.ledger.count_episodes(NS) == 1
    assert memory.ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    later = memory.feedback("run-1", success=True, score=1.0)
    assert later.revision == 1
    with pytest.raises(NotFoundError):
        memory.feedback("run-unknown", success=True)


def test_created_at_is_stored_as_an_instant(ledger):
    aware = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    ledger.add_episodes([episode(1, created_at=aware)])
    got = ledger.get_episode("ep-1").created_at
    assert got == aware
    assert got.utcoffset() == timedelta(0)


def test_naive_created_at_is_stored_as_utc_whatever_the_local_time_zone(ledger, monkeypatch):
    # Ingest reads naive timestamps as UTC; an Episode recorded directly must not depend on the
    # machine's local time zone either (a naive 12:00 must not come back as 17:00 UTC in New York).
    import time

    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available on this platform")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        ledger.add_episodes([episode("naive", created_at=datetime(2024, 1, 1, 12, 0))])
        assert ledger.get_episode("ep-naive").created_at == datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    finally:
        monkeypatch.undo()
        time.tzset()
