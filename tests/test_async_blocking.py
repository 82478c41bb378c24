"""Async entry points never block the event loop.

blockbuster patches the blocking primitives (file and socket I/O, sqlite3, ``time.sleep``,
blocking lock waits) to raise when they are called from a thread that runs an event loop; on top
of those, the sync model and embedding entry points (``BaseChatModel.invoke``, ``Embedder.embed``)
and psycopg's execute count as blocking too. Only calls made from langdream's own code count, so
what LangGraph itself does in its loop is not judged here (except for model and embedding calls,
which block whoever makes them).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from blockbuster import BlockBuster, BlockBusterFunction, BlockingError
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel

from langdream import DreamingMiddleware, DreamMemory, Embedder, dreaming
from langdream.testing import FakeReflectionModel
from tests.agents import ScriptedAgentModel, answered_correctly, capital_agent, question, search

NS = ("acme", "u1")
COUNTRIES = ["France", "Peru", "Japan", "Kenya", "Italy", "Chile"]


def _model_and_driver_calls() -> dict[str, BlockBusterFunction]:
    calls = {
        # Whoever calls these in the loop blocks it (LangGraph runs sync nodes in worker threads).
        "BaseChatModel.invoke": BlockBusterFunction(BaseChatModel, "invoke"),
        "Embedder.embed": BlockBusterFunction(Embedder, "embed"),
    }
    try:
        import psycopg
    except ImportError:
        return calls
    for owner in (psycopg.Connection, psycopg.Cursor):
        name = f"psycopg.{owner.__name__}.execute"
        calls[name] = BlockBusterFunction(owner, "execute", scanned_modules=["langdream"])
    return calls


@pytest.fixture
def blockbuster():
    buster = BlockBuster(scanned_modules=["langdream"])
    buster.functions.update(_model_and_driver_calls())
    buster.activate()
    try:
        yield buster
    finally:
        buster.deactivate()


@pytest.fixture(params=["data-home", "servers"])
def backends(request) -> dict[str, str]:
    """The default data home, or PostgreSQL + a chroma server (real ones, started by the tests)."""
    if request.param == "data-home":
        return {}
    return {"ledger_url": request.getfixturevalue("postgres_url"), "chroma_url": request.getfixturevalue("chroma_url")}


@pytest.fixture
def warm_memory(make_memory, backends) -> DreamMemory:
    """A memory whose files, index and model are open already (first use is not what is judged),
    with mixed-outcome runs recorded."""
    memory = make_memory(**backends)
    for persistent, country in zip([True, False] * 3, COUNTRIES):
        graph = dreaming(capital_agent(ScriptedAgentModel(persistent=persistent)).compile(), memory=memory,
                         judge=answered_correctly, namespace=NS)
        graph.invoke({"messages": [("user", question(country))]})
    memory.recall("warm up", NS)
    return memory


async def test_the_guard_catches_a_sync_ledger_call_in_the_loop(warm_memory, blockbuster):
    # Guards the guard: without it, every test below would pass vacuously.
    with pytest.raises(BlockingError):
        warm_memory.ledger.count_episodes()
    with pytest.raises(BlockingError):
        warm_memory.embedder.embed(["a task"])
    with pytest.raises(BlockingError):
        warm_memory.recall("a task", NS)


async def test_memory_async_entry_points_do_not_block(warm_memory, blockbuster):
    memory = warm_memory
    (report,) = await memory.adream(NS)
    assert report.added >= 1
    recall = await memory.arecall(question("Chile"), NS)
    assert recall.insights
    listed = await asyncio.to_thread(memory.ledger.list_episodes, NS, limit=1)
    changed = await memory.afeedback(listed[0].id, success=True)
    assert changed.outcome.success is True
    explanation = await memory.aexplain(report.insight_ids[0])
    assert explanation.insight.id == report.insight_ids[0]
    vectors = await memory.embedder.aembed(["one task", "another"])
    assert vectors.shape[0] == 2
    rolled = await memory.arollback(report.job_id)
    assert rolled.to_dream == report.job_id
    forgotten = await memory.aforget(episode=[listed[0].id])
    assert forgotten.episodes == 1


async def test_an_llm_dream_does_not_block(make_memory, backends, blockbuster):
    with blockbuster_paused(blockbuster):
        memory = make_memory(model=FakeReflectionModel(), **backends)
        for persistent, country in zip([True, False] * 3, COUNTRIES):
            graph = dreaming(capital_agent(ScriptedAgentModel(persistent=persistent)).compile(), memory=memory,
                             judge=answered_correctly, namespace=NS)
            graph.invoke({"messages": [("user", question(country))]})
        memory.recall("warm up", NS)
    (report,) = await memory.adream(NS)
    assert report.llm_calls >= 1


async def test_a_dreaming_graph_runs_async_without_blocking(warm_memory, blockbuster):
    graph = dreaming(capital_agent(ScriptedAgentModel(persistent=True)).compile(), memory=warm_memory,
                     judge=answered_correctly, namespace=NS)
    run_id = uuid.uuid4()
    result = await graph.ainvoke({"messages": [("user", question("Japan"))]}, {"run_id": run_id})
    assert result["messages"][-1].content == "Tokyo"
    chunks = [c async for c in graph.astream({"messages": [("user", question("Peru"))]}, stream_mode="updates")]
    assert chunks
    with blockbuster_paused(blockbuster):
        assert warm_memory.episode(str(run_id)).outcome.success is True


async def test_the_middleware_runs_async_without_blocking(warm_memory, blockbuster):
    await warm_memory.adream(NS)
    agent = create_agent(ScriptedAgentModel(), [search],
                         middleware=[DreamingMiddleware(warm_memory, namespace=NS, judge=answered_correctly)])
    run_id = uuid.uuid4()
    result = await agent.ainvoke({"messages": [("user", question("Chile"))]}, {"run_id": run_id})
    assert result["messages"][-1].content == "Santiago"
    with blockbuster_paused(blockbuster):
        episode = warm_memory.episode(str(run_id))
    assert episode.injected_insight_ids


class blockbuster_paused:
    """Set-up and checks that are sync on purpose, inside an async test."""

    def __init__(self, buster: BlockBuster) -> None:
        self.buster = buster

    def __enter__(self) -> None:
        self.buster.deactivate()

    def __exit__(self, *exc: object) -> None:
        self.buster.activate()
