"""Reading episodes from JSONL: one episode a line, bad lines reported with their number.

A line is an object with ``task`` (required), ``messages``, ``outcome``, ``namespace``, ``id``,
``thread_id``, ``run_id``, ``created_at``, ``final_answer`` and ``metadata``. A line without an
``id`` gets one derived from its content, so importing the same file twice stores it once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langdream.errors import IngestError, LangDreamError
from langdream.namespace import Namespace, namespace_key, parse_namespace
from langdream.types import Episode, Message, Outcome


class LineError(BaseModel):
    """A line of an episode file that was not imported, and why."""

    line: int
    reason: str


class IngestReport(BaseModel):
    """What an import did: episodes added, ids already stored, bad lines, episodes per namespace."""

    added: int = 0
    duplicates: int = 0
    errors: list[LineError] = Field(default_factory=list)
    namespaces: dict[str, int] = Field(default_factory=dict)


class EpisodeRecord(BaseModel):
    """The JSONL line schema."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1)
    messages: list[Message] = Field(default_factory=list)
    outcome: Outcome = Field(default_factory=Outcome)
    namespace: str | list[str] | None = None
    id: str | None = Field(default=None, min_length=1)
    thread_id: str | None = None
    run_id: str | None = None
    created_at: datetime | None = None
    final_answer: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "line"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def to_episode(record: EpisodeRecord, default_namespace: Namespace, raw: str) -> Episode:
    namespace = parse_namespace(record.namespace) if record.namespace is not None else default_namespace
    created = record.created_at or datetime.now(timezone.utc)  # naive: the Episode model reads it as UTC
    # Derived from the line and its namespace: the same file imported into two namespaces is
    # stored in both, and imported twice into one is stored once.
    derived = hashlib.sha256(f"{namespace_key(namespace)}\n{raw}".encode()).hexdigest()[:24]
    episode_id = record.id or f"ep_{derived}"
    return Episode(
        id=episode_id,
        namespace=namespace,
        task=record.task,
        messages=record.messages,
        final_answer=record.final_answer,
        outcome=record.outcome,
        thread_id=record.thread_id,
        run_id=record.run_id,
        created_at=created,
        metadata=record.metadata,
    )


def read_jsonl(path: str | Path, default_namespace: Namespace) -> Iterator[tuple[int, Episode | LineError]]:
    """Yield ``(line_number, episode or error)`` for every non-blank line of ``path`` (``.gz`` too)."""
    path = Path(path)
    try:
        handle = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except OSError as exc:
        raise IngestError(f"cannot read {path}: {exc.strerror or exc}", hint="check the file path") from exc
    with handle:
        try:
            for number, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield number, _parse_line(number, raw, default_namespace)
        except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
            raise IngestError(f"cannot read {path}: {exc}", hint="check that the file is complete") from exc


def _parse_line(number: int, raw: bytes, default_namespace: Namespace) -> Episode | LineError:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(line=number, reason=f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return LineError(line=number, reason=f"not valid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(data, dict):
        return LineError(line=number, reason=f"expected a JSON object, got {type(data).__name__}")
    try:
        return to_episode(EpisodeRecord.model_validate(data), default_namespace, line.strip())
    except ValidationError as exc:
        return LineError(line=number, reason=_describe(exc))
    except LangDreamError as exc:
        return LineError(line=number, reason=exc.message)
