"""Dreaming LangGraph graphs: recall before each run, record after it.

``dreaming(graph, memory=...)`` returns the compiled graph as a subclass of its own class that
overrides only ``stream`` and ``astream`` (``invoke``, ``ainvoke`` and ``batch`` run through
them), so checkpointer, store, streaming formats and everything else stay the user's. The run
is observed through a LangGraph callback handler passed in the run's config: the final state
arrives in ``on_chain_end`` of the root run, node updates in its children, interrupts in
``on_interrupt``. ``add_dreaming(builder, ...)`` makes a ``StateGraph`` builder compile into
such a graph.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_core.runnables.config import merge_configs
from langgraph.callbacks import GraphCallbackHandler, GraphInterruptEvent
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphBubbleUp, GraphRecursionError
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from langdream.capture import (
    RECALL_MESSAGE_ID,
    Judge,
    RecallMode,
    answer_from_state,
    judge_outcome,
    message_trajectory,
    normalise_messages,
    partial_messages,
    recall_message,
    remove_recall_message,
    step_trajectory,
    task_from_input,
)
from langdream.config import DEFAULT_NAMESPACE, DEFAULT_RECALL_KEY
from langdream.errors import GraphShapeError, LangDreamError, RecordingError
from langdream.guard.sanitize import clean_text, safe_repr
from langdream.memory import DreamMemory
from langdream.namespace import Namespace, NamespaceSpec, resolve_namespace
from langdream.types import Episode, Message, Outcome, Recall, utcnow

logger = logging.getLogger("langdream.graph")

# A run that raised is recorded under its run id with this suffix, so that a retry under the
# same run id that finishes is recorded too (the ledger keeps the first episode of an id).
RAISED_SUFFIX = ":raised"
_ERROR_CHARS = 1000


@dataclass(frozen=True)
class DreamingOptions:
    """How a graph dreams: what ``dreaming()`` and ``add_dreaming()`` take as keyword arguments.

    Attributes:
        memory: the ``DreamMemory`` to record into and recall from.
        namespace: a tuple of labels, a template filled from ``config["configurable"]``
            (``("acme", "{user_id}")``) or a function of the run's config.
        judge: ``judge(final_state)`` returning an ``Outcome``, a bool, a float score or None.
        task: the input key that holds the task, or a function of the input (default: the last
            human message, else a ``task``/``question``/``query``/``input``/``prompt`` key).
        answer: the state key that holds the final answer, or a function of the final state.
        recall: ``"auto"`` (messages if the state has them, else ``recall_key``), ``"messages"``,
            ``"state"`` or ``"off"``.
        recall_key: the state key that receives the recalled text in ``"state"`` mode.
        messages_key: the state key holding the conversation.
        k / token_budget: recall limits (default: the memory's settings).
        on_error: ``"warn"`` (log, and let the run succeed) or ``"raise"`` when recording fails.
            Either way the run's own exception, if it raises one, is what the caller gets; see
            docs/reliability.md for what is recorded of such a run.
    """

    memory: DreamMemory
    namespace: NamespaceSpec = DEFAULT_NAMESPACE
    judge: Judge | None = None
    task: str | Callable[[Any], str] | None = None
    answer: str | Callable[[Any], Any] | None = None
    recall: Literal["auto", "messages", "state", "off"] = "auto"
    recall_key: str = DEFAULT_RECALL_KEY
    messages_key: str = "messages"
    k: int | None = None
    token_budget: int | None = None
    on_error: Literal["warn", "raise"] = "warn"


class _RunObserver(GraphCallbackHandler):
    """Collects what langdream needs from one run's callbacks. Runs inline: it only stores."""

    run_inline = True

    def __init__(self, run_id: uuid.UUID) -> None:
        self.run_id = run_id
        self.output: Any = None
        self.finished = False
        self.interrupted = False
        self._node_names: dict[uuid.UUID, str] = {}
        self.steps: list[tuple[str, Any]] = []

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: uuid.UUID, parent_run_id: uuid.UUID | None = None, **kwargs: Any
    ) -> None:
        if parent_run_id == self.run_id and kwargs.get("name"):
            self._node_names[run_id] = kwargs["name"]

    def on_chain_end(
        self, outputs: Any, *, run_id: uuid.UUID, parent_run_id: uuid.UUID | None = None, **kwargs: Any
    ) -> None:
        if run_id == self.run_id:
            self.output, self.finished = outputs, True
        elif run_id in self._node_names:
            self.steps.append((self._node_names.pop(run_id), outputs))

    def on_interrupt(self, event: GraphInterruptEvent) -> None:
        if event.run_id == self.run_id:
            self.interrupted = True


