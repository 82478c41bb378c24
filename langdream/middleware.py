"""``DreamingMiddleware``: langdream for agents built with ``langchain.agents.create_agent``.

Before the agent runs, the insights relevant to the turn's task are recalled; each model call of
the turn gets them appended to its system prompt (the request's, never the thread's stored
messages, so a checkpointed conversation holds no stale lessons); after the agent finishes, the
turn is recorded as an episode. What one turn needs between those hooks travels in a private
state key, so one middleware object serves concurrent runs.

Requires the ``langchain`` extra (``pip install "langdream[langchain]"``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from typing_extensions import NotRequired

from langdream.capture import message_trajectory, text_of
from langdream.errors import ConfigError
from langdream.graph import DreamingOptions, judge_and_answer, new_episode, report_failure, warn_duplicate
from langdream.guard.sanitize import clean_text
from langdream.memory import DreamMemory
from langdream.namespace import parse_namespace, resolve_namespace
from langdream.types import Episode, Recall

try:
    from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
    from langchain.agents.middleware.types import PrivateStateAttr
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'DreamingMiddleware needs langchain 1.x: pip install "langdream[langchain]"'
    ) from exc

logger = logging.getLogger("langdream.middleware")

STATE_KEY = "langdream_turn"
_RECALL_MODES = ("auto", "messages", "off")


class DreamingState(AgentState):
    """The agent state plus langdream's private record of the current turn (never in the output)."""

    langdream_turn: Annotated[NotRequired[dict[str, Any] | None], PrivateStateAttr]


