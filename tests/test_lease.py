"""Dream leases: one dreamer per namespace, a dead dreamer's lease taken over, a lost lease writes nothing.

Every test runs on a SQLite ledger and on a PostgreSQL one (a fresh schema of the test server per memory).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from langdream import lease
from langdream.dream import Dreamer
from langdream.ledger import LeaseLost
from tests.test_dream import CountingReflector, load, snapshot

NS = ("hotpotqa",)


@pytest.fixture(params=["sqlite", "postgres"])
def make_memory(request: pytest.FixtureRequest, make_memory):
    """conftest's ``make_memory``, on the parametrized ledger backend."""
    if request.param == "sqlite":
        yield make_memory
        return
    server = request.getfixturevalue("postgres_server")
    made: list[tuple[object, str]] = []

    def make(home=None, **kwargs):
        schema = server.create_schema()
        memory = make_memory(home, ledger_url=server.url(schema), **kwargs)
        made.append((memory, schema))
        return memory

    yield make
    for memory, schema in made:
        memory.ledger.close()
        server.drop_schema(schema)


@pytest.fixture(scope="module")
def sample(hotpotqa_records: list[dict]) -> list[dict]:
    """Every run of 10 questions of the shipped sample (about 100 real episodes)."""
    ids = sorted({r["metadata"]["question_id"] for r in hotpotqa_records})[:10]
    return [r for r in hotpotqa_records if r["metadata"]["question_id"] in ids]


def dead_pid() -> int:
    """The pid of a process that has exited (so no process has it now)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_namespace_held_by_a_live_dreamer_is_skipped_and_its_work_not_repeated(memory, sample, tmp_path):
    load(memory, sample, tmp_path)
    other = f"{socket.gethostname()}:{os.getppid()}:someone-else"  # a live process: the test runner's parent
    assert memory.ledger.acquire_lease(NS, other, 60, lease.holder_dead) is None

    (report,) = memory.dream("hotpotqa")
    assert report.skipped and "holds this namespace" in report.skipped and str(os.getppid()) in report.skipped
    assert memory.insights(status="all") == [] and memory.ledger.open_jobs(NS) == []
    assert [(ns, owner) for ns, owner, _ in memory.ledger.leases()] == [(NS, other)]


def test_the_lease_of_a_dead_process_is_taken_at_once_and_released_after_the_dream(memory, sample, tmp_path):
    load(memory, sample, tmp_path)
    corpse = f"{socket.gethostname()}:{dead_pid()}:killed"
    assert memory.ledger.acquire_lease(NS, corpse, 3600, lease.holder_dead) is None

    (report,) = memory.dream("hotpotqa")
    assert report.skipped is None and report.added > 0
    assert memory.ledger.leases() == []  # released when the dream ended


def test_an_expired_lease_of_another_machine_is_taken_over(memory, sample, tmp_path):
    load(memory, sample, tmp_path)
    remote = "another-host:1:elsewhere"
    assert memory.ledger.acquire_lease(NS, remote, 0.2, lease.holder_dead) is None
    (skipped,) = memory.dream("hotpotqa")  # another machine's process cannot be checked: wait for expiry
    assert skipped.skipped and "another-host" in skipped.skipped
    time.sleep(0.3)
    (report,) = memory.dream("hotpotqa")
    assert report.skipped is None and report.added > 0


def test_a_dreamer_that_lost_its_lease_writes_nothing_and_leaves_the_job_to_the_new_holder(
    make_memory, sample, tmp_path, monkeypatch
):
    reference = make_memory()
    load(reference, sample, tmp_path)
    reference.dream("hotpotqa")

    memory = make_memory()
    load(memory, sample, tmp_path)
    dreamer = Dreamer(memory.ledger, memory.index, memory.embedder, CountingReflector(), memory.settings)
    commit = memory.ledger.commit_dream
    usurper = "another-host:1:usurper"

    def lease_taken_first(*args, **kwargs):
        # Another dreamer takes the lease over between this one's renewal and its apply.
        with memory.ledger._write() as db:
            db.execute("UPDATE leases SET owner = ?, expires_at = ?", (usurper, time.time() + 3600))
        return commit(*args, **kwargs)

    monkeypatch.setattr(memory.ledger, "commit_dream", lease_taken_first)
    report = dreamer.dream(NS)
    assert report.skipped and "took this namespace over" in report.skipped
    assert memory.insights(status="all") == []
    (job,) = memory.ledger.open_jobs(NS)  # still open: the new holder resumes it
    assert job.status == "open"
    assert [owner for _, owner, _ in memory.ledger.leases()] == [usurper]

    # The new holder's dream (here: its lease expires, and this process dreams again) resumes the job.
    monkeypatch.setattr(memory.ledger, "commit_dream", commit)
    with memory.ledger._write() as db:
        db.execute("UPDATE leases SET expires_at = 0")
    (resumed,) = memory.dream("hotpotqa")
    assert resumed.resumed and resumed.job_id == job.id
    assert snapshot(memory) == snapshot(reference)


def test_commit_refuses_a_stale_lease_owner(memory, sample, tmp_path):
    load(memory, sample, tmp_path)
    (report,) = memory.dream("hotpotqa")
    job = memory.ledger.get_job(report.job_id)
    memory.ledger.create_job(job.model_copy(update={"id": "dj_other", "status": "open"}))
    assert memory.ledger.acquire_lease(NS, "another-host:1:holder", 60, lease.holder_dead) is None
    try:
        memory.ledger.commit_dream("dj_other", [], [], report, lease_owner="another-host:2:stale")
    except LeaseLost as exc:
        assert "lost the lease" in str(exc)
    else:
        raise AssertionError("a stale lease owner committed")
    assert memory.ledger.get_job("dj_other").status == "open"
