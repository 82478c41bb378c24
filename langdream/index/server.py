"""Chroma on a server: ``ChromaServerIndex`` talks to a ``chroma run`` server over HTTP.

It shares everything but the client with the local index (``ChromaCore``). The server is named
by a URL, ``http[s]://[user:password@ | :token@]host[:port][?prefix=&tenant=&database=]``, that
usually comes from ``LANGDREAM_CHROMA_URL``; it may hold a password, so it is shown masked.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from langdream.config import DEFAULT_CHROMA_PORT, DEFAULT_CHROMA_PREFIX
from langdream.errors import ConfigError, DataHomeError, LangDreamError
from langdream.index.chroma import KINDS, ChromaCore, guarded
from langdream.index.lock import ServerIndexLock

# A prefix becomes the start of chroma names, which allow [a-zA-Z0-9._-] and must start with a
# letter or digit; dots are left out because chroma refuses two in a row.
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_URL_OPTIONS = ("tenant", "database", "prefix")


def mask_url(url: str) -> str:
    """``url`` with its password (and any password, token or secret in its query) shown as ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = parts.username or ""
            host = netloc.rsplit("@", 1)[1]
            netloc = f"{user}:***@{host}"
        query = "&".join(
            f"{key}={'***' if any(s in key.lower() for s in ('password', 'token', 'secret')) else value}"
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        )
        return parts._replace(netloc=netloc, query=query).geturl()
    except ValueError:
        return "<a URL that cannot be parsed>"


@dataclass(frozen=True)
class ChromaServer:
    """Where a chroma server is and how to talk to it, as parsed from a URL by ``parse_chroma_url``."""

    host: str
    port: int
    ssl: bool
    tenant: str
    database: str
    prefix: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    url: str = ""  # as given, password masked

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"


def _url_error(url: str, problem: str) -> ConfigError:
    return ConfigError(
        f"cannot use the chroma URL {mask_url(url)!r}: {problem}",
        hint="write it as http[s]://[user:password@ | :token@]host[:port][?prefix=NAME&tenant=T&database=D] "
        "(see docs/deploy.md), or leave LANGDREAM_CHROMA_URL unset for the index in the data home",
    )


