"""Clustering of episode embeddings.

``cluster()`` groups unit vectors by cosine similarity. With ``k`` it runs k-means; without, it
finds the number of groups itself (average linkage cut at a similarity threshold) and marks
points in groups smaller than ``min_cluster_size`` as noise (label -1). The exact clusterer
needs a pairwise distance matrix; when that would not fit in ``memory_bytes`` it clusters
k-means micro-centroids instead, so memory stays linear in the number of episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from langdream.cluster.cpu import average_linkage, kmeans, pairwise_bytes
from langdream.config import DEFAULT_CLUSTER_MEMORY_BYTES, DEFAULT_CLUSTER_SIMILARITY, DEFAULT_MIN_CLUSTER_SIZE

NOISE = -1


@dataclass(frozen=True)
class ClusterResult:
    labels: np.ndarray  # one label per input row; NOISE for unclustered rows
    method: str

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) and self.labels.max() >= 0 else 0

    @property
    def noise(self) -> int:
        return int((self.labels == NOISE).sum())

    def members(self) -> list[np.ndarray]:
        """Row indices of each cluster, largest cluster first."""
        return [np.flatnonzero(self.labels == c) for c in range(self.n_clusters)]


def _canonical(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop groups below ``min_size`` to noise; number the rest by size, then first member."""
    out = np.full(len(labels), NOISE, dtype=np.int64)
    groups = {}
    for index, label in enumerate(labels):
        if label >= 0:
            groups.setdefault(int(label), []).append(index)
    kept = [rows for rows in groups.values() if len(rows) >= min_size]
    kept.sort(key=lambda rows: (-len(rows), rows[0]))
    for new_label, rows in enumerate(kept):
        out[rows] = new_label
    return out


def cluster(
    vectors: np.ndarray,
    *,
    k: int | None = None,
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE,
    similarity: float = DEFAULT_CLUSTER_SIMILARITY,
    memory_bytes: int = DEFAULT_CLUSTER_MEMORY_BYTES,
    seed: int = 0,
) -> ClusterResult:
    """Cluster L2-normalised ``vectors`` (shape ``(n, d)``)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n == 0:
        return ClusterResult(np.zeros(0, dtype=np.int64), "empty")
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return ClusterResult(_canonical(kmeans(vectors, min(k, n), seed=seed), 1), "kmeans")
    if n < min_cluster_size:
        return ClusterResult(np.full(n, NOISE, dtype=np.int64), "too-few")
    if n == 1:
        return ClusterResult(_canonical(np.zeros(1, dtype=np.int64), min_cluster_size), "single")
    if pairwise_bytes(n) <= memory_bytes:
        labels = average_linkage(vectors, similarity)
        return ClusterResult(_canonical(labels, min_cluster_size), "average-linkage")
    # Too many points for a pairwise matrix: over-segment with k-means, then merge the centroids
    # with the same linkage rule. The largest centroid count whose matrix fits is used.
    micro = int(min(n, max(2, np.sqrt(2 * memory_bytes / 8)), max(2, 4 * np.sqrt(n))))
    micro_labels = kmeans(vectors, micro, seed=seed, minibatch=True)
    centroids = np.zeros((micro, vectors.shape[1]), dtype=np.float32)
    np.add.at(centroids, micro_labels, vectors)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    used = norms[:, 0] > 0
    centroids[used] /= norms[used]
    merged = np.full(micro, NOISE, dtype=np.int64)
    merged[used] = average_linkage(centroids[used], similarity)
    return ClusterResult(_canonical(merged[micro_labels], min_cluster_size), "kmeans+average-linkage")


__all__ = ["NOISE", "ClusterResult", "cluster"]
