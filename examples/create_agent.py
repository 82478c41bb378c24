"""A ``create_agent`` agent that learns while it sleeps: one middleware line.

    python examples/create_agent.py                      # offline, with a scripted stand-in model
    python examples/create_agent.py --model anthropic:claude-sonnet-4-5   # any init_chat_model string

The agent looks capitals up with a search tool that only knows exact page titles. Some of its
early runs give up after a failed search; others search again with the title the tool suggests.
After a dream over those runs, the lesson "search again with the suggested title" is recalled
into the system prompt of a new run, which then succeeds.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import uuid
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from langdream import DreamingMiddleware, DreamMemory

CAPITALS = {"France": "Paris", "Peru": "Lima", "Japan": "Tokyo", "Kenya": "Nairobi", "Italy": "Rome", "Chile": "Santiago"}


@tool
def search(query: str) -> str:
    """Look a page up by its exact title."""
    name = query.removesuffix(" (country)")
    if query.endswith(" (country)") and name in CAPITALS:
        return f"{name} is a country. Its capital is {CAPITALS[name]}."
    return f"Could not find [{query}]. Similar: ['{name} (country)']"


class StandInModel(BaseChatModel):
    """Plays a tool-calling model offline: searches, and retries with the suggested title only when
    it is ``persistent`` or its system prompt tells it to search again."""

    persistent: bool = False

    @property
    def _llm_type(self) -> str:
        return "example-stand-in"

    def bind_tools(self, tools: Any, **kwargs: Any) -> StandInModel:
        return self

    def _generate(self, messages: list, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        told = self.persistent or any(
            isinstance(m, SystemMessage) and re.search(r"search\b.*\b(again|another|titles?)\b", str(m.content), re.S)
            for m in messages
        )
        last = messages[-1]
        reply = AIMessage(content="I could not find it.")
        if isinstance(last, HumanMessage):
            reply = self._search(str(last.content).removeprefix("What is the capital of ").rstrip("?"))
        elif isinstance(last, ToolMessage):
            found = re.search(r"Its capital is (\w+)", str(last.content))
            suggested = re.search(r"Similar: \['([^']+)'\]", str(last.content))
            if found:
                reply = AIMessage(content=found.group(1))
            elif told and suggested:
                reply = self._search(suggested.group(1))
        return ChatResult(generations=[ChatGeneration(message=reply)])

    @staticmethod
    def _search(query: str) -> AIMessage:
        return AIMessage(content="", tool_calls=[{"name": "search", "args": {"query": query}, "id": f"call_{uuid.uuid4().hex[:8]}"}])


def answered_correctly(state: dict) -> bool:
    """The judge: the final message names the capital of the country asked about."""
    asked = next(str(m.content) for m in state["messages"] if isinstance(m, HumanMessage))
    country = asked.removeprefix("What is the capital of ").rstrip("?")
    return CAPITALS.get(country, "?") in str(state["messages"][-1].content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=None, help="data home (default: a temporary directory)")
    parser.add_argument("--model", default=None, help="an init_chat_model string; default: the offline stand-in")
    args = parser.parse_args()

    memory = DreamMemory(args.home or tempfile.mkdtemp(prefix="langdream-example-"))
    dreaming = DreamingMiddleware(memory, namespace=("example", "{user_id}"), judge=answered_correctly)

    def agent(persistent: bool):
        model = args.model or StandInModel(persistent=persistent)
        return create_agent(model, [search], system_prompt="You answer geography questions.", middleware=[dreaming])

    config = {"configurable": {"user_id": "u1"}}
    for persistent, country in [(True, "France"), (False, "Peru"), (True, "Japan"), (False, "Kenya"), (True, "Italy"), (False, "France")]:
        answer = agent(persistent).invoke({"messages": [("user", f"What is the capital of {country}?")]}, config)
        print(f"{country}: {answer['messages'][-1].content}")

    for report in memory.dream(("example", "u1")):
        print(f"dreamed over {report.episodes} runs, learned {report.added} insights")
    for insight in memory.insights(("example", "u1")):
        print(f"  - {insight.text}")

    answer = agent(False).invoke({"messages": [("user", "What is the capital of Chile?")]}, config)
    print(f"Chile, after dreaming: {answer['messages'][-1].content}")
    memory.close()


if __name__ == "__main__":
    main()
