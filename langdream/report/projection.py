"""A deterministic 2-D map of embeddings: PCA by numpy's SVD, then fitted into a drawing box."""

from __future__ import annotations

import math

import numpy as np


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components of ``vectors`` (n × d) as n × 2 coordinates.

    Deterministic: SVD's signs are arbitrary (they can differ between BLAS builds), so each axis
    is flipped to make its largest loading positive, as scikit-learn does. Axes without spread
    (fewer than three distinct points, or identical vectors) stay at 0.
    """
    data = np.asarray(vectors, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"expected an n × d matrix of vectors, got shape {data.shape}")
    n = data.shape[0]
    coords = np.zeros((n, 2), dtype=np.float64)
    if n < 2 or data.shape[1] == 0:
        return coords
    centred = data - data.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.argmax(np.abs(components), axis=1)])
    signs[signs == 0] = 1.0
    components = components * signs[:, None]
    # A component of (numerically) zero variance is rounding noise: keep that axis flat.
    live = singular[:k] > max(float(singular[0]), 1e-12) * 1e-9
    coords[:, :k] = (centred @ components.T) * live
    return coords


def fit_to_box(coords: np.ndarray, width: float, height: float, pad: float, *, max_stretch: float = 1.6) -> np.ndarray:
    """``coords`` (n × 2) scaled into a ``width`` × ``height`` box, ``pad`` from its edges, centred.

    Each axis is scaled to fill the box, but one is never stretched more than ``max_stretch``
    times the other, so the map's proportions stay close to the embedding's. The y axis points
    up, as on a chart. A cloud without spread sits in the middle.
    """
    points = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    inner = np.array([max(width - 2 * pad, 1.0), max(height - 2 * pad, 1.0)])
    if points.shape[0] == 0:
        return points
    low, high = points.min(axis=0), points.max(axis=0)
    spread = high - low
    # Units per pixel on each axis when it alone fills the box; a flat axis follows the other.
    need = np.where(spread > 0, spread / inner, 0.0)
    if not need.any():
        need[:] = 1.0
    need = np.where(need > 0, need, need.max())
    scale = np.maximum(need, need.max() / max_stretch)
    placed = (points - (low + high) / 2.0) / scale + inner / 2.0 + pad
    placed[:, 1] = height - placed[:, 1]
    return placed


def spread_duplicates(coords: np.ndarray, step: float, *, tolerance: float = 0.5) -> np.ndarray:
    """Points that land on one spot (runs of one task share one embedding) fanned out around it.

    The k-th point at a spot (k ≥ 1, in input order) moves ``step·√k`` along the golden angle (a
    sunflower), so ten runs of one question show as a small tight bunch rather than one mark.
    """
    placed = np.array(coords, dtype=np.float64).reshape(-1, 2)
    seen: dict[tuple[int, int], int] = {}
    golden = np.pi * (3.0 - np.sqrt(5.0))
    for n, (x, y) in enumerate(placed):
        key = (math.floor(x / tolerance + 0.5), math.floor(y / tolerance + 0.5))
        k = seen.get(key, 0)
        seen[key] = k + 1
        if k:
            placed[n] += step * np.sqrt(k) * np.array([np.cos(k * golden), np.sin(k * golden)])
    return placed
