"""How the ledger's values are stored and read back, whatever the backend.

Rows are read by column name (``sqlite3.Row`` and psycopg's ``dict_row`` both allow it); JSON
columns are compact text, vectors float32 bytes, times epoch seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from langdream.ledger.schema import STATE_COLUMNS
from langdream.namespace import namespace_from_key
from langdream.types import DreamJob, DreamReport, Episode, Insight, InsightVersion, Message, Outcome, from_epoch

Row = Mapping[str, Any]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def vector_bytes(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()


def vector_from(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32)


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def among(column: str, n: int, *, negate: bool = False) -> str:
    """``column [NOT] IN (?, ...)`` for ``n`` values; an empty list matches nothing (or, negated,
    everything), which PostgreSQL cannot say with ``IN ()``."""
    if n == 0:
        return "1 = 1" if negate else "1 = 0"
    return f"{column} {'NOT IN' if negate else 'IN'} ({placeholders(n)})"


def episode_row(row: Row) -> Episode:
    success = row["success"]
    return Episode.model_construct(
        id=row["id"],
        namespace=namespace_from_key(row["namespace"]),
        thread_id=row["thread_id"],
        run_id=row["run_id"],
        task=row["task"],
        messages=[Message.model_validate(m) for m in json.loads(row["messages"])],
        final_answer=row["final_answer"],
        outcome=Outcome(
            success=None if success is None else bool(success), score=row["score"], feedback=row["feedback"]
        ),
        injected_insight_ids=json.loads(row["injected"]),
        metadata=json.loads(row["metadata"]),
        created_at=from_epoch(row["created_at"]),
        revision=row["revision"],
        consolidated_by=row["consolidated_by"],
    )


def state_values(insight: Insight) -> tuple[Any, ...]:
    """The values of ``STATE_COLUMNS`` for ``insight``, as stored."""
    return (
        insight.status.value,
        insight.status_reason,
        insight.hold.value if insight.hold else None,
        int(insight.remembered),
        insight.text,
        insight.applies_when,
        dumps(insight.evidence),
        insight.support,
        insight.threads,
        insight.tasks,
        insight.confidence,
        dumps(insight.stats),
        insight.version,
        insight.job_id,
        insight.model_id,
        insight.prompt_version,
    )


def _state(row: Row) -> dict[str, Any]:
    """``STATE_COLUMNS`` of a head or an event row, read back."""
    state = {column: row[column] for column in STATE_COLUMNS}
    state.update(
        remembered=bool(row["remembered"]), evidence=json.loads(row["evidence"]), stats=json.loads(row["stats"])
    )
    return state


def insight_row(row: Row) -> Insight:
    return Insight(
        **_state(row),
        id=row["id"],
        namespace=namespace_from_key(row["namespace"]),
        origin=row["origin"],
        signature=row["signature"],
        created_at=from_epoch(row["created_at"]),
        updated_at=from_epoch(row["updated_at"]),
    )


def version_row(row: Row) -> InsightVersion:
    return InsightVersion(
        **_state(row),
        insight_id=row["insight_id"],
        seq=row["seq"],
        action=row["action"],
        actor=row["actor"],
        cause=row["cause"],
        created_at=from_epoch(row["created_at"]),
    )


def job_row(row: Row) -> DreamJob:
    return DreamJob(
        id=row["id"],
        namespace=namespace_from_key(row["namespace"]),
        status=row["status"],
        episodes=[tuple(e) for e in json.loads(row["episodes"])],
        **job_clusters(row["clusters"]),
        noise=json.loads(row["noise"]),
        prompt_version=row["prompt_version"],
        model_id=row["model_id"],
        created_at=from_epoch(row["created_at"]),
        updated_at=from_epoch(row["updated_at"]),
        report=DreamReport.model_validate_json(row["report"]) if row["report"] else None,
        committed_seq=row["committed_seq"],
        parked_reason=row["parked_reason"],
        attempts=row["attempts"],
    )


def job_clusters(stored: str) -> dict[str, list]:
    """A job's clusters with their lasting ids; jobs written before lasting clusters existed
    stored bare lists of episode ids (their clusters get ids from the job id)."""
    clusters = json.loads(stored)
    if clusters and isinstance(clusters[0], list):
        return {"clusters": clusters}
    return {"clusters": [c["episodes"] for c in clusters], "cluster_ids": [c["id"] for c in clusters]}
