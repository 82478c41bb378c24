"""Clustering of unit vectors: automatic (average linkage), explicit k, and micro-clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, v_measure_score

from langdream.cluster import NOISE, ClusterResult, cluster
from langdream.cluster.cpu import pairwise_bytes
from tests.conftest import SHARED_DATA

CLINC150 = SHARED_DATA / "clinc150" / "data_full.json"
TIGHT = 100_000  # bytes: too few for a pairwise matrix of 60+ points, enough for ~50 cells


def groups(sizes: list[int], *, dim: int = 384, noise: float = 0.6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors scattered around random unit centers (within-group cosine ~0.7, across ~0)."""
    rng = np.random.default_rng(seed)
    vectors, labels = [], []
    for label, size in enumerate(sizes):
        center = rng.normal(size=dim)
        center /= np.linalg.norm(center)
        vectors.append(center + noise * rng.normal(size=(size, dim)) / np.sqrt(dim))
        labels += [label] * size
    out = np.concatenate(vectors)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32), np.array(labels)


def shuffled(vectors: np.ndarray, labels: np.ndarray, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(labels))
    return vectors[order], labels[order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_automatic_path_recovers_well_separated_groups(seed):
    vectors, truth = shuffled(*groups([20] * 5, seed=seed), seed=seed)
    result = cluster(vectors)
    assert isinstance(result, ClusterResult)
    assert result.method == "average-linkage"
    assert result.labels.shape == (100,)
    assert result.n_clusters == 5
    assert result.noise == 0
    assert adjusted_rand_score(truth, result.labels) >= 0.95


def test_groups_smaller_than_min_cluster_size_become_noise():
    vectors, truth = groups([20, 15, 2, 1])
    result = cluster(vectors, min_cluster_size=3)
    assert result.n_clusters == 2
    assert result.noise == 3
    assert (result.labels[truth >= 2] == NOISE).all()
    assert (result.labels[truth < 2] != NOISE).all()
    big = truth < 2
    assert adjusted_rand_score(truth[big], result.labels[big]) == pytest.approx(1.0)

    # With a larger minimum, the 15-group is noise too.
    stricter = cluster(vectors, min_cluster_size=16)
    assert stricter.n_clusters == 1
    assert (stricter.labels[truth == 0] == 0).all()
    assert (stricter.labels[truth != 0] == NOISE).all()


def test_unrelated_points_are_all_noise():
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(30, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    result = cluster(vectors, min_cluster_size=2)
    assert result.n_clusters == 0
    assert result.noise == 30
    assert result.members() == []


def test_similarity_threshold_controls_merging():
    # Two groups whose centers are close (cosine ~0.8): merged at a loose threshold, split at a strict one.
    rng = np.random.default_rng(7)
    base = rng.normal(size=384)
    base /= np.linalg.norm(base)
    other = rng.normal(size=384)
    other -= (other @ base) * base
    other /= np.linalg.norm(other)
    centers = [base, 0.8 * base + 0.6 * other]
    vectors = np.concatenate([c + 0.2 * rng.normal(size=(15, 384)) / np.sqrt(384) for c in centers])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    assert cluster(vectors, similarity=0.5).n_clusters == 1
    assert cluster(vectors, similarity=0.9).n_clusters == 2


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_explicit_k_gives_exactly_k_labels_and_no_noise(k):
    vectors, _ = groups([20] * 5)
    result = cluster(vectors, k=k)
    assert result.method == "kmeans"
    assert result.n_clusters == k
    assert result.noise == 0
    assert set(result.labels.tolist()) == set(range(k))


def test_explicit_k_keeps_singletons_and_caps_at_n():
    vectors, _ = groups([1, 1, 1], seed=3)
    result = cluster(vectors, k=3, min_cluster_size=5)
    # min_cluster_size does not turn k-means groups into noise.
    assert sorted(result.labels.tolist()) == [0, 1, 2]
    capped = cluster(vectors, k=10)
    assert capped.n_clusters == 3
    assert capped.noise == 0


def test_explicit_k_must_be_positive():
    vectors, _ = groups([5])
    with pytest.raises(ValueError):
        cluster(vectors, k=0)


def test_explicit_k_recovers_groups_with_the_default_seed():
    vectors, truth = shuffled(*groups([20] * 5, seed=1), seed=1)
    result = cluster(vectors, k=5)
    assert adjusted_rand_score(truth, result.labels) >= 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_micro_cluster_path_recovers_groups(seed):
    vectors, truth = shuffled(*groups([20] * 5, seed=seed), seed=seed)
    assert pairwise_bytes(len(vectors)) > TIGHT
    result = cluster(vectors, memory_bytes=TIGHT)
    assert result.method == "kmeans+average-linkage"
    assert result.labels.shape == (100,)
    assert adjusted_rand_score(truth, result.labels) >= 0.9


def test_micro_cluster_path_still_drops_small_groups():
    vectors, truth = shuffled(*groups([40, 30, 2], seed=4), seed=4)
    result = cluster(vectors, memory_bytes=TIGHT, min_cluster_size=5)
    assert result.method == "kmeans+average-linkage"
    assert result.n_clusters == 2
    assert (result.labels[truth == 2] == NOISE).all()
    assert adjusted_rand_score(truth[truth < 2], result.labels[truth < 2]) >= 0.9


@pytest.mark.parametrize("kwargs", [{}, {"k": 5}, {"memory_bytes": TIGHT}])
def test_results_are_deterministic(kwargs):
    vectors, _ = shuffled(*groups([20] * 5, seed=6), seed=6)
    first = cluster(vectors, **kwargs)
    second = cluster(vectors.copy(), **kwargs)
    assert np.array_equal(first.labels, second.labels)
    assert first.method == second.method


def test_empty_input():
    result = cluster(np.zeros((0, 384), dtype=np.float32))
    assert result.labels.shape == (0,)
    assert result.n_clusters == 0
    assert result.noise == 0
    assert result.members() == []
    assert cluster(np.zeros((0, 384), dtype=np.float32), k=3).labels.shape == (0,)


def test_fewer_points_than_min_cluster_size_are_noise():
    vectors, _ = groups([2])
    result = cluster(vectors, min_cluster_size=3)
    assert result.labels.tolist() == [NOISE, NOISE]
    assert result.n_clusters == 0


def test_single_point_with_min_size_one_is_a_cluster():
    vectors, _ = groups([1])
    result = cluster(vectors, min_cluster_size=1)
    assert result.labels.tolist() == [0]
    assert result.n_clusters == 1


@pytest.mark.parametrize("kwargs", [{}, {"k": 3}, {"memory_bytes": TIGHT}])
def test_labels_are_numbered_by_cluster_size_descending(kwargs):
    sizes = [10, 30, 20]  # the input order of the groups is not their size order
    vectors, truth = shuffled(*groups(sizes, seed=8), seed=8)
    result = cluster(vectors, **kwargs)
    assert result.n_clusters == 3
    counts = [int((result.labels == c).sum()) for c in range(result.n_clusters)]
    assert counts == [30, 20, 10]
    # Label 0 is the 30-group, label 1 the 20-group, label 2 the 10-group.
    for label, group in enumerate([1, 2, 0]):
        assert (result.labels[truth == group] == label).all()
    members = result.members()
    assert [len(m) for m in members] == [30, 20, 10]
    assert all((result.labels[m] == c).all() for c, m in enumerate(members))


def test_equal_sized_clusters_are_numbered_by_first_member():
    vectors, truth = groups([10, 10, 10], seed=9)
    result = cluster(vectors)
    assert result.labels[0] == 0
    assert result.labels[10] == 1
    assert result.labels[20] == 2


def test_accepts_float64_and_lists():
    vectors, truth = groups([10, 10], seed=10)
    as_float64 = cluster(vectors.astype(np.float64))
    as_list = cluster(vectors.tolist())
    assert np.array_equal(as_float64.labels, cluster(vectors).labels)
    assert np.array_equal(as_list.labels, cluster(vectors).labels)
    assert adjusted_rand_score(truth, as_list.labels) == pytest.approx(1.0)


# -- real data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clinc_sample() -> tuple[list[str], np.ndarray]:
    """30 training utterances of each of the first 10 intents of CLINC150 (300 in all)."""
    if not CLINC150.exists():
        pytest.skip(f"CLINC150 data not found at {CLINC150}; the real-data clustering check needs it")
    data = json.loads(CLINC150.read_text(encoding="utf-8"))
    intents: list[str] = []
    for _, intent in data["train"]:
        if intent not in intents:
            intents.append(intent)
        if len(intents) == 10:
            break
    per_intent = {intent: 0 for intent in intents}
    texts, labels = [], []
    for text, intent in data["train"]:
        if intent in per_intent and per_intent[intent] < 30:
            per_intent[intent] += 1
            texts.append(text)
            labels.append(intents.index(intent))
    assert len(texts) == 300
    return texts, np.array(labels)


def test_clinc150_intents_are_recovered_with_k(clinc_sample, embedder):
    texts, truth = clinc_sample
    vectors = embedder.embed(texts)
    result = cluster(vectors, k=10)
    assert result.n_clusters == 10
    assert result.noise == 0
    # Measured 0.979 with the default seed (0.90-0.98 over seeds 0-4).
    assert v_measure_score(truth, result.labels) >= 0.88


def test_clinc150_automatic_path_finds_the_intents(clinc_sample, embedder):
    texts, truth = clinc_sample
    vectors = embedder.embed(texts)
    result = cluster(vectors)
    assert result.method == "average-linkage"
    clustered = result.labels != NOISE
    # Most utterances land in a cluster, and the clusters are nearly pure.
    # Measured: 86% clustered, V-measure 0.926 over the clustered ones.
    assert clustered.mean() >= 0.8
    assert v_measure_score(truth[clustered], result.labels[clustered]) >= 0.88
