"""Shared fixtures: one embedding model per session, a fresh data home per test, real data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from langdream import DreamMemory, Embedder, Episode
from langdream.config import CHROMA_URL_ENV, LEDGER_URL_ENV
from langdream.demo import sample_lines
from tests.chroma_server import chroma_server, chroma_url  # noqa: F401 - a real chroma server, for every module
from tests.pg_server import postgres_server, postgres_url  # noqa: F401 - a real PostgreSQL server, for every module

# A developer's shell may point langdream at servers; each test chooses its backends itself.
for _name in (LEDGER_URL_ENV, CHROMA_URL_ENV):
    os.environ.pop(_name, None)

# The project's shared real data (../shared/data from the repository root); tests that need it
# skip where it is absent. LANGDREAM_SHARED_DATA points elsewhere.
SHARED_DATA = Path(os.environ.get("LANGDREAM_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from langdream._device import cuda_available

    skip_gpu = None if cuda_available() else pytest.mark.skip(reason="needs a CUDA GPU; torch sees none on this machine")
    skip_soak = None if os.environ.get("LANGDREAM_SOAK") == "1" else pytest.mark.skip(reason="a long soak: set LANGDREAM_SOAK=1")
    for item in items:
        if skip_gpu is not None and "gpu" in item.keywords:
            item.add_marker(skip_gpu)
        if skip_soak is not None and "soak" in item.keywords:
            item.add_marker(skip_soak)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The bundled all-MiniLM-L6-v2, loaded once for the whole session (a few seconds)."""
    model = Embedder()
    model.embed(["warm up"])
    return model


@pytest.fixture
def make_memory(tmp_path: Path, embedder: Embedder) -> Iterator[Callable[..., DreamMemory]]:
    """Build DreamMemory objects on fresh data homes under tmp_path, closed after the test."""
    opened: list[DreamMemory] = []

    def make(home: Path | str | None = None, **kwargs) -> DreamMemory:
        memory = DreamMemory(home or tmp_path / f"home{len(opened)}", embedder=kwargs.pop("embedder", embedder), **kwargs)
        opened.append(memory)
        return memory

    yield make
    for memory in opened:
        memory.close()


@pytest.fixture
def memory(make_memory: Callable[..., DreamMemory]) -> DreamMemory:
    return make_memory()


@pytest.fixture(scope="session")
def hotpotqa_records() -> list[dict]:
    """The shipped real HotpotQA ReAct episodes (994 runs over 100 questions) as JSON objects."""
    return [json.loads(line) for line in sample_lines()]


@pytest.fixture(scope="session")
def hotpotqa_episodes(hotpotqa_records: list[dict]) -> list[Episode]:
    """The same runs as ``Episode`` objects (shared by the session: do not change them)."""
    return [Episode.model_validate(r) for r in hotpotqa_records]


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path
