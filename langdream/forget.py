"""Forgetting: which episodes go, and what happens to the insights that cited them.

``plan_forget`` reads the ledger and the index and returns a ``ForgetPlan``: the episodes to
delete; each insight that cited them with its support recomputed (active ones that fall below
the threshold are revoked); insights whose text quoted a forgotten run, or that have no
evidence left, scrubbed; the lasting clusters' vector sums without the forgotten members.
``DreamMemory.forget`` applies it in one transaction, deletes the vectors from the index, and
compacts the ledger so no copy of the text stays in the file or its WAL.
"""

from __future__ import annotations

import numpy as np

from langdream.apply import spread
from langdream.config import Settings
from langdream.guard import support_status
from langdream.index import ChromaIndex
from langdream.ledger import ForgetPlan, InsightWrite, Ledger
from langdream.namespace import Namespace
from langdream.types import Episode, Insight, InsightAction, InsightStatus, utcnow

# A forgotten run's task or answer counts as quoted by an insight when this much of it is there.
_QUOTE_CHARS = 40


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def quotes(text: str, episode: Episode) -> bool:
    """Whether ``text`` repeats a distinctive part of the episode's task or final answer."""
    haystack = _norm(text)
    for source in (episode.task, episode.final_answer or ""):
        needle = _norm(source)[:_QUOTE_CHARS]
        if len(needle) >= 20 and needle in haystack:
            return True
    return False


def plan_forget(
    ledger: Ledger,
    index: ChromaIndex,
    settings: Settings,
    forgotten: list[tuple[str, Namespace]],
    whole: Namespace | None,
    actor: str,
) -> tuple[ForgetPlan, int, int]:
    """The plan, and how many cited insights keep their status / are revoked."""
    ids = [i for i, _ in forgotten]
    if whole is not None:
        return ForgetPlan(episodes=ids, namespaces=[whole]), 0, 0
    gone = set(ids)
    episodes = {e.id: e for e in ledger.get_episodes(ids)}
    citing = ledger.insights_citing(ids, list(InsightStatus))
    insights = ledger.get_insights(sorted(citing))
    remaining = {e for i in insights for e in i.evidence if e not in gone}
    provenance = {e.id: (e.thread_id, e.task) for e in ledger.get_episodes(sorted(remaining))}
    writes: list[InsightWrite] = []
    scrub: list[str] = []
    updated = revoked = 0
    cited_by = {i.id for i in insights}
    # An insight can quote a run it does not cite (an extractive warning quotes its cluster's
    # most typical task, which may be a success): every insight of the namespace is checked.
    def quoting(insight: Insight) -> bool:
        return any(quotes(f"{insight.text}\n{insight.applies_when}", e) for e in episodes.values())

    for namespace in {n for _, n in forgotten}:
        for insight in ledger.list_insights(namespace):
            if insight.id not in cited_by and quoting(insight):
                write, fell = _recount(insight, insight.evidence, {}, settings, actor, 0, quoted=True)
                writes.append(write)
                scrub.append(insight.id)
                revoked += fell
    for insight in insights:
        lost = [e for e in insight.evidence if e in gone]
        evidence = [e for e in insight.evidence if e not in gone and e in provenance]
        quoted = quoting(insight)
        write, fell = _recount(insight, evidence, provenance, settings, actor, len(lost), quoted=quoted)
        writes.append(write)
        revoked += fell
        updated += not fell
        if quoted or not evidence:
            scrub.append(insight.id)
    return ForgetPlan(episodes=ids, writes=writes, scrub=scrub, cluster_sums=_cluster_sums(ledger, index, forgotten)), updated, revoked


def _recount(
    insight: Insight,
    evidence: list[str],
    provenance: dict[str, tuple[str | None, str]],
    settings: Settings,
    actor: str,
    lost: int,
    *,
    quoted: bool = False,
) -> tuple[InsightWrite, bool]:
    """The insight with its support recounted over ``evidence``; and whether it fell (was revoked).
    One whose wording ``quoted`` a forgotten run is revoked whatever its support: its text goes."""
    known = {e: provenance[e] for e in evidence if e in provenance}
    # An insight that cited none of the forgotten runs keeps its counts.
    threads, tasks = spread(known) if len(known) == len(evidence) else (insight.threads, insight.tasks)
    cause = f"{lost} evidence episode(s) forgotten by {actor}"
    status, reason = insight.status, insight.status_reason
    if quoted:
        cause = f"its wording quoted a run forgotten by {actor}"
        status, reason = InsightStatus.REVOKED, cause
    elif insight.status in (InsightStatus.ACTIVE, InsightStatus.QUARANTINED) and insight.hold is None:
        earned, why = support_status(
            len(evidence),
            threads,
            insight.confidence,
            min_support=settings.min_support,
            min_threads=settings.min_threads,
            min_confidence=settings.min_confidence,
        )
        if insight.status is InsightStatus.ACTIVE and earned is not InsightStatus.ACTIVE:
            status, reason = InsightStatus.REVOKED, f"{cause}; {why}"
        else:
            reason = why  # the support it is left with
    if not evidence and status is not InsightStatus.REVOKED:
        status, reason = InsightStatus.REVOKED, f"{cause}; no evidence is left"
    fell = status is InsightStatus.REVOKED and insight.status is not InsightStatus.REVOKED
    new = insight.model_copy(
        update={
            "evidence": evidence,
            "support": len(evidence),
            "threads": threads,
            "tasks": tasks,
            "status": status,
            "status_reason": reason,
            "hold": None if status is InsightStatus.REVOKED else insight.hold,
            "version": insight.version + 1,
            "updated_at": utcnow(),
        }
    )
    return InsightWrite(new, InsightAction.FORGET, None, actor, cause), fell


def _cluster_sums(
    ledger: Ledger, index: ChromaIndex, forgotten: list[tuple[str, Namespace]]
) -> dict[str, tuple[np.ndarray, int]]:
    """Lasting clusters' (vector sum, size) without their forgotten members."""
    member_of = ledger.cluster_of([i for i, _ in forgotten])
    if not member_of:
        return {}
    sums: dict[str, tuple[np.ndarray, int]] = {}
    by_namespace: dict[Namespace, list[str]] = {}
    for episode_id, namespace in forgotten:
        if episode_id in member_of:
            by_namespace.setdefault(namespace, []).append(episode_id)
    for namespace, members in by_namespace.items():
        stored = {c.id: c for c in ledger.clusters(namespace)}
        vectors = index.episode_vectors(members, namespace)
        for episode_id in members:
            cluster = stored.get(member_of[episode_id])
            if cluster is None:
                continue
            total, size = sums.get(cluster.id, (cluster.vector_sum.copy(), cluster.size))
            vector = vectors.get(episode_id)
            sums[cluster.id] = (total - vector if vector is not None else total, size - 1)
    return sums


__all__ = ["plan_forget", "quotes"]
