"""The CLI, end to end on a real data home: every command, --json output, errors with hints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from langdream import __version__
from langdream.cli import app
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def home(tmp_path_factory, hotpotqa_records):
    """A data home with 30 questions' runs ingested and dreamed over, through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    questions = sorted({r["metadata"]["question_id"] for r in hotpotqa_records})[:30]
    runs = [r for r in hotpotqa_records if r["metadata"]["question_id"] in questions]
    path = write_jsonl(root / "runs.jsonl", runs)
    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(root / "home"), "ingest", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == len(runs)
    result = runner.invoke(app, ["--home", str(root / "home"), "dream", "--json"])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    assert report["namespace"] == ["hotpotqa"] and report["added"] > 0
    return root / "home"


def cli(home, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--home", str(home), *args])
    return result.exit_code, result.stdout, result.stderr


def test_insights_list_and_show_carry_the_documented_fields(home):
    code, out, _ = cli(home, "insights", "list", "--status", "all", "--json")
    assert code == 0
    insights = json.loads(out)
    assert insights
    for insight in insights:
        assert {"id", "text", "status", "namespace", "evidence", "support", "confidence"} <= set(insight)
    active = [i for i in insights if i["status"] == "active"]
    code, out, _ = cli(home, "insights", "list", "--json")
    assert [i["id"] for i in json.loads(out)] == [i["id"] for i in active]

    code, out, _ = cli(home, "insights", "show", active[0]["id"], "--json")
    shown = json.loads(out)
    assert shown["history"][0]["action"] == "add"
    assert [e["id"] for e in shown["evidence_episodes"]] == shown["evidence"]
    code, out, _ = cli(home, "insights", "show", active[0]["id"])
    assert code == 0 and "evidence:" in out and "history:" in out


def test_episodes_list_and_show(home):
    code, out, _ = cli(home, "episodes", "list", "--namespace", "hotpotqa", "--limit", "5", "--json")
    episodes = json.loads(out)
    assert code == 0 and len(episodes) == 5 and all(e["namespace"] == ["hotpotqa"] for e in episodes)
    code, out, _ = cli(home, "episodes", "show", episodes[0]["id"], "--json")
    shown = json.loads(out)
    assert shown["id"] == episodes[0]["id"]
    assert {"role": "user", "content": shown["task"]} in [{k: m[k] for k in ("role", "content")} for m in shown["messages"]]


def test_recall_prints_the_exact_text_a_run_receives(home):
    # A task whose own runs taught an active insight: recall must bring that insight back.
    code, out, _ = cli(home, "insights", "list", "--json")
    taught = json.loads(out)[0]
    code, out, _ = cli(home, "episodes", "show", taught["evidence"][0], "--json")
    task = json.loads(out)["task"]

    code, out, _ = cli(home, "recall", task, "--namespace", "hotpotqa", "--json")
    recall = json.loads(out)
    assert code == 0 and recall["task"] == task
    assert taught["id"] in [r["insight"]["id"] for r in recall["insights"]] and recall["tokens"] > 0
    code, plain, _ = cli(home, "recall", task, "--namespace", "hotpotqa")
    assert code == 0 and recall["text"].splitlines()[0] in plain
    assert all(r["insight"]["id"] in plain for r in recall["insights"])
    code, out, _ = cli(home, "recall", task, "--namespace", "hotpotqa", "--k", "1", "--json")
    assert len(json.loads(out)["insights"]) == 1


def test_errors_say_what_to_fix_and_exit_1(home, tmp_path):
    code, _, err = cli(home, "recall", "anything", "--namespace", "hotpot")
    assert code == 1 and "unknown namespace 'hotpot'" in err and "hint: known namespaces: hotpotqa" in err
    code, _, err = cli(home, "insights", "show", "ins_missing")
    assert code == 1 and "no insight with id" in err and "hint:" in err
    code, _, err = cli(home, "insights", "list", "--status", "bogus")
    assert code == 1 and "unknown status" in err
    bad = tmp_path / "file-not-dir"
    bad.write_text("x")
    code, _, err = cli(bad, "namespaces")
    assert code == 1 and "not a directory" in err


def test_feedback_requeues_and_dream_reports_it(home):
    code, out, _ = cli(home, "episodes", "list", "--limit", "1", "--json")
    episode_id = json.loads(out)[0]["id"]
    code, out, _ = cli(home, "feedback", episode_id, "--failure", "--note", "checked by a person", "--json")
    changed = json.loads(out)
    assert code == 0 and changed["outcome"]["success"] is False and changed["consolidated_by"] is None
    code, out, _ = cli(home, "namespaces", "--json")
    (stats,) = json.loads(out)
    assert stats["pending"] >= 1


def test_reindex_and_doctor(home):
    code, out, _ = cli(home, "reindex", "--json")
    counts = json.loads(out)
    code, out, _ = cli(home, "doctor", "--json")
    report = json.loads(out)
    assert code == 0
    # Probed in a child process, against the ledger's active insights.
    assert report["data"]["index health"] == f"ok ({counts['insights']} insights, {counts['episodes']} episodes)"
    assert counts["insights"] == report["data"]["insights"]["active"]
    assert report["data"]["parked dream jobs"] == "none" and report["data"]["dream leases"] == "none"
    assert report["model"]["weights present"] is True
    assert report["installed"]["langdream"] == __version__


def test_version_and_help():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout
    result = CliRunner().invoke(app, ["--help"])
    for command in ["demo", "ingest", "dream", "insights", "episodes", "recall", "reindex", "doctor"]:
        assert command in result.stdout


def test_demo_runs_offline_on_the_shipped_episodes(tmp_path):
    """The README's main job, as a user runs it: the installed `langdream` entry point."""
    env = {**os.environ, "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    result = subprocess.run(
        [sys.executable, "-m", "langdream.cli", "--home", str(tmp_path / "demo"), "demo"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "what the agent learned" in result.stdout
    assert "Give a final answer whose text appears in a tool result" in result.stdout
    assert "what a new question's run would be told" in result.stdout
    assert "[langdream] Lessons from this agent's earlier runs" in result.stdout
