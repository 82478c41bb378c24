"""The embedding backends: the ONNX export (fp32 and int8) against torch, its cache, and the choice
of backend per call (``Embedder.backend_for``).

The export takes a few seconds, so one export into a temporary cache directory is shared by the
module; the user's own cache (``$LANGDREAM_CACHE`` or ~/.cache/langdream) is never touched here.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import langdream._device as device_module
import langdream._onnx as onnx_module
import langdream.embed as embed_module
from langdream.config import DEFAULT_GPU_MIN_TEXTS, DEVICE_ENV
from langdream.embed import BACKENDS, BUNDLED_MODEL_ID, INT8_SUFFIX, Embedder, bundled_model_path
from langdream.errors import ConfigError, EmbeddingError

DIM = 384

# Real sentences of the kinds langdream embeds: agent tasks (HotpotQA questions), tool output,
# assistant thoughts, chat-bot intents; plus edge cases (one word, emoji, non-English, a text
# longer than the model's 256-token window, which both backends must truncate the same way).
SENTENCES = [
    "Which of Jonny Craig and Pete Doherty has been a member of more bands ?",
    (
        'The creator of "Wallace and Gromit" also created what animation comedy that matched animated zoo '
        "animals with a soundtrack of people talking about their homes?"
    ),
    "Jaclyn Stapp is married to the former frontman of a band that disbanded in what year?",
    (
        "I need to search Jonny Craig and Pete Doherty, find the number of bands they have been a member of, "
        "then find which one has been a member of more bands."
    ),
    (
        "Jonathan Monroe Craig (born March 26, 1986) is a Canadian-American singer and songwriter, best known "
        "as the former lead vocalist of bands Dance Gavin Dance, Emarosa, Rain City Drive."
    ),
    "Could not find [Pete Doherty bands]. Similar: ['The Libertines', 'Babyshambles'].",
    "How do I reset my account password?",
    "I forgot my password and need to change it.",
    "What is the exchange rate for my card payment in euros?",
    "My card was declined at the supermarket yesterday.",
    "book a table for two at 7pm tonight",
    "what's the weather going to be like in Boston tomorrow",
    "Transfer $100 to my savings account",
    "Always verify the entity with a second search before answering.",
    "The recipe needs two cups of flour and an egg.",
    "Paris is the capital of France.",
    "x",
    "🙂 emoji only 🙂",
    "Wie spät ist es in Tokio?",
    " ".join(["The agent searched the page, looked up the keyword and found nothing useful."] * 40),
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _export_dirs(cache: Path) -> list[Path]:
    """The finished exports under ``cache`` (a directory with langdream.json)."""
    root = cache / "onnx"
    return sorted(p for p in root.iterdir() if (p / "langdream.json").exists()) if root.is_dir() else []


def _scratch_dirs(cache: Path) -> list[Path]:
    root = cache / "onnx"
    return sorted(p for p in root.iterdir() if p.name.startswith(".export-")) if root.is_dir() else []


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory) -> Path:
    """A cache directory holding one export of the bundled model, made by the first ONNX embedder."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    Embedder(backend="onnx", device="cpu", cache_dir=cache).embed(["warm up"])
    return cache


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return Embedder(backend="torch", device="cpu").embed(SENTENCES)


@pytest.fixture
def no_env_device(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)


@pytest.fixture
def fake_cuda(monkeypatch, no_env_device):
    """torch is told there is a GPU; nothing may actually be loaded onto it."""
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)


@pytest.fixture
def no_cuda(monkeypatch, no_env_device):
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)


# -- ONNX fp32 and int8 against torch --------------------------------------------------------------


def test_the_export_holds_both_graphs_tokenizer_and_metadata(onnx_cache):
    (export,) = _export_dirs(onnx_cache)
    assert {p.name for p in export.iterdir()} >= {"model.onnx", "model-int8.onnx", "tokenizer.json", "langdream.json"}
    meta = json.loads((export / "langdream.json").read_text())
    assert meta["dimension"] == DIM
    assert meta["max_seq_length"] == 256
    assert Path(meta["source"]).resolve() == Path(bundled_model_path()).resolve()
    # int8 weights take about a quarter of the room of fp32 ones.
    assert (export / "model-int8.onnx").stat().st_size < 0.4 * (export / "model.onnx").stat().st_size
    assert not _scratch_dirs(onnx_cache)


