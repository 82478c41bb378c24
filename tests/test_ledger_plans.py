"""The ledger's hot path never scans a table: every statement it runs is answered through an index.

On SQLite, the ledger's connections are opened as a recording ``sqlite3.Connection`` subclass, so every
statement a public ledger method runs is seen with its parameters, whichever private helper runs
it. Each hot-path method is called on a small populated ledger and each statement it ran is put to
``EXPLAIN QUERY PLAN`` with the same parameters, on the default planner: nothing here runs
ANALYZE, and without its statistics SQLite costs every table as holding about a million rows, so a
small ledger gets the plans a large one gets.

What counts as a full scan: a ``SCAN <table>`` line, with or without ``USING [COVERING] INDEX``
(walking a whole index is walking the whole table), of any table. Two exceptions:

* a ``SCAN ... USING INDEX`` of a *partial* index: it holds only the rows its WHERE admits (say,
  the insights waiting for the vector index), so the walk is bounded by that set, not the table;
* ``meta``: a handful of fixed keys by construction. ``dream_jobs``, ``dream_outputs`` and the
  cluster tables are not exempt: they grow with every dream.

``SEARCH`` is a seek into an index (or the rowid), bounded by the rows it matches. Sorts
(``USE TEMP B-TREE``) are allowed in general, they cost what the query returns; the calls whose
order an index provides (a dream's queue, the newest run of a run id, the dirty insights) must not
sort. Timings at scale: ``langdream bench --section stores``.

On PostgreSQL the same calls run on a ledger in a fresh schema of the test server, every statement
seen where the ledger hands it to psycopg. The planner costs a small table by its real size (a
sequential scan always wins there), so each statement is explained with sequential scans, hash
and merge joins switched off: a plan that still scans a table, or walks a whole (non-partial)
index without an index condition, found no index that answers it. The calls whose order an index
provides are explained with sorting switched off too, and must not sort.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from langdream.ledger import ClusterWrite, InsightWrite, Ledger
from langdream.ledger import postgres as postgres_module
from langdream.ledger.postgres import PostgresLedger
from langdream.ledger.sqlite import SQLiteLedger
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
)

NS = ("acme", "u1")
OTHER = ("acme", "u2")
LIVE = [InsightStatus.ACTIVE, InsightStatus.QUARANTINED]
EXEMPT_TABLES = {"meta"}
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE")

Statement = tuple[str, tuple[Any, ...]]


@dataclass
class Traced:
    """A ledger whose every statement is recorded, and a plain connection to explain them on."""

    ledger: Ledger
    explainer: Any
    seen: list[Statement] = field(default_factory=list)

    def run(self, call: Callable[[Ledger], Any]) -> list[Statement]:
        """The queries ``call`` ran (transaction control left out)."""
        self.seen.clear()
        call(self.ledger)
        return [(sql, params) for sql, params in self.seen if re.match(r"\s*(\w+)", sql)[1].upper() not in _CONTROL]

    def scans(self, sql: str, params: tuple[Any, ...]) -> list[str]:
        """What the statement's plan reads whole."""
        return full_scans(self.plan(sql, params), self.partial_indexes())

    def sorts(self, sql: str, params: tuple[Any, ...]) -> list[str]:
        """The sorts the statement's plan needs."""
        return [line for line in self.plan(sql, params) if "TEMP B-TREE" in line]

    def plan(self, sql: str, params: tuple[Any, ...]) -> list[str]:
        return [row[3] for row in self.explainer.execute("EXPLAIN QUERY PLAN " + sql, params)]

    def partial_indexes(self) -> set[str]:
        rows = self.explainer.execute(
            "SELECT il.name FROM sqlite_master AS m, pragma_index_list(m.name) AS il "
            "WHERE m.type = 'table' AND il.partial = 1"
        )
        return {name for (name,) in rows}


def full_scans(plan: list[str], partial: set[str]) -> list[str]:
    """The lines of ``plan`` that walk a whole table (or a whole index of it)."""
    # Subquery results a plan builds and then reads back are bounded by their own (checked) lines.
    built = {m.group(1) for line in plan if (m := re.match(r"(?:CO-ROUTINE|MATERIALIZE) (\S+)", line))}
    scans = []
    for line in plan:
        m = re.match(r"SCAN (\S+)(?: USING (?:COVERING )?INDEX (\S+))?", line)
        if m is None or line == "SCAN CONSTANT ROW" or m.group(1) in EXEMPT_TABLES | built:
            continue
        if m.group(2) is not None and m.group(2) in partial:
            continue
        scans.append(line)
    return scans


