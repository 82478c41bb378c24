"""Recall's search for processes that do not own the chroma index: exact search over the ledger.

Only one process may open a data home's chroma directory (see ``IndexLock``); agents in the
other processes recall from the ledger, which every process may read at once (SQLite WAL).
The namespace's active insight vectors are loaded once and kept while the ledger's recall
epoch is unchanged, so a recall costs one matrix-vector product. The "learned nearby" channel
uses the lasting clusters: the insights cited by members of the clusters nearest to the task.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from langdream.index.chroma import IndexHit
from langdream.ledger import Ledger
from langdream.namespace import Namespace, namespace_key
from langdream.types import InsightStatus

# Lasting clusters, and members of each, that the learned-nearby channel looks through.
_NEAREST_CLUSTERS = 3
_MEMBERS_PER_CLUSTER = 200


@dataclass
class _Snapshot:
    epoch: int
    ids: list[str]
    vectors: np.ndarray
    cluster_ids: list[str]
    cluster_means: np.ndarray


class LedgerSearch:
    """Exact nearest-insight search over the ledger's stored vectors, cached per namespace."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._cache: dict[str, _Snapshot] = {}
        self._lock = threading.Lock()

    def _snapshot(self, namespace: Namespace) -> _Snapshot:
        epoch = self.ledger.recall_epoch()
        key = namespace_key(namespace)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached.epoch == epoch:
            return cached
        insights, vectors = self.ledger.insights_with_vectors(namespace, [InsightStatus.ACTIVE])
        clusters = self.ledger.clusters(namespace)
        means = np.stack([c.mean for c in clusters]) if clusters else np.zeros((0, 1), np.float32)
        snapshot = _Snapshot(epoch, [i.id for i in insights], vectors, [c.id for c in clusters], means)
        with self._lock:
            self._cache[key] = snapshot
        return snapshot

    def query_insights(self, vector: np.ndarray, namespace: Namespace, n: int) -> list[IndexHit]:
        snapshot = self._snapshot(namespace)
        if not snapshot.ids:
            return []
        similarity = snapshot.vectors @ vector
        top = np.argsort(-similarity, kind="stable")[:n]
        return [IndexHit(snapshot.ids[i], float(similarity[i])) for i in top]

    def learned_nearby(
        self, vector: np.ndarray, namespace: Namespace, statuses: Sequence[InsightStatus], limit: int | None = None
    ) -> dict[str, float]:
        """Insights cited by members of the lasting clusters nearest to ``vector``, each with that
        cluster's mean similarity (the ledger keeps no per-episode vectors)."""
        snapshot = self._snapshot(namespace)
        if not snapshot.cluster_ids:
            return {}
        similarity = snapshot.cluster_means @ vector
        learned: dict[str, float] = {}
        for row in np.argsort(-similarity, kind="stable")[:_NEAREST_CLUSTERS]:
            members = self.ledger.cluster_members(snapshot.cluster_ids[row], _MEMBERS_PER_CLUSTER)
            for insight_id in self.ledger.insights_citing(members, statuses):
                learned[insight_id] = max(float(similarity[row]), learned.get(insight_id, -1.0))
        ranked = sorted(learned.items(), key=lambda item: (-item[1], item[0]))
        return dict(ranked[:limit] if limit is not None else ranked)
