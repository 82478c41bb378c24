"""Chroma as langdream's index of insight and episode embeddings.

The ledger is the source of truth; this index only speeds up similarity search and can be
rebuilt from the ledger at any time (``langdream reindex``). Embeddings are always passed in
explicitly (chroma's own default embedding function downloads a model, so collections are
created with ``embedding_function=None``) and ids are the ledger's ids.

Each namespace has its own pair of collections, named by a hash of its exact key. A query then
never crosses namespaces by construction, and it needs no metadata filter: chroma pre-filters a
``where`` clause through its metadata table, which at 100k records made one query ~300 ms
instead of ~1.5 ms.

Chroma is reached in one of two ways that share everything but the client: ``ChromaIndex``
opens a directory in the data home (one process at a time, see ``IndexLock``), and
``ChromaServerIndex`` (``langdream.index.server``) talks to a ``chroma run`` server, which
serializes its clients, so every process may use it; its collection names carry a prefix so
that memories can share a server. Both are a ``ChromaCore``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import shutil
import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from langdream.config import DEFAULT_INDEX_LOCK_SECONDS
from langdream.crashpoints import crash_point
from langdream.errors import DataHomeError
from langdream.index.lock import IndexLock, ServerIndexLock
from langdream.namespace import Namespace, namespace_key

INSIGHTS = "ldi"
EPISODES = "lde"
KINDS = (INSIGHTS, EPISODES)
_BOUNDARY = {INSIGHTS: "index.insights", EPISODES: "index.episodes"}
# Chroma keeps each vector segment's HNSW files in a directory named by the segment's UUID.
_SEGMENT_DIR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Next to the chroma directory, so rebuilding the directory keeps the lock.
LOCK_FILE = "index.lock"
_T = TypeVar("_T")


def collection_name(kind: str, namespace: Namespace) -> str:
    """``ldi_<hash>`` / ``lde_<hash>``: chroma names allow only 3-512 characters of [a-zA-Z0-9._-]."""
    return f"{kind}_{hashlib.sha256(namespace_key(namespace).encode()).hexdigest()[:32]}"


def _group_by_namespace(namespaces: Sequence[Namespace]) -> list[tuple[Namespace, list[int]]]:
    """Row numbers per namespace, in first-seen order."""
    groups: dict[str, tuple[Namespace, list[int]]] = {}
    for row, namespace in enumerate(namespaces):
        groups.setdefault(namespace_key(namespace), (namespace, []))[1].append(row)
    return list(groups.values())


@dataclass(frozen=True)
class IndexHit:
    id: str
    similarity: float


def guarded(method: Callable[..., _T]) -> Callable[..., _T]:
    """Runs ``method`` inside the index's error translation (a server's transport errors)."""

    @functools.wraps(method)
    def wrapper(self: ChromaCore, *args: Any, **kwargs: Any) -> _T:
        with self._errors():
            return method(self, *args, **kwargs)

    return wrapper


class ChromaCore:
    """Everything that does not depend on where chroma runs: one pair of collections per
    namespace, batching, queries, and the maintenance that goes through chroma's API.

    A subclass provides the client (``_client_or_open``), the lock, which collection names are
    this memory's (``_kind_of``), and how errors are reported (``_errors``).
    """

    lock: IndexLock | ServerIndexLock
    remote: bool  # True for a server that many processes use at once

    def __init__(self, name_prefix: str) -> None:
        self._name_prefix = name_prefix
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- what a subclass provides ------------------------------------------------------------

    def _client_or_open(self) -> Any:
        raise NotImplementedError

    def _kind_of(self, name: str) -> str | None:
        """The kind (insights or episodes) of a collection of this memory, else None."""
        raise NotImplementedError

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    # -- ownership ---------------------------------------------------------------------------

    @property
    def owned(self) -> bool:
        """True when this process may read and write the index (so reading it here is current)."""
        return self.lock.held

    def try_own(self) -> bool:
        """Own the index if no other process does, without waiting."""
        return self.lock.try_acquire()

    # -- collections -------------------------------------------------------------------------

    def name(self, kind: str, namespace: Namespace) -> str:
        """The chroma name of ``namespace``'s collection of ``kind``."""
        return self._name_prefix + collection_name(kind, namespace)

    def _collection(self, kind: str, namespace: Namespace):
        name = self.name(kind, namespace)
        client = self._client_or_open()  # also drops cached collections of a wiped directory
        collection = self._collections.get(name)
        if collection is None:
            with self._lock:
                collection = self._collections.get(name)
                if collection is None:
                    collection = client.get_or_create_collection(
                        name,
                        embedding_function=None,
                        metadata={"hnsw:space": "cosine", "ns": namespace_key(namespace)},
                    )
                    self._collections[name] = collection
        return collection

    def _use(self, kind: str, namespace: Namespace, operation: Callable[[Any], _T]) -> _T:
        """``operation(collection)``, once more on a fresh collection if the cached one was dropped
        meanwhile (by ``reset`` or ``forget`` in another process on a server, or by another
        ``ChromaIndex`` of this process): chroma addresses a collection by an id that dies with it."""
        from chromadb.errors import NotFoundError

        collection = self._collection(kind, namespace)
        try:
            return operation(collection)
        except NotFoundError:
            with self._lock:
                if self._collections.get(collection.name) is collection:
                    del self._collections[collection.name]
            return operation(self._collection(kind, namespace))

    def _collections_of(self, kind: str) -> list[Any]:
        """Every namespace's collection of ``kind`` (insights or episodes)."""
        client = self._client_or_open()
        found = []
        for listed in client.list_collections():
            if self._kind_of(listed.name) == kind:
                cached = self._collections.get(listed.name)
                found.append(cached if cached is not None else listed)
        return found

    def _drop(self, client: Any, name: str) -> None:
        """Delete one collection; one that another process deleted first is gone all the same."""
        from chromadb.errors import NotFoundError

        self._collections.pop(name, None)
        with contextlib.suppress(NotFoundError):
            client.delete_collection(name)

    @property
    def max_batch_size(self) -> int:
        with self._errors():
            return int(self._client_or_open().get_max_batch_size())

    def _upsert(self, kind: str, ids: Sequence[str], vectors: np.ndarray, namespaces: Sequence[Namespace]) -> None:
        if not ids:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        step = self.max_batch_size
        for namespace, rows in _group_by_namespace(namespaces):
            for start in range(0, len(rows), step):
                chunk = rows[start : start + step]
                self._use(
                    kind,
                    namespace,
                    lambda c, chunk=chunk: c.upsert(ids=[ids[r] for r in chunk], embeddings=vectors[chunk]),
                )
        crash_point(_BOUNDARY[kind])

    def _delete(self, kind: str, ids: Sequence[str], namespaces: Sequence[Namespace]) -> None:
        """Delete ``ids`` (each of its namespace); deleting an id that is not there is not an error."""
        step = self.max_batch_size
        for namespace, rows in _group_by_namespace(namespaces):
            for start in range(0, len(rows), step):
                chunk = [ids[r] for r in rows[start : start + step]]
                self._use(kind, namespace, lambda c, chunk=chunk: c.delete(ids=chunk))
        if ids:
            crash_point(_BOUNDARY[kind])

    def _query(self, kind: str, vector: np.ndarray, namespace: Namespace, n: int) -> list[IndexHit]:
        query = np.asarray([vector], dtype=np.float32)
        result = self._use(
            kind, namespace, lambda c: c.query(query_embeddings=query, n_results=n, include=["distances"])
        )
        ids, distances = result["ids"][0], result["distances"][0]
        # chroma's cosine space returns 1 - cosine similarity.
        return [IndexHit(i, 1.0 - float(d)) for i, d in zip(ids, distances)]

    def _all_ids(self, kind: str) -> set[str]:
        from chromadb.errors import NotFoundError

        ids: set[str] = set()
        for collection in self._collections_of(kind):
            with contextlib.suppress(NotFoundError):  # dropped since it was listed: no ids left
                ids.update(collection.get(include=[])["ids"])
        return ids

    # -- insights ----------------------------------------------------------------------------

    @guarded
    def upsert_insights(self, ids: Sequence[str], vectors: np.ndarray, namespaces: Sequence[Namespace]) -> None:
        self._upsert(INSIGHTS, ids, vectors, namespaces)

    @guarded
    def delete_insights(self, ids: Sequence[str], namespaces: Sequence[Namespace]) -> None:
        self._delete(INSIGHTS, ids, namespaces)

    @guarded
    def query_insights(self, vector: np.ndarray, namespace: Namespace, n: int) -> list[IndexHit]:
        return self._query(INSIGHTS, vector, namespace, n)

    @guarded
    def insight_ids(self) -> set[str]:
        return self._all_ids(INSIGHTS)

    # -- episodes ----------------------------------------------------------------------------

    @guarded
    def upsert_episodes(self, ids: Sequence[str], vectors: np.ndarray, namespaces: Sequence[Namespace]) -> None:
        self._upsert(EPISODES, ids, vectors, namespaces)

    @guarded
    def episode_vectors(self, ids: Sequence[str], namespace: Namespace) -> dict[str, np.ndarray]:
        """Stored vectors of the episodes ``ids`` of ``namespace`` (those not embedded yet are absent)."""
        if not ids:
            return {}
        found: dict[str, np.ndarray] = {}
        step = self.max_batch_size
        for start in range(0, len(ids), step):
            chunk = list(ids[start : start + step])
            got = self._use(EPISODES, namespace, lambda c, chunk=chunk: c.get(ids=chunk, include=["embeddings"]))
            for i, vector in zip(got["ids"], got["embeddings"]):
                found[i] = np.asarray(vector, dtype=np.float32)
        return found

    @guarded
    def query_episodes(self, vector: np.ndarray, namespace: Namespace, n: int) -> list[IndexHit]:
        return self._query(EPISODES, vector, namespace, n)

    @guarded
    def delete_episodes(self, ids: Sequence[str], namespaces: Sequence[Namespace]) -> None:
        self._delete(EPISODES, ids, namespaces)

    @guarded
    def episode_count(self) -> int:
        from chromadb.errors import NotFoundError

        total = 0
        for collection in self._collections_of(EPISODES):
            with contextlib.suppress(NotFoundError):
                total += int(collection.count())
        return total

    # -- maintenance -------------------------------------------------------------------------

    def _is_droppable(self, name: str) -> bool:
        """Whether ``reset`` drops this collection: this memory's collections."""
        return self._kind_of(name) is not None

    @guarded
    def reset(self) -> None:
        """Drop every collection of this memory; they are recreated empty on next use."""
        client = self._client_or_open()
        with self._lock:
            for collection in client.list_collections():
                if self._is_droppable(collection.name):
                    self._drop(client, collection.name)
            self._collections.clear()

    @guarded
    def drop_namespace(self, namespace: Namespace) -> None:
        """Delete both of the namespace's collections (its insight and episode vectors)."""
        client = self._client_or_open()
        with self._lock:
            existing = {c.name for c in client.list_collections()}
            for kind in KINDS:
                name = self.name(kind, namespace)
                self._collections.pop(name, None)
                if name in existing:
                    self._drop(client, name)

    @guarded
    def rebuild(self, namespace: Namespace) -> int:
        """Rewrite the namespace's two collections from the vectors they still hold.

        Chroma keeps deleted vectors in its write-ahead queue until its index next persists;
        forgetting cannot wait for that, and a dropped collection takes its queue with it.
        Returns the number of vectors kept.
        """
        client = self._client_or_open()
        existing = {c.name for c in client.list_collections()}
        kept_total = 0
        for kind in KINDS:
            name = self.name(kind, namespace)
            if name not in existing:
                continue
            kept = self._use(kind, namespace, lambda c: c.get(include=["embeddings"]))
            ids, vectors = list(kept["ids"]), np.asarray(kept["embeddings"], dtype=np.float32)
            with self._lock:
                self._drop(client, name)
            self._upsert(kind, ids, vectors, [namespace] * len(ids))
            kept_total += len(ids)
        return kept_total


