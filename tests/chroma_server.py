"""A real chroma server for the tests: ``chroma run`` on 127.0.0.1, in a temporary directory.

``chroma_server`` (session) starts it on a free port, waits for its heartbeat and stops it when
the session ends; tests skip only where the ``chroma`` program (installed with the chromadb
package) is missing. ``chroma_url`` (per test) is a URL of that server with a collection prefix of
its own, so tests never see each other's collections.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

STARTUP_SECONDS = 60.0
STOP_SECONDS = 10.0


@dataclass(frozen=True)
class ChromaServerProcess:
    """A running ``chroma run``: its base URL, its data directory and its process."""

    url: str
    path: Path
    port: int
    process: subprocess.Popen
    log: Path

    def url_with(self, **options: str) -> str:
        """The server's URL with query options (``prefix``, ``tenant``, ``database``)."""
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"{self.url}?{query}" if query else self.url


def chroma_executable() -> str | None:
    """The ``chroma`` program of this Python's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("chroma")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("chroma")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_heartbeat(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"chroma run exited with status {process.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"chroma run did not answer its heartbeat at {url} within {STARTUP_SECONDS:g}s")


def start_chroma_server(directory: Path) -> ChromaServerProcess:
    executable = chroma_executable()
    if executable is None:
        raise FileNotFoundError("chroma")
    port = free_port()
    log = directory / "chroma.log"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [executable, "run", "--path", str(directory / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    server = ChromaServerProcess(f"http://127.0.0.1:{port}", directory / "data", port, process, log)
    try:
        _wait_for_heartbeat(server.url, process, log)
    except BaseException:
        stop_chroma_server(server)
        raise
    return server


def stop_chroma_server(server: ChromaServerProcess) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServerProcess]:
    """One real chroma server for the session, stopped (and its directory deleted) at the end."""
    if chroma_executable() is None:
        pytest.skip("the `chroma` program is not installed (it comes with the chromadb package)")
    directory = Path(tempfile.mkdtemp(prefix="langdream-chroma-"))
    server = start_chroma_server(directory)
    try:
        yield server
    finally:
        stop_chroma_server(server)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def chroma_url(chroma_server: ChromaServerProcess) -> str:
    """The session's chroma server with a collection prefix of this test's own."""
    return chroma_server.url_with(prefix=f"t{uuid.uuid4().hex[:12]}")
