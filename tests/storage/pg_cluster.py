"""A throwaway PostgreSQL server of the test's own, to stop and start at will.

The shared server on 127.0.0.1:5432 serves other tests at the same time: it is never stopped.
Outage tests start their own cluster instead (Debian's ``initdb`` / ``pg_ctl``, run as the
``postgres`` user when the tests run as root) in a temporary directory, on a free port. It
trusts local connections, except for the role ``pwuser`` (password ``right``), which must give
its password (for tests of a wrong password).

Without the binaries :func:`own_cluster` skips loudly; under ``HPSEARCH_REQUIRE_POSTGRES=1``
it fails instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

PASSWORD_ROLE, PASSWORD = "pwuser", "right"
HBA = f"""local all all trust
host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
"""


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


class Cluster:
    """A PostgreSQL cluster in ``root`` listening on 127.0.0.1:``port``."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin, self.root, self.port = bin_dir, root, port
        self.data = root / "data"
        self.as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root

    def _run(self, *argv: str, timeout: float = 120) -> str:
        cmd = ["runuser", "-u", "postgres", "--", *argv] if self.as_postgres else list(argv)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        (self.data / "pg_hba.conf").write_text(HBA)
        self.start()
        self._run(
            str(self.bin / "psql"), "-h", str(self.root), "-p", str(self.port), "-U", "postgres", "-qc",
            f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as when a server goes away."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A fresh cluster, started; stopped and deleted afterwards."""
    bin_dir = _binaries()
    if bin_dir is None:
        message = "PostgreSQL's initdb / pg_ctl not found: outage tests on an own server NOT RUN"
        if os.environ.get("HPSEARCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " and HPSEARCH_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="hpsearch-pg-"))  # not under pytest's 0700 tmp: postgres must enter
    cluster = Cluster(bin_dir, root, free_port())
    if cluster.as_postgres:
        shutil.chown(root, "postgres", "postgres")
    try:
        cluster.init()
        yield cluster
    finally:
        if cluster.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
