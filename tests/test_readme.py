"""The README's set-up commands and example stay true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, re.S)
    assert commands == [
        'pip install "torch==2.13.0" . && langdream demo',
        'pip install "torch==2.13.0" -e ".[test]" && python -m pytest',
    ]
    assert commands[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_readme_example_runs_as_written(tmp_path):
    (code,) = re.findall(r"```python\n(.*?)\n```", README, re.S)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / ".langdream" / "ledger.sqlite3").exists()
    from langdream import DreamMemory

    with DreamMemory(tmp_path / ".langdream") as memory:
        (episode,) = memory.episodes(("acme", "u42"))
        assert episode.task == "What is the capital of France?" and episode.outcome.success is True
        assert [m.role for m in episode.messages] == ["user", "assistant", "tool", "assistant"]
