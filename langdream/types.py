"""The data langdream stores and returns: episodes, insights, dream reports, recalls."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from langdream.namespace import Namespace, format_namespace, parse_namespace


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Aware datetimes as they are; naive ones are taken to be UTC, never local time."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def to_epoch(value: datetime) -> float:
    return as_utc(value).timestamp()


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, timezone.utc)


# A namespace in every model: parsed from a tuple, a list or an "a/b" string, written as a list.
NamespaceField = Annotated[Namespace, BeforeValidator(parse_namespace), PlainSerializer(list, return_type=list[str])]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCall(_Model):
    """A tool call an assistant message asked for."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class Message(_Model):
    """One step of a trajectory, in the role vocabulary of chat APIs."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class Outcome(_Model):
    """How a run went. Every field may be unknown (None) until a judge or feedback says."""

    success: bool | None = None
    score: float | None = None
    feedback: str | None = None

    @property
    def known(self) -> bool:
        return self.success is not None

    @property
    def label(self) -> str:
        return "unknown" if self.success is None else ("success" if self.success else "failure")


class Episode(_Model):
    """One recorded agent run."""

    id: str
    namespace: NamespaceField
    task: str
    messages: list[Message] = Field(default_factory=list)
    final_answer: str | None = None
    outcome: Outcome = Field(default_factory=Outcome)
    thread_id: str | None = None
    run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    injected_insight_ids: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Set by the ledger: how often the outcome changed, and which dream consumed the episode.
    revision: int = 0
    consolidated_by: str | None = None

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)


class InsightStatus(str, enum.Enum):
    """Where an insight is in its life: quarantined → active → retired / revoked.

    ``quarantined`` insights are held back from recall: not yet enough support, or held for a
    person (see ``InsightHold``); ``active`` ones are recalled; ``retired`` ones were withdrawn
    on their merits (by evidence, the drift guard or a person's ``retire``); ``revoked`` ones were
    withdrawn by a person's ``reject`` or ``rollback``, or because their sources were forgotten.
    """

    QUARANTINED = "quarantined"
    ACTIVE = "active"
    RETIRED = "retired"
    REVOKED = "revoked"


class InsightHold(str, enum.Enum):
    """Why a quarantined insight waits for a person rather than for more evidence.

    A held insight never becomes active by support alone: ``langdream insights approve`` lifts
    the hold (it then becomes active once its support is earned), ``reject`` revokes it.
    """

    REVIEW = "review"  # review mode: every new or edited insight waits for a person
    INJECTION = "injection"  # the claim instructs the agent to do something an attacker would want
    UNGROUNDED = "ungrounded"  # the claim names specifics its evidence episodes do not contain
    COPIED = "copied"  # the claim repeats text a tool returned, rather than a lesson
    CHURN = "churn"  # over the per-dream cap of new / edited / retired insights
    RETIRED_CLAIM = "retired_claim"  # it says what an insight that was retired or rejected said


class InsightOrigin(str, enum.Enum):
    """Which kind of reflector wrote an insight: a chat model, or the extractive statistics."""

    LLM = "llm"
    EXTRACTIVE = "extractive"


class Insight(_Model):
    """A generalized lesson with its provenance."""

    id: str
    namespace: NamespaceField
    text: str
    applies_when: str = ""
    status: InsightStatus
    status_reason: str = ""
    hold: InsightHold | None = Field(default=None, description="why it waits for a person, when it does")
    remembered: bool = Field(
        default=False, description="retired or rejected on its merits: a dream will not silently learn it again"
    )
    origin: InsightOrigin
    evidence: list[str] = Field(default_factory=list, description="episode ids that support it")
    support: int = 0
    threads: int = Field(default=0, description="distinct threads (sessions) among the evidence")
    tasks: int = Field(default=0, description="distinct tasks among the evidence; many means a general lesson")
    confidence: float = 0.5
    version: int = 1
    model_id: str = ""
    prompt_version: str = ""
    job_id: str = ""
    signature: str | None = None
    stats: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def display_text(self) -> str:
        suffix = " [extractive]" if self.origin is InsightOrigin.EXTRACTIVE else ""
        return f"{self.text}{suffix}"


class InsightAction(str, enum.Enum):
    """What one change did to an insight; every change is one version (an event) in its history.

    Dreams add, edit, upvote, downvote and retire; people approve, reject, retire and roll back
    (restore / revoke); forgetting episodes recomputes the support of what cited them (forget).
    """

    ADD = "add"
    EDIT = "edit"
    UPVOTE = "upvote"
    DOWNVOTE = "downvote"
    RETIRE = "retire"
    APPROVE = "approve"
    REJECT = "reject"
    RESTORE = "restore"
    REVOKE = "revoke"
    FORGET = "forget"


# Who changed an insight: a dream, or a person / command (``person:<name>``), see InsightVersion.actor.
DREAM_ACTOR = "dream"


class InsightVersion(_Model):
    """One entry of an insight's history, appended and never changed: what changed, why, by whom.

    ``seq`` orders every event of the data home; ``actor`` is ``"dream"`` for a dream's changes
    (then ``job_id``, ``model_id`` and ``prompt_version`` name it) or the person who acted
    otherwise (``person:<name>``, also for a rollback or a forget); ``cause`` says why in words.
    """

    insight_id: str
    version: int
    seq: int = 0
    action: InsightAction
    actor: str = DREAM_ACTOR
    cause: str = ""
    status: InsightStatus
    status_reason: str = ""
    hold: InsightHold | None = None
    remembered: bool = False
    text: str
    applies_when: str = ""
    evidence: list[str] = Field(default_factory=list)
    support: int = 0
    threads: int = 0
    tasks: int = 0
    confidence: float = 0.5
    stats: dict[str, Any] = Field(default_factory=dict)
    job_id: str = ""
    model_id: str = ""
    prompt_version: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class DreamReport(_Model):
    """What one dream pass over one namespace did."""

    namespace: NamespaceField
    job_id: str | None = None
    episodes: int = 0
    clusters: int = 0
    noise: int = 0
    added: int = 0
    edited: int = 0
    upvoted: int = 0
    downvoted: int = 0
    retired: int = 0
    quarantined: int = Field(default=0, description="insights this dream changed that wait in quarantine")
    held: dict[str, int] = Field(
        default_factory=dict, description="insights this dream held for a person, by hold (review, injection, ...)"
    )
    drift_retired: int = Field(default=0, description="insights the drift guard retired (included in retired)")
    joined: int = Field(default=0, description="new episodes that joined clusters of earlier dreams")
    waiting: int = Field(default=0, description="episodes that joined a cluster but wait for more company")
    deferred: int = Field(default=0, description="clusters left for a later dream by the token budget")
    token_budget: int | None = Field(default=None, description="the dream_token_budget it ran with")
    llm_calls: int = 0
    tokens_in: int = Field(default=0, description="prompt tokens sent to the reflector (tiktoken)")
    tokens_out: int = Field(default=0, description="tokens the reflector answered with (tiktoken)")
    resumed: bool = False
    skipped: str | None = Field(default=None, description="why nothing was done, when nothing was")
    parked: str | None = Field(
        default=None,
        description="why the job was parked: a reflection failed after its retries; nothing was applied, "
        "and the next dream resumes the job (this is not 'nothing learned')",
    )
    model_id: str = ""
    prompt_version: str = ""
    seconds: float = 0.0
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    insight_ids: list[str] = Field(default_factory=list, description="insights this dream changed")

    def summary(self) -> str:
        where = format_namespace(self.namespace)
        if self.skipped:
            return f"{where}: {self.skipped}"
        if self.parked:
            return f"{where}: dream {self.job_id} parked, nothing applied yet ({self.parked}); the next dream resumes it"
        extra = ""
        if self.joined or self.waiting:
            extra += f"; {self.joined} joined earlier clusters, {self.waiting} wait for company"
        if self.deferred:
            extra += f"; {self.deferred} clusters deferred by the token budget"
        return (
            f"{where}: {self.episodes} episodes, {self.clusters} clusters ({self.noise} unclustered); "
            f"+{self.added} new, {self.edited} edited, {self.upvoted} upvoted, {self.downvoted} downvoted, "
            f"{self.retired} retired; {self.quarantined} of the changed insights wait in quarantine{extra}"
            + (f"; held for a person: {', '.join(f'{n} {why}' for why, n in sorted(self.held.items()))}" if self.held else "")
            + (f"; the drift guard retired {self.drift_retired}" if self.drift_retired else "")
        )


class RecalledInsight(_Model):
    """One recalled insight with its relevance to the task (similarity) and its final score."""

    insight: Insight
    similarity: float
    score: float


class Recall(_Model):
    """What a run is told: the chosen insights and the exact text shown to the model."""

    task: str
    namespace: NamespaceField
    insights: list[RecalledInsight] = Field(default_factory=list)
    text: str = ""
    tokens: int = 0

    @property
    def insight_ids(self) -> list[str]:
        return [r.insight.id for r in self.insights]


class NamespaceStats(_Model):
    """Counts for one namespace: episodes, episodes waiting for a dream, insights by status."""

    namespace: NamespaceField
    episodes: int = 0
    pending: int = 0
    insights: dict[str, int] = Field(default_factory=dict)


def new_cluster_id(job_id: str, number: int) -> str:
    """The id of a lasting cluster first formed as cluster ``number`` of dream ``job_id``."""
    return f"cl_{job_id.removeprefix('dj_')}_{number}"


class DreamJob(_Model):
    """The journal entry of one dream over one namespace.

    ``episodes`` pins the exact input (ids with their outcome revision); ``clusters`` pins the
    clustering, so a rerun after a crash reflects on the same groups and reuses every reflection
    output already stored.
    """

    id: str
    namespace: NamespaceField
    # "parked": a reflection kept failing after its retries; the next dream resumes it.
    status: Literal["open", "parked", "done", "abandoned"] = "open"
    episodes: list[tuple[str, int]] = Field(default_factory=list)
    clusters: list[list[str]] = Field(default_factory=list)
    # The lasting cluster each entry of ``clusters`` reflects on: an existing one that new
    # episodes joined (its entry also lists some earlier members for context) or a new one.
    cluster_ids: list[str] = Field(default_factory=list)
    noise: list[str] = Field(default_factory=list)
    prompt_version: str = ""
    model_id: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    report: DreamReport | None = None
    # The last insight event at the job's commit: the insight set "as it was after this dream".
    committed_seq: int | None = None
    parked_reason: str | None = Field(default=None, description="why the job is parked (the last reflection error)")
    attempts: int = Field(default=0, description="dream passes that worked on this job")

    @model_validator(mode="after")
    def _one_id_per_cluster(self) -> DreamJob:
        if not self.cluster_ids:
            self.cluster_ids = [new_cluster_id(self.id, n) for n in range(len(self.clusters))]
        elif len(self.cluster_ids) != len(self.clusters):
            raise ValueError("a dream job needs one cluster id per cluster")
        return self


class InsightEffect(_Model):
    """How runs went that were shown an insight, against comparable runs that were not.

    Comparable runs are those of the clusters the insight was learned from. The drift guard
    retires an insight whose shown runs did clearly worse.
    """

    shown: int = 0
    shown_successes: int = 0
    unshown: int = 0
    unshown_successes: int = 0

    @property
    def shown_rate(self) -> float | None:
        return self.shown_successes / self.shown if self.shown else None

    @property
    def unshown_rate(self) -> float | None:
        return self.unshown_successes / self.unshown if self.unshown else None


class EvidenceEpisode(_Model):
    """One evidence episode of an insight, as explained: what the run was and how it went."""

    id: str
    task: str | None = Field(default=None, description="None when the episode was forgotten")
    outcome: str = "forgotten"
    thread_id: str | None = None
    consolidated_by: str | None = None
    shown_this_insight: bool = False


class Explanation(_Model):
    """Why langdream believes an insight: every version, the evidence, the dreams that wrote it."""

    insight: Insight
    versions: list[InsightVersion]
    evidence: list[EvidenceEpisode]
    jobs: list[DreamJob]
    effect: InsightEffect

    def successes(self) -> int:
        return sum(1 for e in self.evidence if e.outcome == "success")

    def failures(self) -> int:
        return sum(1 for e in self.evidence if e.outcome == "failure")


class RollbackReport(_Model):
    """What ``rollback(to_dream=...)`` changed: insights restored to their state after that dream,
    and insights learned later, revoked."""

    namespace: NamespaceField
    to_dream: str
    restored: list[str] = Field(default_factory=list)
    revoked: list[str] = Field(default_factory=list)
    unchanged: int = 0


class ForgetReport(_Model):
    """What ``forget`` deleted and what it did to the insights that cited the deleted episodes."""

    episodes: int = 0
    namespaces: list[NamespaceField] = Field(default_factory=list)
    insights_deleted: int = Field(default=0, description="insights of a forgotten namespace, deleted with it")
    insights_updated: int = Field(default=0, description="insights whose support was recomputed and still holds")
    insights_revoked: int = Field(default=0, description="insights that fell below the support threshold")
    bytes_before: int = 0
    bytes_after: int = 0
