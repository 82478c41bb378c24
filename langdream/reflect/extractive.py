"""The extractive reflector: insights from outcome statistics, with no LLM.

For each episode it computes a fixed set of behaviour features from the trajectory (did it
retry a tool that found nothing, reuse a name from a tool result, repeat an identical call,
answer with text a tool returned, ...). Within a cluster it compares how often the successful
and the failed runs show each feature; a feature that clearly separates them becomes a
templated insight with the counts as evidence. A cluster whose runs mostly failed becomes a
warning about that kind of task. Every insight it writes is marked extractive.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from langdream.reflect import ClusterView, Operation, Reflection
from langdream.trajectory import ToolStep, final_answer, tool_steps
from langdream.types import Episode, InsightAction, InsightOrigin

PROMPT_VERSION = "extractive-v1"
MODEL_ID = "langdream-extractive"

# A feature must separate the two groups by this much (difference of rates) to be reported.
_MIN_SEPARATION = 0.34
_MAX_INSIGHTS_PER_CLUSTER = 2
_HARD_TASK_MAX_SUCCESS = 0.2
_HARD_TASK_PATTERN_SHARE = 0.6
_HARD_TASK_CONFIDENCE = 0.6
# Behaviours that are mistakes whatever the outcome, named in a hard-task warning.
_FAILURE_BEHAVIOURS = {
    "no_answer": "ran out of steps without giving an answer",
    "repeated_call": "repeated an identical {tool} call",
    "answer_after_empty": "answered right after a {tool} call that found nothing",
}
_QUOTES = "\"'“”‘’«»"


@dataclass(frozen=True)
class Feature:
    key: str
    tool: str | None
    do: str  # the insight when the feature goes with success
    avoid: str  # the insight when it goes with failure
    when: str


def _norm(text: str) -> str:
    return " ".join(text.lower().strip(_QUOTES + " .").split())


def _main_tool(steps: list[ToolStep]) -> str | None:
    counts = Counter(s.name for s in steps)
    return counts.most_common(1)[0][0] if counts else None


def _retry_after_empty(steps: list[ToolStep]) -> set[str]:
    return {
        a.name
        for a, b in zip(steps, steps[1:])
        if a.empty and b.name == a.name and _norm(b.arg_text) != _norm(a.arg_text)
    }


def _answer_after_empty(steps: list[ToolStep], answer: str | None) -> set[str]:
    return {steps[-1].name} if steps and answer and steps[-1].empty else set()


def _repeated_call(steps: list[ToolStep]) -> set[str]:
    seen, repeated = set(), set()
    for s in steps:
        key = (s.name, _norm(s.arg_text))
        if key in seen:
            repeated.add(s.name)
        seen.add(key)
    return repeated


def _arg_from_result(steps: list[ToolStep]) -> set[str]:
    used = set()
    for i, step in enumerate(steps):
        arg = _norm(step.arg_text)
        if len(arg) >= 3 and any(arg in _norm(prev.result or "") for prev in steps[:i]):
            used.add(step.name)
    return used


def _quoted_args(steps: list[ToolStep]) -> set[str]:
    return {s.name for s in steps if len(s.arg_text) > 1 and s.arg_text[0] in _QUOTES and s.arg_text[-1] in _QUOTES}


def _several_entities(steps: list[ToolStep]) -> set[str]:
    tool = _main_tool(steps)
    distinct = {_norm(s.arg_text) for s in steps if s.name == tool and not s.empty}
    return {tool} if tool and len(distinct) >= 2 else set()


def _grounded_answer(steps: list[ToolStep], answer: str | None) -> bool:
    a = _norm(answer or "")
    return len(a) >= 3 and any(a in _norm(s.result or "") for s in steps)


_TOOL_FEATURES: dict[str, tuple[Callable[..., set[str]], str, str, str]] = {
    "retry_after_empty": (
        _retry_after_empty,
        "When {tool} finds nothing, call {tool} again with a different, more precise argument "
        "(for example a title suggested in the result) instead of answering.",
        "Retrying {tool} after it found nothing did not help here; change approach rather than rephrasing.",
        "a {tool} call returns no match",
    ),
    "answer_after_empty": (
        _answer_after_empty,
        "Answering right after a {tool} call that found nothing worked on these tasks.",
        "Do not give the final answer right after a {tool} call that found nothing; "
        "retry or verify with another {tool} call first.",
        "the last {tool} call found nothing",
    ),
    "repeated_call": (
        _repeated_call,
        "Repeating the same {tool} call helped on these tasks.",
        "Do not repeat an identical {tool} call: if a result was not useful, change the argument.",
        "about to call {tool} again",
    ),
    "arg_from_result": (
        _arg_from_result,
        "Take the exact names or titles that earlier {tool} results mention and use them as the next {tool} argument.",
        "Reusing names from earlier {tool} results as arguments did not help on these tasks.",
        "choosing the next {tool} argument",
    ),
    "quoted_args": (
        _quoted_args,
        "Wrapping {tool} arguments in quotation marks helped on these tasks.",
        "Pass {tool} arguments as plain text: arguments wrapped in quotation marks found nothing.",
        "calling {tool}",
    ),
    "several_entities": (
        _several_entities,
        "Call {tool} separately for each entity the task mentions before answering.",
        "Searching many different {tool} arguments did not help on these tasks; focus on the main entity.",
        "the task mentions more than one entity",
    ),
}


def episode_features(episode: Episode) -> set[str]:
    """The behaviour features one episode shows, as ``name:tool`` keys (or ``name``)."""
    steps = tool_steps(episode)
    answer = final_answer(episode)
    found: set[str] = set()
    for name, (detect, *_rest) in _TOOL_FEATURES.items():
        args = (steps, answer) if name == "answer_after_empty" else (steps,)
        found.update(f"{name}:{tool}" for tool in detect(*args))
    if _grounded_answer(steps, answer):
        found.add("grounded_answer")
    if answer is None:
        found.add("no_answer")
    return found


def _describe(key: str) -> Feature:
    name, _, tool = key.partition(":")
    if name == "grounded_answer":
        return Feature(
            key,
            None,
            "Give a final answer whose text appears in a tool result; answers the tools never stated "
            "were usually wrong.",
            "Answers copied from tool results were not better here; reason over the results instead.",
            "writing the final answer",
        )
    if name == "no_answer":
        return Feature(
            key,
            None,
            "Stopping without an answer went better than answering on these tasks.",
            "Runs that never gave a final answer failed: when tool calls stop making progress, answer "
            "with the best-supported candidate instead of continuing to search.",
            "tool calls stop making progress",
        )
    _, do, avoid, when = _TOOL_FEATURES[name]
    return Feature(key, tool, do.format(tool=tool), avoid.format(tool=tool), when.format(tool=tool))


def _medoid_task(view: ClusterView) -> str:
    tasks = Counter(e.task for e in view.episodes)
    return tasks.most_common(1)[0][0]


def _quote(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ExtractiveReflector:
    """Reflector that contrasts features of successful and failed runs, with no model."""

    origin = InsightOrigin.EXTRACTIVE

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def prompt_version(self) -> str:
        return PROMPT_VERSION

    def reflect(self, view: ClusterView) -> Reflection:
        operations = self._contrast(view) + self._hard_tasks(view)
        raw = json.dumps([op.model_dump(mode="json", exclude_defaults=True) for op in operations], sort_keys=True)
        return Reflection(raw=raw, operations=operations)

    async def areflect(self, view: ClusterView) -> Reflection:
        # Pure CPU work on a few dozen episodes: cheaper inline than a thread hop.
        return self.reflect(view)

    def _contrast(self, view: ClusterView) -> list[Operation]:
        successes, failures = view.successes, view.failures
        if not successes or not failures:
            return []
        features = {e.id: episode_features(e) for e in successes + failures}
        keys = sorted(set().union(*features.values()))
        scored = []
        for key in keys:
            stats = {
                "feature": key,
                "successes_with": sum(key in features[e.id] for e in successes),
                "successes": len(successes),
                "failures_with": sum(key in features[e.id] for e in failures),
                "failures": len(failures),
            }
            separation = _separation(stats, smoothed=False)
            helps = separation > 0
            if abs(separation) < _MIN_SEPARATION:
                continue
            if (stats["successes_with"] if helps else stats["failures_with"]) < 2:
                continue
            scored.append((abs(separation), key, stats))
        scored.sort(key=lambda item: (-item[0], item[1]))
        operations = []
        for _, key, stats in scored[:_MAX_INSIGHTS_PER_CLUSTER]:
            claim, when, confidence = contrast_claim(stats)
            helps = _separation(stats, smoothed=False) > 0
            # Evidence for the claim: runs that did it and succeeded / skipped it and failed (or the
            # mirror image when the feature goes with failure).
            evidence = [
                e.id for e in successes + failures if ((key in features[e.id]) == (e.outcome.success is True)) == helps
            ]
            operations.append(
                Operation(
                    action=InsightAction.ADD,
                    claim=claim,
                    applies_when=when,
                    evidence=evidence,
                    confidence=confidence,
                    # One insight per feature: later clusters pool their counts into it.
                    signature=f"contrast:{key}",
                    stats=stats,
                )
            )
        return operations

    def _hard_tasks(self, view: ClusterView) -> list[Operation]:
        """An outcome-statistics warning for a kind of task that mostly failed."""
        known = view.successes + view.failures
        if len(known) < 3 or len(view.successes) / len(known) > _HARD_TASK_MAX_SUCCESS:
            return []
        failures = view.failures
        medoid = _quote(_medoid_task(view))
        claim = f'Tasks like "{medoid}" failed in {len(failures)} of {len(known)} earlier runs.'
        # Name what went wrong when most failures share a behaviour that is a mistake in itself.
        common = Counter(
            k for e in failures for k in episode_features(e) if k.partition(":")[0] in _FAILURE_BEHAVIOURS
        ).most_common(1)
        if common and common[0][1] / len(failures) >= _HARD_TASK_PATTERN_SHARE:
            name, _, tool = common[0][0].partition(":")
            claim += f" Most of them {_FAILURE_BEHAVIOURS[name].format(tool=tool)}; change approach early."
        claim += " Verify the answer against tool results before finishing."
        return [
            Operation(
                action=InsightAction.ADD,
                claim=claim,
                applies_when=f"tasks like: {medoid}",
                evidence=[e.id for e in failures],
                confidence=_HARD_TASK_CONFIDENCE,
                signature=f"hard:{sorted(e.id for e in known)[0]}",
                stats={"successes": len(view.successes), "runs": len(known)},
            )
        ]


def _separation(stats: dict, *, smoothed: bool) -> float:
    """Success-group rate minus failure-group rate of a feature (Laplace-smoothed if asked)."""
    a, ns = stats["successes_with"], stats["successes"]
    b, nf = stats["failures_with"], stats["failures"]
    if smoothed:
        return (a + 1) / (ns + 2) - (b + 1) / (nf + 2)
    return a / ns - b / nf


def contrast_claim(stats: dict) -> tuple[str, str, float]:
    """Claim, applicability and confidence of a feature contrast, from its (pooled) counts.

    The direction follows the counts: if pooling later clusters flips it, the claim flips too.
    """
    feature = _describe(stats["feature"])
    separation = _separation(stats, smoothed=True)
    claim = feature.do if separation > 0 else feature.avoid
    confidence = round(min(0.95, max(0.05, 0.5 + abs(separation) / 2)), 3)
    return claim, f"when {feature.when}", confidence


def merge_contrast(old: dict, new: dict) -> dict | None:
    """Pooled counts of two contrasts of the same feature, or None if they are not the same feature."""
    if not old.get("feature") or old.get("feature") != new.get("feature"):
        return None
    keys = ("successes_with", "successes", "failures_with", "failures")
    return {**old, **{k: old.get(k, 0) + new.get(k, 0) for k in keys}}
