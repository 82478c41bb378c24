"""The ledger: the transactional source of truth (episodes, insights and their history, dream jobs).

``Ledger`` is the protocol every backend implements; ``SQLiteLedger`` (one file) is the default,
``PostgresLedger`` the one many machines share; ``open_ledger`` picks by target. Both run the
same SQL core (``langdream.ledger.sql``). The chroma index is derived from the ledger and can be
rebuilt from it at any time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from langdream.config import DEFAULT_BUSY_TIMEOUT_SECONDS
from langdream.namespace import Namespace
from langdream.types import (
    DREAM_ACTOR,
    DreamJob,
    DreamReport,
    Episode,
    Insight,
    InsightAction,
    InsightEffect,
    InsightStatus,
    InsightVersion,
    NamespaceStats,
    Outcome,
)


@dataclass(frozen=True)
class InsightWrite:
    """A new head state for one insight, written together with its history entry (an event).

    ``vector`` None keeps the stored vector (the wording did not change). ``actor`` and
    ``cause`` say who made the change and why (see ``InsightVersion``).
    """

    insight: Insight
    action: InsightAction
    vector: np.ndarray | None
    actor: str = DREAM_ACTOR
    cause: str = ""


@dataclass(frozen=True)
class Exposure:
    """One run related to an insight: whether it was shown the insight, and whether it succeeded."""

    insight_id: str
    episode_id: str
    shown: bool
    success: bool


@dataclass(frozen=True)
class ForgetPlan:
    """Everything one ``forget`` removes, applied in one transaction.

    ``episodes`` are deleted with their derived rows; ``writes`` are the insights whose support
    was recomputed; ``scrub`` are insights whose text is replaced in their head and every version
    (they quoted what was forgotten); ``namespaces`` are dropped whole; ``cluster_sums`` are the
    lasting clusters' sums without the forgotten members' vectors.
    """

    episodes: Sequence[str]
    writes: Sequence[InsightWrite] = ()
    scrub: Sequence[str] = ()
    namespaces: Sequence[Namespace] = ()
    cluster_sums: Mapping[str, tuple[np.ndarray, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredCluster:
    """A lasting cluster of one namespace: the running sum of its members' vectors and their count.

    ``vector_sum / size`` is the mean member vector; its dot product with a unit vector is that
    vector's average similarity to the members, the same rule the clusterer's linkage cuts on.
    """

    id: str
    vector_sum: np.ndarray
    size: int

    @property
    def mean(self) -> np.ndarray:
        return self.vector_sum / max(1, self.size)


@dataclass(frozen=True)
class ClusterWrite:
    """Episodes a dream consolidated into a lasting cluster (new or existing), with their vectors."""

    id: str
    namespace: Namespace
    members: Sequence[str]
    vectors: Sequence[np.ndarray]


class LedgerConflict(Exception):
    """A dream's input changed under it (another dreamer, or new feedback); nothing was written."""


class LeaseLost(LedgerConflict):
    """A dreamer's namespace lease passed to another dreamer (which now owns the job); nothing was written."""