def test_onnx_fp32_matches_torch(onnx_cache, torch_vectors):
    embedder = Embedder(backend="onnx", device="cpu", cache_dir=onnx_cache)
    vectors = embedder.embed(SENTENCES)
    assert embedder.backend_for(len(SENTENCES)) == "onnx"
    assert embedder.device == "cpu"
    assert embedder.dimension == DIM
    assert embedder.model_id == BUNDLED_MODEL_ID  # the same model: vectors are interchangeable
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(SENTENCES), DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = _cosines(vectors, torch_vectors)
    assert cosines.min() >= 0.9999, cosines
    # Row i is sentence i: each vector is nearest to its own torch counterpart.
    assert list((vectors @ torch_vectors.T).argmax(axis=1)) == list(range(len(SENTENCES)))


def test_onnx_batches_and_order_do_not_change_vectors(onnx_cache):
    """Length-sorted batches with padding give each text the vector it gets alone."""
    embedder = Embedder(backend="onnx", device="cpu", cache_dir=onnx_cache, batch_size=3)
    together = embedder.embed(SENTENCES)
    alone = np.stack([embedder.embed_one(text) for text in SENTENCES])
    assert np.allclose(together, alone, atol=1e-5)
    reversed_ = embedder.embed(SENTENCES[::-1])[::-1]
    assert np.allclose(together, reversed_, atol=1e-5)


def test_onnx_int8_is_a_distinct_model_close_to_torch(onnx_cache, torch_vectors):
    int8 = Embedder(backend="onnx-int8", device="cpu", cache_dir=onnx_cache)
    fp32 = Embedder(backend="onnx", device="cpu", cache_dir=onnx_cache)
    assert int8.model_id == BUNDLED_MODEL_ID + INT8_SUFFIX
    assert int8.model_id.endswith("+int8")
    assert int8.backend_for(1) == int8.backend_for(len(SENTENCES)) == "onnx-int8"
    vectors = int8.embed(SENTENCES)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(SENTENCES), DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = _cosines(vectors, torch_vectors)
    # Per-channel weight scales; per-tensor ones (quantize_dynamic's default) gave mean ~0.96 and
    # lowest ~0.91 here (the one-letter text and the 256-token one).
    assert cosines.mean() >= 0.95, cosines
    assert cosines.min() >= 0.90, cosines
    # It really runs the quantised graph: its vectors are not the fp32 ones.
    assert np.abs(vectors - fp32.embed(SENTENCES)).max() > 1e-3
    # And it kept the export: no second one was made for int8.
    assert len(_export_dirs(onnx_cache)) == 1


def test_onnx_int8_every_text_within_cosine_095_of_torch(onnx_cache, torch_vectors):
    vectors = Embedder(backend="onnx-int8", device="cpu", cache_dir=onnx_cache).embed(SENTENCES)
    cosines = _cosines(vectors, torch_vectors)
    assert cosines.min() >= 0.95, dict(zip([s[:30] for s in SENTENCES], cosines.round(4).tolist()))


def test_int8_keeps_paraphrase_ranking(onnx_cache):
    int8 = Embedder(backend="onnx-int8", device="cpu", cache_dir=onnx_cache)
    pairs = [
        ("What's the weather like tomorrow?", "Will it rain tomorrow?"),
        ("Transfer $100 to my savings account", "Move a hundred dollars into savings"),
        ("Play some jazz music", "Put on a jazz playlist"),
        ("Who wrote Pride and Prejudice?", "Author of the novel Pride and Prejudice"),
    ]
    left = int8.embed([a for a, _ in pairs])
    right = int8.embed([b for _, b in pairs])
    assert list((left @ right.T).argmax(axis=1)) == list(range(len(pairs)))


# -- the export cache ------------------------------------------------------------------------------


def test_export_is_cached_and_reused(onnx_cache, monkeypatch):
    first = Embedder(backend="onnx", device="cpu", cache_dir=onnx_cache).embed(SENTENCES[:5])
    exports_before = _export_dirs(onnx_cache)

    def no_second_export(*args, **kwargs):
        raise AssertionError("the model was exported again although the cache holds it")

    monkeypatch.setattr(onnx_module, "_export", no_second_export)
    for backend in ("onnx", "onnx-int8"):
        again = Embedder(backend=backend, device="cpu", cache_dir=onnx_cache)
        vectors = again.embed(SENTENCES[:5])
        assert vectors.shape == (5, DIM)
        if backend == "onnx":
            assert np.array_equal(vectors, first)
    assert _export_dirs(onnx_cache) == exports_before


