"""One memory across processes on real servers: a PostgreSQL ledger and a chroma server.

Every worker (tests/scale_out_worker.py) is a process of its own with a data home of its own,
standing for one machine; they share the memory only through ``LANGDREAM_LEDGER_URL`` and
``LANGDREAM_CHROMA_URL``, as deployed replicas do (docs/deploy.md). The module fixture runs the
whole story once, in order:

1. three agent replicas record at once the 40 real HotpotQA runs of 4 questions, dealt out so that
   every question's runs come from all three;
2. one dreamer process dreams them (``adream``, extractive reflection);
3. a fifth process, which recorded nothing, recalls the 4 tasks;
4. a sixth forgets the 10 runs of one question;
5. two dreamers started at once (a file releases both) dream 40 more runs of another namespace,
   reflecting with a model that takes 1 s an answer, so that their dreams overlap.

The tests then check the ledger's episodes and jobs and the chroma server's collections.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from langdream import DreamMemory
from langdream.index.server import ChromaServerIndex
from langdream.types import InsightStatus
from tests.pg_server import PostgresServer

NS = ("hotpotqa",)
RACE_NS = ("race",)
REPLICAS = 3
QUESTIONS = 4
RACE_LATENCY = 1.0  # seconds each reflection of a racing dreamer takes
WORKER = Path(__file__).with_name("scale_out_worker.py")
TIMEOUT = 180.0


@dataclass
class Story:
    run: Path
    ledger_url: str
    chroma_url: str
    memory: DreamMemory  # this process's view, for checks
    assigned: dict[str, list[str]]  # replica -> episode ids it was given
    questions: dict[str, list[str]]  # question id -> its episode ids
    race_ids: list[str]
    results: dict[str, dict] = field(default_factory=dict)
    after_dream: dict = field(default_factory=dict)
    after_forget: dict = field(default_factory=dict)
    forgotten: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def recorder_of(self, episode_id: str) -> str:
        return next(name for name, ids in self.assigned.items() if episode_id in ids)


def _start(story: Story, mode: str, name: str, **args) -> subprocess.Popen:
    home = story.run / "machines" / name
    home.mkdir(parents=True)
    path = story.run / f"{name}.args.json"
    path.write_text(json.dumps({**args, "out": str(story.run / f"{name}.json")}), encoding="utf-8")
    env = {
        **os.environ,
        "LANGDREAM_HOME": str(home),
        "LANGDREAM_LEDGER_URL": story.ledger_url,
        "LANGDREAM_CHROMA_URL": story.chroma_url,
        "ANONYMIZED_TELEMETRY": "False",
    }
    with open(story.run / f"{name}.err", "w") as err:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, str(WORKER), mode, str(path)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=Path(__file__).parents[1],
        )


def _finish(story: Story, procs: dict[str, subprocess.Popen]) -> None:
    for name, proc in procs.items():
        try:
            code = proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        err = (story.run / f"{name}.err").read_text(encoding="utf-8", errors="replace")
        assert code == 0, f"worker {name} exited with {code}:\n{err[-3000:]}"
        story.results[name] = json.loads((story.run / f"{name}.json").read_text(encoding="utf-8"))


def _stage(story: Story, label: str, procs: dict[str, subprocess.Popen]) -> None:
    started = time.perf_counter()
    _finish(story, procs)
    story.seconds[label] = round(time.perf_counter() - started, 2)


def _index_state(story: Story, namespaces: list[tuple[str, ...]], episode_ids: list[str]) -> dict:
    """What the chroma server holds for this memory, read by a client of its own."""
    index = ChromaServerIndex(story.chroma_url)
    try:
        vectors: dict[str, list] = {}
        for ns in namespaces:
            vectors.update(index.episode_vectors(episode_ids, ns))
        return {"insights": index.insight_ids(), "episodes": index.episode_count(), "vectors": vectors}
    finally:
        index.close()


def _active(memory: DreamMemory) -> dict[str, list[str]]:
    """The ledger's active insights, each with its evidence episodes."""
    return {i.id: list(i.evidence) for i in memory.ledger.list_insights(statuses=[InsightStatus.ACTIVE])}


