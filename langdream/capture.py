"""Turning a LangGraph run into an episode: task, trajectory, answer, outcome. Pure functions.

Nothing here does I/O; ``graph.py`` calls these around a run and hands the episode to the ledger.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)

from langdream.errors import GraphShapeError, RecordingError
from langdream.guard.sanitize import bytes_text, safe_repr
from langdream.guard.sanitize import to_jsonable as _jsonable
from langdream.types import Message, Outcome, ToolCall

logger = logging.getLogger("langdream.capture")

RECALL_MESSAGE_ID = "langdream-recall"
TASK_KEYS = ("task", "question", "query", "input", "prompt")
SUCCESS_SCORE = 0.5
ANSWER_KEYS = ("answer", "final_answer", "output", "response", "result")

Judge = Callable[[Any], "Outcome | bool | float | Mapping[str, Any] | None"]
RecallMode = Literal["messages", "state", "off"]


def text_of(content: Any) -> str:
    """Plain text of a message content: a string, or the text blocks of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping):
                if block.get("type") == "text" or "text" in block:
                    parts.append(_plain_text(block.get("text", "")))
                else:
                    parts.append(f"[{block.get('type', 'content')}]")
        return "\n".join(p for p in parts if p)
    return _plain_text(content)


def _plain_text(value: Any) -> str:
    """Any other content as text: bytes decoded or counted, objects by ``str``, else ``repr``."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes_text(value)
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the run
        return safe_repr(value)


def to_jsonable(value: Any) -> Any:
    """``value`` as JSON-safe data, whatever a graph's state holds; never raises.

    Messages become ``{"type", "content"}``; for everything else see
    ``langdream.guard.sanitize.to_jsonable`` (unrepresentable parts become placeholders).
    """
    return _jsonable(value, _message_json)


def _message_json(value: Any) -> Any:
    if isinstance(value, BaseMessage):
        return {"type": value.type, "content": text_of(value.content)}
    return NotImplemented


def message_record(message: BaseMessage) -> Message:
    """A LangChain message as a trajectory step."""
    if isinstance(message, AIMessage):
        calls = [
            ToolCall(name=c["name"], args=to_jsonable(c.get("args") or {}), id=c.get("id")) for c in message.tool_calls
        ]
        return Message(role="assistant", content=text_of(message.content), tool_calls=calls, name=message.name)
    if isinstance(message, ToolMessage):
        return Message(
            role="tool", content=text_of(message.content), tool_call_id=message.tool_call_id, name=message.name
        )
    if isinstance(message, HumanMessage):
        return Message(role="user", content=text_of(message.content), name=message.name)
    if isinstance(message, SystemMessage):
        return Message(role="system", content=text_of(message.content))
    role = getattr(message, "role", None)
    return Message(
        role=role if role in ("system", "user", "assistant", "tool") else "assistant", content=text_of(message.content)
    )


def normalise_messages(value: Any) -> list[BaseMessage]:
    """The messages of a graph input as message objects, each with an id (so it can be found later)."""
    if isinstance(value, (str, BaseMessage, tuple, Mapping)):
        value = [value]
    # Copies, not the caller's objects, get the new ids.
    return [
        m if m.id is not None else m.model_copy(update={"id": str(uuid.uuid4())}) for m in convert_to_messages(value)
    ]


def last_human(messages: Sequence[BaseMessage]) -> BaseMessage | None:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message
    return None


def recall_message(text: str) -> SystemMessage:
    return SystemMessage(content=text, id=RECALL_MESSAGE_ID)


def remove_recall_message() -> RemoveMessage:
    return RemoveMessage(id=RECALL_MESSAGE_ID)


def task_from_input(spec: str | Callable[[Any], str] | None, input: Any, messages_key: str) -> str:
    """The task text of a run's input, by the user's spec or by convention."""
    if callable(spec):
        return text_of(spec(input))
    if isinstance(input, str):
        return input
    if not isinstance(input, Mapping):
        raise GraphShapeError(
            f"cannot tell the task of a run whose input is a {type(input).__name__}",
            hint="pass task=<function of the input returning the task text> to dreaming()",
        )
    if spec is not None:
        if spec not in input:
            raise GraphShapeError(
                f"the run's input has no key {spec!r} (task={spec!r})",
                hint=f"invoke with {{{spec!r}: ...}} or set task= to the key that holds the task",
            )
        return text_of(input[spec])
    if messages_key in input:
        human = last_human(normalise_messages(input[messages_key]))
        if human is not None:
            return text_of(human.content)
    for key in TASK_KEYS:
        if isinstance(input.get(key), str):
            return input[key]
    strings = [v for v in input.values() if isinstance(v, str)]
    if len(strings) == 1:
        return strings[0]
    if messages_key in input:
        # No human message: a resumed thread's task is read from its final state; with none
        # there either, the run is empty and is skipped when it ends.
        return ""
    if not input:
        raise GraphShapeError(
            "the run's input is empty, so it has no task to record",
            hint="invoke with the task in the input, or pass task=<function of the input> to dreaming()",
        )
    raise GraphShapeError(
        f"cannot tell which input key holds the task among {sorted(map(str, input))}",
        hint="pass task='<key>' (or a function of the input) to dreaming()",
    )


def answer_from_state(spec: str | Callable[[Any], Any] | None, state: Any, trajectory: Sequence[Message]) -> str | None:
    if callable(spec):
        value = spec(state)
        return None if value is None else text_of(value)
    if isinstance(state, Mapping):
        keys = [spec] if spec else list(ANSWER_KEYS)
        for key in keys:
            value = state.get(key)
            # Not `value in (None, "", [], {})`: an array or a model may refuse to compare.
            if value is not None and not (isinstance(value, (str, list, dict)) and not value):
                data = to_jsonable(value)  # bytes, dates, objects become text; containers JSON
                return data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    for message in reversed(trajectory):
        if message.role == "assistant" and not message.tool_calls and message.content.strip():
            return message.content
    return None


def message_trajectory(final_messages: Sequence[Any], task_message_id: str | None) -> list[Message]:
    """This run's messages: from the task message to the end, without langdream's own recall message.

    Without a known task message (a run resumed from a checkpoint), the turn starts at the last
    human message of the thread.
    """
    messages = [m for m in normalise_messages(list(final_messages)) if m.id != RECALL_MESSAGE_ID]
    humans = [p for p, m in enumerate(messages) if isinstance(m, HumanMessage)]
    start = humans[-1] if humans else 0
    if task_message_id is not None:
        start = next((p for p, m in enumerate(messages) if m.id == task_message_id), 0)
    return [message_record(m) for m in messages[start:]]


def partial_messages(input_messages: Sequence[Any], steps: Sequence[tuple[str, Any]], messages_key: str) -> list[Any]:
    """The conversation of a run that raised: its input messages, then the messages its nodes
    returned before the error, in order (there is no final state to read them from)."""
    messages = list(input_messages)
    for _, update in steps:
        if not isinstance(update, Mapping):
            update = getattr(update, "update", None)  # a node may return a Command
        if isinstance(update, Mapping) and messages_key in update:
            messages.extend(m for m in _messages_or_none(update[messages_key]) if not isinstance(m, RemoveMessage))
    return messages


def _messages_or_none(value: Any) -> list[BaseMessage]:
    try:
        return normalise_messages(value)
    except Exception:  # not messages after all: the trajectory goes without them
        return []


def step_trajectory(task: str, steps: Sequence[tuple[str, Any]]) -> list[Message]:
    """A non-message graph's trajectory: the task, then each node's update in order."""
    records = [Message(role="user", content=task)]
    for node, update in steps:
        content = update if isinstance(update, str) else json.dumps(to_jsonable(update), ensure_ascii=False)
        records.append(Message(role="assistant", name=node, content=content))
    return records


def judge_outcome(judge: Judge | None, state: Any, on_error: str) -> tuple[Outcome, str | None]:
    """The judge's verdict as an ``Outcome`` (unknown without a judge), and the judge's error if it
    raised or returned something that is no verdict; with ``on_error="raise"`` that is a ``RecordingError``."""
    if judge is None:
        return Outcome(), None
    try:
        verdict = judge(state)
    except Exception as exc:
        return _judge_failed(f"the judge raised {type(exc).__name__}: {exc}", "fix the judge function", exc, on_error)
    try:
        return as_outcome(verdict), None
    except Exception as exc:  # the wrong type, or a dict that is no Outcome
        message = exc.message if isinstance(exc, RecordingError) else f"{type(exc).__name__}: {exc}"
        return _judge_failed(f"the judge returned an unusable verdict: {message}", _VERDICT_HINT, exc, on_error)


_VERDICT_HINT = "return e.g. True/False, a score in [0, 1], or Outcome(success=..., score=..., feedback=...)"


def _judge_failed(message: str, hint: str, exc: Exception, on_error: str) -> tuple[Outcome, str]:
    if on_error == "raise":
        raise RecordingError(message, hint=hint) from exc
    logger.warning("%s; the run is recorded with an unknown outcome", message)
    return Outcome(), message.removeprefix("the judge raised ")


def as_outcome(verdict: Any) -> Outcome:
    if verdict is None:
        return Outcome()
    if isinstance(verdict, Outcome):
        if verdict.score is not None:
            _finite(verdict.score)
        return verdict
    if isinstance(verdict, bool):
        return Outcome(success=verdict, score=1.0 if verdict else 0.0)
    if isinstance(verdict, (int, float)):
        # A score alone: runs scoring at least half count as successes, so dreams can contrast them.
        return Outcome(success=float(verdict) >= SUCCESS_SCORE, score=_finite(float(verdict)))
    if isinstance(verdict, Mapping):
        return as_outcome(Outcome.model_validate(dict(verdict)))
    raise RecordingError(
        f"a judge must return an Outcome, a bool, a float score, a dict or None, not {type(verdict).__name__}",
        hint=_VERDICT_HINT,
    )


def _finite(score: float) -> float:
    if not math.isfinite(score):
        raise RecordingError(f"a judge's score must be a finite number, not {score}", hint=_VERDICT_HINT)
    return score
