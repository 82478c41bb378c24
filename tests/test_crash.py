"""Crash safety by killing real processes with SIGKILL at langdream's durable boundaries.

1. The crash-point sweep: for every point of ``langdream.crashpoints.POINTS`` and three seeds
   (each picks 7 HotpotQA questions and the order their ~70 real runs are recorded in), a worker
   (``tests/crash_worker.py record+dream``) records the runs in two batches and dreams after each
   (LLM reflection through ``FakeReflectionModel``) with ``LANGDREAM_CRASH_AT=<point>:<k>``. The
   first seed kills at a time drawn from the first third of the times the point is reached in
   the seed's uninterrupted run, the second from the second third, the last seed at the last
   time. The worker must die of SIGKILL at that boundary (its trace says where it was); the data
   home is checked as the kill left it; the worker runs again (the restart: it records what is
   missing and dreams until nothing is left); the recovered home is checked again, with its
   chroma index (read here, once the workers are gone) and against the seed's uninterrupted
   run: langdream's claim is that a crash and a rerun are as if each step either fully happened
   or never did, with deterministic job and insight ids.
2. The mutation check: three deliberately broken langdreams (``crash_worker.MUTATIONS``), each
   killed once where its break should show, must each be caught by an invariant.
3. The random-kill soak: two recorders, a dreamer and a reader on one data home, one of them or
   all killed at a random moment, the home checked after every kill, the killed ones restarted;
   after a kill of all, a dreamer finishes what is pending and everything is checked.

The invariants (``check``; names in brackets are what a failure reports):

- [acked] no acknowledged episode is lost: every id the worker wrote to its acked file (after
  ``record()`` returned) is in the ledger;
- [duplicates] no two live (active or quarantined) insights say the same thing: same namespace,
  text and ``applies_when`` (the fake reflector writes one claim text for every cluster and
  tells its insights apart by ``applies_when``, so text alone would flag the reference run);
- [consolidation] no episode is consolidated twice: an episode's ``consolidated_by`` is a done
  job whose consolidated set (its own episodes that are in its clusters) contains it, every
  episode of a done job's consolidated set points at that job, and the sets of two done jobs
  are disjoint;
- [evidence] an active insight has evidence; each insight's ``insight_evidence`` rows are its
  evidence list, and every cited episode exists;
- [atomic] every insight version a dream wrote belongs to a done job (insights, episode marks
  and the job's close are one transaction, so no state shows a dream's insights without it);
- [journal] every insight version a dream wrote follows from an operation journaled in
  ``dream_outputs`` of its job (an add: a journaled add with that claim and evidence, and an id
  derived from the job, a cluster and a position of that output; an upvote or edit: a journaled
  operation naming the insight, or an add, that cites the new evidence; a downvote or retire: a
  journaled operation naming the insight, or the drift guard);
- [integrity] ``PRAGMA integrity_check`` is ok;
- after recovery only: [open_job] no dream job is open or parked; [lease] no unexpired lease;
  [index] the chroma index's insight ids are exactly the ledger's active ids; [reference] the
  recovered state equals the reference run's (episodes and who consolidated them; insights with
  status, text, evidence, versions; jobs, their journaled outputs, lasting clusters, exposures).

Workers are started through a multiprocessing forkserver that imported langdream, chromadb,
scipy and langchain once (and built the token encoding), so a worker starts in a fraction of
the ~2 s ``python tests/crash_worker.py`` takes; one reference run goes through that command
line. Every worker is a process of its own and dies of a real SIGKILL; two run at a time.
``LANGDREAM_SOAK=1`` adds the long soak (``LANGDREAM_SOAK_TRIALS``, default 1000).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

import pytest

from langdream import DreamMemory
from langdream.apply import insight_id as derived_insight_id
from langdream.crashpoints import CRASH_AT_ENV, CRASH_TRACE_ENV, POINTS
from langdream.namespace import namespace_from_key

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import crash_worker  # tests/ is on sys.path now

SEEDS = (8, 4, 0)  # each reaches every point, and its dreams add, upvote and leave insights active
QUESTIONS = 7  # questions per seed: ~70 real runs, two batches, two dreams with work
BATCHES = 2
WORKER_TIMEOUT = 120.0
REFLECT_LATENCY = 0.05  # the soak dreamer's model answers in 50 ms, so kills land mid-reflection too
LIVE = ("active", "quarantined")


# -- workers ---------------------------------------------------------------------------------


class Fleet:
    """Starts crash workers as processes forked from a forkserver with langdream preloaded."""

    _started = threading.Lock()

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("forkserver")
        with self._started:
            self.ctx.set_forkserver_preload(["crash_worker", *crash_worker.PRELOAD])
            # BLAS thread pools would be running in the forkserver when it forks: one thread each.
            # The forkserver (and so every worker) gets this environment.
            server_env = {"OPENBLAS_NUM_THREADS": "1", crash_worker.WARM_ENV: "1"}
            saved = {name: os.environ.get(name) for name in server_env}
            os.environ.update(server_env)
            try:
                forkserver.ensure_running()
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value

    def start(self, argv: list[str], env: dict[str, str] | None = None, output: Path | None = None):
        process = self.ctx.Process(
            target=crash_worker.child, args=(argv, env or {}, str(output) if output else None), daemon=True
        )
        process.start()
        return process

    def run(self, argv: list[str], env: dict[str, str] | None = None, output: Path | None = None) -> int:
        process = self.start(argv, env, output)
        process.join(WORKER_TIMEOUT)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise AssertionError(f"worker {argv} ran past {WORKER_TIMEOUT}s; output: {tail(output)}")
        return process.exitcode


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU time of a process and its reaped children (what the machine spent on it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run_cli(argv: list[str], env: dict[str, str], output: Path) -> int:
    """The same worker through its command line, in a fresh interpreter."""
    full = {k: v for k, v in os.environ.items() if k not in (*crash_worker.CRASH_ENV, crash_worker.MUTATION_ENV)}
    with output.open("ab") as out:
        done = subprocess.run(
            [sys.executable, str(TESTS / "crash_worker.py"), *argv],
            env={**full, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=WORKER_TIMEOUT,
            check=False,
        )
    return done.returncode


def tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    fleet = Fleet()
    started, wall = cpu_seconds(), time.perf_counter()
    yield fleet
    server = forkserver._forkserver._forkserver_pid
    print(
        f"\ntest_crash: {time.perf_counter() - wall:.1f}s wall; CPU {cpu_seconds() - started:.1f}s here, "
        f"{cpu_seconds(server):.1f}s in the forkserver and its workers (load average {os.getloadavg()[0]:.1f})"
    )


# -- the data --------------------------------------------------------------------------------


def questions_of(records: list[dict]) -> list[str]:
    return sorted({r["metadata"]["question_id"] for r in records})


def scenario(records: list[dict], seed: int, questions: int = QUESTIONS) -> list[dict]:
    """The runs of ``questions`` questions picked by ``seed``, in an order picked by it too."""
    rng = random.Random(seed)
    chosen = set(rng.sample(questions_of(records), questions))
    runs = [r for r in records if r["metadata"]["question_id"] in chosen]
    rng.shuffle(runs)
    return runs


def write_episodes(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# -- reading a data home ---------------------------------------------------------------------


def read_state(home: Path) -> dict[str, Any]:
    """Everything the invariants look at, read in one SQLite read transaction (a snapshot)."""
    path = home / "ledger.sqlite3"
    if not path.exists():  # killed before the ledger was created (connecting would create it)
        return empty_state()
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        db.execute("BEGIN")
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'dream_jobs'").fetchone():
            db.execute("COMMIT")
            return empty_state()
        episodes = {r["id"]: r["consolidated_by"] for r in db.execute("SELECT id, consolidated_by FROM episodes")}
        insights = [dict(r) for r in db.execute("SELECT * FROM insights ORDER BY id")]
        for row in insights:
            row.pop("vector")
            row.pop("index_dirty")
            row["evidence"] = json.loads(row["evidence"])
        versions = [dict(r) for r in db.execute("SELECT * FROM insight_versions ORDER BY seq")]
        for row in versions:
            row["evidence"] = json.loads(row["evidence"])
        evidence = {(r[0], r[1]) for r in db.execute("SELECT insight_id, episode_id FROM insight_evidence")}
        jobs = {}
        for r in db.execute("SELECT * FROM dream_jobs"):
            clusters = json.loads(r["clusters"])
            if clusters and isinstance(clusters[0], dict):
                cluster_ids, clusters = [c["id"] for c in clusters], [c["episodes"] for c in clusters]
            else:
                cluster_ids = []
            jobs[r["id"]] = {
                "status": r["status"],
                "namespace": r["namespace"],
                "episodes": [tuple(e) for e in json.loads(r["episodes"])],
                "clusters": clusters,
                "cluster_ids": cluster_ids,
                "noise": json.loads(r["noise"]),
                "report": json.loads(r["report"]) if r["report"] else None,
            }
        outputs = {
            (r["job_id"], r["cluster"]): json.loads(r["operations"])
            for r in db.execute("SELECT job_id, cluster, operations FROM dream_outputs")
        }
        leases = [tuple(r) for r in db.execute("SELECT namespace, owner, expires_at FROM leases")]
        clusters = {r["id"]: (r["size"], r["job_id"]) for r in db.execute("SELECT id, size, job_id FROM clusters")}
        members = {r[0]: r[1] for r in db.execute("SELECT episode_id, cluster_id FROM cluster_members")}
        exposure = {tuple(r) for r in db.execute("SELECT insight_id, episode_id, shown, success FROM insight_exposure")}
        integrity = [r[0] for r in db.execute("PRAGMA integrity_check")]
        db.execute("COMMIT")
    finally:
        db.close()
    return {
        "episodes": episodes,
        "insights": insights,
        "versions": versions,
        "evidence": evidence,
        "jobs": jobs,
        "outputs": outputs,
        "leases": leases,
        "clusters": clusters,
        "members": members,
        "exposure": exposure,
        "integrity": integrity,
        "read_at": time.time(),
    }


def empty_state() -> dict[str, Any]:
    return {
        "episodes": {},
        "insights": [],
        "versions": [],
        "evidence": set(),
        "jobs": {},
        "outputs": {},
        "leases": [],
        "clusters": {},
        "members": {},
        "exposure": set(),
        "integrity": ["ok"],
        "read_at": time.time(),
    }


def index_ids(home: Path) -> set[str]:
    """The chroma index's insight ids, read in this process (the workers must be gone)."""
    memory = DreamMemory(home)
    try:
        return memory.index.insight_ids()
    finally:
        memory.close()


