"""Neutralising stored text: role markup an attacker planted in a run cannot pose as instructions later.

A tool output (a web page, an email, a search snippet) may carry markup that poses as a turn of
the conversation (``<system>``, ``<|im_start|>``, ``[INST]``, a line ``SYSTEM: ...``), a phrase
that overrides instructions ("ignore all previous instructions"), or a forged step of the agent's
own loop (``Observation: ...``, ``Finish[...]``). Episodes are shown to a reflector model later,
so ``neutralise_episode`` replaces such markup with a visible marker (``[neutralised: role
markup]``): the data stays readable, the framing is gone. ``screen.py`` screens the lessons.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

# The windowed matching that keeps redaction fast is shared with it.
from langdream.guard.redact import _needle_spans, _windows, substitute
from langdream.types import Episode

# --- neutralising stored text -----------------------------------------------------------------

ROLE_MARKER = "[neutralised: role markup]"
OVERRIDE_MARKER = "[neutralised: instruction override]"
FAKE_TOOL_MARKER = "[neutralised: fake tool result]"
_MARKERS = {"role_markup": ROLE_MARKER, "override": OVERRIDE_MARKER, "fake_tool_result": FAKE_TOOL_MARKER}

_ROLES = (
    r"system|assistant|user|human|developer|admin|sudo|tool|tool_results?|tool_calls?|tool_use|function_results?|"
    r"function_calls?|functions|instructions?|im_start|im_end|im_sep|sys|inst|prompt"
)
# Each pattern starts with a literal character or runs only near its needles (in the lower-cased
# text): a regex scan over a whole 10 kB tool output costs ~0.1 ms, a substring search microseconds.
# Whitespace runs are bounded: "<" followed by a long run of spaces made unbounded ones backtrack
# quadratically (seconds per kilobyte of hostile tool output).
ROLE_TAG = re.compile(
    rf"<(?:\s{{0,20}}/?\s{{0,20}}(?:{_ROLES})(?:[_-]\w+)?\b[^<>\n]{{0,100}}>"
    rf"|\|\s{{0,20}}/?\s{{0,20}}[A-Za-z_]{{1,30}}\s{{0,20}}\|>|</?SYS>>)",
    re.IGNORECASE,
)  # <system>, </tool_result>, <user name="x">, <|im_start|>, <|system|>, <<SYS>>
INST_TAG = re.compile(r"\[/?INST\]", re.IGNORECASE)
ROLE_HEADING = re.compile(
    r"#{1,6}[ \t]*(?:system|instructions?|response|human|assistant|user|developer)[ \t]*(?::|$)",
    re.IGNORECASE | re.MULTILINE,
)
# Role labels at the start of a line, in title or upper case ("System:", "SYSTEM:", not "system:").
_ROLE_LABEL = re.compile(r"(?:System|SYSTEM|Assistant|ASSISTANT|Developer|DEVELOPER)[ \t]*:")
_LABEL_NEEDLES = ("System", "SYSTEM", "Assistant", "ASSISTANT", "Developer", "DEVELOPER")

_OVERRIDE = re.compile(
    r"\bignore\s+(?:(?:all|any|the|of|your|my|these|those)\s+){0,3}(?:previous|prior|above|earlier|preceding|"
    r"foregoing|former|original|initial|system)\s+(?:\w+\s+)?(?:instructions?|rules?|directions?|prompts?|"
    r"directives?|guidelines?|messages?|context)\b"
    r"|\bdisregard\s+(?:(?:your|all|any|the|previous|prior|above|earlier|system|of|these|those)\s+){1,3}"
    r"(?:\w+\s+)?(?:instructions?|rules?|directions?|prompts?|directives?|guidelines?|programming|messages?|"
    r"context|above)\b"
    r"|\bforget\s+(?:all|your|everything|any)\s+(?:(?:of|your|the|previous|prior|earlier|above)\s+){0,3}"
    r"(?:instructions?|rules?|training|directions?|prompts?|guidelines?|you\s+(?:were|have\s+been)\s+told)"
    r"|\byou\s+are\s+now\s+(?:a|an|the|my|no\s+longer|in\s+\w+\s+mode|free|unrestricted|jailbroken|DAN|acting|"
    r"going\s+to|called|named|known\s+as)\b"
    r"|\b(?:new|updated|revised|real|actual)\s+(?:system\s+)?(?:instructions?|rules|system\s+prompt)\s*:"
    r"|\boverride\s+(?:your|the|all|any)\s+(?:(?:previous|prior|system|safety|current)\s+)?"
    r"(?:instructions?|system\s+prompt|prompt|rules?|guidelines?|programming)\b"
    r"|\bfrom\s+now\s+on,?\s+(?:you|always|never|only|respond|reply|answer|ignore|act)\b",
    re.IGNORECASE,
)
_OVERRIDE_NEEDLES = (
    "ignore",
    "disregard",
    "forget",
    "you are now",
    "instructions:",
    "instruction:",
    "rules:",
    "prompt:",
    "override",
    "from now on",
)

# A forged step of the agent's loop inside what a tool returned.
_FAKE_TOOL = re.compile(
    r"(?m:^[ \t]*(?:Observation|Tool[ \t]+(?:result|output|response)|Function[ \t]+(?:result|output|response)|"
    r"Thought)(?:[ \t]+\d+)?[ \t]*:)"
    r"|(?m:^[ \t]*Action(?:[ \t]+\d+)?[ \t]*:[ \t]*\w+\[[^\]\n]*\])"
    r"|\[\s*(?:tool|function)[ _](?:result|output|response)\s*\]"
    # "Finish[<answer>]" is how a ReAct environment names the action; a filled one is forged.
    r"|\bFinish\[(?!<\w+>\])[^\]\n]{0,300}\]",
    re.IGNORECASE,
)
_FAKE_TOOL_NEEDLES = ("observation", "tool", "function", "thought", "action", "finish[")


_Replace = Callable[[re.Match[str]], "str | None"]


def _at_line_start(match: re.Match[str]) -> bool:
    # Walks back over whitespace only: slicing back to the line's start is quadratic on long lines.
    text, i = match.string, match.start()
    while i > 0 and text[i - 1] != "\n" and text[i - 1].isspace():
        i -= 1
    return i == 0 or text[i - 1] == "\n"


def _near_needles(
    text: str, pattern: re.Pattern[str], needles: tuple[str, ...], back: int, ahead: int, replace: _Replace
) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        spans = _needle_spans(lowered, needles, None)
    else:  # a few letters (İ) change length when lower-cased: then search the whole text
        spans = [(0, len(text))] if any(n in lowered for n in needles) else []
    return substitute(text, pattern, _windows(spans, back, ahead, len(text)), replace) if spans else text


def _neutralise(text: str, counts: Counter[str], *, tool_output: bool) -> str:
    if len(text) < 4:
        return text

    def mark(kind: str, check: Callable[[re.Match[str]], bool] | None = None) -> _Replace:
        def replace(match: re.Match[str]) -> str | None:
            if check is not None and not check(match):
                return None
            counts[kind] += 1
            return _MARKERS[kind]

        return replace

    # The cheap single-character tests skip most texts before any pattern runs.
    if "<" in text:
        text = substitute(text, ROLE_TAG, [(0, len(text))], mark("role_markup"))
    if "[" in text:
        text = substitute(text, INST_TAG, [(0, len(text))], mark("role_markup"))
    if "#" in text:
        text = substitute(text, ROLE_HEADING, [(0, len(text))], mark("role_markup", _at_line_start))
    if ":" in text:
        spans = _needle_spans(text, _LABEL_NEEDLES, None)
        if spans:
            windows = _windows(spans, 0, 30, len(text))
            text = substitute(text, _ROLE_LABEL, windows, mark("role_markup", _at_line_start))
    text = _near_needles(text, _OVERRIDE, _OVERRIDE_NEEDLES, 20, 200, mark("override"))
    if tool_output:
        text = _near_needles(text, _FAKE_TOOL, _FAKE_TOOL_NEEDLES, 40, 300, mark("fake_tool_result"))
    return text


def neutralise_text(text: str) -> tuple[str, Counter[str]]:
    """``text`` with role markup and instruction overrides replaced by markers, and counts per kind.

    Use this for text of unknown origin. Forged agent steps (``Observation:``, ``Finish[...]``)
    are only neutralised in tool output, see ``neutralise_episode``.
    """
    counts: Counter[str] = Counter()
    return _neutralise(text, counts, tool_output=False), counts


def _neutralise_value(value: Any, counts: Counter[str], *, tool_output: bool) -> Any:
    if isinstance(value, str):
        return _neutralise(value, counts, tool_output=tool_output)
    if isinstance(value, dict):
        return {k: _neutralise_value(v, counts, tool_output=tool_output) for k, v in value.items()}
    if isinstance(value, list):
        return [_neutralise_value(v, counts, tool_output=tool_output) for v in value]
    if isinstance(value, tuple):
        return tuple(_neutralise_value(v, counts, tool_output=tool_output) for v in value)
    return value


def neutralise_episode(episode: Episode) -> tuple[Episode, Counter[str]]:
    """A copy of ``episode`` with markup neutralised in the same fields ``redact_episode`` covers.

    Role markup and overrides everywhere; forged agent steps only in messages with role "tool"
    and in tool call args (which may carry text a tool returned). Ids and the namespace are left
    alone.
    """
    counts: Counter[str] = Counter()
    messages = []
    for message in episode.messages:
        calls = [
            call.model_copy(update={"args": _neutralise_value(call.args, counts, tool_output=True)})
            for call in message.tool_calls
        ]
        content = _neutralise(message.content, counts, tool_output=message.role == "tool")
        messages.append(message.model_copy(update={"content": content, "tool_calls": calls}))
    outcome = episode.outcome
    if outcome.feedback:
        outcome = outcome.model_copy(update={"feedback": _neutralise(outcome.feedback, counts, tool_output=False)})
    update = {
        "task": _neutralise(episode.task, counts, tool_output=False),
        "messages": messages,
        "final_answer": _neutralise(episode.final_answer or "", counts, tool_output=False) or episode.final_answer,
        "outcome": outcome,
        "metadata": _neutralise_value(episode.metadata, counts, tool_output=False),
    }
    return episode.model_copy(update=update), counts


__all__ = ["FAKE_TOOL_MARKER", "OVERRIDE_MARKER", "ROLE_MARKER", "neutralise_episode", "neutralise_text"]
