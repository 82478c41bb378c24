"""A real PostgreSQL server for the tests: one per session, an empty schema per test.

The server itself is started by ``langdream.bench.pg`` (which the ``postgres`` bench section uses
too): the installed PostgreSQL, in a temporary directory, on 127.0.0.1 and a free port, run as the
``postgres`` system user when this process is root. Tests that need it skip only where the
server is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from langdream.bench.pg import NOT_INSTALLED, PostgresServer, find_bindir

__all__ = ["NOT_INSTALLED", "PostgresServer", "find_bindir", "postgres_server", "postgres_url"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (skips the test where none is installed)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(NOT_INSTALLED)
    server = PostgresServer.start(bindir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL whose tables land in a fresh, empty schema of the session's server, dropped afterwards."""
    schema = postgres_server.create_schema()
    yield postgres_server.url(schema)
    postgres_server.drop_schema(schema)