def parse_chroma_url(url: str) -> ChromaServer:
    """A chroma server from ``http[s]://[user:password@ | :token@]host[:port][?prefix=&tenant=&database=]``.

    ``user:password`` is sent as HTTP basic auth and ``:token`` as a bearer token (chroma's own
    server checks neither; a proxy in front of it can). The port defaults to 443 for https and
    ``DEFAULT_CHROMA_PORT`` for http; ``prefix`` to ``DEFAULT_CHROMA_PREFIX``; tenant and database
    to chroma's defaults.
    """
    from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise _url_error(url, str(exc)) from exc
    if parts.scheme not in ("http", "https"):
        raise _url_error(url, f"the scheme must be http or https, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise _url_error(url, "it names no host")
    if parts.path not in ("", "/"):
        raise _url_error(url, f"a path ({parts.path!r}) is not supported: chroma's API lives at the server's root")
    if parts.fragment:
        raise _url_error(url, "it has a #fragment")
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _URL_OPTIONS:
            raise _url_error(url, f"unknown option {key!r} (known: {', '.join(_URL_OPTIONS)})")
        if not value:
            raise _url_error(url, f"option {key!r} is empty")
        options[key] = value
    prefix = options.get("prefix", DEFAULT_CHROMA_PREFIX)
    if not _PREFIX.fullmatch(prefix):
        raise _url_error(
            url, f"prefix {prefix!r} must be 1-63 letters, digits, '_' or '-', starting with a letter or digit"
        )
    headers: dict[str, str] = {}
    user = unquote(parts.username) if parts.username else ""
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and user:
        raise _url_error(url, "it names a user without a password (a token goes after a colon: https://:TOKEN@host)")
    if password is not None and user:
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {credentials}"
    elif password:
        headers["Authorization"] = f"Bearer {password}"
    ssl = parts.scheme == "https"
    host = parts.hostname
    return ChromaServer(
        host=host,
        port=port or (443 if ssl else DEFAULT_CHROMA_PORT),
        ssl=ssl,
        tenant=options.get("tenant", DEFAULT_TENANT),
        database=options.get("database", DEFAULT_DATABASE),
        prefix=prefix,
        headers=headers,
        url=mask_url(url.strip()),
    )


def _unreachable(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, httpx.TransportError):  # refused, reset, DNS, TLS, timeouts
        return True
    return isinstance(exc, ValueError) and "Could not connect" in str(exc)


def _refused(exc: BaseException) -> bool:
    import httpx
    from chromadb.errors import AuthorizationError, ChromaAuthError

    if isinstance(exc, (AuthorizationError, ChromaAuthError)):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (401, 403)


class ChromaServerIndex(ChromaCore):
    """This memory's collections on a chroma server (``chroma run``), reached with ``chromadb.HttpClient``.

    The server serializes its clients' requests, so there is no directory and no lock: every
    process may write and query (``owned`` and ``try_own`` are always true). Collection names
    start with the URL's prefix (``<prefix>_ldi_<hash>``, ``<prefix>_lde_<hash>``), and only those
    are ever listed, reset or dropped: other memories and applications on the server are left
    alone. The client connects on first use; a server that cannot be reached raises
    ``DataHomeError``.
    """

    remote = True

    def __init__(self, url: str) -> None:
        self.server = parse_chroma_url(url)
        super().__init__(f"{self.server.prefix}_")
        self.lock = ServerIndexLock()
        self._pattern = re.compile(re.escape(self._name_prefix) + r"(" + "|".join(KINDS) + r")_[0-9a-f]{32}")
        self._client: Any = None

    @property
    def location(self) -> str:
        s = self.server
        return f"{s.url} (chroma server, collections {s.prefix}_*, tenant {s.tenant}, database {s.database})"

    def __repr__(self) -> str:
        return f"ChromaServerIndex({self.server.url!r})"

    def _kind_of(self, name: str) -> str | None:
        matched = self._pattern.fullmatch(name)
        return matched.group(1) if matched else None

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except LangDreamError:
            raise
        except Exception as exc:
            if _unreachable(exc):
                raise DataHomeError(
                    f"cannot reach the chroma server at {self.server.url}: {exc}",
                    hint=f"start it (chroma run --path DIR --host HOST --port {self.server.port}) or fix "
                    "LANGDREAM_CHROMA_URL / --chroma-url; unset it to use the index in the data home",
                ) from exc
            if _refused(exc):
                raise DataHomeError(
                    f"the chroma server at {self.server.url} refused this client's credentials: {exc}",
                    hint="put the user:password or :token the server's proxy expects into the chroma URL",
                ) from exc
            raise

    def _client_or_open(self):
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._collections.clear()
                self._client = self._open()
            return self._client

    def _open(self):
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from chromadb.errors import NotFoundError

        s = self.server
        try:
            return chromadb.HttpClient(
                host=s.host,
                port=s.port,
                ssl=s.ssl,
                headers=dict(s.headers),
                settings=ChromaSettings(anonymized_telemetry=False),
                tenant=s.tenant,
                database=s.database,
            )
        except NotFoundError as exc:
            raise DataHomeError(
                f"the chroma server at {s.url} has no tenant {s.tenant!r} with a database {s.database!r}: {exc}",
                hint="create them on the server (chromadb.AdminClient(...).create_database(name, tenant)) "
                "or fix ?tenant= / ?database= in the chroma URL",
            ) from exc

    @guarded
    def heartbeat(self) -> str:
        """The server's version, asked over the network (raises ``DataHomeError`` when it does not answer)."""
        client = self._client_or_open()
        client.heartbeat()
        return str(client.get_version())

    def vacuum(self) -> None:
        """Nothing to do from a client: the server owns its files (``chroma vacuum --path DIR``
        compacts them, with the server stopped)."""

    def wipe(self) -> None:
        """Drop this memory's collections (never the server's other collections)."""
        self.reset()

    def close(self) -> None:
        """Close the HTTP client (each has its own connection pool); a later use reconnects."""
        with self._lock:
            client, self._client = self._client, None
            self._collections.clear()
        if client is not None:
            client.close()