def _episode(i: int, namespace=NS) -> Episode:
    return Episode(
        id=f"ep-{i}",
        namespace=namespace,
        task=f"task number {i % 7}",
        thread_id=f"thread-{i // 3}",
        run_id=f"run-{i}",
        messages=[Message(role="user", content=f"task number {i % 7}"), Message(role="assistant", content="done")],
        outcome=Outcome(success=i % 2 == 0, score=float(i % 2 == 0)),
    )


def _insight(n: int, evidence: list[str], status: InsightStatus) -> Insight:
    return Insight(
        id=f"ins-{n}",
        namespace=NS,
        text=f"lesson {n}",
        status=status,
        origin=InsightOrigin.EXTRACTIVE,
        evidence=evidence,
        support=len(evidence),
        tasks=n % 8,
        confidence=0.3 + 0.05 * n,
    )


def _vector(n: int) -> np.ndarray:
    vector = np.random.default_rng(n).normal(size=8).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _job(job_id: str, episodes: list[Episode], namespace=NS) -> DreamJob:
    return DreamJob(
        id=job_id,
        namespace=namespace,
        episodes=[(e.id, e.revision) for e in episodes],
        clusters=[[e.id for e in episodes]],
        cluster_ids=[f"cl-{job_id}"],
        prompt_version="p1",
        model_id="extractive",
    )


def _dream(ledger: Ledger, job_id: str, episodes: list[Episode], first_insight: int) -> None:
    """One whole dream's writes: its job, one output, insights citing the episodes, a lasting cluster."""
    job = _job(job_id, episodes)
    ledger.create_job(job)
    ledger.save_output(job_id, 0, "raw", "[]")
    statuses = [InsightStatus.ACTIVE, InsightStatus.QUARANTINED, InsightStatus.RETIRED]
    writes = [
        InsightWrite(_insight(n, [e.id for e in episodes[k : k + 3]], statuses[n % 3]), InsightAction.ADD, _vector(n))
        for k, n in enumerate(range(first_insight, first_insight + 4))
    ]
    cluster = ClusterWrite(f"cl-{job_id}", NS, [e.id for e in episodes], [_vector(i) for i in range(len(episodes))])
    ledger.commit_dream(
        job_id, writes, [(e.id, e.revision) for e in episodes], DreamReport(namespace=NS), clusters=[cluster]
    )


@dataclass
class PostgresTraced(Traced):
    """The same on PostgreSQL: ``explainer`` is a psycopg connection to the ledger's schema."""

    def plan_nodes(self, sql: str, params: tuple[Any, ...], *, sort: bool = True) -> list[dict[str, Any]]:
        import psycopg

        settings = "enable_seqscan = off, enable_hashjoin = off, enable_mergejoin = off"
        settings += "" if sort else ", enable_sort = off, enable_bitmapscan = off"
        cursor = psycopg.ClientCursor(self.explainer)  # the values inline: EXPLAIN takes no parameters
        for setting in settings.split(", "):
            cursor.execute(f"SET {setting}")
        try:
            cursor.execute("EXPLAIN (FORMAT JSON) " + postgres_module._format(sql), params)
            (document,) = cursor.fetchone()
        finally:
            cursor.execute("RESET ALL")
        plan = document if isinstance(document, list) else json.loads(document)
        nodes, todo = [], [plan[0]["Plan"]]
        while todo:
            node = todo.pop()
            nodes.append(node)
            todo.extend(node.get("Plans", []))
        return nodes

    def scans(self, sql: str, params: tuple[Any, ...]) -> list[str]:
        return self._full_scans(self.plan_nodes(sql, params))

    def _full_scans(self, nodes: list[dict[str, Any]]) -> list[str]:
        partial = self.partial_indexes()
        scans = []
        for node in nodes:
            kind, table = node["Node Type"], node.get("Relation Name", "")
            if table in EXEMPT_TABLES:
                continue
            if kind == "Seq Scan":
                scans.append(f"Seq Scan on {table}")
            elif kind in ("Index Scan", "Index Only Scan", "Bitmap Index Scan") and "Index Cond" not in node:
                walked = node["Index Name"]
                if walked not in partial:  # a partial index holds only the rows it admits
                    scans.append(f"{kind} using {walked} (no condition)")
        return scans

    def sorts(self, sql: str, params: tuple[Any, ...]) -> list[str]:
        # Forbidden to sort, the planner may walk a whole index in the wanted order instead.
        nodes = self.plan_nodes(sql, params, sort=False)
        sorting = [f"Sort by {n.get('Sort Key')}" for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")]
        return sorting + self._full_scans(nodes)

    def partial_indexes(self) -> set[str]:
        rows = self.explainer.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indpred IS NOT NULL AND n.nspname = current_schema()"
        )
        return {name for (name,) in rows}


