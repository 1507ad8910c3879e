"""Shared fixtures: offline mode, a storage URL per backend, a fresh PostgreSQL database.

``storage_url`` runs a test once per backend in ``BACKENDS``: a real SQLite file, a fresh
PostgreSQL database, a journal file. A test meant for some backends only names them:
``@pytest.mark.backends("sqlite", "postgresql")``. A test that needs PostgreSQL alone takes
``pg_url``. Every test on PostgreSQL carries the ``postgres`` mark (``-m "not postgres"``).

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
for _var in ("HPSEARCH_STORAGE", "OPTUNA_STORAGE"):  # a developer's own storage never leaks in
    os.environ.pop(_var, None)

PG_SERVER = os.environ.get("HPSEARCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
BACKENDS = ("sqlite", "postgresql", "journal")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run a storage_url test on these backends only (default: all)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One run per backend for every test that takes ``storage_url``."""
    if "storage_url" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = marker.args if marker else BACKENDS
    unknown = set(names) - set(BACKENDS)
    if unknown or not names:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: backends{names}: expected some of {BACKENDS}")
    params = [pytest.param(n, marks=[pytest.mark.postgres] if n == "postgresql" else []) for n in names]
    metafunc.parametrize("storage_url", params, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True, scope="session")
def _artifacts_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Trial artifacts of PostgreSQL studies default to ./hpsearch-artifacts: keep them out of the repo."""
    os.environ["HPSEARCH_ARTIFACTS"] = str(tmp_path_factory.mktemp("artifacts"))


def _pg_unavailable(reason: str) -> None:
    message = f"PostgreSQL at {PG_SERVER} is not reachable ({reason}); PostgreSQL tests NOT RUN"
    if os.environ.get("HPSEARCH_REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " and HPSEARCH_REQUIRE_POSTGRES=1")
    pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL (``postgresql://``, as a user writes it) to a fresh, empty database, dropped after the test."""
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


@pytest.fixture
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A resolved storage URL on this run's backend (see :func:`pytest_generate_tests`), new and empty."""
    import storage

    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    if request.param == "journal":
        return f"journal://{tmp_path / 'studies.log'}"
    return storage.resolve(str(request.getfixturevalue("pg_url")), {})
