"""Reflection with any LangChain chat model, through structured output."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import PydanticOutputParser

from langdream.config import DEFAULT_ENCODING, DEFAULT_EPISODE_PROMPT_TOKENS, DEFAULT_REFLECT_MAX_EPISODES
from langdream.errors import ModelError, ReflectionError
from langdream.reflect import ClusterView, Operation, Reflection, ReflectionOutput
from langdream.reflect.prompts import PROMPT_VERSION, build_messages
from langdream.tokens import count_tokens
from langdream.types import InsightAction, InsightOrigin

logger = logging.getLogger("langdream.reflect")

_EXAMPLE_MODELS = "'anthropic:claude-sonnet-4-5' or 'openai:gpt-4.1'"


def resolve_chat_model(model: BaseChatModel | str) -> BaseChatModel:
    """A chat model object as is, or one built from an ``init_chat_model`` string."""
    if isinstance(model, BaseChatModel):
        return model
    if not isinstance(model, str):
        raise ModelError(
            f"a reflection model must be a LangChain chat model or a 'provider:model' string, "
            f"not {type(model).__name__}",
            hint=f"pass e.g. {_EXAMPLE_MODELS}, or a BaseChatModel instance",
        )
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise ModelError(
            f"model strings such as {model!r} need the langchain package",
            hint="pip install 'langdream[langchain]' plus the provider package (e.g. langchain-anthropic)",
        ) from exc
    try:
        return init_chat_model(model)
    except ImportError as exc:
        provider = model.split(":", 1)[0] if ":" in model else "<provider>"
        raise ModelError(
            f"cannot initialise chat model {model!r}: {exc}",
            hint=f"install the provider's integration package: pip install langchain-{provider.replace('_', '-')}",
        ) from exc
    except Exception as exc:
        raise ModelError(
            f"cannot initialise chat model {model!r}: {exc}",
            hint=f"use 'provider:model' such as {_EXAMPLE_MODELS}, and set the provider's API key",
        ) from exc


def chat_model_id(model: BaseChatModel) -> str:
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or getattr(model, "model_id", None)
    return f"{type(model).__name__}:{name}" if isinstance(name, str) and name else type(model).__name__


def _raw_text(message: Any) -> str:
    if isinstance(message, AIMessage):
        return json.dumps(
            {"content": message.content, "tool_calls": [dict(c) for c in message.tool_calls]},
            ensure_ascii=False,
            default=str,
        )
    return json.dumps(message, ensure_ascii=False, default=str)


def _to_operations(output: ReflectionOutput) -> list[Operation]:
    return [
        Operation(
            action=InsightAction(op.action),
            insight_id=op.insight_id,
            claim=op.claim,
            applies_when=op.applies_when,
            evidence=list(op.evidence),
            confidence=op.confidence,
        )
        for op in output.operations
    ]


@dataclass
class _Spent:
    tokens_in: int = 0
    tokens_out: int = 0
    last_error: Exception | None = None


class LLMReflector:
    """Asks a chat model to contrast a cluster's successful and failed runs."""

    origin = InsightOrigin.LLM

    def __init__(
        self,
        model: BaseChatModel | str,
        *,
        max_episodes: int = DEFAULT_REFLECT_MAX_EPISODES,
        episode_tokens: int = DEFAULT_EPISODE_PROMPT_TOKENS,
        encoding: str = DEFAULT_ENCODING,
        max_attempts: int = 2,
    ) -> None:
        self.model = resolve_chat_model(model)
        self._model_id = model if isinstance(model, str) else chat_model_id(self.model)
        self.max_episodes = max_episodes
        self.episode_tokens = episode_tokens
        self.encoding = encoding
        self.max_attempts = max_attempts
        self._parser = PydanticOutputParser(pydantic_object=ReflectionOutput)
        try:
            self._structured = self.model.with_structured_output(ReflectionOutput, include_raw=True)
        except NotImplementedError:
            # No tool calling: ask for JSON in the reply and parse it.
            self._structured = None

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def prompt_version(self) -> str:
        return PROMPT_VERSION

    def _prompt(self, view: ClusterView) -> list:
        messages = build_messages(
            view, max_episodes=self.max_episodes, episode_tokens=self.episode_tokens, encoding=self.encoding
        )
        if self._structured is None:
            messages.append(HumanMessage(self._parser.get_format_instructions()))
        return messages

    def prompt_tokens(self, view: ClusterView) -> int:
        return self._count(self._prompt(view))

    def _count(self, messages: list) -> int:
        return sum(count_tokens(str(m.content), self.encoding) for m in messages)

    def _parse(self, result: Any) -> Reflection:
        if self._structured is None:
            raw = _raw_text(result)
            parsed = self._parser.parse(result.content if isinstance(result, AIMessage) else str(result))
        else:
            raw = _raw_text(result.get("raw"))
            parsed = result.get("parsed")
            if parsed is None:
                error = result.get("parsing_error") or "the reply had no ReflectionOutput tool call"
                raise ReflectionError(
                    f"the model's reflection did not fit the schema: {error}",
                    hint="use a chat model that supports tool calling / structured output",
                )
        return Reflection(raw=raw, operations=_to_operations(parsed))

    def _attempt(self, view: ClusterView, attempt: int, prompt: list, result: Any, spent: _Spent) -> Reflection | None:
        """Parse one answer, counting its tokens into ``spent``; ``None`` when it must be asked again."""
        spent.tokens_in += self._count(prompt)
        spent.tokens_out += count_tokens(
            _raw_text(result.get("raw") if isinstance(result, dict) else result), self.encoding
        )
        try:
            reflection = self._parse(result)
        except (ReflectionError, ValueError) as exc:
            spent.last_error = exc
            logger.warning("reflection on cluster %s, attempt %s: %s", view.index, attempt, exc)
            return None
        return replace(reflection, tokens_in=spent.tokens_in, tokens_out=spent.tokens_out)

    def _exhausted(self, spent: _Spent) -> ReflectionError:
        return ReflectionError(f"no valid reflection after {self.max_attempts} attempts: {spent.last_error}")

    def reflect(self, view: ClusterView) -> Reflection:
        runnable = self._structured or self.model
        spent = _Spent()
        for attempt in range(1, self.max_attempts + 1):
            prompt = self._prompt(view)
            if (done := self._attempt(view, attempt, prompt, runnable.invoke(prompt), spent)) is not None:
                return done
        raise self._exhausted(spent)

    async def areflect(self, view: ClusterView) -> Reflection:
        runnable = self._structured or self.model
        spent = _Spent()
        for attempt in range(1, self.max_attempts + 1):
            prompt = self._prompt(view)
            if (done := self._attempt(view, attempt, prompt, await runnable.ainvoke(prompt), spent)) is not None:
                return done
        raise self._exhausted(spent)
