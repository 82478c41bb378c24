"""What a report shows, read from a ``DreamMemory``: its episodes placed on a map, its lasting
clusters, its insights with their evidence and effect, and what each dream changed.

Reading only: nothing here writes to the ledger. Episode vectors come from the chroma index
when this process can own it and it was embedded with the configured model; the rest (pending
episodes, or all when the index is busy in another process) are embedded from their tasks.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from langdream._version import __version__
from langdream.config import DEFAULT_REPORT_MAX_POINTS
from langdream.embed import EMBEDDING_MODEL_KEY
from langdream.errors import LangDreamError, UsageError
from langdream.namespace import Namespace
from langdream.report.projection import pca_2d
from langdream.types import Insight, InsightEffect, InsightStatus, NamespaceStats, utcnow

logger = logging.getLogger("langdream.report")

_PAGE = 2000  # episodes read per ledger query (OFFSET paging: larger pages cost less in all)
TASK_CHARS = 240  # of a task kept for the map's tooltip
_EMBED_CHARS = 4000  # of a task embedded when its vector is not in the index (the model reads less)
MAX_DREAMS = 60  # the latest dreams drawn in a namespace's history
MAX_INSIGHTS = 1000  # insights listed per namespace (active first), so the file stays bounded
_STATUS_ORDER = {
    InsightStatus.ACTIVE: 0,
    InsightStatus.QUARANTINED: 1,
    InsightStatus.RETIRED: 2,
    InsightStatus.REVOKED: 3,
}


@dataclass(frozen=True)
class EpisodePoint:
    """One episode drawn on the map: ``x``/``y`` are its first two principal components."""

    id: str
    task: str
    outcome: str  # "success", "failure" or "unknown"
    cluster: str | None  # its lasting cluster; None while pending, or when no cluster took it
    x: float
    y: float


@dataclass(frozen=True)
class ClusterSummary:
    """A lasting cluster as the report shows it: ``label`` C1, C2... by size, and a typical task."""

    id: str
    label: str
    task: str
    size: int
    successes: int
    failures: int

    @property
    def success_rate(self) -> float | None:
        known = self.successes + self.failures
        return self.successes / known if known else None


@dataclass(frozen=True)
class InsightSummary:
    """An insight with how its evidence went, the clusters it was learned from (most evidence
    first) and, when runs were tallied against it, how runs shown it went against runs not."""

    insight: Insight
    evidence_successes: int
    evidence_failures: int
    clusters: tuple[str, ...]
    effect: InsightEffect | None


@dataclass(frozen=True)
class DreamSummary:
    """One finished dream: what it changed, and how many insights were active right after it."""

    id: str
    created_at: datetime
    episodes: int
    added: int
    edited: int
    upvoted: int
    downvoted: int
    retired: int
    quarantined: int
    active_after: int


@dataclass
class NamespaceReport:
    namespace: Namespace
    stats: NamespaceStats
    successes: int
    failures: int
    points: list[EpisodePoint]
    vector_source: str  # "index", "embedder" or "index+embedder"
    clusters: list[ClusterSummary]
    insights: list[InsightSummary]
    insights_total: int
    dreams: list[DreamSummary]  # oldest first
    more_dreams: bool  # older dreams exist beyond MAX_DREAMS
    unfinished_dreams: int  # open or parked jobs

    @property
    def sampled(self) -> bool:
        return len(self.points) < self.stats.episodes

    def cluster(self, cluster_id: str) -> ClusterSummary | None:
        return self._by_id.get(cluster_id)

    def __post_init__(self) -> None:
        self._by_id = {c.id: c for c in self.clusters}


@dataclass
class ReportData:
    home: str
    namespaces: list[NamespaceStats]  # every namespace of the data home
    sections: list[NamespaceReport]  # the namespaces the report covers
    max_points: int
    generated_at: datetime = field(default_factory=utcnow)
    version: str = __version__


def allot_points(sizes: Sequence[int], budget: int) -> list[int]:
    """Split ``budget`` map points over namespaces of ``sizes`` episodes: each gets all of its
    episodes or an equal share, whichever is less, and what small ones leave goes to the rest."""
    shares = [0] * len(sizes)
    open_ = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    left = max(0, budget)
    while open_:
        fair = left // len(open_)
        i = open_[0]
        if sizes[i] <= fair:
            shares[i] = sizes[i]
            left -= sizes[i]
            open_.pop(0)
            continue
        # Every one left is larger than the fair share: split the rest evenly (the first ones,
        # in size order, take the remainder).
        extra = left - fair * len(open_)
        for rank, j in enumerate(open_):
            shares[j] = fair + (1 if rank < extra else 0)
        break
    return shares


def sample_ids(ids: Sequence[str], limit: int) -> list[str]:
    """At most ``limit`` of ``ids``, the same ones every time: those with the smallest hashes."""
    if len(ids) <= limit:
        return list(ids)
    return sorted(ids, key=lambda i: hashlib.sha1(i.encode("utf-8")).digest())[: max(0, limit)]


def gather(
    memory, namespace: str | Sequence[str] | None = None, *, max_points: int = DEFAULT_REPORT_MAX_POINTS
) -> ReportData:
    """Everything the report of ``memory`` shows, for one namespace or all of them."""
    if max_points < 0:
        raise UsageError(
            f"max_points must be 0 or more, not {max_points}", hint="pass how many episodes to draw at most"
        )
    every = memory.namespaces()
    if namespace is not None:
        wanted = memory.require_namespace(namespace)
        targets = [s for s in every if s.namespace == wanted]
    else:
        targets = list(every)
    shares = allot_points([s.episodes for s in targets], max_points)
    sections = [_gather_namespace(memory, stats, share) for stats, share in zip(targets, shares)]
    return ReportData(home=str(memory.home), namespaces=every, sections=sections, max_points=max_points)


def _gather_namespace(memory, stats: NamespaceStats, budget: int) -> NamespaceReport:
    ledger = memory.ledger
    ns = stats.namespace
    tasks: dict[str, str] = {}
    outcomes: dict[str, str] = {}
    offset = 0
    while page := ledger.list_episodes(ns, limit=_PAGE, offset=offset):
        for episode in page:
            tasks.setdefault(episode.id, episode.task[:_EMBED_CHARS])
            outcomes.setdefault(episode.id, episode.outcome.label)
        offset += len(page)
    ids = sorted(tasks)
    member_of = ledger.cluster_of(ids)
    clusters = _clusters(member_of, tasks, outcomes)
    points, source = _points(memory, ns, stats, sample_ids(ids, budget), tasks, outcomes, member_of, clusters)
    insights, total = _insights(ledger, ns, outcomes, member_of)
    dreams, more, unfinished = _dreams(ledger, ns)
    return NamespaceReport(
        namespace=ns,
        stats=stats,
        successes=sum(1 for o in outcomes.values() if o == "success"),
        failures=sum(1 for o in outcomes.values() if o == "failure"),
        points=points,
        vector_source=source,
        clusters=clusters,
        insights=insights,
        insights_total=total,
        dreams=dreams,
        more_dreams=more,
        unfinished_dreams=unfinished,
    )


def _clusters(member_of: dict[str, str], tasks: dict[str, str], outcomes: dict[str, str]) -> list[ClusterSummary]:
    members: dict[str, list[str]] = {}
    for episode_id in sorted(member_of):
        members.setdefault(member_of[episode_id], []).append(episode_id)
    ordered = sorted(members.items(), key=lambda item: (-len(item[1]), item[0]))
    found = []
    for number, (cluster_id, ids) in enumerate(ordered, start=1):
        # The task most members share (a cluster is often one question asked many times).
        typical = Counter(tasks[i] for i in ids).most_common(1)[0][0]
        found.append(
            ClusterSummary(
                id=cluster_id,
                label=f"C{number}",
                task=typical[:TASK_CHARS],
                size=len(ids),
                successes=sum(1 for i in ids if outcomes[i] == "success"),
                failures=sum(1 for i in ids if outcomes[i] == "failure"),
            )
        )
    return found


def _points(
    memory,
    ns: Namespace,
    stats: NamespaceStats,
    drawn: list[str],
    tasks: dict[str, str],
    outcomes: dict[str, str],
    member_of: dict[str, str],
    clusters: list[ClusterSummary],
) -> tuple[list[EpisodePoint], str]:
    rank = {c.id: n for n, c in enumerate(clusters)}
    # Unclustered episodes first, so the clusters' marks are drawn over them.
    drawn = sorted(drawn, key=lambda i: (rank.get(member_of.get(i, ""), -1), i))
    vectors, source = episode_vectors(memory, ns, drawn, tasks, consolidated=stats.episodes > stats.pending)
    coords = pca_2d(vectors) if drawn else np.zeros((0, 2))
    points = [
        EpisodePoint(
            id=i,
            task=tasks[i][:TASK_CHARS],
            outcome=outcomes[i],
            cluster=member_of.get(i),
            x=float(x),
            y=float(y),
        )
        for i, (x, y) in zip(drawn, coords)
    ]
    return points, source


def episode_vectors(
    memory, ns: Namespace, ids: list[str], tasks: dict[str, str], *, consolidated: bool = True
) -> tuple[np.ndarray, str]:
    """The episodes' vectors, in ``ids`` order, and where they came from.

    The index has the vector of every consolidated episode; it is read only when this process
    owns it (another process may be writing it) and it holds the configured model's vectors.
    Whatever it lacks is embedded from the task with ``memory.embedder``.
    """
    found: dict[str, np.ndarray] = {}
    if ids and consolidated and _index_readable(memory):
        try:
            found = memory.index.episode_vectors(ids, ns)
        except LangDreamError as exc:
            logger.warning("report: the index could not be read (%s); embedding the tasks instead", exc.message)
    missing = [i for i in ids if i not in found]
    if missing:
        found.update(zip(missing, memory.embedder.embed([tasks[i] for i in missing])))
    if not ids:
        return np.zeros((0, 0), dtype=np.float32), "index"
    source = "index" if not missing else ("embedder" if len(missing) == len(ids) else "index+embedder")
    return np.stack([np.asarray(found[i], dtype=np.float32) for i in ids]), source


def _index_readable(memory) -> bool:
    stored = memory.ledger.get_meta(EMBEDDING_MODEL_KEY)
    if stored is not None and stored != memory.embedder.model_id:
        return False
    return memory.index.owned or memory.index.try_own()


def _insights(
    ledger, ns: Namespace, outcomes: dict[str, str], member_of: dict[str, str]
) -> tuple[list[InsightSummary], int]:
    every = ledger.list_insights(ns)
    every.sort(key=lambda i: (_STATUS_ORDER.get(i.status, 9), -i.support, -i.confidence, i.id))
    shown = every[:MAX_INSIGHTS]
    effects = ledger.effects([i.id for i in shown])
    found = []
    for insight in shown:
        cited = Counter(member_of[e] for e in insight.evidence if e in member_of)
        found.append(
            InsightSummary(
                insight=insight,
                evidence_successes=sum(1 for e in insight.evidence if outcomes.get(e) == "success"),
                evidence_failures=sum(1 for e in insight.evidence if outcomes.get(e) == "failure"),
                clusters=tuple(c for c, _ in sorted(cited.items(), key=lambda item: (-item[1], item[0]))),
                effect=effects.get(insight.id),
            )
        )
    return found, len(every)


def _dreams(ledger, ns: Namespace) -> tuple[list[DreamSummary], bool, int]:
    jobs = ledger.list_jobs(ns, limit=MAX_DREAMS * 4)
    unfinished = sum(1 for j in jobs if j.status in ("open", "parked"))
    done = [j for j in jobs if j.status == "done" and j.report is not None]
    more = len(done) > MAX_DREAMS or len(jobs) == MAX_DREAMS * 4
    done = sorted(done, key=lambda j: (j.committed_seq or 0, j.created_at))[-MAX_DREAMS:]
    active = _active_counts(ledger, ns, [j.committed_seq or 0 for j in done])
    return (
        [
            DreamSummary(
                id=j.id,
                created_at=j.created_at,
                episodes=j.report.episodes,
                added=j.report.added,
                edited=j.report.edited,
                upvoted=j.report.upvoted,
                downvoted=j.report.downvoted,
                retired=j.report.retired,
                quarantined=j.report.quarantined,
                active_after=n,
            )
            for j, n in zip(done, active)
        ],
        more,
        unfinished,
    )


def _active_counts(ledger, ns: Namespace, seqs: list[int]) -> list[int]:
    """How many insights of ``ns`` were active right after each event number in ``seqs`` (ascending)."""
    if not seqs:
        return []
    events = sorted(
        (v.seq, v.insight_id, v.status)
        for insight in ledger.list_insights(ns)
        for v in ledger.insight_history(insight.id)
    )
    status: dict[str, InsightStatus] = {}
    counts, cursor = [], 0
    for seq in seqs:
        while cursor < len(events) and events[cursor][0] <= seq:
            _, insight_id, state = events[cursor]
            status[insight_id] = state
            cursor += 1
        counts.append(sum(1 for s in status.values() if s is InsightStatus.ACTIVE))
    return counts
