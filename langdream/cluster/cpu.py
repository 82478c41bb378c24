"""CPU clustering primitives (numpy, scipy, scikit-learn)."""

from __future__ import annotations

import numpy as np


def pairwise_bytes(n: int) -> int:
    """Memory of the condensed float64 distance matrix that average linkage builds."""
    return n * (n - 1) // 2 * 8


def average_linkage(vectors: np.ndarray, similarity: float) -> np.ndarray:
    """Average-linkage clusters, cut where the mean cosine similarity drops below ``similarity``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    if len(vectors) == 1:
        return np.zeros(1, dtype=np.int64)
    distances = np.clip(pdist(vectors.astype(np.float64), metric="cosine"), 0.0, 2.0)
    tree = linkage(distances, method="average")
    return fcluster(tree, t=1.0 - similarity, criterion="distance").astype(np.int64) - 1


_RESTARTS = 4


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0, minibatch: bool = False) -> np.ndarray:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if minibatch:  # over-segmentation only: one pass is enough, the merge step fixes the rest
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=1, batch_size=4096)
    else:  # a few restarts: a single k-means run can merge two clear groups and split another
        model = KMeans(n_clusters=k, random_state=seed, n_init=_RESTARTS)
    return model.fit_predict(vectors).astype(np.int64)