@dataclass
class _SharedClient:
    client: Any
    users: int = 0


_clients: dict[str, _SharedClient] = {}  # absolute path -> the process's client of it
_clients_lock = threading.Lock()


class ChromaIndex(ChromaCore):
    """A chroma ``PersistentClient`` under ``path``, opened on first use.

    Opening it takes the data home's index lock (see ``IndexLock``): only the process that owns
    the directory reads or writes it, until ``close``.
    """

    remote = False

    def __init__(self, path: str | Path, *, lock_seconds: float = DEFAULT_INDEX_LOCK_SECONDS) -> None:
        super().__init__("")
        self.path = Path(path)
        self.lock = IndexLock(self.path.parent / LOCK_FILE, lock_seconds)
        self._key = str(self.path.absolute())
        self._shared: _SharedClient | None = None  # the process's client of this path, while joined

    @property
    def location(self) -> str:
        return str(self.path)

    def _kind_of(self, name: str) -> str | None:
        kind = name.split("_", 1)[0]
        return kind if kind in KINDS else None

    def _is_droppable(self, name: str) -> bool:
        # The directory is this memory's alone; "langdream_*" are collections of early versions.
        return self._kind_of(name) is not None or name.startswith("langdream_")

    def _client_or_open(self):
        """The process's one client of this path (opened on first use, after taking the lock).

        Every ``ChromaIndex`` of one path in a process shares it: chroma keeps one System per path
        per process anyway, and after ``wipe`` the others must not go on with the deleted files.
        """
        shared = self._shared
        if shared is not None and _clients.get(self._key) is shared:
            return shared.client
        self.lock.acquire()
        with self._lock, _clients_lock:
            shared = _clients.get(self._key)
            if shared is None:
                shared = _clients[self._key] = _SharedClient(self._open())
            if self._shared is not shared:
                # First use, or the directory was wiped meanwhile: the cached collections are stale.
                self._collections.clear()
                self._shared = shared
                shared.users += 1
            return shared.client

    def _open(self):
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(self.path), settings=ChromaSettings(anonymized_telemetry=False))
        except Exception as exc:
            raise DataHomeError(
                f"cannot open the chroma index at {self.path}: {exc}",
                hint="run `langdream doctor`; `langdream reindex` rebuilds the index from the ledger",
            ) from exc

    def vacuum(self) -> None:
        """Rewrite chroma's SQLite file without its free pages (where deleted rows linger), and
        delete the segment directories of deleted collections that chroma left on disk (in some
        runs a deleted collection's HNSW files stayed behind, with the vectors forget removed)."""
        path = self.path / "chroma.sqlite3"
        if not path.exists():
            return
        try:
            with closing(sqlite3.connect(path, timeout=30)) as db:
                db.execute("VACUUM")
                live = {row[0] for row in db.execute("SELECT id FROM segments")}
            for directory in self.path.iterdir():
                if directory.is_dir() and _SEGMENT_DIR.fullmatch(directory.name) and directory.name not in live:
                    shutil.rmtree(directory, ignore_errors=True)
        except sqlite3.Error as exc:
            raise DataHomeError(
                f"cannot compact the chroma index {path}: {exc}",
                hint="stop other langdream processes using this data home and run the command again",
            ) from exc

    def wipe(self) -> None:
        """Delete the whole chroma directory, readable or not (a torn index can crash chroma when
        it is opened), so the next use starts an empty index. Needs the index lock."""
        self.lock.acquire()
        with self._lock, _clients_lock:
            self._collections.clear()
            self._shared = None
            shared = _clients.pop(self._key, None)
        # Chroma keeps one System per path per process, also after its clients are gone (see
        # _close_client); the next open must start from the empty directory, not hand the deleted
        # files back. Other ChromaIndex objects of this path reopen too (the shared client is gone).
        from chromadb.api.client import SharedSystemClient

        if shared is not None:
            shared.client.close()
        SharedSystemClient.clear_system_cache()
        shutil.rmtree(self.path, ignore_errors=True)
        if self.path.exists():
            raise DataHomeError(
                f"cannot delete the chroma index {self.path}",
                hint="check the directory's permissions, delete it by hand, then run `langdream reindex`",
            )

    def _close_client(self) -> None:
        with self._lock, _clients_lock:
            self._collections.clear()
            shared, self._shared = self._shared, None
            if shared is not None and _clients.get(self._key) is shared:
                shared.users -= 1
                if shared.users == 0:
                    del _clients[self._key]
        # The client is dropped, not closed: closing stops chroma's System, which persists every
        # segment it still holds, deleted collections' too (vectors forget had removed came back
        # to disk). A later open of the path in this process gets the same System back.

    def close(self) -> None:
        """Close the client and give the index lock back."""
        self._close_client()
        self.lock.release()


def open_index(
    path: str | Path, url: str | None = None, *, lock_seconds: float = DEFAULT_INDEX_LOCK_SECONDS
) -> ChromaCore:
    """The index on the chroma server at ``url``, else the local one at ``path``."""
    if url:
        from langdream.index.server import ChromaServerIndex

        return ChromaServerIndex(url)
    return ChromaIndex(path, lock_seconds=lock_seconds)
