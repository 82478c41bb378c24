"""Index repair (issue 5, item 5): doctor finds a missing, torn or drifted chroma index, reindex mends it.

One real data home (every shipped HotpotQA run dreamed, then 125 of them recorded again and
dreamed incrementally: 1,119 episodes, so chroma has persisted the episodes' HNSW files, which
it only does past 1,000 vectors) is copied once per kind of damage. Each copy is damaged,
``langdream doctor`` must report it (its probe opens the index in a child process, so a torn
file cannot take the caller down), ``reindex`` rebuilds the index from the ledger, and then the
doctor says ok, every active insight is recalled by its own text, and a fixed query set of 30
real tasks gets the same top-k as before the damage.

The doctor runs are the slow part (each probe is a child process that imports chroma), so the
module fixture runs them for every copy at once, in threads; the tests then check the findings.
"""

from __future__ import annotations

import shutil
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from langdream import DreamMemory
from langdream.doctor import diagnose
from langdream.index.chroma import INSIGHTS, collection_name
from tests.conftest import write_jsonl

NS = ("hotpotqa",)
QUERIES = 30
DRIFT_DROPPED = 5
EXTRA_ID = "ins_not_in_the_ledger"
# Repaired by reindex, then checked end to end.
REPAIRED = ("missing", "hnsw-truncated", "sqlite-truncated", "drifted")
# A single torn HNSW file (a write cut short): the doctor must call it damaged too.
TORN_FILES = ("data_level0.bin", "length.bin")


@dataclass
class Baseline:
    root: Path
    home: Path
    episodes: int
    active: list[str]
    texts: dict[str, str]
    queries: list[str]
    top_k: dict[str, list[str]]
    own_text: dict[str, list[str]]
    seconds: dict[str, float]


@dataclass
class Repair:
    damage: str
    doctor_before: str
    doctor_after: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    top_k: dict[str, list[str]] = field(default_factory=dict)
    own_text: dict[str, list[str]] = field(default_factory=dict)
    owned: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


def _recalls(memory: DreamMemory, queries: list[str], texts: dict[str, str]):
    top_k = {q: memory.recall(q, NS).insight_ids for q in queries}
    own_text = {i: memory.recall(text, NS).insight_ids for i, text in texts.items()}
    return top_k, own_text


def _segments(home: Path) -> list[Path]:
    """The HNSW segment directories chroma persisted (those with their index metadata)."""
    return sorted(p for p in (home / "chroma").iterdir() if p.is_dir() and (p / "index_metadata.pickle").exists())


def _hnsw_header(segment: Path) -> dict[str, int]:
    """The element count and record size chroma's hnswlib wrote in a segment's header.bin
    (persistence version 1: int32 version, then size_t offsetLevel0, max_elements,
    cur_element_count, size_data_per_element)."""
    version, _, max_elements, count, record = struct.unpack_from("<iQQQQ", (segment / "header.bin").read_bytes())
    assert version == 1, f"unknown hnswlib persistence version {version}"
    return {"max_elements": max_elements, "count": count, "record_bytes": record}


def _truncate(path: Path, fraction: float = 0.5) -> tuple[str, int, int]:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(int(size * fraction))
    return path.name, size, int(size * fraction)


def _damage(home: Path, damage: str) -> str:
    """Damage the copy's index; returns what was done, for the report. ``kind@0.1`` truncates to
    that fraction of the size instead of half."""
    chroma = home / "chroma"
    damage, _, at = damage.partition("@")
    fraction = float(at) if at else 0.5
    if damage == "missing":
        shutil.rmtree(chroma)
        return "deleted chroma/"
    if damage == "hnsw-truncated":
        done = [_truncate(f, fraction) for seg in _segments(home) for f in sorted(seg.iterdir())]
        return f"truncated every HNSW file (name, bytes, left): {done}"
    if damage == "sqlite-truncated":
        return f"truncated {_truncate(chroma / 'chroma.sqlite3', fraction)}"
    if damage == "drifted":
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        client = chromadb.PersistentClient(path=str(chroma), settings=ChromaSettings(anonymized_telemetry=False))
        try:
            collection = client.get_collection(collection_name(INSIGHTS, NS), embedding_function=None)
            dropped = sorted(collection.get(include=[])["ids"])[:DRIFT_DROPPED]
            collection.delete(ids=dropped)
            vector = np.random.default_rng(5).normal(size=(1, 384)).astype(np.float32)
            collection.add(ids=[EXTRA_ID], embeddings=vector / np.linalg.norm(vector))
        finally:
            client.close()
        return f"deleted {dropped} from the insights collection and added {EXTRA_ID}"
    name = damage.removeprefix("torn-")
    return f"truncated {[_truncate(seg / name, fraction) for seg in _segments(home)]}"


