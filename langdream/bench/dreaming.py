"""Shared by the dream benchmarks: episodes made from real requests, and a reflector of fixed latency."""

from __future__ import annotations

import numpy as np

from langdream.bench.common import BenchContext
from langdream.bench.data import clinc150
from langdream.testing import FakeReflectionModel
from langdream.types import Episode, Message, Outcome

# Each fake reflection takes this long, like a provider's answer (real ones take seconds).
LATENCY_SECONDS = 0.2


def request_texts(ctx: BenchContext, split: str) -> list[str]:
    """Real user requests: CLINC150 utterances, or the bundled HotpotQA questions without the data."""
    if ctx.data_dir is not None:
        return clinc150(ctx.data_dir, split).texts
    import json

    from langdream.demo import sample_lines

    tasks = list(dict.fromkeys(json.loads(line)["task"] for line in sample_lines()))
    half = len(tasks) // 2
    return tasks[:half] if split == "train" else tasks[half:]


def episodes_for(texts: list[str], namespace: tuple[str, ...], *, prefix: str, seed: int) -> list[Episode]:
    """One episode per text, with a seeded mix of outcomes over a few dozen threads."""
    rng = np.random.default_rng(seed)
    episodes = []
    for number, text in enumerate(texts):
        success = bool(rng.random() < 0.7)
        answer = "done: " + text[:40] if success else "I could not do that."
        episodes.append(
            Episode(
                id=f"{prefix}-{number:06d}",
                namespace=namespace,
                thread_id=f"thread-{rng.integers(0, 40)}",
                task=text,
                messages=[Message(role="user", content=text), Message(role="assistant", content=answer)],
                final_answer=answer,
                outcome=Outcome(success=success, score=1.0 if success else 0.0),
            )
        )
    return episodes


def fixed_latency_model(latency: float = LATENCY_SECONDS) -> FakeReflectionModel:
    return FakeReflectionModel(latency=latency, model="fake-fixed-latency")
