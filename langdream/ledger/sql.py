"""The ledger's behaviour in SQL, once, for every backend (SQLite, PostgreSQL).

``SQLLedger`` holds every protocol method. Its statements are written with ``?`` placeholders
and in the SQL both backends speak (``ON CONFLICT`` upserts, ``COUNT``/``CASE`` instead of
summing booleans, no empty ``IN ()``); a backend supplies a few hooks:

* ``_connection()``: a connection for one read or one write transaction (``execute`` and
  ``executemany`` taking ``?`` placeholders; rows readable by column name);
* ``_begin(db)`` / ``_rollback(db)``: how a write transaction starts and is undone. A write
  transaction must exclude every other writer of the same ledger from its start, as SQLite's
  ``BEGIN IMMEDIATE`` does: conflict checks (a dream's commit, a lease) read, decide, then write;
* ``_errors`` / ``_open_errors`` / ``_home_error(exc)``: which driver errors mean the data home
  is unreachable or locked, and the ``DataHomeError`` each becomes;
* ``_schema_statements(stored)``: the DDL bringing a ledger at schema ``stored`` to ``SCHEMA_VERSION``.

Every write is one transaction through ``_write(boundary)``, which reaches the crash point
``boundary`` once its commit returned: a kill at any point leaves either all of it or none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np

from langdream.crashpoints import crash_point
from langdream.errors import DataHomeError, LifecycleError, NotFoundError
from langdream.ledger import (
    ClusterWrite,
    Exposure,
    ForgetPlan,
    InsightWrite,
    LeaseLost,
    LedgerConflict,
    StoredCluster,
)
from langdream.ledger.rows import (
    among,
    dumps,
    episode_row,
    insight_row,
    job_clusters,
    job_row,
    placeholders,
    state_values,
    vector_bytes,
    vector_from,
    version_row,
)
from langdream.ledger.schema import EPISODE_COLUMNS, INSIGHT_COLUMNS, META_TABLE, SCHEMA_VERSION, STATE_COLUMNS
from langdream.namespace import Namespace, format_namespace, namespace_from_key, namespace_key
from langdream.types import (
    DreamJob,
    DreamReport,
    Episode,
    Insight,
    InsightAction,
    InsightEffect,
    InsightStatus,
    InsightVersion,
    NamespaceStats,
    Outcome,
    to_epoch,
)

# What the text of an insight or a stored model output becomes when its sources are forgotten.
FORGOTTEN_TEXT = "[forgotten]"
# Changes after which an insight may cite fewer episodes than before.
_EVIDENCE_MAY_SHRINK = {InsightAction.RESTORE, InsightAction.FORGET, InsightAction.REVOKE}
# Rows per statement when a call names many ids (SQLite allows 32766 parameters at most).
_CHUNK = 500
_RECALL_EPOCH = "recall_epoch"


def _bump_recall_epoch(db: Any) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT)",
        (_RECALL_EPOCH,),
    )


class SQLLedger:
    """The ledger on a SQL database; subclasses connect it (see the module's hooks)."""

    busy_timeout: float
    _closed: bool = False
    _errors: tuple[type[BaseException], ...] = ()
    _open_errors: tuple[type[BaseException], ...] = ()

    # -- backend hooks -----------------------------------------------------------------------

    def _connection(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _begin(self, db: Any) -> None:
        raise NotImplementedError

    def _rollback(self, db: Any) -> None:
        raise NotImplementedError

    def _home_error(self, exc: BaseException) -> Exception:
        raise NotImplementedError

    def _schema_statements(self, stored: int | None) -> Iterable[str]:
        raise NotImplementedError

    @property
    def location(self) -> str:
        """Where the ledger lives, as error messages name it (never with a password)."""
        raise NotImplementedError

    def _closed_error(self) -> DataHomeError:
        return DataHomeError(f"the ledger {self.location} is closed", hint="open a new DreamMemory")

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _write(self, boundary: str | None = None) -> Iterator[Any]:
        """One write transaction; ``boundary`` names the crash point its commit reaches."""
        with self._connection() as db:
            try:
                self._begin(db)
            except self._errors as exc:
                self._rollback(db)
                raise self._home_error(exc) from exc
            try:
                yield db
            except BaseException as exc:
                self._rollback(db)
                if isinstance(exc, self._errors):
                    raise self._home_error(exc) from exc
                raise
            try:
                db.execute("COMMIT")
            except self._errors as exc:
                self._rollback(db)
                raise self._home_error(exc) from exc
        if boundary is not None:
            crash_point(boundary)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._connection() as db:
            try:
                return db.execute(sql, params).fetchall()
            except self._errors as exc:
                raise self._home_error(exc) from exc

    def _migrate(self) -> None:
        try:
            # The stored version is read inside the write transaction: two processes opening an
            # old (or a fresh) ledger at once upgrade it once.
            with self._write() as db:
                db.execute(META_TABLE)
                row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                stored = int(row["value"]) if row else None
                if stored is not None and stored > SCHEMA_VERSION:
                    raise DataHomeError(
                        f"the ledger {self.location} was written by a newer langdream (schema {stored})",
                        hint="upgrade langdream to open this data home",
                    )
                for statement in self._schema_statements(stored):
                    db.execute(statement)
                self._set_meta(db, "schema_version", str(SCHEMA_VERSION))
        except self._open_errors as exc:
            raise self._home_error(exc) from exc

    # -- data-home facts ---------------------------------------------------------------------

    def recall_epoch(self) -> int:
        """A number that changes whenever anything recall reads changes (insights, their vectors,
        lasting clusters): a reader's cache of them is current while it stays the same."""
        value = self.get_meta(_RECALL_EPOCH)
        return int(value) if value else 0

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as db:
            self._set_meta(db, key, value)

    @staticmethod
    def _set_meta(db: Any, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- episodes ----------------------------------------------------------------------------

    def add_episodes(self, episodes: Sequence[Episode]) -> list[bool]:
        now = time.time()
        added = []
        with self._write("episode.write") as db:
            for ep in episodes:
                cursor = db.execute(
                    "INSERT INTO episodes (id, namespace, thread_id, run_id, task, messages, "
                    "final_answer, success, score, feedback, injected, metadata, created_at, recorded_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (
                        ep.id,
                        namespace_key(ep.namespace),
                        ep.thread_id,
                        ep.run_id,
                        ep.task,
                        dumps([m.model_dump(mode="json", exclude_defaults=True) for m in ep.messages]),
                        ep.final_answer,
                        None if ep.outcome.success is None else int(ep.outcome.success),
                        ep.outcome.score,
                        ep.outcome.feedback,
                        dumps(ep.injected_insight_ids),
                        dumps(ep.metadata),
                        to_epoch(ep.created_at),
                        now,
                    ),
                )
                added.append(cursor.rowcount == 1)
        return added

    def get_episode(self, episode_id: str) -> Episode | None:
        rows = self._read(f"SELECT {EPISODE_COLUMNS} FROM episodes WHERE id = ?", (episode_id,))
        return episode_row(rows[0]) if rows else None

    def get_episodes(self, episode_ids: Sequence[str]) -> list[Episode]:
        found: dict[str, Episode] = {}
        ids = list(dict.fromkeys(episode_ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            for row in self._read(
                f"SELECT {EPISODE_COLUMNS} FROM episodes WHERE id IN ({placeholders(len(chunk))})", chunk
            ):
                found[row["id"]] = episode_row(row)
        return [found[i] for i in ids if i in found]

    def find_episode(self, id_or_run_id: str) -> Episode | None:
        episode = self.get_episode(id_or_run_id)
        if episode is None:
            rows = self._read(
                f"SELECT {EPISODE_COLUMNS} FROM episodes WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                (id_or_run_id,),
            )
            episode = episode_row(rows[0]) if rows else None
        return episode

    def _episode_filter(self, namespace: Namespace | None, pending: bool | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if namespace is not None:
            clauses.append("namespace = ?")
            params.append(namespace_key(namespace))
        if pending is True:
            clauses.append("consolidated_by IS NULL")
        elif pending is False:
            clauses.append("consolidated_by IS NOT NULL")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list_episodes(
        self, namespace: Namespace | None = None, *, limit: int = 50, offset: int = 0, pending: bool | None = None
    ) -> list[Episode]:
        where, params = self._episode_filter(namespace, pending)
        rows = self._read(
            f"SELECT {EPISODE_COLUMNS} FROM episodes{where} ORDER BY seq DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [episode_row(r) for r in rows]

    def count_episodes(self, namespace: Namespace | None = None, *, pending: bool | None = None) -> int:
        where, params = self._episode_filter(namespace, pending)
        return int(self._read(f"SELECT COUNT(*) AS n FROM episodes{where}", params)[0]["n"])

    def iter_episode_tasks(self, batch: int = 1000) -> Iterator[list[tuple[str, Namespace, str]]]:
        """Every episode's (id, namespace, task), in recording order, ``batch`` at a time."""
        last = 0
        while rows := self._read(
            "SELECT seq, id, namespace, task FROM episodes WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch)
        ):
            last = rows[-1]["seq"]
            yield [(r["id"], namespace_from_key(r["namespace"]), r["task"]) for r in rows]

    def set_outcome(self, episode_id: str, outcome: Outcome) -> Episode:
        with self._write() as db:
            cursor = db.execute(
                # A changed outcome re-queues the episode: the next dream weighs it again.
                "UPDATE episodes SET success = ?, score = ?, feedback = ?, revision = revision + 1, "
                "consolidated_by = NULL, consolidated_at = NULL WHERE id = ?",
                (
                    None if outcome.success is None else int(outcome.success),
                    outcome.score,
                    outcome.feedback,
                    episode_id,
                ),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(
                    f"no episode with id {episode_id!r}",
                    hint="use the run id that was recorded (langdream episodes list shows them)",
                )
        episode = self.get_episode(episode_id)
        assert episode is not None
        return episode

    def pending_episodes(self, namespace: Namespace, limit: int) -> list[Episode]:
        rows = self._read(
            f"SELECT {EPISODE_COLUMNS} FROM episodes WHERE namespace = ? AND consolidated_by IS NULL "
            "ORDER BY seq LIMIT ?",
            (namespace_key(namespace), limit),
        )
        return [episode_row(r) for r in rows]

    def namespaces(self) -> list[NamespaceStats]:
        stats: dict[str, NamespaceStats] = {}
        for row in self._read(
            "SELECT namespace, COUNT(*) AS n, COUNT(*) - COUNT(consolidated_by) AS pending "
            "FROM episodes GROUP BY namespace"
        ):
            stats[row["namespace"]] = NamespaceStats(
                namespace=namespace_from_key(row["namespace"]), episodes=row["n"], pending=row["pending"]
            )
        for row in self._read("SELECT namespace, status, COUNT(*) AS n FROM insights GROUP BY namespace, status"):
            entry = stats.setdefault(row["namespace"], NamespaceStats(namespace=namespace_from_key(row["namespace"])))
            entry.insights[row["status"]] = row["n"]
        return sorted(stats.values(), key=lambda s: format_namespace(s.namespace))

    def has_namespace(self, namespace: Namespace) -> bool:
        key = namespace_key(namespace)
        return bool(
            self._read("SELECT 1 FROM episodes WHERE namespace = ? LIMIT 1", (key,))
            or self._read("SELECT 1 FROM insights WHERE namespace = ? LIMIT 1", (key,))
        )

    # -- insights ----------------------------------------------------------------------------

    def get_insight(self, insight_id: str) -> Insight | None:
        rows = self._read(f"SELECT {INSIGHT_COLUMNS} FROM insights WHERE id = ?", (insight_id,))
        return insight_row(rows[0]) if rows else None

    def get_insights(self, insight_ids: Sequence[str]) -> list[Insight]:
        ids = list(dict.fromkeys(insight_ids))
        if not ids:
            return []
        rows = self._read(f"SELECT {INSIGHT_COLUMNS} FROM insights WHERE id IN ({placeholders(len(ids))})", ids)
        found = {r["id"]: insight_row(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def _insight_filter(
        self, namespace: Namespace | None, statuses: Iterable[InsightStatus] | None
    ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if namespace is not None:
            clauses.append("namespace = ?")
            params.append(namespace_key(namespace))
        if statuses is not None:
            values = [InsightStatus(s).value for s in statuses]
            clauses.append(among("status", len(values)))
            params.extend(values)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list_insights(
        self, namespace: Namespace | None = None, *, statuses: Iterable[InsightStatus] | None = None
    ) -> list[Insight]:
        where, params = self._insight_filter(namespace, statuses)
        rows = self._read(
            f"SELECT {INSIGHT_COLUMNS} FROM insights{where} ORDER BY namespace, confidence DESC, id", params
        )
        return [insight_row(r) for r in rows]

    def insight_history(self, insight_id: str) -> list[InsightVersion]:
        rows = self._read("SELECT * FROM insight_versions WHERE insight_id = ? ORDER BY version", (insight_id,))
        return [version_row(r) for r in rows]

    def insights_with_vectors(
        self, namespace: Namespace | None, statuses: Iterable[InsightStatus]
    ) -> tuple[list[Insight], np.ndarray]:
        where, params = self._insight_filter(namespace, statuses)
        rows = self._read(
            f"SELECT {INSIGHT_COLUMNS}, vector FROM insights{where} AND vector IS NOT NULL ORDER BY id"
            if where
            else f"SELECT {INSIGHT_COLUMNS}, vector FROM insights WHERE vector IS NOT NULL ORDER BY id",
            params,
        )
        return self._with_vectors(rows)

    @staticmethod
    def _with_vectors(rows: list[Any]) -> tuple[list[Insight], np.ndarray]:
        insights = [insight_row(r) for r in rows]
        vectors = np.stack([vector_from(r["vector"]) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        return insights, vectors

    def insights_citing(self, episode_ids: Sequence[str], statuses: Iterable[InsightStatus]) -> dict[str, list[str]]:
        """For each insight of the given statuses that cites any of ``episode_ids``: the cited ones."""
        ids = list(dict.fromkeys(episode_ids))
        values = [InsightStatus(s).value for s in statuses]
        if not ids or not values:
            return {}
        rows = self._read(
            "SELECT e.insight_id, e.episode_id FROM insight_evidence e JOIN insights i ON i.id = e.insight_id "
            f"WHERE e.episode_id IN ({placeholders(len(ids))}) AND i.status IN ({placeholders(len(values))})",
            [*ids, *values],
        )
        citing: dict[str, list[str]] = {}
        for row in rows:
            citing.setdefault(row["insight_id"], []).append(row["episode_id"])
        return citing

    def general_insights(self, namespace: Namespace, min_tasks: int, limit: int) -> list[Insight]:
        """The most confident active insights of ``namespace`` learned across ``min_tasks`` tasks or more."""
        rows = self._read(
            f"SELECT {INSIGHT_COLUMNS} FROM insights WHERE id IN ("
            "SELECT id FROM insights WHERE namespace = ? AND status = 'active' AND tasks >= ? "
            "ORDER BY confidence DESC, id LIMIT ?) ORDER BY confidence DESC, id",
            (namespace_key(namespace), min_tasks, limit),
        )
        return [insight_row(r) for r in rows]

    def has_insights(self, namespace: Namespace, status: InsightStatus) -> bool:
        """Whether ``namespace`` has any insight in ``status``: one index probe, unlike a count."""
        rows = self._read(
            "SELECT 1 FROM insights WHERE namespace = ? AND status = ? LIMIT 1",
            (namespace_key(namespace), InsightStatus(status).value),
        )
        return bool(rows)

    def dirty_insights(self, limit: int = 1000) -> list[tuple[Insight, np.ndarray | None]]:
        rows = self._read(
            f"SELECT {INSIGHT_COLUMNS}, vector FROM insights WHERE index_dirty = 1 ORDER BY id LIMIT ?", (limit,)
        )
        return [(insight_row(r), vector_from(r["vector"])) for r in rows]

    def mark_indexed(self, versions: Sequence[tuple[str, int]]) -> None:
        with self._write() as db:
            # The version guard keeps an insight dirty if a dream changed it again meanwhile.
            db.executemany("UPDATE insights SET index_dirty = 0 WHERE id = ? AND version = ?", versions)

    def set_insight_vectors(self, vectors: Sequence[tuple[str, np.ndarray]]) -> None:
        """Replace insights' stored vectors (after a change of embedding model) and mark them dirty."""
        with self._write() as db:
            _bump_recall_epoch(db)
            db.executemany(
                "UPDATE insights SET vector = ?, index_dirty = 1 WHERE id = ?",
                [(vector_bytes(v), i) for i, v in vectors],
            )

    def iter_insight_texts(self, batch: int = 1000) -> Iterator[list[tuple[str, str, str]]]:
        """Every insight's (id, text, applies_when), ``batch`` at a time."""
        last = ""
        while rows := self._read(
            "SELECT id, text, applies_when FROM insights WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
        ):
            last = rows[-1]["id"]
            yield [(r["id"], r["text"], r["applies_when"]) for r in rows]

    def mark_all_dirty(self) -> None:
        with self._write() as db:
            db.execute("UPDATE insights SET index_dirty = 1")

    def _write_insight(self, db: Any, write: InsightWrite) -> None:
        _bump_recall_epoch(db)
        ins = write.insight
        state = state_values(ins)
        head = ("id", "namespace", "origin", "signature", "created_at", "updated_at", *STATE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in head if c != "id")
        db.execute(
            f"INSERT INTO insights ({', '.join(head)}, vector, index_dirty) "
            f"VALUES ({placeholders(len(head) + 1)}, 1) ON CONFLICT (id) DO UPDATE SET {updates}, "
            # No new vector: the wording is unchanged and the stored vector still describes it.
            "vector = COALESCE(excluded.vector, insights.vector), index_dirty = 1",
            (
                ins.id,
                namespace_key(ins.namespace),
                ins.origin.value,
                ins.signature,
                to_epoch(ins.created_at),
                to_epoch(ins.updated_at),
                *state,
                vector_bytes(write.vector),
            ),
        )
        event = ("insight_id", "action", "actor", "cause", "created_at", *STATE_COLUMNS)
        db.execute(
            f"INSERT INTO insight_versions ({', '.join(event)}) VALUES ({placeholders(len(event))})",
            (ins.id, write.action.value, write.actor, write.cause, to_epoch(ins.updated_at), *state),
        )
        if write.action in _EVIDENCE_MAY_SHRINK:
            db.execute(
                f"DELETE FROM insight_evidence WHERE insight_id = ? AND {among('episode_id', len(ins.evidence), negate=True)}",
                [ins.id, *ins.evidence],
            )
        db.executemany(
            "INSERT INTO insight_evidence (insight_id, episode_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(ins.id, e) for e in ins.evidence],
        )

    def write_insights(self, writes: Sequence[InsightWrite]) -> None:
        """Write changes made outside a dream (a person's action, a rollback) in one transaction.

        Each write must follow the version it was computed from: if a dream (in this or another
        process) changed the insight meanwhile, nothing is written.
        """
        with self._write() as db:
            for write in writes:
                row = db.execute("SELECT version FROM insights WHERE id = ?", (write.insight.id,)).fetchone()
                if row is not None and row["version"] != write.insight.version - 1:
                    raise LifecycleError(
                        f"insight {write.insight.id} changed while this was decided "
                        f"(it is at version {row['version']} now); nothing was written",
                        hint="look at it again (langdream insights explain) and repeat the command",
                    )
                self._write_insight(db, write)

    def remembered_claims(self, namespace: Namespace) -> tuple[list[Insight], np.ndarray]:
        """Insights of ``namespace`` retired or rejected on their merits, with their vectors."""
        rows = self._read(
            f"SELECT {INSIGHT_COLUMNS}, vector FROM insights WHERE namespace = ? AND remembered = 1 "
            "AND vector IS NOT NULL ORDER BY id",
            (namespace_key(namespace),),
        )
        return self._with_vectors(rows)

    def versions_at(self, namespace: Namespace, seq: int) -> dict[str, InsightVersion]:
        """Each insight of ``namespace`` as its last event at or before ``seq`` left it."""
        rows = self._read(
            "SELECT v.* FROM insights i JOIN insight_versions v ON v.seq = ("
            "SELECT MAX(seq) FROM insight_versions WHERE insight_id = i.id AND seq <= ?) "
            "WHERE i.namespace = ?",
            (seq, namespace_key(namespace)),
        )
        return {r["insight_id"]: version_row(r) for r in rows}

    # -- drift guard -------------------------------------------------------------------------

    def record_exposures(self, exposures: Sequence[Exposure]) -> None:
        """Store runs related to insights; a run seen again (its outcome changed) replaces itself."""
        if not exposures:
            return
        with self._write() as db:
            db.executemany(
                "INSERT INTO insight_exposure (insight_id, episode_id, shown, success) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (insight_id, episode_id) DO UPDATE SET shown = excluded.shown, success = excluded.success",
                [(x.insight_id, x.episode_id, int(x.shown), int(x.success)) for x in exposures],
            )

    def effects(self, insight_ids: Sequence[str]) -> dict[str, InsightEffect]:
        ids = list(dict.fromkeys(insight_ids))
        found: dict[str, InsightEffect] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            for row in self._read(
                "SELECT insight_id, shown, COUNT(*) AS n, SUM(success) AS wins FROM insight_exposure "
                f"WHERE insight_id IN ({placeholders(len(chunk))}) GROUP BY insight_id, shown",
                chunk,
            ):
                effect = found.setdefault(row["insight_id"], InsightEffect())
                wins = int(row["wins"] or 0)  # PostgreSQL sums integers as numeric
                if row["shown"]:
                    effect.shown, effect.shown_successes = row["n"], wins
                else:
                    effect.unshown, effect.unshown_successes = row["n"], wins
        return found

    # -- forgetting --------------------------------------------------------------------------

    def episode_ids_where(
        self, *, namespace: Namespace | None = None, episode_ids: Sequence[str] = (), thread_id: str | None = None
    ) -> list[tuple[str, Namespace]]:
        """Ids (with namespaces) of the episodes matching every given filter; at least one is required."""
        clauses, params = [], []
        if namespace is not None:
            clauses.append("namespace = ?")
            params.append(namespace_key(namespace))
        if episode_ids:
            clauses.append(
                f"(id IN ({placeholders(len(episode_ids))}) OR run_id IN ({placeholders(len(episode_ids))}))"
            )
            params.extend([*episode_ids, *episode_ids])
        if thread_id is not None:
            clauses.append("thread_id = ?")
            params.append(thread_id)
        if not clauses:
            raise ValueError("episode_ids_where needs a filter")
        rows = self._read(f"SELECT id, namespace FROM episodes WHERE {' AND '.join(clauses)} ORDER BY seq", params)
        return [(r["id"], namespace_from_key(r["namespace"])) for r in rows]

    def jobs_touching(self, episode_ids: Sequence[str]) -> list[str]:
        """Dream jobs whose input or clusters include any of ``episode_ids`` (their prompts showed them)."""
        wanted = set(episode_ids)
        touching = []
        for row in self._read("SELECT id, episodes, clusters, noise FROM dream_jobs"):
            ids = {e[0] for e in json.loads(row["episodes"])} | set(json.loads(row["noise"]))
            for cluster in job_clusters(row["clusters"])["clusters"]:
                ids.update(cluster)
            if ids & wanted:
                touching.append(row["id"])
        return touching

    def forget(self, plan: ForgetPlan) -> None:
        now = time.time()
        ids = list(plan.episodes)
        jobs = self.jobs_touching(ids)
        with self._write() as db:
            _bump_recall_epoch(db)
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = placeholders(len(chunk))
                db.execute(f"DELETE FROM episodes WHERE id IN ({marks})", chunk)
                db.execute(f"DELETE FROM cluster_members WHERE episode_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM insight_exposure WHERE episode_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM insight_evidence WHERE episode_id IN ({marks})", chunk)
            for write in plan.writes:
                self._write_insight(db, write)
            for cluster_id, (total, size) in plan.cluster_sums.items():
                if size <= 0:
                    db.execute("DELETE FROM clusters WHERE id = ?", (cluster_id,))
                else:
                    db.execute(
                        "UPDATE clusters SET vector_sum = ?, size = ?, updated_at = ? WHERE id = ?",
                        (vector_bytes(total), int(size), now, cluster_id),
                    )
            for insight_id in plan.scrub:
                db.execute(
                    "UPDATE insights SET text = ?, applies_when = '', stats = '{}', vector = NULL, index_dirty = 1 "
                    "WHERE id = ?",
                    (FORGOTTEN_TEXT, insight_id),
                )
                db.execute(
                    "UPDATE insight_versions SET text = ?, applies_when = '', stats = '{}' WHERE insight_id = ?",
                    (FORGOTTEN_TEXT, insight_id),
                )
            # A dream's stored model output can quote the episodes it was shown; an open job that
            # included them can no longer resume.
            for job_id in jobs:
                db.execute(
                    "UPDATE dream_outputs SET raw = ?, operations = '[]' WHERE job_id = ?", (FORGOTTEN_TEXT, job_id)
                )
                db.execute(
                    "UPDATE dream_jobs SET status = 'abandoned', updated_at = ? WHERE id = ? AND status IN ('open', 'parked')",
                    (now, job_id),
                )
            for namespace in plan.namespaces:
                self._drop_namespace(db, namespace_key(namespace))

    def _drop_namespace(self, db: Any, key: str) -> None:
        insight_ids = "SELECT id FROM insights WHERE namespace = ?"
        for table in ("insight_versions", "insight_evidence", "insight_exposure"):
            db.execute(f"DELETE FROM {table} WHERE insight_id IN ({insight_ids})", (key,))
        db.execute("DELETE FROM insights WHERE namespace = ?", (key,))
        db.execute("DELETE FROM dream_outputs WHERE job_id IN (SELECT id FROM dream_jobs WHERE namespace = ?)", (key,))
        db.execute("DELETE FROM dream_jobs WHERE namespace = ?", (key,))
        db.execute(
            "DELETE FROM cluster_members WHERE cluster_id IN (SELECT id FROM clusters WHERE namespace = ?)", (key,)
        )
        db.execute("DELETE FROM clusters WHERE namespace = ?", (key,))
        db.execute("DELETE FROM leases WHERE namespace = ?", (key,))
        db.execute("DELETE FROM episodes WHERE namespace = ?", (key,))

    # -- dream jobs --------------------------------------------------------------------------

    def get_job(self, job_id: str) -> DreamJob | None:
        rows = self._read("SELECT * FROM dream_jobs WHERE id = ?", (job_id,))
        return job_row(rows[0]) if rows else None

    def open_jobs(self, namespace: Namespace) -> list[DreamJob]:
        """The namespace's unfinished jobs (open or parked), oldest first."""
        rows = self._read(
            "SELECT * FROM dream_jobs WHERE namespace = ? AND status IN ('open', 'parked') ORDER BY created_at",
            (namespace_key(namespace),),
        )
        return [job_row(r) for r in rows]

    def parked_jobs(self) -> list[DreamJob]:
        rows = self._read("SELECT * FROM dream_jobs WHERE status = 'parked' ORDER BY updated_at")
        return [job_row(r) for r in rows]

    def list_jobs(self, namespace: Namespace | None = None, *, limit: int = 50) -> list[DreamJob]:
        if namespace is None:
            rows = self._read("SELECT * FROM dream_jobs ORDER BY created_at DESC LIMIT ?", (limit,))
        else:
            rows = self._read(
                "SELECT * FROM dream_jobs WHERE namespace = ? ORDER BY created_at DESC LIMIT ?",
                (namespace_key(namespace), limit),
            )
        return [job_row(r) for r in rows]

    def create_job(self, job: DreamJob) -> None:
        with self._write("job.journal") as db:
            db.execute(
                "INSERT INTO dream_jobs (id, namespace, status, episodes, clusters, noise, prompt_version, "
                "model_id, created_at, updated_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) "
                "ON CONFLICT DO NOTHING",
                (
                    job.id,
                    namespace_key(job.namespace),
                    job.status,
                    dumps(job.episodes),
                    dumps([{"id": i, "episodes": e} for i, e in zip(job.cluster_ids, job.clusters, strict=True)]),
                    dumps(job.noise),
                    job.prompt_version,
                    job.model_id,
                    to_epoch(job.created_at),
                    to_epoch(job.updated_at),
                ),
            )

    def abandon_job(self, job_id: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE dream_jobs SET status = 'abandoned', updated_at = ? WHERE id = ? AND status IN ('open', 'parked')",
                (time.time(), job_id),
            )

    def resume_job(self, job_id: str) -> None:
        """Count one more pass at an unfinished job; a parked job is open again while it is worked on."""
        with self._write() as db:
            db.execute(
                "UPDATE dream_jobs SET status = 'open', parked_reason = NULL, attempts = attempts + 1, updated_at = ? "
                "WHERE id = ? AND status IN ('open', 'parked')",
                (time.time(), job_id),
            )

    def park_job(self, job_id: str, reason: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE dream_jobs SET status = 'parked', parked_reason = ?, updated_at = ? WHERE id = ? AND status = 'open'",
                (reason, time.time(), job_id),
            )

    def save_output(self, job_id: str, cluster: int, raw: str, operations: str) -> None:
        with self._write("output.stored") as db:
            db.execute(
                "INSERT INTO dream_outputs (job_id, cluster, raw, operations, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (job_id, cluster) DO UPDATE SET raw = excluded.raw, operations = excluded.operations, "
                "created_at = excluded.created_at",
                (job_id, cluster, raw, operations, time.time()),
            )

    def job_outputs(self, job_id: str) -> dict[int, tuple[str, str]]:
        rows = self._read("SELECT cluster, raw, operations FROM dream_outputs WHERE job_id = ?", (job_id,))
        return {r["cluster"]: (r["raw"], r["operations"]) for r in rows}

    def commit_dream(
        self,
        job_id: str,
        writes: Sequence[InsightWrite],
        consolidated: Sequence[tuple[str, int]],
        report: DreamReport,
        clusters: Sequence[ClusterWrite] = (),
        lease_owner: str | None = None,
    ) -> None:
        now = time.time()
        with self._write("apply") as db:
            job = db.execute("SELECT status, namespace FROM dream_jobs WHERE id = ?", (job_id,)).fetchone()
            if job is None or job["status"] != "open":
                raise LedgerConflict(f"dream job {job_id} is not open (status {job and job['status']})")
            if lease_owner is not None:
                lease = db.execute("SELECT owner FROM leases WHERE namespace = ?", (job["namespace"],)).fetchone()
                if lease is None or lease["owner"] != lease_owner:
                    raise LeaseLost(f"this dreamer lost the lease of its namespace while dream {job_id} ran")
            for episode_id, revision in consolidated:
                cursor = db.execute(
                    "UPDATE episodes SET consolidated_by = ?, consolidated_at = ? "
                    "WHERE id = ? AND revision = ? AND consolidated_by IS NULL",
                    (job_id, now, episode_id, revision),
                )
                if cursor.rowcount != 1:
                    raise LedgerConflict(f"episode {episode_id} changed while dream {job_id} ran")
            for write in writes:
                self._write_insight(db, write)
            for cluster in clusters:
                self._write_cluster(db, cluster, job_id, now)
            _bump_recall_epoch(db)
            db.execute(
                "UPDATE dream_jobs SET status = 'done', updated_at = ?, report = ?, "
                "committed_seq = (SELECT COALESCE(MAX(seq), 0) FROM insight_versions) WHERE id = ?",
                (now, report.model_dump_json(), job_id),
            )

    # -- leases ------------------------------------------------------------------------------

    def acquire_lease(
        self, namespace: Namespace, owner: str, seconds: float, holder_dead: Callable[[str], bool]
    ) -> tuple[str, float] | None:
        """Take (or renew) the namespace's dream lease for ``seconds``. Returns ``None`` when this
        owner holds it now, else the current holder and when its lease expires."""
        now = time.time()
        key = namespace_key(namespace)
        with self._write("lease") as db:
            row = db.execute("SELECT owner, expires_at FROM leases WHERE namespace = ?", (key,)).fetchone()
            if row is not None and row["owner"] != owner and row["expires_at"] > now and not holder_dead(row["owner"]):
                return row["owner"], row["expires_at"]
            db.execute(
                "INSERT INTO leases (namespace, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, "
                "acquired_at = CASE WHEN leases.owner = excluded.owner THEN leases.acquired_at ELSE excluded.acquired_at END",
                (key, owner, now, now + seconds),
            )
        return None

    def release_lease(self, namespace: Namespace, owner: str) -> None:
        with self._write("job.done") as db:
            db.execute("DELETE FROM leases WHERE namespace = ? AND owner = ?", (namespace_key(namespace), owner))

    def drop_dead_leases(self, holder_dead: Callable[[str], bool]) -> int:
        """Delete the leases that expired or whose holder is known dead. Returns how many."""
        now = time.time()
        with self._write() as db:
            rows = db.execute("SELECT namespace, owner, expires_at FROM leases").fetchall()
            dead = [(r["namespace"], r["owner"]) for r in rows if r["expires_at"] <= now or holder_dead(r["owner"])]
            db.executemany("DELETE FROM leases WHERE namespace = ? AND owner = ?", dead)
        return len(dead)

    def leases(self) -> list[tuple[Namespace, str, float]]:
        """Every lease still stored: namespace, holder, expiry (epoch seconds)."""
        rows = self._read("SELECT namespace, owner, expires_at FROM leases ORDER BY namespace")
        return [(namespace_from_key(r["namespace"]), r["owner"], r["expires_at"]) for r in rows]

    # -- lasting clusters --------------------------------------------------------------------

    def clusters(self, namespace: Namespace) -> list[StoredCluster]:
        rows = self._read(
            "SELECT id, vector_sum, size FROM clusters WHERE namespace = ? ORDER BY id", (namespace_key(namespace),)
        )
        return [StoredCluster(r["id"], vector_from(r["vector_sum"]), r["size"]) for r in rows]

    def cluster_of(self, episode_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(episode_ids), _CHUNK):
            chunk = list(episode_ids[start : start + _CHUNK])
            rows = self._read(
                f"SELECT episode_id, cluster_id FROM cluster_members WHERE episode_id IN ({placeholders(len(chunk))})",
                chunk,
            )
            found.update({r["episode_id"]: r["cluster_id"] for r in rows})
        return found

    def set_cluster_sums(self, sums: Mapping[str, np.ndarray]) -> None:
        """Replace lasting clusters' vector sums (after ``reindex`` re-embedded their members)."""
        with self._write() as db:
            _bump_recall_epoch(db)
            db.executemany(
                "UPDATE clusters SET vector_sum = ? WHERE id = ?",
                [(vector_bytes(total), cluster_id) for cluster_id, total in sums.items()],
            )

    def cluster_members(self, cluster_id: str, limit: int) -> list[str]:
        """The cluster's most recently joined members, newest first."""
        rows = self._read(
            "SELECT episode_id FROM cluster_members WHERE cluster_id = ? ORDER BY seq DESC LIMIT ?",
            (cluster_id, limit),
        )
        return [r["episode_id"] for r in rows]

    def _write_cluster(self, db: Any, cluster: ClusterWrite, job_id: str, now: float) -> None:
        """Add the cluster's new members and fold their vectors into its running sum."""
        row = db.execute("SELECT vector_sum, size FROM clusters WHERE id = ?", (cluster.id,)).fetchone()
        known = set(self.cluster_of(list(cluster.members)))  # re-queued members are not counted twice
        fresh = [(i, v) for i, v in zip(cluster.members, cluster.vectors) if i not in known]
        total = vector_from(row["vector_sum"]) if row else np.zeros(len(cluster.vectors[0]), dtype=np.float32)
        for _, vector in fresh:
            total = total + vector
        size = (row["size"] if row else 0) + len(fresh)
        db.execute(
            "INSERT INTO clusters (id, namespace, vector_sum, size, job_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET namespace = excluded.namespace, vector_sum = excluded.vector_sum, "
            "size = excluded.size, job_id = excluded.job_id, updated_at = excluded.updated_at",
            (cluster.id, namespace_key(cluster.namespace), vector_bytes(total), size, job_id, now),
        )
        db.executemany(  # members are ordered by when they were recorded
            "INSERT INTO cluster_members (episode_id, cluster_id, seq) SELECT id, ?, seq FROM episodes WHERE id = ?",
            [(cluster.id, episode_id) for episode_id, _ in fresh],
        )
