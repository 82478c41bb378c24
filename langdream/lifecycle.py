"""What people do to insights, and how langdream explains them: approve, reject, retire, roll back.

Each function reads the ledger and returns the ``InsightWrite`` events to commit (or an
explanation); ``DreamMemory`` commits them in one transaction and brings the index up to date.
Every event names its actor (``person:<name>`` by default) and its cause.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable

import numpy as np

from langdream.apply import insight_text_for_embedding, spread
from langdream.config import Settings
from langdream.errors import LifecycleError, NotFoundError
from langdream.guard import support_status
from langdream.ledger import InsightWrite, Ledger
from langdream.types import (
    EvidenceEpisode,
    Explanation,
    Insight,
    InsightAction,
    InsightEffect,
    InsightHold,
    InsightStatus,
    InsightVersion,
    RollbackReport,
    utcnow,
)

# Embeds insight wordings (``applies_when`` and claim) for the index.
EmbedTexts = Callable[[list[str]], np.ndarray]
_WITHDRAWN = (InsightStatus.RETIRED, InsightStatus.REVOKED)
# The fields that make up an insight's state in the insight set; rollback restores all of them.
STATE_FIELDS = (
    "status",
    "status_reason",
    "hold",
    "remembered",
    "text",
    "applies_when",
    "evidence",
    "support",
    "threads",
    "tasks",
    "confidence",
    "stats",
)


def default_actor() -> str:
    """``person:<login name>``: who acted, when the caller does not say."""
    try:
        return f"person:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "person:unknown"


def _require(ledger: Ledger, insight_id: str) -> Insight:
    insight = ledger.get_insight(insight_id)
    if insight is None:
        raise NotFoundError(f"no insight with id {insight_id!r}", hint="see `langdream insights list --status all`")
    return insight


def _next(insight: Insight, **update) -> Insight:
    return insight.model_copy(update={**update, "version": insight.version + 1, "updated_at": utcnow()})


def _earned(insight: Insight, settings: Settings) -> tuple[InsightStatus, str]:
    return support_status(
        insight.support,
        insight.threads,
        insight.confidence,
        min_support=settings.min_support,
        min_threads=settings.min_threads,
        min_confidence=settings.min_confidence,
    )


def approve(ledger: Ledger, settings: Settings, insight_id: str, actor: str, note: str = "") -> InsightWrite:
    """Lift a quarantined insight's hold: it is active at once if its support is earned, else it
    waits for evidence like any other. A held retirement is thereby refused (the insight stays)."""
    insight = _require(ledger, insight_id)
    if insight.status is not InsightStatus.QUARANTINED:
        raise LifecycleError(
            f"insight {insight_id} is {insight.status.value}; only quarantined insights can be approved",
            hint="to bring back a retired or revoked insight, roll back to a dream before it was withdrawn",
        )
    status, earned = _earned(insight, settings)
    cause = f"approved by {actor}" + (f": {note}" if note else "")
    reason = cause if status is InsightStatus.ACTIVE else f"{cause}; {earned}"
    return InsightWrite(
        _next(insight, hold=None, status=status, status_reason=reason), InsightAction.APPROVE, None, actor, cause
    )


def _approved_wording(ledger: Ledger, insight: Insight) -> InsightVersion | None:
    """The last version before a held edit that was active and unheld, if the head is a held edit."""
    history = ledger.insight_history(insight.id)
    if not history or history[-1].action is not InsightAction.EDIT:
        return None
    for version in reversed(history[:-1]):
        if version.status is InsightStatus.ACTIVE and version.hold is None:
            return version
    return None


def reject(
    ledger: Ledger, settings: Settings, embed: EmbedTexts, insight_id: str, actor: str, note: str = ""
) -> InsightWrite:
    """Revoke an insight a person judged wrong; it is remembered, so dreams will not learn it
    again silently. A held edit of an approved insight is undone instead: its approved wording returns."""
    insight = _require(ledger, insight_id)
    if insight.status in _WITHDRAWN:
        raise LifecycleError(f"insight {insight_id} is already {insight.status.value}", hint="nothing to reject")
    cause = f"rejected by {actor}" + (f": {note}" if note else "")
    previous = _approved_wording(ledger, insight) if insight.hold in (InsightHold.REVIEW, InsightHold.CHURN) else None
    if previous is not None:
        restored = _next(insight, text=previous.text, applies_when=previous.applies_when, hold=None)
        status, earned = _earned(restored, settings)
        restored = restored.model_copy(
            update={"status": status, "status_reason": f"{cause}; the wording of version {previous.version} is back"}
        )
        vector = embed([insight_text_for_embedding(restored.text, restored.applies_when)])[0]
        return InsightWrite(restored, InsightAction.REJECT, vector, actor, f"{cause} (the edit only)")
    revoked = _next(insight, status=InsightStatus.REVOKED, status_reason=cause, hold=None, remembered=True)
    return InsightWrite(revoked, InsightAction.REJECT, None, actor, cause)


def retire(ledger: Ledger, insight_id: str, actor: str, note: str = "") -> InsightWrite:
    """Retire an insight by a person's decision; it is remembered like one retired by evidence."""
    insight = _require(ledger, insight_id)
    if insight.status in _WITHDRAWN:
        raise LifecycleError(f"insight {insight_id} is already {insight.status.value}", hint="nothing to retire")
    cause = f"retired by {actor}" + (f": {note}" if note else "")
    retired = _next(insight, status=InsightStatus.RETIRED, status_reason=cause, hold=None, remembered=True)
    return InsightWrite(retired, InsightAction.RETIRE, None, actor, cause)