@pytest.fixture(scope="module")
def story(
    postgres_server: PostgresServer,
    chroma_server,
    hotpotqa_records,
    embedder,
    tmp_path_factory,
) -> Iterator[Story]:
    started = time.perf_counter()
    schema = postgres_server.create_schema()
    run = tmp_path_factory.mktemp("scale-out")
    ledger_url = postgres_server.url(schema)
    chroma_url = chroma_server.url_with(prefix=f"scale-{uuid.uuid4().hex[:8]}")
    by_question: dict[str, list[dict]] = defaultdict(list)
    for record in hotpotqa_records:
        by_question[record["metadata"]["question_id"]].append(record)
    chosen = sorted(by_question)[: 2 * QUESTIONS]
    records = [r for q in chosen[:QUESTIONS] for r in by_question[q]]
    assigned = {f"replica{n}": [r["id"] for r in records[n::REPLICAS]] for n in range(REPLICAS)}
    race = [
        {**r, "id": f"race-{r['id']}", "namespace": list(RACE_NS)} for q in chosen[QUESTIONS:] for r in by_question[q]
    ]
    memory = DreamMemory(run / "checker", ledger_url=ledger_url, chroma_url=chroma_url, embedder=embedder)
    story = Story(
        run=run,
        ledger_url=ledger_url,
        chroma_url=chroma_url,
        memory=memory,
        assigned=assigned,
        questions={q: [r["id"] for r in by_question[q]] for q in chosen[:QUESTIONS]},
        race_ids=[r["id"] for r in race],
    )
    try:
        # 1. Agent replicas record at once.
        by_id = {r["id"]: r for r in records}
        _stage(
            story,
            "3 replicas record 40 runs",
            {name: _start(story, "record", name, episodes=[by_id[i] for i in ids]) for name, ids in assigned.items()},
        )
        # 2. One dreamer dreams.
        _stage(story, "dreamer (adream)", {"dreamer": _start(story, "dream", "dreamer", namespace="hotpotqa")})
        story.after_dream = {
            **_index_state(story, [NS], [r["id"] for r in records]),
            "active": _active(memory),
        }
        # 3. A process that recorded nothing recalls.
        tasks = list(dict.fromkeys(r["task"] for r in records))
        _stage(story, "recaller", {"recaller": _start(story, "recall", "recaller", namespace="hotpotqa", tasks=tasks)})
        # 4. Forget one question's runs: the one whose lessons the recaller was shown first.
        first = next(r for r in story.results["recaller"]["recalls"] if r["insights"])
        question = next(q for q, ids in story.questions.items() if by_id[ids[0]]["task"] == first["task"])
        story.forgotten = story.questions[question]
        _stage(story, "forget 10 runs", {"forgetter": _start(story, "forget", "forgetter", episodes=story.forgotten)})
        story.after_forget = {
            **_index_state(story, [NS], [r["id"] for r in records]),
            "active": _active(memory),
        }
        # 5. Two dreamers started at once.
        from langdream import Episode

        for record in race:
            memory.record(Episode.model_validate(record))
        go = run / "go"
        procs = {
            name: _start(
                story,
                "dream",
                name,
                namespace="race",
                latency=RACE_LATENCY,
                go=str(go),
                ready=str(run / f"{name}.ready"),
            )
            for name in ("dreamer-a", "dreamer-b")
        }
        deadline = time.monotonic() + TIMEOUT
        while not all((run / f"{name}.ready").exists() for name in procs):
            assert all(p.poll() is None for p in procs.values()), "a racing dreamer died before the start"
            assert time.monotonic() < deadline, "the racing dreamers did not get ready"
            time.sleep(0.01)
        go.touch()
        _stage(story, "two dreamers at once", procs)
        story.seconds["total"] = round(time.perf_counter() - started, 2)
        print(f"\n[scale-out] seconds: {story.seconds}")
        for name in ("dreamer-a", "dreamer-b"):
            result = story.results[name]
            summary = [r["skipped"] or f"{r['episodes']} episodes" for r in result["reports"]]
            print(f"[scale-out] {name}: {result['started']:.3f}-{result['ended']:.3f} {summary}")
        yield story
    finally:
        memory.close()
        index = ChromaServerIndex(chroma_url)
        index.reset()
        index.close()
        postgres_server.drop_schema(schema)


def test_every_worker_used_the_servers_and_kept_nothing_at_home(story):
    assert set(story.results) == {*story.assigned, "dreamer", "recaller", "forgetter", "dreamer-a", "dreamer-b"}
    pids = {r["pid"] for r in story.results.values()}
    assert len(pids) == len(story.results)  # a process each
    for name, result in story.results.items():
        assert (result["ledger"], result["index"]) == ("PostgresLedger", "ChromaServerIndex"), name
        assert result["index_owned"], name  # on a server every process may write and query
        # No ledger file, no chroma directory, no index lock: the data home holds nothing shared.
        assert not {"ledger.sqlite3", "chroma", "index.lock"} & set(result["home_files"]), (name, result["home_files"])


