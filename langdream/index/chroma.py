"""Chroma as langdream's index of insight and episode embeddings.

The ledger is the source of truth; this index only speeds up similarity search and can be
rebuilt from the ledger at any time (``langdream reindex``). Embeddings are always passed in
explicitly (chroma's own default embedding function downloads a model, so collections are
created with ``embedding_function=None``), ids are the ledger's ids, and every record carries
its exact namespace key so a query never crosses namespaces.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from langdream.errors import DataHomeError
from langdream.namespace import Namespace, namespace_key

logger = logging.getLogger("langdream.index")

INSIGHTS = "langdream_insights"
EPISODES = "langdream_episodes"


@dataclass(frozen=True)
class IndexHit:
    id: str
    similarity: float


class ChromaIndex:
    """A chroma ``PersistentClient`` under ``path``, opened on first use."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._client = None
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client_or_open(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import chromadb
                    from chromadb.config import Settings as ChromaSettings

                    try:
                        self.path.mkdir(parents=True, exist_ok=True)
                        self._client = chromadb.PersistentClient(
                            path=str(self.path), settings=ChromaSettings(anonymized_telemetry=False)
                        )
                    except Exception as exc:
                        raise DataHomeError(
                            f"cannot open the chroma index at {self.path}: {exc}",
                            hint="run `langdream doctor`; `langdream reindex` rebuilds the index from the ledger",
                        ) from exc
        return self._client

    def _collection(self, name: str):
        collection = self._collections.get(name)
        if collection is None:
            client = self._client_or_open()
            with self._lock:
                collection = self._collections.get(name)
                if collection is None:
                    collection = client.get_or_create_collection(
                        name, embedding_function=None, metadata={"hnsw:space": "cosine"}
                    )
                    self._collections[name] = collection
        return collection

    @property
    def max_batch_size(self) -> int:
        return int(self._client_or_open().get_max_batch_size())

    def _upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict]) -> None:
        if not ids:
            return
        collection = self._collection(name)
        step = self.max_batch_size
        for start in range(0, len(ids), step):
            end = start + step
            collection.upsert(
                ids=list(ids[start:end]),
                embeddings=np.asarray(vectors[start:end], dtype=np.float32),
                metadatas=list(metadatas[start:end]),
            )

    def _delete(self, name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        collection = self._collection(name)
        step = self.max_batch_size
        for start in range(0, len(ids), step):
            collection.delete(ids=list(ids[start : start + step]))

    def _query(self, name: str, vector: np.ndarray, namespace: Namespace, n: int) -> list[IndexHit]:
        collection = self._collection(name)
        result = collection.query(
            query_embeddings=np.asarray([vector], dtype=np.float32),
            n_results=n,
            where={"ns": namespace_key(namespace)},
            include=["distances"],
        )
        ids, distances = result["ids"][0], result["distances"][0]
        # chroma's cosine space returns 1 - cosine similarity.
        return [IndexHit(i, 1.0 - float(d)) for i, d in zip(ids, distances)]

    # -- insights ----------------------------------------------------------------------------

    def upsert_insights(self, ids: Sequence[str], vectors: np.ndarray, namespaces: Sequence[Namespace]) -> None:
        self._upsert(INSIGHTS, ids, vectors, [{"ns": namespace_key(ns)} for ns in namespaces])

    def delete_insights(self, ids: Sequence[str]) -> None:
        self._delete(INSIGHTS, ids)

    def query_insights(self, vector: np.ndarray, namespace: Namespace, n: int) -> list[IndexHit]:
        return self._query(INSIGHTS, vector, namespace, n)

    def insight_ids(self) -> set[str]:
        return set(self._collection(INSIGHTS).get(include=[])["ids"])

    # -- episodes ----------------------------------------------------------------------------

    def upsert_episodes(self, ids: Sequence[str], vectors: np.ndarray, namespaces: Sequence[Namespace]) -> None:
        self._upsert(EPISODES, ids, vectors, [{"ns": namespace_key(ns)} for ns in namespaces])

    def episode_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        collection = self._collection(EPISODES)
        found: dict[str, np.ndarray] = {}
        step = self.max_batch_size
        for start in range(0, len(ids), step):
            got = collection.get(ids=list(ids[start : start + step]), include=["embeddings"])
            for i, vector in zip(got["ids"], got["embeddings"]):
                found[i] = np.asarray(vector, dtype=np.float32)
        return found

    def query_episodes(self, vector: np.ndarray, namespace: Namespace, n: int) -> list[IndexHit]:
        return self._query(EPISODES, vector, namespace, n)

    def episode_count(self) -> int:
        return int(self._collection(EPISODES).count())

    # -- maintenance -------------------------------------------------------------------------

    def reset(self) -> None:
        """Drop both collections; they are recreated empty on next use."""
        client = self._client_or_open()
        with self._lock:
            for name in (INSIGHTS, EPISODES):
                try:
                    client.delete_collection(name)
                except Exception:  # chroma raises a backend-specific error for a missing collection
                    logger.debug("collection %s did not exist", name)
            self._collections.clear()

    def close(self) -> None:
        with self._lock:
            self._collections.clear()
            self._client = None
