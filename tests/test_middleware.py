"""DreamingMiddleware on real ``create_agent`` agents with a scripted tool-calling chat model."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from langchain.agents import create_agent
from langchain_core.messages import SystemMessage
from langgraph.checkpoint.memory import InMemorySaver

from langdream import ConfigError, DreamingMiddleware, DreamMemory, NamespaceError, RecordingError
from langdream.middleware import STATE_KEY, with_recall
from tests.agents import ScriptedAgentModel, answered_correctly, question, search

NS = ("acme", "{user_id}")
ROOT = Path(__file__).resolve().parent.parent


def config(user: str = "u1", thread: str | None = None, run_id: uuid.UUID | None = None) -> dict:
    cfg: dict = {"configurable": {"user_id": user, "thread_id": thread or str(uuid.uuid4())}}
    if run_id is not None:
        cfg["run_id"] = run_id
    return cfg


def agent(memory: DreamMemory, model: ScriptedAgentModel | None = None, **options):
    options.setdefault("judge", answered_correctly)
    options.setdefault("namespace", NS)
    checkpointer = options.pop("checkpointer", None)
    return create_agent(
        model or ScriptedAgentModel(),
        [search],
        system_prompt="You answer geography questions.",
        middleware=[DreamingMiddleware(memory, **options)],
        checkpointer=checkpointer,
    )


def learn(memory: DreamMemory, user: str = "u1") -> None:
    """Turns with mixed outcomes for ``("acme", user)``, then a dream over them."""
    for persistent, country in [(True, "France"), (False, "Peru"), (True, "Japan"), (False, "Kenya"), (True, "Italy"), (False, "France")]:
        agent(memory, ScriptedAgentModel(persistent=persistent)).invoke(
            {"messages": [("user", question(country))]}, config(user)
        )
    (report,) = memory.dream(("acme", user))
    assert report.added >= 1


def test_a_turn_is_recorded_with_its_trajectory_outcome_and_ids(memory):
    run_id = uuid.uuid4()
    result = agent(memory, ScriptedAgentModel(persistent=True)).invoke(
        {"messages": [("user", question("France"))]}, config("u7", "thread-1", run_id)
    )

    assert result["messages"][-1].content == "Paris"
    assert STATE_KEY not in result  # private: never in the agent's output
    episode = memory.episode(str(run_id))
    assert episode.namespace == ("acme", "u7")
    assert episode.task == "What is the capital of France?"
    assert episode.thread_id == "thread-1" and episode.run_id == str(run_id)
    assert episode.outcome.success is True and episode.final_answer == "Paris"
    assert [m.role for m in episode.messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert episode.messages[1].tool_calls[0].args == {"query": "France"}
    assert episode.metadata["agent"] == "create_agent"


def test_recall_goes_into_the_system_prompt_and_changes_what_the_agent_does(memory):
    learn(memory)
    model = ScriptedAgentModel()  # gives up unless told to search again
    saver = InMemorySaver()
    run_id = uuid.uuid4()
    graph = agent(memory, model, checkpointer=saver)

    result = graph.invoke({"messages": [("user", question("Chile"))]}, config("u1", "t1", run_id))

    assert result["messages"][-1].content == "Santiago"
    first_call = model.calls[0]
    system = first_call[0]
    assert isinstance(system, SystemMessage)
    assert system.content.startswith("You answer geography questions.\n\n[langdream] Lessons")
    assert sum(isinstance(m, SystemMessage) for m in first_call) == 1
    # Every model call of the turn sees the lessons; the thread's stored messages never hold them.
    assert all("[langdream]" in str(call[0].content) for call in model.calls)
    stored = graph.get_state({"configurable": {"thread_id": "t1"}}).values
    assert not any("[langdream]" in str(m.content) for m in stored["messages"])
    assert stored.get(STATE_KEY) is None  # cleared when the turn ended
    episode = memory.episode(str(run_id))
    assert episode.injected_insight_ids and episode.outcome.success is True
    assert episode.metadata["recall_tokens"] > 0


def test_each_turn_of_a_thread_is_its_own_episode(memory):
    graph = agent(memory, ScriptedAgentModel(persistent=True), checkpointer=InMemorySaver())
    ids = [uuid.uuid4(), uuid.uuid4()]
    graph.invoke({"messages": [("user", question("France"))]}, config("u1", "t9", ids[0]))
    graph.invoke({"messages": [("user", question("Peru"))]}, config("u1", "t9", ids[1]))

    first, second = (memory.episode(str(i)) for i in ids)
    assert first.task.endswith("France?") and second.task.endswith("Peru?")
    assert second.messages[0].content == question("Peru")  # the second turn starts at its own question
    assert second.final_answer == "Lima" and first.thread_id == second.thread_id == "t9"


def test_the_namespace_template_is_filled_from_the_runtime_context(memory):
    @dataclasses.dataclass
    class Context:
        user_id: str

    graph = create_agent(
        ScriptedAgentModel(persistent=True),
        [search],
        context_schema=Context,
        middleware=[DreamingMiddleware(memory, namespace=NS, judge=answered_correctly)],
    )
    run_id = uuid.uuid4()
    graph.invoke({"messages": [("user", question("Japan"))]}, {"run_id": run_id}, context=Context(user_id="ctx-user"))

    assert memory.episode(str(run_id)).namespace == ("acme", "ctx-user")


def test_a_turn_without_a_caller_run_id_still_gets_a_unique_id(memory):
    graph = agent(memory, ScriptedAgentModel(persistent=True))
    for country in ("France", "Peru"):
        graph.invoke({"messages": [("user", question(country))]}, config())
    episodes = memory.ledger.list_episodes()
    assert len(episodes) == 2 and len({e.id for e in episodes}) == 2
    assert all(uuid.UUID(e.id) for e in episodes)


async def test_async_turns_recall_and_record(memory):
    learn(memory)
    model = ScriptedAgentModel()
    graph = agent(memory, model)
    run_ids = [uuid.uuid4() for _ in range(3)]

    results = await asyncio.gather(
        *(graph.ainvoke({"messages": [("user", question(c))]}, config("u1", None, r)) for c, r in zip(("Chile", "Peru", "Kenya"), run_ids))
    )

    assert [r["messages"][-1].content for r in results] == ["Santiago", "Lima", "Nairobi"]
    for run_id in run_ids:
        episode = memory.episode(str(run_id))
        assert episode.injected_insight_ids and episode.outcome.success is True


def test_recall_off_records_without_touching_the_prompt(memory):
    learn(memory)
    model = ScriptedAgentModel()
    run_id = uuid.uuid4()
    agent(memory, model, recall="off").invoke({"messages": [("user", question("Chile"))]}, config("u1", None, run_id))

    assert model.calls[0][0].content == "You answer geography questions."
    assert memory.episode(str(run_id)).injected_insight_ids == []


def test_a_missing_namespace_field_warns_and_the_turn_goes_on(memory, caplog):
    graph = agent(memory, ScriptedAgentModel(persistent=True))
    with caplog.at_level(logging.WARNING, logger="langdream"):
        result = graph.invoke({"messages": [("user", question("France"))]}, {"configurable": {}})
    assert result["messages"][-1].content == "Paris"
    assert memory.ledger.count_episodes() == 0
    assert "user_id" in caplog.text


def test_on_error_raise_surfaces_a_langdream_error(memory):
    graph = agent(memory, ScriptedAgentModel(persistent=True), on_error="raise")
    with pytest.raises(NamespaceError) as raised:
        graph.invoke({"messages": [("user", question("France"))]}, {"configurable": {}})
    assert "user_id" in raised.value.message and "configurable" in raised.value.hint
    assert memory.ledger.count_episodes() == 0


def test_on_error_raise_surfaces_a_failing_judge(memory):
    def judge(state):
        raise ValueError("judge broke")

    graph = agent(memory, ScriptedAgentModel(persistent=True), judge=judge, on_error="raise")
    with pytest.raises(RecordingError, match="judge"):
        graph.invoke({"messages": [("user", question("France"))]}, config())


@pytest.mark.parametrize(
    ("options", "fix"),
    [({"recall": "state"}, "recall='auto'"), ({"messages_key": "chat"}, "messages_key"), ({"colour": "blue"}, "namespace")],
)
def test_bad_options_name_the_fix(memory, options, fix):
    with pytest.raises(ConfigError) as raised:
        DreamingMiddleware(memory, **options)
    assert fix in f"{raised.value.message} {raised.value.hint}"


def test_the_memory_must_be_a_dream_memory():
    with pytest.raises(ConfigError, match="DreamMemory"):
        DreamingMiddleware("./.langdream")


def test_with_recall_keeps_content_blocks_and_adds_a_system_message_when_there_is_none():
    blocks = SystemMessage(content=[{"type": "text", "text": "Be brief."}])
    assert with_recall(blocks, "lessons").content == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "lessons"}]
    assert with_recall(None, "lessons").content == "lessons"
    assert with_recall(SystemMessage(content=""), "lessons").content == "lessons"


def test_the_example_runs_offline(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "create_agent.py"), "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "learned" in done.stdout and "Santiago" in done.stdout
