"""Test doubles that are public API: exercise LLM reflection without a provider.

``FakeReflectionModel`` is a real LangChain ``BaseChatModel``. It supports ``bind_tools`` (so
``with_structured_output`` works as it does with a provider model), reads the episodes and
insights out of the reflection prompt, and answers with whatever ``responder`` returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

from langdream.reflect import ReflectionOutput

_EPISODE = re.compile(r'<episode id="([^"]*)" outcome="([^"]*)">\n(.*?)\n</episode>', re.DOTALL)
_INSIGHT = re.compile(
    r'<insight id="([^"]*)" status="([^"]*)"[^>]*>\n(.*?)\n(?:Applies when: .*?\n)?</insight>', re.DOTALL
)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@dataclass(frozen=True)
class PromptEpisode:
    id: str
    outcome: str  # "success", "failure" or "unknown"
    text: str


@dataclass(frozen=True)
class PromptInsight:
    id: str
    status: str
    text: str


@dataclass(frozen=True)
class ReflectionPrompt:
    """What a reflection prompt showed, parsed back out of it."""

    text: str
    episodes: list[PromptEpisode]
    insights: list[PromptInsight]

    @property
    def successes(self) -> list[PromptEpisode]:
        return [e for e in self.episodes if e.outcome == "success"]

    @property
    def failures(self) -> list[PromptEpisode]:
        return [e for e in self.episodes if e.outcome == "failure"]


def parse_prompt(messages: Sequence[BaseMessage]) -> ReflectionPrompt:
    text = "\n".join(m.content if isinstance(m.content, str) else json.dumps(m.content) for m in messages)
    episodes = [PromptEpisode(_unescape(i), o, _unescape(t)) for i, o, t in _EPISODE.findall(text)]
    insights = [PromptInsight(_unescape(i), s, _unescape(t)) for i, s, t in _INSIGHT.findall(text)]
    return ReflectionPrompt(text=text, episodes=episodes, insights=insights)


def contrast_responder(prompt: ReflectionPrompt) -> dict[str, Any]:
    """A plausible reflector: one lesson per cluster that has both outcomes, citing its successes;
    an upvote of the first shown insight when it already exists."""
    if not prompt.successes or not prompt.failures:
        return {"operations": []}
    evidence = [e.id for e in prompt.successes]
    if prompt.insights:
        return {
            "operations": [
                {"action": "upvote", "insight_id": prompt.insights[0].id, "evidence": evidence, "confidence": 0.8}
            ]
        }
    first_task = prompt.successes[0].text.splitlines()[0].removeprefix("Task: ")
    return {
        "operations": [
            {
                "action": "add",
                "claim": "Check every entity the task names with its own search before answering.",
                "applies_when": f"tasks like: {first_task[:80]}",
                "evidence": evidence,
                "confidence": 0.8,
            }
        ]
    }


Responder = Callable[[ReflectionPrompt], "ReflectionOutput | dict[str, Any] | str"]


class FakeReflectionModel(BaseChatModel):
    """A chat model that answers reflection prompts with ``responder(prompt)``.

    The responder gets a ``ReflectionPrompt`` and returns a ``ReflectionOutput``, a dict of the
    same shape, or a raw string (returned as the message text, for testing malformed output).
    Every prompt it receives is kept in ``prompts``.
    """

    responder: Callable[[ReflectionPrompt], Any] = Field(default=contrast_responder)
    model: str = "fake-reflection"
    latency: float = Field(default=0.0, ge=0.0, description="seconds each answer takes, like a provider's")
    _prompts: list[ReflectionPrompt] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "fake-reflection"

    @property
    def prompts(self) -> list[ReflectionPrompt]:
        with self._lock:
            return list(self._prompts)

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self.bind(tools=list(tools), tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            time.sleep(self.latency)
        return self._answer(messages, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._answer(messages, **kwargs)

    def _answer(self, messages: list[BaseMessage], **kwargs: Any) -> ChatResult:
        prompt = parse_prompt(messages)
        with self._lock:
            self._prompts.append(prompt)
        answer = self.responder(prompt)
        if isinstance(answer, str):
            message = AIMessage(content=answer)
        else:
            payload = answer.model_dump() if isinstance(answer, ReflectionOutput) else dict(answer)
            if kwargs.get("tools"):
                message = AIMessage(
                    content="",
                    tool_calls=[{"name": "ReflectionOutput", "args": payload, "id": f"call_{uuid.uuid4().hex[:8]}"}],
                )
            else:
                message = AIMessage(content=json.dumps(payload))
        return ChatResult(generations=[ChatGeneration(message=message)])


class RateLimitError(Exception):
    """What a provider SDK raises on HTTP 429 (``status_code`` and ``retry_after`` like theirs)."""

    status_code = 429

    def __init__(self, message: str = "rate limited", retry_after: float | None = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


FAULTS = ("rate_limit", "timeout", "reset", "malformed_json", "missing_field", "prose", "refusal")


class FaultyReflectionModel(FakeReflectionModel):
    """A ``FakeReflectionModel`` whose answers fail at ``fault_rate`` the way provider calls do.

    Faults: a 429 (``RateLimitError``), a ``TimeoutError``, a ``ConnectionResetError``, malformed
    JSON, a reflection missing a required field, the JSON wrapped in prose, and a refusal. Which
    call fails is decided by a hash of (``seed``, the prompt, how often that prompt was asked), so
    a run is reproducible whatever order concurrent reflections arrive in. Set ``fault_rate`` to
    0 to let the faults stop. ``faults_seen`` counts what was injected.
    """

    fault_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    faults: tuple[str, ...] = FAULTS
    seed: int = 0
    _asked: dict[str, int] = PrivateAttr(default_factory=dict)
    _seen: dict[str, int] = PrivateAttr(default_factory=dict)

    @property
    def faults_seen(self) -> dict[str, int]:
        with self._lock:
            return dict(self._seen)

    def _fault(self, messages: list[BaseMessage]) -> str | None:
        text = "\n".join(str(m.content) for m in messages)
        with self._lock:
            nth = self._asked[text] = self._asked.get(text, 0) + 1
        digest = hashlib.sha256(f"{self.seed}|{nth}|{text}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= self.fault_rate:
            return None
        kind = self.faults[digest[8] % len(self.faults)]
        with self._lock:
            self._seen[kind] = self._seen.get(kind, 0) + 1
        return kind

    def _answer(self, messages: list[BaseMessage], **kwargs: Any) -> ChatResult:
        kind = self._fault(messages)
        if kind == "rate_limit":
            raise RateLimitError()
        if kind == "timeout":
            raise TimeoutError("the model did not answer in time")
        if kind == "reset":
            raise ConnectionResetError(104, "Connection reset by peer")
        if kind in ("malformed_json", "missing_field", "prose", "refusal"):
            good = super()._answer(messages, **kwargs).generations[0].message
            payload = good.tool_calls[0]["args"] if good.tool_calls else json.loads(str(good.content))
            return ChatResult(generations=[ChatGeneration(message=_broken(kind, payload, bool(kwargs.get("tools"))))])
        return super()._answer(messages, **kwargs)


def _broken(kind: str, payload: dict[str, Any], tools: bool) -> AIMessage:
    if kind == "malformed_json":
        return AIMessage(content=json.dumps(payload)[:-7] + ",,}")
    if kind == "refusal":
        return AIMessage(content="I'm sorry, but I can't help with analysing these runs.")
    if kind == "prose":
        return AIMessage(content=f"Here is what the runs show:\n{json.dumps(payload)}\nLet me know if you need more.")
    broken = {"operations": [{k: v for k, v in op.items() if k != "evidence"} for op in payload.get("operations", [])]}
    if not broken["operations"]:
        broken = {"operations": [{"action": "add", "confidence": 0.5}]}  # still missing its evidence
    if tools:
        return AIMessage(content="", tool_calls=[{"name": "ReflectionOutput", "args": broken, "id": "call_broken"}])
    return AIMessage(content=json.dumps(broken))


__all__ = [
    "FAULTS",
    "FakeReflectionModel",
    "FaultyReflectionModel",
    "PromptEpisode",
    "PromptInsight",
    "RateLimitError",
    "ReflectionPrompt",
    "contrast_responder",
    "parse_prompt",
]
