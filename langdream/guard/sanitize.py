"""What happens to an episode before it is stored: text made storable, secrets and PII redacted,
role markup neutralised.

Storable first: the ledger writes UTF-8, which a lone surrogate (what
``bytes.decode(errors="surrogateescape")`` leaves for a byte that is not UTF-8) cannot be
written in, so one such character would lose the whole episode. Lone surrogates and NUL
characters become U+FFFD; values JSON cannot hold (in tool call args and metadata) become JSON
data or a short placeholder, see ``to_jsonable``. Then redaction and neutralisation run on the
clean text.

Each step is recorded on the episode (counts per kind, never the values) under
``metadata["langdream"]``: ``invalid_text``, ``redacted`` and ``neutralised``, so
``langdream episodes show --json`` says what was changed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import numbers
import re
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from langdream.guard.neutralise import neutralise_episode, neutralise_text
from langdream.guard.redact import redact_episode, redact_text
from langdream.types import Episode, Message, ToolCall, to_epoch

METADATA_KEY = "langdream"
REPLACEMENT = "\ufffd"
INVALID_TEXT_KINDS: tuple[str, ...] = ("lone_surrogate", "nul")

# A surrogate pair (two code points that make one character, as JavaScript strings hold them)
# is joined into that character; a surrogate on its own, or a NUL, is replaced.
_INVALID = re.compile("([\ud800-\udbff][\udc00-\udfff])|([\ud800-\udfff])|(\x00)")

# Beyond this depth a structure is recorded as a placeholder (a deeply nested or self-similar
# state would otherwise reach Python's recursion limit).
MAX_DEPTH = 64
# A repr stands in for an object JSON cannot hold; its length is capped, it is not the content.
MAX_REPR_CHARS = 2000
# Values walked in one conversion: a structure that shares its parts at every level would
# otherwise be walked exponentially often (it is written out once per path to each part).
MAX_VALUES = 1_000_000
_UNHANDLED = object()


# --- storable text ----------------------------------------------------------------------------


def clean_text(text: str) -> tuple[str, Counter[str]]:
    """``text`` as UTF-8 can store it: lone surrogates and NULs replaced by U+FFFD, and counts per kind."""
    counts: Counter[str] = Counter()
    return _clean(text, counts), counts


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    if text.isascii():  # the common case
        return True
    try:
        text.encode("utf-8")  # at C speed; fails on a surrogate
    except UnicodeEncodeError:
        return False
    return True


def _clean(text: str, counts: Counter[str]) -> str:
    """``text`` itself when it is storable (no copy), else the cleaned copy; counts what it replaced."""
    if _storable(text):
        return text

    def fix(match: re.Match[str]) -> str:
        pair, lone, _nul = match.groups()
        if pair:
            return pair.encode("utf-16", "surrogatepass").decode("utf-16")
        counts["lone_surrogate" if lone else "nul"] += 1
        return REPLACEMENT

    return _INVALID.sub(fix, text)


def bytes_text(data: bytes | bytearray | memoryview) -> str:
    """Bytes as text: decoded when they are UTF-8 text, else a placeholder that says how many."""
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<binary: {len(raw)} bytes>"
    return text if "\x00" not in text else f"<binary: {len(raw)} bytes>"


def safe_repr(value: Any) -> str:
    """``repr(value)``, capped in length; a placeholder naming the type when ``repr`` itself raises."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not lose the episode
        return f"<unrepresentable {_type_name(value)}>"
    if not isinstance(text, str):
        return f"<unrepresentable {_type_name(value)}>"
    return text if len(text) <= MAX_REPR_CHARS else text[:MAX_REPR_CHARS] + "…"


def _type_name(value: Any) -> str:
    try:
        return type(value).__qualname__
    except Exception:
        return "object"


# --- JSON-safe values -------------------------------------------------------------------------


