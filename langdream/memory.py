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

import numpy as np
from langchain_core.language_models import BaseChatModel
from pydantic import ValidationError

from langdream import lease, lifecycle
from langdream.apply import insight_text_for_embedding
from langdream.config import CHROMA_URL_ENV, DEFAULT_NAMESPACE, LEDGER_URL_ENV, Settings, resolve_home
from langdream.dream import Dreamer, Progress
from langdream.embed import EMBEDDING_MODEL_KEY, Embedder
from langdream.errors import ConfigError, DataHomeError, NotFoundError, UnknownNamespaceError, UsageError
from langdream.forget import plan_forget
from langdream.guard.sanitize import sanitize_episode, sanitize_text
from langdream.index.chroma import open_index
from langdream.ingest import IngestReport, read_jsonl
from langdream.ledger import open_ledger
from langdream.namespace import Namespace, format_namespace, parse_namespace
from langdream.recall import Recaller
from langdream.reflect import Reflector
from langdream.reflect.extractive import ExtractiveReflector
from langdream.types import (
    DreamJob,
    DreamReport,
    Episode,
    Explanation,
    ForgetReport,
    Insight,
    InsightStatus,
    InsightVersion,
    NamespaceStats,
    Outcome,
    Recall,
    RollbackReport,
)

logger = logging.getLogger("langdream")

LEDGER_FILE = "ledger.sqlite3"
INDEX_DIR = "chroma"
# Settings saved in the data home are the base of every DreamMemory opened on it, so a cron
# `langdream dream` uses the application's thresholds and model.
SETTINGS_FILE = "settings.json"
StatusFilter = Literal["active", "quarantined", "retired", "revoked", "all"]
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


def resolve_backends(ledger_url: str | None = None, chroma_url: str | None = None) -> tuple[str | None, str | None]:
    """The ledger and chroma server URLs a memory uses: each argument, else its environment
    variable (``LANGDREAM_LEDGER_URL``, ``LANGDREAM_CHROMA_URL``). None for the data home's own
    ledger file / chroma directory; an empty argument asks for those whatever the environment says.
    """

    def pick(explicit: str | None, env: str) -> str | None:
        value = os.environ.get(env) if explicit is None else explicit
        return value.strip() or None if value else None

    return pick(ledger_url, LEDGER_URL_ENV), pick(chroma_url, CHROMA_URL_ENV)


def saved_settings(home: Path) -> Settings | None:
    """The settings saved in a data home's settings.json, if it has one."""
    path = home / SETTINGS_FILE
    if not path.exists():
        return None
    try:
        return Settings.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise ConfigError(
            f"cannot use the saved settings {path}: {exc}",
            hint="fix the JSON (fields as in docs/configuration.md) or delete the file to use the defaults",
        ) from exc


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
    from langdream.reflect.retry import RetryPolicy

    return LLMReflector(
        model,
        max_episodes=settings.reflect_max_episodes,
        episode_tokens=settings.episode_prompt_tokens,
        encoding=settings.encoding,
        retry=RetryPolicy(
            settings.reflect_retry_attempts, settings.reflect_retry_base_seconds, settings.reflect_retry_max_seconds
        ),
    )