def test_cache_dir_defaults_to_langdream_cache_env(onnx_cache, monkeypatch, tmp_path):
    """Without cache_dir the export is looked up under $LANGDREAM_CACHE (here a copy of the shared one)."""
    cache = tmp_path / "env-cache"
    shutil.copytree(onnx_cache, cache)
    monkeypatch.setenv("LANGDREAM_CACHE", str(cache))
    monkeypatch.setattr(onnx_module, "_export", lambda *a, **k: pytest.fail("exported instead of using the cache"))
    vectors = Embedder(backend="onnx", device="cpu").embed(["hello there"])
    assert vectors.shape == (1, DIM)


def _run_in_threads(work: Callable[[int], np.ndarray], n: int = 2) -> dict[int, np.ndarray]:
    """``work(i)`` in ``n`` threads released together; their results, or the first error raised."""
    start = threading.Barrier(n)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait(timeout=60)
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"loader-{i}") for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    if errors:
        raise errors[0]
    return results


def test_two_threads_loading_at_once_export_once(tmp_path, monkeypatch):
    """Two embedders on one cache directory load in two threads at the same moment: the export is
    made once (it starts only when both threads are inside ``exported_model``), and both embed."""
    cache = tmp_path / "cache"
    real_export, real_exported_model = onnx_module._export, embed_module.exported_model
    inside: list[str] = []
    both_inside = threading.Event()
    exports: list[str] = []

    def entering(*args, **kwargs):
        inside.append(threading.current_thread().name)
        if len(inside) == 2:
            both_inside.set()
        return real_exported_model(*args, **kwargs)

    def counting_export(model, model_path, target):
        assert both_inside.wait(timeout=60), "the second thread never reached exported_model"
        exports.append(threading.current_thread().name)
        real_export(model, model_path, target)

    monkeypatch.setattr(embed_module, "exported_model", entering)
    monkeypatch.setattr(onnx_module, "_export", counting_export)
    embedders = [Embedder(backend="onnx", device="cpu", cache_dir=cache) for _ in range(2)]
    results = _run_in_threads(lambda i: embedders[i].embed(SENTENCES[:4]))
    assert sorted(inside) == ["loader-0", "loader-1"]
    assert len(exports) == 1, exports
    assert results[0].shape == (4, DIM)
    assert np.array_equal(results[0], results[1])
    assert len(_export_dirs(cache)) == 1
    assert not _scratch_dirs(cache)


def test_one_embedder_used_by_two_threads_loads_its_encoder_once(onnx_cache, monkeypatch):
    real_encoder = embed_module.OnnxEncoder
    made: list[str] = []

    def counting_encoder(*args, **kwargs):
        made.append(threading.current_thread().name)
        time.sleep(0.2)  # a slow load: the other thread arrives meanwhile
        return real_encoder(*args, **kwargs)

    monkeypatch.setattr(embed_module, "OnnxEncoder", counting_encoder)
    embedder = Embedder(backend="onnx", device="cpu", cache_dir=onnx_cache)
    results = _run_in_threads(lambda i: embedder.embed(SENTENCES[i : i + 3]))
    assert len(made) == 1, made
    assert results[0].shape == results[1].shape == (3, DIM)
    assert np.allclose(results[0][1:], results[1][:2], atol=1e-5)


def test_losing_an_export_race_to_another_process_uses_the_winners_export(onnx_cache, tmp_path, monkeypatch):
    """Another process renames its export into place first: this one's rename fails, and it uses
    the winner's files and removes its own scratch directory."""
    cache = tmp_path / "cache"
    source = Path(bundled_model_path())
    (winner,) = _export_dirs(onnx_cache)

    def export_while_another_process_wins(model, model_path, scratch):
        (scratch / "langdream.json").write_text("{}")  # this process's own (loser's) export
        shutil.copytree(winner, scratch.parent / winner.name)  # the other process finishes first

    monkeypatch.setattr(onnx_module, "_export", export_while_another_process_wins)
    target = onnx_module.exported_model(str(source), cache, lambda: None)
    assert target == cache / "onnx" / winner.name
    assert json.loads((target / "langdream.json").read_text())["dimension"] == DIM
    assert not _scratch_dirs(cache)
    vectors = Embedder(backend="onnx", device="cpu", cache_dir=cache).embed(SENTENCES[:3])
    assert vectors.shape == (3, DIM)


# -- models the ONNX backend cannot take -----------------------------------------------------------