def state_of(item: Insight | InsightVersion) -> dict:
    """The part of an insight (or of one of its versions) that the insight set consists of."""
    return {name: getattr(item, name) for name in STATE_FIELDS}


def rollback(
    ledger: Ledger, settings: Settings, embed: EmbedTexts, to_dream: str, actor: str
) -> tuple[RollbackReport, list[InsightWrite]]:
    """The events that put the namespace of dream ``to_dream`` back to its insight set right after
    that dream: each insight restored to its state then, and insights learned later revoked.

    Evidence that has been forgotten since stays forgotten (its support is counted without it).
    Episodes that later dreams consumed stay consumed.
    """
    job = ledger.get_job(to_dream)
    if job is None:
        raise NotFoundError(f"no dream job {to_dream!r}", hint="`langdream jobs` lists the dreams of this data home")
    if job.status != "done" or job.committed_seq is None:
        raise LifecycleError(
            f"dream {to_dream} is {job.status}"
            + (" and was committed before rollback points were kept" if job.status == "done" else ""),
            hint="roll back to a dream that finished (status done) on this version of langdream",
        )
    past = ledger.versions_at(job.namespace, job.committed_seq)
    current = ledger.list_insights(job.namespace)
    cited = {e for v in past.values() for e in v.evidence}
    alive = {e.id: (e.thread_id, e.task) for e in ledger.get_episodes(sorted(cited))}
    report = RollbackReport(namespace=job.namespace, to_dream=job.id)
    cause = f"rollback to dream {job.id} by {actor}"
    writes: list[InsightWrite] = []
    reword: list[Insight] = []
    for insight in current:
        then = past.get(insight.id)
        if then is None:
            if insight.status is InsightStatus.REVOKED:
                report.unchanged += 1
                continue
            revoked = _next(
                insight,
                status=InsightStatus.REVOKED,
                status_reason=f"{cause}: learned after that dream",
                hold=None,
                remembered=False,
            )
            writes.append(InsightWrite(revoked, InsightAction.REVOKE, None, actor, cause))
            report.revoked.append(insight.id)
            continue
        state = state_of(then)
        evidence = [e for e in then.evidence if e in alive]
        if len(evidence) != len(then.evidence):
            threads, tasks = spread({e: alive[e] for e in evidence})
            state.update(evidence=evidence, support=len(evidence), threads=threads, tasks=tasks)
            if state["status"] is InsightStatus.ACTIVE and not evidence or (
                state["status"] is InsightStatus.ACTIVE
                and _earned(insight.model_copy(update=state), settings)[0] is not InsightStatus.ACTIVE
            ):
                state.update(status=InsightStatus.REVOKED, status_reason=f"{cause}: its evidence was forgotten since")
        if state == state_of(insight):
            report.unchanged += 1
            continue
        restored = _next(
            insight, **state, job_id=then.job_id, model_id=then.model_id, prompt_version=then.prompt_version
        )
        writes.append(InsightWrite(restored, InsightAction.RESTORE, None, actor, cause))
        if (restored.text, restored.applies_when) != (insight.text, insight.applies_when):
            reword.append(restored)
        report.restored.append(insight.id)
    if reword:
        vectors = dict(
            zip(
                (i.id for i in reword),
                embed([insight_text_for_embedding(i.text, i.applies_when) for i in reword]),
            )
        )
        writes = [
            InsightWrite(w.insight, w.action, vectors.get(w.insight.id), w.actor, w.cause) if w.insight.id in vectors else w
            for w in writes
        ]
    return report, writes


def explain(ledger: Ledger, insight_id: str) -> Explanation:
    """The full chain behind an insight: its versions, its evidence episodes with their outcomes
    (also those cited once and forgotten since), and the dream jobs that changed it."""
    insight = _require(ledger, insight_id)
    versions = ledger.insight_history(insight_id)
    cited = list(dict.fromkeys([*insight.evidence, *(e for v in versions for e in v.evidence)]))
    found = {e.id: e for e in ledger.get_episodes(cited) if e.namespace == insight.namespace}
    evidence = []
    for episode_id in cited:
        episode = found.get(episode_id)
        if episode is None:
            evidence.append(EvidenceEpisode(id=episode_id))
            continue
        evidence.append(
            EvidenceEpisode(
                id=episode.id,
                task=episode.task,
                outcome=episode.outcome.label,
                thread_id=episode.thread_id,
                consolidated_by=episode.consolidated_by,
                shown_this_insight=insight_id in episode.injected_insight_ids,
            )
        )
    job_ids = list(dict.fromkeys(v.job_id for v in versions if v.job_id))
    jobs = [job for job in (ledger.get_job(j) for j in job_ids) if job is not None]
    effect = ledger.effects([insight_id]).get(insight_id, InsightEffect())
    return Explanation(insight=insight, versions=versions, evidence=evidence, jobs=jobs, effect=effect)


__all__ = ["STATE_FIELDS", "approve", "default_actor", "explain", "reject", "retire", "rollback", "state_of"]
