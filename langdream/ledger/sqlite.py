"""The default ledger: one SQLite file in WAL mode.

One connection per thread (SQLite connections must not be shared across threads); every write
is one ``BEGIN IMMEDIATE`` transaction, so a kill at any point leaves either all of it or none.
The ledger's behaviour is ``SQLLedger``'s; this module connects it to a file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langdream.config import DEFAULT_BUSY_TIMEOUT_SECONDS
from langdream.errors import DataHomeError, DataHomeLockedError
from langdream.ledger.schema import LATE_INDEXES, SCHEMA, SCHEMA_VERSION, VERSIONS_TABLE
from langdream.ledger.sql import (
    FORGOTTEN_TEXT,
    SQLLedger,
    _bump_recall_epoch,  # noqa: F401 - where tests/crash_worker.py imports it
)

# Schema 1 -> 2: holds and remembered claims on insights; the event log gains a global order,
# who acted and why, and the fields rollback restores; jobs remember where their commit cut.
_UPGRADE_V2 = """
ALTER TABLE insights ADD COLUMN hold TEXT;
ALTER TABLE insights ADD COLUMN remembered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dream_jobs ADD COLUMN committed_seq INTEGER;
ALTER TABLE insight_versions RENAME TO insight_versions_v1;
{versions}
INSERT INTO insight_versions (insight_id, version, action, status, status_reason, text, applies_when, evidence,
    support, threads, confidence, job_id, model_id, prompt_version, created_at)
SELECT insight_id, version, action, status, status_reason, text, applies_when, evidence, support, threads,
    confidence, job_id, model_id, prompt_version, created_at
FROM insight_versions_v1 ORDER BY created_at, insight_id, version;
DROP TABLE insight_versions_v1;
""".replace("{versions}", VERSIONS_TABLE)

# Schema 2 -> 3: parked dream jobs (the leases table is created by the schema itself).
_UPGRADE_V3 = """
ALTER TABLE dream_jobs ADD COLUMN parked_reason TEXT;
ALTER TABLE dream_jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
"""


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of ``script``, one at a time (executescript would commit first)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


class SQLiteLedger(SQLLedger):
    """Ledger in ``path`` (a SQLite file), created on first use."""

    _errors = (sqlite3.OperationalError,)
    _open_errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._migrate()

    @property
    def location(self) -> str:
        return str(self.path)

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            # NORMAL keeps every committed transaction across a process kill in WAL mode; only a
            # power cut can lose the last commits, which FULL would pay for on every write.
            db.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise self._home_error(exc) from exc
        return db

    def _home_error(self, exc: BaseException) -> Exception:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return DataHomeLockedError(
                f"the ledger {self.path} stayed locked by another process for {self.busy_timeout:g}s",
                hint="wait for the other langdream process (a dream or an import) to finish, or stop it",
            )
        return DataHomeError(
            f"cannot open the ledger {self.path}: {text}",
            hint="check that the data home (--home or LANGDREAM_HOME) is a writable directory",
        )

    @property
    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise self._closed_error()
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        yield self._db

    def close(self) -> None:
        self._closed = True
        with self._connections_lock:
            for db in self._connections:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()

    def _begin(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")

    def _rollback(self, db: sqlite3.Connection) -> None:
        if db.in_transaction:
            db.execute("ROLLBACK")

    def _schema_statements(self, stored: int | None) -> Iterator[str]:
        upgrades = (_UPGRADE_V2 if stored == 1 else "") + (_UPGRADE_V3 if stored in (1, 2) else "")
        return _statements(SCHEMA + upgrades + LATE_INDEXES)

    def compact(self) -> None:
        """Leave no deleted text behind: rewrite the file without free pages and empty the WAL."""
        db = self._db
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            raise self._home_error(exc) from exc


__all__ = ["FORGOTTEN_TEXT", "SCHEMA_VERSION", "SQLiteLedger"]
