"""langdream: a memory for LangGraph agents that improves while they sleep.

Record each run as an episode, dream over the episodes while the agent is idle to write
generalized insights with provenance, and recall the relevant insights at the start of later
runs::

    from langdream import DreamMemory, dreaming

    memory = DreamMemory()                      # ./.langdream, or LANGDREAM_HOME
    graph = dreaming(builder.compile(), memory=memory, judge=lambda state: ...)
    graph.invoke({"messages": [("user", "...")]})
    memory.dream()                              # or DreamScheduler / `langdream dream`
"""

from langdream._version import __version__
from langdream.config import Settings
from langdream.embed import Embedder
from langdream.errors import (
    ConfigError,
    DataHomeError,
    DataHomeLockedError,
    DeviceError,
    EmbeddingError,
    GraphShapeError,
    IndexLockedError,
    IngestError,
    LangDreamError,
    LifecycleError,
    ModelError,
    NamespaceError,
    NotFoundError,
    RecordingError,
    ReflectionError,
    UnknownNamespaceError,
    UsageError,
)
from langdream.graph import DreamingOptions, add_dreaming, dreaming
from langdream.ingest import IngestReport, LineError
from langdream.memory import DreamMemory
from langdream.namespace import Namespace, parse_namespace
from langdream.recall import Recaller
from langdream.reflect import ClusterView, Operation, Reflection, Reflector
from langdream.reflect.extractive import ExtractiveReflector
from langdream.reflect.llm import LLMReflector
from langdream.schedule import DreamScheduler
from langdream.tokens import count_tokens
from langdream.types import (
    DreamJob,
    DreamReport,
    Episode,
    EvidenceEpisode,
    Explanation,
    ForgetReport,
    Insight,
    InsightAction,
    InsightEffect,
    InsightHold,
    InsightOrigin,
    InsightStatus,
    InsightVersion,
    Message,
    NamespaceStats,
    Outcome,
    Recall,
    RecalledInsight,
    RollbackReport,
    ToolCall,
)

__all__ = [
    "ClusterView",
    "ConfigError",
    "DataHomeError",
    "DataHomeLockedError",
    "DeviceError",
    "DreamJob",
    "DreamMemory",
    "DreamReport",
    "DreamScheduler",
    "DreamingMiddleware",
    "DreamingOptions",
    "Embedder",
    "EmbeddingError",
    "Episode",
    "EvidenceEpisode",
    "Explanation",
    "ExtractiveReflector",
    "ForgetReport",
    "GraphShapeError",
    "IndexLockedError",
    "IngestError",
    "IngestReport",
    "Insight",
    "InsightAction",
    "InsightEffect",
    "InsightHold",
    "InsightOrigin",
    "InsightStatus",
    "InsightVersion",
    "LLMReflector",
    "LangDreamError",
    "LifecycleError",
    "LineError",
    "Message",
    "ModelError",
    "Namespace",
    "NamespaceError",
    "NamespaceStats",
    "NotFoundError",
    "Operation",
    "Outcome",
    "Recall",
    "RecalledInsight",
    "Recaller",
    "RecordingError",
    "Reflection",
    "ReflectionError",
    "Reflector",
    "RollbackReport",
    "Settings",
    "ToolCall",
    "UnknownNamespaceError",
    "UsageError",
    "__version__",
    "add_dreaming",
    "count_tokens",
    "dreaming",
    "parse_namespace",
]


def __getattr__(name: str) -> object:
    # DreamingMiddleware needs the optional `langchain` package: imported on first use only.
    if name == "DreamingMiddleware":
        from langdream.middleware import DreamingMiddleware

        return DreamingMiddleware
    raise AttributeError(f"module 'langdream' has no attribute {name!r}")
