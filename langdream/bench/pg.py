"""A throwaway PostgreSQL server: the installed binaries, a temporary directory, loopback, a free port.

The server is the installed PostgreSQL (``pg_config --bindir``, else /usr/lib/postgresql/*/bin),
initialised into a temporary directory and listening on 127.0.0.1 on a free port (its unix
socket in the same directory). initdb and postgres refuse to run as root, so as root they run as
the ``postgres`` system user (which the distribution's package creates). The ``postgres`` bench
section and the test suite's fixtures both start theirs here.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from langdream.errors import ConfigError

NOT_INSTALLED = "PostgreSQL server not installed: apt-get install postgresql"
SUPERUSER = "postgres"


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when no server is installed."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    # Newest version first: "15" sorts after "9.6" only as a number.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=lambda p: _version_key(Path(p).parent.name), reverse=True)]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A running throwaway server; ``url(schema)`` connects to one schema of its database."""

    bindir: Path
    root: Path
    port: int
    run_as: str | None  # the system user the server runs as when this process is root

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _command(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.run_as, "--"] if self.run_as else []) + list(args)

    def _run(self, *args: str, timeout: float = 120) -> None:
        # The server's user may not be allowed into this process's working directory.
        result = subprocess.run(
            self._command(*args), check=False, capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise ConfigError(
                f"{' '.join(args[:2])} failed:\n{result.stdout}\n{result.stderr}\n{tail}",
                hint="check the PostgreSQL installation (initdb, pg_ctl) and the server log above",
            )

    @classmethod
    def start(cls, bindir: Path, *, durable: bool = False) -> PostgresServer:
        """Initialise and start a server; ``durable`` keeps PostgreSQL's default fsync settings
        (for timings), else a throwaway server skips them."""
        root = Path(tempfile.mkdtemp(prefix="langdream-pg-"))
        run_as = None
        try:
            if os.geteuid() == 0:
                run_as = SUPERUSER
                try:
                    account = pwd.getpwnam(run_as)
                except KeyError:
                    raise ConfigError(
                        f"PostgreSQL refuses to run as root and there is no {run_as!r} system user to run it as",
                        hint=f"create one (useradd --system {run_as}) or run as another user",
                    ) from None
                os.chown(root, account.pw_uid, account.pw_gid)
            server = cls(bindir, root, 0, run_as)
            server._run(
                str(bindir / "initdb"), "-D", str(server.data), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
            # A free port can be taken between choosing and binding it: choose again then.
            for attempt in range(3):
                server.port = _free_port()
                options = f"-h 127.0.0.1 -p {server.port} -k {root} -c max_connections=200"
                if not durable:  # a throwaway server: durability across a power cut buys nothing here
                    options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                try:
                    server._run(
                        str(bindir / "pg_ctl"), "start", "-D", str(server.data), "-w", "-t", "60",
                        "-l", str(root / "server.log"), "-o", options,
                    )  # fmt: skip
                    break
                except ConfigError:
                    if attempt == 2:
                        raise
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def stop(self) -> None:
        """Stop the server and delete its directory (the directory goes even when the stop fails)."""
        try:
            self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, schema: str | None = None, database: str = "postgres") -> str:
        base = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
        return base if schema is None else f"{base}?options={quote(f'-csearch_path={schema}')}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database=database), autocommit=True) as conn:
            conn.execute(sql)

    def create_schema(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.execute(f"CREATE SCHEMA {name}")
        return name

    def drop_schema(self, name: str) -> None:
        # A ledger left inside a transaction fails the drop instead of hanging the caller.
        self.execute(f"SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE")
