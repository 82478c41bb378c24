"""The exception tree of langdream, written down in one place.

Every error carries a ``hint`` that says how to fix the problem; ``str(error)`` shows both.

    LangDreamError
    ├── ConfigError
    │   ├── DeviceError
    │   └── ModelError
    ├── DataHomeError
    │   └── DataHomeLockedError
    │       └── IndexLockedError
    ├── NamespaceError
    │   └── UnknownNamespaceError
    ├── NotFoundError
    ├── LifecycleError
    ├── UsageError
    ├── IngestError
    ├── EmbeddingError
    ├── GraphShapeError
    ├── ReflectionError
    └── RecordingError
"""

from __future__ import annotations


class LangDreamError(Exception):
    """Root of every error langdream raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(LangDreamError):
    """A setting has a value langdream cannot use."""


class DeviceError(ConfigError):
    """The device that was asked for is not available."""


class ModelError(ConfigError):
    """A chat model could not be initialised from what was given."""


class DataHomeError(LangDreamError):
    """The data home cannot be created, read or written."""


class DataHomeLockedError(DataHomeError):
    """Another process holds the data home's ledger locked for longer than the busy timeout."""


class IndexLockedError(DataHomeLockedError):
    """Another process owns the data home's chroma index (only one process may write it)."""


class NamespaceError(LangDreamError):
    """A namespace is malformed or cannot be filled from the run's config."""


class UnknownNamespaceError(NamespaceError):
    """A command named a namespace the data home has never seen."""


class NotFoundError(LangDreamError):
    """An episode, insight or dream job id does not exist."""


class LifecycleError(LangDreamError):
    """An insight is not in a state that allows the change (approving a retired insight, say)."""


class UsageError(LangDreamError):
    """A call asks for something langdream refuses to guess at, such as a delete with no filter."""


class IngestError(LangDreamError):
    """An episode file cannot be read at all (bad lines are reported, not raised)."""


class EmbeddingError(LangDreamError):
    """The embedding model cannot be loaded or run."""


class GraphShapeError(LangDreamError):
    """A graph does not have the state langdream was asked to use."""


class ReflectionError(LangDreamError):
    """A reflector returned output that does not fit the reflection schema."""


class RecordingError(LangDreamError):
    """Recording an episode failed and the caller asked for errors to be raised."""