def read_acked(path: Path) -> set[str]:
    return set(crash_worker.read_lines(path))


# -- the invariants --------------------------------------------------------------------------


def consolidated_sets(state: dict[str, Any]) -> dict[str, set[str]]:
    """Each done job's consolidated set: its own episodes that are in one of its clusters."""
    sets = {}
    for job_id, job in state["jobs"].items():
        if job["status"] == "done":
            own = {e for e, _ in job["episodes"]}
            sets[job_id] = {e for cluster in job["clusters"] for e in cluster if e in own}
    return sets


def _journal_problem(version: dict, previous: list[str], outputs: dict[int, list[dict]], namespace) -> str | None:
    """Why this dream-written version does not follow from its job's journaled outputs (None if it does)."""
    action, insight, job = version["action"], version["insight_id"], version["job_id"]
    if action in ("retire", "downvote") and version["cause"].startswith("drift guard"):
        return None  # the drift guard retires on measured outcomes, not on a reflection
    ops = [op for cluster_ops in outputs.values() for op in cluster_ops]
    if not ops:
        return f"{insight} v{version['version']} ({action}) by {job}: the job journaled no operation"
    fresh = set(version["evidence"]) - set(previous)
    if action == "add":
        derived = {
            derived_insight_id(namespace, job, cluster, position)
            for cluster, cluster_ops in outputs.items()
            for position in range(len(cluster_ops))
        }
        if insight not in derived:
            return f"{insight} (add by {job}): the id is none the journaled output of its job derives"
        if not any(
            op.get("action") == "add" and op.get("claim") == version["text"] and fresh <= set(op.get("evidence", []))
            for op in ops
        ):
            return f"{insight} (add by {job}): no journaled add with this claim and evidence"
        return None
    if action in ("upvote", "edit"):
        if not any(
            (op.get("insight_id") == insight or op.get("action") == "add") and fresh <= set(op.get("evidence", []))
            for op in ops
        ):
            return f"{insight} v{version['version']} ({action} by {job}): no journaled operation cites {sorted(fresh)}"
        return None
    if action in ("retire", "downvote"):
        if not any(op.get("insight_id") == insight and op.get("action") == action for op in ops):
            return f"{insight} v{version['version']} ({action} by {job}): no journaled {action} of it"
        return None
    return f"{insight} v{version['version']}: unexpected dream action {action!r}"