def to_jsonable(value: Any, special: Callable[[Any], Any] | None = None) -> Any:
    """``value`` as JSON data, for any value a graph's state may hold; never raises.

    Containers are walked (mapping keys become strings, tuples and sets lists), models and
    dataclasses become dicts, dates ISO strings, bytes ``bytes_text``, non-finite floats their
    name. What is left is kept as its (capped) ``repr``; a cycle becomes ``"<cycle>"``, anything
    nested deeper than ``MAX_DEPTH`` ``"<nested too deep>"``, and every value after the first
    ``MAX_VALUES`` ``"<too many values>"``. ``special(value)`` may
    convert a value first; returning ``NotImplemented`` leaves it to the rules above.
    """
    return _Walker(special).walk(value, 0)


class _Walker:
    def __init__(self, special: Callable[[Any], Any] | None) -> None:
        self.special = special
        self.on_path: set[int] = set()  # containers being walked: meeting one again is a cycle
        self.left = MAX_VALUES

    def walk(self, value: Any, depth: int) -> Any:
        self.left -= 1
        if self.left < 0:
            return "<too many values>"
        scalar = _scalar(value)
        if scalar is not _UNHANDLED:
            return scalar
        if depth >= MAX_DEPTH:
            return "<nested too deep>"
        if id(value) in self.on_path:
            return "<cycle>"
        self.on_path.add(id(value))
        try:
            return self._compound(value, depth + 1)
        except Exception:  # a container that fails while walked (a mapping whose items() raises)
            return safe_repr(value)
        finally:
            self.on_path.discard(id(value))

    def _compound(self, value: Any, depth: int) -> Any:
        if self.special is not None:
            converted = self.special(value)
            if converted is not NotImplemented:
                return self.walk(converted, depth)
        if isinstance(value, Mapping):
            return {_key(k): self.walk(v, depth) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset, deque)):
            return [self.walk(v, depth) for v in value]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: self.walk(getattr(value, f.name, None), depth) for f in dataclasses.fields(value)}
        for method in ("model_dump", "dict"):
            dump = getattr(value, method, None)
            if callable(dump) and not isinstance(value, type):
                try:
                    dumped = dump()
                except Exception:  # a model that cannot dump itself is recorded by repr
                    break
                return self.walk(dumped, depth)
        return safe_repr(value)


def _scalar(value: Any) -> Any:
    """The JSON form of a scalar value, or ``_UNHANDLED`` for anything else."""
    if value is None or type(value) in (str, bool, int):
        return value
    if isinstance(value, enum.Enum):
        inner = _scalar(value.value)
        return value.name if inner is _UNHANDLED else inner
    if isinstance(value, str):
        return str.__str__(value)  # a str subclass as plain text
    if isinstance(value, (bool, numbers.Integral)):  # bool and int subclasses, numpy integers
        try:
            return bool(value) if isinstance(value, bool) else int(value)
        except Exception:
            return _UNHANDLED
    if isinstance(value, numbers.Real):  # float, numpy floats, fractions
        try:
            number = float(value)
        except Exception:
            return _UNHANDLED
        # JSON has no NaN or infinity: strict readers (Postgres, browsers) reject them.
        return number if math.isfinite(number) else str(number)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes_text(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal, PurePath)):
        return str(value)
    return _UNHANDLED


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    scalar = _scalar(key)
    if scalar is None or isinstance(scalar, bool):
        return "null" if scalar is None else str(scalar).lower()  # as json.dumps writes such keys
    if scalar is not _UNHANDLED:
        return str(scalar)
    return safe_repr(key)


# --- the episode as it may be stored -----------------------------------------------------------


