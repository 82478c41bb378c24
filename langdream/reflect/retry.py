"""Retrying a reflection: which class an error belongs to, and how long to wait before the next try.

Providers fail in a few recognisable ways. Each class has its own attempt budget
(``Settings.reflect_retry_attempts``): a rate limit is worth waiting out, a refusal is not worth
asking about many times, and an authentication error or a bug is not retried at all. The
classes are told apart by the exception's HTTP status and type names, so no provider SDK is
imported here.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from langdream.config import (
    DEFAULT_REFLECT_RETRY_ATTEMPTS,
    DEFAULT_REFLECT_RETRY_BASE_SECONDS,
    DEFAULT_REFLECT_RETRY_MAX_SECONDS,
)
from langdream.errors import ReflectionError

RATE_LIMIT = "rate_limit"
TIMEOUT = "timeout"
CONNECTION = "connection"
SERVER = "server"
INVALID_OUTPUT = "invalid_output"
REFUSAL = "refusal"
FATAL = "fatal"  # not retried: authentication, a bad request, a bug


class InvalidOutputError(ReflectionError):
    """The model answered, but not in the reflection schema (malformed JSON, a missing field)."""


class RefusalError(ReflectionError):
    """The model declined to answer."""


def _status(exc: BaseException) -> int | None:
    """The HTTP status an SDK error carries: ``status_code`` / ``status`` (on it or its
    ``response``), a gRPC-style ``code`` (google-api-core), or botocore's response metadata."""
    response = getattr(exc, "response", None)
    for holder in (exc, response):
        for name in ("status_code", "status", "code"):
            status = getattr(holder, name, None)
            if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
                return status
    if isinstance(response, Mapping):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    return None


# httpx's transport errors (ConnectError, ReadError, WriteError, RemoteProtocolError derive from
# these) and the SDKs' own connection errors.
_CONNECTION_NAMES = ("Connection", "Connect", "TransportError", "NetworkError", "ProtocolError", "ReadError")


def _names(exc: BaseException) -> str:
    return " ".join(cls.__name__ for cls in type(exc).__mro__)


def classify(exc: BaseException) -> str:
    """The retry class of a reflection error (one of the keys of ``reflect_retry_attempts``, or ``"fatal"``)."""
    if isinstance(exc, RefusalError):
        return REFUSAL
    if isinstance(exc, InvalidOutputError):
        return INVALID_OUTPUT
    status, names = _status(exc), _names(exc)
    if status == 429 or any(word in names for word in ("RateLimit", "Throttl", "ResourceExhausted")):
        return RATE_LIMIT
    if isinstance(exc, TimeoutError) or "Timeout" in names:
        return TIMEOUT
    if isinstance(exc, ConnectionError) or any(word in names for word in _CONNECTION_NAMES):
        return CONNECTION
    server_names = ("InternalServerError", "Overloaded", "ServiceUnavailable")
    if (status is not None and 500 <= status < 600) or any(word in names for word in server_names):
        return SERVER
    return FATAL


def retry_after(exc: BaseException) -> float | None:
    """Seconds a rate-limited provider asked to wait (a ``Retry-After`` header or attribute)."""
    value = getattr(exc, "retry_after", None)
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if value is None and isinstance(headers, Mapping):
        value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class RetryPolicy:
    """Attempts per error class and the backoff between them."""

    attempts: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_REFLECT_RETRY_ATTEMPTS))
    base_seconds: float = DEFAULT_REFLECT_RETRY_BASE_SECONDS
    max_seconds: float = DEFAULT_REFLECT_RETRY_MAX_SECONDS

    def __post_init__(self) -> None:
        # A class left out keeps its default budget rather than losing its retries.
        self.attempts = {**DEFAULT_REFLECT_RETRY_ATTEMPTS, **self.attempts}

    def tracker(self) -> RetryTracker:
        return RetryTracker(self)


@dataclass
class RetryTracker:
    """The retries of one reflection: call ``after(error)`` on each failure; it returns the seconds to
    wait before trying again, or raises ``ReflectionError`` once that class's attempts are spent."""

    policy: RetryPolicy
    failures: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    def after(self, exc: Exception) -> float:
        kind = classify(exc)
        count = self.failures[kind] = self.failures.get(kind, 0) + 1
        allowed = self.policy.attempts.get(kind, 1)
        if count >= allowed:
            tried = ", ".join(f"{n} {k}" for k, n in sorted(self.failures.items()))
            error = ReflectionError(
                f"reflection failed: {type(exc).__name__}: {exc} (errors so far: {tried}; "
                f"{'not retried' if kind == FATAL else f'{allowed} attempts allowed for {kind}'})",
                hint="the dream job is parked and the next dream resumes it; "
                "check the model's credentials, quota and availability (`langdream jobs` shows the reason)",
            )
            error.error_class = kind  # type: ignore[attr-defined]
            raise error from exc
        if kind in (INVALID_OUTPUT, REFUSAL):
            return 0.0  # asking again is the remedy, not waiting
        # Exponential backoff with "equal jitter": at least half of the step, so retries of many
        # clusters spread out without any of them retrying at once.
        step = min(self.policy.max_seconds, self.policy.base_seconds * 2 ** (count - 1))
        delay = step / 2 + self.rng.uniform(0, step / 2)
        asked = retry_after(exc) if kind == RATE_LIMIT else None
        return min(self.policy.max_seconds, max(delay, asked or 0.0))