def check(
    state: dict[str, Any],
    acked: set[str],
    *,
    settled: bool,
    index: set[str] | None = None,
    reference: dict[str, Any] | None = None,
) -> dict[str, list[str]]:
    """Violations by invariant name (empty when every invariant holds). ``settled``: after a
    completed recovery, when no dream may be left open and the index must match the ledger."""
    found: dict[str, list[str]] = {}

    def fail(name: str, message: str) -> None:
        found.setdefault(name, []).append(message)

    episodes, jobs = state["episodes"], state["jobs"]
    for episode_id in sorted(acked - set(episodes)):
        fail("acked", f"acknowledged episode {episode_id} is not in the ledger")

    seen: dict[tuple, str] = {}
    for insight in state["insights"]:
        if insight["status"] in LIVE:
            key = (insight["namespace"], insight["text"], insight["applies_when"])
            if key in seen:
                fail("duplicates", f"{insight['id']} and {seen[key]} say the same: {key[1][:60]!r}")
            seen[key] = insight["id"]
    versions = Counter((v["insight_id"], v["version"]) for v in state["versions"])
    for (insight_id, version), n in versions.items():
        if n > 1:
            fail("duplicates", f"{insight_id} has {n} versions numbered {version}")

    sets = consolidated_sets(state)
    owner: dict[str, str] = {}
    for job_id, members in sorted(sets.items()):
        for episode_id in members:
            if episode_id in owner:
                fail("consolidation", f"{episode_id} is consolidated by both {owner[episode_id]} and {job_id}")
            owner[episode_id] = job_id
            if episodes.get(episode_id) != job_id:
                fail("consolidation", f"{episode_id} of done job {job_id} is marked {episodes.get(episode_id)}")
    for episode_id, job_id in episodes.items():
        if job_id is None:
            continue
        if jobs.get(job_id, {}).get("status") != "done":
            fail("consolidation", f"{episode_id} is consolidated by {job_id}, which is not done")
        elif episode_id not in sets[job_id]:
            fail("consolidation", f"{episode_id} is marked by {job_id} but not in its consolidated set")

    cited: dict[str, set[str]] = {}
    for insight_id, episode_id in state["evidence"]:
        cited.setdefault(insight_id, set()).add(episode_id)
    for insight in state["insights"]:
        rows = cited.get(insight["id"], set())
        if insight["status"] == "active" and not rows:
            fail("evidence", f"active insight {insight['id']} has no evidence")
        if rows != set(insight["evidence"]):
            fail("evidence", f"{insight['id']}: evidence rows {sorted(rows)} != its evidence {insight['evidence']}")
        for episode_id in sorted(rows - set(episodes)):
            fail("evidence", f"{insight['id']} cites {episode_id}, which is not in the ledger")

    by_job: dict[str, dict[int, list[dict]]] = {}
    for (job_id, cluster), ops in state["outputs"].items():
        by_job.setdefault(job_id, {})[cluster] = ops
    previous: dict[str, list[str]] = {}
    for version in state["versions"]:
        job_id = version["job_id"]
        if version["actor"] == "dream" and job_id in jobs:
            if jobs[job_id]["status"] != "done":
                fail(
                    "atomic",
                    f"{version['insight_id']} v{version['version']} written by {job_id}, which is {jobs[job_id]['status']}",
                )
            namespace = namespace_from_key(jobs[job_id]["namespace"])
            problem = _journal_problem(
                version, previous.get(version["insight_id"], []), by_job.get(job_id, {}), namespace
            )
            if problem:
                fail("journal", problem)
        previous[version["insight_id"]] = version["evidence"]

    if state["integrity"] != ["ok"]:
        fail("integrity", f"PRAGMA integrity_check: {state['integrity'][:5]}")

    if settled:
        for job_id, job in sorted(jobs.items()):
            if job["status"] in ("open", "parked"):
                fail("open_job", f"dream job {job_id} is {job['status']} after recovery")
        for namespace, lease_owner, expires in state["leases"]:
            if expires > state["read_at"]:
                fail("lease", f"{namespace} is still leased to {lease_owner} after recovery")
    if index is not None:
        active = {i["id"] for i in state["insights"] if i["status"] == "active"}
        if index != active:
            fail(
                "index",
                f"index has {len(index)} insights, ledger {len(active)} active; "
                f"missing from the index {sorted(active - index)[:5]}, extra {sorted(index - active)[:5]}",
            )
    if reference is not None:
        mine, theirs = comparable(state), comparable(reference)
        for key in mine:
            if mine[key] != theirs[key]:
                fail("reference", f"{key} differs from the uninterrupted run: {_difference(mine[key], theirs[key])}")
    return found