@pytest.fixture(scope="module")
def cls_pooling_model(tmp_path_factory) -> Path:
    """A copy of the bundled model that pools with the [CLS] token instead of the mean."""
    path = tmp_path_factory.mktemp("cls-model") / "model"
    shutil.copytree(bundled_model_path(), path)
    pooling = path / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    pooling.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_non_mean_pooling_model_is_refused_with_a_hint(cls_pooling_model, tmp_path, backend):
    cache = tmp_path / "cache"
    embedder = Embedder(str(cls_pooling_model), backend=backend, device="cpu", cache_dir=cache)
    with pytest.raises(EmbeddingError) as info:
        embedder.embed(["hello"])
    assert "mean" in info.value.message
    assert "cls" in info.value.message
    assert "embedding_backend='torch'" in info.value.hint
    assert not embedder.loaded
    assert not _export_dirs(cache) and not _scratch_dirs(cache)


def test_auto_runs_a_model_onnx_cannot_with_torch(cls_pooling_model, tmp_path, caplog):
    """The default backend means "the best one that can run this model", so it never fails where
    torch would work: it says why in a warning and embeds with torch."""
    auto = Embedder(str(cls_pooling_model), device="cpu", cache_dir=tmp_path / "cache")
    with caplog.at_level("WARNING", logger="langdream.embed"):
        vectors = auto.embed(["hello", "world"])
    torch_vectors = Embedder(str(cls_pooling_model), backend="torch", device="cpu").embed(["hello", "world"])
    assert np.allclose(vectors, torch_vectors, atol=1e-5)
    assert "ONNX Runtime cannot run" in caplog.text
    auto.embed(["again"])  # the fallback is remembered: no second export attempt
    assert caplog.text.count("ONNX Runtime cannot run") == 1


