"""Reflection: turning a cluster of episodes into proposed changes to the insight set.

A ``Reflector`` looks at one ``ClusterView`` (the cluster's episodes and the existing insights
near it) and returns a ``Reflection``: its raw output, journaled before anything is applied,
and the operations parsed from it. ``LLMReflector`` uses any LangChain chat model with
structured output; ``ExtractiveReflector`` needs no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from langdream.namespace import Namespace
from langdream.types import Episode, Insight, InsightAction, InsightOrigin


@dataclass(frozen=True)
class ClusterView:
    """What a reflector is shown: one cluster of one namespace."""

    index: int
    namespace: Namespace
    episodes: list[Episode]
    nearby: list[Insight] = field(default_factory=list)

    @property
    def successes(self) -> list[Episode]:
        return [e for e in self.episodes if e.outcome.success is True]

    @property
    def failures(self) -> list[Episode]:
        return [e for e in self.episodes if e.outcome.success is False]


class Operation(BaseModel):
    """One proposed change, after parsing. Applied only if the guard lets it through."""

    model_config = ConfigDict(extra="forbid")

    action: InsightAction
    insight_id: str | None = None
    claim: str | None = None
    applies_when: str | None = None
    evidence: list[str] = Field(default_factory=list)
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    # Set by the extractive reflector: what the claim is about (merging key) and its counts.
    signature: str | None = None
    stats: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Reflection:
    """A reflector's answer for one cluster: its raw output, the operations parsed from it, and
    what it cost in tokens over every attempt (0 for a reflector that calls no model)."""

    raw: str
    operations: list[Operation]
    # What the reflection cost, counted with tiktoken over every attempt; 0 without a model.
    tokens_in: int = 0
    tokens_out: int = 0


@runtime_checkable
class Reflector(Protocol):
    """What a dream asks of a reflector: one ``Reflection`` per ``ClusterView``, sync and async.

    ``model_id`` and ``prompt_version`` are part of each dream's job id; ``origin`` says which
    kind of reflector wrote an insight.
    """

    origin: InsightOrigin

    @property
    def model_id(self) -> str: ...

    @property
    def prompt_version(self) -> str: ...

    def reflect(self, view: ClusterView) -> Reflection: ...

    async def areflect(self, view: ClusterView) -> Reflection: ...


def prompt_tokens(reflector: Reflector, view: ClusterView) -> int:
    """The prompt tokens reflecting on ``view`` will take; 0 for a reflector that calls no model."""
    count = getattr(reflector, "prompt_tokens", None)
    return int(count(view)) if count is not None else 0


# The schema an LLM answers in. It has no free-form instruction field: a claim, where it
# applies, evidence ids and a confidence are all a reflection can say.
class ReflectedOperation(BaseModel):
    """One change to the agent's lessons."""

    action: Literal["add", "edit", "upvote", "downvote", "retire"] = Field(
        description="add a new lesson; edit, upvote, downvote or retire an existing one"
    )
    insight_id: str | None = Field(
        default=None, description="id of the existing lesson (required for edit, upvote, downvote, retire)"
    )
    claim: str | None = Field(
        default=None, description="the lesson itself, one or two general, actionable sentences (add, edit)"
    )
    applies_when: str | None = Field(default=None, description="the kind of task or situation it applies to")
    evidence: list[str] = Field(description="ids of the episodes shown in this prompt that support it")
    confidence: float = Field(ge=0.0, le=1.0, description="how sure the episodes make you, 0 to 1")


class ReflectionOutput(BaseModel):
    """Changes to the agent's lessons learned from this cluster of runs (empty if none)."""

    operations: list[ReflectedOperation] = Field(default_factory=list)


__all__ = [
    "ClusterView",
    "Operation",
    "ReflectedOperation",
    "Reflection",
    "ReflectionOutput",
    "Reflector",
    "prompt_tokens",
]
