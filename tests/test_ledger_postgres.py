"""The PostgreSQL ledger as many machines use it: replicas recording at once, dreamers racing for a
namespace, processes creating a fresh database together, and servers that are wrong or gone.

The behaviour both backends share is tested on both in test_ledger.py; this is what only a shared
server makes possible (or possible to get wrong).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from langdream.errors import DataHomeError, DataHomeLockedError
from langdream.ledger import ForgetPlan, LedgerConflict, open_ledger
from langdream.ledger import postgres as postgres_module
from langdream.ledger.postgres import PostgresLedger
from langdream.ledger.schema import SCHEMA_VERSION
from langdream.ledger.sqlite import SQLiteLedger
from langdream.types import DreamReport, Episode
from tests.pg_server import PostgresServer
from tests.test_ledger import episode, insight, make_job, write

NS = ("acme", "u1")


def never_dead(owner: str) -> bool:
    return False


def run_together(calls: list[Callable[[], object]]) -> list[object]:
    """Run ``calls`` on threads of their own, released at the same instant; their results (or errors)."""
    barrier = threading.Barrier(len(calls))

    def start(call: Callable[[], object]) -> object:
        barrier.wait()
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the caller asserts on what each raised
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(start, calls))


@pytest.fixture
def replicas(postgres_url: str):
    """Two ledgers on one database, as two agent processes on two machines hold them."""
    opened = [PostgresLedger(postgres_url), PostgresLedger(postgres_url)]
    yield opened
    for ledger in opened:
        ledger.close()


def test_open_ledger_picks_the_backend_by_target(postgres_url, tmp_path):
    for target in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        ledger = open_ledger(target)
        try:
            assert isinstance(ledger, PostgresLedger)
        finally:
            ledger.close()
    for target in (tmp_path / "a.sqlite3", str(tmp_path / "b.sqlite3")):
        ledger = open_ledger(target, busy_timeout=1.5)
        try:
            assert isinstance(ledger, SQLiteLedger) and ledger.busy_timeout == 1.5
        finally:
            ledger.close()


def test_replicas_recording_at_once_lose_nothing_and_store_each_run_once(replicas):
    threads_per_replica, runs = 4, 60
    shared = [f"shared-{i}" for i in range(runs)]  # runs every writer tries to record (a retried delivery)

    def writer(ledger: PostgresLedger, name: str) -> Callable[[], list[tuple[str, bool]]]:
        def record() -> list[tuple[str, bool]]:
            results = []
            for i in range(runs):
                for episode_id in (f"{name}-{i}", shared[i]):
                    (added,) = ledger.add_episodes([Episode(id=episode_id, namespace=NS, task=f"task {i}")])
                    results.append((episode_id, added))
            return results

        return record

    calls = [writer(ledger, f"r{r}-t{t}") for r, ledger in enumerate(replicas) for t in range(threads_per_replica)]
    outcomes = run_together(calls)

    assert not [o for o in outcomes if isinstance(o, Exception)]
    flat = [pair for outcome in outcomes for pair in outcome]
    own = {episode_id for episode_id, _ in flat if not episode_id.startswith("shared-")}
    assert len(own) == len(calls) * runs and all(added for i, added in flat if i in own)
    # Every shared run was added by exactly one writer, and refused to every other one.
    wins = {i: sum(added for e, added in flat if e == i) for i in shared}
    assert set(wins.values()) == {1}
    reader = replicas[1]
    assert reader.count_episodes(NS) == len(own) + len(shared)
    stored = [row for page in reader.iter_episode_tasks(batch=100) for row in page]
    assert {episode_id for episode_id, _, _ in stored} == own | set(shared)
    # Both replicas see the same queue, in one recording order.
    queues = [[e.id for e in ledger.pending_episodes(NS, 10_000)] for ledger in replicas]
    assert queues[0] == queues[1] and len(queues[0]) == len(stored)


def test_dreamers_racing_for_a_namespace_lease_one_wins(replicas):
    spaces = [("acme", f"u{n}") for n in range(12)]
    owners = [f"host-{r}:{t}:dreamer" for r in range(2) for t in range(4)]
    for namespace in spaces:
        calls = [
            (lambda ledger=replicas[n % 2], owner=owner, ns=namespace: ledger.acquire_lease(ns, owner, 60, never_dead))
            for n, owner in enumerate(owners)
        ]
        results = run_together(calls)
        assert not [r for r in results if isinstance(r, Exception)]
        winners = [owner for owner, result in zip(owners, results) if result is None]
        assert len(winners) == 1, (namespace, results)
        # Every loser was told who holds it.
        assert {r[0] for r in results if r is not None} == set(winners)
        assert [(o, e > time.time()) for ns, o, e in replicas[0].leases() if ns == namespace] == [(winners[0], True)]


def test_two_dreamers_committing_one_job_apply_it_once(replicas):
    first, second = replicas
    first.add_episodes([episode(i) for i in range(6)])
    stored = first.get_episodes([f"ep-{i}" for i in range(6)])
    make_job(first, "job-1", stored)
    consolidated = [(e.id, e.revision) for e in stored]

    def commit(ledger: PostgresLedger, text: str) -> Callable[[], None]:
        writes = [write(insight("ins-1", evidence=["ep-0", "ep-1"], text=text))]
        return lambda: ledger.commit_dream("job-1", writes, consolidated, DreamReport(namespace=NS, added=1))

    results = run_together([commit(first, "from the first"), commit(second, "from the second")])

    assert sum(r is None for r in results) == 1
    assert [type(r) for r in results if r is not None] == [LedgerConflict]
    winner = "from the first" if results[0] is None else "from the second"
    assert [(v.version, v.text) for v in second.insight_history("ins-1")] == [(1, winner)]
    assert second.get_job("job-1").status == "done"
    assert second.count_episodes(NS, pending=True) == 0


def test_a_write_waits_for_another_writer_at_most_busy_timeout_and_readers_never_wait(postgres_url):
    ledger = PostgresLedger(postgres_url, busy_timeout=0.3)
    other = PostgresLedger(postgres_url)
    try:
        ledger.add_episodes([episode(1)])
        with other._write() as db:  # another process is in the middle of a write
            db.execute("UPDATE episodes SET feedback = 'from the other process' WHERE id = 'ep-1'")
            started = time.monotonic()
            with pytest.raises(DataHomeLockedError) as info:
                ledger.add_episodes([episode(2)])
            assert 0.25 < time.monotonic() - started < 5
            assert info.value.hint and "busy_timeout" in info.value.hint
            assert "postgres" in info.value.message
            # Readers see the last committed state without waiting.
            assert ledger.count_episodes() == 1
            assert ledger.get_episode("ep-1").outcome.feedback is None
        assert ledger.get_episode("ep-1").outcome.feedback == "from the other process"
        assert ledger.add_episodes([episode(2)]) == [True]
        assert ledger.count_episodes() == 2
    finally:
        ledger.close()
        other.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://langdream:s3cret@127.0.0.1:1/memory",  # nothing listens on port 1
        "postgresql://langdream:s3cret@host.invalid:5432/memory",  # a name that never resolves
        "postgresql://langdream:s3cret@127.0.0.1:5432/memory?sslmode=bogus",  # malformed
    ],
    ids=["refused", "unknown-host", "bad-option"],
)
def test_an_unreachable_or_bad_url_raises_data_home_error_with_a_hint(url):
    with pytest.raises(DataHomeError) as info:
        open_ledger(url, busy_timeout=2)
    error = info.value
    assert not isinstance(error, DataHomeLockedError)
    assert "check the URL" in error.hint and "server runs" in error.hint
    assert "s3cret" not in str(error)  # the password is never shown
    assert "postgresql://langdream:***@" in error.message


def test_a_database_that_does_not_exist_raises_data_home_error(postgres_server: PostgresServer):
    with pytest.raises(DataHomeError) as info:
        open_ledger(postgres_server.url(database="no_such_database"))
    assert "no_such_database" in info.value.message and info.value.hint


def test_a_schema_that_does_not_exist_raises_data_home_error(postgres_server: PostgresServer):
    with pytest.raises(DataHomeError) as info:
        open_ledger(postgres_server.url(schema="no_such_schema"))
    assert "schema" in info.value.hint


def test_without_psycopg_the_hint_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(DataHomeError) as info:
        open_ledger("postgresql://langdream@127.0.0.1:5432/memory")
    assert 'pip install "langdream[postgres]"' in info.value.hint


def test_a_ledger_written_by_a_newer_langdream_is_refused(postgres_url):
    ledger = PostgresLedger(postgres_url)
    ledger.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    ledger.close()
    with pytest.raises(DataHomeError) as info:
        PostgresLedger(postgres_url)
    assert "newer langdream" in info.value.message and info.value.hint


def test_text_postgresql_cannot_store_is_a_data_home_error_and_writes_nothing(postgres_url):
    ledger = PostgresLedger(postgres_url)
    try:
        with pytest.raises(DataHomeError) as info:
            ledger.add_episodes([episode(1), episode(2, task="a NUL \x00 inside")])
        assert "NUL" in info.value.hint
        assert ledger.count_episodes() == 0  # the whole write was rolled back
        assert ledger.add_episodes([episode(1)]) == [True]
    finally:
        ledger.close()


def _langdream_sessions(server: PostgresServer, name: str) -> int:
    with psycopg.connect(server.url(), autocommit=True) as db:
        return db.execute("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchone()[0]


def _wait_for_sessions(server: PostgresServer, name: str, expected: int) -> int:
    deadline = time.monotonic() + 10  # a closed session leaves the server's view a moment later
    while (count := _langdream_sessions(server, name)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def test_threads_share_a_small_pool_and_close_ends_every_connection(postgres_server, postgres_url):
    name = "pool-test"
    ledger = PostgresLedger(f"{postgres_url}&application_name={name}")
    try:
        ledger.add_episodes([episode(i) for i in range(20)])
        run_together([lambda: [ledger.get_episode(f"ep-{i}") for i in range(20)] for _ in range(8)])
        assert 1 <= _langdream_sessions(postgres_server, name) <= postgres_module._IDLE_CONNECTIONS
    finally:
        ledger.close()
    assert _wait_for_sessions(postgres_server, name, 0) == 0


def test_a_ledger_recovers_when_the_server_drops_its_connections(postgres_server, postgres_url, monkeypatch):
    name = "restart-test"
    ledger = PostgresLedger(f"{postgres_url}&application_name={name}")

    def drop_connections() -> None:
        with psycopg.connect(postgres_server.url(), autocommit=True) as db:
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,))
        assert _wait_for_sessions(postgres_server, name, 0) == 0

    try:
        ledger.add_episodes([episode(1)])
        drop_connections()
        # A connection that was used a moment ago is trusted: its call fails, the next one reconnects.
        with pytest.raises(DataHomeError) as info:
            ledger.count_episodes()
        assert "lost the ledger" in info.value.message and info.value.hint
        assert ledger.count_episodes() == 1
        # One that sat idle for a while is checked first, so the call succeeds.
        monkeypatch.setattr(postgres_module, "_CHECK_IDLE_SECONDS", 0.0)
        drop_connections()
        assert ledger.add_episodes([episode(2)]) == [True]
        assert ledger.count_episodes() == 2
    finally:
        ledger.close()


def _files_holding(server: PostgresServer, url: str, text: str) -> list[str]:
    """The database's files (tables, indexes, their TOAST) that hold ``text``, once written out."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CHECKPOINT")
        (oid,) = db.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    folder = server.data / "base" / str(oid)
    return sorted(p.name for p in folder.iterdir() if p.is_file() and text.encode() in p.read_bytes())


