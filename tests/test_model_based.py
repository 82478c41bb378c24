"""Model-based property test: random sequences of record, dream, crash-and-recover, forget,
recall and retire, checked after every step against a plain-Python model of what must hold.

The model knows which episodes were acknowledged (``record`` returned) and not forgotten, in
which namespace and thread each lives, what each was recorded with, which insights a person
retired, and which episode ids were ever forgotten. It does not predict which insights a dream
learns (that is the reflector's business); it checks what must hold whatever was learned:

- the ledger's episodes are exactly the model's, namespace and thread included, and ``record``
  says False exactly for ids the ledger holds;
- every insight cites only live episodes of its own namespace; an active one cites at least
  ``min_support`` of them from ``min_threads`` threads; one left with no evidence is revoked and scrubbed;
- an insight a person retired never becomes active again, and no active insight says what it said;
- recall shows only active insights of the namespace asked;
- chroma's insight ids are the ledger's active ids, and no insight is left marked for the index,
  after every step that can change either (a kill's recovery included);
- no dream job is left open or parked between steps, no episode is consolidated by two done jobs,
  an episode marked consolidated is in a cluster of its done job, and a dream skipped as "nothing
  new" leaves no new episode behind; every lease left in the ledger belongs to a dead dreamer;
- ``PRAGMA integrity_check`` of the ledger file is ``ok`` (every few steps and at the end).

A crash is simulated with ``langdream.crashpoints.set_crash_handler``: a handler raises a
``BaseException`` at the n-th time a chosen durable boundary is reached (a kill: every later
boundary raises too). The memory is closed, the killed dreamers are forgotten (a restarted
process does not know them), a new memory is opened on the same data home and it dreams, as cron
would. A record that was interrupted is in doubt: the model adopts the ledger's answer (it must
be stored when the kill came at its commit).

CI runs 200 examples x 50 steps, derandomized (every run checks the same sequences);
``LANGDREAM_SOAK=1`` runs randomized ones, ``LANGDREAM_SOAK_EXAMPLES`` of them (1000 by default).
Failures the machine found are replayed by the regression tests at the end of this file.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from langdream import DreamMemory, Episode, InsightStatus, Outcome, UnknownNamespaceError, lease
from langdream.crashpoints import POINTS, set_crash_handler
from langdream.namespace import namespace_from_key, parse_namespace
from langdream.types import Message, ToolCall

# -- the world the machine draws from --------------------------------------------------------

NAMESPACES = ("alpha", "beta")
THREADS = ("t0", "t1", "t2")
CAPITALS = {"France": "Paris", "Peru": "Lima", "Japan": "Tokyo"}
COUNTRIES = tuple(CAPITALS)
EPISODE_IDS = tuple(f"e{n:02d}" for n in range(20))
RECALL_TASKS = (*(f"What is the capital of {c}?" for c in COUNTRIES), "How tall is the Eiffel tower?")
SETTINGS = {"min_support": 2, "min_threads": 1, "min_cluster_size": 2, "cluster_refresh_episodes": 1}
ACTOR = "person:model-test"
FORGOTTEN_TEXT = "[forgotten]"
INTEGRITY_EVERY = 5  # steps between two PRAGMA integrity_check runs (and once at the end)

episode_args = st.tuples(
    st.sampled_from(EPISODE_IDS),
    st.sampled_from(NAMESPACES),
    st.sampled_from(COUNTRIES),
    st.sampled_from(THREADS),
    st.booleans(),
)
batches = st.lists(episode_args, min_size=1, max_size=4)


def make_episode(episode_id: str, namespace: str, country: str, thread: str, success: bool) -> Episode:
    """A search agent's run: a success retries with the suggested title and answers from the
    result; a failure answers right after the search that found nothing. The extractive
    reflector learns contrasts (and hard-task warnings) from such runs."""
    task = f"What is the capital of {country}?"
    first = f"{episode_id}-1"
    messages = [
        Message(role="user", content=task),
        Message(role="assistant", tool_calls=[ToolCall(name="search", args={"query": country}, id=first)]),
        Message(
            role="tool", content=f"Could not find [{country}]. Similar: ['{country} (country)']", tool_call_id=first
        ),
    ]
    if success:
        second = f"{episode_id}-2"
        messages += [
            Message(
                role="assistant",
                tool_calls=[ToolCall(name="search", args={"query": f"{country} (country)"}, id=second)],
            ),
            Message(
                role="tool", content=f"{country} is a country. Its capital is {CAPITALS[country]}.", tool_call_id=second
            ),
            Message(role="assistant", content=CAPITALS[country]),
        ]
    else:
        messages.append(Message(role="assistant", content="I could not find it."))
    return Episode(
        id=episode_id,
        namespace=namespace,
        task=task,
        messages=messages,
        outcome=Outcome(success=success),
        thread_id=thread,
    )


class CachingEmbedder:
    """The session's embedder with a memo per text: the same few texts come back all the time
    here, and each is embedded once, as the model computes it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._memo: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            self._memo.update(zip(missing, self._inner.embed(missing)))
        if not texts:
            return np.zeros((0, self._inner.dimension), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)