_REPORT_FIELDS = (
    "job_id",
    "episodes",
    "clusters",
    "noise",
    "added",
    "edited",
    "upvoted",
    "downvoted",
    "retired",
    "quarantined",
    "held",
    "drift_retired",
    "deferred",
    "insight_ids",
    "skipped",
    "parked",
)
_INSIGHT_FIELDS = (
    "id",
    "namespace",
    "status",
    "status_reason",
    "text",
    "applies_when",
    "origin",
    "signature",
    "evidence",
    "support",
    "threads",
    "tasks",
    "confidence",
    "stats",
    "version",
    "model_id",
    "prompt_version",
    "job_id",
    "hold",
    "remembered",
)
_VERSION_FIELDS = (
    "insight_id",
    "version",
    "action",
    "actor",
    "cause",
    "status",
    "status_reason",
    "hold",
    "text",
    "applies_when",
    "evidence",
    "support",
    "threads",
    "confidence",
    "job_id",
)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """What a recovered data home must share with the uninterrupted run (timestamps, the raw
    model text and a resumed report's bookkeeping aside: resumed, llm calls, seconds)."""
    jobs = {
        job_id: (
            job["status"],
            _frozen(job["episodes"]),
            _frozen(job["clusters"]),
            _frozen(job["cluster_ids"]),
            _frozen(job["noise"]),
            _frozen({k: job["report"].get(k) for k in _REPORT_FIELDS}) if job["report"] else None,
        )
        for job_id, job in state["jobs"].items()
    }
    return {
        "episodes": state["episodes"],
        "insights": {i["id"]: _frozen({k: i[k] for k in _INSIGHT_FIELDS}) for i in state["insights"]},
        "versions": sorted(_frozen({k: v[k] for k in _VERSION_FIELDS}) for v in state["versions"]),
        "evidence": state["evidence"],
        "jobs": jobs,
        "outputs": {k: _frozen(v) for k, v in state["outputs"].items()},
        "clusters": state["clusters"],
        "members": state["members"],
        "exposure": state["exposure"],
    }