@dataclass
class _Run:
    """One run of a dreaming graph: what was prepared before it and observed during it."""

    namespace: Namespace | None
    input: Any
    config: RunnableConfig
    observer: _RunObserver
    # False once preparing the run failed (already reported): it is then neither recalled for nor recorded.
    recorded: bool = True
    task: str | None = None
    task_message_id: str | None = None
    recall: Recall | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def run_id(self) -> str:
        return str(self.observer.run_id)


def _recall_mode(graph: Pregel, options: DreamingOptions) -> RecallMode:
    channels = set(graph.channels)
    if options.recall == "off":
        return "off"
    if options.recall in ("auto", "messages") and options.messages_key in channels:
        return "messages"
    if options.recall in ("auto", "state") and options.recall_key in channels:
        return "state"
    wanted = options.messages_key if options.recall == "messages" else options.recall_key
    raise GraphShapeError(
        f"graph {graph.get_name()!r} has no state key {wanted!r} to put recalled insights in "
        f"(its keys: {sorted(k for k in channels if not k.startswith('__') and ':' not in k)})",
        hint=(
            f"for a message graph use a state with a {options.messages_key!r} key (e.g. MessagesState); "
            f"otherwise add `{options.recall_key}: str` to your state schema and read it in your nodes, "
            "pass recall_key='<your key>', or recall='off' to record without recalling"
        ),
    )


