"""``DreamMemory``: one data home, and everything you can do with it.

It owns the ledger (SQLite), the index (chroma), the embedder and the reflector, and offers
record / feedback / dream / recall / inspect, each with an ``a*`` async twin that runs the same
code off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from pydantic import ValidationError

from langdream.config import DEFAULT_NAMESPACE, Settings, resolve_home
from langdream.dream import Dreamer, Progress
from langdream.embed import Embedder
from langdream.errors import ConfigError, DataHomeError, NotFoundError, UnknownNamespaceError
from langdream.index import ChromaIndex
from langdream.ingest import IngestReport, read_jsonl
from langdream.ledger.sqlite import SQLiteLedger
from langdream.namespace import Namespace, format_namespace, parse_namespace
from langdream.recall import Recaller
from langdream.reflect import Reflector
from langdream.reflect.extractive import ExtractiveReflector
from langdream.types import (
    DreamReport,
    Episode,
    Insight,
    InsightStatus,
    InsightVersion,
    NamespaceStats,
    Outcome,
    Recall,
)

logger = logging.getLogger("langdream")

LEDGER_FILE = "ledger.sqlite3"
INDEX_DIR = "chroma"
StatusFilter = Literal["active", "quarantined", "retired", "all"]
_INGEST_BATCH = 500
_LOCK_POLL_SECONDS = 0.05


def _prepare_home(home: Path) -> Path:
    if home.exists() and not home.is_dir():
        raise DataHomeError(
            f"the data home {home} exists but is not a directory",
            hint="point --home / LANGDREAM_HOME at a directory (it is created if missing)",
        )
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataHomeError(
            f"cannot create the data home {home}: {exc.strerror or exc}",
            hint="choose a writable location with --home or LANGDREAM_HOME",
        ) from exc
    if not os.access(home, os.R_OK | os.W_OK | os.X_OK):
        raise DataHomeError(
            f"the data home {home} is not readable and writable by this user",
            hint=f"fix its permissions (chmod u+rwx {home}) or choose another --home",
        )
    return home


def merge_settings(settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    """``settings`` (or the defaults) with single fields overridden, validated as a whole."""
    base = settings or Settings()
    if not overrides:
        return base
    try:
        return Settings(**{**base.model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"invalid setting {field!r}: {first['msg']}",
            hint="see docs/configuration.md for every setting and its allowed values",
        ) from exc


def make_reflector(model: BaseChatModel | str | None, settings: Settings) -> Reflector:
    """The LLM reflector for a model (object or ``init_chat_model`` string); extractive without one."""
    if model is None:
        return ExtractiveReflector()
    from langdream.reflect.llm import LLMReflector

    return LLMReflector(model, max_episodes=settings.reflect_max_episodes, episode_tokens=settings.episode_prompt_tokens)


class DreamMemory:
    """A memory that records episodes, dreams over them, and recalls what it learned.

    Args:
        home: data home directory; default ``$LANGDREAM_HOME`` or ``./.langdream``.
        model: a LangChain chat model or an ``init_chat_model`` string (``"anthropic:claude-sonnet-4-5"``)
            for LLM reflection; without one, dreams use the extractive reflector.
        settings: a ``Settings``; keyword arguments override single fields of it.
        reflector / embedder: replace the default components.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        model: BaseChatModel | str | None = None,
        settings: Settings | None = None,
        reflector: Reflector | None = None,
        embedder: Embedder | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = merge_settings(settings, overrides)
        self.home = _prepare_home(resolve_home(home))
        self.ledger = SQLiteLedger(self.home / LEDGER_FILE, busy_timeout=self.settings.busy_timeout_seconds)
        self.index = ChromaIndex(self.home / INDEX_DIR)
        self.embedder = embedder or Embedder(
            self.settings.embedding_model, device=self.settings.device, batch_size=self.settings.embed_batch_size
        )
        self.reflector = reflector or make_reflector(model, self.settings)
        self._recaller = Recaller(self.ledger, self.index, self.embedder, self.settings)
        self._listeners: list[Callable[[Episode], None]] = []
        self._dream_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self.ledger.close()
        self.index.close()

    def __enter__(self) -> DreamMemory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DreamMemory(home={str(self.home)!r}, reflector={self.reflector.model_id!r})"

    def add_listener(self, listener: Callable[[Episode], None]) -> None:
        """Call ``listener(episode)`` after every recorded episode (the idle-time scheduler uses this)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Episode], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- recording ---------------------------------------------------------------------------

    def record(self, episode: Episode) -> bool:
        """Store one episode (one ledger write). Returns False if its id was already stored."""
        added = self.ledger.add_episodes([episode])[0]
        if added:
            for listener in list(self._listeners):
                listener(episode)
        return added

    async def arecord(self, episode: Episode) -> bool:
        return await asyncio.to_thread(self.record, episode)

    def feedback(
        self,
        run_id: str,
        *,
        success: bool | None = None,
        score: float | None = None,
        feedback: str | None = None,
    ) -> Episode:
        """Attach or change the outcome of a recorded run (by run id or episode id).

        Fields left as None keep their current value. A changed outcome puts the episode back in
        the queue of the next dream.
        """
        episode = self.ledger.find_episode(str(run_id))
        if episode is None:
            raise NotFoundError(
                f"no recorded run with id {run_id!r}",
                hint="pass the run_id of a recorded run (see `langdream episodes list`)",
            )
        current = episode.outcome
        outcome = Outcome(
            success=current.success if success is None else success,
            score=current.score if score is None else score,
            feedback=current.feedback if feedback is None else feedback,
        )
        return self.ledger.set_outcome(episode.id, outcome)

    async def afeedback(self, run_id: str, **kwargs: Any) -> Episode:
        return await asyncio.to_thread(self.feedback, run_id, **kwargs)

    def ingest(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str | Sequence[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Import episodes from a JSONL file. Bad lines are reported; good lines are kept."""
        default = parse_namespace(namespace) if namespace is not None else DEFAULT_NAMESPACE
        report = IngestReport()
        batch: list[Episode] = []

        def flush() -> None:
            for episode, added in zip(batch, self.ledger.add_episodes(batch)):
                if added:
                    report.added += 1
                    key = format_namespace(episode.namespace)
                    report.namespaces[key] = report.namespaces.get(key, 0) + 1
                else:
                    report.duplicates += 1
            if progress:
                progress(len(batch))
            batch.clear()

        for _, item in read_jsonl(path, default):
            if isinstance(item, Episode):
                batch.append(item)
                if len(batch) >= _INGEST_BATCH:
                    flush()
            else:
                report.errors.append(item)
        if batch:
            flush()
        return report

    # -- dreaming ----------------------------------------------------------------------------

    def _dreamer(self, model: BaseChatModel | str | None) -> Dreamer:
        reflector = self.reflector if model is None else make_reflector(model, self.settings)
        return Dreamer(self.ledger, self.index, self.embedder, reflector, self.settings)

    def _dream_targets(self, namespace: str | Sequence[str] | None) -> list[Namespace]:
        if namespace is not None:
            return [self.require_namespace(namespace)]
        return [s.namespace for s in self.ledger.namespaces() if s.pending]

    def dream(
        self,
        namespace: str | Sequence[str] | None = None,
        *,
        model: BaseChatModel | str | None = None,
        progress: Progress | None = None,
    ) -> list[DreamReport]:
        """Consolidate the unconsolidated episodes of one namespace, or of every namespace with some.

        ``model`` overrides this memory's reflector for this dream only.
        """
        dreamer = self._dreamer(model)
        with self._dream_lock:
            return [dreamer.dream(ns, progress=progress) for ns in self._dream_targets(namespace)]

    async def adream(
        self,
        namespace: str | Sequence[str] | None = None,
        *,
        model: BaseChatModel | str | None = None,
        progress: Progress | None = None,
    ) -> list[DreamReport]:
        dreamer = self._dreamer(model)
        targets = await asyncio.to_thread(self._dream_targets, namespace)
        # Poll rather than block a worker thread on the lock: a cancelled wait then holds nothing.
        while not self._dream_lock.acquire(blocking=False):
            await asyncio.sleep(_LOCK_POLL_SECONDS)
        try:
            return [await dreamer.adream(ns, progress=progress) for ns in targets]
        finally:
            self._dream_lock.release()

    def reindex(self, *, progress: Progress | None = None) -> dict[str, int]:
        """Rebuild the chroma index from the ledger: every episode re-embedded, every active insight."""
        dreamer = self._dreamer(None)
        with self._dream_lock:
            self.index.reset()
            total = self.ledger.count_episodes()
            done = 0
            for batch in self.ledger.iter_episode_tasks(batch=max(256, self.embedder.batch_size * 8)):
                vectors = self.embedder.embed([task for _, _, task in batch])
                self.index.upsert_episodes([i for i, _, _ in batch], vectors, [ns for _, ns, _ in batch])
                done += len(batch)
                if progress:
                    progress("embed", done, total)
            self.ledger.mark_all_dirty()
            dreamer.sync_index()
        return {"episodes": done, "insights": len(self.index.insight_ids())}

    # -- recall ------------------------------------------------------------------------------

    def recall(
        self,
        task: str,
        namespace: str | Sequence[str] = DEFAULT_NAMESPACE,
        *,
        k: int | None = None,
        token_budget: int | None = None,
    ) -> Recall:
        """The active insights of ``namespace`` relevant to ``task``, and the text a run would be shown."""
        return self._recaller.recall(task, parse_namespace(namespace), k=k, token_budget=token_budget)

    async def arecall(
        self,
        task: str,
        namespace: str | Sequence[str] = DEFAULT_NAMESPACE,
        *,
        k: int | None = None,
        token_budget: int | None = None,
    ) -> Recall:
        return await self._recaller.arecall(task, parse_namespace(namespace), k=k, token_budget=token_budget)

    # -- inspection --------------------------------------------------------------------------

    def namespaces(self) -> list[NamespaceStats]:
        return self.ledger.namespaces()

    def require_namespace(self, namespace: str | Sequence[str]) -> Namespace:
        """The parsed namespace, or a clear error if this data home has never seen it."""
        parsed = parse_namespace(namespace)
        if not self.ledger.has_namespace(parsed):
            known = [format_namespace(s.namespace) for s in self.ledger.namespaces()]
            raise UnknownNamespaceError(
                f"unknown namespace {format_namespace(parsed)!r} in {self.home}",
                hint=(f"known namespaces: {', '.join(known[:10])}" if known else "this data home is empty")
                + " (namespaces match exactly; labels are separated by '/')",
            )
        return parsed

    def episode(self, episode_id: str) -> Episode:
        episode = self.ledger.find_episode(episode_id)
        if episode is None:
            raise NotFoundError(f"no episode with id {episode_id!r}", hint="see `langdream episodes list`")
        return episode

    def episodes(
        self,
        namespace: str | Sequence[str] | None = None,
        *,
        limit: int = 50,
        offset: int = 0,
        pending: bool | None = None,
    ) -> list[Episode]:
        ns = self.require_namespace(namespace) if namespace is not None else None
        return self.ledger.list_episodes(ns, limit=limit, offset=offset, pending=pending)

    def insight(self, insight_id: str) -> Insight:
        insight = self.ledger.get_insight(insight_id)
        if insight is None:
            raise NotFoundError(f"no insight with id {insight_id!r}", hint="see `langdream insights list --status all`")
        return insight

    def insights(
        self, namespace: str | Sequence[str] | None = None, *, status: StatusFilter = "active"
    ) -> list[Insight]:
        ns = self.require_namespace(namespace) if namespace is not None else None
        statuses = None if status == "all" else [InsightStatus(status)]
        return self.ledger.list_insights(ns, statuses=statuses)

    def history(self, insight_id: str) -> list[InsightVersion]:
        self.insight(insight_id)
        return self.ledger.insight_history(insight_id)