def test_forget_and_compact_leave_no_forgotten_text_in_the_database_files(postgres_server, postgres_url):
    canary = f"canary-{uuid.uuid4().hex}"
    ledger = PostgresLedger(postgres_url)
    try:
        ledger.add_episodes([episode(1, task=f"secret {canary}", final_answer=canary * 200), episode(2)])
        assert _files_holding(postgres_server, postgres_url, canary)  # written out before forgetting
        ledger.forget(ForgetPlan(episodes=["ep-1"]))
        ledger.compact()
        assert _files_holding(postgres_server, postgres_url, canary) == []
        assert ledger.get_episode("ep-1") is None and ledger.get_episode("ep-2") is not None
        assert ledger.add_episodes([episode(3)]) == [True]  # compacted, and working
    finally:
        ledger.close()


def test_a_table_dropped_under_the_ledger_is_a_data_home_error(postgres_server, postgres_url):
    ledger = PostgresLedger(postgres_url)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("DROP TABLE episodes")
        with pytest.raises(DataHomeError) as info:
            ledger.count_episodes()
        assert "episodes" in info.value.message and info.value.hint
    finally:
        ledger.close()


OPEN_AND_RECORD = """
import sys, time
from pathlib import Path
from langdream.ledger import open_ledger
from langdream.types import Episode

run, name, urls = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
(run / f"{name}.ready").touch()
while not (run / "go").exists():
    time.sleep(0.001)
for url in urls:  # every process opens the first target at the same instant, then the next...
    ledger = open_ledger(url)
    ledger.add_episodes([Episode(id=name, namespace=("n",), task="t")])
    ledger.close()
"""