class _Runner:
    """The before/after logic of a dreaming run, shared by the sync and async paths."""

    def __init__(self, graph: Pregel, options: DreamingOptions) -> None:
        self.graph = graph
        self.options = options
        self.mode = _recall_mode(graph, options)

    def begin(self, input: Any, config: RunnableConfig | None) -> _Run:
        config = ensure_config(config)
        run_id = config.get("run_id") or uuid.uuid4()
        observer = _RunObserver(run_id)
        config = merge_configs(config, {"callbacks": [observer]})
        config["run_id"] = run_id
        run = _Run(None, input, config, observer)
        # What langdream cannot tell about a run is reported by failed(); the run itself goes on.
        for where, prepare in (("resolve the run's namespace", self._namespace), ("tell the run's task", self._task)):
            try:
                prepare(run)
            except Exception as exc:
                self.failed(where, exc)
                run.recorded = False
                break
        return run

    def _namespace(self, run: _Run) -> None:
        run.namespace = resolve_namespace(self.options.namespace, run.config)

    def _task(self, run: _Run) -> None:
        input = run.input
        if input is None or not isinstance(input, (Mapping, str)):
            return  # resuming (None / Command): the task is read from the final state
        run.task = task_from_input(self.options.task, input, self.options.messages_key)
        if self.mode == "messages" and isinstance(input, Mapping) and self.options.messages_key in input:
            messages = normalise_messages(input[self.options.messages_key])
            human = [m for m in messages if m.type == "human"]
            run.task_message_id = human[-1].id if human else None
            run.input = {**input, self.options.messages_key: messages}

    def inject(self, run: _Run, recall: Recall, thread_has_recall: bool) -> None:
        run.recall = recall
        key = self.options.messages_key
        if self.mode == "messages" and isinstance(run.input, Mapping) and key in run.input:
            messages = list(run.input[key])
            if recall.text:
                # After the agent's own instructions (leading system messages), before the turn.
                lead = next((p for p, m in enumerate(messages) if m.type != "system"), len(messages))
                messages[lead:lead] = [recall_message(recall.text)]
                run.input = {**run.input, key: messages}
            elif thread_has_recall:
                # Nothing to recall this turn: take the last turn's lessons out of the thread.
                run.input = {**run.input, key: [remove_recall_message(), *messages]}
        elif self.mode == "state" and isinstance(run.input, Mapping):
            run.input = {**run.input, self.options.recall_key: recall.text}

    def wants_recall(self, run: _Run) -> bool:
        return self.mode != "off" and run.recorded and bool(run.task and run.task.strip())

    def wants_thread_check(self, run: _Run, recall: Recall) -> bool:
        configurable = run.config.get("configurable") or {}
        return (
            self.mode == "messages"
            and not recall.text
            and isinstance(self.graph.checkpointer, BaseCheckpointSaver)
            and configurable.get("thread_id") is not None
        )

    @staticmethod
    def thread_has_recall(state_values: Any, messages_key: str) -> bool:
        messages = state_values.get(messages_key, []) if isinstance(state_values, Mapping) else []
        return any(getattr(m, "id", None) == RECALL_MESSAGE_ID for m in messages)

    def episode(self, run: _Run) -> Episode | None:
        """The episode of a finished run, or None if the run did not finish (interrupted)."""
        observer = run.observer
        if not run.recorded or observer.interrupted or not observer.finished:
            return None
        state = observer.output
        key = self.options.messages_key
        if self.mode == "messages" or (isinstance(state, Mapping) and key in state):
            final_messages = state.get(key, []) if isinstance(state, Mapping) else []
            trajectory = message_trajectory(final_messages, run.task_message_id)
            task = run.task
            if not task:
                task = next((m.content for m in reversed(trajectory) if m.role == "user"), "")
        else:
            task = run.task or ""
            trajectory = step_trajectory(task, observer.steps)
        if not task.strip():
            raise GraphShapeError(
                "the finished run has no task text to record (no human message and no task in its input)",
                hint="pass task=<key or function> to dreaming() so langdream can tell what the run was asked",
            )
        metadata = self._metadata(run)
        outcome, answer = judge_and_answer(self.options, state, trajectory, metadata)
        return self._episode(run, run.run_id, task, trajectory, answer, outcome, metadata)

    def raised_episode(self, run: _Run, error: Exception) -> Episode | None:
        """The episode of a run that raised: what it did up to the error, with the error in its
        metadata. Its outcome is a failure when the graph ran out of steps (the agent's own
        doing), else unknown: a provider outage or a bug in a node says nothing about the task.
        None when nothing says what the run was asked (a resumed run, an empty one)."""
        task = run.task
        if not run.recorded or not task or not task.strip():
            return None
        key = self.options.messages_key
        if self.mode == "messages" and isinstance(run.input, Mapping) and key in run.input:
            messages = partial_messages(run.input[key], run.observer.steps, key)
            trajectory = message_trajectory(messages, run.task_message_id)
        else:
            trajectory = step_trajectory(task, run.observer.steps)
        text = error_text(error)
        outcome = Outcome()
        if isinstance(error, GraphRecursionError):
            outcome = Outcome(success=False, score=0.0, feedback=f"the run ran out of steps: {text}")
        metadata = {**self._metadata(run), "error": text}
        return self._episode(run, run.run_id + RAISED_SUFFIX, task, trajectory, None, outcome, metadata)

    def _metadata(self, run: _Run) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "graph": self.graph.get_name(),
            "seconds": round(time.perf_counter() - run.started, 4),
        }
        if run.recall is not None and run.recall.insights:
            metadata["recall_tokens"] = run.recall.tokens
        return metadata

    def _episode(
        self,
        run: _Run,
        episode_id: str,
        task: str,
        trajectory: list[Message],
        answer: str | None,
        outcome: Outcome,
        metadata: dict[str, Any],
    ) -> Episode:
        assert run.namespace is not None  # a run whose namespace failed is not recorded
        return new_episode(
            episode_id=episode_id,
            run_id=run.run_id,
            namespace=run.namespace,
            task=task,
            trajectory=trajectory,
            answer=answer,
            outcome=outcome,
            config=run.config,
            injected=run.recall.insight_ids if run.recall else [],
            metadata=metadata,
        )

    def failed(self, where: str, exc: Exception, *, may_raise: bool = True) -> None:
        report_failure(self.options.on_error, where, exc, may_raise=may_raise)

    @staticmethod
    def duplicate(episode: Episode) -> None:
        warn_duplicate(episode)


