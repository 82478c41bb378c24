"""Structural rules every proposed operation must pass, whatever reflector produced it."""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass

from langdream.reflect import Operation
from langdream.types import InsightAction, InsightEffect, InsightStatus

logger = logging.getLogger("langdream.guard")

_NEEDS_TARGET = {InsightAction.EDIT, InsightAction.UPVOTE, InsightAction.DOWNVOTE, InsightAction.RETIRE}
_NEEDS_CLAIM = {InsightAction.ADD, InsightAction.EDIT}
_NEEDS_EVIDENCE = {InsightAction.ADD, InsightAction.EDIT, InsightAction.UPVOTE}
_MAX_CLAIM_CHARS = 600


@dataclass(frozen=True)
class Screened:
    kept: list[Operation]
    dropped: list[tuple[Operation, str]]


def screen(operations: list[Operation], cluster_ids: Collection[str], shown_insight_ids: Collection[str]) -> Screened:
    """Keep the operations that cite only the cluster's episodes and only insights that were shown."""
    cluster_ids, shown = set(cluster_ids), set(shown_insight_ids)
    kept, dropped = [], []
    for op in operations:
        foreign = [e for e in op.evidence if e not in cluster_ids]
        evidence = list(dict.fromkeys(e for e in op.evidence if e in cluster_ids))
        reason = None
        if op.action in _NEEDS_TARGET and op.insight_id not in shown:
            reason = f"{op.action.value} names insight {op.insight_id!r}, which the reflector was not shown"
        elif op.action in _NEEDS_CLAIM and not (op.claim and op.claim.strip()):
            reason = f"{op.action.value} without a claim"
        elif op.action in _NEEDS_CLAIM and len(op.claim or "") > _MAX_CLAIM_CHARS:
            reason = f"claim longer than {_MAX_CLAIM_CHARS} characters"
        elif op.action in _NEEDS_EVIDENCE and not evidence:
            reason = "no evidence from this cluster" + (f" (cited outside it: {foreign[:3]})" if foreign else "")
        if reason:
            logger.info("dropped a reflection operation: %s", reason)
            dropped.append((op, reason))
            continue
        if foreign:
            logger.info("ignored evidence from outside the cluster: %s", foreign[:5])
        kept.append(op.model_copy(update={"evidence": evidence, "claim": op.claim and op.claim.strip()}))
    return Screened(kept, dropped)


def support_status(
    support: int, threads: int, confidence: float, *, min_support: int, min_threads: int, min_confidence: float
) -> tuple[InsightStatus, str]:
    """Active only with enough independent support and confidence; otherwise quarantined, saying why."""
    if support < min_support or threads < min_threads:
        return (
            InsightStatus.QUARANTINED,
            f"needs {min_support} supporting episodes from {min_threads} threads; has {support} from {threads}",
        )
    if confidence < min_confidence:
        return InsightStatus.QUARANTINED, f"confidence {confidence:.2f} is below {min_confidence:.2f}"
    return InsightStatus.ACTIVE, f"supported by {support} episodes from {threads} threads"


def drift_verdict(effect: InsightEffect, *, min_runs: int, margin: float, z: float) -> str | None:
    """Why an insight did clearly more harm than good, or None.

    Clearly: at least ``min_runs`` runs on each side, a success rate lower by at least
    ``margin`` when shown, and a one-sided two-proportion z statistic of at least ``z``.
    """
    if effect.shown < min_runs or effect.unshown < min_runs:
        return None
    shown, unshown = effect.shown_successes / effect.shown, effect.unshown_successes / effect.unshown
    if unshown - shown < margin:
        return None
    pooled = (effect.shown_successes + effect.unshown_successes) / (effect.shown + effect.unshown)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / effect.shown + 1 / effect.unshown))
    statistic = (unshown - shown) / spread if spread else math.inf
    if statistic < z:
        return None
    return (
        f"runs shown it succeeded {effect.shown_successes}/{effect.shown} ({shown:.0%}) against "
        f"{effect.unshown_successes}/{effect.unshown} ({unshown:.0%}) of comparable runs not shown it (z={statistic:.2f})"
    )
