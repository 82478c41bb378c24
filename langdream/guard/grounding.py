"""Grounding: a claim's specifics must appear in its evidence, and it must not copy tool output.

A reflector cites evidence episodes for every claim; the citation is checked, not trusted. A
general lesson ("retry with a shorter query") needs nothing more. A claim that names specifics
(a product, a URL, a number, a code token, a quoted phrase) must find each of them in enough of
its evidence episodes: a name that one poisoned run mentioned, cited together with four
unrelated runs, does not pass. And a claim that repeats a run of words from what a tool
returned is a document speaking, not a lesson the runs show.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

from langdream.types import Episode

# --- episode text -----------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif value is not None and not isinstance(value, bool):
        yield json.dumps(value, default=str)


def episode_text(episode: Episode) -> str:
    """All free text of an episode: task, messages, tool names and args, final answer, feedback.

    Metadata is left out: it may hold a grader's gold answer, which a claim must not be
    grounded in.
    """
    parts = [episode.task]
    for message in episode.messages:
        parts.append(message.content)
        for call in message.tool_calls:
            parts.append(call.name)
            parts.extend(_strings(call.args))
    parts.append(episode.final_answer or "")
    parts.append(episode.outcome.feedback or "")
    return "\n".join(p for p in parts if p)


def untrusted_text(episode: Episode) -> str:
    """What tools returned during the episode (the content of its "tool" messages)."""
    return "\n".join(m.content for m in episode.messages if m.role == "tool" and m.content)


# --- specifics --------------------------------------------------------------------------------

_URL = re.compile(r"\b(?:https?|hxxps?|ftp)://[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
_DOMAIN = re.compile(
    r"\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|ai|co|dev|app|gov|edu|info|biz|xyz)\b", re.IGNORECASE
)
_HANDLE = re.compile(r"(?<![\w@.])@[A-Za-z0-9_]{2,}")
_QUOTED = re.compile(
    r"\"([^\"\n]{2,120})\"|“([^”\n]{2,120})”|‘([^’\n]{2,120})’"
    r"|(?<!\w)'([^'\n]{2,120})'(?!\w)"  # single quotes, not apostrophes ("don't", "the band's")
)
_BACKTICKED = re.compile(r"`([^`\n]{1,80})`")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,.]*\d(?![\w])|(?<![\w.])\d+(?=[a-z]{1,3}\b)")
_WORD = re.compile(r"[^\W_][\w'’.-]*[^\W_]|[^\W_]")
# A capital right after these (or at the start) begins a sentence, a line, a bullet or a quotation.
_STARTERS = frozenset(".!?:;…\n\r•*-–—(\"“‘'")

# Capitalised words that say nothing specific: pronouns, sentence connectives, generic acronyms.
_COMMON = frozenset(
    """
    i i'm i've i'd i'll a an the this that these those it its if when while after before then else
    and or but not no yes do does did don't never always only also first next finally e.g i.e
    ok okay ai llm api apis json url urls id ids http https sql csv pdf html faq q&a utc
    note tip warning important example step steps task tasks tool tools answer question user
    """.split()  # noqa: SIM905 - a word list reads better as words
)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _is_code_like(word: str) -> bool:
    core = word.strip(".'’-")
    if "_" in core and re.search(r"[A-Za-z]", core):
        return True
    if re.search(r"[a-z][A-Z]", core):  # camelCase or CamelCase with an inner capital
        return True
    return bool(re.search(r"[A-Za-z]", core) and re.search(r"\d", core))


def _specifics(text: str) -> list[tuple[str, str]]:
    """(normalised, as written) for every specific of ``text``, in order, without repeats."""
    found: list[tuple[int, str, str]] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, surface: str) -> None:
        surface = surface.strip().rstrip(".,;:!?)]}").strip()
        if surface:
            found.append((start, _norm(surface), surface))
            taken.append((start, end))

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    for pattern in (_URL, _EMAIL, _DOMAIN, _HANDLE):
        for m in pattern.finditer(text):
            if free(*m.span()):
                add(*m.span(), m.group(0))
    for pattern in (_QUOTED, _BACKTICKED):
        for m in pattern.finditer(text):
            if free(*m.span()):
                inner = next(g for g in m.groups() if g is not None)
                add(*m.span(), inner.strip(" .,;:!?"))
    for m in _NUMBER.finditer(text):
        if free(*m.span()) and sum(c.isdigit() for c in m.group(0)) >= 2:
            add(*m.span(), m.group(0).rstrip(".,"))
    for m in _WORD.finditer(text):
        if not free(*m.span()):
            continue
        word = re.sub(r"['’]s$", "", m.group(0)).rstrip(".'’-")  # "Craig's" names Craig
        if not word:
            continue
        if _is_code_like(word):
            add(*m.span(), word)
            continue
        if not word[:1].isupper() or word.lower() in _COMMON:
            continue
        # A capital at the start of a sentence (or a line, a bullet, a quotation) says nothing.
        i = m.start() - 1
        while i >= 0 and text[i] in " \t":
            i -= 1
        if i < 0 or text[i] in _STARTERS:
            continue
        add(*m.span(), word)
    found.sort()
    seen: dict[str, str] = {}
    for _, normal, surface in found:
        seen.setdefault(normal, surface)
    return list(seen.items())


def specifics(text: str) -> list[str]:
    """The specific tokens of a claim, normalised (lower case, single spaces), in order.

    URLs and domains, email addresses, @handles, numbers with two or more digits, quoted and
    backticked phrases, code-like tokens (snake_case, CamelCase, letters mixed with digits)
    and capitalised words that neither start a sentence nor are common words. Weekday and
    month names count: a claim about "orders placed on Friday" states a fact its evidence must
    show.
    """
    return [normal for normal, _ in _specifics(text)]


# --- grounding --------------------------------------------------------------------------------


def _contains(haystack: str, needle: str) -> bool:
    # Whole words only: "art" must not be grounded by "start".
    start = 0
    while True:
        i = haystack.find(needle, start)
        if i < 0:
            return False
        before = haystack[i - 1] if i else " "
        j = i + len(needle)
        after = haystack[j] if j < len(haystack) else " "
        if not (needle[0].isalnum() and before.isalnum()) and not (needle[-1].isalnum() and after.isalnum()):
            return True
        start = i + 1


def ungrounded_reason(claim: str, evidence_texts: Sequence[str], min_episodes: int) -> str | None:
    """Why ``claim`` is not grounded in its evidence, or None when it is.

    Every specific of the claim must appear (case-insensitive, whitespace-normalised, as whole
    words) in at least ``min(min_episodes, len(evidence_texts))`` of the evidence texts. A claim
    without specifics is a general lesson and is grounded. A claim with specifics and no
    evidence at all is not: nothing shows them.
    """
    found = _specifics(claim)
    if not found:
        return None
    if not evidence_texts:
        return f'"{found[0][1]}" cannot be checked: the claim cites no evidence episodes'
    texts = [_norm(t) for t in evidence_texts]
    need = max(1, min(min_episodes, len(texts)))
    short = []
    for normal, surface in found:
        hits = sum(_contains(t, normal) for t in texts)
        if hits < need:
            short.append((surface, hits))
    if not short:
        return None
    surface, hits = short[0]
    reason = f'"{surface}" appears in {hits} of its {len(texts)} evidence episodes; needs {need}'
    if len(short) > 1:
        reason += f" ({len(short) - 1} more specifics fall short too)"
    return reason


# --- copying ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def _words(text: str) -> list[str]:
    return [w.replace("’", "'") for w in _TOKEN.findall(text.lower())]


@functools.lru_cache(maxsize=512)
def _word_string(text: str) -> str:
    # The evidence of one cluster is checked against several claims: tokenise each text once.
    return f" {' '.join(_words(text))} "


def copied_from_untrusted(claim: str, untrusted_texts: Sequence[str], min_words: int = 8) -> str | None:
    """Why ``claim`` looks copied from tool output, or None.

    Copied means: the claim shares a run of at least ``min_words`` consecutive words
    (lower-cased, punctuation dropped) with one of ``untrusted_texts``, or the claim has at
    least five words and a shared run covers 60% or more of them.
    """
    words = _words(claim)
    need = min_words
    if len(words) >= 5:
        need = min(need, math.ceil(0.6 * len(words)))
    if not words or len(words) < need:
        return None
    best: list[str] = []
    for text in untrusted_texts:
        if not text:
            continue
        haystack = _word_string(text)
        for start in range(len(words) - need + 1):
            end = start + need
            if f" {' '.join(words[start:end])} " not in haystack:
                continue
            while end < len(words) and f" {' '.join(words[start : end + 1])} " in haystack:
                end += 1
            if end - start > len(best):
                best = words[start:end]
    if not best:
        return None
    run = " ".join(best)
    return f'shares {len(best)} of its {len(words)} words in a row with tool output: "{_clip(run)}"'


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["copied_from_untrusted", "episode_text", "specifics", "ungrounded_reason", "untrusted_text"]