def _doctor(home: Path) -> str:
    return diagnose(home)["data"]["index health"]


def build_baseline(root: Path, embedder, records: list[dict], again: list[dict]) -> Baseline:
    """Dream over ``records``, then over ``again`` (later runs, fresh ids); note what recall finds."""
    home = root / "baseline"
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    memory = DreamMemory(home, embedder=embedder)
    memory.ingest(write_jsonl(root / "runs.jsonl", records))
    memory.dream(NS)
    memory.ingest(write_jsonl(root / "again.jsonl", again))
    memory.dream(NS)
    seconds["build"] = time.perf_counter() - t
    active = memory.insights(NS)
    episodes = memory.ledger.count_episodes()
    tasks = sorted({r["task"] for r in records})
    queries = tasks[:: len(tasks) // QUERIES][:QUERIES]
    texts = {i.id: i.text for i in active}
    assert memory.index.owned  # these recalls searched chroma, as the repaired copies' will
    t = time.perf_counter()
    top_k, own_text = _recalls(memory, queries, texts)
    seconds["recalls"] = time.perf_counter() - t
    memory.close()
    return Baseline(root, home, episodes, sorted(texts), texts, queries, top_k, own_text, seconds)


def run_repairs(baseline: Baseline, embedder, damages: list[str], repaired: list[str]) -> dict[str, Repair]:
    """Copy the baseline home once per damage and damage it; doctor every copy (in parallel);
    reindex the ``repaired`` ones, recall with them, and doctor them again."""
    homes, done = {}, {}
    for damage in damages:
        homes[damage] = baseline.root / damage
        shutil.copytree(baseline.home, homes[damage])
        done[damage] = _damage(homes[damage], damage)
    t = time.perf_counter()
    with ThreadPoolExecutor(len(damages)) as pool:
        before = dict(zip(damages, pool.map(_doctor, (homes[d] for d in damages))))
    doctor_seconds = time.perf_counter() - t
    results = {d: Repair(d, before[d], seconds={"doctor (all, in parallel)": doctor_seconds}) for d in damages}
    for damage in repaired:
        result = results[damage]
        t = time.perf_counter()
        memory = DreamMemory(homes[damage], embedder=embedder)
        result.counts = memory.reindex()
        result.seconds["reindex"] = time.perf_counter() - t
        result.owned = memory.index.owned
        t = time.perf_counter()
        result.top_k, result.own_text = _recalls(memory, baseline.queries, baseline.texts)
        result.seconds["recalls"] = time.perf_counter() - t
        memory.close()
    t = time.perf_counter()
    with ThreadPoolExecutor(len(repaired)) as pool:
        for damage, health in zip(repaired, pool.map(_doctor, (homes[d] for d in repaired))):
            results[damage].doctor_after = health
            results[damage].seconds["doctor after (all, in parallel)"] = time.perf_counter() - t
    for damage in damages:
        print(f"\n[index repair] {damage}: {done[damage]}\n  doctor before: {results[damage].doctor_before}")
        if damage in repaired:
            print(f"  reindex: {results[damage].counts}; doctor after: {results[damage].doctor_after}")
        print(f"  seconds: { {k: round(v, 2) for k, v in results[damage].seconds.items()} }")
    return results


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, embedder, hotpotqa_records) -> Baseline:
    # The same questions asked again by later runs (fresh ids): an incremental dream, and more
    # than 1,000 episode vectors, past which chroma persists the HNSW files.
    again = [{**r, "id": f"again-{n}", "thread_id": f"again-{n}"} for n, r in enumerate(hotpotqa_records[::8])]
    return build_baseline(tmp_path_factory.mktemp("repair"), embedder, hotpotqa_records, again)


@pytest.fixture(scope="module")
def repairs(baseline: Baseline, embedder) -> dict[str, Repair]:
    return run_repairs(baseline, embedder, [*REPAIRED, *(f"torn-{name}" for name in TORN_FILES)], list(REPAIRED))