def test_replicas_record_into_one_ledger(story):
    for name, ids in story.assigned.items():
        assert story.results[name]["recorded"] == ids  # every record() of every replica was new
    recorded = [i for ids in story.assigned.values() for i in ids]
    assert len(recorded) == len(set(recorded)) == 10 * QUESTIONS
    stored = {e.id for e in story.memory.episodes("hotpotqa", limit=1000)}
    assert set(recorded) - set(story.forgotten) == stored  # the forgotten runs are the only ones gone


def test_one_dreamer_learns_from_every_replica(story):
    [report] = story.results["dreamer"]["reports"]
    assert report["episodes"] == 10 * QUESTIONS and report["skipped"] is None
    assert report["added"] >= 1
    active = story.after_dream["active"]
    assert active
    # The chroma server holds exactly the ledger's active insights, and every run's vector.
    assert story.after_dream["insights"] == set(active)
    assert story.after_dream["episodes"] == 10 * QUESTIONS
    assert set(story.after_dream["vectors"]) == {i for ids in story.assigned.values() for i in ids}
    # Each lesson was learned from runs that several replicas recorded.
    for insight_id, evidence in active.items():
        recorders = {story.recorder_of(e) for e in evidence}
        assert len(recorders) >= 2, (insight_id, recorders)


def test_another_process_recalls_what_other_processes_recorded(story):
    recaller = story.results["recaller"]
    everything = {i for ids in story.assigned.values() for i in ids}
    shown = [r for r in recaller["recalls"] if r["insights"]]
    assert len(shown) >= QUESTIONS // 2, recaller["recalls"]
    for recall in shown:
        assert recall["text"].startswith("[langdream]")
        assert set(recall["insights"]) <= set(story.after_dream["active"])
        for evidence in recall["evidence"].values():
            assert evidence and set(evidence) <= everything  # learned from the replicas' runs
            assert len({story.recorder_of(e) for e in evidence}) >= 2


def test_forget_removes_the_vectors_from_the_chroma_server(story):
    report = story.results["forgetter"]["report"]
    assert report["episodes"] == len(story.forgotten) == 10
    before, after = story.after_dream, story.after_forget
    assert after["episodes"] == before["episodes"] - 10
    assert not set(story.forgotten) & set(after["vectors"])  # read back by id: gone
    kept = {i for ids in story.assigned.values() for i in ids} - set(story.forgotten)
    assert set(after["vectors"]) == kept
    # No remaining nearest-neighbour query finds them either.
    index = ChromaServerIndex(story.chroma_url)
    try:
        for vector in list(before["vectors"].values())[:10]:
            hits = index.query_episodes(np.asarray(vector, dtype=np.float32), NS, n=50)
            assert not {h.id for h in hits} & set(story.forgotten)
    finally:
        index.close()
    # Insights that lost their support left the server's index with the ledger's active set.
    assert after["insights"] == set(after["active"])
    assert report["insights_revoked"] + report["insights_updated"] >= 1
    # No active insight still cites a forgotten run.
    assert not any(set(evidence) & set(story.forgotten) for evidence in after["active"].values())


def test_two_dreamers_started_at_once_never_process_the_same_episodes(story):
    a, b = story.results["dreamer-a"], story.results["dreamer-b"]
    assert abs(a["started"] - b["started"]) < RACE_LATENCY  # they did start together
    reports = [r for result in (a, b) for r in result["reports"]]
    working = [r for r in reports if r["episodes"]]
    assert len(working) == 1, reports  # one dreamer took the namespace ...
    [idle] = [r for r in reports if not r["episodes"]]
    assert idle["skipped"], idle  # ... the other was told why it did nothing
    # The ledger agrees: done jobs are disjoint, each consolidated run is in its job's input.
    jobs = story.memory.jobs("race", limit=100)
    assert {j.status for j in jobs} == {"done"}
    inputs = [{i for i, _ in j.episodes} for j in jobs]
    assert sum(len(s) for s in inputs) == len(set().union(*inputs))
    done_by_job = {j.id: {i for i, _ in j.episodes} for j in jobs}
    episodes = story.memory.episodes("race", limit=1000)
    assert {e.id for e in episodes} == set(story.race_ids)
    for episode in episodes:
        if episode.consolidated_by is not None:
            assert episode.id in done_by_job[episode.consolidated_by]
    assert sum(1 for e in episodes if e.consolidated_by) == working[0]["episodes"]
    assert story.memory.ledger.leases() == []  # both let go
    # They dreamed at the same time: the loser met the winner's lease, not an empty queue.
    assert a["ended"] > b["started"] and b["ended"] > a["started"]
    assert idle["skipped"].startswith("another dreamer"), idle["skipped"]