def _open_at_once(urls: list[str], run: Path, processes: int) -> list[subprocess.CompletedProcess]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_RECORD, str(run), f"p{n}", *urls],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    deadline = time.monotonic() + 120
    while len(list(run.glob("*.ready"))) < processes and time.monotonic() < deadline:
        time.sleep(0.01)
    (run / "go").touch()
    return [subprocess.CompletedProcess(c.args, c.wait(timeout=120), *c.communicate()) for c in children]


def test_processes_opening_a_fresh_database_at_once_create_it_once(postgres_server: PostgresServer, tmp_path):
    postgres_server.execute("CREATE DATABASE fresh_at_once")
    schemas = [postgres_server.create_schema() for _ in range(2)]
    try:
        targets = [postgres_server.url(database="fresh_at_once")] + [postgres_server.url(s) for s in schemas]
        done = _open_at_once(targets, tmp_path, processes=4)
        assert [(d.returncode, d.stderr[-2000:]) for d in done] == [(0, "")] * 4
        for url in targets:
            ledger = open_ledger(url)
            try:
                assert sorted(e.id for e in ledger.list_episodes(("n",))) == ["p0", "p1", "p2", "p3"]
                assert ledger.get_meta("schema_version") == str(SCHEMA_VERSION)
            finally:
                ledger.close()
    finally:
        postgres_server.execute("DROP DATABASE fresh_at_once WITH (FORCE)")
        for schema in schemas:
            postgres_server.drop_schema(schema)
