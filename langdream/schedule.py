"""Dreaming while the agent is idle: a background thread that dreams after N idle seconds or
every K new episodes.

Recording only bumps a counter under a lock and signals a condition, so a run is never blocked
by the scheduler; the dream itself runs on the scheduler's own thread. Nothing starts at
import: ``start()`` (or ``with DreamScheduler(...)``) starts the thread, ``stop()`` ends it
cleanly, waiting for a dream in progress to finish its current transaction. Dreams are
journaled, so a process that exits mid-dream loses nothing: the next dream resumes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from langchain_core.language_models import BaseChatModel

from langdream.config import DEFAULT_DREAM_EVERY_EPISODES, DEFAULT_IDLE_SECONDS
from langdream.errors import ConfigError, ReflectionError
from langdream.memory import DreamMemory
from langdream.types import DreamReport, Episode

logger = logging.getLogger("langdream.schedule")


class DreamScheduler:
    """Runs ``memory.dream()`` in the background when the agent goes quiet or after enough runs.

    Args:
        memory: the memory to dream over.
        idle_seconds: dream once no episode was recorded for this long (and some are waiting).
            None disables the idle trigger.
        every_episodes: dream as soon as this many episodes were recorded since the last dream.
            None disables the count trigger.
        model: reflection model for these dreams (default: the memory's reflector).
        on_report: called with the reports of each dream.
        on_error: called with the exception when a dream fails (it is also logged).
    """

    def __init__(
        self,
        memory: DreamMemory,
        *,
        idle_seconds: float | None = DEFAULT_IDLE_SECONDS,
        every_episodes: int | None = DEFAULT_DREAM_EVERY_EPISODES,
        model: BaseChatModel | str | None = None,
        on_report: Callable[[list[DreamReport]], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if idle_seconds is None and every_episodes is None:
            raise ConfigError(
                "a DreamScheduler needs a trigger", hint="set idle_seconds, every_episodes, or both"
            )
        if idle_seconds is not None and idle_seconds <= 0:
            raise ConfigError(f"idle_seconds must be positive, got {idle_seconds}", hint="e.g. idle_seconds=300")
        if every_episodes is not None and every_episodes < 1:
            raise ConfigError(f"every_episodes must be at least 1, got {every_episodes}", hint="e.g. every_episodes=50")
        self.memory = memory
        self.idle_seconds = idle_seconds
        self.every_episodes = every_episodes
        self.model = model
        self.on_report = on_report
        self.on_error = on_error
        self.dreams = 0
        self.last_reports: list[DreamReport] = []
        self.last_error: BaseException | None = None
        self._condition = threading.Condition()
        self._pending = 0
        self._last_activity = time.monotonic()
        self._wanted = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> DreamScheduler:
        if self.running:
            return self
        self._stopping = False
        self.memory.add_listener(self.notify)
        self._thread = threading.Thread(target=self._loop, name="langdream-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread; a dream in progress finishes first (or resumes at the next start)."""
        self.memory.remove_listener(self.notify)
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._thread = None

    def __enter__(self) -> DreamScheduler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def notify(self, episode: Episode | None = None) -> None:
        """Called after each recorded episode. Never blocks beyond a lock held for a few instructions."""
        with self._condition:
            self._pending += 1
            self._last_activity = time.monotonic()
            # Wake the thread so it re-times its idle deadline (or dreams, at the count).
            self._condition.notify_all()

    def dream_now(self) -> None:
        """Ask for a dream as soon as the thread is free."""
        with self._condition:
            self._wanted = True
            self._condition.notify_all()

    # -- the thread --------------------------------------------------------------------------

    def _due(self, now: float) -> tuple[bool, float | None]:
        """Whether to dream now, and else how long to wait before looking again."""
        if self._wanted:
            return True, None
        if self.every_episodes is not None and self._pending >= self.every_episodes:
            return True, None
        if self.idle_seconds is not None and self._pending > 0:
            remaining = self._last_activity + self.idle_seconds - now
            return remaining <= 0, max(remaining, 0.0)
        return False, None

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._stopping:
                    due, wait = self._due(time.monotonic())
                    if due:
                        break
                    self._condition.wait(wait)
                if self._stopping:
                    return
                self._pending = 0
                self._wanted = False
            self._dream()

    def _dream(self) -> None:
        try:
            reports = self.memory.dream(model=self.model)
            parked = [r for r in reports if r.parked]
            if parked:
                raise ReflectionError(
                    "; ".join(r.summary() for r in parked),
                    hint="the parked jobs keep what was reflected; the next dream resumes them (see `langdream jobs`)",
                )
        except Exception as exc:  # a failed dream is journaled and retried; keep the thread alive
            self.last_error = exc
            logger.error("background dream failed: %s", exc)
            if self.on_error:
                self.on_error(exc)
            return
        self.dreams += 1
        self.last_reports = reports
        for report in reports:
            logger.info("background dream: %s", report.summary())
        if self.on_report:
            self.on_report(reports)