def _populate(ledger: Ledger) -> None:
    episodes = [_episode(i) for i in range(24)] + [_episode(100 + i, OTHER) for i in range(6)]
    ledger.add_episodes(episodes)
    _dream(ledger, "dj-1", episodes[0:8], 0)
    _dream(ledger, "dj-2", episodes[8:16], 4)
    ledger.create_job(_job("dj-open", episodes[16:20]))  # an open job, as a crashed dream leaves
    ledger.mark_indexed([("ins-0", 1), ("ins-1", 1)])  # the others stay dirty


@pytest.fixture(params=["sqlite", "postgres"])
def traced(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    if request.param == "postgres":
        yield from _postgres_traced(request.getfixturevalue("postgres_url"), monkeypatch)
    else:
        yield from _sqlite_traced(tmp_path, monkeypatch)


def _postgres_traced(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    import psycopg

    seen: list[Statement] = []
    connection = postgres_module._Connection
    real_execute, real_executemany = connection.execute, connection.executemany

    def execute(self, sql: str, params: Any = None) -> Any:
        seen.append((sql, tuple(params or ())))
        return real_execute(self, sql, params)

    def executemany(self, sql: str, params: Any) -> Any:
        rows = [tuple(p) for p in params]
        if rows:  # the plan is the same for every row
            seen.append((sql, rows[0]))
        return real_executemany(self, sql, rows)

    monkeypatch.setattr(connection, "execute", execute)
    monkeypatch.setattr(connection, "executemany", executemany)
    ledger = PostgresLedger(url)
    _populate(ledger)
    explainer = psycopg.connect(url, autocommit=True)
    yield PostgresTraced(ledger, explainer, seen)
    explainer.close()
    ledger.close()


def _sqlite_traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    seen: list[Statement] = []

    class Recording(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            seen.append((sql, tuple(parameters)))
            return super().execute(sql, parameters)

        def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
            rows = [tuple(p) for p in seq_of_parameters]
            if rows:  # the plan is the same for every row
                seen.append((sql, rows[0]))
            return super().executemany(sql, rows)

    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *args, **kwargs: real_connect(*args, factory=Recording, **kwargs))
    path = tmp_path / "ledger.sqlite3"
    ledger = SQLiteLedger(path)
    _populate(ledger)
    explainer = real_connect(path)
    traced = Traced(ledger, explainer, seen)
    yield traced
    explainer.close()
    ledger.close()


NEAR = [f"ep-{i}" for i in range(0, 24, 2)]

# Recording, feedback and recall (per run), then what a dream does per call.
HOT_PATH: dict[str, Callable[[Ledger], Any]] = {
    "add_episodes": lambda ledger: ledger.add_episodes([_episode(500)]),
    "add_episodes (already stored)": lambda ledger: ledger.add_episodes([_episode(1)]),
    "find_episode (episode id)": lambda ledger: ledger.find_episode("ep-3"),
    "find_episode (run id)": lambda ledger: ledger.find_episode("run-3"),
    "set_outcome": lambda ledger: ledger.set_outcome("ep-3", Outcome(success=False, score=0.0)),
    "has_insights": lambda ledger: ledger.has_insights(NS, InsightStatus.ACTIVE),
    "insights_citing": lambda ledger: ledger.insights_citing(NEAR, [InsightStatus.ACTIVE]),
    "insights_citing (live)": lambda ledger: ledger.insights_citing(NEAR, LIVE),
    "general_insights": lambda ledger: ledger.general_insights(NS, 5, 5),
    "get_insights": lambda ledger: ledger.get_insights(["ins-1", "ins-5", "ins-404"]),
    "get_meta": lambda ledger: ledger.get_meta("embedding_model"),
    "dirty_insights": lambda ledger: ledger.dirty_insights(limit=3),
    "mark_indexed": lambda ledger: ledger.mark_indexed([("ins-2", 1), ("ins-3", 1)]),
    "open_jobs": lambda ledger: ledger.open_jobs(NS),
    "get_job": lambda ledger: ledger.get_job("dj-open"),
    "abandon_job": lambda ledger: ledger.abandon_job("dj-open"),
    "pending_episodes": lambda ledger: ledger.pending_episodes(NS, 100),
    "get_episodes": lambda ledger: ledger.get_episodes(["ep-20", "ep-21", "ep-404"]),
    "clusters": lambda ledger: ledger.clusters(NS),
    "cluster_of": lambda ledger: ledger.cluster_of(["ep-1", "ep-9", "ep-22"]),
    "cluster_members": lambda ledger: ledger.cluster_members("cl-dj-1", 5),
    "insights_with_vectors": lambda ledger: ledger.insights_with_vectors(NS, LIVE),
    "job_outputs": lambda ledger: ledger.job_outputs("dj-1"),
    "save_output": lambda ledger: ledger.save_output("dj-open", 0, "raw", "[]"),
    "create_job + commit_dream": lambda ledger: _dream(
        ledger, "dj-3", [ledger.get_episode(f"ep-{i}") for i in (16, 17, 18, 19, 20)], 8
    ),
}

# Calls whose order an index provides: sorting instead would cost the whole matching set.
INDEX_ORDERED = ("find_episode (run id)", "pending_episodes", "dirty_insights", "cluster_members")


@pytest.mark.parametrize("name", list(HOT_PATH))
def test_hot_path_statement_plans_use_indexes(traced: Traced, name: str) -> None:
    statements = traced.run(HOT_PATH[name])
    assert statements, f"{name} ran no statement the recorder saw"
    scans = {sql: found for sql, params in statements if (found := traced.scans(sql, params))}
    assert scans == {}


@pytest.mark.parametrize("name", INDEX_ORDERED)
def test_index_gives_the_order(traced: Traced, name: str) -> None:
    sorts = {sql: found for sql, params in traced.run(HOT_PATH[name]) if (found := traced.sorts(sql, params))}
    assert sorts == {}


def test_every_query_of_the_hot_path_is_seen(traced: Traced) -> None:
    """The recorder sees the statements of the ledger's own helpers, reads and writes alike."""
    assert [sql.split()[0] for sql, _ in traced.run(HOT_PATH["set_outcome"])] == ["UPDATE", "SELECT"]
    [(sql, params)] = traced.run(HOT_PATH["pending_episodes"])
    assert "consolidated_by IS NULL" in sql and params == ('["acme","u1"]', 100)


def test_a_full_scan_is_caught(traced: Traced) -> None:
    if isinstance(traced, PostgresTraced):
        assert "insights_dirty" in traced.partial_indexes()
        assert traced.scans("SELECT id FROM episodes WHERE task = ?", ("x",)) == ["Seq Scan on episodes"]
        assert traced.scans("SELECT COUNT(*) FROM insights", ())  # a whole index walked is a scan
        joined = "SELECT e.insight_id FROM insight_evidence e JOIN insights i ON i.id = e.insight_id WHERE i.text = ?"
        assert traced.scans(joined, ("x",))
        assert traced.scans("SELECT value FROM meta", ()) == []  # exempt
        assert traced.scans("SELECT id FROM insights WHERE index_dirty = 1 ORDER BY id", ()) == []
        assert traced.sorts("SELECT id FROM episodes WHERE namespace = ? ORDER BY task", ("x",))
        assert traced.sorts("SELECT id FROM episodes WHERE namespace = ? ORDER BY seq", ("x",))  # or a whole walk
        assert traced.sorts("SELECT id FROM episodes WHERE run_id = ? ORDER BY seq", ("x",)) == []
        return
    partial = traced.partial_indexes()
    assert "insights_dirty" in partial
    plan = traced.plan
    assert full_scans(plan("SELECT id FROM episodes WHERE task = ?", ("x",)), partial) == ["SCAN episodes"]
    assert full_scans(plan("SELECT COUNT(*) FROM insights", ()), partial)  # a whole index walked is a scan
    joined = "SELECT e.insight_id FROM insight_evidence e JOIN insights i ON i.id = e.insight_id WHERE i.text = ?"
    assert full_scans(plan(joined, ("x",)), partial)
    assert full_scans(plan("SELECT value FROM meta", ()), partial) == []  # exempt
    assert full_scans(plan("SELECT id FROM insights WHERE index_dirty = 1 ORDER BY id", ()), partial) == []
