"""The LangGraph/LangChain and command-line conventions langdream follows: Runnable configs for the
reflection model, ``--version``, shell completion, ``NO_COLOR``, and logging under ``langdream``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from langdream import ModelError, __version__
from langdream.reflect.llm import REFLECT_RUN_NAME, LLMReflector
from langdream.testing import FakeReflectionModel
from tests.test_middleware import learn

PACKAGE = Path(__file__).resolve().parent.parent / "langdream"
# The installed entry point: completion is keyed on the program's name.
CLI = [str(Path(sys.executable).parent / "langdream")]


class ChatStarts(BaseCallbackHandler):
    """Records the tags and metadata of every chat model call it sees, and the names of root runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict]] = []
        self.roots: list[str | None] = []

    def on_chat_model_start(self, serialized, messages, **kwargs) -> None:
        self.calls.append((kwargs.get("tags") or [], kwargs.get("metadata") or {}))

    def on_chain_start(self, serialized, inputs, *, parent_run_id=None, **kwargs) -> None:
        if parent_run_id is None:
            self.roots.append(kwargs.get("name"))


def test_a_model_with_config_reflects_under_its_tags_and_callbacks(make_memory):
    seen = ChatStarts()
    model = FakeReflectionModel().with_config(tags=["nightly-dream"], metadata={"team": "search"}, callbacks=[seen])
    memory = make_memory(model=model)
    learn(memory)

    assert seen.calls, "the reflection calls did not run with the model's config"
    for tags, metadata in seen.calls:
        assert "nightly-dream" in tags and metadata["team"] == "search"
    assert seen.roots and set(seen.roots) == {REFLECT_RUN_NAME}
    assert all(i.origin.value == "llm" for i in memory.insights(("acme", "u1")))


def test_a_reflector_config_joins_the_models_and_its_run_name_wins():
    seen = ChatStarts()
    reflector = LLMReflector(FakeReflectionModel().with_config(tags=["a"]), config={"tags": ["b"], "run_name": "mine", "callbacks": [seen]})
    assert set(reflector.config["tags"]) == {"a", "b"} and reflector.config["run_name"] == "mine"
    assert reflector.model_id == "FakeReflectionModel:fake-reflection"


def test_a_model_bound_with_arguments_is_refused_with_the_fix():
    with pytest.raises(ModelError) as raised:
        LLMReflector(FakeReflectionModel().bind(temperature=0))
    assert "temperature" in raised.value.message and "with_config" in raised.value.hint


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env={**environment, **env}, timeout=120)


def test_version_flag():
    done = _run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"langdream {__version__}"


def test_shell_completion_completes_commands_and_prints_a_script():
    done = _run(_LANGDREAM_COMPLETE="complete_bash", COMP_WORDS="langdream ins", COMP_CWORD="1")
    assert done.stdout.split() == ["insights"]
    script = _run("--show-completion", "bash")
    assert script.returncode == 0 and "_langdream_completion" in script.stdout


def test_no_color_turns_colour_off_even_on_a_forced_terminal(tmp_path):
    args = ("--home", str(tmp_path), "insights", "show", "ins_missing")
    coloured = _run(*args, FORCE_COLOR="1")
    plain = _run(*args, FORCE_COLOR="1", NO_COLOR="1")
    assert coloured.returncode == plain.returncode == 1
    assert "\x1b[31m" in coloured.stderr  # guards the check below
    assert "\x1b[" not in plain.stderr and "error: no insight with id 'ins_missing'" in plain.stderr


def _logger_names() -> list[tuple[str, str]]:
    """Every ``logging.getLogger("...")`` in the package, with the file it is in."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger" and node.args:
                if isinstance(node.args[0], ast.Constant):
                    found.append((path.name, node.args[0].value))
    return found


def test_every_logger_is_under_the_langdream_logger():
    names = _logger_names()
    assert len(names) >= 8  # guards the walk
    assert all(name == "langdream" or name.startswith("langdream.") for _, name in names), names


def test_library_modules_do_not_print():
    # The CLI, the benchmarks and the probe's subprocess entry point write to stdout by design.
    allowed = {"cli.py", "probe.py", "demo.py"}
    printing = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in allowed or "bench" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not printing, f"library code prints instead of logging: {printing}"


def test_a_recording_failure_is_logged_under_langdream(memory, caplog):
    from langchain.agents import create_agent

    from langdream import DreamingMiddleware
    from tests.agents import ScriptedAgentModel, question, search

    agent = create_agent(ScriptedAgentModel(persistent=True), [search],
                         middleware=[DreamingMiddleware(memory, namespace=("acme", "{user_id}"))])
    with caplog.at_level("WARNING"):
        agent.invoke({"messages": [("user", question("Peru"))]})
    assert [r.name for r in caplog.records] == ["langdream.graph"]