def test_the_hint_for_a_non_mean_pooling_model_works(cls_pooling_model):
    """The torch backend the hint points to does embed that model."""
    vectors = Embedder(str(cls_pooling_model), backend="torch", device="cpu").embed(["hello", "world"])
    assert vectors.shape == (2, DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_a_model_name_that_is_not_a_directory_is_refused_with_a_hint(tmp_path, backend):
    cache = tmp_path / "cache"
    embedder = Embedder("sentence-transformers/all-mpnet-base-v2", backend=backend, device="cpu", cache_dir=cache)
    with pytest.raises(EmbeddingError) as info:
        embedder.embed(["hello"])
    assert "sentence-transformers/all-mpnet-base-v2" in info.value.message
    assert "directory" in info.value.message
    assert "embedding_backend='torch'" in info.value.hint
    assert not embedder.loaded
    assert not cache.exists()


def test_onnx_without_onnxruntime_is_an_error_and_auto_falls_back_to_torch(monkeypatch, no_cuda):
    monkeypatch.setattr(embed_module, "onnx_available", lambda: False)
    assert Embedder().backend_for(1) == "torch@cpu"
    embedder = Embedder(backend="onnx", device="cpu")
    with pytest.raises(EmbeddingError) as info:
        embedder.embed(["hello"])
    assert "onnxruntime" in info.value.message
    assert "pip install" in info.value.hint
    assert not embedder.loaded


# -- the backend each call gets ---------------------------------------------------------------------


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        Embedder(backend="tensorrt")
    assert "tensorrt" in info.value.message
    assert all(name in info.value.hint for name in BACKENDS)
    assert set(BACKENDS) == {"auto", "torch", "onnx", "onnx-int8"}


def test_backend_for_without_cuda(no_cuda):
    assert Embedder().backend_for(1) == "onnx"
    assert Embedder().backend_for(10_000) == "onnx"
    assert Embedder().backend_for(None) == "onnx"
    assert Embedder(backend="torch").backend_for(10_000) == "torch@cpu"
    assert Embedder(backend="onnx").backend_for(1) == "onnx"
    assert Embedder(backend="onnx-int8").backend_for(10_000) == "onnx-int8"


def test_backend_for_keeps_small_inputs_on_cpu_and_sends_bulk_to_cuda(fake_cuda):
    embedder = Embedder()
    assert embedder.backend_for(1) == "onnx"  # a recall query
    assert embedder.backend_for(DEFAULT_GPU_MIN_TEXTS - 1) == "onnx"
    assert embedder.backend_for(DEFAULT_GPU_MIN_TEXTS) == "torch@cuda"
    assert embedder.backend_for(1000) == "torch@cuda"  # a dream
    assert embedder.backend_for(None) == "torch@cuda"  # bulk of unknown size
    torch_only = Embedder(backend="torch")
    assert torch_only.backend_for(1) == "torch@cpu"
    assert torch_only.backend_for(1000) == "torch@cuda"
    # Asking for the CPU keeps even bulk work there.
    assert Embedder(device="cpu").backend_for(1000) == "onnx"
    assert Embedder(device="cpu", backend="torch").backend_for(1000) == "torch@cpu"
    # Choosing a backend loads nothing.
    assert not embedder.loaded and not torch_only.loaded


def test_onnx_backends_stay_on_onnx_even_with_cuda(fake_cuda):
    """Their vectors must not mix with torch's (int8 ones are recorded as another model)."""
    for backend in ("onnx", "onnx-int8"):
        embedder = Embedder(backend=backend)
        assert embedder.backend_for(1) == embedder.backend_for(1000) == embedder.backend_for(None) == backend
        assert not embedder.loaded


def test_auto_runs_a_model_that_is_not_a_local_directory_with_torch(no_cuda, tmp_path):
    """ONNX needs the model's files; a hub name (or a missing path) goes to torch under auto."""
    assert Embedder("sentence-transformers/all-mpnet-base-v2").backend_for(1) == "torch@cpu"
    assert Embedder(str(tmp_path / "missing")).backend_for(1000) == "torch@cpu"
    assert Embedder(bundled_model_path()).backend_for(1) == "onnx"


def test_explicit_cuda_device_sends_even_one_text_to_cuda(fake_cuda):
    assert Embedder(device="cuda").backend_for(1) == "torch@cuda"
    assert Embedder(device="cuda:1").backend_for(1) == "torch@cuda:1"


def test_duplicates_are_counted_once_when_choosing_the_device(onnx_cache, fake_cuda):
    """Sixty copies of three texts are three texts: they stay on the CPU (where the export is),
    and nothing tries to load onto the pretend GPU."""
    embedder = Embedder(cache_dir=onnx_cache)
    texts = ["book a flight", "cancel my order", "hi"] * 20
    assert len(texts) >= DEFAULT_GPU_MIN_TEXTS
    vectors = embedder.embed(texts)
    assert vectors.shape == (60, DIM)
    assert np.array_equal(vectors[0], vectors[3])
    assert embedder.backend_for(3) == "onnx"


# -- CUDA ------------------------------------------------------------------------------------------


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU")
def test_fp16_cuda_vectors_match_cpu_vectors(onnx_cache, torch_vectors, no_env_device):
    """Bulk embedding on CUDA in float16 against float32 on the CPU: cosine >= 0.999 per text.

    Tolerance: float16 keeps ~11 significant bits (relative rounding ~5e-4) and the six layers
    accumulate such errors, so fp16 sentence vectors typically sit at cosine ~0.9999 from fp32
    ones; 0.999 leaves a tenfold margin while still catching a wrong pooling, a missing
    normalisation or a dtype cast gone wrong (those fall far below 0.99). The same bound is what
    recall relies on: a query embedded on the CPU is compared with vectors stored from CUDA.
    """
    import torch

    embedder = Embedder(cache_dir=onnx_cache)  # auto: CUDA for bulk, ONNX on the CPU for a query
    bulk_texts = SENTENCES + [f"{text} (variant {i})" for i, text in enumerate(SENTENCES)]
    assert len(set(bulk_texts)) >= DEFAULT_GPU_MIN_TEXTS
    assert embedder.backend_for(len(bulk_texts)) == "torch@cuda"
    on_gpu = embedder.embed(bulk_texts)[: len(SENTENCES)]
    encoder = embedder._encoder(len(bulk_texts))
    assert encoder.device.startswith("cuda")
    assert next(encoder.model.parameters()).dtype == torch.float16
    assert on_gpu.dtype == np.float32
    assert np.allclose(np.linalg.norm(on_gpu, axis=1), 1.0, atol=1e-3)
    cosines = _cosines(on_gpu, torch_vectors)
    assert cosines.min() >= 0.999, cosines
    # A one-text query on the CPU (ONNX) lands next to the same text's CUDA vector.
    query = embedder.embed([SENTENCES[0]])[0]
    assert embedder.backend_for(1) == "onnx"
    assert float(query @ on_gpu[0]) >= 0.999


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU")
def test_cuda_float32_option_keeps_full_precision(torch_vectors, no_env_device):
    import torch

    embedder = Embedder(device="cuda", backend="torch", gpu_dtype="float32")
    vectors = embedder.embed(SENTENCES)
    assert next(embedder._encoder(len(SENTENCES)).model.parameters()).dtype == torch.float32
    assert _cosines(vectors, torch_vectors).min() >= 0.9999
