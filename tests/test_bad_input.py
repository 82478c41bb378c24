"""Bad input: each kind gets its documented behaviour (docs/reliability.md, "Bad input"), the
agent's own run never fails because recording failed (unless on_error="raise"), and nothing
already stored is lost. Real LangGraph graphs, real data homes."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, interrupt

from langdream import DataHomeError, DreamMemory, Episode, GraphShapeError, NamespaceError, RecordingError, dreaming
from langdream.capture import to_jsonable
from langdream.config import DEFAULT_EPISODE_PROMPT_TOKENS
from langdream.guard import sanitize
from langdream.guard.neutralise import neutralise_episode, neutralise_text
from langdream.guard.sanitize import METADATA_KEY, clean_text, sanitize_episode
from langdream.recall import Recaller, freshness
from langdream.reflect import ClusterView
from langdream.reflect.prompts import build_messages
from langdream.testing import FakeReflectionModel, parse_prompt
from langdream.tokens import count_tokens
from langdream.types import Message, Outcome, utcnow
from tests.agents import ScriptedAgentModel, answered_correctly, capital_agent, question, react_graph

NS = ("acme", "{user_id}")
MB = 1_000_000


def config(user: str = "u1", run_id: uuid.UUID | None = None, **extra: Any) -> dict:
    cfg: dict = {"configurable": {"user_id": user, "thread_id": str(uuid.uuid4())}, **extra}
    if run_id is not None:
        cfg["run_id"] = run_id
    return cfg


def fetch_agent(output: Any, answer: str = "done") -> StateGraph:
    """A MessagesState agent that calls its ``fetch`` tool once, then answers ``answer``."""

    @tool
    def fetch(url: str) -> str:
        """Fetch a page."""
        return output

    def agent(state: MessagesState) -> dict:
        if isinstance(state["messages"][-1], ToolMessage):
            return {"messages": [AIMessage(answer)]}
        call = {"name": "fetch", "args": {"url": "https://example.com/big"}, "id": f"call_{uuid.uuid4().hex[:8]}"}
        return {"messages": [AIMessage("", tool_calls=[call])]}

    return react_graph(agent, [fetch])


def echo_graph() -> StateGraph:
    """A MessagesState graph that answers once, without looking at the task."""
    builder = StateGraph(MessagesState)
    builder.add_node("echo", lambda state: {"messages": [AIMessage("nothing to do")]})
    builder.add_edge(START, "echo")
    return builder


class AnyState(TypedDict, total=False):
    question: str
    answer: Any
    blob: Any


def state_graph(update: Any) -> StateGraph:
    """A custom-state graph whose one node returns ``update`` (whatever it holds)."""
    builder = StateGraph(AnyState)
    builder.add_node("solve", lambda state: update)
    builder.add_edge(START, "solve")
    builder.add_edge("solve", END)
    return builder


def big_page(size: int = MB) -> str:
    """A search-result dump of ``size`` characters: prose, numbers and links, like a real tool output."""
    lines, total, i = [], 0, 0
    while total < size:
        line = f"Result {i}: the capital of France is Paris (population 2,102,650 in {1990 + i % 30}). https://example.com/p/{i}\n"
        lines.append(line)
        total += len(line)
        i += 1
    return "".join(lines)[:size]


def learn(memory: DreamMemory, user: str = "u1") -> None:
    """Record runs with mixed outcomes for ``("acme", user)`` and dream over them."""
    for persistent, country in [
        (True, "France"),
        (False, "Peru"),
        (True, "Japan"),
        (False, "Kenya"),
        (True, "Italy"),
        (False, "France"),
    ]:
        model = ScriptedAgentModel(persistent=persistent)
        graph = dreaming(capital_agent(model).compile(), memory=memory, judge=answered_correctly, namespace=NS)
        graph.invoke({"messages": [("user", question(country))]}, config(user))
    (report,) = memory.dream(("acme", user))
    assert report.added >= 1


# --- 1. huge episodes ---------------------------------------------------------------------------


def test_a_1_mb_tool_output_is_stored_whole_and_shown_within_the_token_budget(memory):
    page = big_page()
    graph = dreaming(fetch_agent(page).compile(), memory=memory, namespace=NS, judge=lambda s: True)
    run_id = uuid.uuid4()

    result = graph.invoke({"messages": [("user", "Summarise the page")]}, config(run_id=run_id))

    assert result["messages"][-1].content == "done"
    episode = memory.episode(str(run_id))
    (tool_step,) = [m for m in episode.messages if m.role == "tool"]
    assert len(tool_step.content) == len(page) == MB  # the ledger keeps the full text
    # What a reflector is shown of it is bounded by episode_prompt_tokens.
    budget = memory.settings.episode_prompt_tokens
    messages = build_messages(ClusterView(0, episode.namespace, [episode]), max_episodes=12, episode_tokens=budget)
    (shown,) = parse_prompt(messages).episodes
    assert shown.id == episode.id and count_tokens(shown.text) <= budget

    # Recording it again (a new id) takes well under the seconds an agent run with 1 MB of tool output takes.
    started = time.perf_counter()
    assert memory.record(episode.model_copy(update={"id": "again"}))
    assert time.perf_counter() - started < 5.0


def test_a_dream_over_huge_episodes_shows_each_within_the_budget(make_memory):
    model = FakeReflectionModel()
    memory = make_memory(model=model)
    page = big_page(MB // 4)  # 60,000 tokens each: far past the budget
    for n, ok in enumerate([True, False, True, False]):
        graph = dreaming(
            fetch_agent(page, answer=f"answer {n}").compile(), memory=memory, namespace="big", judge=lambda s, ok=ok: ok
        )
        graph.invoke({"messages": [("user", "Summarise the page about the capital of France")]})

    (report,) = memory.dream("big")

    assert report.episodes == 4 and model.prompts
    shown = [e for p in model.prompts for e in p.episodes]
    assert len(shown) == 4
    assert all(count_tokens(e.text) <= DEFAULT_EPISODE_PROMPT_TOKENS for e in shown)
    assert memory.ledger.count_episodes(("big",), pending=True) == 0


def test_recall_and_a_run_with_a_huge_task_text_work(memory):
    learn(memory)
    task = question("Chile") + " " + big_page(MB // 4)
    recall = memory.recall(task, ("acme", "u1"))  # the embedder truncates; the recall is a normal one
    assert recall.tokens <= memory.settings.recall_token_budget

    graph = dreaming(echo_graph().compile(), memory=memory, namespace=NS, judge=lambda s: True)
    run_id = uuid.uuid4()
    graph.invoke({"messages": [("user", task)]}, config(run_id=run_id))
    episode = memory.episode(str(run_id))
    assert episode.task == task and episode.injected_insight_ids == recall.insight_ids


# --- 2. invalid UTF-8, NUL, bytes ---------------------------------------------------------------


def test_undecodable_bytes_and_nul_become_u_fffd_and_are_counted(memory):
    raw = b"status: ok \xff\xfe row\x00 end"
    output = raw.decode("utf-8", errors="surrogateescape")  # how a subprocess's bytes often arrive
    assert "\udcff" in output
    graph = dreaming(fetch_agent(output).compile(), memory=memory, namespace=NS)
    run_id = uuid.uuid4()

    graph.invoke({"messages": [("user", "Read the status \udcfe file")]}, config(run_id=run_id))

    episode = memory.episode(str(run_id))
    (tool_step,) = [m for m in episode.messages if m.role == "tool"]
    assert tool_step.content == "status: ok \ufffd\ufffd row\ufffd end"
    assert episode.task == "Read the status \ufffd file"
    assert episode.metadata[METADATA_KEY]["invalid_text"] == {"lone_surrogate": 4, "nul": 1}


def test_every_field_of_a_recorded_or_ingested_episode_is_made_storable(memory, tmp_path):
    episode = Episode(
        id="bad-\udc80",
        namespace=("n",),
        task="t\udc80",
        thread_id="th\x00",
        messages=[
            Message(role="user", content="t\udc80"),
            Message(
                role="assistant", content="", tool_calls=[{"name": "f", "args": {"k\udc81": ["v\udc82", b"\xff"]}}]
            ),
        ],
        final_answer="a\ud83d\ude00",  # a surrogate pair is one character: joined, not replaced
        outcome=Outcome(success=True, feedback="f\udc83"),
        metadata={"blob": b"\x89PNG\x00\x01", "when": datetime(2024, 1, 2, tzinfo=timezone.utc), "n": float("nan")},
    )
    assert memory.record(episode)
    stored = memory.episode("bad-\ufffd")
    assert stored.thread_id == "th\ufffd" and stored.final_answer == "a\U0001f600"
    assert stored.messages[1].tool_calls[0].args == {"k\ufffd": ["v\ufffd", "<binary: 1 bytes>"]}
    assert stored.metadata["blob"] == "<binary: 6 bytes>" and stored.metadata["when"] == "2024-01-02T00:00:00+00:00"
    assert stored.metadata["n"] == "nan" and stored.outcome.feedback == "f\ufffd"
    assert stored.metadata[METADATA_KEY]["invalid_text"] == {"lone_surrogate": 6, "nul": 1}

    # A JSONL line holding an escaped lone surrogate is reported (with its line number); the others are imported.
    lines = [{"id": "ok", "namespace": ["n"], "task": "q \x00"}, {"id": "bad", "namespace": ["n"], "task": "q\udcff"}]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    report = memory.ingest(path)
    assert report.added == 1 and [e.line for e in report.errors] == [2] and "unicode" in report.errors[0].reason
    assert memory.episode("ok").task == "q \ufffd"


def test_bytes_in_graph_state_become_text_or_a_placeholder(memory):
    update = {"answer": b"Paris", "blob": b"\x89PNG\r\n\x1a\n" + bytes(1000)}
    graph = dreaming(state_graph(update).compile(), memory=memory, namespace="bytes", recall="off")
    run_id = uuid.uuid4()

    result = graph.invoke({"question": "Draw the capital"}, {"run_id": run_id})

    assert result["blob"] == update["blob"]  # the user's state is untouched
    episode = memory.episode(str(run_id))
    assert json.loads(episode.messages[-1].content) == {"answer": "Paris", "blob": "<binary: 1008 bytes>"}
    assert episode.final_answer == "Paris"


# --- 3. state JSON cannot hold ------------------------------------------------------------------


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_unserialisable_state_is_recorded_with_placeholders(memory):
    cyclic: list = [1]
    cyclic.append(cyclic)
    nested: list = []
    inner = nested
    for _ in range(500):
        inner.append([])
        inner = inner[0]
    with socket.socket() as sock:
        update = {
            "answer": Unprintable(),
            "blob": {"socket": sock, "lock": threading.Lock(), "cyclic": cyclic, "nested": nested, (1, 2): "tuple key"},
        }
        graph = dreaming(state_graph(update).compile(), memory=memory, namespace="odd", recall="off")
        run_id = uuid.uuid4()
        result = graph.invoke({"question": "Do odd things"}, {"run_id": run_id})

    assert result["blob"]["cyclic"] is cyclic
    step = json.loads(memory.episode(str(run_id)).messages[-1].content)
    assert step["answer"] == "<unrepresentable Unprintable>"
    blob = step["blob"]
    assert blob["socket"].startswith("<socket.socket") and "lock object" in blob["lock"]
    assert blob["cyclic"] == [1, "<cycle>"] and blob["(1, 2)"] == "tuple key"
    depth, value = 0, blob["nested"]
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert value == "<nested too deep>" and depth < 100
    assert memory.episode(str(run_id)).final_answer == "<unrepresentable Unprintable>"


def test_to_jsonable_keeps_shared_values_and_caps_long_reprs_and_huge_structures(monkeypatch):
    class Long:
        def __repr__(self) -> str:
            return "x" * 10_000

    shared = {"a": 1}
    assert to_jsonable({"p": shared, "q": shared}) == {"p": {"a": 1}, "q": {"a": 1}}  # shared is no cycle
    assert len(to_jsonable(Long())) <= 2001
    assert to_jsonable({None: 1, True: 2, 3: float("inf")}) == {"null": 1, "true": 2, "3": "inf"}
    # Sharing at every level: 2**40 paths. The walk stops after MAX_VALUES values.
    monkeypatch.setattr(sanitize, "MAX_VALUES", 1000)
    dag: Any = "leaf"
    for _ in range(40):
        dag = [dag, dag]
    assert "<too many values>" in json.dumps(to_jsonable(dag))


# --- 4. empty runs ------------------------------------------------------------------------------


@pytest.mark.parametrize("messages", [[], [("user", "   ")]], ids=["no-messages", "blank-task"])
def test_an_empty_run_is_skipped_with_a_warning(memory, caplog, messages):
    graph = dreaming(echo_graph().compile(), memory=memory, namespace="empty")
    with caplog.at_level(logging.WARNING, logger="langdream"):
        result = graph.invoke({"messages": messages})
    assert result["messages"][-1].content == "nothing to do"
    assert memory.ledger.count_episodes() == 0
    assert "no task text to record" in caplog.text

    strict = dreaming(echo_graph().compile(), memory=memory, namespace="empty", on_error="raise")
    with pytest.raises(GraphShapeError, match="no task text"):
        strict.invoke({"messages": messages})
    assert memory.ledger.count_episodes() == 0


def test_an_empty_input_of_a_state_graph_is_skipped_or_refused(memory, caplog):
    graph = dreaming(state_graph({"answer": "x"}).compile(), memory=memory, namespace="empty", recall="off")
    with caplog.at_level(logging.WARNING, logger="langdream"):
        assert graph.invoke({})["answer"] == "x"
        assert graph.invoke({"question": ""})["answer"] == "x"
    assert "input is empty" in caplog.text and "no task text" in caplog.text
    assert memory.ledger.count_episodes() == 0

    strict = dreaming(
        state_graph({"answer": "x"}).compile(), memory=memory, namespace="empty", recall="off", on_error="raise"
    )
    with pytest.raises(GraphShapeError, match="input is empty"):
        strict.invoke({})


# --- 5. runs that raise -------------------------------------------------------------------------


class AgentBug(Exception):
    pass


def raising_agent(error: Exception) -> StateGraph:
    """Calls its tool once, then raises ``error`` from the model node."""

    @tool
    def search(query: str) -> str:
        """Search."""
        return f"nothing about {query}"

    def agent(state: MessagesState) -> dict:
        if isinstance(state["messages"][-1], ToolMessage):
            raise error
        return {"messages": [AIMessage("", tool_calls=[{"name": "search", "args": {"query": "q"}, "id": "c1"}])]}

    return react_graph(agent, [search])


@pytest.mark.parametrize("on_error", ["warn", "raise"])
def test_a_run_that_raises_gets_its_own_exception_and_is_recorded_as_far_as_it_went(memory, on_error):
    error = AgentBug("the model node broke")
    graph = dreaming(
        raising_agent(error).compile(), memory=memory, namespace=NS, on_error=on_error, judge=lambda s: True
    )
    run_id = uuid.uuid4()

    with pytest.raises(AgentBug) as caught:
        graph.invoke({"messages": [("user", "Find q")]}, config(run_id=run_id))

    assert caught.value is error  # the same object, not a wrapper
    episode = memory.episode(str(run_id))  # found by its run id
    assert episode.id == f"{run_id}:raised" and episode.run_id == str(run_id)
    assert episode.outcome.success is None  # a bug in a node says nothing about the task
    assert episode.metadata["error"] == "AgentBug: the model node broke"
    assert [(m.role, m.content) for m in episode.messages] == [
        ("user", "Find q"),
        ("assistant", ""),
        ("tool", "nothing about q"),
    ]
    assert episode.final_answer is None and memory.ledger.count_episodes() == 1


def test_a_run_out_of_steps_is_recorded_as_a_failure(memory):
    graph = dreaming(capital_agent(ScriptedAgentModel(persistent=True)).compile(), memory=memory, namespace=NS)
    run_id = uuid.uuid4()
    with pytest.raises(GraphRecursionError):
        graph.invoke({"messages": [("user", question("Peru"))]}, config(run_id=run_id, recursion_limit=3))
    episode = memory.episode(str(run_id))
    assert episode.outcome.success is False and episode.outcome.score == 0.0
    assert "ran out of steps" in episode.outcome.feedback and "GraphRecursionError" in episode.metadata["error"]

    # A retry under the same run id that finishes is recorded next to it.
    graph.invoke({"messages": [("user", question("Peru"))]}, config(run_id=run_id))
    assert memory.episode(str(run_id)).id == str(run_id) and memory.ledger.count_episodes() == 2


async def test_an_async_run_that_raises_gets_its_own_exception_even_when_recording_fails(memory, caplog):
    error = AgentBug("async break")
    # Recall off: with on_error="raise" a recall from the closed ledger would stop the run first.
    graph = dreaming(raising_agent(error).compile(), memory=memory, namespace=NS, on_error="raise", recall="off")
    run_id = uuid.uuid4()
    with pytest.raises(AgentBug):
        async for _ in graph.astream({"messages": [("user", "Find q")]}, config(run_id=run_id)):
            pass
    assert memory.episode(str(run_id)).metadata["error"] == "AgentBug: async break"

    memory.ledger.close()
    with caplog.at_level(logging.WARNING, logger="langdream"), pytest.raises(AgentBug) as caught:
        await graph.ainvoke({"messages": [("user", "Find q")]}, config())
    assert caught.value is error
    assert "could not record the run that raised" in caplog.text


def test_an_interrupt_passing_through_a_dreaming_subgraph_is_no_failure(memory):
    def ask(state: MessagesState) -> dict:
        return {"messages": [("ai", f"approved: {interrupt('approve?')}")]}

    sub = StateGraph(MessagesState)
    sub.add_node("ask", ask)
    sub.add_edge(START, "ask")
    parent = StateGraph(MessagesState)
    parent.add_node("sub", dreaming(sub.compile(), memory=memory, namespace="sub", judge=lambda s: True))
    parent.add_edge(START, "sub")
    graph = parent.compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}

    assert "__interrupt__" in graph.invoke({"messages": [("user", "ship it?")]}, cfg)
    assert memory.ledger.count_episodes() == 0
    assert graph.invoke(Command(resume="yes"), cfg)["messages"][-1].content == "approved: yes"
    (episode,) = memory.episodes("sub")
    assert episode.task == "ship it?" and episode.outcome.success is True and "error" not in episode.metadata


def test_recall_failing_under_on_error_raise_stops_the_run_before_it_starts(memory):
    model = ScriptedAgentModel()
    graph = dreaming(capital_agent(model).compile(), memory=memory, namespace=NS, on_error="raise")
    memory.ledger.close()
    with pytest.raises(DataHomeError):
        graph.invoke({"messages": [("user", question("Peru"))]}, config())
    assert model.calls == []


# --- 6. judges ----------------------------------------------------------------------------------


def broken_judge(state: Any) -> bool:
    raise ValueError("judge bug")


@pytest.mark.parametrize(
    ("judge", "error"),
    [
        (broken_judge, "ValueError: judge bug"),
        (lambda s: "yes", "unusable verdict"),
        (lambda s: float("nan"), "finite"),
    ],
    ids=["raises", "returns-a-string", "returns-nan"],
)
def test_a_judge_that_fails_leaves_the_outcome_unknown_or_raises_when_asked(memory, caplog, judge, error):
    graph = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS, judge=judge)
    run_id = uuid.uuid4()
    with caplog.at_level(logging.WARNING, logger="langdream"):
        result = graph.invoke({"messages": [("user", question("Peru"))]}, config(run_id=run_id))
    assert result["messages"][-1].content == "I could not find it."
    episode = memory.episode(str(run_id))
    assert episode.outcome == Outcome() and error in episode.metadata["judge_error"]
    assert "recorded with an unknown outcome" in caplog.text

    strict = dreaming(
        capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS, judge=judge, on_error="raise"
    )
    with pytest.raises(RecordingError) as caught:
        strict.invoke({"messages": [("user", question("Peru"))]}, config())
    assert caught.value.hint and memory.ledger.count_episodes() == 1


def test_an_answer_function_that_raises_costs_the_answer_only(memory, caplog):
    def answer(state: Any) -> str:
        raise KeyError("answer")

    graph = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS, answer=answer)
    run_id = uuid.uuid4()
    with caplog.at_level(logging.WARNING, logger="langdream"):
        graph.invoke({"messages": [("user", question("Peru"))]}, config(run_id=run_id))
    episode = memory.episode(str(run_id))
    assert episode.final_answer is None and episode.metadata["answer_error"] == "KeyError: 'answer'"
    assert "could not tell the run's answer" in caplog.text

    strict = dreaming(
        capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS, answer=answer, on_error="raise"
    )
    with pytest.raises(RecordingError, match="KeyError"):
        strict.invoke({"messages": [("user", question("Peru"))]}, config())
    assert memory.ledger.count_episodes() == 1


# --- 7. duplicate ids ---------------------------------------------------------------------------


def test_recording_an_id_twice_keeps_the_first(memory, caplog):
    first = Episode(
        id="dup", namespace=("n",), task="first task", messages=[Message(role="user", content="first task")]
    )
    second = first.model_copy(update={"task": "second task", "outcome": Outcome(success=True)})
    assert memory.record(first) is True
    assert memory.record(second) is False
    stored = memory.episode("dup")
    assert stored.task == "first task" and stored.outcome.success is None and stored.revision == 0

    run_id = uuid.uuid4()
    graph = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS)
    graph.invoke({"messages": [("user", question("Peru"))]}, config(run_id=run_id))
    with caplog.at_level(logging.WARNING, logger="langdream"):
        graph.invoke({"messages": [("user", question("Chile"))]}, config(run_id=run_id))
    assert memory.episode(str(run_id)).task == question("Peru")
    assert "already stored" in caplog.text and memory.ledger.count_episodes() == 2


# --- 8. clock skew ------------------------------------------------------------------------------


def test_skewed_clocks_keep_recording_order_and_freshness_at_most_one(memory):
    learn(memory)
    now = utcnow()
    ns = ("acme", "u1")
    times = [
        now + timedelta(days=36500),
        datetime(1900, 1, 1, tzinfo=timezone.utc),
        datetime(2001, 1, 1),
        datetime.max,
        datetime.min,
    ]
    pending_before = [e.id for e in memory.ledger.pending_episodes(ns, 100)]
    for n, created in enumerate(times):
        episode = Episode(
            id=f"skew{n}",
            namespace=ns,
            task=question("Chile"),
            created_at=created,
            messages=[Message(role="user", content=question("Chile"))],
            outcome=Outcome(success=n % 2 == 0),
        )
        assert memory.record(episode)

    pending = [e.id for e in memory.ledger.pending_episodes(ns, 100)]
    assert pending == pending_before + [f"skew{n}" for n in range(len(times))]  # recording order, not the clocks'
    assert memory.episode("skew2").created_at == datetime(2001, 1, 1, tzinfo=timezone.utc)  # naive is UTC
    assert memory.episode("skew3").created_at.year == 9999 and memory.episode("skew4").created_at.year == 1  # clamped
    (report,) = memory.dream(ns)
    assert report.episodes == len(pending) and memory.ledger.count_episodes(ns, pending=True) == 0

    # Insights written "in the future" (the clock went back since): freshness stays at 1.
    assert freshness(now + timedelta(days=400), now, memory.settings.freshness_half_life_days) == 1.0
    recaller = Recaller(memory.ledger, memory.index, memory.embedder, memory.settings)
    recall = recaller.recall(question("Chile"), ns, now=now - timedelta(days=3650))
    assert recall.insights
    for hit in recall.insights:
        assert hit.score <= round(hit.similarity * hit.insight.confidence, 4) + 1e-4


# --- 9. recording that fails never fails the run (unless asked) ---------------------------------


async def test_a_closed_ledger_does_not_fail_sync_or_async_runs(make_memory, caplog):
    memory = make_memory()
    graph = dreaming(capital_agent(ScriptedAgentModel(persistent=True)).compile(), memory=memory, namespace=NS)
    graph.invoke({"messages": [("user", question("Japan"))]}, config())
    memory.ledger.close()

    with caplog.at_level(logging.WARNING, logger="langdream"):
        assert graph.invoke({"messages": [("user", question("Peru"))]}, config())["messages"][-1].content == "Lima"
        result = await graph.ainvoke({"messages": [("user", question("Chile"))]}, config())
    assert result["messages"][-1].content == "Santiago"
    assert caplog.text.count("could not record the run (the run itself is unaffected)") == 2
    assert "could not recall insights" in caplog.text

    strict = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS, on_error="raise")
    with pytest.raises(DataHomeError):
        strict.invoke({"messages": [("user", question("Peru"))]}, config())
    with pytest.raises(DataHomeError):
        await strict.ainvoke({"messages": [("user", question("Peru"))]}, config())

    reopened = make_memory(memory.home)  # nothing already stored was lost
    assert [e.task for e in reopened.episodes()] == [question("Japan")]


@pytest.mark.parametrize("on_error", ["warn", "raise"])
async def test_a_locked_data_home_fails_the_run_only_when_asked(make_memory, caplog, on_error):
    memory = make_memory(busy_timeout_seconds=0.2)
    graph = dreaming(
        capital_agent(ScriptedAgentModel(persistent=True)).compile(), memory=memory, namespace=NS, on_error=on_error
    )
    graph.invoke({"messages": [("user", question("Japan"))]}, config())
    blocker = sqlite3.connect(memory.ledger.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    peru, chile = {"messages": [("user", question("Peru"))]}, {"messages": [("user", question("Chile"))]}
    try:
        if on_error == "warn":
            with caplog.at_level(logging.WARNING, logger="langdream"):
                assert graph.invoke(peru, config())["messages"][-1].content == "Lima"
                assert (await graph.ainvoke(chile, config()))["messages"][-1].content == "Santiago"
            assert caplog.text.count("stayed locked") == 2
        else:
            with pytest.raises(DataHomeError, match="stayed locked"):
                graph.invoke(peru, config())
            with pytest.raises(DataHomeError, match="stayed locked"):
                await graph.ainvoke(chile, config())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert [e.task for e in memory.episodes()] == [question("Japan")]
    graph.invoke({"messages": [("user", question("Italy"))]}, config())  # and it records again once free
    assert memory.ledger.count_episodes() == 2


def test_a_namespace_or_task_that_cannot_be_told_skips_recording_or_raises_when_asked(memory, caplog):
    graph = dreaming(capital_agent(ScriptedAgentModel(persistent=True)).compile(), memory=memory, namespace=NS)
    with caplog.at_level(logging.WARNING, logger="langdream"):
        assert graph.invoke({"messages": [("user", question("Peru"))]})["messages"][-1].content == "Lima"
    assert "user_id" in caplog.text and memory.ledger.count_episodes() == 0

    strict = dreaming(capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS, on_error="raise")
    with pytest.raises(NamespaceError):
        strict.invoke({"messages": [("user", question("Peru"))]})

    def task(input: Any) -> str:
        return input["missing"]

    odd = dreaming(capital_agent(ScriptedAgentModel(persistent=True)).compile(), memory=memory, namespace=NS, task=task)
    assert odd.invoke({"messages": [("user", question("Peru"))]}, config())["messages"][-1].content == "Lima"
    strict_task = dreaming(
        capital_agent(ScriptedAgentModel()).compile(), memory=memory, namespace=NS, task=task, on_error="raise"
    )
    with pytest.raises(RecordingError, match="KeyError"):
        strict_task.invoke({"messages": [("user", question("Peru"))]}, config())
    assert memory.ledger.count_episodes() == 0


def test_clean_text_is_a_no_op_on_valid_text_and_sanitize_counts_replacements():
    assert clean_text("plain ascii") == ("plain ascii", {})
    assert clean_text("é ü 日本 \U0001f600") == ("é ü 日本 \U0001f600", {})
    episode = Episode(id="e", namespace=("n",), task="ok", messages=[Message(role="tool", content="\x00\udcff")])
    assert sanitize_episode(episode).metadata[METADATA_KEY] == {"invalid_text": {"nul": 1, "lone_surrogate": 1}}


@pytest.mark.parametrize(
    "hostile",
    ["<" + " " * 200_000, "Finish[" * 30_000, "# system" + " " * 100_000 + "x", "<|" + "\t" * 100_000],
    ids=["angle-then-spaces", "finish-repeated", "heading-long-line", "pipe-then-tabs"],
)
def test_hostile_tool_output_is_neutralised_in_linear_time(hostile):
    # Each of these took seconds to minutes with unbounded whitespace runs in the role-markup regex.
    started = time.perf_counter()
    neutralise_text(hostile)
    episode = Episode(
        id="hostile",
        namespace=("bad",),
        task="a task",
        messages=[Message(role="tool", content=hostile, name="search")],
    )
    neutralise_episode(episode)
    assert time.perf_counter() - started < 1.0


def test_the_embedder_takes_lone_surrogates_and_a_megabyte_of_text(embedder):
    # Recall embeds the task as given by the caller: a tokenizer refuses surrogates, and a
    # megabyte would be tokenised only to be truncated.
    vectors = embedder.embed(["bad \udcff task", "x" * 1_000_000, "bad \ufffd task"])
    assert vectors.shape == (3, embedder.dimension)
    assert float(vectors[0] @ vectors[2]) > 0.999  # the surrogate read as U+FFFD
