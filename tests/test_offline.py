"""Offline by default: the whole loop runs in a process that has no network at all.

The process runs in its own network namespace (``unshare --net``: not even loopback is up) with
empty model and tiktoken caches, so a download attempt anywhere fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from langdream import DreamMemory, count_tokens
    from langdream.demo import sample_lines

    home, runs = sys.argv[1], sys.argv[2]
    lines = sample_lines()[:400]
    open(runs, "w").writelines(lines)
    with DreamMemory(home) as memory:
        report = memory.ingest(runs)
        (dream,) = memory.dream("hotpotqa")
        recall = memory.recall(json.loads(lines[0])["task"], "hotpotqa")
        print(json.dumps({
            "added": report.added,
            "insights": len(memory.insights("hotpotqa", status="all")),
            "recalled": len(recall.insights),
            "tokens": count_tokens("hello world"),
            "dream": dream.summary(),
        }))
    """
)


def _no_network_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed, so a network-less process cannot be made")
    probe = subprocess.run([unshare, "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine does not allow new network namespaces: {probe.stderr.decode().strip()}")
    return [unshare, "--net"]


def test_record_dream_recall_with_no_network(tmp_path):
    prefix = _no_network_prefix()
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf-empty"),
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken-empty"),
        "TRANSFORMERS_CACHE": str(tmp_path / "hf-empty"),
    }
    env.pop("HF_HUB_OFFLINE", None)  # offline must not depend on the user setting it
    result = subprocess.run(
        [*prefix, sys.executable, "-c", SCRIPT, str(tmp_path / "home"), str(tmp_path / "runs.jsonl")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["added"] == 400
    assert summary["insights"] > 0 and summary["recalled"] > 0
    assert summary["tokens"] == 2