def report_failure(on_error: str, where: str, exc: Exception, *, may_raise: bool = True) -> None:
    """Report what langdream could not do: raised with ``on_error="raise"`` (unless the run's
    own exception is on its way, ``may_raise=False``), else a warning, and the run goes on."""
    if may_raise and on_error == "raise":
        if isinstance(exc, LangDreamError):
            raise exc
        raise RecordingError(
            f"langdream could not {where}: {error_text(exc)}",
            hint="fix the cause, or pass on_error='warn' so that runs go on unrecorded",
        ) from exc
    unaffected = "the run itself is unaffected" if may_raise else "the run's own error is raised as it was"
    logger.warning("langdream could not %s (%s): %s", where, unaffected, error_text(exc))


def judge_and_answer(
    options: DreamingOptions, state: Any, trajectory: list[Message], metadata: dict[str, Any]
) -> tuple[Outcome, str | None]:
    """A finished run's outcome (its judge's verdict) and final answer. A judge or ``answer=``
    function that fails costs only its own field, noted in ``metadata`` (unless on_error="raise")."""
    outcome, judge_error = judge_outcome(options.judge, state, options.on_error)
    if judge_error:
        metadata["judge_error"] = judge_error
    try:
        answer = answer_from_state(options.answer, state, trajectory)
    except Exception as exc:
        report_failure(options.on_error, "tell the run's answer", exc)
        answer, metadata["answer_error"] = None, error_text(exc)
    return outcome, answer


def new_episode(
    *,
    episode_id: str,
    run_id: str,
    namespace: Namespace,
    task: str,
    trajectory: list[Message],
    answer: str | None,
    outcome: Outcome,
    config: Mapping[str, Any],
    injected: list[str],
    metadata: dict[str, Any],
) -> Episode:
    """The episode of one run, with the thread id of its config."""
    thread_id = (config.get("configurable") or {}).get("thread_id")
    return Episode(
        id=episode_id,
        namespace=namespace,
        task=task,
        messages=trajectory,
        final_answer=answer,
        outcome=outcome,
        thread_id=None if thread_id is None else str(thread_id),
        run_id=run_id,
        created_at=utcnow(),
        injected_insight_ids=injected,
        metadata=metadata,
    )


def warn_duplicate(episode: Episode) -> None:
    logger.warning(
        "langdream did not record run %s: an episode with id %r is already stored and is kept as it was "
        "(pass a new run_id for each run)",
        episode.run_id,
        episode.id,
    )


def records_error(error: Exception) -> bool:
    """Whether a run that raised ``error`` is recorded: not for LangGraph's control flow
    (an interrupt or a drain bubbling up from a subgraph), which is no failure."""
    return not isinstance(error, GraphBubbleUp)


def error_text(error: BaseException) -> str:
    """``"Type: message"``, capped: an exception's message may quote a whole tool output."""
    try:
        message = str(error)
    except Exception:
        message = safe_repr(error)
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "…"


def _save(graph: Pregel, runner: _Runner, build: Callable[[], Episode | None], *, raised: bool = False) -> None:
    try:
        episode = build()
        if episode is not None and not graph.langdream.memory.record(episode):
            runner.duplicate(episode)
    except Exception as exc:
        runner.failed("record the run that raised" if raised else "record the run", exc, may_raise=not raised)