def _difference(mine: Any, theirs: Any) -> str:
    if isinstance(mine, dict) and isinstance(theirs, dict):
        only_mine = sorted(set(mine) - set(theirs), key=str)[:3]
        only_theirs = sorted(set(theirs) - set(mine), key=str)[:3]
        changed = sorted((k for k in set(mine) & set(theirs) if mine[k] != theirs[k]), key=str)[:3]
        text = f"only here {only_mine}, only in the reference {only_theirs}, changed {changed}"
        if changed:
            text += f"; e.g. {changed[0]}: {str(mine[changed[0]])[:300]} vs {str(theirs[changed[0]])[:300]}"
        return text
    if isinstance(mine, (set, list)) and isinstance(theirs, (set, list)):
        a, b = set(mine), set(theirs)
        return f"only here {sorted(a - b, key=str)[:3]}, only in the reference {sorted(b - a, key=str)[:3]}"
    return f"{str(mine)[:200]} vs {str(theirs)[:200]}"


def summary(violations: dict[str, list[str]]) -> str:
    return "; ".join(f"[{name}] {len(found)}x, e.g. {found[0]}" for name, found in sorted(violations.items()))


# -- the sweep -------------------------------------------------------------------------------


@dataclass
class Reference:
    seed: int
    episodes: Path
    state: dict[str, Any]
    counts: Counter
    violations: dict[str, list[str]]


@dataclass
class Case:
    seed: int
    point: str
    k: int
    mutation: str | None
    home: Path
    acked: Path
    killed: bool = False
    crash_exit: int | None = None
    rerun_exit: int | None = None
    violations: dict[str, list[str]] = field(default_factory=dict)  # name -> messages, "@crash"/"@recovered"

    @property
    def ok(self) -> bool:
        return self.killed and self.rerun_exit == 0 and not self.violations


def worker_argv(home: Path, episodes: Path, acked: Path) -> list[str]:
    return ["record+dream", str(home), "--episodes", str(episodes), "--acked", str(acked), "--batches", str(BATCHES)]


def mutation_env(mutation: str | None) -> dict[str, str]:
    return {crash_worker.MUTATION_ENV: mutation} if mutation else {}


def reference_run(fleet: Fleet, root: Path, records: list[dict], seed: int, cli: bool) -> Reference:
    """The uninterrupted run of a seed's input, traced: the state to compare with and the counts
    of each point's boundaries."""
    home = root / f"reference-{seed}"
    home.mkdir(parents=True)
    episodes = write_episodes(root / f"episodes-{seed}.jsonl", scenario(records, seed))
    acked, trace, output = home / "acked", home / "trace", home / "worker.log"
    env = {CRASH_TRACE_ENV: str(trace)}
    argv = worker_argv(home, episodes, acked)
    code = run_cli(argv, env, output) if cli else fleet.run(argv, env, output)
    assert code == 0, f"reference run of seed {seed} failed ({code}): {tail(output)}"
    state = read_state(home)
    counts = Counter(crash_worker.read_lines(trace))
    violations = check(state, read_acked(acked), settled=True, index=index_ids(home))
    return Reference(seed, episodes, state, counts, violations)