class SimulatedKill(BaseException):
    """Raised at a crash point: the process 'dies' there (a BaseException, like a kill, is not
    something langdream may catch and carry on from)."""


class Killer:
    """A crash handler that kills at the ``nth`` time the boundary ``point`` is reached; once dead,
    every later boundary raises too (a dead process reaches no further step)."""

    def __init__(self, point: str, nth: int) -> None:
        self.point = point
        self.nth = nth
        self.reached: list[str] = []
        self.dead = False
        self._lock = threading.Lock()  # reflections reach boundaries from worker threads

    def __call__(self, name: str) -> None:
        with self._lock:
            self.reached.append(name)
            if self.dead or (name == self.point and self.reached.count(name) == self.nth):
                self.dead = True
                raise SimulatedKill(f"killed at {name} #{self.reached.count(name)}")


def _data_root() -> str | None:
    """tmpfs where there is one: chroma and SQLite sync on every write, which a disk pays for."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _bury_dead_dreamers(memory: DreamMemory) -> None:
    """After a kill, the leases left in the ledger belong to the killed dreamers: mark them not
    running, as a restarted process (which never knew them) sees them. In-process, a dreamer
    killed right after taking its lease never got to say it stopped."""
    for _, owner, _ in memory.ledger.leases():
        lease.mark_live(owner, False)


class Model:
    """What the memory must hold, in plain Python."""

    def __init__(self) -> None:
        self.episodes: dict[str, tuple[str, str]] = {}  # acknowledged, not forgotten: id -> (namespace, thread)
        self.ever_forgotten: set[str] = set()  # ids that were forgotten at least once (they may come back)
        self.retired: dict[str, str] = {}  # insights a person retired -> namespace
        self.recorded: dict[str, tuple] = {}  # the arguments each id was last acknowledged with

    def in_namespace(self, namespace: str) -> set[str]:
        return {i for i, (ns, _) in self.episodes.items() if ns == namespace}

    def forget(self, ids: set[str]) -> None:
        for episode_id in ids:
            del self.episodes[episode_id]
        self.ever_forgotten |= ids


class MemoryMachine(RuleBasedStateMachine):
    embedder: Any = None  # set by run_machine

    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="langdream-mbt-", dir=_data_root()))
        self.memory = self._open()
        self.model = Model()
        self.index_touched = False  # a forget or a kill happened: check the index whatever the ledger says
        self.indexed_state: list[tuple] = []  # the ledger's insights (id, version, status) at the last check
        self.in_doubt: tuple | None = None  # the episode a kill interrupted the recording of
        self.steps = 0
        self.reader: sqlite3.Connection | None = None
        self.jobs_state: tuple | None = None  # what the jobs check last saw (skipped while unchanged)
        self.jobs_forgotten: set[str] = set()

    # -- plumbing ----------------------------------------------------------------------------

    def _open(self) -> DreamMemory:
        return DreamMemory(self.home, embedder=self.embedder, **SETTINGS)

    def _record(self, batch: Sequence[tuple]) -> None:
        """Record one episode at a time; the model follows each acknowledged one. A kill leaves
        the episode being recorded in doubt (``self.in_doubt``)."""
        for args in batch:
            episode_id, namespace, _, thread, _ = args
            self.in_doubt = args
            expected = episode_id not in self.model.episodes
            added = self.memory.record(make_episode(*args))
            self.in_doubt = None
            assert added == expected, (
                f"record({episode_id}) returned {added}; the id was {'new' if expected else 'known'}"
            )
            if added:
                self.model.episodes[episode_id] = (namespace, thread)
                self.model.recorded[episode_id] = tuple(args)

    def _dream(self, namespace: str | None) -> None:
        if namespace is None:
            reports = self.memory.dream()
        else:
            try:
                reports = self.memory.dream(namespace)
            except UnknownNamespaceError:
                assert not self.model.in_namespace(namespace), f"dream({namespace!r}): unknown, yet it has episodes"
                assert not self.memory.ledger.has_namespace(parse_namespace(namespace))
                return
        for report in reports:
            assert not (report.skipped or "").startswith("another dreamer"), report.skipped  # nobody else dreams
            assert report.parked is None, report.parked
            if report.added or report.upvoted or report.edited:
                event("a dream changed insights")
            if report.job_id is not None and report.skipped is None:
                job = self.memory.ledger.get_job(report.job_id)
                assert job is not None and job.status == "done", (report.summary(), job and job.status)
            if (report.skipped or "").startswith("nothing new"):
                self._check_skip(report.namespace, report.skipped)

    def _check_skip(self, namespace: tuple[str, ...], why: str) -> None:
        """A dream skipped as "nothing new since dream J": J had exactly the pending episodes as
        input. None of them may be one J consolidated: that one was forgotten since and recorded
        again, so it is new, and skipping leaves it pending for good."""
        pending = {e.id for e in self.memory.episodes(namespace, limit=10_000, pending=True)}
        for job in self.memory.ledger.list_jobs(namespace, limit=100_000):
            if job.status == "done" and {i for i, _ in job.episodes} == pending:
                again = sorted({i for cluster in job.clusters for i in cluster if i in pending})
                assert not again, (
                    f"{why!r}, yet {again}, recorded again after {job.id} consolidated and forgot them, wait for good"
                )

    def _recover(self, killer: Killer) -> None:
        """After a kill: a new process opens the data home and dreams (what cron would do next)."""
        set_crash_handler(None)
        self.memory.close()
        self.memory = self._open()
        _bury_dead_dreamers(self.memory)
        if self.in_doubt is not None:
            args, self.in_doubt = self.in_doubt, None
            episode_id, namespace, _, thread, _ = args
            stored = self.memory.ledger.get_episode(episode_id)
            if episode_id not in self.model.episodes:
                # Killed at "episode.write" (its commit), the write is durable; elsewhere either way.
                assert stored is not None or killer.reached[-1] != "episode.write", (
                    f"{episode_id} lost after its commit"
                )
            if episode_id not in self.model.episodes and stored is not None:
                assert stored.namespace == parse_namespace(namespace) and stored.thread_id == thread
                self.model.episodes[episode_id] = (namespace, thread)
                self.model.recorded[episode_id] = tuple(args)
        self._dream(None)  # brings the index up to date too, even with nothing to dream

    # -- rules -------------------------------------------------------------------------------

    @rule(batch=batches)
    def record(self, batch: list[tuple]) -> None:
        self._record(batch)

    @precondition(lambda self: set(self.model.recorded) - set(self.model.episodes))
    @rule()
    def record_the_forgotten_again(self) -> None:
        """Import the same runs again after forgetting them (the same JSONL, say): same ids, same content."""
        again = sorted(set(self.model.recorded) - set(self.model.episodes))
        self._record([self.model.recorded[i] for i in again])

    @rule(namespace=st.none() | st.sampled_from(NAMESPACES))
    def dream(self, namespace: str | None) -> None:
        self._dream(namespace)

    @rule(
        point=st.sampled_from(POINTS),
        nth=st.integers(min_value=1, max_value=3),
        what=st.sampled_from(["record", "record-and-dream", "dream"]),
        batch=batches,
        namespace=st.none() | st.sampled_from(NAMESPACES),
    )
    def crash_and_recover(self, point: str, nth: int, what: str, batch: list[tuple], namespace: str | None) -> None:
        if what == "record-and-dream":
            self._record(batch)  # something to dream about
        killer = Killer(point, nth)
        self.in_doubt = None
        set_crash_handler(killer)
        try:
            if what == "record":
                self._record(batch)
            else:
                self._dream(namespace)
        except SimulatedKill:
            event(f"killed at {point} (in a {what})")
            self.index_touched = True
            self._recover(killer)
        finally:
            set_crash_handler(None)

    @rule(
        kind=st.sampled_from(["episode", "thread", "thread-in-namespace", "namespace"]),
        pick=st.integers(min_value=0, max_value=len(EPISODE_IDS) - 1),
        recorded=st.booleans(),
        thread=st.sampled_from(THREADS),
        namespace=st.sampled_from(NAMESPACES),
    )
    def forget(self, kind: str, pick: int, recorded: bool, thread: str, namespace: str) -> None:
        if kind == "episode":
            # One of the recorded episodes, or any id of the pool (maybe one never recorded).
            present = sorted(self.model.episodes)
            episode_id = present[pick % len(present)] if recorded and present else EPISODE_IDS[pick]
            gone = {episode_id} & set(self.model.episodes)
            report = self.memory.forget(episode=episode_id, actor=ACTOR)
        elif kind == "thread":
            gone = {i for i, (_, t) in self.model.episodes.items() if t == thread}
            report = self.memory.forget(thread=thread, actor=ACTOR)
        elif kind == "thread-in-namespace":
            gone = {i for i, (ns, t) in self.model.episodes.items() if t == thread and ns == namespace}
            report = self.memory.forget(thread=thread, namespace=namespace, actor=ACTOR)
        else:
            gone = self.model.in_namespace(namespace)
            report = self.memory.forget(namespace=namespace, actor=ACTOR)
            # The namespace's insights go with it, those a person retired included.
            self.model.retired = {i: ns for i, ns in self.model.retired.items() if ns != namespace}
        assert report.episodes == len(gone), (kind, report.episodes, sorted(gone))
        if report.insights_updated or report.insights_revoked or report.insights_deleted:
            event(f"forgetting ({kind}) changed insights")
        self.model.forget(gone)
        self.index_touched = True

    @rule(task=st.sampled_from(RECALL_TASKS), namespace=st.sampled_from(NAMESPACES))
    def recall(self, task: str, namespace: str) -> None:
        result = self.memory.recall(task, namespace)
        ns = parse_namespace(namespace)
        assert result.namespace == ns
        active = {i.id for i in self.memory.ledger.list_insights(ns, statuses=[InsightStatus.ACTIVE])}
        for recalled in result.insights:
            assert recalled.insight.id in active, (
                f"recalled {recalled.insight.id}, not an active insight of {namespace}"
            )
            assert recalled.insight.namespace == ns
            assert recalled.insight.id not in self.model.retired
        if result.insights:
            event("recall showed insights")

    @rule(pick=st.integers(min_value=0, max_value=7))
    def retire(self, pick: int) -> None:
        active = sorted(self.memory.insights(status="active"), key=lambda i: i.id)
        if not active:
            return
        chosen = active[pick % len(active)]
        retired = self.memory.retire(chosen.id, actor=ACTOR, note="model-based test")
        assert retired.status is InsightStatus.RETIRED and retired.remembered
        self.model.retired[chosen.id] = chosen.namespace[0]
        event("retired an active insight")

    # -- invariants --------------------------------------------------------------------------

    def _read(self, sql: str) -> list[tuple]:
        """Rows straight from the ledger file, read-only (cheaper than building models per step)."""
        if self.reader is None:
            self.reader = sqlite3.connect(
                f"file:{self.home / 'ledger.sqlite3'}?mode=ro", uri=True, isolation_level=None
            )
        return self.reader.execute(sql).fetchall()

    @invariant()
    def episodes_and_jobs_match_the_model(self) -> None:
        rows = self._read("SELECT id, namespace, thread_id, consolidated_by FROM episodes")
        assert {i: (namespace_from_key(ns)[0], t) for i, ns, t, _ in rows} == self.model.episodes
        consolidated = {i: job for i, _, _, job in rows if job is not None}
        jobs_state = (self._read("SELECT COUNT(*), TOTAL(updated_at) FROM dream_jobs")[0], consolidated)
        if jobs_state == self.jobs_state and self.model.ever_forgotten == self.jobs_forgotten:
            return  # no job and no episode's consolidation changed since the last check
        self.jobs_state, self.jobs_forgotten = jobs_state, set(self.model.ever_forgotten)

        # No job is left open (or parked) between steps, and no episode is consolidated by two jobs.
        jobs = self.memory.ledger.list_jobs(limit=100_000)
        consolidated_by: dict[str, str] = {}
        for job in jobs:
            assert job.status in ("done", "abandoned"), f"dream job {job.id} left {job.status} between steps"
            if job.status != "done":
                continue
            own = {i for i, _ in job.episodes}
            for episode_id in {i for cluster in job.clusters for i in cluster if i in own}:
                if episode_id in self.model.ever_forgotten:
                    continue  # an id forgotten and recorded again names another episode
                other = consolidated_by.setdefault(episode_id, job.id)
                assert other == job.id, f"episode {episode_id} consolidated by both {other} and {job.id}"
        done = {job.id: job for job in jobs if job.status == "done"}
        for episode_id, _, _, job_id in rows:
            if job_id is not None:
                job = done.get(job_id)
                assert job is not None, f"{episode_id} consolidated by {job_id}, not a done job"
                assert any(episode_id in cluster for cluster in job.clusters), (episode_id, job_id)
            elif episode_id not in self.model.ever_forgotten:
                assert episode_id not in consolidated_by, (
                    f"{episode_id} is pending, yet {consolidated_by[episode_id]} consolidated it"
                )
        # Nobody dreams between steps: every lease left behind is certainly dead (taken over at once).
        for namespace, owner, _ in self.memory.ledger.leases():
            assert lease.holder_dead(owner), f"the lease of {namespace} is held by a live dreamer {owner}"

    @invariant()
    def insights_cite_live_episodes_of_their_namespace(self) -> None:
        insights = self.memory.insights(status="all")
        by_id = {i.id: i for i in insights}
        active_texts: dict[str, set[str]] = {}
        for insight in insights:
            namespace = insight.namespace[0]
            assert namespace in NAMESPACES, insight.namespace
            for episode_id in insight.evidence:
                assert self.model.episodes.get(episode_id, (None,))[0] == namespace, (
                    f"insight {insight.id} ({insight.status.value}) of {namespace} cites {episode_id}, "
                    f"which is {self.model.episodes.get(episode_id, 'forgotten or never recorded')}"
                )
            if not insight.evidence:
                assert insight.status is InsightStatus.REVOKED and insight.text == FORGOTTEN_TEXT, insight
            if insight.status is InsightStatus.ACTIVE:
                assert insight.support == len(insight.evidence) >= SETTINGS["min_support"], insight
                threads = {self.model.episodes[e][1] for e in insight.evidence}
                assert insight.threads == len(threads) >= SETTINGS["min_threads"], (insight, threads)
                active_texts.setdefault(namespace, set()).add(insight.text)
        for insight_id, namespace in self.model.retired.items():
            insight = by_id.get(insight_id)
            assert insight is not None, (
                f"{insight_id}, retired by a person, vanished though {namespace} was not forgotten"
            )
            assert insight.status in (InsightStatus.RETIRED, InsightStatus.REVOKED), insight
            assert insight.text not in active_texts.get(namespace, set()), f"a dream learned {insight.text!r} again"

    @invariant()
    def index_holds_the_active_insights(self) -> None:
        insights = self.memory.insights(status="all")
        state = sorted((i.id, i.version, i.status.value) for i in insights)
        if state == self.indexed_state and not self.index_touched:
            return  # records, recalls and dreams that changed nothing change neither side
        assert not self.memory.ledger.dirty_insights(limit=1), "insights left marked for the index after a step"
        assert self.memory.index.insight_ids() == {i.id for i in insights if i.status is InsightStatus.ACTIVE}
        self.indexed_state, self.index_touched = state, False

    @invariant()
    def ledger_file_is_intact(self) -> None:
        self.steps += 1
        if self.steps % INTEGRITY_EVERY == 0:
            self._check_integrity()

    def _check_integrity(self) -> None:
        assert self._read("PRAGMA integrity_check") == [("ok",)]

    def teardown(self) -> None:
        set_crash_handler(None)
        try:
            self._check_integrity()
        finally:
            if self.reader is not None:
                self.reader.close()
            try:
                self.memory.close()
            finally:
                shutil.rmtree(self.home, ignore_errors=True)


def run_machine(embedder: Any, **overrides: Any) -> None:
    MemoryMachine.embedder = CachingEmbedder(embedder)
    config = {
        "max_examples": 200,
        "stateful_step_count": 50,
        "deadline": None,
        "derandomize": True,
        "database": None,
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
        **overrides,
    }
    try:
        run_state_machine_as_test(MemoryMachine, settings=settings(**config))
    finally:
        set_crash_handler(None)


def test_memory_behaves_like_its_model(embedder) -> None:
    run_machine(embedder)


@pytest.mark.soak
def test_memory_behaves_like_its_model_soak(embedder) -> None:
    run_machine(embedder, max_examples=int(os.environ.get("LANGDREAM_SOAK_EXAMPLES", "1000")), derandomize=False)


# -- regression tests: failures the machine found, replayed step by step ----------------------


@pytest.fixture
def fresh_memory(embedder, tmp_path):
    memory = DreamMemory(tmp_path / "home", embedder=embedder, **SETTINGS)
    yield memory
    set_crash_handler(None)
    memory.close()


def test_regression_episodes_recorded_again_after_forget_are_dreamed(fresh_memory: DreamMemory) -> None:
    # Shrunk by hypothesis from the machine above: record, dream, forget the thread, import the same runs again.
    memory = fresh_memory
    runs = [("e00", "beta", "Peru", "t0", False), ("e12", "beta", "Peru", "t0", False)]
    for args in runs:
        assert memory.record(make_episode(*args))
    (first,) = memory.dream()
    assert first.skipped is None and memory.ledger.count_episodes(pending=True) == 0  # both consolidated
    assert memory.forget(thread="t0", namespace="beta", actor=ACTOR).episodes == 2
    for args in runs:
        assert memory.record(make_episode(*args))  # new episodes as far as the ledger can tell
    (second,) = memory.dream()
    assert second.skipped is None, second.skipped  # fails: "nothing new since dream <the first one>"
    assert memory.ledger.count_episodes(pending=True) == 0


def test_regression_recovery_dream_brings_the_index_up_to_date(fresh_memory: DreamMemory, embedder) -> None:
    # Killed after its apply transaction, before its index update: the recovery dream has nothing
    # to dream, yet it must bring chroma up to date (it did not, before dream() synced the index first).
    memory = fresh_memory
    for n in range(4):
        assert memory.record(make_episode(f"e{n:02d}", "alpha", "Peru", THREADS[n % 2], n % 2 == 0))
    set_crash_handler(Killer("apply", 1))
    with pytest.raises(SimulatedKill):
        memory.dream()
    set_crash_handler(None)
    memory.close()
    memory = DreamMemory(memory.home, embedder=embedder, **SETTINGS)  # the restarted process
    try:
        assert memory.ledger.count_episodes(pending=True) == 0  # the apply transaction committed
        active = {i.id for i in memory.insights(status="active")}
        assert active
        assert memory.dream() == []  # nothing to dream: the recovery dream plans no namespace
        assert memory.index.insight_ids() == active
    finally:
        memory.close()


def test_regression_a_cancelled_adream_does_not_keep_its_lease(fresh_memory: DreamMemory) -> None:
    # Found while simulating kills at the "lease" boundary: a dreamer stopped between taking its
    # lease and entering the try/finally that gives it back keeps the namespace locked.
    memory = fresh_memory
    for n in range(4):
        assert memory.record(make_episode(f"e{n:02d}", "alpha", "Peru", THREADS[n % 2], n % 2 == 0))
    acquire = memory.ledger.acquire_lease
    entered, go_on, returned = threading.Event(), threading.Event(), threading.Event()

    def acquire_when_told(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        go_on.wait(10)
        try:
            return acquire(*args, **kwargs)
        finally:
            returned.set()

    memory.ledger.acquire_lease = acquire_when_told  # type: ignore[method-assign]

    async def cancel_while_taking_the_lease() -> None:
        task = asyncio.create_task(memory.adream("alpha"))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        go_on.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(returned.wait, 10)

    asyncio.run(cancel_while_taking_the_lease())
    memory.ledger.acquire_lease = acquire  # type: ignore[method-assign]
    # The lease is given back by a thread the cancelled task's done-callback starts (the loop
    # must not do ledger I/O): wait for it, boundedly, rather than racing it.
    deadline = time.monotonic() + 10
    while memory.ledger.leases() and time.monotonic() < deadline:
        time.sleep(0.01)
    (report,) = memory.dream("alpha")
    assert report.skipped is None, report.skipped  # fails: "another dreamer (process <this one>) holds ..."
    assert memory.ledger.leases() == []
