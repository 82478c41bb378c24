"""Probe a data home's chroma index: ``python -m langdream.index.probe HOME``.

A torn HNSW file can crash the process that loads it (a segfault, not an exception), so
``langdream doctor`` never opens a local index itself: it runs this module in a subprocess and
reads one JSON line from it. The probe takes the index lock like any writer (it must not read
files another process is writing), opens every langdream collection, runs one query against
each (which loads its HNSW segment) and reports the insight ids it holds.

An index on a chroma server is probed in-process (``probe_server``): nothing of it is loaded
here, so a damaged server can fail a request but not this process, and there is no directory to
hand to a child.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from langdream.index.server import ChromaServerIndex

PROBE_TIMEOUT_SECONDS = 120


def _vectors_problem(collection: Any, ids: list[str], batch: int) -> str | None:
    """What is wrong with the stored vectors, if anything: every one is read back (a torn HNSW
    data file fails the read, or a torn length file turns vectors into zeros)."""
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        vectors = np.asarray(collection.get(ids=chunk, include=["embeddings"])["embeddings"], dtype=np.float32)
        if len(vectors) != len(chunk):
            return f"{len(chunk) - len(vectors)} of {len(chunk)} vectors are missing"
        norms = np.linalg.norm(vectors, axis=1)
        bad = int(np.sum(~np.isfinite(norms) | (norms < 1e-6)))
        if bad:
            return f"{bad} vectors are zero or not finite"
    return None


def _inspect(index: Any, *, read_vectors: bool) -> dict[str, Any]:
    """Open every collection of ``index``'s memory, query each once (and, with ``read_vectors``,
    read every stored vector back); the insight ids and episode count it holds."""
    from langdream.index.chroma import INSIGHTS

    client = index._client_or_open()
    insight_ids: list[str] = []
    episodes = collections = 0
    for listed in client.list_collections():
        kind = index._kind_of(listed.name)
        if kind is None:
            continue
        collection = client.get_collection(listed.name, embedding_function=None)
        collections += 1
        ids = collection.get(include=[])["ids"]
        if ids:
            if read_vectors and (problem := _vectors_problem(collection, ids, client.get_max_batch_size())) is not None:
                return {"state": "error", "error": f"collection {listed.name}: {problem}"}
            dimension = len(collection.get(ids=ids[:1], include=["embeddings"])["embeddings"][0])
            probe = np.ones((1, dimension), dtype=np.float32) / np.sqrt(dimension)
            found = collection.query(query_embeddings=probe, n_results=min(len(ids), 10), include=["distances"])
            if len(found["ids"][0]) != min(len(ids), 10):
                return {"state": "error", "error": f"collection {listed.name} answers fewer results than it holds"}
        if kind == INSIGHTS:
            insight_ids.extend(ids)
        else:
            episodes += len(ids)
    return {"state": "ok", "insight_ids": sorted(insight_ids), "episodes": episodes, "collections": collections}


def _probe(home: Path, lock_seconds: float) -> dict[str, Any]:
    from langdream.errors import IndexLockedError
    from langdream.index.chroma import ChromaIndex

    path = home / "chroma"
    if not (path / "chroma.sqlite3").exists():
        return {"state": "missing"}
    index = ChromaIndex(path, lock_seconds=lock_seconds)
    try:
        return _inspect(index, read_vectors=True)
    except IndexLockedError as exc:
        return {"state": "locked", "error": exc.message}
    except Exception as exc:  # noqa: BLE001 - whatever chroma raises on a damaged index is the finding
        return {"state": "error", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        index.close()


def probe_server(index: ChromaServerIndex) -> dict[str, Any]:
    """The finding for an index on a chroma server: ``state`` is ok, missing (no collection of
    this memory yet), unreachable (with the error) or error.

    The stored vectors are not read back: a torn file is the server's to detect, and reading
    every vector over HTTP would cost as much as a reindex.
    """
    from langdream.errors import DataHomeError

    try:
        version = index.heartbeat()
        found = _inspect(index, read_vectors=False)
    except DataHomeError as exc:
        return {"state": "unreachable", "error": exc.message}
    except Exception as exc:  # noqa: BLE001 - whatever the server answers instead is the finding
        return {"state": "error", "error": f"{type(exc).__name__}: {exc}"}
    if found["state"] == "ok" and not found["collections"]:
        return {"state": "missing", "version": version}
    return {**found, "version": version}


def probe_index(home: Path, *, lock_seconds: float = 5.0, timeout: float = PROBE_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The probe's finding for ``home``: ``state`` is ok, missing, locked, error or crashed."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "langdream.index.probe", str(home), str(lock_seconds)],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"state": "error", "error": f"the probe did not finish in {timeout:g}s"}
    if done.returncode < 0:
        return {"state": "crashed", "error": f"opening the index killed the probe (signal {-done.returncode})"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"state": "crashed", "error": f"the probe exited with status {done.returncode}: {tail[0]}"}
    return json.loads(lines[-1])


if __name__ == "__main__":
    print(json.dumps(_probe(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 5.0)))
