"""Capture and recall on real LangGraph graphs: the decorator, the builder hook, every run method."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from langchain_core.messages import SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, interrupt

from langdream import DreamMemory, GraphShapeError, RecordingError, add_dreaming, dreaming
from langdream.capture import RECALL_MESSAGE_ID
from tests.agents import ScriptedAgentModel, answered_correctly, capital_agent, qa_graph, question

NS = ("acme", "{user_id}")


def config(user: str = "u1", thread: str | None = None, run_id: uuid.UUID | None = None) -> dict:
    cfg: dict = {"configurable": {"user_id": user, "thread_id": thread or str(uuid.uuid4())}}
    if run_id is not None:
        cfg["run_id"] = run_id
    return cfg


def learn(memory: DreamMemory, user: str = "u1") -> None:
    """Record runs with mixed outcomes for ``("acme", user)`` and dream over them."""
    for persistent, country in [(True, "France"), (False, "Peru"), (True, "Japan"), (False, "Kenya"), (True, "Italy"), (False, "France")]:
        graph = dreaming(capital_agent(ScriptedAgentModel(persistent=persistent)).compile(), memory=memory,
                         judge=answered_correctly, namespace=NS)
        graph.invoke({"messages": [("user", question(country))]}, config(user))
    (report,) = memory.dream(("acme", user))
    assert report.added >= 1


def test_invoke_records_one_episode_with_the_run(memory):
    model = ScriptedAgentModel(persistent=True)
    graph = dreaming(capital_agent(model).compile(), memory=memory, judge=answered_correctly, namespace=NS)
    run_id = uuid.uuid4()

    result = graph.invoke({"messages": [("user", question("France"))]}, config("u7", "thread-1", run_id))

    assert result["messages"][-1].content == "Paris"
    episode = memory.episode(str(run_id))
    assert episode.task == "What is the capital of France?"
    assert episode.namespace == ("acme", "u7")
    assert episode.thread_id == "thread-1" and episode.run_id == str(run_id)
    assert episode.outcome.success is True
    assert episode.final_answer == "Paris"
    roles = [(m.role, [c.name for c in m.tool_calls]) for m in episode.messages]
    assert roles == [("user", []), ("assistant", ["search"]), ("tool", []), ("assistant", ["search"]), ("tool", []), ("assistant", [])]
    assert episode.messages[1].tool_calls[0].args == {"query": "France"}
    assert episode.messages[2].content.startswith("Could not find [France]")
    assert episode.messages[4].tool_call_id == episode.messages[3].tool_calls[0].id
    assert episode.injected_insight_ids == []
    assert memory.ledger.count_episodes() == 1


async def test_every_run_method_records_exactly_once(memory):
    graph = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, judge=answered_correctly, namespace=NS)

    graph.invoke({"messages": [("user", question("Peru"))]}, config())
    chunks = list(graph.stream({"messages": [("user", question("Chile"))]}, config(), stream_mode="updates"))
    await graph.ainvoke({"messages": [("user", question("Japan"))]}, config())
    achunks = [c async for c in graph.astream({"messages": [("user", question("Kenya"))]}, config(), stream_mode="values")]

    assert [next(iter(c)) for c in chunks] == ["agent", "tools", "agent"]  # the user's stream format, untouched
    assert achunks[-1]["messages"][-1].content == "I could not find it."
    tasks = sorted(e.task for e in memory.episodes(("acme", "u1")))
    assert tasks == sorted(question(c) for c in ["Peru", "Chile", "Japan", "Kenya"])
    assert all(e.outcome.success is False for e in memory.episodes(("acme", "u1")))


def test_a_stream_abandoned_midway_is_not_recorded(memory):
    graph = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS)
    stream = graph.stream({"messages": [("user", question("Peru"))]}, config(), stream_mode="updates")
    next(stream)
    stream.close()
    assert memory.ledger.count_episodes() == 0


def test_the_loop_a_lesson_learned_from_runs_changes_the_next_run(memory):
    learn(memory)
    active = memory.insights(("acme", "u1"))
    assert active, "the dream should have activated at least one insight"
    recorded = {e.id for e in memory.episodes(("acme", "u1"))}
    for insight in active:
        assert set(insight.evidence) <= recorded
        assert insight.support == len(insight.evidence) >= 3 and insight.threads >= 2
        assert insight.model_id == "langdream-extractive" and insight.prompt_version == "extractive-v1"

    model = ScriptedAgentModel(persistent=False)  # on its own this model gives up after a miss
    graph = dreaming(capital_agent(model).compile(), memory=memory, judge=answered_correctly, namespace=NS)
    run_id = uuid.uuid4()
    result = graph.invoke({"messages": [("user", question("Chile"))]}, config("u1", run_id=run_id))

    first_input = model.calls[0]
    recalled = [m for m in first_input if isinstance(m, SystemMessage)]
    assert len(recalled) == 1 and recalled[0].id == RECALL_MESSAGE_ID
    assert "[langdream]" in recalled[0].content
    assert result["messages"][-1].content == "Santiago"  # the recalled lesson made it retry
    episode = memory.episode(str(run_id))
    assert episode.outcome.success is True
    assert episode.injected_insight_ids and set(episode.injected_insight_ids) <= {i.id for i in active}
    assert all(m.role != "system" for m in episode.messages)  # the recall message is not part of the trajectory


def test_recalled_lessons_come_after_the_agents_own_instructions_in_a_labelled_block(memory):
    learn(memory)
    model = ScriptedAgentModel(persistent=False)
    graph = dreaming(capital_agent(model).compile(), memory=memory, judge=answered_correctly, namespace=NS)
    instructions = SystemMessage("You are a careful geography agent. Never make up a capital.")
    graph.invoke({"messages": [instructions, ("user", question("Chile"))]}, config("u1"))

    first = model.calls[0]
    assert [m.type for m in first[:3]] == ["system", "system", "human"]
    assert first[0].content == instructions.content and first[1].id == RECALL_MESSAGE_ID
    block = first[1].content.splitlines()
    assert block[0].startswith("[langdream]") and "advisory" in block[0] and "precedence" in block[1]
    assert block[-1] == "[end of langdream lessons]"
    lessons = block[2:-1]
    assert 1 <= len(lessons) <= memory.settings.recall_k and all(line[0].isdigit() for line in lessons)


def test_recall_message_replaces_itself_across_turns_and_leaves_when_nothing_applies(memory):
    learn(memory)
    graph = dreaming(capital_agent(ScriptedAgentModel()).compile(checkpointer=InMemorySaver()), memory=memory,
                     judge=answered_correctly, namespace=NS)
    thread = "long-thread"
    for country in ["Chile", "Peru", "Japan"]:
        state = graph.invoke({"messages": [("user", question(country))]}, config("u1", thread))
        assert [m.id for m in state["messages"]].count(RECALL_MESSAGE_ID) == 1

    # Same thread, a user whose namespace has learned nothing: the stale lessons are removed.
    state = graph.invoke({"messages": [("user", question("Italy"))]}, config("newcomer", thread))
    assert RECALL_MESSAGE_ID not in [m.id for m in state["messages"]]
    assert len(memory.episodes(("acme", "newcomer"))) == 1


def test_namespaces_do_not_cross(memory):
    learn(memory, user="u1")
    for user in ["u10", "u", "u1-x"]:
        model = ScriptedAgentModel()
        graph = dreaming(capital_agent(model).compile(), memory=memory, namespace=NS)
        graph.invoke({"messages": [("user", question("Chile"))]}, config(user))
        assert not any(isinstance(m, SystemMessage) for m in model.calls[0]), user
    assert memory.recall(question("Chile"), ("acme", "u1")).insights
    assert not memory.recall(question("Chile"), ("acme",)).insights
    assert not memory.recall(question("Chile"), ("acme", "u1", "extra")).insights


def test_custom_state_graph_reads_insights_from_a_state_key(memory):
    learn(memory)
    seen: list[str] = []
    graph = dreaming(qa_graph(seen).compile(), memory=memory, namespace=NS, judge=lambda s: bool(s.get("answer")))
    run_id = uuid.uuid4()

    output = graph.invoke({"question": question("Chile")}, config("u1", run_id=run_id))

    assert output["answer"] == question("Chile").upper()
    assert seen and seen[0].startswith("[langdream]")
    episode = memory.episode(str(run_id))
    assert episode.task == question("Chile")
    assert [(m.role, m.name) for m in episode.messages] == [("user", None), ("assistant", "solve")]
    assert episode.final_answer == question("Chile").upper()
    assert episode.injected_insight_ids


def test_builder_keeps_the_users_checkpointer_and_store(memory):
    saver, store = InMemorySaver(), InMemoryStore()
    builder = add_dreaming(capital_agent(ScriptedAgentModel(persistent=True)), memory, namespace=NS, judge=answered_correctly)
    graph = builder.compile(checkpointer=saver, store=store)

    assert graph.checkpointer is saver and graph.store is store
    cfg = config("u1", "t-builder")
    graph.invoke({"messages": [("user", question("Peru"))]}, cfg)
    graph.invoke({"messages": [("user", question("Japan"))]}, cfg)
    assert len(graph.get_state(cfg).values["messages"]) == 12  # two turns of six messages in one thread
    episodes = memory.episodes(("acme", "u1"))
    assert len(episodes) == 2 and {e.thread_id for e in episodes} == {"t-builder"}
    # Each episode holds its own turn only, not the thread's earlier history.
    assert all(len(e.messages) == 6 and e.messages[0].content == e.task for e in episodes)


def test_decorator_on_a_graph_factory_and_with_config(memory):
    @dreaming(memory=memory, namespace="factory")
    def make_graph():
        return capital_agent(ScriptedAgentModel()).compile()

    graph = make_graph().with_config({"tags": ["prod"]})
    graph.invoke({"messages": [("user", question("Peru"))]})
    assert type(graph).__name__ == "DreamingCompiledStateGraph"
    assert [e.task for e in memory.episodes("factory")] == [question("Peru")]


def test_graph_without_messages_or_insight_key_is_refused_with_a_fix():
    from typing import TypedDict

    class Bare(TypedDict):
        q: str

    builder = StateGraph(Bare)
    builder.add_node("n", lambda s: {"q": s["q"]})
    builder.add_edge(START, "n")
    builder.add_edge("n", END)
    with pytest.raises(GraphShapeError) as caught:
        dreaming(builder.compile(), memory=None)  # type: ignore[arg-type]
    assert "langdream_insights" in caught.value.hint


def test_recording_without_recall_on_a_bare_graph(memory):
    from typing import TypedDict

    class Bare(TypedDict):
        q: str

    builder = StateGraph(Bare)
    builder.add_node("n", lambda s: {"q": s["q"] + "!"})
    builder.add_edge(START, "n")
    graph = dreaming(builder.compile(), memory=memory, recall="off", namespace="bare")
    graph.invoke({"q": "hello"})
    (episode,) = memory.episodes("bare")
    assert episode.task == "hello" and episode.messages[-1].name == "n"


def test_a_judge_that_raises_does_not_fail_the_run(memory, caplog):
    def judge(state):
        raise ValueError("judge bug")

    graph = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, judge=judge, namespace=NS)
    with caplog.at_level(logging.WARNING, logger="langdream"):
        result = graph.invoke({"messages": [("user", question("Peru"))]}, config())
    assert result["messages"][-1].content == "I could not find it."
    (episode,) = memory.episodes(("acme", "u1"))
    assert episode.outcome.success is None and "judge bug" in episode.metadata["judge_error"]
    assert "judge raised ValueError" in caplog.text

    strict = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, judge=judge, namespace=NS, on_error="raise")
    with pytest.raises(RecordingError):
        strict.invoke({"messages": [("user", question("Peru"))]}, config())


def test_a_failing_ledger_write_does_not_fail_the_run_unless_asked(memory, monkeypatch, caplog):
    def broken(episode):
        raise OSError("disk full")

    monkeypatch.setattr(memory, "record", broken)
    graph = dreaming(capital_agent(ScriptedAgentModel(persistent=True)).compile(), memory=memory, namespace=NS)
    with caplog.at_level(logging.WARNING, logger="langdream"):
        assert graph.invoke({"messages": [("user", question("Peru"))]}, config())["messages"][-1].content == "Lima"
    assert "could not record the run" in caplog.text

    strict = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS, on_error="raise")
    with pytest.raises(RecordingError, match="disk full"):
        strict.invoke({"messages": [("user", question("Peru"))]}, config())


def test_an_interrupted_run_is_recorded_when_it_completes(memory):
    def ask(state: MessagesState) -> dict:
        approved = interrupt("approve?")
        return {"messages": [("ai", f"approved: {approved}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    graph = dreaming(builder.compile(checkpointer=InMemorySaver()), memory=memory, namespace="hitl",
                     judge=lambda s: True)
    cfg = {"configurable": {"thread_id": "t"}}

    graph.invoke({"messages": [("user", "ship it?")]}, cfg)
    assert memory.ledger.count_episodes() == 0
    graph.invoke(Command(resume="yes"), cfg)
    graph.invoke({"messages": [("user", "and the docs?")]}, cfg)
    assert memory.ledger.count_episodes() == 1  # the second turn is interrupted again
    graph.invoke(Command(resume="later"), cfg)

    first, second = sorted(memory.episodes("hitl"), key=lambda e: e.created_at)
    assert first.task == "ship it?" and first.final_answer == "approved: yes"
    # A resumed turn is recorded from its own human message, not from the start of the thread.
    assert second.task == "and the docs?" and [m.content for m in second.messages] == ["and the docs?", "approved: later"]


def test_feedback_attaches_an_outcome_later_and_requeues_the_episode(memory):
    graph = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS)
    run_id = uuid.uuid4()
    graph.invoke({"messages": [("user", question("Peru"))]}, config(run_id=run_id))
    assert memory.episode(str(run_id)).outcome.success is None

    episode = graph.feedback(run_id, success=False, feedback="wrong capital")
    assert episode.outcome.success is False and episode.outcome.feedback == "wrong capital"
    assert episode.outcome.score == 0.0  # a verdict without a score sets the score too
    assert episode.revision == 1 and episode.consolidated_by is None
    assert asyncio.run(graph.afeedback(run_id, score=0.2)).outcome.score == 0.2


def test_insights_shown_to_a_run_do_not_count_as_its_support(memory):
    learn(memory)
    shown = {i.id for i in memory.insights(("acme", "u1"))}
    graph = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, judge=answered_correctly, namespace=NS)
    for country in ["Chile", "Peru", "Japan", "Kenya"]:
        graph.invoke({"messages": [("user", question(country))]}, config())
    shaped = {e.id for e in memory.episodes(("acme", "u1"), pending=True)}
    assert shaped and all(set(e.injected_insight_ids) & shown for e in memory.ledger.get_episodes(list(shaped)))

    memory.dream(("acme", "u1"))
    for insight in memory.insights(("acme", "u1"), status="all"):
        if insight.id in shown:
            assert not set(insight.evidence) & shaped, insight.id
