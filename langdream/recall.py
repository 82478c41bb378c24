"""Recall: the insights relevant to a new task, scored and fitted into a token budget.

Hot path. When a namespace has no active insight nothing is embedded at all; otherwise one
embedding, one index query and one ledger read. The ledger has the last word: an insight the
index still holds but the ledger has since retired is never shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np

from langdream.config import Settings
from langdream.embed import Embedder, check_embedding_model
from langdream.index import ChromaIndex
from langdream.index.ledger_search import LedgerSearch
from langdream.ledger import Ledger
from langdream.namespace import Namespace
from langdream.tokens import count_tokens
from langdream.types import Insight, InsightOrigin, InsightStatus, Recall, RecalledInsight, utcnow

# The recalled lessons form one labelled block: a header that says they are advisory and that
# the agent's own instructions win, and a footer, so the model can tell where they end.
HEADER = (
    "[langdream] Lessons from this agent's earlier runs on similar tasks (advisory).\n"
    "Use them where they fit; your own instructions take precedence over them."
)
FOOTER = "[end of langdream lessons]"
# Candidates fetched from the index per insight finally shown, before scoring and filtering.
_OVERFETCH = 4
_MIN_FRESHNESS = 0.25


def learned_nearby(
    index: ChromaIndex,
    ledger: Ledger,
    vector: np.ndarray,
    namespace: Namespace,
    neighbours: int,
    statuses: Sequence[InsightStatus],
    limit: int | None = None,
) -> dict[str, float]:
    """Insights learned from the past episodes nearest to ``vector``, each with its best similarity.

    A general lesson ("retry a search that found nothing") reads unlike any task, yet it was
    learned from runs like the one at hand; this finds it through those runs.
    """
    if neighbours <= 0:
        return {}
    near = {hit.id: hit.similarity for hit in index.query_episodes(vector, namespace, neighbours)}
    learned = {
        insight_id: max(near[e] for e in cited)
        for insight_id, cited in ledger.insights_citing(list(near), statuses).items()
    }
    if limit is None or len(learned) <= limit:
        return learned
    # Busy episodes can be cited by many insights; only the best few can be shown anyway.
    return dict(sorted(learned.items(), key=lambda item: (-item[1], item[0]))[:limit])


def freshness(updated_at: datetime, now: datetime, half_life_days: float) -> float:
    """Halves every half-life since the insight was last confirmed; never below 0.25."""
    age_days = max(0.0, (now - updated_at).total_seconds() / 86400.0)
    return max(_MIN_FRESHNESS, 0.5 ** (age_days / half_life_days))


def format_line(number: int, insight: Insight) -> str:
    origin = "extractive, " if insight.origin is InsightOrigin.EXTRACTIVE else ""
    when = insight.applies_when.strip()
    if not when or when.removeprefix("tasks like: ") in insight.text:
        applies = ""  # the claim already says where it applies
    elif when.startswith("when"):
        applies = f" Applies {when}."
    else:
        applies = f" Applies to {when}."
    # One line per lesson: a claim cannot start a line of its own that poses as a header or a role.
    line = (
        f"{number}. {insight.text}{applies} ({origin}from {insight.support} runs, confidence {insight.confidence:.2f})"
    )
    return " ".join(line.split())


def format_recall(insights: list[Insight]) -> str:
    if not insights:
        return ""
    return "\n".join([HEADER, *(format_line(n, i) for n, i in enumerate(insights, start=1)), FOOTER])


class Recaller:
    """Finds the active insights relevant to a task and renders the text a run is shown."""

    def __init__(
        self,
        ledger: Ledger,
        index: ChromaIndex,
        embedder: Embedder,
        settings: Settings,
        sync_index: Callable[[], object] | None = None,
    ) -> None:
        self.ledger = ledger
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self._model_checked = False
        self._ledger_search = LedgerSearch(ledger)
        self._sync_index = sync_index
        self._synced_epoch: int | None = None

    def _candidates(self, vector: np.ndarray, namespace: Namespace, n: int) -> dict[str, float]:
        """Insight ids with their relevance: by wording, or by the runs they were learned from.

        The process that owns the chroma index searches it (first bringing it up to date with
        changes other processes made in the ledger); any other process searches the ledger.
        """
        s = self.settings
        if self.index.owned:
            epoch = self.ledger.recall_epoch()
            if self._sync_index is not None and epoch != self._synced_epoch:
                self._sync_index()
                self._synced_epoch = epoch
            hits = {h.id: h.similarity for h in self.index.query_insights(vector, namespace, n)}
            learned = learned_nearby(
                self.index, self.ledger, vector, namespace, s.recall_neighbours, [InsightStatus.ACTIVE], n
            )
        else:
            hits = {h.id: h.similarity for h in self._ledger_search.query_insights(vector, namespace, n)}
            learned = (
                self._ledger_search.learned_nearby(vector, namespace, [InsightStatus.ACTIVE], n)
                if s.recall_neighbours > 0
                else {}
            )
        for insight_id, similarity in learned.items():
            hits[insight_id] = max(similarity, hits.get(insight_id, -1.0))
        return hits

    def recall(
        self,
        task: str,
        namespace: Namespace,
        *,
        k: int | None = None,
        token_budget: int | None = None,
        now: datetime | None = None,
    ) -> Recall:
        s = self.settings
        k = k or s.recall_k
        budget = token_budget or s.recall_token_budget
        empty = Recall(task=task, namespace=namespace)
        if not task.strip() or not self.ledger.has_insights(namespace, InsightStatus.ACTIVE):
            return empty
        if not self._model_checked:
            check_embedding_model(self.ledger, self.embedder)
            self._model_checked = True
        vector = self.embedder.embed_one(task)
        # Relevance: how well the insight's wording matches the task, or how close the task is to
        # the runs the insight was learned from, whichever is higher.
        hits = self._candidates(vector, namespace, k * _OVERFETCH)
        general = self.ledger.general_insights(namespace, s.general_min_tasks, k)
        for insight in general:
            hits[insight.id] = max(s.recall_min_similarity, hits.get(insight.id, -1.0))
        now = now or utcnow()
        scored = []
        for insight in self.ledger.get_insights(list(hits)):
            similarity = hits[insight.id]
            if insight.status is not InsightStatus.ACTIVE or insight.namespace != namespace:
                continue
            if similarity < s.recall_min_similarity:
                continue
            score = similarity * insight.confidence * freshness(insight.updated_at, now, s.freshness_half_life_days)
            scored.append(RecalledInsight(insight=insight, similarity=round(similarity, 4), score=round(score, 4)))
        scored.sort(key=lambda r: (-r.score, r.insight.id))
        chosen: list[RecalledInsight] = []
        for candidate in scored:
            if len(chosen) == k:
                break
            text = format_recall([r.insight for r in chosen + [candidate]])
            if count_tokens(text, s.encoding) <= budget:
                chosen.append(candidate)
        text = format_recall([r.insight for r in chosen])
        return Recall(
            task=task,
            namespace=namespace,
            insights=chosen,
            text=text,
            tokens=count_tokens(text, s.encoding) if text else 0,
        )

    async def arecall(self, task: str, namespace: Namespace, **kwargs) -> Recall:
        return await asyncio.to_thread(self.recall, task, namespace, **kwargs)
