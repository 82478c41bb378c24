"""The idle-time scheduler: count and idle triggers, never blocking a run, clean shutdown."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from langdream import ConfigError, DreamScheduler, Episode, ExtractiveReflector

WAIT = 60.0  # generous bound for background work on a loaded 2-core machine; not a speed target


def wait_until(condition, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def episode(success: bool, task: str = "What is the capital of Peru?") -> Episode:
    run = str(uuid.uuid4())
    return Episode(id=run, run_id=run, thread_id=run, namespace=("app",), task=task, outcome={"success": success})


class GatedReflector(ExtractiveReflector):
    """Blocks inside reflection until released, to hold a dream in progress."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def reflect(self, view):
        self.entered.set()
        assert self.release.wait(WAIT)
        return super().reflect(view)


def test_dreams_after_every_k_episodes(memory):
    reports = []
    with DreamScheduler(memory, idle_seconds=None, every_episodes=4, on_report=reports.append) as scheduler:
        for success in (True, False, True):
            memory.record(episode(success))
        time.sleep(0.2)
        assert scheduler.dreams == 0  # three of four: not yet
        memory.record(episode(False))
        assert wait_until(lambda: scheduler.dreams == 1)
    assert reports and reports[0][0].episodes == 4
    assert memory.ledger.count_episodes(pending=True) == 0


def test_dreams_after_the_agent_goes_idle(memory):
    with DreamScheduler(memory, idle_seconds=0.3, every_episodes=None) as scheduler:
        memory.record(episode(True))
        memory.record(episode(False))
        memory.record(episode(True))
        assert wait_until(lambda: scheduler.dreams == 1)
        assert scheduler.last_reports[0].namespace == ("app",)


def test_recording_never_waits_for_a_dream_in_progress(make_memory):
    reflector = GatedReflector()
    memory = make_memory(reflector=reflector)
    scheduler = DreamScheduler(memory, idle_seconds=None, every_episodes=3).start()
    for success in (True, False, True):
        memory.record(episode(success))
    assert reflector.entered.wait(WAIT), "the background dream should be reflecting now"

    recorder = threading.Thread(target=lambda: [memory.record(episode(True)) for _ in range(20)])
    recorder.start()
    recorder.join(WAIT)
    assert not recorder.is_alive(), "recording blocked behind the dream"
    assert memory.ledger.count_episodes() == 23

    stopper = threading.Thread(target=scheduler.stop)
    stopper.start()
    time.sleep(0.2)
    assert stopper.is_alive(), "stop waits for the dream in progress to finish"
    reflector.release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive() and not scheduler.running
    assert scheduler.dreams == 1
    for _ in range(5):
        memory.record(episode(True))
    time.sleep(0.3)
    assert scheduler.dreams == 1  # stopped: nothing runs in the background any more
    with scheduler:  # a restart picks up what was recorded meanwhile
        assert wait_until(lambda: scheduler.dreams == 2)
    assert memory.ledger.count_episodes(pending=True) < 25


def test_a_failed_dream_is_reported_and_the_next_one_resumes(make_memory):
    class FailsOnce(ExtractiveReflector):
        failed = False

        def reflect(self, view):
            if not self.failed:
                self.failed = True
                raise RuntimeError("provider down")
            return super().reflect(view)

    errors: list[BaseException] = []
    memory = make_memory(reflector=FailsOnce())
    with DreamScheduler(memory, idle_seconds=None, every_episodes=3, on_error=errors.append) as scheduler:
        for success in (True, False, True):
            memory.record(episode(success))
        assert wait_until(lambda: bool(errors))
        assert "provider down" in str(errors[0]) and scheduler.running
        assert memory.ledger.open_jobs(("app",))  # journaled, not "nothing learned"
        scheduler.dream_now()
        assert wait_until(lambda: scheduler.dreams == 1)
    assert scheduler.last_reports[0].resumed


def test_a_scheduler_needs_a_valid_trigger(memory):
    with pytest.raises(ConfigError):
        DreamScheduler(memory, idle_seconds=None, every_episodes=None)
    with pytest.raises(ConfigError):
        DreamScheduler(memory, idle_seconds=-1)
    with pytest.raises(ConfigError):
        DreamScheduler(memory, every_episodes=0)