# -- choosing the backends: arguments, environment, the CLI and doctor -------------------------


def test_backends_come_from_arguments_else_the_environment(monkeypatch):
    from langdream.memory import resolve_backends

    monkeypatch.delenv("LANGDREAM_LEDGER_URL", raising=False)
    monkeypatch.delenv("LANGDREAM_CHROMA_URL", raising=False)
    assert resolve_backends() == (None, None)
    monkeypatch.setenv("LANGDREAM_LEDGER_URL", "postgresql://db/ld")
    monkeypatch.setenv("LANGDREAM_CHROMA_URL", " http://chroma:8000 ")
    assert resolve_backends() == ("postgresql://db/ld", "http://chroma:8000")
    assert resolve_backends("postgresql://other/ld", None) == ("postgresql://other/ld", "http://chroma:8000")
    assert resolve_backends("", "") == (None, None)  # an empty argument: the data home's own files
    monkeypatch.setenv("LANGDREAM_CHROMA_URL", "")
    assert resolve_backends() == ("postgresql://db/ld", None)


def test_a_memory_with_no_urls_keeps_everything_in_its_data_home(tmp_path, embedder, monkeypatch):
    monkeypatch.delenv("LANGDREAM_LEDGER_URL", raising=False)
    monkeypatch.delenv("LANGDREAM_CHROMA_URL", raising=False)
    with DreamMemory(tmp_path / "home", embedder=embedder) as memory:
        assert type(memory.ledger).__name__ == "SQLiteLedger"
        assert not memory.index.remote and not memory.index.owned
    assert (tmp_path / "home" / "ledger.sqlite3").exists()