async def _asave(graph: Pregel, runner: _Runner, build: Callable[[], Episode | None], *, raised: bool = False) -> None:
    try:
        episode = build()
        if episode is not None and not await graph.langdream.memory.arecord(episode):
            runner.duplicate(episode)
    except Exception as exc:
        runner.failed("record the run that raised" if raised else "record the run", exc, may_raise=not raised)


def _feedback(graph: Pregel, run_id: str | uuid.UUID, **outcome: Any) -> Episode:
    """Attach or change the outcome of a recorded run; see ``DreamMemory.feedback``."""
    return graph.langdream.memory.feedback(str(run_id), **outcome)


async def _afeedback(graph: Pregel, run_id: str | uuid.UUID, **outcome: Any) -> Episode:
    return await graph.langdream.memory.afeedback(str(run_id), **outcome)


def _query(run: _Run) -> str:
    # The embedder cannot encode a lone surrogate (undecodable bytes in the task): it becomes U+FFFD.
    return clean_text(run.task or "")[0]


def _recall(graph: Pregel, runner: _Runner, run: _Run) -> None:
    o = graph.langdream
    try:
        recall = o.memory.recall(_query(run), run.namespace, k=o.k, token_budget=o.token_budget)
    except Exception as exc:
        runner.failed("recall insights", exc)
        return
    in_thread = False
    if runner.wants_thread_check(run, recall):
        try:
            in_thread = runner.thread_has_recall(graph.get_state(run.config).values, o.messages_key)
        except Exception as exc:  # a subgraph without its own checkpointer, say
            logger.debug("could not read the thread's state: %s", exc)
    runner.inject(run, recall, in_thread)


async def _arecall(graph: Pregel, runner: _Runner, run: _Run) -> None:
    o = graph.langdream
    try:
        recall = await o.memory.arecall(_query(run), run.namespace, k=o.k, token_budget=o.token_budget)
    except Exception as exc:
        runner.failed("recall insights", exc)
        return
    in_thread = False
    if runner.wants_thread_check(run, recall):
        try:
            in_thread = runner.thread_has_recall((await graph.aget_state(run.config)).values, o.messages_key)
        except Exception as exc:
            logger.debug("could not read the thread's state: %s", exc)
    runner.inject(run, recall, in_thread)


def _stream(
    graph: Pregel, parent_stream: Callable[..., Iterator[Any]], input: Any, config: Any, kwargs: dict
) -> Iterator[Any]:
    # A runner per run: it only reads the channel names, and a cached one in the graph's
    # __dict__ would be handed back to the constructor by Pregel.copy().
    runner = _Runner(graph, graph.langdream)
    run = runner.begin(input, config)
    if runner.wants_recall(run):
        _recall(graph, runner, run)
    try:
        yield from parent_stream(run.input, run.config, **kwargs)
    except Exception as exc:
        # The run's own exception goes to the caller unchanged; recording it never raises.
        if records_error(exc):
            _save(graph, runner, functools.partial(runner.raised_episode, run, exc), raised=True)
        raise
    _save(graph, runner, lambda: runner.episode(run))


async def _astream(
    graph: Pregel, parent_astream: Callable[..., AsyncIterator[Any]], input: Any, config: Any, kwargs: dict
) -> AsyncIterator[Any]:
    runner = _Runner(graph, graph.langdream)
    run = runner.begin(input, config)
    if runner.wants_recall(run):
        await _arecall(graph, runner, run)
    try:
        async for chunk in parent_astream(run.input, run.config, **kwargs):
            yield chunk
    except Exception as exc:
        if records_error(exc):
            await _asave(graph, runner, functools.partial(runner.raised_episode, run, exc), raised=True)
        raise
    await _asave(graph, runner, lambda: runner.episode(run))