class Ledger(Protocol):
    def close(self) -> None: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...

    # episodes
    def add_episodes(self, episodes: Sequence[Episode]) -> list[bool]: ...
    def get_episode(self, episode_id: str) -> Episode | None: ...
    def get_episodes(self, episode_ids: Sequence[str]) -> list[Episode]: ...
    def find_episode(self, id_or_run_id: str) -> Episode | None: ...
    def list_episodes(
        self, namespace: Namespace | None = None, *, limit: int = 50, offset: int = 0, pending: bool | None = None
    ) -> list[Episode]: ...
    def count_episodes(self, namespace: Namespace | None = None, *, pending: bool | None = None) -> int: ...
    def iter_episode_tasks(self, batch: int = 1000) -> Iterator[list[tuple[str, Namespace, str]]]: ...
    def set_outcome(self, episode_id: str, outcome: Outcome) -> Episode: ...
    def pending_episodes(self, namespace: Namespace, limit: int) -> list[Episode]: ...
    def namespaces(self) -> list[NamespaceStats]: ...
    def has_namespace(self, namespace: Namespace) -> bool: ...

    # insights
    def get_insight(self, insight_id: str) -> Insight | None: ...
    def get_insights(self, insight_ids: Sequence[str]) -> list[Insight]: ...
    def list_insights(
        self, namespace: Namespace | None = None, *, statuses: Iterable[InsightStatus] | None = None
    ) -> list[Insight]: ...
    def insight_history(self, insight_id: str) -> list[InsightVersion]: ...
    def insights_with_vectors(
        self, namespace: Namespace | None, statuses: Iterable[InsightStatus]
    ) -> tuple[list[Insight], np.ndarray]: ...
    def insights_citing(
        self, episode_ids: Sequence[str], statuses: Iterable[InsightStatus]
    ) -> dict[str, list[str]]: ...
    def general_insights(self, namespace: Namespace, min_tasks: int, limit: int) -> list[Insight]: ...
    def has_insights(self, namespace: Namespace, status: InsightStatus) -> bool: ...
    def dirty_insights(self, limit: int = 1000) -> list[tuple[Insight, np.ndarray | None]]: ...
    def mark_indexed(self, versions: Sequence[tuple[str, int]]) -> None: ...
    def set_insight_vectors(self, vectors: Sequence[tuple[str, np.ndarray]]) -> None: ...
    def iter_insight_texts(self, batch: int = 1000) -> Iterator[list[tuple[str, str, str]]]: ...
    def mark_all_dirty(self) -> None: ...
    def write_insights(self, writes: Sequence[InsightWrite]) -> None: ...
    def remembered_claims(self, namespace: Namespace) -> tuple[list[Insight], np.ndarray]: ...
    def versions_at(self, namespace: Namespace, seq: int) -> dict[str, InsightVersion]: ...
    def record_exposures(self, exposures: Sequence[Exposure]) -> None: ...
    def effects(self, insight_ids: Sequence[str]) -> dict[str, InsightEffect]: ...

    # forgetting
    def episode_ids_where(
        self, *, namespace: Namespace | None = None, episode_ids: Sequence[str] = (), thread_id: str | None = None
    ) -> list[tuple[str, Namespace]]: ...
    def jobs_touching(self, episode_ids: Sequence[str]) -> list[str]: ...
    def forget(self, plan: ForgetPlan) -> None: ...
    def compact(self) -> None: ...

    # dream jobs
    def get_job(self, job_id: str) -> DreamJob | None: ...
    def open_jobs(self, namespace: Namespace) -> list[DreamJob]: ...
    def list_jobs(self, namespace: Namespace | None = None, *, limit: int = 50) -> list[DreamJob]: ...
    def create_job(self, job: DreamJob) -> None: ...
    def abandon_job(self, job_id: str) -> None: ...
    def resume_job(self, job_id: str) -> None: ...
    def park_job(self, job_id: str, reason: str) -> None: ...
    def parked_jobs(self) -> list[DreamJob]: ...
    def save_output(self, job_id: str, cluster: int, raw: str, operations: str) -> None: ...
    def job_outputs(self, job_id: str) -> dict[int, tuple[str, str]]: ...
    def commit_dream(
        self,
        job_id: str,
        writes: Sequence[InsightWrite],
        consolidated: Sequence[tuple[str, int]],
        report: DreamReport,
        clusters: Sequence[ClusterWrite] = (),
        lease_owner: str | None = None,
    ) -> None: ...

    # one dreamer per namespace
    def acquire_lease(
        self, namespace: Namespace, owner: str, seconds: float, holder_dead: Callable[[str], bool]
    ) -> tuple[str, float] | None: ...
    def release_lease(self, namespace: Namespace, owner: str) -> None: ...
    def recall_epoch(self) -> int: ...
    def leases(self) -> list[tuple[Namespace, str, float]]: ...
    def drop_dead_leases(self, holder_dead: Callable[[str], bool]) -> int: ...

    # lasting clusters
    def clusters(self, namespace: Namespace) -> list[StoredCluster]: ...
    def cluster_of(self, episode_ids: Sequence[str]) -> dict[str, str]: ...
    def cluster_members(self, cluster_id: str, limit: int) -> list[str]: ...
    def set_cluster_sums(self, sums: Mapping[str, np.ndarray]) -> None: ...


_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_ledger(target: str | os.PathLike, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> Ledger:
    """The ledger at ``target``: a ``postgresql://`` (or ``postgres://``) URL opens a shared
    ``PostgresLedger``; anything else is the path of a SQLite file (created on first use).

    ``busy_timeout`` bounds how long a write waits for another writer (``DataHomeLockedError``).
    """
    text = os.fspath(target)
    if isinstance(text, str) and text.lower().startswith(_POSTGRES_SCHEMES):
        from langdream.ledger.postgres import PostgresLedger

        return PostgresLedger(text, busy_timeout=busy_timeout)
    from langdream.ledger.sqlite import SQLiteLedger

    return SQLiteLedger(text, busy_timeout=busy_timeout)


__all__ = [
    "ClusterWrite",
    "Exposure",
    "ForgetPlan",
    "InsightWrite",
    "LeaseLost",
    "Ledger",
    "LedgerConflict",
    "StoredCluster",
    "open_ledger",
]
