"""Child processes for tests/test_scale_out.py: ``python tests/scale_out_worker.py MODE ARGS.json``.

Each process stands for one machine of a scaled-out deployment: it has a data home of its own
(``LANGDREAM_HOME``, which keeps no ledger and no index) and reaches the shared memory only
through ``LANGDREAM_LEDGER_URL`` (PostgreSQL) and ``LANGDREAM_CHROMA_URL`` (a chroma server),
as a deployed replica does: ``DreamMemory()`` is opened with no arguments. It writes what it did
and saw to ``ARGS.json``'s ``out`` file.

- ``record``: record the given episodes, one ``record()`` each (an agent replica);
- ``dream``: optionally wait for a ``go`` file, then ``adream`` (or ``dream``) the namespace,
  reflecting with ``FakeReflectionModel`` when a latency is given, else extractively;
- ``recall``: recall each task and report the insights and the episodes they were learned from;
- ``forget``: forget the given episodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, default=str), encoding="utf-8")
    tmp.replace(path)


def _where(memory) -> dict:
    home = Path(memory.home)
    return {
        "pid": os.getpid(),
        "ledger": type(memory.ledger).__name__,
        "index": type(memory.index).__name__,
        "index_owned": memory.index.owned,
        "home_files": sorted(str(p.relative_to(home)) for p in home.rglob("*")),
    }


def record(args: dict) -> dict:
    from langdream import DreamMemory, Episode

    with DreamMemory() as memory:
        recorded = [e["id"] for e in args["episodes"] if memory.record(Episode.model_validate(e))]
        return {**_where(memory), "recorded": recorded}


def dream(args: dict) -> dict:
    from langdream import DreamMemory
    from langdream.testing import FakeReflectionModel

    model = FakeReflectionModel(latency=args["latency"]) if args.get("latency") else None
    with DreamMemory(model=model) as memory:
        memory.embedder.embed(["warm up"])  # the model loads before the race starts
        if args.get("go"):
            Path(args["ready"]).touch()
            deadline = time.monotonic() + 120
            while not Path(args["go"]).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("no go file")
                time.sleep(0.005)
        started = time.time()
        if args.get("async", True):
            reports = asyncio.run(memory.adream(args["namespace"]))
        else:
            reports = memory.dream(args["namespace"])
        return {
            **_where(memory),
            "started": started,
            "ended": time.time(),
            "reports": [r.model_dump(mode="json") for r in reports],
        }


def recall(args: dict) -> dict:
    from langdream import DreamMemory

    with DreamMemory() as memory:
        recalls = []
        for task in args["tasks"]:
            found = memory.recall(task, args["namespace"])
            recalls.append(
                {
                    "task": task,
                    "insights": [r.insight.id for r in found.insights],
                    "evidence": {r.insight.id: list(r.insight.evidence) for r in found.insights},
                    "text": found.text,
                }
            )
        return {**_where(memory), "recalls": recalls}


def forget(args: dict) -> dict:
    from langdream import DreamMemory

    with DreamMemory() as memory:
        report = memory.forget(episode=args["episodes"], actor="scale-out test")
        return {**_where(memory), "report": report.model_dump(mode="json")}


MODES = {"record": record, "dream": dream, "recall": recall, "forget": forget}


if __name__ == "__main__":
    mode, args_path = sys.argv[1], Path(sys.argv[2])
    arguments = json.loads(args_path.read_text(encoding="utf-8"))
    _write_json(Path(arguments["out"]), MODES[mode](arguments))
