"""The index on a real chroma server (``chroma run``, see tests/chroma_server.py): the same
operations as the local index, collection prefixes that keep memories apart on one server,
maintenance that never reaches past this memory's collections, and clear errors."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from langdream.config import DEFAULT_CHROMA_PORT, DEFAULT_CHROMA_PREFIX
from langdream.errors import ConfigError, DataHomeError
from langdream.index.chroma import EPISODES, INSIGHTS, ChromaIndex, collection_name, open_index
from langdream.index.probe import probe_server
from langdream.index.server import ChromaServerIndex, mask_url, parse_chroma_url
from tests.chroma_server import chroma_executable, free_port, start_chroma_server, stop_chroma_server

DIM = 16


def unit(rows: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def index(chroma_url):
    index = ChromaServerIndex(chroma_url)
    yield index
    index.reset()
    index.close()


def _server_names(index: ChromaServerIndex) -> set[str]:
    return {c.name for c in index._client_or_open().list_collections()}


# -- the same operations as the local index ---------------------------------------------------


def test_upsert_query_and_delete_insights_on_the_server(index):
    vectors = unit(5, seed=1)
    ids = [f"ins-{i}" for i in range(5)]
    index.upsert_insights(ids, vectors, [("acme",)] * 5)
    assert index.insight_ids() == set(ids)
    hits = index.query_insights(vectors[3], ("acme",), n=3)
    expected = {ids[i]: float(vectors[i] @ vectors[3]) for i in range(5)}
    assert [h.id for h in hits] == sorted(expected, key=expected.get, reverse=True)[:3]
    for hit in hits:
        assert hit.similarity == pytest.approx(expected[hit.id], abs=1e-4)
    index.delete_insights(["ins-1", "ins-3", "never-existed"], [("acme",)] * 3)
    assert index.insight_ids() == {"ins-0", "ins-2", "ins-4"}
    assert "ins-3" not in {h.id for h in index.query_insights(vectors[3], ("acme",), n=5)}


def test_episode_vectors_round_trip_and_namespaces_stay_exact(index):
    vectors = unit(6, seed=2, dim=384)
    namespaces = [("u1",), ("u10",), ("u1",), ("u10",), ("u1", "x"), ("u1",)]
    index.upsert_episodes([f"e{i}" for i in range(6)], vectors, namespaces)
    assert index.episode_count() == 6
    got = index.episode_vectors(["e0", "e2", "e5", "e1", "missing"], ("u1",))
    assert set(got) == {"e0", "e2", "e5"}  # e1 lives in ("u10",)
    assert all(np.allclose(got[f"e{i}"], vectors[i], atol=1e-6) for i in (0, 2, 5))
    assert {h.id for h in index.query_episodes(vectors[1], ("u10",), n=10)} == {"e1", "e3"}
    assert [h.id for h in index.query_episodes(vectors[4], ("u1", "x"), n=10)] == ["e4"]
    assert index.query_episodes(vectors[4], ("u",), n=10) == []
    index.delete_episodes(["e0"], [("u1",)])
    assert index.episode_count() == 5
    assert index.insight_ids() == set()  # episodes and insights are separate collections


def test_upserts_are_batched_to_the_servers_limit(index, monkeypatch):
    monkeypatch.setattr(ChromaServerIndex, "max_batch_size", property(lambda self: 7))
    calls: list[int] = []
    collection = index._collection(INSIGHTS, ("ns",))
    original = collection.upsert

    def counted(*args, **kwargs):
        calls.append(len(kwargs["ids"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(collection, "upsert", counted)
    ids = [f"id-{i:02d}" for i in range(50)]
    index.upsert_insights(ids, unit(50, seed=3), [("ns",)] * 50)
    assert calls == [7] * 7 + [1]
    assert index.insight_ids() == set(ids)


def test_collections_are_prefixed_and_have_no_embedding_function(index):
    index.upsert_insights(["a"], unit(1), [("ns",)])
    index.upsert_episodes(["e"], unit(1), [("ns",)])
    prefix = index.server.prefix
    mine = {n for n in _server_names(index) if n.startswith(f"{prefix}_")}
    assert mine == {f"{prefix}_{collection_name(INSIGHTS, ('ns',))}", f"{prefix}_{collection_name(EPISODES, ('ns',))}"}
    for kind in (INSIGHTS, EPISODES):
        collection = index._collection(kind, ("ns",))
        assert collection.configuration_json.get("embedding_function") is None
        assert collection._embedding_function is None
        assert collection.configuration_json["hnsw"]["space"] == "cosine"


def test_every_process_owns_a_server_index(index):
    # No directory and no flock: the server serializes requests, so every process may write.
    assert index.owned and index.try_own()
    index.lock.acquire()
    index.lock.release()
    assert index.owned and index.remote
    assert not ChromaIndex(Path(tempfile.gettempdir()) / "never-opened").remote


# -- two memories on one server ---------------------------------------------------------------


def test_two_prefixes_on_one_server_stay_apart(chroma_server):
    first = ChromaServerIndex(chroma_server.url_with(prefix="apart-one"))
    second = ChromaServerIndex(chroma_server.url_with(prefix="apart-two"))
    try:
        a, b = unit(2, seed=4)
        # The same namespace and the same ids in both memories.
        first.upsert_insights(["shared-id"], a[None], [("acme",)])
        second.upsert_insights(["shared-id", "only-two"], np.stack([b, a]), [("acme",)] * 2)
        first.upsert_episodes(["ep"], a[None], [("acme",)])
        assert first.insight_ids() == {"shared-id"}
        assert second.insight_ids() == {"shared-id", "only-two"}
        [hit] = first.query_insights(b, ("acme",), n=5)
        assert hit.similarity == pytest.approx(float(a @ b), abs=1e-4)  # first's own vector, not second's
        assert second.episode_count() == 0 and first.episode_count() == 1

        second.reset()  # drops second's collections only
        assert second.insight_ids() == set()
        assert first.insight_ids() == {"shared-id"} and first.episode_count() == 1
        second.upsert_insights(["again"], b[None], [("acme",)])
        first.wipe()  # on a server, wipe drops this memory's collections, never the server's
        assert first.insight_ids() == set() and first.episode_count() == 0
        assert second.insight_ids() == {"again"}
    finally:
        for index in (first, second):
            index.reset()
            index.close()


def test_reset_leaves_other_applications_collections_alone(index):
    client = index._client_or_open()
    lookalikes = [
        "ldi_" + "0" * 32,  # a local-style name without this memory's prefix
        f"{index.server.prefix}_notes",  # this prefix, but not a langdream collection
        f"{index.server.prefix}_ldi_{'1' * 32}_copy",
    ]
    for name in lookalikes:
        client.get_or_create_collection(name, embedding_function=None)
    try:
        index.upsert_insights(["a"], unit(1), [("ns",)])
        assert index.insight_ids() == {"a"}
        index.reset()
        names = _server_names(index)
        assert set(lookalikes) <= names
        assert not any(index._kind_of(n) for n in names)
    finally:
        for name in lookalikes:
            client.delete_collection(name)


# -- maintenance ------------------------------------------------------------------------------


def test_drop_namespace_and_rebuild_on_the_server(index):
    vectors = unit(6, seed=5)
    index.upsert_insights(["i1", "i2"], vectors[:2], [("keep",), ("gone",)])
    index.upsert_episodes(["e1", "e2", "e3", "e4"], vectors[2:], [("keep",)] * 3 + [("gone",)])
    index.drop_namespace(("gone",))
    assert index.insight_ids() == {"i1"}
    assert index.episode_count() == 3
    index.delete_episodes(["e2"], [("keep",)])
    old_ids = {index.name(k, ("keep",)): index._collection(k, ("keep",)).id for k in (INSIGHTS, EPISODES)}
    assert index.rebuild(("keep",)) == 3  # i1, e1, e3
    assert index.rebuild(("never-seen",)) == 0
    for kind in (INSIGHTS, EPISODES):
        assert index._collection(kind, ("keep",)).id != old_ids[index.name(kind, ("keep",))]  # recreated
    got = index.episode_vectors(["e1", "e2", "e3"], ("keep",))
    assert set(got) == {"e1", "e3"}
    assert np.allclose(got["e3"], vectors[4], atol=1e-6)
    assert [h.id for h in index.query_insights(vectors[0], ("keep",), n=3)] == ["i1"]
    index.vacuum()  # the server owns its files: nothing to do, and no error
    assert index.insight_ids() == {"i1"}


def test_a_collection_dropped_by_another_client_is_recreated_on_next_use(chroma_url):
    # Two clients of one memory, as two processes are: one drops what the other has cached.
    writer, other = ChromaServerIndex(chroma_url), ChromaServerIndex(chroma_url)
    try:
        vectors = unit(3, seed=6)
        writer.upsert_insights(["a"], vectors[:1], [("ns",)])
        assert [h.id for h in other.query_insights(vectors[0], ("ns",), n=2)] == ["a"]  # cached in `other`
        writer.reset()
        assert other.query_insights(vectors[0], ("ns",), n=2) == []
        other.upsert_insights(["b"], vectors[1:2], [("ns",)])
        assert writer.insight_ids() == {"b"}
    finally:
        writer.reset()
        writer.close()
        other.close()


def test_chroma_vacuum_of_the_stopped_server_purges_deleted_ids_from_its_files(tmp_path):
    # What docs/deploy.md tells operators to do after a forget: the server keeps deleted rows in
    # its SQLite file's free pages until `chroma vacuum` rewrites it.
    server = start_chroma_server(tmp_path)
    ids = [f"forgotten-run-{i:03d}" for i in range(20)]
    index = ChromaServerIndex(server.url_with(prefix="vacuumed"))
    try:
        index.upsert_episodes(ids, unit(20, seed=9), [("ns",)] * 20)
        index.delete_episodes(ids[:10], [("ns",)] * 10)
        assert index.rebuild(("ns",)) == 10
    finally:
        index.close()
        stop_chroma_server(server)
    done = subprocess.run(
        [chroma_executable(), "vacuum", "--path", str(server.path), "--force"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    assert done.returncode == 0, done.stderr
    files = b"".join(p.read_bytes() for p in server.path.rglob("*") if p.is_file())
    assert not [i for i in ids[:10] if i.encode() in files]
    assert all(i.encode() in files for i in ids[10:])  # the kept ones: the scan reads the right files


def test_probe_server_reports_the_ids_it_holds(index):
    assert probe_server(index)["state"] == "missing"
    index.upsert_insights(["b", "a"], unit(2, seed=7), [("ns",)] * 2)
    index.upsert_episodes(["e"], unit(1, seed=8), [("ns",)])
    found = probe_server(index)
    assert found["state"] == "ok"
    assert found["insight_ids"] == ["a", "b"]
    assert found["episodes"] == 1
    assert found["version"]


# -- errors -----------------------------------------------------------------------------------


def test_an_unreachable_server_is_a_data_home_error_with_a_hint():
    port = free_port()  # nothing listens there
    index = ChromaServerIndex(f"http://alice:s3cret@127.0.0.1:{port}?prefix=nobody")
    # Connecting is lazy: a memory that only records never needs the index.
    with pytest.raises(DataHomeError) as caught:
        index.query_insights(unit(1)[0], ("ns",), n=1)
    assert f"127.0.0.1:{port}" in caught.value.message
    assert "s3cret" not in str(caught.value)  # the password is masked
    assert "chroma run" in caught.value.hint and "LANGDREAM_CHROMA_URL" in caught.value.hint
    found = probe_server(index)
    assert found["state"] == "unreachable" and "cannot reach" in found["error"]


def test_a_server_that_goes_away_is_a_data_home_error(tmp_path):
    server = start_chroma_server(tmp_path)
    index = ChromaServerIndex(server.url_with(prefix="short-lived"))
    try:
        index.upsert_insights(["a"], unit(1), [("ns",)])
        stop_chroma_server(server)
        with pytest.raises(DataHomeError, match="cannot reach the chroma server") as caught:
            index.upsert_insights(["b"], unit(1, seed=1), [("ns",)])
        assert caught.value.hint
    finally:
        stop_chroma_server(server)
        index.close()


def test_a_missing_database_is_named(chroma_server):
    index = ChromaServerIndex(chroma_server.url_with(database="no-such-db"))
    with pytest.raises(DataHomeError, match="no-such-db") as caught:
        index.insight_ids()
    assert "create" in caught.value.hint


# -- URLs -------------------------------------------------------------------------------------


def test_parse_chroma_url_defaults_and_options():
    plain = parse_chroma_url("http://chroma.internal")
    assert (plain.host, plain.port, plain.ssl) == ("chroma.internal", DEFAULT_CHROMA_PORT, False)
    assert plain.prefix == DEFAULT_CHROMA_PREFIX
    assert (plain.tenant, plain.database) == ("default_tenant", "default_database")
    assert plain.headers == {}

    full = parse_chroma_url("https://svc:p%40ss@chroma.example.com?prefix=support-bot&tenant=acme&database=prod")
    assert (full.host, full.port, full.ssl, full.prefix) == ("chroma.example.com", 443, True, "support-bot")
    assert (full.tenant, full.database) == ("acme", "prod")
    assert full.headers["Authorization"] == "Basic " + base64.b64encode(b"svc:p@ss").decode()
    assert "p%40ss" not in full.url and "***" in full.url

    token = parse_chroma_url("https://:tok-123@chroma.example.com:8443/")
    assert token.port == 8443 and token.headers == {"Authorization": "Bearer tok-123"}
    assert "tok-123" not in token.url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://h/db", "scheme"),
        ("chroma.internal:8000", "scheme"),
        ("http://", "no host"),
        ("http://h:8000/chroma", "path"),
        ("http://h:99999", "out of range"),
        ("http://h?collection=x", "unknown option"),
        ("http://h?prefix=", "empty"),
        ("http://h?prefix=-bad", "prefix"),
        ("http://h?prefix=has.dot", "prefix"),
        ("http://alice@h", "without a password"),
    ],
)
def test_bad_chroma_urls_are_config_errors(url, problem):
    with pytest.raises(ConfigError, match=problem) as caught:
        ChromaServerIndex(url)
    assert "http[s]://" in caught.value.hint


def test_mask_url_hides_passwords_and_secret_options():
    assert mask_url("postgresql://app:hunter2@db:5432/ld") == "postgresql://app:***@db:5432/ld"
    assert mask_url("https://:tok@h") == "https://:***@h"
    assert mask_url("postgresql://db/ld?user=app&password=x&sslmode=require") == (
        "postgresql://db/ld?user=app&password=***&sslmode=require"
    )
    assert mask_url("http://h:8000?prefix=p") == "http://h:8000?prefix=p"


def test_open_index_picks_the_server_only_for_a_url(tmp_path):
    local = open_index(tmp_path / "chroma")
    assert isinstance(local, ChromaIndex) and not local.remote
    remote = open_index(tmp_path / "chroma", "http://127.0.0.1:1?prefix=p")
    assert isinstance(remote, ChromaServerIndex) and remote.remote
    assert "collections p_*" in remote.location
    assert not (tmp_path / "chroma").exists()  # neither opened anything yet
    shutil.rmtree(tmp_path / "chroma", ignore_errors=True)
