"""Importing episodes from JSONL: good lines kept, bad lines reported by number, no duplicates."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langdream import Episode
from langdream.cli import app
from langdream.errors import IngestError
from langdream.ingest import IngestReport, LineError, read_jsonl
from langdream.memory import DreamMemory
from tests.conftest import write_jsonl

DEFAULT = ("default",)


def good(n: int, **fields) -> dict:
    record = {
        "task": f"question {n}",
        "messages": [
            {"role": "user", "content": f"question {n}"},
            {"role": "assistant", "content": "", "tool_calls": [{"name": "search", "args": {"q": str(n)}, "id": "c1"}]},
            {"role": "tool", "content": "result", "tool_call_id": "c1", "name": "search"},
            {"role": "assistant", "content": f"answer {n}"},
        ],
        "final_answer": f"answer {n}",
        "outcome": {"success": n % 2 == 0, "score": 1.0 if n % 2 == 0 else 0.0},
        "thread_id": f"t{n}",
        "run_id": f"r{n}",
    }
    record.update(fields)
    return record


def mixed_file(path: Path) -> Path:
    """Two good lines among every kind of bad line (line numbers in the comments)."""
    lines: list[bytes] = [
        json.dumps(good(1, id="ep-one")).encode(),  # 1 good, with an id
        b'{"task": "unterminated",',  # 2 invalid JSON
        b"",  # 3 blank
        b"[1, 2, 3]",  # 4 JSON that is not an object
        json.dumps({"messages": [], "outcome": {"success": True}}).encode(),  # 5 missing task
        json.dumps({"task": "t", "colour": "red"}).encode(),  # 6 unknown field
        json.dumps({"task": "t", "messages": [{"role": "robot", "content": "beep"}]}).encode(),  # 7 bad role
        b'{"task": "caf\xe9 au lait"}',  # 8 invalid UTF-8 (latin-1 byte)
        json.dumps(good(2)).encode(),  # 9 good, id derived from content
        b"   \t ",  # 10 whitespace only
        json.dumps({"task": "t", "namespace": "acme//u1"}).encode(),  # 11 bad namespace
        json.dumps({"task": ""}).encode(),  # 12 empty task
        json.dumps({"task": "t", "created_at": "not a date"}).encode(),  # 13 bad created_at
        b'"just a string"',  # 14 JSON string
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


BAD_LINES = {
    2: "not valid JSON",
    4: "expected a JSON object, got list",
    5: "task",
    6: "colour",
    7: "role",
    8: "not UTF-8",
    11: "namespace",
    12: "task",
    13: "created_at",
    14: "expected a JSON object, got str",
}


# -- read_jsonl ----------------------------------------------------------------------------------------


def test_read_jsonl_reports_each_bad_line_with_number_and_reason(tmp_path):
    items = list(read_jsonl(mixed_file(tmp_path / "mixed.jsonl"), DEFAULT))
    numbers = [n for n, _ in items]
    assert 3 not in numbers and 10 not in numbers  # blank lines are skipped, not errors
    good_items = {n: item for n, item in items if isinstance(item, Episode)}
    errors = {n: item for n, item in items if isinstance(item, LineError)}
    assert set(good_items) == {1, 9}
    assert set(errors) == set(BAD_LINES)
    for number, fragment in BAD_LINES.items():
        assert errors[number].line == number
        assert fragment in errors[number].reason, (number, errors[number].reason)
    assert "Field required" in errors[5].reason
    assert "Extra inputs are not permitted" in errors[6].reason
    assert errors[7].reason.startswith("messages.0.role")
    assert "byte 13" in errors[8].reason  # the offset of the bad byte
    assert good_items[1].id == "ep-one"
    assert good_items[9].id.startswith("ep_")


def test_read_jsonl_builds_full_episodes(tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", [good(4, id="e4", metadata={"source": "test"})])
    [(number, ep)] = list(read_jsonl(path, ("acme",)))
    assert number == 1
    assert ep.id == "e4"
    assert ep.namespace == ("acme",)
    assert ep.task == "question 4"
    assert [m.role for m in ep.messages] == ["user", "assistant", "tool", "assistant"]
    assert ep.messages[1].tool_calls[0].name == "search"
    assert ep.messages[1].tool_calls[0].args == {"q": "4"}
    assert ep.final_answer == "answer 4"
    assert ep.outcome.success is True
    assert ep.outcome.score == 1.0
    assert ep.thread_id == "t4"
    assert ep.run_id == "r4"
    assert ep.metadata == {"source": "test"}


def test_derived_ids_depend_on_content_only(tmp_path):
    record = good(5)
    path = write_jsonl(tmp_path / "a.jsonl", [record, record, good(6)])
    ids = [ep.id for _, ep in read_jsonl(path, DEFAULT)]
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]
    # Trailing whitespace on the line does not change the id.
    padded = tmp_path / "b.jsonl"
    padded.write_text(json.dumps(record) + "   \r\n", encoding="utf-8")
    [(_, ep)] = list(read_jsonl(padded, DEFAULT))
    assert ep.id == ids[0]


def test_unreadable_files_raise_ingest_error(tmp_path):
    with pytest.raises(IngestError) as info:
        list(read_jsonl(tmp_path / "missing.jsonl", DEFAULT))
    assert "missing.jsonl" in info.value.message
    assert info.value.hint
    with pytest.raises(IngestError):
        list(read_jsonl(tmp_path, DEFAULT))  # a directory


def test_corrupt_gzip_raises_ingest_error(tmp_path):
    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_text(json.dumps(good(1)) + "\n", encoding="utf-8")
    with pytest.raises(IngestError) as info:
        list(read_jsonl(not_gzip, DEFAULT))
    assert info.value.hint

    data = gzip.compress(("\n".join(json.dumps(good(i)) for i in range(200)) + "\n").encode())
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError):
        list(read_jsonl(truncated, DEFAULT))


# -- DreamMemory.ingest ----------------------------------------------------------------------------------


def test_ingest_keeps_good_lines_and_reports_bad_ones(memory, tmp_path):
    report = memory.ingest(mixed_file(tmp_path / "mixed.jsonl"))
    assert isinstance(report, IngestReport)
    assert report.added == 2
    assert report.duplicates == 0
    assert [e.line for e in report.errors] == sorted(BAD_LINES)
    assert report.namespaces == {"default": 2}
    assert memory.ledger.count_episodes() == 2
    stored = memory.episode("ep-one")
    assert stored.task == "question 1"
    assert stored.namespace == DEFAULT
    assert stored.messages[2].tool_call_id == "c1"
    assert {e.task for e in memory.episodes("default")} == {"question 1", "question 2"}


def test_same_file_twice_stores_once(memory, tmp_path):
    path = write_jsonl(tmp_path / "eps.jsonl", [good(i, id=f"id-{i}") for i in range(3)] + [good(i) for i in range(3, 7)])
    first = memory.ingest(path)
    assert (first.added, first.duplicates, first.errors) == (7, 0, [])
    second = memory.ingest(path)
    assert (second.added, second.duplicates, second.errors) == (0, 7, [])
    assert second.namespaces == {}
    assert memory.ledger.count_episodes() == 7


def test_duplicate_lines_within_one_file(memory, tmp_path):
    path = write_jsonl(tmp_path / "dups.jsonl", [good(1), good(1), good(2, id="x"), good(3, id="x")])
    report = memory.ingest(path)
    assert report.added == 2
    assert report.duplicates == 2
    assert memory.episode("x").task == "question 2"


def test_large_file_is_batched_and_progress_reported(memory, tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [{"task": f"task {i}"} for i in range(1203)])
    seen: list[int] = []
    report = memory.ingest(path, progress=seen.append)
    assert report.added == 1203
    assert sum(seen) == 1203
    assert len(seen) == 3
    assert memory.ledger.count_episodes() == 1203


def test_gzipped_jsonl(memory, tmp_path):
    path = tmp_path / "eps.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i in range(4):
            handle.write(json.dumps(good(i)) + "\n")
        handle.write("\n{broken\n")
    report = memory.ingest(path)
    assert report.added == 4
    assert [(e.line, e.reason.split(":")[0]) for e in report.errors] == [(6, "not valid JSON")]
    # Same content plain and gzipped gives the same ids.
    plain = write_jsonl(tmp_path / "eps.jsonl", [good(i) for i in range(4)])
    again = memory.ingest(plain)
    assert (again.added, again.duplicates) == (0, 4)


def test_default_namespace_applies_only_to_lines_without_one(memory, tmp_path):
    path = write_jsonl(
        tmp_path / "ns.jsonl",
        [
            {"task": "no namespace", "id": "a"},
            {"task": "list namespace", "id": "b", "namespace": ["acme", "u1"]},
            {"task": "string namespace", "id": "c", "namespace": "acme/u2"},
            {"task": "json-array string", "id": "d", "namespace": '["acme", "u3"]'},
            {"task": "single label", "id": "e", "namespace": "solo"},
        ],
    )
    report = memory.ingest(path, namespace="tenant/x")
    assert report.added == 5
    assert report.errors == []
    assert report.namespaces == {"tenant/x": 1, "acme/u1": 1, "acme/u2": 1, "acme/u3": 1, "solo": 1}
    assert memory.episode("a").namespace == ("tenant", "x")
    assert memory.episode("b").namespace == ("acme", "u1")
    assert memory.episode("c").namespace == ("acme", "u2")
    assert memory.episode("d").namespace == ("acme", "u3")
    assert memory.episode("e").namespace == ("solo",)


def test_default_namespace_as_list_and_builtin_default(make_memory, tmp_path):
    path = write_jsonl(tmp_path / "plain.jsonl", [{"task": "t1", "id": "p1"}])
    listed = make_memory()
    assert listed.ingest(path, namespace=["acme", "u9"]).namespaces == {"acme/u9": 1}
    assert listed.episode("p1").namespace == ("acme", "u9")
    builtin = make_memory()
    assert builtin.ingest(path).namespaces == {"default": 1}
    assert builtin.episode("p1").namespace == ("default",)


def test_same_idless_file_into_two_namespaces_stores_it_in_both(memory, tmp_path):
    # Namespaces never mix: importing one file (lines without ids or namespaces) for two tenants
    # must give each tenant its own episodes, not report the second import as "already stored".
    path = write_jsonl(tmp_path / "shared.jsonl", [{"task": "how do I reset my password?"}, {"task": "refund"}])
    first = memory.ingest(path, namespace="tenant-a")
    assert first.added == 2
    second = memory.ingest(path, namespace="tenant-b")
    assert second.added == 2, f"second import into another namespace: {second}"
    assert memory.ledger.count_episodes(("tenant-b",)) == 2


def test_created_at_iso_and_naive(memory, tmp_path):
    path = write_jsonl(
        tmp_path / "dates.jsonl",
        [
            {"task": "aware", "id": "aware", "created_at": "2024-05-01T12:00:00+02:00"},
            {"task": "zulu", "id": "zulu", "created_at": "2024-05-01T10:00:00Z"},
            {"task": "naive", "id": "naive", "created_at": "2024-05-01T12:00:00"},
            {"task": "date only", "id": "date", "created_at": "2024-05-01"},
            {"task": "epoch", "id": "epoch", "created_at": 1714557600},
            {"task": "now", "id": "now"},
        ],
    )
    before = datetime.now(timezone.utc)
    report = memory.ingest(path)
    after = datetime.now(timezone.utc)
    assert report.errors == []
    assert memory.episode("aware").created_at == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    assert memory.episode("zulu").created_at == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    # A naive timestamp is read as UTC, whatever the machine's local time zone.
    assert memory.episode("naive").created_at == datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert memory.episode("date").created_at == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert memory.episode("epoch").created_at == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    assert before.timestamp() - 1 <= memory.episode("now").created_at.timestamp() <= after.timestamp() + 1


def test_naive_created_at_is_utc_in_any_local_time_zone(memory, tmp_path, monkeypatch):
    import time

    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available on this platform")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        path = write_jsonl(tmp_path / "naive.jsonl", [{"task": "naive", "id": "n", "created_at": "2024-01-15T08:30:00"}])
        memory.ingest(path)
        assert memory.episode("n").created_at == datetime(2024, 1, 15, 8, 30, tzinfo=timezone.utc)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_ingest_unreadable_file_raises_ingest_error(memory, tmp_path):
    with pytest.raises(IngestError):
        memory.ingest(tmp_path / "nope.jsonl")
    with pytest.raises(IngestError):
        memory.ingest(tmp_path)
    assert memory.ledger.count_episodes() == 0


def test_ingest_empty_file(memory, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n   \n", encoding="utf-8")
    report = memory.ingest(path)
    assert report == IngestReport()


def test_ingest_real_hotpotqa_records(memory, tmp_path, hotpotqa_records):
    sample = hotpotqa_records[:40]
    report = memory.ingest(write_jsonl(tmp_path / "hotpot.jsonl", sample), namespace="hotpotqa")
    assert report.errors == []
    assert report.added == len({r.get("id") or json.dumps(r) for r in sample})
    assert memory.ledger.count_episodes() == report.added


# -- the CLI ---------------------------------------------------------------------------------------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_cli_ingest_json_report_with_bad_lines(runner, tmp_path):
    home = tmp_path / "home"
    path = mixed_file(tmp_path / "mixed.jsonl")
    result = runner.invoke(app, ["--home", str(home), "ingest", str(path), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["added"] == 2
    assert report["duplicates"] == 0
    assert [e["line"] for e in report["errors"]] == sorted(BAD_LINES)
    assert all(e["reason"] for e in report["errors"])
    assert report["namespaces"] == {"default": 2}
    with DreamMemory(home) as memory:
        assert memory.ledger.count_episodes() == 2
        assert memory.episode("ep-one").task == "question 1"


def test_cli_ingest_clean_file_exits_zero_and_second_run_is_all_duplicates(runner, tmp_path):
    home = tmp_path / "home"
    path = write_jsonl(tmp_path / "eps.jsonl", [good(i) for i in range(5)])
    args = ["--home", str(home), "ingest", str(path), "--namespace", "acme/u1", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {"added": 5, "duplicates": 0, "errors": [], "namespaces": {"acme/u1": 5}}
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout) == {"added": 0, "duplicates": 5, "errors": [], "namespaces": {}}
    with DreamMemory(home) as memory:
        assert memory.ledger.count_episodes(("acme", "u1")) == 5
        assert memory.ledger.count_episodes() == 5


def test_cli_ingest_human_output(runner, tmp_path):
    home = tmp_path / "home"
    path = write_jsonl(tmp_path / "eps.jsonl", [good(1), "{oops"])
    result = runner.invoke(app, ["--home", str(home), "ingest", str(path)])
    assert result.exit_code == 1
    assert "added 1 episodes" in result.stdout
    assert "line 2" in result.stderr


def test_cli_ingest_missing_file_is_an_error_with_hint(runner, tmp_path):
    result = runner.invoke(app, ["--home", str(tmp_path / "home"), "ingest", str(tmp_path / "nope.jsonl"), "--json"])
    assert result.exit_code == 1
    assert "nope.jsonl" in result.stderr
    assert "hint:" in result.stderr
    assert result.stdout == ""