class DreamMemory:
    """A memory that records episodes, dreams over them, and recalls what it learned.

    Args:
        home: data home directory; default ``$LANGDREAM_HOME`` or ``./.langdream``.
        model: a LangChain chat model or an ``init_chat_model`` string (``"anthropic:claude-sonnet-4-5"``)
            for LLM reflection; without one, dreams use the extractive reflector.
        settings: a ``Settings`` (default: the data home's saved settings.json, else the defaults);
            keyword arguments override single fields of it.
        reflector: replaces the default reflector (LLM with ``model``, else extractive).
        embedder: replaces the default embedder (one can be shared by several memories).
        ledger_url: a ``postgresql://`` URL for a ledger shared by many machines; default
            ``$LANGDREAM_LEDGER_URL``, else ``ledger.sqlite3`` in the data home.
        chroma_url: an ``http[s]://`` URL of a chroma server (``chroma run``) for the index; default
            ``$LANGDREAM_CHROMA_URL``, else the ``chroma/`` directory in the data home. URLs are
            never written to settings.json (they may hold passwords).
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        model: BaseChatModel | str | None = None,
        settings: Settings | None = None,
        reflector: Reflector | None = None,
        embedder: Embedder | None = None,
        ledger_url: str | None = None,
        chroma_url: str | None = None,
        **overrides: Any,
    ) -> None:
        self.home = _prepare_home(resolve_home(home))
        self.settings = merge_settings(settings or saved_settings(self.home), overrides)
        ledger_url, chroma_url = resolve_backends(ledger_url, chroma_url)
        # The index first: parsing its URL can fail, and then no ledger connection is left open.
        self.index = open_index(self.home / INDEX_DIR, chroma_url, lock_seconds=self.settings.index_lock_seconds)
        self.ledger = open_ledger(
            ledger_url or self.home / LEDGER_FILE, busy_timeout=self.settings.busy_timeout_seconds
        )
        self.embedder = embedder or Embedder(
            self.settings.embedding_model,
            device=self.settings.device,
            batch_size=self.settings.embed_batch_size,
            backend=self.settings.embedding_backend,
            gpu_dtype=self.settings.gpu_embedding_dtype,
        )
        self.reflector = reflector or make_reflector(model, self.settings)
        # A local index is brought up to date by whichever process owns it, recall included. On a
        # server every writer indexes what it changed (see _commit and dreams), so recalls of many
        # replicas do not all race to apply the same ledger marks.
        sync = None if self.index.remote else lambda: self._dreamer(None).sync_index()
        self._recaller = Recaller(self.ledger, self.index, self.embedder, self.settings, sync_index=sync)
        self._listeners: list[Callable[[Episode], None]] = []
        self._dream_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the ledger's connections and the index client."""
        self.ledger.close()
        self.index.close()

    def __enter__(self) -> DreamMemory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DreamMemory(home={str(self.home)!r}, reflector={self.reflector.model_id!r})"

    def save_settings(self) -> Path:
        """Write this memory's settings to the data home, as the base for every later opening
        (the CLI and cron jobs included). Returns the file's path."""
        path = self.home / SETTINGS_FILE
        path.write_text(self.settings.model_dump_json(indent=2), encoding="utf-8")
        return path

    def add_listener(self, listener: Callable[[Episode], None]) -> None:
        """Call ``listener(episode)`` after every recorded episode (the idle-time scheduler uses this)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Episode], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- recording ---------------------------------------------------------------------------

    def record(self, episode: Episode) -> bool:
        """Store one episode (one ledger write). Returns False if its id was already stored.

        Secrets and PII are redacted and role-like markup is neutralised first; the episode's
        ``metadata["langdream"]`` counts what was changed.
        """
        episode = sanitize_episode(episode)
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

        Fields left as None keep their current value, except that a new ``success`` without a
        ``score`` sets the score to 1.0 or 0.0. A changed outcome puts the episode back in the
        queue of the next dream.
        """
        episode = self.ledger.find_episode(str(run_id))
        if episode is None:
            raise NotFoundError(
                f"no recorded run with id {run_id!r}",
                hint="pass the run_id of a recorded run (see `langdream episodes list`)",
            )
        current = episode.outcome
        if score is None and success is not None:
            # A verdict without a score: the score follows it (as a bool judge's would), so a run
            # is never a failure scored 1.0.
            score = 1.0 if success else 0.0
        outcome = Outcome(
            success=current.success if success is None else success,
            score=current.score if score is None else score,
            feedback=current.feedback if feedback is None else sanitize_text(feedback),
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
                batch.append(sanitize_episode(item))
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
            self._recover(dreamer)
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
            await asyncio.to_thread(self._recover, dreamer)
            return [await dreamer.adream(ns, progress=progress) for ns in targets]
        finally:
            self._dream_lock.release()

    def _recover(self, dreamer: Dreamer) -> None:
        """What every dream call does first, even with nothing to dream: bring the index up to date
        with what an interrupted dream or another process left marked in the ledger, and drop the
        leases of dreamers that died."""
        self.index.lock.acquire()
        dreamer.sync_index()
        self.ledger.drop_dead_leases(lease.holder_dead)

    def reindex(self, *, progress: Progress | None = None) -> dict[str, int]:
        """Rebuild the chroma index from the ledger with the configured embedding model.

        Every episode and every insight is embedded again (so this is also how a data home moves
        to another embedding model), the insights' stored vectors are replaced, and the index
        ends up holding exactly the ledger's active insights.
        """
        dreamer = self._dreamer(None)
        batch = max(256, self.embedder.batch_size * 8)
        with self._dream_lock:
            # From nothing. Dropping the collections keeps chroma's System for this path; a torn
            # index may not even open, and then the directory is deleted.
            self.index.lock.acquire()  # refused here, within index_lock_seconds, when another process owns it
            try:
                self.index.reset()
            except Exception as exc:  # noqa: BLE001 - whatever a damaged index raises, the ledger has everything
                logger.warning("the chroma index could not be emptied (%s); deleting it", exc)
                self.index.wipe()
            total = self.ledger.count_episodes()
            done = 0
            cluster_sums: dict[str, np.ndarray] = {}  # lasting clusters' sums, in the new vectors
            for rows in self.ledger.iter_episode_tasks(batch=batch):
                vectors = self.embedder.embed([task for _, _, task in rows])
                ids = [i for i, _, _ in rows]
                self.index.upsert_episodes(ids, vectors, [ns for _, ns, _ in rows])
                member_of = self.ledger.cluster_of(ids)
                for episode_id, vector in zip(ids, vectors):
                    if episode_id in member_of:
                        cluster_id = member_of[episode_id]
                        cluster_sums[cluster_id] = cluster_sums.get(cluster_id, 0) + vector
                done += len(rows)
                if progress:
                    progress("embed", done, total)
            for rows in self.ledger.iter_insight_texts(batch=batch):
                texts = [insight_text_for_embedding(text, when) for _, text, when in rows]
                self.ledger.set_insight_vectors(list(zip((i for i, _, _ in rows), self.embedder.embed(texts))))
            self.ledger.set_cluster_sums(cluster_sums)
            self.ledger.mark_all_dirty()
            self.ledger.set_meta(EMBEDDING_MODEL_KEY, self.embedder.model_id)
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
        """Every namespace of this data home with its episode and insight counts."""
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
        """One episode, by episode id or run id."""
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
        """Episodes, newest first; ``pending`` True/False keeps those waiting for / consumed by a dream."""
        ns = self.require_namespace(namespace) if namespace is not None else None
        return self.ledger.list_episodes(ns, limit=limit, offset=offset, pending=pending)

    def insight(self, insight_id: str) -> Insight:
        """One insight by id, whatever its status."""
        insight = self.ledger.get_insight(insight_id)
        if insight is None:
            raise NotFoundError(f"no insight with id {insight_id!r}", hint="see `langdream insights list --status all`")
        return insight

    def insights(
        self, namespace: str | Sequence[str] | None = None, *, status: StatusFilter = "active"
    ) -> list[Insight]:
        """Insights of one namespace (or all), by status, most confident first."""
        ns = self.require_namespace(namespace) if namespace is not None else None
        statuses = None if status == "all" else [InsightStatus(status)]
        return self.ledger.list_insights(ns, statuses=statuses)

    def history(self, insight_id: str) -> list[InsightVersion]:
        """Every version of an insight, oldest first: what changed, in which dream, by which model."""
        self.insight(insight_id)
        return self.ledger.insight_history(insight_id)

    def jobs(self, namespace: str | Sequence[str] | None = None, *, limit: int = 50) -> list[DreamJob]:
        """Dream jobs, newest first: their ids are what ``rollback`` and ``explain`` name."""
        ns = self.require_namespace(namespace) if namespace is not None else None
        return self.ledger.list_jobs(ns, limit=limit)

    # -- trust: explain, review, roll back, forget -------------------------------------------

    def explain(self, insight_id: str) -> Explanation:
        """Why this memory believes an insight: every version (who changed it, why, in which dream,
        with which model and prompt), its evidence episodes with their outcomes, the dream jobs,
        and how runs went that were shown it against comparable runs that were not."""
        return lifecycle.explain(self.ledger, insight_id)

    def review_queue(self, namespace: str | Sequence[str] | None = None) -> list[Insight]:
        """Quarantined insights that wait for a person (``insight.hold`` says why), oldest first."""
        ns = self.require_namespace(namespace) if namespace is not None else None
        held = [i for i in self.ledger.list_insights(ns, statuses=[InsightStatus.QUARANTINED]) if i.hold is not None]
        return sorted(held, key=lambda i: (i.updated_at, i.id))

    def _commit(self, writes: list) -> None:
        self.ledger.write_insights(writes)
        # The process that owns the index brings it up to date; if another process owns it, that
        # one does before its next recall or dream (the change is marked in the ledger).
        if self.index.try_own():
            self._dreamer(None).sync_index()

    def approve(self, insight_id: str, *, actor: str | None = None, note: str = "") -> Insight:
        """Lift the hold of a quarantined insight; it becomes active once its support is earned."""
        with self._dream_lock:
            write = lifecycle.approve(self.ledger, self.settings, insight_id, actor or lifecycle.default_actor(), note)
            self._commit([write])
        return self.insight(insight_id)

    def reject(self, insight_id: str, *, actor: str | None = None, note: str = "") -> Insight:
        """Revoke an insight (remembered: dreams will not learn it again silently); for a held
        edit of an approved insight, undo the edit instead."""
        with self._dream_lock:
            write = lifecycle.reject(
                self.ledger, self.settings, self.embedder.embed, insight_id, actor or lifecycle.default_actor(), note
            )
            self._commit([write])
        return self.insight(insight_id)

    def retire(self, insight_id: str, *, actor: str | None = None, note: str = "") -> Insight:
        """Retire an insight by a person's decision (remembered like one retired by evidence)."""
        with self._dream_lock:
            write = lifecycle.retire(self.ledger, insight_id, actor or lifecycle.default_actor(), note)
            self._commit([write])
        return self.insight(insight_id)

    def rollback(self, to_dream: str, *, actor: str | None = None) -> RollbackReport:
        """Put the insight set of that dream's namespace back to what it was right after that dream."""
        with self._dream_lock:
            report, writes = lifecycle.rollback(
                self.ledger, self.settings, self.embedder.embed, to_dream, actor or lifecycle.default_actor()
            )
            self._commit(writes)
        return report

    def forget(
        self,
        *,
        namespace: str | Sequence[str] | None = None,
        episode: str | Sequence[str] | None = None,
        thread: str | None = None,
        actor: str | None = None,
    ) -> ForgetReport:
        """Delete episodes and what was derived from them, leaving no copy of their text in the data home.

        ``namespace`` alone forgets the whole namespace (its episodes, insights, dream jobs and
        index); ``episode`` (ids or run ids) and ``thread`` forget those runs, narrowed to
        ``namespace`` when it is given too. Insights that cited forgotten runs get their support
        recomputed: active ones that fall below the threshold are revoked, and those that quoted a
        forgotten run or have no evidence left lose their text. Then the ledger is vacuumed and its
        WAL emptied. A call with no filter is refused.
        """
        if namespace is None and not episode and thread is None:
            raise UsageError(
                "refusing to forget with no filter: that would delete everything",
                hint="name what to forget: namespace=..., episode=... or thread=... (CLI: --namespace/--episode/--thread)",
            )
        ns = parse_namespace(namespace) if namespace is not None else None
        episode_ids = [episode] if isinstance(episode, str) else list(episode or [])
        whole = ns if not episode_ids and thread is None else None
        actor = actor or lifecycle.default_actor()
        before = _disk_bytes(self.home)
        self.index.lock.acquire()  # forgetting must reach the index's files too: refuse early, before any change
        with self._dream_lock:
            forgotten = self.ledger.episode_ids_where(namespace=ns, episode_ids=episode_ids, thread_id=thread)
            if not forgotten and (whole is None or not self.ledger.has_namespace(whole)):
                return ForgetReport(bytes_before=before, bytes_after=before)
            plan, updated, revoked = plan_forget(self.ledger, self.index, self.settings, forgotten, whole, actor)
            deleted = len(self.ledger.list_insights(whole)) if whole is not None else 0
            self.ledger.forget(plan)
            if whole is not None:
                self.index.drop_namespace(whole)
            else:
                self.index.delete_episodes([i for i, _ in forgotten], [n for _, n in forgotten])
            self._dreamer(None).sync_index()  # revoked insights leave the index
            if whole is None:
                for touched in {n for _, n in forgotten}:
                    self.index.rebuild(touched)
            self.ledger.compact()
            self.index.vacuum()
        logger.info("forgot %d episodes (%s)", len(forgotten), actor)
        return ForgetReport(
            episodes=len(forgotten),
            namespaces=sorted({n for _, n in forgotten} | ({whole} if whole else set())),
            insights_deleted=deleted,
            insights_updated=updated,
            insights_revoked=revoked,
            bytes_before=before,
            bytes_after=_disk_bytes(self.home),
        )

    async def aforget(self, **kwargs: Any) -> ForgetReport:
        return await asyncio.to_thread(self.forget, **kwargs)

    async def aexplain(self, insight_id: str) -> Explanation:
        return await asyncio.to_thread(self.explain, insight_id)

    async def arollback(self, to_dream: str, *, actor: str | None = None) -> RollbackReport:
        return await asyncio.to_thread(self.rollback, to_dream, actor=actor)


def _disk_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.rglob("*") if p.is_file())
