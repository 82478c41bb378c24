"""Applying screened operations to a namespace's insights, as pure state changes.

``InsightBook`` holds the insights a dream may touch and turns each operation into a new head
state plus a history entry (an ``InsightWrite``). Nothing here does I/O: the dream commits the
writes in one ledger transaction. Ids of new insights are derived from the job, the cluster and
the operation's position, so a rerun of the same journaled job writes the same ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from langdream.config import Settings
from langdream.guard import support_status
from langdream.ledger import InsightWrite
from langdream.namespace import Namespace, namespace_key
from langdream.reflect import Operation
from langdream.reflect.extractive import contrast_claim, merge_contrast
from langdream.types import Episode, Insight, InsightAction, InsightEffect, InsightHold, InsightOrigin, InsightStatus

# (hold, reason): why a candidate waits for a person instead of for evidence.
Hold = tuple[InsightHold, str]

# How much one upvote / downvote moves confidence.
_UPVOTE_STEP = 0.2
_DOWNVOTE_FACTOR = 0.7


_WITHDRAWN = (InsightStatus.RETIRED, InsightStatus.REVOKED)


def spread(provenance: Mapping[str, tuple[str | None, str]]) -> tuple[int, int]:
    """Distinct threads and distinct tasks among evidence episodes given as id -> (thread id, task)."""
    # An episode without a thread id is its own session.
    threads = {thread or f"episode:{e}" for e, (thread, _) in provenance.items()}
    tasks = {" ".join(task.lower().split()) for thread, task in provenance.values()}
    return len(threads), len(tasks)


def held(insight: Insight, hold: Hold) -> Insight:
    """``insight`` quarantined until a person lifts ``hold``."""
    return insight.model_copy(update={"hold": hold[0], "status": InsightStatus.QUARANTINED, "status_reason": hold[1]})


def insight_id(namespace: Namespace, job_id: str, cluster: int, position: int) -> str:
    digest = hashlib.sha256(f"{namespace_key(namespace)}|{job_id}|{cluster}|{position}".encode()).hexdigest()
    return f"ins_{digest[:20]}"


def insight_text_for_embedding(text: str, applies_when: str) -> str:
    return f"{applies_when}\n{text}" if applies_when else text


@dataclass
class DreamContext:
    namespace: Namespace
    job_id: str
    model_id: str
    prompt_version: str
    origin: InsightOrigin
    settings: Settings
    now: datetime
    episodes: Mapping[str, Episode]  # the job's episodes, for provenance and "shown insight" checks
    # (thread id, task) of evidence from earlier dreams, looked up in the ledger.
    provenance_of: Callable[[list[str]], dict[str, tuple[str | None, str]]]
    # Claims retired or rejected on their merits, with their vectors: never silently learned again.
    remembered: list[Insight] = field(default_factory=list)
    remembered_vectors: np.ndarray | None = None


@dataclass
class _Change:
    insight: Insight
    action: InsightAction
    cause: str = ""


@dataclass
class InsightBook:
    """The namespace's live (non-retired) insights while one dream changes them."""

    context: DreamContext
    insights: dict[str, Insight]
    vectors: dict[str, np.ndarray]
    changes: list[_Change] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    # (thread id, task) of evidence episodes, looked up once per dream.
    _provenance: dict[str, tuple[str | None, str]] = field(default_factory=dict)

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _independent(self, insight_id_: str, evidence: list[str]) -> list[str]:
        """Evidence minus the episodes that were shown this very insight (they cannot support it)."""
        episodes = self.context.episodes
        return [e for e in evidence if e not in episodes or insight_id_ not in episodes[e].injected_insight_ids]

    def _spread(self, evidence: list[str]) -> tuple[int, int]:
        """Distinct threads and distinct tasks among the evidence."""
        known, episodes = self._provenance, self.context.episodes
        for e in evidence:
            if e not in known and e in episodes:
                known[e] = (episodes[e].thread_id, episodes[e].task)
        unknown = [e for e in evidence if e not in known]
        if unknown:
            known.update(self.context.provenance_of(unknown))
        return spread({e: known[e] for e in evidence if e in known})

    def _settle(self, insight: Insight) -> Insight:
        """Recompute support and status after evidence or confidence changed."""
        s = self.context.settings
        support = len(insight.evidence)
        threads, tasks = self._spread(insight.evidence)
        status, reason = insight.status, insight.status_reason
        if insight.hold is not None and status is InsightStatus.QUARANTINED:
            pass  # waits for a person whatever its support; the hold's reason stays
        elif insight.status not in _WITHDRAWN:
            if insight.confidence < s.retire_confidence:
                status = InsightStatus.RETIRED
                reason = f"confidence {insight.confidence:.2f} fell below {s.retire_confidence:.2f} in dream {self.context.job_id}"
            else:
                status, reason = support_status(
                    support,
                    threads,
                    insight.confidence,
                    min_support=s.min_support,
                    min_threads=s.min_threads,
                    min_confidence=s.min_confidence,
                )
        return insight.model_copy(
            update={"support": support, "threads": threads, "tasks": tasks, "status": status, "status_reason": reason}
        )

    def _stamp(self, insight: Insight, **update) -> Insight:
        c = self.context
        return insight.model_copy(
            update={
                **update,
                "version": insight.version + 1,
                "job_id": c.job_id,
                "model_id": c.model_id,
                "prompt_version": c.prompt_version,
                "updated_at": c.now,
            }
        )

    def _over_cap(self, kind: str) -> bool:
        """Whether one more change of ``kind`` (new / edited / retired) exceeds this dream's cap."""
        s = self.context.settings
        cap = {"new": s.max_new_per_dream, "edited": s.max_edited_per_dream, "retired": s.max_retired_per_dream}[kind]
        return cap is not None and self.counts.get(f"live_{kind}", 0) >= cap

    def _gate(self, kind: str, hold: Hold | None) -> Hold | None:
        """The hold a new or reworded claim gets: the guard's, review mode's, or the churn cap's."""
        if hold is not None:
            return hold
        if self.context.settings.review_mode:
            return InsightHold.REVIEW, f"waits for review: {kind} in dream {self.context.job_id} (review mode is on)"
        if self._over_cap(kind):
            return InsightHold.CHURN, f"held for review: over the cap of {kind} insights per dream"
        self._count(f"live_{kind}")
        return None

    def remembered_match(self, op: Operation, vector: np.ndarray | None) -> Insight | None:
        """A retired or rejected insight that said what ``op`` says (same signature or nearly the same vector)."""
        c = self.context
        if op.signature:
            for insight in c.remembered:
                if insight.signature == op.signature:
                    return insight
        if vector is None or c.remembered_vectors is None or not len(c.remembered):
            return None
        similarities = c.remembered_vectors @ vector
        best = int(np.argmax(similarities))
        return c.remembered[best] if similarities[best] >= c.settings.duplicate_similarity else None

    def _record(self, insight: Insight, action: InsightAction, cause: str = "") -> None:
        previous = self.insights.get(insight.id)
        if insight.status is InsightStatus.RETIRED and (previous is None or previous.status is not InsightStatus.RETIRED):
            if self._over_cap("retired"):
                insight = held(
                    insight.model_copy(update={"status": previous.status if previous else InsightStatus.QUARANTINED}),
                    (InsightHold.CHURN, f"retirement held for review: over the cap of retirements per dream ({cause})"),
                )
            else:
                self._count("live_retired")
                insight = insight.model_copy(update={"remembered": True})
        if previous is not None and (previous.text, previous.applies_when) != (insight.text, insight.applies_when):
            self.vectors.pop(insight.id, None)  # reworded: its vector must be embedded again
        self.insights[insight.id] = insight
        self.changes.append(_Change(insight, action, cause or insight.status_reason))
        if insight.hold is not None and (previous is None or previous.hold is None):
            self._count(f"held_{insight.hold.value}")
        if insight.status is InsightStatus.RETIRED:
            self.insights.pop(insight.id)

    def duplicate_of(self, op: Operation, vector: np.ndarray | None) -> Insight | None:
        """An existing live insight that says the same thing: same signature, or nearly the same vector."""
        if op.signature:
            for insight in self.insights.values():
                if insight.signature == op.signature:
                    return insight
        if vector is None:
            return None
        best, best_sim = None, self.context.settings.duplicate_similarity
        for iid, other in self.vectors.items():
            if iid in self.insights:
                sim = float(np.dot(vector, other))
                if sim >= best_sim:
                    best, best_sim = self.insights[iid], sim
        return best

    def apply(
        self, op: Operation, cluster: int, position: int, vector: np.ndarray | None, hold: Hold | None = None
    ) -> None:
        """Apply one screened operation. ``vector`` is the candidate's vector, for an add; ``hold``
        is the guard's verdict on its claim (add and edit)."""
        if op.action is InsightAction.ADD:
            existing = self.duplicate_of(op, vector)
            if existing is not None:
                self._upvote(existing, op, hold)
                return
            self._add(op, cluster, position, vector, hold)
            return
        target = self.insights.get(op.insight_id or "")
        if target is None:  # retired earlier in this same dream
            return
        if op.action is InsightAction.UPVOTE:
            self._upvote(target, op)
        elif op.action is InsightAction.EDIT:
            evidence = list(dict.fromkeys(target.evidence + self._independent(target.id, op.evidence)))
            edited = self._stamp(
                target,
                text=op.claim,
                applies_when=op.applies_when or target.applies_when,
                evidence=evidence,
                confidence=round((target.confidence + op.confidence) / 2, 3),
            )
            gate = self._gate("edited", hold)
            edited = self._settle(held(edited, gate) if gate else edited)
            self._record(edited, InsightAction.EDIT, f"edited by the reflector on cluster {cluster}")
            self._count("edited")
        elif op.action is InsightAction.DOWNVOTE:
            lowered = self._stamp(target, confidence=round(target.confidence * _DOWNVOTE_FACTOR, 3))
            self._record(self._settle(lowered), InsightAction.DOWNVOTE, f"downvoted by the reflector on cluster {cluster}")
            self._count("downvoted")
        elif op.action is InsightAction.RETIRE:
            retired = self._stamp(
                target,
                status=InsightStatus.RETIRED,
                status_reason=f"retired by the reflector in dream {self.context.job_id}",
            )
            self._record(retired, InsightAction.RETIRE, f"retired by the reflector on cluster {cluster}")
        if op.action in (InsightAction.DOWNVOTE, InsightAction.RETIRE) and self.insights.get(target.id) is None:
            self._count("retired")

    def _add(self, op: Operation, cluster: int, position: int, vector: np.ndarray | None, hold: Hold | None) -> None:
        c = self.context
        new = Insight(
            id=insight_id(c.namespace, c.job_id, cluster, position),
            namespace=c.namespace,
            text=op.claim or "",
            applies_when=op.applies_when or "",
            status=InsightStatus.QUARANTINED,
            origin=c.origin,
            evidence=list(op.evidence),
            confidence=op.confidence,
            version=1,
            model_id=c.model_id,
            prompt_version=c.prompt_version,
            job_id=c.job_id,
            signature=op.signature,
            stats=dict(op.stats),
            created_at=c.now,
            updated_at=c.now,
        )
        if hold is None and (old := self.remembered_match(op, vector)) is not None:
            hold = (
                InsightHold.RETIRED_CLAIM,
                f"says what {old.status.value} insight {old.id} said ({old.status_reason}); a person must approve it",
            )
        gate = self._gate("new", hold)
        new = self._settle(held(new, gate) if gate else new)
        self._record(new, InsightAction.ADD, f"added by the reflector on cluster {cluster}")
        if vector is not None:
            self.vectors[new.id] = vector
        self._count("added")

    def _upvote(self, target: Insight, op: Operation, hold: Hold | None = None) -> None:
        fresh = [e for e in self._independent(target.id, op.evidence) if e not in target.evidence]
        if not fresh:
            return
        update: dict = {"evidence": target.evidence + fresh}
        action = InsightAction.UPVOTE
        pooled = merge_contrast(target.stats, op.stats)
        if pooled is not None:
            # An extractive contrast: its direction and confidence follow the pooled counts.
            claim, when, confidence = contrast_claim(pooled)
            update.update(stats=pooled, text=claim, applies_when=when, confidence=confidence)
            if claim != target.text:
                action = InsightAction.EDIT
        else:
            update["confidence"] = round(target.confidence + (1 - target.confidence) * _UPVOTE_STEP, 3)
        upvoted = self._stamp(target, **update)
        if action is InsightAction.EDIT and (gate := self._gate("edited", hold)) is not None:
            upvoted = held(upvoted, gate)
        self._record(self._settle(upvoted), action, f"supported again by cluster evidence ({len(fresh)} new episodes)")
        self._count("edited" if action is InsightAction.EDIT else "upvoted")

    def retire_for_drift(self, insight: Insight, effect: InsightEffect, reason: str) -> None:
        """Retire an active insight whose runs did clearly worse when shown it (the drift guard)."""
        retired = self._stamp(insight, status=InsightStatus.RETIRED, status_reason=f"drift guard: {reason}")
        self._record(retired, InsightAction.RETIRE, f"drift guard: {reason}")
        if self.insights.get(insight.id) is None:
            self._count("retired")
            self._count("drift_retired")

    def writes(self, vector_for: Callable[[Insight], np.ndarray | None]) -> list[InsightWrite]:
        return [InsightWrite(ch.insight, ch.action, vector_for(ch.insight), cause=ch.cause) for ch in self.changes]


__all__ = ["DreamContext", "Hold", "InsightBook", "held", "insight_id", "insight_text_for_embedding", "spread"]
