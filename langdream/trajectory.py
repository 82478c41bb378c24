"""Reading trajectories: the tool calls of an episode, paired with their results."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from langdream.types import Episode

# A tool result that says it found nothing or failed. Checked on the start of the result only:
# a long, useful page that mentions "error" somewhere is not an empty result.
_EMPTY_RESULT = re.compile(
    r"\b(could ?n[o']t find|cannot find|can't find|not found|no results?|nothing (was )?found|no matches?|"
    r"does not exist|no such|error|exception|failed|invalid|unknown)\b",
    re.IGNORECASE,
)
_EMPTY_WINDOW = 160


@dataclass(frozen=True)
class ToolStep:
    name: str
    args: dict[str, Any]
    result: str | None
    thought: str

    @property
    def arg_text(self) -> str:
        values = list(self.args.values())
        if len(values) == 1 and isinstance(values[0], str):
            return values[0]
        return json.dumps(self.args, ensure_ascii=False, sort_keys=True, default=str)

    @property
    def empty(self) -> bool:
        return self.result is not None and bool(_EMPTY_RESULT.search(self.result[:_EMPTY_WINDOW]))


def tool_steps(episode: Episode) -> list[ToolStep]:
    """Every tool call of the episode in order, with the result the tool returned (if any)."""
    results = {m.tool_call_id: m.content for m in episode.messages if m.role == "tool" and m.tool_call_id}
    steps = []
    for message in episode.messages:
        if message.role != "assistant":
            continue
        for call in message.tool_calls:
            steps.append(ToolStep(call.name, call.args, results.get(call.id) if call.id else None, message.content))
    return steps


def final_answer(episode: Episode) -> str | None:
    if episode.final_answer:
        return episode.final_answer
    for message in reversed(episode.messages):
        if message.role == "assistant" and not message.tool_calls and message.content.strip():
            return message.content
    return None
