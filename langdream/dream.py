"""The dream: a journaled consolidation pass over one namespace.

Stages: select the namespace's unconsolidated episodes → embed them (vectors cached in the
index) → cluster → journal the job (its input and its clusters) → reflect on each cluster,
journaling each raw output as it arrives → screen and apply every operation, mark the
episodes consolidated and close the job in one ledger transaction → bring the index up to date.

A crash anywhere is followed by a rerun that resumes the open job: stored reflections are
reused, only missing clusters are reflected, and the apply transaction either happened or did
not. The sync ``dream`` and async ``adream`` share every stage but the reflection calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from langdream import lease
from langdream.apply import DreamContext, InsightBook, insight_text_for_embedding
from langdream.cluster import cluster
from langdream.config import Settings
from langdream.embed import Embedder, check_embedding_model
from langdream.errors import LangDreamError
from langdream.guard import ClaimChecker, drift_verdict, redact_operation, screen
from langdream.guard.redact import redact_text
from langdream.index import ChromaIndex
from langdream.ledger import ClusterWrite, Exposure, LeaseLost, Ledger, LedgerConflict
from langdream.namespace import Namespace, format_namespace, namespace_key
from langdream.recall import learned_nearby
from langdream.reflect import ClusterView, Operation, Reflection, Reflector, prompt_tokens
from langdream.types import (
    DreamJob,
    DreamReport,
    Episode,
    Insight,
    InsightAction,
    InsightStatus,
    new_cluster_id,
    utcnow,
)

logger = logging.getLogger("langdream.dream")

# progress(stage, done, total): stages are "embed", "reflect", "apply".
Progress = Callable[[str, int, int], None]
_LIVE = (InsightStatus.ACTIVE, InsightStatus.QUARANTINED)
# How many of a lasting cluster's recent members the drift guard reads to find its insights.
_RELATED_MEMBERS = 200


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def job_id_for(namespace: Namespace, episodes: list[Episode], prompt_version: str, model_id: str) -> str:
    """Same input, same prompt, same model: same job."""
    payload = json.dumps(
        [namespace_key(namespace), sorted((e.id, e.revision) for e in episodes), prompt_version, model_id]
    )
    return "dj_" + hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass
class _Plan:
    job: DreamJob
    episodes: dict[str, Episode]  # every episode a view shows: the job's own and earlier members
    vectors: dict[str, np.ndarray]  # of the job's own episodes
    views: list[ClusterView]
    outputs: dict[int, list[Operation]]
    resumed: bool
    started: float
    stages: dict[str, float] = field(default_factory=dict)
    joined: int = 0
    waiting: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    llm_calls: int = 0
    deferred: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def missing(self) -> list[ClusterView]:
        return [v for v in self.views if v.index not in self.outputs]


@dataclass
class _Grouping:
    clusters: list[list[str]] = field(default_factory=list)
    cluster_ids: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    joined: int = 0
    waiting: int = 0


class _TokenBudget:
    """Reserves each reflection's prompt plus an answer allowance before it starts; thread-safe."""

    def __init__(self, limit: int | None, answer_allowance: int) -> None:
        self.limit = limit
        self.answer_allowance = answer_allowance
        self.reserved = 0
        self._lock = threading.Lock()

    def reserve(self, prompt_tokens: int) -> int | None:
        """The tokens reserved, or ``None`` when this reflection no longer fits."""
        cost = prompt_tokens + self.answer_allowance if prompt_tokens else 0
        with self._lock:
            if self.limit is not None and cost and self.reserved + cost > self.limit:
                return None
            self.reserved += cost
            return cost

    def settle(self, reserved: int, spent: int) -> None:
        with self._lock:
            self.reserved += spent - reserved


