"""The chroma index: explicit vectors only, exact namespaces, batching, reset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from langdream.index import ChromaIndex, IndexHit
from langdream.index.chroma import EPISODES, INSIGHTS

DIM = 16


@pytest.fixture
def index(tmp_path: Path):
    index = ChromaIndex(tmp_path / "chroma")
    yield index
    index.close()


def unit(rows: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_collections_have_no_embedding_function(index):
    for name in (INSIGHTS, EPISODES):
        collection = index._collection(name, ("ns",))
        assert collection.configuration_json.get("embedding_function") is None
        assert collection._embedding_function is None
        assert collection.configuration_json["hnsw"]["space"] == "cosine"


def test_no_embedding_function_after_reopen(tmp_path):
    first = ChromaIndex(tmp_path / "chroma")
    first.upsert_insights(["a"], unit(1), [("ns",)])
    first.close()
    second = ChromaIndex(tmp_path / "chroma")
    try:
        collection = second._collection(INSIGHTS, ("ns",))
        assert collection.configuration_json.get("embedding_function") is None
        assert collection._embedding_function is None
        assert second.insight_ids() == {"a"}
    finally:
        second.close()


def test_index_operations_never_use_chromas_default_embedding_function(tmp_path, monkeypatch):
    # chroma's default embedding function downloads an ONNX model on first use. Every operation
    # of the index passes vectors explicitly, so that function must never run and nothing may
    # reach the network: both are made to fail loudly here.
    import socket

    from chromadb.api.types import DefaultEmbeddingFunction
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    def refuse(*args, **kwargs):
        raise AssertionError("chroma tried to embed text or reach the network")

    def refuse_to_embed(self, input):  # chroma checks an embedding function's signature
        raise AssertionError("chroma tried to embed text")

    monkeypatch.setattr(DefaultEmbeddingFunction, "__call__", refuse_to_embed)
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "__call__", refuse_to_embed)
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "_download_model_if_not_exists", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)

    index = ChromaIndex(tmp_path / "offline-chroma")
    try:
        vectors = unit(6, seed=11)
        index.upsert_insights(["a", "b", "c"], vectors[:3], [("ns",)] * 3)
        index.upsert_episodes(["x", "y", "z"], vectors[3:], [("ns",)] * 3)
        assert [h.id for h in index.query_insights(vectors[0], ("ns",), n=1)] == ["a"]
        assert [h.id for h in index.query_episodes(vectors[4], ("ns",), n=1)] == ["y"]
        assert set(index.episode_vectors(["x", "y"], ("ns",))) == {"x", "y"}
        index.delete_insights(["b"], [("ns",)])
        assert index.insight_ids() == {"a", "c"}
        index.reset()
        index.upsert_insights(["d"], vectors[:1], [("ns",)])
        assert index.insight_ids() == {"d"}
    finally:
        index.close()


def test_upsert_and_query_insights_with_explicit_vectors(index):
    vectors = unit(5, seed=1)
    ids = [f"ins-{i}" for i in range(5)]
    index.upsert_insights(ids, vectors, [("acme",)] * 5)
    assert index.insight_ids() == set(ids)
    hits = index.query_insights(vectors[3], ("acme",), n=3)
    assert all(isinstance(h, IndexHit) for h in hits)
    assert len(hits) == 3
    assert hits[0].id == "ins-3"
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    # Similarities are cosine similarities, sorted best first.
    expected = {ids[i]: float(vectors[i] @ vectors[3]) for i in range(5)}
    for hit in hits:
        assert hit.similarity == pytest.approx(expected[hit.id], abs=1e-4)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert [h.id for h in hits] == sorted(expected, key=expected.get, reverse=True)[:3]


def test_upsert_replaces_the_vector_of_an_id(index):
    a, b = unit(2, seed=2)
    index.upsert_insights(["x"], a[None], [("ns",)])
    index.upsert_insights(["x"], b[None], [("ns",)])
    assert index.insight_ids() == {"x"}
    [hit] = index.query_insights(b, ("ns",), n=1)
    assert hit.id == "x"
    assert hit.similarity == pytest.approx(1.0, abs=1e-4)


def test_query_is_filtered_to_the_exact_namespace(index):
    vector = unit(1, seed=3)[0]
    spaces = {"u1": ("u1",), "u10": ("u10",), "u1-x": ("u1", "x"), "acme": ("acme",), "acme-corp": ("acme-corp",)}
    index.upsert_insights(list(spaces), np.stack([vector] * len(spaces)), list(spaces.values()))
    for name, ns in spaces.items():
        hits = index.query_insights(vector, ns, n=10)
        assert [h.id for h in hits] == [name]
    assert index.query_insights(vector, ("u",), n=10) == []
    assert index.query_insights(vector, ("u1", "x", "y"), n=10) == []


def test_query_episodes_is_filtered_to_the_exact_namespace(index):
    vectors = unit(6, seed=4)
    index.upsert_episodes(
        [f"e{i}" for i in range(6)], vectors, [("u1",), ("u10",), ("u1",), ("u10",), ("u1", "x"), ("u1",)]
    )
    assert {h.id for h in index.query_episodes(vectors[1], ("u1",), n=10)} == {"e0", "e2", "e5"}
    assert {h.id for h in index.query_episodes(vectors[1], ("u10",), n=10)} == {"e1", "e3"}
    assert [h.id for h in index.query_episodes(vectors[4], ("u1", "x"), n=10)] == ["e4"]


def test_delete_insights(index):
    vectors = unit(4, seed=5)
    index.upsert_insights(["a", "b", "c", "d"], vectors, [("ns",)] * 4)
    index.delete_insights(["b", "d", "never-existed"], [("ns",)] * 3)
    assert index.insight_ids() == {"a", "c"}
    assert {h.id for h in index.query_insights(vectors[1], ("ns",), n=10)} == {"a", "c"}
    index.delete_insights([], [])
    assert index.insight_ids() == {"a", "c"}


def test_episode_vectors_round_trip(index):
    vectors = unit(10, seed=6, dim=384)
    ids = [f"ep-{i}" for i in range(10)]
    index.upsert_episodes(ids, vectors, [("ns",)] * 10)
    assert index.episode_count() == 10
    got = index.episode_vectors(ids[::-1] + ["missing"], ("ns",))
    assert set(got) == set(ids)
    for i, episode_id in enumerate(ids):
        assert got[episode_id].dtype == np.float32
        assert got[episode_id].shape == (384,)
        assert np.allclose(got[episode_id], vectors[i], atol=1e-6)
    assert index.episode_vectors([], ("ns",)) == {}
    # Episodes and insights are separate collections.
    assert index.insight_ids() == set()


def test_empty_upserts_are_no_ops(index):
    index.upsert_insights([], np.zeros((0, DIM), np.float32), [])
    index.upsert_episodes([], np.zeros((0, DIM), np.float32), [])
    assert index.insight_ids() == set()
    assert index.episode_count() == 0


def test_batching_stores_everything(index, monkeypatch):
    monkeypatch.setattr(ChromaIndex, "max_batch_size", property(lambda self: 7))
    assert index.max_batch_size == 7
    calls: list[int] = []
    for name in (INSIGHTS, EPISODES):
        collection = index._collection(name, ("ns",))
        original = collection.upsert

        def counted(*args, _original=original, **kwargs):
            calls.append(len(kwargs["ids"]))
            return _original(*args, **kwargs)

        monkeypatch.setattr(collection, "upsert", counted)

    vectors = unit(50, seed=7)
    ids = [f"id-{i:02d}" for i in range(50)]
    index.upsert_insights(ids, vectors, [("ns",)] * 50)
    assert index.insight_ids() == set(ids)
    assert calls == [7] * 7 + [1]

    calls.clear()
    index.upsert_episodes(ids, vectors, [("ns",)] * 50)
    assert index.episode_count() == 50
    assert calls == [7] * 7 + [1]
    got = index.episode_vectors(ids, ("ns",))  # read back in batches of 7 too
    assert set(got) == set(ids)
    assert all(np.allclose(got[i], vectors[n], atol=1e-6) for n, i in enumerate(ids))

    index.delete_insights(ids[:30], [("ns",)] * 30)  # deletes in batches as well
    assert index.insight_ids() == set(ids[30:])


def test_reset_empties_both_collections_and_they_are_usable_again(index):
    vectors = unit(5, seed=8)
    index.upsert_insights([f"i{i}" for i in range(5)], vectors, [("ns",)] * 5)
    index.upsert_episodes([f"e{i}" for i in range(5)], vectors, [("ns",)] * 5)
    index.reset()
    assert index.insight_ids() == set()
    assert index.episode_count() == 0
    assert index.query_insights(vectors[0], ("ns",), n=3) == []
    assert index._collection(INSIGHTS, ("ns",)).configuration_json.get("embedding_function") is None

    index.upsert_insights(["new"], vectors[:1], [("ns",)])
    index.upsert_episodes(["e-new"], vectors[1:2], [("ns",)])
    assert index.insight_ids() == {"new"}
    assert index.episode_count() == 1
    assert [h.id for h in index.query_insights(vectors[0], ("ns",), n=3)] == ["new"]


def test_reset_on_a_fresh_index_is_harmless(index):
    index.reset()
    index.reset()
    assert index.insight_ids() == set()


def test_reset_is_seen_by_a_reopened_index(tmp_path):
    path = tmp_path / "chroma"
    first = ChromaIndex(path)
    first.upsert_insights(["a", "b"], unit(2), [("ns",)] * 2)
    first.reset()
    first.upsert_insights(["c"], unit(1, seed=9), [("ns",)])
    first.close()
    second = ChromaIndex(path)
    try:
        assert second.insight_ids() == {"c"}
    finally:
        second.close()


def test_index_persists_across_close(tmp_path):
    path = tmp_path / "chroma"
    vectors = unit(3, seed=10)
    first = ChromaIndex(path)
    first.upsert_episodes(["e1", "e2", "e3"], vectors, [("ns",)] * 3)
    first.close()
    second = ChromaIndex(path)
    try:
        assert second.episode_count() == 3
        assert np.allclose(second.episode_vectors(["e2"], ("ns",))["e2"], vectors[1], atol=1e-6)
    finally:
        second.close()


def test_index_is_opened_lazily(tmp_path):
    path = tmp_path / "not-yet"
    index = ChromaIndex(path)
    assert not path.exists()
    index.insight_ids()
    assert path.is_dir()
    index.close()
