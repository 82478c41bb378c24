"""The ledger on PostgreSQL: the hot path on ``PostgresLedger`` against the same calls on ``SQLiteLedger``.

A temporary PostgreSQL server is started for the section (the installed binaries, a temporary
directory, 127.0.0.1 on a free port) with the server's default durability settings: fsync and
synchronous commit on, as a deployment runs it. Both ledgers get the same data through their
public ``add_episodes`` (5,000 episodes, 50,000 in full mode, in batches), then take turns on the
calls of the hot path: recording one episode, feedback (``set_outcome``), ``find_episode`` by run
id, ``pending_episodes(100)``, and taking and giving back a namespace's dream lease. The server is
stopped and its directory deleted at the end, even on error. Where the PostgreSQL server or
psycopg is not installed the section is skipped with a note, not failed.

Targets: recording one episode on PostgreSQL within 2 ms at p95 (a replica's write over
loopback, one commit with fsync on); ``pending_episodes(100)`` on PostgreSQL within 3x SQLite's
p95 plus 5 ms (the rows cross a socket and are decoded by psycopg, so a constant ratio alone
would be unfair to a sub-millisecond SQLite read; the 5 ms absorbs one scheduler preemption).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from itertools import cycle
from typing import Any

import numpy as np

from langdream.bench.common import BenchContext, SectionResult
from langdream.bench.pg import NOT_INSTALLED, PostgresServer, find_bindir
from langdream.bench.stores import NS, ROUND, episode_id, measure, new_episodes, run_id, task_text
from langdream.ledger import Ledger
from langdream.ledger.postgres import PostgresLedger
from langdream.ledger.sqlite import SQLiteLedger
from langdream.types import Episode, Message, Outcome

EPISODES_QUICK = 5_000
EPISODES_FULL = 50_000
BATCH = 500
RECORD_BOUND_MS = 2.0
PENDING_RATIO_BOUND = 3.0
PENDING_FLOOR_MS = 5.0
LEASE_SECONDS = 60.0
BACKENDS = ("sqlite", "postgres")


def _preloaded(n: int) -> list[Episode]:
    """The same ``n`` episodes for both ledgers; their run ids differ from their ids, so
    ``find_episode(run_id)`` takes its slower path (an id lookup that misses, then the run id)."""
    return [
        Episode(
            id=episode_id(i),
            namespace=NS,
            task=task_text(i),
            thread_id=f"thread-{i // 8}",
            run_id=run_id(i),
            messages=[
                Message(role="user", content=task_text(i)),
                Message(role="assistant", content="Here is the answer, with the source it came from."),
            ],
            final_answer="Here is the answer.",
            outcome=Outcome(success=i % 3 != 0, score=1.0 if i % 3 else 0.0),
        )
        for i in range(n)
    ]


def preload(ledger: Ledger, episodes: list[Episode]) -> None:
    for start in range(0, len(episodes), BATCH):
        ledger.add_episodes(episodes[start : start + BATCH])


def hot_path(ledger: Ledger, episodes: int, calls: int, seed: int, tag: str) -> dict[str, Callable[[], Any]]:
    """The timed calls on ``ledger``; each draws fresh random ids per call, as different runs do.
    Both backends get the same seed, so they see the same ids in the same order."""
    fresh = iter(new_episodes(tag, calls))
    rng = np.random.default_rng(seed)
    runs = cycle([run_id(int(i)) for i in rng.integers(0, episodes, size=calls)])
    targets = cycle([episode_id(int(i)) for i in rng.integers(0, episodes, size=calls)])
    outcomes = cycle([Outcome(success=bool(i % 2), score=float(i % 2)) for i in range(calls)])
    owner = f"bench-{os.getpid()}"

    def lease() -> None:
        ledger.acquire_lease(NS, owner, LEASE_SECONDS, lambda holder: False)
        ledger.release_lease(NS, owner)

    return {
        "record": lambda: ledger.add_episodes([next(fresh)]),
        "set_outcome": lambda: ledger.set_outcome(next(targets), next(outcomes)),
        "find_episode(run_id)": lambda: ledger.find_episode(next(runs)),
        "pending_episodes(100)": lambda: ledger.pending_episodes(NS, 100),
        "acquire_lease+release_lease": lease,
    }


def _skip(result: SectionResult, reason: str) -> SectionResult:
    result.figures = {"skipped": reason}
    result.row("skipped", reason)
    result.notes.append(f"skipped, not failed: {reason}")
    return result


def run(ctx: BenchContext) -> SectionResult:
    result = SectionResult("postgres")
    bindir = find_bindir()
    if bindir is None:
        return _skip(result, NOT_INSTALLED)
    if importlib.util.find_spec("psycopg") is None:
        return _skip(result, "psycopg not installed: pip install 'langdream[postgres]'")
    n_episodes = EPISODES_QUICK if ctx.quick else EPISODES_FULL
    repeat = 200 if ctx.quick else 1_000
    calls = repeat + repeat // ROUND + 1  # each round warms up with one untimed call
    episodes = _preloaded(n_episodes)

    ctx.log(f"[postgres] starting a temporary PostgreSQL server ({bindir})")
    server = PostgresServer.start(bindir, durable=True)
    ledgers: dict[str, Ledger] = {}
    try:
        ledgers["sqlite"] = SQLiteLedger(ctx.scratch("postgres") / "ledger.sqlite3")
        ledgers["postgres"] = PostgresLedger(server.url())
        ctx.log(f"[postgres] preloading {n_episodes:,} episodes into each ledger in batches of {BATCH}")
        for ledger in ledgers.values():
            preload(ledger, episodes)
        ctx.log("[postgres] timing the hot path on SQLite and PostgreSQL")
        timings = measure(
            {name: hot_path(ledgers[name], n_episodes, calls, ctx.seed + 1, name) for name in BACKENDS}, repeat
        )
        version = _server_version(server)
    finally:
        for ledger in ledgers.values():
            ledger.close()
        server.stop()

    result.figures = {
        "episodes": n_episodes,
        "server_version": version,
        "server_settings": "PostgreSQL defaults (fsync on, synchronous_commit on), 127.0.0.1 over TCP",
        "calls": timings,
    }
    result.row("ledgers", f"{n_episodes:,} episodes in each, loaded by add_episodes; PostgreSQL {version}")
    for name in timings["postgres"]:
        s, p = timings["sqlite"][name], timings["postgres"][name]
        result.row(
            f"{name} p50/p95",
            f"sqlite {s['p50_ms']:.3f}/{s['p95_ms']:.3f} ms, postgres {p['p50_ms']:.3f}/{p['p95_ms']:.3f} ms "
            f"({p['p95_ms'] / max(s['p95_ms'], 1e-6):.1f}x p95)",
        )
    result.target("record p95 on postgres", timings["postgres"]["record"]["p95_ms"], "<=", RECORD_BOUND_MS, " ms")
    pending_bound = PENDING_RATIO_BOUND * timings["sqlite"]["pending_episodes(100)"]["p95_ms"] + PENDING_FLOOR_MS
    result.target(
        "pending_episodes(100) p95 on postgres",
        timings["postgres"]["pending_episodes(100)"]["p95_ms"],
        "<=",
        round(pending_bound, 3),
        " ms",
    )
    result.notes.append(
        "a temporary PostgreSQL server with its default durability (fsync, synchronous_commit on), reached "
        "over TCP on 127.0.0.1; stopped and deleted at the end of the section"
    )
    result.notes.append(
        "the lease row is one call taking and then giving back a namespace's dream lease (two transactions)"
    )
    return result


def _server_version(server: PostgresServer) -> str:
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
