"""Child processes for tests/test_concurrency.py: ``python tests/concurrency_worker.py MODE ARGS.json``.

Each mode is one process of the multi-process scenario; they coordinate through marker files in
a run directory (``<name>.ready``, ``go_dream``, ``go_record``, ``go_<name>``, ``<name>.stop``) and
write what they saw to ``<name>.json``. Timestamps are ``time.time()`` so that processes can be compared with each other.

- ``dream``: warm up the embedder, wait for ``go_dream``, dream (writing ``go_record`` at the
  first embedding progress, when the pending set is already chosen), then recall a query set as
  the index owner and hold the index lock until ``<name>.stop`` appears (or the process is killed).
- ``record``: build ``count`` real HotpotQA episodes with fresh ids, wait for ``go_record``, and
  record them one ``record()`` call at a time, logging every acknowledged id with its timing and
  catching (and counting) any exception.
- ``refuse``: at ``go_<name>``, call ``dream()``, ``reindex()`` and ``forget(episode=...)`` at once,
  each on its own ``DreamMemory``, and report how each was refused and how long it waited.
- ``hold``: at ``go_<name>``, own the index (nothing else) until ``<name>.stop`` appears or the
  process is killed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

_POLL = 0.01


def _wait_for(path: Path, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear in {timeout:g}s")
        time.sleep(_POLL)


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    tmp.replace(path)


def _hold_until_stopped(run: Path, name: str, memory) -> None:
    _write_json(run / f"{name}.holding", {"pid": os.getpid(), "owned": memory.index.owned, "at": time.time()})
    _wait_for(run / f"{name}.stop")
    memory.close()
    (run / f"{name}.released").write_text(str(time.time()))


def dream(args: dict) -> None:
    from langdream import DreamMemory
    from langdream.namespace import parse_namespace

    run, name = Path(args["run"]), args["name"]
    memory = DreamMemory(args["home"])
    memory.embedder.embed(["warm up"])  # the model loads before the dream is timed
    timeline: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.time()
        timeline.setdefault(f"{stage}_first", now)
        timeline[f"{stage}_last"] = now
        if stage == "embed" and not (run / "go_record").exists():
            (run / "go_record").write_text(str(now))  # the pending set is chosen: recorders start

    (run / f"{name}.ready").touch()
    _wait_for(run / "go_dream")
    timeline["start"] = time.time()
    reports = memory.dream(args["namespace"], progress=progress)
    timeline["end"] = time.time()
    # The owner's recall of the query set: chroma's wording channel, and the whole recall.
    namespace = parse_namespace(args["namespace"])
    n = memory.settings.recall_k * 4
    recalls = []
    epoch = memory.ledger.recall_epoch()
    for task in args["queries"]:
        vector = memory.embedder.embed_one(task)
        recalls.append(
            {
                "task": task,
                "wording": [h.id for h in memory.index.query_insights(vector, namespace, n)],
                "recall": memory.recall(task, namespace).insight_ids,
            }
        )
    _write_json(
        run / f"{name}.json",
        {
            "pid": os.getpid(),
            "timeline": timeline,
            "reports": [r.model_dump(mode="json") for r in reports],
            "owned": memory.index.owned,
            "recall_epoch": epoch,
            "recalls": recalls,
        },
    )
    _hold_until_stopped(run, name, memory)


def record(args: dict) -> None:
    from langdream import DreamMemory, Episode
    from langdream.demo import sample_lines

    run, name, worker, count = Path(args["run"]), args["name"], args["worker"], args["count"]
    records = [json.loads(line) for line in sample_lines()]
    episodes = []
    for i in range(count):
        base = records[(worker * count + i) % len(records)]
        fresh = f"conc-w{worker}-{i:05d}"
        episodes.append(Episode.model_validate({**base, "id": fresh, "thread_id": fresh, "run_id": fresh}))
    memory = DreamMemory(args["home"])
    (run / f"{name}.ready").touch()
    _wait_for(run / "go_record")
    acknowledged, errors = [], []
    for episode in episodes:
        started = time.time()
        t = time.perf_counter()
        try:
            added = memory.record(episode)
        except Exception as exc:  # noqa: BLE001 - every failure reaching the caller is counted
            errors.append({"id": episode.id, "error": f"{type(exc).__name__}: {exc}", "at": started})
            continue
        acknowledged.append([episode.id, bool(added), started, time.perf_counter() - t])
    memory.close()
    _write_json(run / f"{name}.json", {"pid": os.getpid(), "acknowledged": acknowledged, "errors": errors})


def refuse(args: dict) -> None:
    from langdream import DreamMemory

    run, name = Path(args["run"]), args["name"]
    memories = {op: DreamMemory(args["home"]) for op in ("dream", "reindex", "forget")}
    calls = {
        "dream": lambda m: m.dream(args["namespace"]),
        "reindex": lambda m: m.reindex(),
        "forget": lambda m: m.forget(episode=args["forget"]),
    }
    results: dict[str, dict] = {}

    def attempt(op: str) -> None:
        t = time.perf_counter()
        try:
            calls[op](memories[op])
        except Exception as exc:  # noqa: BLE001 - the test checks which error it was
            results[op] = {
                "error": type(exc).__name__,
                "classes": [c.__name__ for c in type(exc).__mro__],
                "message": getattr(exc, "message", str(exc)),
                "hint": getattr(exc, "hint", None),
                "waited": time.perf_counter() - t,
            }
        else:
            results[op] = {"error": None, "waited": time.perf_counter() - t}
        results[op]["owned_after"] = memories[op].index.owned

    threads = [threading.Thread(target=attempt, args=(op,)) for op in calls]
    (run / f"{name}.ready").touch()
    _wait_for(run / f"go_{name}")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for memory in memories.values():
        memory.close()
    _write_json(run / f"{name}.json", {"pid": os.getpid(), "results": results})


def hold(args: dict) -> None:
    from langdream import DreamMemory

    run, name = Path(args["run"]), args["name"]
    memory = DreamMemory(args["home"])
    (run / f"{name}.ready").touch()
    _wait_for(run / f"go_{name}")
    if not memory.index.try_own():
        raise SystemExit(f"{name}: the index is owned by another process")
    _hold_until_stopped(run, name, memory)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)  # warnings reach the captured stderr
    mode, payload = sys.argv[1], json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
    {"dream": dream, "record": record, "refuse": refuse, "hold": hold}[mode](payload)
