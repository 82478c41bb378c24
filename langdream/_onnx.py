"""The ONNX Runtime embedding backend.

sentence-transformers' own ``backend="onnx"`` needs optimum-onnx, which pins transformers below
4.58 and so cannot be installed beside sentence-transformers 6. This backend does the same thing
with public torch and onnxruntime APIs: the sentence-transformers model (transformer, mean
pooling, normalisation) is exported once to an ONNX graph that includes the pooling, optionally
quantised to int8 (dynamic, weights only), and kept in the cache directory keyed by the model's
files. Loading it afterwards needs neither torch nor a network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from langdream.errors import EmbeddingError

logger = logging.getLogger("langdream.embed")

_EXPORT_VERSION = "2"  # bump when the exported graph changes
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EXPORT_LOCK = threading.Lock()


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401  # quantisation and export need it
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _fingerprint(model_dir: Path) -> str:
    """A key for the model's files: names, sizes and modification times, not their bytes."""
    digest = hashlib.sha256(f"{_EXPORT_VERSION}:{model_dir.resolve()}".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(model_dir)}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:24]


def _mean_pooling_model(model):
    """The model's transformer wrapped so its output is the normalised mean-pooled sentence vector."""
    import torch

    modules = list(model)
    transformer, pooling = modules[0], modules[1] if len(modules) > 1 else None
    mode = getattr(pooling, "pooling_mode", None)
    if mode != "mean" or not hasattr(transformer, "auto_model"):
        raise EmbeddingError(
            f"the onnx backend supports transformer + mean-pooling models; this one pools with {mode!r}",
            hint="use embedding_backend='torch' for this model",
        )

    class Pooled(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(summed, dim=-1)

    return Pooled(transformer.auto_model.eval())


class _DropRecordsBelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter's tracer warnings and the quantiser's advice (logged on the root logger) are
    about the export, not the user's program; they are kept out of the user's output."""
    quiet = _DropRecordsBelowError()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(quiet)


def _export(model, model_path: str, target: Path) -> None:
    """Export ``model`` (a CPU sentence-transformers model loaded from ``model_path``) into ``target``."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    wrapped = _mean_pooling_model(model)
    sample = model.tokenizer(
        ["an example sentence", "and another, longer example sentence"], padding=True, return_tensors="pt"
    )
    if "token_type_ids" not in sample:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    fp32 = target / "model.onnx"
    axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS}
    with torch.no_grad():
        torch.onnx.export(
            wrapped,
            tuple(sample[name] for name in _INPUTS),
            str(fp32),
            input_names=list(_INPUTS),
            output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    # Per-channel scales: per-tensor ones lost up to 0.25 cosine on short sentences, same size and speed.
    quantize_dynamic(str(fp32), str(target / "model-int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    model.tokenizer.backend_tokenizer.save(str(target / "tokenizer.json"))
    dimension = (
        model.get_embedding_dimension()
        if hasattr(model, "get_embedding_dimension")
        else (model.get_sentence_embedding_dimension())
    )
    meta = {"max_seq_length": int(model.max_seq_length), "dimension": int(dimension), "source": model_path}
    (target / "langdream.json").write_text(json.dumps(meta))


def exported_model(model_path: str, cache_dir: Path, load: Callable[[], Any]) -> Path:
    """The directory holding the ONNX export of ``model_path``, exporting it on first use
    (``load`` returns the model as a CPU sentence-transformers model).

    Several processes may race to export; each writes into its own temporary directory and the
    first rename wins, so no process ever reads a half-written file.
    """
    source = Path(model_path)
    if not source.is_dir():
        raise EmbeddingError(
            f"the onnx backend needs a local model directory, and {model_path!r} is not one",
            hint="give embedding_model as a local sentence-transformers directory, or use embedding_backend='torch'",
        )
    target = cache_dir / "onnx" / _fingerprint(source)
    if (target / "langdream.json").exists():
        return target
    with _EXPORT_LOCK:
        if (target / "langdream.json").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
        try:
            logger.info("exporting %s to ONNX in %s (once)", model_path, target)
            with _quiet_export():
                _export(load(), model_path, scratch)
            scratch.chmod(0o755)  # mkdtemp makes it owner-only; a shared cache must be readable
            try:
                os.rename(scratch, target)
            except OSError:
                if not (target / "langdream.json").exists():
                    raise
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(
                f"could not export {model_path!r} to ONNX: {type(exc).__name__}: {exc}",
                hint="use embedding_backend='torch', or check that onnx and onnxruntime are installed",
            ) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


class OnnxEncoder:
    """Runs an exported model with ONNX Runtime on the CPU; its vectors are L2-normalised float32."""

    device = "cpu"

    def __init__(self, export_dir: Path, *, int8: bool) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((export_dir / "langdream.json").read_text())
        self.dimension = int(meta["dimension"])
        self.max_tokens = int(meta["max_seq_length"])
        self._tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle worker threads sleep instead of spinning: the agent's own work shares these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model_file = export_dir / ("model-int8.onnx" if int8 else "model.onnx")
        self._session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(texts))
        # Sorting by length keeps padding small, as sentence-transformers does.
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(encodings[r].ids) for r in rows)
            feeds = {name: np.zeros((len(rows), width), dtype=np.int64) for name in _INPUTS}
            for i, r in enumerate(rows):
                e = encodings[r]
                n = len(e.ids)
                feeds["input_ids"][i, :n] = e.ids
                feeds["attention_mask"][i, :n] = e.attention_mask
                feeds["token_type_ids"][i, :n] = e.type_ids
            out[rows] = self._session.run(None, feeds)[0]
        return out
