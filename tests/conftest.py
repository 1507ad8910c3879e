"""Shared fixtures: offline mode, storage URLs for every backend, a fresh PostgreSQL database.

PostgreSQL tests use the real server on 127.0.0.1:5432 (override with HPSEARCH_TEST_PG, a
server URL without a database). Each test gets its own database, dropped afterwards. Without a
reachable server they skip loudly -- unless HPSEARCH_REQUIRE_POSTGRES=1 (set by .ci/run), which
turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HPSEARCH_OFFLINE"] = "1"  # tests never download anything
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("HPSEARCH_STORAGE", None)


@pytest.fixture(autouse=True, scope="session")
def _artifacts_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Trial artifacts of PostgreSQL studies default to ./hpsearch-artifacts: keep them out of the repo."""
    os.environ["HPSEARCH_ARTIFACTS"] = str(tmp_path_factory.mktemp("artifacts"))


PG_SERVER = os.environ.get("HPSEARCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
BACKENDS = ["sqlite", "postgresql", "journal"]


def _pg_unavailable(reason: str) -> None:
    message = f"PostgreSQL at {PG_SERVER} is not reachable ({reason}); PostgreSQL tests NOT RUN"
    if os.environ.get("HPSEARCH_REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " and HPSEARCH_REQUIRE_POSTGRES=1")
    pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to a fresh, empty PostgreSQL database that is dropped after the test."""
    psycopg = pytest.importorskip("psycopg")
    name = f"hpsearch_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_SERVER + "/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        _pg_unavailable(str(e).strip().splitlines()[0])
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_SERVER}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One storage URL per backend: a real SQLite file, a real PostgreSQL database, a journal file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    if request.param == "journal":
        return f"journal://{tmp_path / 'studies.log'}"
    return str(request.getfixturevalue("pg_url"))
