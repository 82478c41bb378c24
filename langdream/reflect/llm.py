"""Reflection with any LangChain chat model, through structured output."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.runnables import RunnableBinding, RunnableConfig
from langchain_core.runnables.config import merge_configs
from pydantic import ValidationError

from langdream.config import DEFAULT_ENCODING, DEFAULT_EPISODE_PROMPT_TOKENS, DEFAULT_REFLECT_MAX_EPISODES
from langdream.errors import ModelError
from langdream.reflect import ClusterView, Operation, Reflection, ReflectionOutput
from langdream.reflect.prompts import PROMPT_VERSION, build_messages
from langdream.reflect.retry import InvalidOutputError, RefusalError, RetryPolicy, RetryTracker
from langdream.tokens import count_tokens
from langdream.types import InsightAction, InsightOrigin

logger = logging.getLogger("langdream.reflect")

_EXAMPLE_MODELS = "'anthropic:claude-sonnet-4-5' or 'openai:gpt-4.1'"
REFLECT_RUN_NAME = "langdream-reflect"


def _unwrap(model: RunnableBinding) -> tuple[Any, RunnableConfig]:
    """The chat model inside ``model.with_config(...)`` (nested too), and the config it carries."""
    config: RunnableConfig = {}
    while isinstance(model, RunnableBinding):
        if model.kwargs:
            raise ModelError(
                f"a reflection model bound with arguments ({sorted(model.kwargs)}) cannot be used: "
                "reflection binds its own schema to the model",
                hint="set those arguments on the model itself (e.g. ChatAnthropic(model=..., temperature=0)); "
                "model.with_config(...) is fine",
            )
        config = merge_configs(model.config or {}, config)
        model = model.bound
    return model, config


def resolve_chat_model(model: BaseChatModel | RunnableBinding | str) -> tuple[BaseChatModel, RunnableConfig]:
    """A chat model object as is, one built from an ``init_chat_model`` string, or the model inside
    ``model.with_config(tags=..., callbacks=..., run_name=...)``, with the config every reflection
    call then runs with."""
    config: RunnableConfig = {}
    if isinstance(model, RunnableBinding):
        model, config = _unwrap(model)
    if isinstance(model, BaseChatModel):
        return model, config
    if not isinstance(model, str):
        raise ModelError(
            f"a reflection model must be a LangChain chat model or a 'provider:model' string, "
            f"not {type(model).__name__}",
            hint=f"pass e.g. {_EXAMPLE_MODELS}, a BaseChatModel instance, or one with .with_config(...)",
        )
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise ModelError(
            f"model strings such as {model!r} need the langchain package",
            hint="pip install 'langdream[langchain]' plus the provider package (e.g. langchain-anthropic)",
        ) from exc
    try:
        return init_chat_model(model), config
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


# Openings of a reply that declines instead of answering.
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i can(?:no|')t|i cannot|i'?m (?:not able|unable)|i am (?:not able|unable)|"
    r"i (?:won'?t|will not)|as an ai\b)",
    re.IGNORECASE,
)


def _output_in(text: str) -> ReflectionOutput | None:
    """The first JSON object in ``text`` that is a valid reflection (models wrap JSON in prose)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
            # Only an object that says what a reflection says: any other JSON (an operation on its
            # own, a gateway's error body) must not pass for an empty reflection.
            if isinstance(value, dict) and "operations" in value:
                return ReflectionOutput.model_validate(value)
        except (ValueError, ValidationError):
            pass
        start = text.find("{", start + 1)
    return None


def _refused(message: Any) -> bool:
    if not isinstance(message, AIMessage):
        return False
    if message.additional_kwargs.get("refusal") or message.response_metadata.get("finish_reason") == "content_filter":
        return True
    return isinstance(message.content, str) and bool(_REFUSAL.match(message.content))


def _next_delay(view: ClusterView, retries: RetryTracker, exc: Exception) -> float:
    """Seconds to wait before asking again; raises once this kind of error has used its attempts."""
    delay = retries.after(exc)
    logger.warning(
        "reflection on cluster %s failed (%s: %s); retrying in %.2fs", view.index, type(exc).__name__, exc, delay
    )
    return delay


class LLMReflector:
    """Asks a chat model to contrast a cluster's successful and failed runs."""

    origin = InsightOrigin.LLM

    def __init__(
        self,
        model: BaseChatModel | RunnableBinding | str,
        *,
        config: RunnableConfig | None = None,
        max_episodes: int = DEFAULT_REFLECT_MAX_EPISODES,
        episode_tokens: int = DEFAULT_EPISODE_PROMPT_TOKENS,
        encoding: str = DEFAULT_ENCODING,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.model, carried = resolve_chat_model(model)
        # Every reflection call runs with this config (tags, callbacks, metadata: LangSmith traces
        # of a dream group under "langdream-reflect" unless the caller names them).
        self.config: RunnableConfig = merge_configs({"run_name": REFLECT_RUN_NAME}, carried, config or {})
        self._model_id = model if isinstance(model, str) else chat_model_id(self.model)
        self.max_episodes = max_episodes
        self.episode_tokens = episode_tokens
        self.encoding = encoding
        self.retry = retry or RetryPolicy()
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
        message = result.get("raw") if self._structured is not None else result
        raw = _raw_text(message)
        parsed = result.get("parsed") if self._structured is not None else None
        if parsed is None:
            # No tool call, or no tool calling at all: the JSON may still be in the text, in prose.
            content = message.content if isinstance(message, AIMessage) else str(message)
            parsed = _output_in(content if isinstance(content, str) else json.dumps(content))
        if parsed is None:
            if _refused(message):
                raise RefusalError(f"the model declined to reflect: {str(getattr(message, 'content', ''))[:200]!r}")
            error = (
                result.get("parsing_error") if self._structured is not None else None
            ) or "no reflection JSON in it"
            raise InvalidOutputError(
                f"the model's reflection did not fit the schema: {error}",
                hint="it is asked again; if this keeps happening, use a chat model that supports tool calling",
            )
        return Reflection(raw=raw, operations=_to_operations(parsed))

    def _accept(self, prompt: list, result: Any, spent: _Spent) -> Reflection:
        """Count one answer's tokens into ``spent`` and parse it (raising when it must be asked again)."""
        spent.tokens_in += self._count(prompt)
        spent.tokens_out += count_tokens(
            _raw_text(result.get("raw") if isinstance(result, dict) else result), self.encoding
        )
        return replace(self._parse(result), tokens_in=spent.tokens_in, tokens_out=spent.tokens_out)

    def reflect(self, view: ClusterView) -> Reflection:
        runnable = self._structured or self.model
        spent, retries = _Spent(), self.retry.tracker()
        while True:
            prompt = self._prompt(view)
            try:
                return self._accept(prompt, runnable.invoke(prompt, self.config), spent)
            except Exception as exc:  # noqa: BLE001 - classified: an unknown kind is fatal, not retried
                time.sleep(_next_delay(view, retries, exc))

    async def areflect(self, view: ClusterView) -> Reflection:
        runnable = self._structured or self.model
        spent, retries = _Spent(), self.retry.tracker()
        while True:
            prompt = self._prompt(view)
            try:
                return self._accept(prompt, await runnable.ainvoke(prompt, self.config), spent)
            except Exception as exc:  # noqa: BLE001 - classified as above
                await asyncio.sleep(_next_delay(view, retries, exc))