def test_a_bad_chroma_url_fails_before_the_ledger_opens(tmp_path, embedder):
    from langdream.errors import ConfigError

    with pytest.raises(ConfigError, match="scheme"):
        DreamMemory(tmp_path / "home", chroma_url="ftp://chroma", embedder=embedder)
    assert not (tmp_path / "home" / "ledger.sqlite3").exists()


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from langdream.cli import app

    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_works_on_the_servers_and_doctor_shows_them(postgres_url, chroma_url, hotpotqa_records, tmp_path):
    from tests.conftest import write_jsonl

    secret = "not-a-real-password"
    ledger_url = postgres_url.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@")
    questions = sorted({r["metadata"]["question_id"] for r in hotpotqa_records})[:3]
    runs = [r for r in hotpotqa_records if r["metadata"]["question_id"] in questions]
    path = write_jsonl(tmp_path / "runs.jsonl", runs)
    home = tmp_path / "home"
    backends = ["--home", str(home), "--ledger-url", ledger_url, "--chroma-url", chroma_url]

    code, out, err = _cli(*backends, "ingest", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == len(runs)
    code, out, err = _cli(*backends, "dream", "--json")
    assert code == 0, err
    recalled = []
    for task in dict.fromkeys(r["task"] for r in runs):
        code, out, err = _cli(*backends, "recall", task, "-n", "hotpotqa", "--json")
        assert code == 0, err
        recalled += json.loads(out)["insights"]
    assert recalled  # from the chroma server: this process owns nothing
    code, out, err = _cli(*backends, "reindex", "--json")  # from nothing, on the server
    assert code == 0, err
    counts = json.loads(out)
    assert counts["episodes"] == len(runs) and counts["insights"] >= 1

    code, out, err = _cli(*backends, "doctor", "--json")
    assert code == 0, err
    data = json.loads(out)["data"]
    assert secret not in out
    assert data["ledger"].startswith("PostgreSQL postgresql://postgres:***@127.0.0.1:")
    assert data["ledger"].endswith("(answers)")
    prefix = chroma_url.split("prefix=")[1]
    assert data["index"].startswith(chroma_url) and f"collections {prefix}_*" in data["index"]
    assert data["index server"].startswith("answers (chroma ")
    assert data["index health"] == f"ok ({counts['insights']} insights, {counts['episodes']} episodes)"
    assert data["episodes"] == len(runs) and data["insights"]["active"] == counts["insights"]
    # The data home holds no ledger and no index.
    assert not {"ledger.sqlite3", "chroma", "index.lock"} & {p.name for p in home.iterdir()}

    # The same memory through the environment, from another data home.
    env = {"LANGDREAM_LEDGER_URL": ledger_url, "LANGDREAM_CHROMA_URL": chroma_url}
    code, out, err = _cli("--home", str(tmp_path / "elsewhere"), "doctor", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["data"]["index health"] == data["index health"]

    # Drift on the server is found, and reindex mends it.
    index = ChromaServerIndex(chroma_url)
    try:
        gone = min(index.insight_ids())
        index.delete_insights([gone], [("hotpotqa",)])
    finally:
        index.close()
    code, out, _ = _cli(*backends, "doctor", "--json")
    assert json.loads(out)["data"]["index health"].startswith("drifted (1 active insights missing, 0 extra)")
    code, out, _ = _cli(*backends, "reindex", "--json")
    code, out, _ = _cli(*backends, "doctor", "--json")
    assert json.loads(out)["data"]["index health"] == data["index health"]


def test_doctor_and_commands_name_an_unreachable_chroma_server(postgres_url, tmp_path):
    from tests.chroma_server import free_port

    url = f"http://127.0.0.1:{free_port()}?prefix=gone"
    backends = ["--home", str(tmp_path / "home"), "--ledger-url", postgres_url, "--chroma-url", url]
    code, out, _ = _cli(*backends, "doctor", "--json")
    assert code == 0
    data = json.loads(out)["data"]
    assert data["index server"].startswith("error: cannot reach the chroma server at http://127.0.0.1:")
    assert data["index health"].startswith("unreachable (cannot reach the chroma server")
    assert data["ledger"].endswith("(answers)")  # the ledger is checked on its own
    code, _, err = _cli(*backends, "reindex")
    assert code == 1
    assert "cannot reach the chroma server" in err and "hint:" in err and "chroma run" in err


# -- docs/deploy.md's LangGraph Platform dreamer, run as written --------------------------------


def _deploy_blocks(language: str) -> list[str]:
    import re

    text = (Path(__file__).parents[1] / "docs" / "deploy.md").read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


async def test_the_documented_dreaming_graph_dreams_on_the_servers(
    postgres_url, chroma_url, hotpotqa_records, tmp_path, monkeypatch
):
    [source] = [b for b in _deploy_blocks("python") if "builder = StateGraph(DreamState)" in b]
    monkeypatch.setenv("LANGDREAM_LEDGER_URL", postgres_url)
    monkeypatch.setenv("LANGDREAM_CHROMA_URL", chroma_url)
    monkeypatch.setenv("LANGDREAM_HOME", str(tmp_path / "platform-home"))
    questions = sorted({r["metadata"]["question_id"] for r in hotpotqa_records})[:3]
    runs = [r for r in hotpotqa_records if r["metadata"]["question_id"] in questions]
    with DreamMemory(tmp_path / "replica", embedder=None) as replica:  # a replica records
        from langdream import Episode

        for run in runs:
            replica.record(Episode.model_validate(run))
    # dreamer.py as documented, imported as the LangGraph server imports a graph module.
    path = tmp_path / "dreamer.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("langdream_deploy_dreamer", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    try:
        state = await module.graph.ainvoke({"namespace": None})
        [report] = state["reports"]
        assert report["namespace"] == ["hotpotqa"] and report["episodes"] == len(runs) and report["added"] >= 1
        assert module.memory.index.remote
        state = await module.graph.ainvoke({"namespace": "hotpotqa"})  # the next tick: nothing new
        assert state["reports"][0]["skipped"]
    finally:
        module.memory.close()


def test_the_documented_cron_call_and_langgraph_json_fit_the_real_sdk():
    import ast
    import inspect

    from langgraph_sdk import get_sync_client
    from langgraph_sdk._sync.cron import SyncCronClient

    [config] = [json.loads(b) for b in _deploy_blocks("json") if '"graphs"' in b]
    assert config["graphs"]["dreamer"] == "./dreamer.py:graph" and "dependencies" in config
    [source] = [b for b in _deploy_blocks("python") if "crons.create" in b]
    calls = {
        ast.unparse(node.func): node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
    }

    def bind(function, call: ast.Call, *leading) -> inspect.BoundArguments:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        return inspect.signature(function).bind(*leading, *args, **kwargs)

    bind(get_sync_client, calls["get_sync_client"])
    bound = bind(SyncCronClient.create, calls["client.crons.create"], object())
    assert bound.arguments["assistant_id"] == "dreamer" and bound.arguments["schedule"] == "*/30 * * * *"