def check_baseline(baseline: Baseline) -> None:
    print(f"\n[index repair] baseline: {len(baseline.active)} active insights, seconds {baseline.seconds}")
    assert len(baseline.active) >= 30
    # The premise of the torn-file cases: chroma wrote the episodes' HNSW index to disk, whole.
    headers = [_hnsw_header(segment) for segment in _segments(baseline.home)]
    assert len(headers) == 1 and 1000 <= headers[0]["count"] <= baseline.episodes  # the rest is in chroma's log
    for segment, header in zip(_segments(baseline.home), headers):
        assert (segment / "data_level0.bin").stat().st_size == header["count"] * header["record_bytes"]
        assert (segment / "length.bin").stat().st_size == 4 * header["count"]
    assert all(ids for ids in baseline.top_k.values())
    # Every active insight is found by its own wording before any damage.
    assert [i for i in baseline.active if i not in baseline.own_text[i]] == []


def check_reported(result: Repair) -> None:
    health, damage = result.doctor_before, result.damage.partition("@")[0]
    assert not health.startswith("ok"), health
    assert "reindex" in health
    expected = {"missing": "missing", "hnsw-truncated": "damaged", "sqlite-truncated": "damaged", "drifted": "drifted"}
    assert health.startswith(expected[damage]), health
    if damage == "drifted":
        assert f"({DRIFT_DROPPED} active insights missing, 1 extra)" in health


def check_repaired(result: Repair, baseline: Baseline) -> None:
    assert result.doctor_after.startswith("ok"), result.doctor_after
    assert result.doctor_after == f"ok ({len(baseline.active)} insights, {baseline.episodes} episodes)"
    assert result.counts == {"episodes": baseline.episodes, "insights": len(baseline.active)}
    assert result.owned  # the recalls below searched the rebuilt chroma index, not the ledger
    lost = [i for i in baseline.active if i not in result.own_text[i]]
    assert lost == [], f"{len(lost)} of {len(baseline.active)} active insights not recalled by their own text"
    changed = {
        q: (baseline.top_k[q], result.top_k[q]) for q in baseline.queries if baseline.top_k[q] != result.top_k[q]
    }
    assert changed == {}


def test_the_baseline_is_a_real_learned_memory_with_persisted_hnsw_files(baseline):
    check_baseline(baseline)


@pytest.mark.parametrize("damage", REPAIRED)
def test_doctor_reports_the_damage(repairs, damage):
    check_reported(repairs[damage])


@pytest.mark.parametrize("damage", REPAIRED)
def test_reindex_brings_every_insight_and_the_same_top_k_back(repairs, baseline, damage):
    check_repaired(repairs[damage], baseline)


@pytest.mark.parametrize("torn", TORN_FILES)
def test_doctor_reports_a_single_torn_hnsw_file(repairs, baseline, torn):
    """KNOWN BUG (langdream/index/probe.py): a torn data_level0.bin or length.bin of the episodes'
    HNSW index passes the probe. Chroma still opens the index and answers the probe's one query
    (n_results=10, and the first id's vector only), so doctor says "ok", yet reading the stored
    vectors fails (data_level0.bin: chromadb InternalError "Error getting embedding") or returns
    zero vectors for the lost half (length.bin: 560 of 1,119 vectors come back all zeros, and
    nearest-neighbour answers change). Fix: the probe should read every stored vector (batched
    ``collection.get(include=["embeddings"])``) and call the index damaged when that raises or a
    vector is not finite with norm 1."""
    segment = baseline.root / f"torn-{torn}" / "chroma" / _segments(baseline.home)[0].name
    header = _hnsw_header(segment)
    whole = header["count"] * (header["record_bytes"] if torn == "data_level0.bin" else 4)
    assert (segment / torn).stat().st_size < whole  # torn by its own header's account
    health = repairs[f"torn-{torn}"].doctor_before
    assert not health.startswith("ok"), f"doctor called an index with a torn {torn} healthy: {health}"


@pytest.mark.soak
def test_soak_repair_of_a_bigger_home_torn_at_several_points(tmp_path, embedder, hotpotqa_records):
    """Every shipped run recorded 5 times (4,970 episodes), and truncation at 10%, 50% and 90%."""
    again = [
        {**r, "id": f"again{c}-{n}", "thread_id": f"again{c}-{n}"}
        for c in range(4)
        for n, r in enumerate(hotpotqa_records)
    ]
    baseline = build_baseline(tmp_path, embedder, hotpotqa_records, again)
    check_baseline(baseline)
    damages = [
        "missing",
        "drifted",
        *(f"{kind}@{at}" for kind in ("hnsw-truncated", "sqlite-truncated") for at in (0.1, 0.5, 0.9)),
    ]
    results = run_repairs(baseline, embedder, damages, damages)
    for damage in damages:
        check_reported(results[damage])
        check_repaired(results[damage], baseline)