@functools.cache
def _dreaming_class(cls: type) -> type:
    """``cls`` plus recall-before / record-after. A single-base subclass: an instance of ``cls``
    can switch to it, and ``Pregel.copy()`` rebuilds it through its ``__init__``."""
    klass: type = type(f"Dreaming{cls.__name__}", (cls,), {"__module__": __name__, "__doc__": cls.__doc__})

    def __init__(self: Any, *, langdream: DreamingOptions, **kwargs: Any) -> None:
        super(klass, self).__init__(**kwargs)
        self.langdream = langdream

    def stream(self: Any, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        return _stream(self, super(klass, self).stream, input, config, kwargs)

    def astream(self: Any, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        return _astream(self, super(klass, self).astream, input, config, kwargs)

    for method in (__init__, stream, astream):
        method.__qualname__ = f"{klass.__name__}.{method.__name__}"
        setattr(klass, method.__name__, method)
    klass.feedback = _feedback
    klass.afeedback = _afeedback
    return klass


def _wrap_compiled(graph: Pregel, options: DreamingOptions) -> Pregel:
    if isinstance(getattr(graph, "langdream", None), DreamingOptions):
        raise GraphShapeError(
            f"graph {graph.get_name()!r} is already dreaming", hint="wrap the original graph only once"
        )
    dreaming_graph = graph.copy()
    dreaming_graph.__class__ = _dreaming_class(type(graph))
    dreaming_graph.langdream = options
    _Runner(dreaming_graph, options)  # checks the graph's shape now, not at its first run
    return dreaming_graph


@functools.cache
def _dreaming_builder_class(cls: type) -> type:
    klass: type = type(f"Dreaming{cls.__name__}", (cls,), {"__module__": __name__, "__doc__": cls.__doc__})

    def compile(self: Any, *args: Any, **kwargs: Any) -> Pregel:
        return _wrap_compiled(super(klass, self).compile(*args, **kwargs), self._langdream)

    compile.__qualname__ = f"{klass.__name__}.compile"
    klass.compile = compile
    return klass


def add_dreaming(builder: StateGraph, memory: DreamMemory, **options: Any) -> StateGraph:
    """Make ``builder.compile(...)`` return a dreaming graph. Changes ``builder`` in place and returns it.

    Keyword arguments are those of ``DreamingOptions``.
    """
    if not isinstance(builder, StateGraph):
        raise GraphShapeError(
            f"add_dreaming() takes a StateGraph builder, not {type(builder).__name__}",
            hint="for a compiled graph use dreaming(graph, memory=...)",
        )
    builder._langdream = DreamingOptions(memory=memory, **options)
    if getattr(type(builder), "__module__", None) != __name__:
        builder.__class__ = _dreaming_builder_class(type(builder))
    return builder


def dreaming(graph: Any = None, /, *, memory: DreamMemory, **options: Any) -> Any:
    """Give a LangGraph graph a memory that learns while it sleeps.

    - ``dreaming(compiled_graph, memory=m, ...)`` returns a dreaming copy of the compiled graph.
    - ``dreaming(builder, memory=m, ...)`` is ``add_dreaming(builder, m, ...)``.
    - ``@dreaming(memory=m, ...)`` decorates a function that returns either (a graph factory).

    Keyword arguments are those of ``DreamingOptions``.
    """
    if graph is None:
        return functools.partial(_dreaming_decorator, memory=memory, options=options)
    if isinstance(graph, StateGraph):
        return add_dreaming(graph, memory, **options)
    if isinstance(graph, Pregel):
        return _wrap_compiled(graph, DreamingOptions(memory=memory, **options))
    if callable(graph):
        return _dreaming_decorator(graph, memory=memory, options=options)
    raise GraphShapeError(
        f"dreaming() takes a compiled LangGraph graph or a StateGraph builder, not {type(graph).__name__}",
        hint="pass builder.compile(...) or the StateGraph builder itself",
    )


def _dreaming_decorator(factory: Callable[..., Any], *, memory: DreamMemory, options: dict[str, Any]) -> Any:
    if isinstance(factory, (StateGraph, Pregel)):
        return dreaming(factory, memory=memory, **options)

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> Any:
        return dreaming(factory(*args, **kwargs), memory=memory, **options)

    return build


__all__ = ["DreamingOptions", "add_dreaming", "dreaming"]
