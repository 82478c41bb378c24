"""DreamMemory as a whole: saved settings, the embedding model a data home was built with."""

from __future__ import annotations

import pytest

from langdream import ConfigError, Embedder, EmbeddingError, Settings
from langdream.embed import bundled_model_path
from langdream.memory import SETTINGS_FILE
from tests.conftest import write_jsonl


def test_saved_settings_are_the_base_of_every_later_opening(make_memory, tmp_path):
    home = tmp_path / "home"
    first = make_memory(home, min_support=5, recall_k=2)
    path = first.save_settings()
    assert path == home / SETTINGS_FILE

    again = make_memory(home)  # what the CLI and a cron job do
    assert again.settings.min_support == 5 and again.settings.recall_k == 2
    overridden = make_memory(home, recall_k=4)
    assert overridden.settings.min_support == 5 and overridden.settings.recall_k == 4
    explicit = make_memory(home, settings=Settings())
    assert explicit.settings.min_support == Settings().min_support


def test_a_broken_settings_file_is_a_clear_error(make_memory, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / SETTINGS_FILE).write_text('{"recall_k": 0}')
    with pytest.raises(ConfigError) as caught:
        make_memory(home)
    assert SETTINGS_FILE in caught.value.message and "delete the file" in caught.value.hint


def test_device_auto_means_auto():
    assert Settings(device="auto").device is None
    with pytest.raises(ValueError):
        Settings(device="gpu")


def test_a_data_home_refuses_a_second_embedding_model_until_reindexed(make_memory, embedder, hotpotqa_records, tmp_path):
    home = tmp_path / "home"
    questions = sorted({r["metadata"]["question_id"] for r in hotpotqa_records})[:8]
    runs = [r for r in hotpotqa_records if r["metadata"]["question_id"] in questions]
    original = make_memory(home)
    original.ingest(write_jsonl(tmp_path / "runs.jsonl", runs))
    original.dream("hotpotqa")
    task = runs[0]["task"]
    before = original.recall(task, "hotpotqa")
    assert before.insights

    # The same weights under another model id stand in for "another model".
    other = Embedder(bundled_model_path())
    switched = make_memory(home, embedder=other)
    with pytest.raises(EmbeddingError) as caught:
        switched.recall(task, "hotpotqa")
    assert "reindex" in caught.value.hint
    with pytest.raises(EmbeddingError):
        switched.dream("hotpotqa")

    counts = switched.reindex()
    assert counts["episodes"] == len(runs)
    assert counts["insights"] == len(switched.insights("hotpotqa"))
    after = switched.recall(task, "hotpotqa")
    assert after.insight_ids == before.insight_ids
    with pytest.raises(EmbeddingError):  # now the original model is the stranger
        make_memory(home, embedder=embedder).dream("hotpotqa")