@dataclasses.dataclass(frozen=True)
class _Turn:
    """What ``before_agent`` learned about a turn, as stored in the private state key."""

    run_id: str
    namespace: tuple[str, ...]
    task: str
    task_message_id: str | None
    started: float
    recall_text: str = ""
    insight_ids: tuple[str, ...] = ()
    recall_tokens: int = 0

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _Turn | None:
        stored = state.get(STATE_KEY)
        if not stored:
            return None
        return cls(**{**stored, "namespace": tuple(stored["namespace"]), "insight_ids": tuple(stored["insight_ids"])})

    def to_state(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {**data, "namespace": list(self.namespace), "insight_ids": list(self.insight_ids)}


def _context_fields(context: Any) -> dict[str, Any]:
    """The fields of a ``create_agent`` runtime context (a dict, dataclass or pydantic model)."""
    if context is None:
        return {}
    if isinstance(context, Mapping):
        return dict(context)
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        return {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
    dump = getattr(context, "model_dump", None)
    return dict(dump()) if callable(dump) else {}


def _run_config(runtime: Runtime[Any]) -> dict[str, Any]:
    """The run's config, with the runtime context's fields filling what ``configurable`` lacks, so a
    namespace template like ``("acme", "{user_id}")`` works with either way of passing ``user_id``."""
    config = dict(get_config())
    configurable = {**_context_fields(getattr(runtime, "context", None)), **(config.get("configurable") or {})}
    config["configurable"] = configurable
    return config


def with_recall(system: SystemMessage | None, text: str) -> SystemMessage:
    """The request's system message with the recalled insights after the agent's own instructions."""
    if system is None:
        return SystemMessage(content=text)
    content = system.content
    if isinstance(content, str):
        merged: Any = f"{content}\n\n{text}" if content else text
    else:
        merged = [*content, {"type": "text", "text": text}]
    return system.model_copy(update={"content": merged})


class DreamingMiddleware(AgentMiddleware[DreamingState, Any]):
    """Recall before each turn of a ``create_agent`` agent and record the turn after it.

    ``create_agent(model, tools, middleware=[DreamingMiddleware(memory, judge=...)])``. It takes
    the keyword arguments of ``dreaming()`` (see ``DreamingOptions``): ``namespace`` (a tuple, a
    template filled from ``config["configurable"]`` or the runtime context, or a function of the
    config), ``judge``, ``task``, ``answer``, ``recall`` (``"auto"`` or ``"off"``), ``k``,
    ``token_budget`` and ``on_error``. A turn that raises is not recorded (the ``dreaming()``
    wrapper records those). Recorded turns use the run's ``run_id`` as their id when the caller
    gave one (``config={"run_id": ...}``), so ``memory.feedback(run_id, ...)`` finds them.
    """

    state_schema = DreamingState

    def __init__(self, memory: DreamMemory, **options: Any) -> None:
        super().__init__()
        if not isinstance(memory, DreamMemory):
            raise ConfigError(
                f"DreamingMiddleware needs a DreamMemory, not {type(memory).__name__}",
                hint="DreamingMiddleware(DreamMemory(), judge=...)",
            )
        allowed = sorted(f.name for f in dataclasses.fields(DreamingOptions) if f.name != "memory")
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(f"DreamingMiddleware has no option {unknown[0]!r}", hint=f"its options are {allowed}")
        self.options = DreamingOptions(memory=memory, **options)
        if self.options.recall not in _RECALL_MODES:
            raise ConfigError(
                f"DreamingMiddleware cannot recall into {self.options.recall!r}: a create_agent agent "
                "gets its recalled insights in the model's system prompt",
                hint="pass recall='auto' (the default) or recall='off'",
            )
        if self.options.messages_key != "messages":
            raise ConfigError(
                "create_agent keeps its conversation under 'messages'; messages_key cannot change it",
                hint="leave messages_key out",
            )

    @property
    def memory(self) -> DreamMemory:
        return self.options.memory

    # -- the shared core ---------------------------------------------------------------------

    def _begin(self, state: Mapping[str, Any], runtime: Runtime[Any]) -> _Turn | None:
        """This turn's task and namespace; None (reported) when langdream cannot tell them."""
        messages = state.get("messages") or []
        human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        if human is None:
            logger.debug("no human message in the agent's input: the turn is not recorded")
            return None
        try:
            config = _run_config(runtime)
            namespace = resolve_namespace(self.options.namespace, config)
            task = (
                text_of(self.options.task(state)) if callable(self.options.task) else text_of(human.content)
            )
        except Exception as exc:
            report_failure(self.options.on_error, "tell the turn's namespace and task", exc)
            return None
        if not task.strip():
            return None
        info = getattr(runtime, "execution_info", None)
        run_id = getattr(info, "run_id", None) or config.get("run_id") or uuid.uuid4()
        return _Turn(str(run_id), namespace, task, human.id, time.time())

    def _wants_recall(self, turn: _Turn | None) -> bool:
        return turn is not None and self.options.recall != "off"

    def _recall_args(self, turn: _Turn) -> tuple[tuple[str, Any], dict[str, Any]]:
        # The embedder cannot encode a lone surrogate: it becomes U+FFFD.
        return (clean_text(turn.task)[0], turn.namespace), {"k": self.options.k, "token_budget": self.options.token_budget}

    def _recalled(self, turn: _Turn | None, recall: Recall | None) -> dict[str, Any] | None:
        if turn is None:
            return {STATE_KEY: None}
        if recall is not None and recall.text:
            turn = dataclasses.replace(
                turn, recall_text=recall.text, insight_ids=tuple(recall.insight_ids), recall_tokens=recall.tokens
            )
        return {STATE_KEY: turn.to_state()}

    def _request(self, request: ModelRequest) -> ModelRequest:
        turn = _Turn.from_state(request.state or {})
        if turn is None or not turn.recall_text:
            return request
        return request.override(system_message=with_recall(request.system_message, turn.recall_text))

    def _episode(self, state: Mapping[str, Any]) -> Episode | None:
        turn = _Turn.from_state(state)
        if turn is None:
            return None
        trajectory = message_trajectory(state.get("messages") or [], turn.task_message_id)
        metadata: dict[str, Any] = {"agent": "create_agent", "seconds": round(time.time() - turn.started, 4)}
        if turn.insight_ids:
            metadata["recall_tokens"] = turn.recall_tokens
        outcome, answer = judge_and_answer(self.options, state, trajectory, metadata)
        return new_episode(
            episode_id=turn.run_id,
            run_id=turn.run_id,
            namespace=parse_namespace(turn.namespace),
            task=turn.task,
            trajectory=trajectory,
            answer=answer,
            outcome=outcome,
            config=get_config(),
            injected=list(turn.insight_ids),
            metadata=metadata,
        )

    def _recorded(self, episode: Episode | None, added: bool) -> dict[str, Any]:
        if episode is not None and not added:
            warn_duplicate(episode)
        return {STATE_KEY: None}

    # -- sync hooks --------------------------------------------------------------------------

    def before_agent(self, state: DreamingState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        turn = self._begin(state, runtime)
        recall = None
        if self._wants_recall(turn):
            args, kwargs = self._recall_args(turn)
            try:
                recall = self.memory.recall(*args, **kwargs)
            except Exception as exc:
                report_failure(self.options.on_error, "recall insights", exc)
        return self._recalled(turn, recall)

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> Any:
        return handler(self._request(request))

    def after_agent(self, state: DreamingState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        episode, added = None, False
        try:
            episode = self._episode(state)
            added = episode is not None and self.memory.record(episode)
        except Exception as exc:
            report_failure(self.options.on_error, "record the run", exc)
        return self._recorded(episode, added)

    # -- async hooks: the same core; ledger and model work off the event loop ------------------

    async def abefore_agent(self, state: DreamingState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        turn = self._begin(state, runtime)
        recall = None
        if self._wants_recall(turn):
            args, kwargs = self._recall_args(turn)
            try:
                recall = await self.memory.arecall(*args, **kwargs)
            except Exception as exc:
                report_failure(self.options.on_error, "recall insights", exc)
        return self._recalled(turn, recall)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        return await handler(self._request(request))

    async def aafter_agent(self, state: DreamingState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        episode, added = None, False
        try:
            episode = self._episode(state)
            added = episode is not None and await self.memory.arecord(episode)
        except Exception as exc:
            report_failure(self.options.on_error, "record the run", exc)
        return self._recorded(episode, added)


__all__ = ["DreamingMiddleware", "DreamingState", "with_recall"]