class _Cleaner:
    """Cleans every string of an episode, counting what it replaced; what needs no change is kept."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def text(self, text: str | None) -> str | None:
        return None if text is None else _clean(text, self.counts)

    def data(self, value: dict[str, Any]) -> dict[str, Any]:
        """A dict of any values as JSON data with clean strings; ``value`` itself if it already was."""
        clean = self._strings(to_jsonable(value))
        try:
            unchanged = bool(clean == value)
        except Exception:  # a value that refuses to compare (a numpy array) was converted anyway
            unchanged = False
        return value if unchanged else clean

    def _strings(self, value: Any) -> Any:
        if isinstance(value, str):
            return _clean(value, self.counts)
        if isinstance(value, dict):
            return {self._strings(k): self._strings(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._strings(v) for v in value]
        return value

    def call(self, call: ToolCall) -> ToolCall:
        update = {"name": self.text(call.name), "id": self.text(call.id), "args": self.data(call.args)}
        return call if _same(call, update) else call.model_copy(update=update)

    def message(self, message: Message) -> Message:
        calls = [self.call(call) for call in message.tool_calls]
        update = {
            "content": self.text(message.content),
            "name": self.text(message.name),
            "tool_call_id": self.text(message.tool_call_id),
        }
        if _same(message, update) and all(a is b for a, b in zip(calls, message.tool_calls)):
            return message
        return message.model_copy(update={**update, "tool_calls": calls})


def _same(model: Any, update: dict[str, Any]) -> bool:
    return all(getattr(model, key) is value for key, value in update.items())


def clean_episode(episode: Episode) -> tuple[Episode, Counter[str]]:
    """A copy of ``episode`` that the ledger can store (``episode`` itself if it is), and what was
    replaced, per kind.

    Every string is cleaned (``clean_text``), ids included (the namespace is not: it is checked
    where it is parsed); tool call args and metadata become JSON data (``to_jsonable``); a
    ``created_at`` outside the years the ledger can hold is clamped to them.
    """
    c = _Cleaner()
    messages = [c.message(m) for m in episode.messages]
    outcome = episode.outcome
    feedback = c.text(outcome.feedback)
    if feedback is not outcome.feedback:
        outcome = outcome.model_copy(update={"feedback": feedback})
    update = {
        "id": c.text(episode.id),
        "task": c.text(episode.task),
        "final_answer": c.text(episode.final_answer),
        "thread_id": c.text(episode.thread_id),
        "run_id": c.text(episode.run_id),
        "metadata": c.data(episode.metadata),
        "created_at": storable_time(episode.created_at),
        "outcome": outcome,
    }
    injected = [c.text(i) for i in episode.injected_insight_ids]
    if _same(episode, update) and all(a is b for a, b in zip(messages, episode.messages)) and not c.counts:
        return episode, c.counts
    return episode.model_copy(update={**update, "messages": messages, "injected_insight_ids": injected}), c.counts


# The ledger stores times as seconds since the epoch; Python's datetime cannot convert the first
# and the last day of its range (the UTC offset may carry them past year 1 or 9999).
_EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.timezone.utc)
_LATEST = dt.datetime(9999, 12, 30, tzinfo=dt.timezone.utc)


def storable_time(value: dt.datetime) -> dt.datetime:
    """``value`` clamped into the range of times the ledger can store (a skewed clock stays as it is)."""
    try:
        to_epoch(value)
        inside = _EARLIEST <= value <= _LATEST
    except (ValueError, OverflowError):
        inside = False
    if inside:
        return value
    return _EARLIEST if value.replace(tzinfo=None).year < 5000 else _LATEST


def sanitize_text(text: str) -> str:
    """One free text (a feedback note given later) as it may be stored: cleaned, redacted, then neutralised."""
    return neutralise_text(redact_text(clean_text(text)[0])[0])[0]


def sanitize_episode(episode: Episode) -> Episode:
    """``episode`` as it may be stored: cleaned, redacted, then neutralised, with what changed recorded."""
    cleaned, invalid = clean_episode(episode)
    redacted, redactions = redact_episode(cleaned)
    neutralised, neutralisations = neutralise_episode(redacted)
    if not invalid and not redactions and not neutralisations:
        return neutralised
    existing = neutralised.metadata.get(METADATA_KEY)
    notes = dict(existing) if isinstance(existing, dict) else {}
    for key, counts in (("invalid_text", invalid), ("redacted", redactions), ("neutralised", neutralisations)):
        if counts:
            notes[key] = dict(Counter(notes.get(key) or {}) + counts)
    return neutralised.model_copy(update={"metadata": {**neutralised.metadata, METADATA_KEY: notes}})


__all__ = [
    "INVALID_TEXT_KINDS",
    "METADATA_KEY",
    "bytes_text",
    "clean_episode",
    "clean_text",
    "safe_repr",
    "sanitize_episode",
    "sanitize_text",
    "storable_time",
    "to_jsonable",
]
