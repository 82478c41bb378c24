"""Torch clustering kernels for CUDA: spherical k-means with blocked matrix products.

``kmeans`` is the GPU counterpart of ``cpu.kmeans`` (``k`` given); ``cells`` the counterpart of
``cpu.cells`` (the large-input path's partition: one spherical k-means with as many centroids as
cells, which a GPU does in a few milliseconds per pass, instead of the CPU's tree of small splits).
The code is plain torch and runs on any torch device; the tests run it on the CPU.

No atomics: cluster sums come from a stable sort and a float64 running sum, so on a given device
the same input and seed give the same labels. Random choices come from numpy's generator, so the
CPU and CUDA runs of this code start from the same centroids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_RESTARTS = 4  # as cpu.kmeans
_MAX_ITER = 100  # Lloyd iterations of the k-given k-means (stops earlier when no label changes)
_CELL_ITER = 20  # Lloyd iterations of the cells' k-means
_BLOCK_ELEMENTS = 1 << 26  # similarities held at once (256 MB of float32)
_SUM_BLOCK = 1 << 16  # rows per block of the running sum


def _tensor(vectors: np.ndarray, device: str) -> torch.Tensor:
    import torch

    return torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32), device=torch.device(device))


def _assign(x: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Most similar center of each row, and that similarity (blocked: never n x k at once)."""
    import torch

    step = max(1, _BLOCK_ELEMENTS // max(1, len(centers)))
    labels = torch.empty(len(x), dtype=torch.int64, device=x.device)
    sims = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for a in range(0, len(x), step):
        best = (x[a : a + step] @ centers.T).max(dim=1)
        sims[a : a + step] = best.values
        labels[a : a + step] = best.indices
    return labels, sims


def _sums(x: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster float64 vector sums and sizes, deterministically (sort, running sum, differences
    at the cluster ends) instead of with atomic scatter-adds."""
    import torch

    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=k)
    ends = torch.cumsum(counts, 0)  # exclusive end of each cluster in sorted order
    at_ends = torch.zeros((k, x.shape[1]), dtype=torch.float64, device=x.device)
    carry = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for a in range(0, len(x), _SUM_BLOCK):
        running = x[order[a : a + _SUM_BLOCK]].double().cumsum(0) + carry
        inside = (ends > a) & (ends <= a + len(running))
        at_ends[inside] = running[ends[inside] - 1 - a]
        carry = running[-1]
    sums = at_ends.clone()
    sums[1:] -= at_ends[:-1]
    return sums, counts


def _lloyd(x: torch.Tensor, centers: torch.Tensor, max_iter: int, *, refill: bool) -> tuple[torch.Tensor, float]:
    """Spherical Lloyd iterations from ``centers`` (changed in place): labels and the summed
    similarity of each row to its center. ``refill`` moves the center of an emptied cluster onto the
    row farthest from its own center, so that k clusters stay k."""
    import torch

    k = len(centers)
    labels, sims = _assign(x, centers)
    for _ in range(max_iter):
        sums, _ = _sums(x, labels, k)
        norms = sums.norm(dim=1)
        moved = norms > 0
        centers[moved] = (sums[moved] / norms[moved, None]).to(centers.dtype)
        if refill and not bool(moved.all()):
            empty = torch.nonzero(~moved).flatten()
            far = torch.argsort(sims, stable=True)[: len(empty)]  # least similar rows first
            centers[empty[: len(far)]] = x[far]
        previous = labels
        labels, sims = _assign(x, centers)
        if torch.equal(labels, previous):
            break
    return labels, float(sims.double().sum())


def _kmeans_plus_plus(x: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding on cosine distance (as scikit-learn's: each new center is the best of
    2 + log k candidates drawn in proportion to the distance to the nearest center so far), with
    numpy's generator drawing the candidates."""
    import torch

    trials = 2 + int(np.log(k))
    centers = torch.empty((k, x.shape[1]), dtype=x.dtype, device=x.device)
    centers[0] = x[int(rng.integers(len(x)))]
    gap = (1.0 - x @ centers[0]).clamp_(min=0).double()
    found = 1
    while found < k:
        total = torch.cumsum(gap, 0)
        if float(total[-1]) <= 0:
            break  # fewer distinct directions than k: Lloyd's refill spreads the rest
        targets = torch.as_tensor(rng.random(trials) * float(total[-1]), dtype=torch.float64, device=x.device)
        picks = torch.searchsorted(total, targets, right=True).clamp_(max=len(x) - 1)
        gaps = torch.minimum((1.0 - x @ x[picks].T).clamp_(min=0).double(), gap[:, None])
        best = int(torch.argmin(gaps.sum(0)))
        centers[found] = x[picks[best]]
        gap = gaps[:, best].contiguous()
        found += 1
    if found < k:
        centers[found:] = x[torch.as_tensor(rng.choice(len(x), k - found, replace=False), device=x.device)]
    return centers


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0, device: str = "cuda") -> np.ndarray:
    """Spherical k-means of unit ``vectors`` into ``k`` clusters on ``device``: the best of a few
    k-means++ restarts by summed cosine similarity. Labels as a numpy array."""
    x = _tensor(vectors, device)
    rng = np.random.default_rng(seed)
    best, best_score = None, -np.inf
    for _ in range(_RESTARTS):
        labels, score = _lloyd(x, _kmeans_plus_plus(x, k, rng), _MAX_ITER, refill=True)
        if score > best_score:
            best, best_score = labels, score
    return best.cpu().numpy().astype(np.int64)


def cells(vectors: np.ndarray, n_cells: int, *, seed: int = 0, device: str = "cuda") -> np.ndarray:
    """Cell number of each row of unit ``vectors``: spherical k-means with ``n_cells`` centroids
    started on distinct rows (some cells may end empty; their numbers are simply unused)."""
    import torch

    x = _tensor(vectors, device)
    rng = np.random.default_rng(seed)
    start = torch.as_tensor(np.sort(rng.choice(len(x), n_cells, replace=False)), device=x.device)
    labels, _ = _lloyd(x, x[start].clone(), _CELL_ITER, refill=False)
    return labels.cpu().numpy().astype(np.int64)