class Dreamer:
    """Runs dreams for one data home with one reflector."""

    def __init__(
        self, ledger: Ledger, index: ChromaIndex, embedder: Embedder, reflector: Reflector, settings: Settings
    ) -> None:
        self.ledger = ledger
        self.index = index
        self.embedder = embedder
        self.reflector = reflector
        self.settings = settings
        self.owner = lease.new_owner()  # this dreamer's name on the leases it holds
        self._renewed = 0.0

    # -- the two entry points ----------------------------------------------------------------

    def dream(self, namespace: Namespace, *, progress: Progress | None = None) -> DreamReport:
        self.index.lock.acquire()  # only one process writes the index: refused within seconds, not hung
        if (busy := self._take_lease(namespace)) is not None:
            return busy
        try:
            return self._dream(namespace, progress or _no_progress)
        finally:
            self._release_lease(namespace)

    async def adream(self, namespace: Namespace, *, progress: Progress | None = None) -> DreamReport:
        await asyncio.to_thread(self.index.lock.acquire)
        taking = asyncio.ensure_future(asyncio.to_thread(self._take_lease, namespace))
        try:
            busy = await asyncio.shield(taking)
        except asyncio.CancelledError:
            # The worker thread goes on and may still take the lease: give it back once it has.
            taking.add_done_callback(lambda done: self._release_if_taken(done, namespace))
            raise
        if busy is not None:
            return busy
        try:
            return await self._adream(namespace, progress or _no_progress)
        finally:
            await asyncio.to_thread(self._release_lease, namespace)

    def _dream(self, namespace: Namespace, progress: Progress) -> DreamReport:
        plan = self._plan(namespace, progress)
        if isinstance(plan, DreamReport):
            return plan
        missing = plan.missing
        started = time.perf_counter()
        budget = self._budget()
        failures: list[BaseException] = []
        workers = min(self.settings.reflect_concurrency, max(1, len(missing)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="langdream-reflect") as pool:
            futures = [pool.submit(self._reflect_and_journal, plan, view, budget) for view in missing]
            for done, future in enumerate(futures, start=1):
                if (error := future.exception()) is not None:
                    failures.append(error)
                progress("reflect", done, len(missing))
        plan.stages["reflect"] = time.perf_counter() - started
        if failures:
            return self._park(plan, failures)
        return self._apply(plan, progress)

    async def _adream(self, namespace: Namespace, progress: Progress) -> DreamReport:
        plan = await asyncio.to_thread(self._plan, namespace, progress)
        if isinstance(plan, DreamReport):
            return plan
        missing = plan.missing
        started = time.perf_counter()
        limit = asyncio.Semaphore(self.settings.reflect_concurrency)
        budget = self._budget()
        done = 0

        async def one(view: ClusterView) -> None:
            nonlocal done
            async with limit:
                reserved = self._reserve(budget, view)
                if reserved is None:
                    plan.deferred.add(view.index)
                else:
                    reflection = await self.reflector.areflect(view)
                    await asyncio.to_thread(self._journal, plan, view, reflection, budget, reserved)
            done += 1
            progress("reflect", done, len(missing))

        results = await asyncio.gather(*(one(v) for v in missing), return_exceptions=True)
        plan.stages["reflect"] = time.perf_counter() - started
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            return await asyncio.to_thread(self._park, plan, failures)
        return await asyncio.to_thread(self._apply, plan, progress)

    # -- shared stages -----------------------------------------------------------------------

    def _take_lease(self, namespace: Namespace) -> DreamReport | None:
        """Hold the namespace's dream lease, or say who does (then this dream does nothing)."""
        started = time.perf_counter()
        lease.mark_live(self.owner, True)
        holder = self.ledger.acquire_lease(namespace, self.owner, self.settings.dream_lease_seconds, lease.holder_dead)
        if holder is None:
            self._renewed = time.monotonic()
            return None
        lease.mark_live(self.owner, False)
        owner, expires = holder
        return self._skipped(
            namespace,
            f"another dreamer ({lease.describe(owner)}) holds this namespace until "
            f"{time.strftime('%H:%M:%S', time.localtime(expires))}; its work is not repeated",
            started,
        )

    def _renew_lease(self, namespace: Namespace) -> None:
        """Renew the lease once a third of it has passed. A lease lost meanwhile is not taken back:
        the apply transaction checks it, so this dream then writes nothing."""
        if time.monotonic() - self._renewed < self.settings.dream_lease_seconds / 3:
            return
        holder = self.ledger.acquire_lease(namespace, self.owner, self.settings.dream_lease_seconds, lease.holder_dead)
        if holder is not None:
            logger.warning("dream lease of %s passed to %s", format_namespace(namespace), lease.describe(holder[0]))
        self._renewed = time.monotonic()

    def _release_if_taken(self, taking: asyncio.Future, namespace: Namespace) -> None:
        if not taking.cancelled() and taking.exception() is None and taking.result() is None:
            threading.Thread(target=self._release_lease, args=(namespace,), name="langdream-lease-release").start()

    def _release_lease(self, namespace: Namespace) -> None:
        try:
            self.ledger.release_lease(namespace, self.owner)
        finally:
            lease.mark_live(self.owner, False)

    def _park(self, plan: _Plan, failures: list[BaseException]) -> DreamReport:
        """Park the job after reflections failed for good: nothing is applied (the applied set must
        not depend on which calls failed), what succeeded stays journaled, and the next dream
        resumes the job. A kill or an interrupt is not a reflection failure: it propagates."""
        for failure in failures:
            if not isinstance(failure, Exception):
                raise failure
        first = failures[0]
        cause = first.message if isinstance(first, LangDreamError) else f"{type(first).__name__}: {first}"
        reason = f"{len(failures)} of {len(plan.views)} cluster reflections failed; {cause}"
        logger.warning("dream %s parked: %s", plan.job.id, reason)
        logger.debug("the first reflection failure of dream %s", plan.job.id, exc_info=first)
        self.ledger.park_job(plan.job.id, reason)
        return DreamReport(**self._plan_facts(plan), parked=reason, seconds=time.perf_counter() - plan.started)

    def _plan_facts(self, plan: _Plan) -> dict[str, object]:
        """What every report of a planned dream says, applied or parked."""
        job = plan.job
        return {
            "namespace": job.namespace,
            "job_id": job.id,
            "episodes": len(job.episodes),
            "clusters": len(job.clusters),
            "noise": len(job.noise),
            "llm_calls": plan.llm_calls,
            "tokens_in": plan.tokens_in,
            "tokens_out": plan.tokens_out,
            "resumed": plan.resumed,
            "model_id": self.reflector.model_id,
            "prompt_version": self.reflector.prompt_version,
        }

    def sync_index(self) -> int:
        """Upsert changed active insights into the index and drop the others. Returns the count."""
        synced = 0
        while batch := self.ledger.dirty_insights(limit=self.index.max_batch_size):
            active = [(i, v) for i, v in batch if i.status is InsightStatus.ACTIVE and v is not None]
            self.index.upsert_insights(
                [i.id for i, _ in active],
                np.stack([v for _, v in active]) if active else np.zeros((0, 1), np.float32),
                [i.namespace for i, _ in active],
            )
            gone = [i for i, _ in batch if i.status is not InsightStatus.ACTIVE]
            self.index.delete_insights([i.id for i in gone], [i.namespace for i in gone])
            self.ledger.mark_indexed([(i.id, i.version) for i, _ in batch])
            synced += len(batch)
        return synced

    def _episode_vectors(self, episodes: list[Episode], progress: Progress) -> dict[str, np.ndarray]:
        """Vectors of ``episodes``: from the index when an earlier dream embedded them, else embedded now."""
        vectors = self.index.episode_vectors([e.id for e in episodes], episodes[0].namespace) if episodes else {}
        todo = [e for e in episodes if e.id not in vectors]
        batch = max(self.embedder.batch_size * 8, 256)
        progress("embed", 0, len(todo))
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            embedded = self.embedder.embed([e.task for e in chunk])
            self.index.upsert_episodes([e.id for e in chunk], embedded, [e.namespace for e in chunk])
            vectors.update(zip((e.id for e in chunk), embedded))
            progress("embed", start + len(chunk), len(todo))
        return vectors

    def _resumable(self, namespace: Namespace) -> DreamJob | None:
        """The open job of this namespace whose input is unchanged; other open jobs are abandoned."""
        resumable = None
        for job in reversed(self.ledger.open_jobs(namespace)):
            current = {e.id: e for e in self.ledger.get_episodes([i for i, _ in job.episodes])}
            same_reflector = (job.model_id, job.prompt_version) == (
                self.reflector.model_id,
                self.reflector.prompt_version,
            )
            unchanged = same_reflector and all(
                i in current and current[i].revision == rev and current[i].consolidated_by is None
                for i, rev in job.episodes
            )
            if unchanged and resumable is None:
                resumable = job
                self.ledger.resume_job(job.id)
            else:
                logger.info("abandoning dream job %s: its input changed or a newer job exists", job.id)
                self.ledger.abandon_job(job.id)
        return resumable

    def _plan(self, namespace: Namespace, progress: Progress) -> _Plan | DreamReport:
        started = time.perf_counter()
        stages: dict[str, float] = {}
        check_embedding_model(self.ledger, self.embedder)
        self.sync_index()
        job = self._resumable(namespace)
        resumed = job is not None
        if job is not None:
            episodes = self.ledger.get_episodes([i for i, _ in job.episodes])
        else:
            episodes = self.ledger.pending_episodes(namespace, self.settings.max_episodes_per_dream)
            if not episodes:
                return self._skipped(namespace, "no new episodes to consolidate", started)
            job_id = job_id_for(namespace, episodes, self.reflector.prompt_version, self.reflector.model_id)
            job_id, previous = self._retry_of(job_id, {e.id for e in episodes})
            if previous is not None and previous.status == "done":
                report = previous.report
                if report is not None and report.deferred and not report.llm_calls:
                    return self._skipped(
                        namespace,
                        f"dream {job_id} deferred all {report.deferred} clusters: none fits "
                        f"dream_token_budget={report.token_budget}; raise it",
                        started,
                    )
                return self._skipped(
                    namespace,
                    f"nothing new since dream {job_id} (its unclustered episodes are waiting for company)",
                    started,
                )
        t = time.perf_counter()
        vectors = self._episode_vectors(episodes, progress)
        stages["embed"] = time.perf_counter() - t
        joined = waiting = 0
        if job is None:
            t = time.perf_counter()
            grouping = self._group(namespace, job_id, episodes, vectors)
            stages["cluster"] = time.perf_counter() - t
            joined, waiting = grouping.joined, grouping.waiting
            job = DreamJob(
                id=job_id,
                namespace=namespace,
                episodes=[(e.id, e.revision) for e in episodes],
                clusters=grouping.clusters,
                cluster_ids=grouping.cluster_ids,
                noise=grouping.noise,
                prompt_version=self.reflector.prompt_version,
                model_id=self.reflector.model_id,
            )
            self.ledger.create_job(job)
            job = self.ledger.get_job(job.id) or job
        own = {e.id for e in episodes}
        context = [i for ids in job.clusters for i in ids if i not in own]
        by_id = {e.id: e for e in [*episodes, *self.ledger.get_episodes(context)]}
        # Redacted where they enter the plan (reflections journaled before redaction existed too).
        outputs = {
            cluster_no: [redact_operation(Operation.model_validate(o)) for o in json.loads(ops)]
            for cluster_no, (_, ops) in self.ledger.job_outputs(job.id).items()
        }
        views = self._views(job, by_id, vectors)
        return _Plan(job, by_id, vectors, views, outputs, resumed, started, stages, joined=joined, waiting=waiting)

    def _group(
        self, namespace: Namespace, job_id: str, episodes: list[Episode], vectors: dict[str, np.ndarray]
    ) -> _Grouping:
        """Clusters for this dream: pending episodes join the lasting clusters of earlier dreams they
        are close to; the rest are clustered among themselves. A joined cluster is reflected on again
        (with some of its earlier members for context) once enough new episodes joined it, or when an
        outcome of one of its members changed; otherwise its new members wait, still pending."""
        s = self.settings
        stored = self.ledger.clusters(namespace)
        member_of = self.ledger.cluster_of([e.id for e in episodes])  # members re-queued by feedback
        joining: dict[str, list[str]] = {}
        loose = [e for e in episodes if e.id not in member_of]
        for e in episodes:
            if e.id in member_of:
                joining.setdefault(member_of[e.id], []).append(e.id)
        if stored and loose:
            means = np.stack([c.mean for c in stored])
            similarity = np.stack([vectors[e.id] for e in loose]) @ means.T
            best = similarity.argmax(axis=1)
            rest = []
            for e, row, column in zip(loose, similarity, best, strict=True):
                if row[column] >= s.cluster_similarity:
                    joining.setdefault(stored[column].id, []).append(e.id)
                else:
                    rest.append(e)
            loose = rest
        grouping = _Grouping()
        for cluster_id, ids in sorted(joining.items(), key=lambda item: (-len(item[1]), item[0])):
            changed = any(i in member_of for i in ids)
            if len(ids) < s.cluster_refresh_episodes and not changed:
                grouping.waiting += len(ids)
                grouping.noise.extend(ids)
                continue
            grouping.joined += sum(1 for i in ids if i not in member_of)
            room = max(0, s.reflect_max_episodes - len(ids))
            earlier = [i for i in self.ledger.cluster_members(cluster_id, room + len(ids)) if i not in ids][:room]
            grouping.clusters.append([*ids, *earlier])
            grouping.cluster_ids.append(cluster_id)
        loose = self._worth_clustering(namespace, loose, vectors, grouping)
        if loose:
            result = cluster(
                np.stack([vectors[e.id] for e in loose]),
                min_cluster_size=s.min_cluster_size,
                similarity=s.cluster_similarity,
                memory_bytes=s.cluster_memory_bytes,
                device=s.device,
            )
            for rows in result.members():
                grouping.cluster_ids.append(new_cluster_id(job_id, len(grouping.clusters)))
                grouping.clusters.append([loose[i].id for i in rows])
            grouping.noise.extend(loose[i].id for i in np.flatnonzero(result.labels < 0))
        return grouping

    def _worth_clustering(
        self, namespace: Namespace, loose: list[Episode], vectors: dict[str, np.ndarray], grouping: _Grouping
    ) -> list[Episode]:
        """The loose episodes that can form a cluster now. Episodes the last dream already left
        unclustered did not group among themselves then; only those close to a newcomer may now,
        so the others wait without being clustered again (a dream's cost follows what is new)."""
        last = next((j for j in self.ledger.list_jobs(namespace, limit=5) if j.status == "done"), None)
        if last is None or not last.noise:
            return loose
        before = set(last.noise)
        old = [e for e in loose if e.id in before]
        new = [e for e in loose if e.id not in before]
        if not old:
            return loose
        near: list[Episode] = []
        if new:
            closeness = np.stack([vectors[e.id] for e in old]) @ np.stack([vectors[e.id] for e in new]).T
            near = [
                e for e, row in zip(old, closeness.max(axis=1), strict=True) if row >= self.settings.cluster_similarity
            ]
        keep = {e.id for e in near}
        grouping.noise.extend(e.id for e in old if e.id not in keep)
        return new + near

    def _retry_of(self, job_id: str, pending: set[str]) -> tuple[str, DreamJob | None]:
        """The job to run for this input: ``job_id``, or a retry of it when an earlier attempt left
        clusters for later because of the token budget (each dream has a fresh budget), or when
        episodes it consolidated are pending again: forgotten, then recorded again with the same
        ids (the same input by id and revision, yet new runs)."""
        attempt, candidate = 0, job_id
        previous = self.ledger.get_job(candidate)
        while previous is not None and previous.status == "done" and previous.report is not None:
            report = previous.report
            own = {i for i, _ in previous.episodes}
            reflected = self.ledger.job_outputs(previous.id)  # deferred clusters' episodes stayed pending
            recorded_again = any(i in pending and i in own for n in reflected for i in previous.clusters[n])
            if not recorded_again and (
                not report.deferred
                or (not report.llm_calls and report.token_budget == self.settings.dream_token_budget)
            ):
                break
            attempt += 1
            candidate = f"{job_id}-{attempt}"
            previous = self.ledger.get_job(candidate)
        return candidate, previous

    def _skipped(self, namespace: Namespace, reason: str, started: float) -> DreamReport:
        logger.info("dream %s: %s", format_namespace(namespace), reason)
        return DreamReport(
            namespace=namespace,
            skipped=reason,
            model_id=self.reflector.model_id,
            prompt_version=self.reflector.prompt_version,
            seconds=time.perf_counter() - started,
        )

    def _views(self, job: DreamJob, episodes: dict[str, Episode], vectors: dict[str, np.ndarray]) -> list[ClusterView]:
        """One view per cluster, with the live insights nearest to it: by wording, or by the runs
        they were learned from (the same two channels recall uses)."""
        live, live_vectors = self.ledger.insights_with_vectors(job.namespace, _LIVE)
        by_id = {i.id: i for i in live}
        limit = self.settings.nearby_insights
        views = []
        for number, ids in enumerate(job.clusters):
            nearby: list[Insight] = []
            if live and limit:
                centroid = np.mean([vectors[i] for i in ids if i in vectors], axis=0)
                relevance = dict(zip(by_id, (live_vectors @ centroid).tolist()))
                for insight_id, similarity in learned_nearby(
                    self.index, self.ledger, centroid, job.namespace, self.settings.recall_neighbours, _LIVE
                ).items():
                    relevance[insight_id] = max(similarity, relevance.get(insight_id, -1.0))
                ranked = sorted((i for i in relevance if i in by_id), key=lambda i: (-relevance[i], i))
                nearby = [by_id[i] for i in ranked[:limit]]
            views.append(ClusterView(number, job.namespace, [episodes[i] for i in ids], nearby))
        return views

    def _budget(self) -> _TokenBudget:
        return _TokenBudget(self.settings.dream_token_budget, self.settings.reflect_answer_tokens)

    def _reserve(self, budget: _TokenBudget, view: ClusterView) -> int | None:
        """Reserve the reflection's cost; the prompt is counted only when there is a limit to check."""
        return budget.reserve(prompt_tokens(self.reflector, view) if budget.limit is not None else 0)

    def _journal(
        self, plan: _Plan, view: ClusterView, reflection: Reflection, budget: _TokenBudget, reserved: int
    ) -> None:
        # Journaled redacted: a model can write a secret it was never shown.
        kept = [redact_operation(op) for op in reflection.operations]
        operations = json.dumps([op.model_dump(mode="json") for op in kept])
        self.ledger.save_output(plan.job.id, view.index, redact_text(reflection.raw)[0], operations)
        self._renew_lease(plan.job.namespace)
        budget.settle(reserved, reflection.tokens_in + reflection.tokens_out)
        with plan.lock:
            plan.outputs[view.index] = kept
            plan.tokens_in += reflection.tokens_in
            plan.tokens_out += reflection.tokens_out
            plan.llm_calls += 1 if reflection.tokens_in else 0

    def _reflect_and_journal(self, plan: _Plan, view: ClusterView, budget: _TokenBudget) -> None:
        reserved = self._reserve(budget, view)
        if reserved is None:
            plan.deferred.add(view.index)
            return
        self._journal(plan, view, self.reflector.reflect(view), budget, reserved)

    def _apply(self, plan: _Plan, progress: Progress) -> DreamReport:
        started = time.perf_counter()
        job = plan.job
        live, live_vectors = self.ledger.insights_with_vectors(job.namespace, _LIVE)
        context = DreamContext(
            namespace=job.namespace,
            job_id=job.id,
            model_id=self.reflector.model_id,
            prompt_version=self.reflector.prompt_version,
            origin=self.reflector.origin,
            settings=self.settings,
            now=utcnow(),
            episodes=plan.episodes,
            provenance_of=lambda ids: {e.id: (e.thread_id, e.task) for e in self.ledger.get_episodes(ids)},
        )
        context.remembered, context.remembered_vectors = self.ledger.remembered_claims(job.namespace)
        book = InsightBook(context, {i.id: i for i in live}, dict(zip((i.id for i in live), live_vectors)))
        self._drift_guard(plan, book)
        screened = [
            (
                view,
                screen(
                    plan.outputs.get(view.index, []), [e.id for e in view.episodes], [i.id for i in view.nearby]
                ).kept,
            )
            for view in plan.views
        ]
        adds = [op for _, kept in screened for op in kept if op.claim]
        candidate_vectors = dict(
            zip(map(id, adds), self._text_vectors([(op.claim or "", op.applies_when or "") for op in adds]))
        )
        checker = ClaimChecker(origin=self.reflector.origin, min_support=self.settings.min_support)
        for done, (view, kept) in enumerate(screened, start=1):
            for position, op in enumerate(kept):
                hold = None
                if op.claim and op.action in (InsightAction.ADD, InsightAction.EDIT):
                    hold = checker.hold(op, [plan.episodes[e] for e in op.evidence if e in plan.episodes])
                book.apply(op, view.index, position, candidate_vectors.get(id(op)), hold)
            progress("apply", done, len(screened))
        final = {ch.insight.id: ch.insight for ch in book.changes}
        reworded = [i for i in final.values() if i.id not in book.vectors]
        fresh = dict(zip((i.id for i in reworded), self._text_vectors([(i.text, i.applies_when) for i in reworded])))
        writes = book.writes(lambda insight: book.vectors.get(insight.id, fresh.get(insight.id)))
        counts = book.counts
        report = DreamReport(
            **self._plan_facts(plan),
            added=counts.get("added", 0),
            edited=counts.get("edited", 0),
            upvoted=counts.get("upvoted", 0),
            downvoted=counts.get("downvoted", 0),
            retired=counts.get("retired", 0),
            quarantined=sum(1 for i in final.values() if i.status is InsightStatus.QUARANTINED),
            held={k.removeprefix("held_"): n for k, n in counts.items() if k.startswith("held_")},
            drift_retired=counts.get("drift_retired", 0),
            joined=plan.joined,
            waiting=plan.waiting,
            deferred=len(plan.deferred),
            token_budget=self.settings.dream_token_budget,
            insight_ids=list(final),
        )
        reflected = [n for n in range(len(job.clusters)) if n in plan.outputs]
        own = dict(job.episodes)
        consolidated = [(i, own[i]) for n in reflected for i in job.clusters[n] if i in own]
        lasting = [
            ClusterWrite(
                job.cluster_ids[n],
                job.namespace,
                [i for i in job.clusters[n] if i in own],
                [plan.vectors[i] for i in job.clusters[n] if i in own],
            )
            for n in reflected
        ]
        plan.stages["apply"] = time.perf_counter() - started
        report = report.model_copy(
            update={"seconds": time.perf_counter() - plan.started, "stage_seconds": dict(plan.stages)}
        )
        try:
            self._renew_lease(job.namespace)
            self.ledger.commit_dream(job.id, writes, consolidated, report, lasting, lease_owner=self.owner)
        except LeaseLost as exc:
            # The dreamer that took the lease over now owns the job: leave it open for it.
            logger.warning("dream %s was not applied: %s", job.id, exc)
            return report.model_copy(update={"skipped": f"another dreamer took this namespace over ({exc})"})
        except LedgerConflict as exc:
            logger.warning("dream %s was not applied: %s", job.id, exc)
            self.ledger.abandon_job(job.id)
            return report.model_copy(update={"skipped": f"input changed while dreaming ({exc}); run it again"})
        self.sync_index()
        logger.info("dream %s", report.summary())
        return report

    def _drift_guard(self, plan: _Plan, book: InsightBook) -> None:
        """Tally the job's runs against the insights they relate to, then retire the active
        insights whose shown runs did clearly worse than comparable runs that were not shown them.

        A run relates to the insights it was shown, and (as a comparable run) to the active
        insights learned from its cluster. The tally is keyed by run, so storing it before the
        apply transaction is safe: a rerun stores the same rows.
        """
        own = dict(plan.job.episodes)
        exposures: dict[tuple[str, str], Exposure] = {}
        for view in plan.views:
            # Its cluster's earlier members, beyond those shown to the reflector, name what the
            # insights of this cluster are.
            members = self.ledger.cluster_members(plan.job.cluster_ids[view.index], _RELATED_MEMBERS)
            cited = [*(e.id for e in view.episodes), *members]
            related = set(self.ledger.insights_citing(cited, [InsightStatus.ACTIVE]))
            for e in view.episodes:
                if e.id in own and e.outcome.known:
                    for insight_id in related - set(e.injected_insight_ids):
                        exposures[insight_id, e.id] = Exposure(insight_id, e.id, False, bool(e.outcome.success))
        for episode_id in own:
            e = plan.episodes.get(episode_id)
            if e is not None and e.outcome.known:
                for insight_id in e.injected_insight_ids:
                    exposures[insight_id, e.id] = Exposure(insight_id, e.id, True, bool(e.outcome.success))
        if not exposures:
            return
        self.ledger.record_exposures(list(exposures.values()))
        for insight_id, effect in sorted(self.ledger.effects([x.insight_id for x in exposures.values()]).items()):
            insight = book.insights.get(insight_id)
            if insight is None or insight.status is not InsightStatus.ACTIVE:
                continue
            reason = drift_verdict(
                effect,
                min_runs=self.settings.drift_min_runs,
                margin=self.settings.drift_margin,
                z=self.settings.drift_z,
            )
            if reason is not None:
                book.retire_for_drift(insight, effect, reason)

    def _text_vectors(self, items: list[tuple[str, str]]) -> list[np.ndarray]:
        """Index vectors of insights, from their wording (``applies_when`` and claim)."""
        if not items:
            return []
        return list(self.embedder.embed([insight_text_for_embedding(text, when) for text, when in items]))
