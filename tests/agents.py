"""Real LangGraph graphs for the tests: a MessagesState tool-calling agent and a custom-state graph.

The agent's chat model is scripted (no provider): asked a question it searches for the country;
when the search finds nothing it either gives up (a failure) or, if told to via its system
messages or its ``persistent`` flag, searches again with the title the result suggests (a
success). So recorded runs have mixed outcomes, and a lesson recalled into a later run can
change what that run does.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, TypedDict

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import PrivateAttr

CAPITALS = {"France": "Paris", "Peru": "Lima", "Japan": "Tokyo", "Kenya": "Nairobi", "Chile": "Santiago", "Italy": "Rome"}
_SUGGESTION = re.compile(r"Similar: \['([^']+)'\]")
# Advice, in any recalled system message, to try the search again / with a suggested title.
_RETRY_ADVICE = re.compile(r"search\b.*\b(again|another|titles?)\b|\b(again|another)\b.*\bsearch", re.I | re.S)


@tool
def search(query: str) -> str:
    """Look a page up by its exact title."""
    name = query.removesuffix(" (country)")
    if query.endswith(" (country)") and name in CAPITALS:
        return f"{name} is a country. Its capital is {CAPITALS[name]}."
    return f"Could not find [{query}]. Similar: ['{name} (country)']"


def question(country: str) -> str:
    return f"What is the capital of {country}?"


class ScriptedAgentModel(BaseChatModel):
    """A deterministic tool-calling model; records every message list it was called with."""

    persistent: bool = False
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _ids: Any = PrivateAttr(default_factory=lambda: itertools.count(1))

    @property
    def _llm_type(self) -> str:
        return "scripted-agent"

    @property
    def calls(self) -> list[list[BaseMessage]]:
        return self._calls

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._calls.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        told = self.persistent or any(isinstance(m, SystemMessage) and _RETRY_ADVICE.search(str(m.content)) for m in messages)
        last = messages[-1]
        if isinstance(last, HumanMessage):
            country = str(last.content).removeprefix("What is the capital of ").rstrip("?")
            return self._call(country)
        if isinstance(last, ToolMessage):
            found = re.search(r"Its capital is (\w+)", str(last.content))
            if found:
                return AIMessage(content=found.group(1))
            suggestion = _SUGGESTION.search(str(last.content))
            if told and suggestion:
                return self._call(suggestion.group(1))
            return AIMessage(content="I could not find it.")
        return AIMessage(content="I could not find it.")

    def _call(self, query: str) -> AIMessage:
        return AIMessage(content="", tool_calls=[{"name": "search", "args": {"query": query}, "id": f"call_{next(self._ids)}"}])


def react_graph(agent: Any, tools: list[Any]) -> StateGraph:
    """A MessagesState ReAct loop: the ``agent`` node, a ToolNode over ``tools``, and the edges between."""
    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder


def capital_agent(model: ScriptedAgentModel) -> StateGraph:
    """A MessagesState ReAct agent: model node, tool node, conditional loop."""

    def agent(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    return react_graph(agent, [search])


def answered_correctly(state: dict) -> bool:
    """Judge: the last message names the capital of the country asked about."""
    messages = state["messages"]
    asked = next(str(m.content) for m in messages if isinstance(m, HumanMessage))
    country = asked.removeprefix("What is the capital of ").rstrip("?")
    return CAPITALS.get(country, "?") in str(messages[-1].content)


class QAState(TypedDict, total=False):
    question: str
    answer: str
    langdream_insights: str


def qa_graph(seen: list[str]) -> StateGraph:
    """A custom-state (non-message) graph: one node reads the recalled insights from state."""

    def solve(state: QAState) -> dict:
        seen.append(state.get("langdream_insights", ""))
        return {"answer": state["question"].upper()}

    builder = StateGraph(QAState)
    builder.add_node("solve", solve)
    builder.add_edge(START, "solve")
    builder.add_edge("solve", END)
    return builder