def pick_k(seed: int, point: str, reached: int) -> int:
    """Which time the point is reached when the worker is killed: the first seed draws from the
    first third of the times, the second from the second third, the last seed takes the last
    time (what a run does last is where cleanup after a kill is most easily missed)."""
    part = SEEDS.index(seed)
    if part == len(SEEDS) - 1:
        return reached
    low = 1 + part * reached // 3
    high = max(low, (part + 1) * reached // 3)
    return random.Random(f"{seed}:{point}").randint(low, high)


def crash_and_rerun(fleet: Fleet, case: Case, reference: Reference) -> Case:
    """Kill the worker at the case's point, check what the kill left, run the worker again."""
    case.home.mkdir(parents=True)
    argv = worker_argv(case.home, reference.episodes, case.acked)
    output = case.home / "worker.log"
    trace = case.home / "crash-trace"
    env = {CRASH_AT_ENV: f"{case.point}:{case.k}", CRASH_TRACE_ENV: str(trace), **mutation_env(case.mutation)}
    case.crash_exit = fleet.run(argv, env, output)
    case.killed = case.crash_exit == -signal.SIGKILL
    reached = crash_worker.read_lines(trace)
    if not (reached and reached[-1] == case.point and reached.count(case.point) == case.k):
        # Died of the kill, but elsewhere than at the k-th boundary of its point.
        case.violations["kill_point"] = [f"the last boundaries reached were {reached[-3:]}"]
    for name, found in check(read_state(case.home), read_acked(case.acked), settled=False).items():
        case.violations[f"{name}@crash"] = found
    case.rerun_exit = fleet.run(argv, mutation_env(case.mutation), output)
    return case


def settle(case: Case, reference: Reference) -> Case:
    """The checks after recovery (index read in this process; the case's workers are gone)."""
    if case.rerun_exit != 0:
        case.violations["rerun"] = [f"the restarted worker exited {case.rerun_exit}: {tail(case.home / 'worker.log')}"]
        return case
    found = check(
        read_state(case.home),
        read_acked(case.acked),
        settled=True,
        index=index_ids(case.home),
        reference=reference.state,
    )
    for name, messages in found.items():
        case.violations[f"{name}@recovered"] = messages
    return case


def sweep(fleet: Fleet, cases: list[Case], references: dict[int, Reference]) -> list[Case]:
    """Run the cases two at a time (two cores); settle each here as it finishes."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="crash-case") as pool:
        futures = [pool.submit(crash_and_rerun, fleet, case, references[case.seed]) for case in cases]
        return [settle(future.result(), references[future.result().seed]) for future in futures]


def table(cases: list[Case]) -> str:
    rows = ["point            seeds:k              killed  invariants ok  failing"]
    for point in POINTS:
        mine = [c for c in cases if c.point == point]
        if not mine:
            continue
        failing = sorted({name for c in mine for name in c.violations})
        rows.append(
            f"{point:16} {' '.join(f'{c.seed}:{c.k}' for c in mine):20} "
            f"{sum(c.killed for c in mine)}/{len(mine):<5} {sum(not c.violations and c.rerun_exit == 0 for c in mine)}/{len(mine):<12} "
            f"{', '.join(failing) or '-'}"
        )
    return "\n".join(rows)


@pytest.fixture(scope="module")
def references(fleet, hotpotqa_records, tmp_path_factory) -> dict[int, Reference]:
    """The uninterrupted run of each seed (the first through the worker's command line)."""
    root = tmp_path_factory.mktemp("references")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            seed: pool.submit(reference_run, fleet, root, hotpotqa_records, seed, seed == SEEDS[0]) for seed in SEEDS
        }
        return {seed: future.result() for seed, future in futures.items()}


def test_reference_runs(references):
    """The premise of the sweep: each seed's uninterrupted run passes every invariant, reaches
    every point, and its dreams add, upvote and leave active insights."""
    for seed, reference in references.items():
        assert not reference.violations, f"the uninterrupted run of seed {seed} fails: {summary(reference.violations)}"
        assert set(reference.counts) == set(POINTS), f"seed {seed} does not reach {set(POINTS) - set(reference.counts)}"
        assert any(i["status"] == "active" for i in reference.state["insights"]), "the dreams learned nothing"
        actions = Counter(v["action"] for v in reference.state["versions"])
        assert actions["add"] and (actions["upvote"] or actions["edit"]), actions


def test_crash_point_sweep(fleet, references, tmp_path):
    started = time.perf_counter()
    cases = [
        Case(
            seed,
            point,
            pick_k(seed, point, references[seed].counts[point]),
            None,
            tmp_path / f"case-{seed}-{point}",
            tmp_path / f"case-{seed}-{point}" / "acked",
        )
        for seed in SEEDS
        for point in POINTS
        if references[seed].counts[point]
    ]
    done = sweep(fleet, cases, references)
    report = table(done)
    print(f"\ncrash-point sweep ({len(done)} kills, {time.perf_counter() - started:.1f}s):\n{report}")
    for case in done:
        print(
            f"  {case.point}:{case.k} seed {case.seed}: exit {case.crash_exit}, rerun {case.rerun_exit}, "
            f"{summary(case.violations) or 'all invariants hold'}"
        )
    failed = [c for c in done if not c.ok]
    assert not failed, (
        "\n".join(f"{c.point}:{c.k} seed {c.seed} (exit {c.crash_exit}): {summary(c.violations)}" for c in failed)
        + f"\n{report}"
    )


# Each mutant runs once (seed SEEDS[0]), killed at the point where its break should show, and is
# compared with the correct langdream's uninterrupted run.
MUTANT_CASES = {"random_ids": ("apply", 1), "split_commit": ("apply", 1), "no_journal": ("job.journal", 1)}


def test_the_sweep_catches_each_broken_langdream(fleet, references, tmp_path):
    seed = SEEDS[0]
    cases = [
        Case(seed, point, k, mutation, tmp_path / mutation, tmp_path / mutation / "acked")
        for mutation, (point, k) in MUTANT_CASES.items()
    ]
    done = sweep(fleet, cases, references)
    lines = [
        f"mutation {c.mutation} killed at {c.point}:{c.k} (exit {c.crash_exit}): {summary(c.violations) or 'NOT CAUGHT'}"
        for c in done
    ]
    print("\n" + "\n".join(lines))
    assert all(c.killed for c in done), lines
    assert all(c.violations for c in done), "\n".join(lines)
    # Caught by an invariant of its own, not only by differing from the reference.
    assert all(set(c.violations) - {"reference@recovered"} for c in done), "\n".join(lines)


# -- the random-kill soak --------------------------------------------------------------------


@dataclass
class SoakFigures:
    trials: int = 0
    kills: Counter = field(default_factory=Counter)
    mid_dream: int = 0
    open_job_after_kill: int = 0
    dreamer_phase: Counter = field(default_factory=Counter)
    cpu: Counter = field(default_factory=Counter)  # CPU seconds by role (up to each kill)
    dream_seconds: list[float] = field(default_factory=list)
    full_checks: int = 0
    dreams_done: int = 0
    restarts: int = 0
    seconds: float = 0.0
    acked: int = 0
    episodes: int = 0
    insights: Counter = field(default_factory=Counter)
    jobs: Counter = field(default_factory=Counter)

    @property
    def cpu_by_role(self) -> dict[str, float]:
        return {role: round(seconds, 1) for role, seconds in self.cpu.items()}

    @property
    def median_dream(self) -> float:
        ordered = sorted(self.dream_seconds)
        return ordered[len(ordered) // 2] if ordered else math.nan

    def __str__(self) -> str:
        return (
            f"{self.trials} trials in {self.seconds:.1f}s; kills {dict(self.kills)}; the dreamer was killed "
            f"{dict(self.dreamer_phase)}; {self.mid_dream} mid-dream ({self.open_job_after_kill} left a journaled "
            f"open job); dreams that closed a job took {self.median_dream:.2f}s (median); "
            f"{self.full_checks} full recoveries checked; CPU by role {self.cpu_by_role}; "
            f"{self.restarts} restarts; {self.dreams_done} dreams finished; {self.acked} acked of "
            f"{self.episodes} episodes; insights {dict(self.insights)}; jobs {dict(self.jobs)}"
        )


class Soak:
    """Two recorders, a dreamer and a reader on one data home; kill at random, check, restart."""

    ROLES = ("record-a", "record-b", "dreamer", "reader")

    def __init__(self, fleet: Fleet, root: Path, records: list[dict], seed: int) -> None:
        self.fleet, self.root, self.rng = fleet, root, random.Random(seed)
        self.home = root / "home"
        self.home.mkdir(parents=True)
        questions = questions_of(records)
        random.Random(seed).shuffle(questions)
        half = len(questions) // 2
        pools = {"a": set(questions[:half]), "b": set(questions[half:])}
        # Each recorder records its questions' runs question by question, so a dream sees
        # several runs of a question (with both outcomes: the fake reflector learns from those).
        self.pools = {
            tag: write_episodes(
                root / f"pool-{tag}.jsonl",
                sorted(
                    (r for r in records if r["metadata"]["question_id"] in qs),
                    key=lambda r: (r["metadata"]["question_id"], r["id"]),
                ),
            )
            for tag, qs in pools.items()
        }
        self.acked = {tag: root / f"acked-{tag}" for tag in pools}
        self.processes: dict[str, Any] = {}
        self.dreamer_log: Path | None = None
        self.incarnation = 0
        self.figures = SoakFigures()

    def argv(self, role: str) -> list[str]:
        home = str(self.home)
        if role.startswith("record-"):
            tag = role[-1]
            return [
                "record",
                home,
                "--episodes",
                str(self.pools[tag]),
                "--acked",
                str(self.acked[tag]),
                "--loop",
                "--tag",
                tag,
                "--interval",
                "0.1",
            ]
        if role == "dreamer":
            self.incarnation += 1
            self.dreamer_log = self.root / f"dreamer-{self.incarnation}.log"
            return [
                "dream",
                home,
                "--forever",
                "--log",
                str(self.dreamer_log),
                "--pause",
                "0.05",
                "--latency",
                str(REFLECT_LATENCY),
            ]
        return ["recall", home, "--episodes", str(self.pools["a"]), "--interval", "0.1"]

    def start_missing(self) -> None:
        for role in self.ROLES:
            process = self.processes.get(role)
            if process is not None and process.exitcode is None:
                continue
            if process is not None:
                self.figures.restarts += 1
            self.processes[role] = self.fleet.start(self.argv(role), output=self.root / f"{role}.out")

    def assert_alive(self) -> None:
        for role, process in self.processes.items():
            assert process.exitcode is None, (
                f"{role} died on its own ({process.exitcode}) at trial {self.figures.trials}: "
                f"{tail(self.root / f'{role}.out', 40)}\ndreamer log: {crash_worker.read_lines(self.dreamer_log)[-3:]}"
            )

    def dreamer_phase(self) -> str:
        """Where the dreamer is by its log: starting (model and index not loaded yet), mid-dream
        (a dream begun and not ended) or between dreams."""
        lines = crash_worker.read_lines(self.dreamer_log) if self.dreamer_log else []
        if not lines:
            return "starting"
        return "mid-dream" if lines[-1].startswith("begin") else "between dreams"

    def wait_for(self, condition, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.assert_alive()
            time.sleep(0.01)
        return True

    def dreaming(self) -> bool:
        return self.dreamer_phase() == "mid-dream"

    def kill(self, roles: Iterable[str]) -> None:
        for role in roles:
            try:  # a worker that died on its own meanwhile fails below, with its output
                self.figures.cpu[role] += cpu_seconds(self.processes[role].pid)
                os.kill(self.processes[role].pid, signal.SIGKILL)
            except OSError:
                pass
        for role in roles:
            process = self.processes[role]
            process.join(10)
            assert process.exitcode == -signal.SIGKILL, (
                f"{role} exited {process.exitcode}, not by the kill: {tail(self.root / f'{role}.out')}"
            )
            self.figures.kills[role] += 1

    def acked_ids(self) -> set[str]:
        return read_acked(self.acked["a"]) | read_acked(self.acked["b"])

    def trial(self) -> None:
        self.start_missing()
        target = self.rng.choices(("record-a", "record-b", "reader", "dreamer", "all"), (2, 2, 1, 3, 1))[0]
        if target == "dreamer":
            # Not while it loads its model (killing it there again tests nothing new).
            self.wait_for(lambda: self.dreamer_phase() != "starting", 30.0)
        roles = list(self.ROLES) if target == "all" else [target]
        if "dreamer" in roles and self.dreamer_phase() != "starting":
            # At a random moment, or at a random moment into a dream.
            if self.rng.random() < 0.6:
                self.wait_for(self.dreaming, 3.0)
                time.sleep(self.rng.uniform(0.0, 0.5))
            else:
                time.sleep(self.rng.uniform(0.02, 0.4))
        else:
            time.sleep(self.rng.uniform(0.02, 0.4))
        self.assert_alive()
        self.kill(roles)
        self.figures.trials += 1
        self.figures.kills["all" if target == "all" else "one"] += 1
        acked = self.acked_ids()  # read before the snapshot: an acked id was committed before it
        state = read_state(self.home)
        if "dreamer" in roles:
            phase = self.dreamer_phase()
            self.figures.dreamer_phase[phase] += 1
            if phase == "mid-dream":
                self.figures.mid_dream += 1
                if any(job["status"] == "open" for job in state["jobs"].values()):
                    self.figures.open_job_after_kill += 1
        violations = check(state, acked, settled=False)
        assert not violations, f"trial {self.figures.trials} (killed {target}): {summary(violations)}"
        if target == "all":
            self.recover_and_check_all()

    def recover_and_check_all(self) -> None:
        """Everything is dead: a dreamer finishes what is pending, then every invariant is checked."""
        output = self.root / "recovery.out"
        before = cpu_seconds(forkserver._forkserver._forkserver_pid)
        code = self.fleet.run(["dream", str(self.home)], output=output)
        self.figures.cpu["recovery"] += cpu_seconds(forkserver._forkserver._forkserver_pid) - before
        assert code == 0, f"the recovery dream failed ({code}): {tail(output)}"
        violations = check(read_state(self.home), self.acked_ids(), settled=True, index=index_ids(self.home))
        assert not violations, f"after recovery at trial {self.figures.trials}: {summary(violations)}"
        self.figures.full_checks += 1

    def run(self, trials: int) -> SoakFigures:
        started = time.perf_counter()
        try:
            self.start_missing()  # first the home fills a little: the first dream has run
            deadline = time.monotonic() + 30
            while not any(line.startswith("end") for line in crash_worker.read_lines(self.dreamer_log)):
                assert time.monotonic() < deadline, (
                    f"the dreamer never finished a dream: {tail(self.root / 'dreamer.out')}"
                )
                self.assert_alive()
                time.sleep(0.05)
            for _ in range(trials):
                self.trial()
            self.start_missing()
            time.sleep(0.3)
            self.kill(list(self.ROLES))
            self.recover_and_check_all()
        finally:
            for process in self.processes.values():
                if process.exitcode is None:
                    process.kill()
                    process.join()
        state = read_state(self.home)
        self.figures.seconds = time.perf_counter() - started
        self.figures.acked = len(self.acked_ids())
        self.figures.episodes = len(state["episodes"])
        self.figures.insights = Counter(i["status"] for i in state["insights"])
        self.figures.jobs = Counter(j["status"] for j in state["jobs"].values())
        self.figures.dreams_done = self.figures.jobs["done"]
        for log in self.root.glob("dreamer-*.log"):
            begun = {}
            for line in crash_worker.read_lines(log):
                word, *rest = line.split()
                if word == "begin":
                    begun[rest[0]] = float(rest[1])
                elif word == "end" and rest[2] != "-":
                    self.figures.dream_seconds.append(float(rest[1]) - begun[rest[0]])
        return self.figures


def test_random_kill_soak(fleet, hotpotqa_records, tmp_path):
    figures = Soak(fleet, tmp_path, hotpotqa_records, seed=5).run(trials=100)
    print(f"\nrandom-kill soak: {figures}")
    assert figures.trials >= 100
    assert figures.mid_dream >= 10, f"only {figures.mid_dream} kills landed mid-dream: {figures}"
    assert figures.dreams_done > 0 and figures.insights["active"] > 0


@pytest.mark.soak
@pytest.mark.timeout(7200)
def test_random_kill_soak_long(fleet, hotpotqa_records, tmp_path):
    trials = int(os.environ.get("LANGDREAM_SOAK_TRIALS", "1000"))
    figures = Soak(fleet, tmp_path, hotpotqa_records, seed=int(os.environ.get("LANGDREAM_SOAK_SEED", "11"))).run(trials)
    print(f"\nrandom-kill soak (long): {figures}")
    assert figures.mid_dream >= trials // 10
