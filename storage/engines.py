"""Open an Optuna storage for a URL, with settings that suit each backend.

- SQLite: the file is switched to WAL journaling (persistent per file) and connections wait up
  to 60 s on a lock, so a dashboard reading the file does not make a worker fail with
  "database is locked".
- PostgreSQL: ``pool_pre_ping`` (survives connections dropped while idle) and a small pool per
  process (many workers must not exhaust ``max_connections``).
- Journal: Optuna's append-only file storage.
- gRPC: a client of Optuna's storage proxy (``hpsearch storage-proxy``).

Every storage gets heartbeats: a worker that dies (``kill -9``, a lost machine) stops beating,
and after the grace period its trial is failed by whichever worker looks next, and handed to the
caller's ``stale_trial_callback`` (hpsearch's re-queues it with the same parameters). RDB storages
use Optuna's heartbeats; the journal and gRPC storages, which Optuna gives none, hpsearch's
(:mod:`storage.heartbeats`). Transient database errors are retried in
:mod:`storage.retry`; errors that no retry cures (no such database, a wrong password, a bad
connection option) fail at once, in one line.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc

from storage import outage
from storage.errors import DatabaseUnavailable, StorageError
from storage.heartbeats import SystemAttrHeartbeat
from storage.outage import first_line
from storage.retry import RetryingRDBStorage, with_retry
from storage.urls import backend, redact

__all__ = ["open_storage", "sqlite_path"]

SQLITE_LOCK_TIMEOUT_S = 60
# per process: 1 connection in steady use (+1 for the heartbeat thread); at most 2 + 2
PG_POOL = {"pool_size": 2, "max_overflow": 2, "pool_recycle": 1800, "pool_pre_ping": True}
# libpq options unless the URL sets them: a connection attempt to an unreachable host gives up
# after 10 s, and a connection whose server vanished is noticed within about a minute (TCP
# keepalives), so a worker retries instead of waiting forever on a dead socket
PG_CONNECT = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}  # fmt: skip
OPEN_ATTEMPTS = 4  # opening: a few quick attempts (tables created by two workers at once, a blip)
HEARTBEAT_INTERVAL_S = 10
GRACE_FACTOR = 3  # a trial is stale after 3 missed heartbeats
GRPC_CONNECT_TIMEOUT_S = 30


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for in-memory databases)."""
    rest = url.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


StaleCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def open_storage(
    url: str,
    *,
    create: bool = True,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL_S,
    stale_trial_callback: StaleCallback | None = None,
) -> optuna.storages.BaseStorage:
    """Open the storage at ``url``.

    Args:
        url: a resolved storage URL (see :func:`storage.resolve`).
        create: when False, a missing SQLite or journal file is an error instead of being
            created (read-only commands such as ``hpsearch studies`` use this).
        heartbeat_interval: seconds between a running trial's heartbeats
            (None: no heartbeats); a trial is stale after ``GRACE_FACTOR`` missed beats.
        stale_trial_callback: called with each trial found stale (Optuna's
            ``heartbeat_stale_trial_callback``); None leaves it FAIL.

    Raises:
        StorageError: the URL is malformed, the file is missing, the server cannot be reached
            (a few quick attempts) or refuses the connection (at once: no such database, a
            wrong password, an invalid option), or ``$HPSEARCH_DB_OUTAGE_S`` is not a number.
    """
    kind = backend(url)
    outage.limit()  # a bad $HPSEARCH_DB_OUTAGE_S is an error now, not in the middle of an outage
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval is not None:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": GRACE_FACTOR * heartbeat_interval,
            "heartbeat_stale_trial_callback": stale_trial_callback,
        }
    try:
        if kind == "journal":
            return _journal(url, create, heartbeat)
        if kind == "grpc":
            return _grpc(url, heartbeat)
        engine_kwargs: dict[str, Any]
        if kind == "sqlite":
            path = sqlite_path(url)
            if path is not None:
                _prepare_sqlite(path, create)
            engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
        else:
            engine_kwargs = {**PG_POOL, "connect_args": _pg_connect_args(url)}
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # workers starting together on a new database race to create its tables; the loser
            # sees "already exists" / a unique violation and simply tries again
            rdb = with_retry(
                RetryingRDBStorage,
                url,
                engine_kwargs=engine_kwargs,
                also=(sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError),
                attempts=OPEN_ATTEMPTS,
                **heartbeat,
            )
        if kind == "sqlite":
            _serialize_sqlite_transactions(rdb.engine)
        return rdb
    except DatabaseUnavailable as e:  # a permanent error: no such database, a wrong password, ...
        raise StorageError(f"storage {redact(url)}: cannot open: {e}") from e
    except (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error, OSError) as e:
        raise StorageError(f"storage {redact(url)}: cannot open: {first_line(e)}") from e


def _pg_connect_args(url: str) -> dict[str, Any]:
    """:data:`PG_CONNECT`, less the options the URL sets itself."""
    try:
        query = sqlalchemy.engine.make_url(url).query
    except ValueError as e:  # ArgumentError is one too
        raise StorageError(f"storage {redact(url)}: malformed URL: {e}") from None
    return {key: value for key, value in PG_CONNECT.items() if key not in query}


def _serialize_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Start every SQLite transaction with ``BEGIN IMMEDIATE``.

    Python's sqlite3 driver begins a transaction only at the first write, so Optuna's
    read-then-write steps (claiming a WAITING trial: "is it still waiting? then mark it
    running") are not atomic across processes: two workers could both claim the same trial.
    Taking the write lock at BEGIN makes each such step atomic; readers in other processes
    (optuna-dashboard) are not blocked, thanks to WAL.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection: sqlalchemy.engine.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed are replaced


def _prepare_sqlite(path: Path, create: bool) -> None:
    if not path.exists():
        if not create:
            raise StorageError(f"storage sqlite:///{path}: no such file")
        if not path.parent.exists():
            raise StorageError(f"storage sqlite:///{path}: directory {path.parent} does not exist")
    with sqlite3.connect(path, timeout=SQLITE_LOCK_TIMEOUT_S) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


class HeartbeatJournalStorage(SystemAttrHeartbeat, optuna.storages.JournalStorage):
    """Optuna's journal storage with hpsearch's heartbeats (Optuna's has none)."""


def _journal(url: str, create: bool, heartbeat: dict[str, Any]) -> optuna.storages.BaseStorage:
    path = Path(url.split("://", 1)[1])
    if not path.exists() and not create:
        raise StorageError(f"storage journal://{path}: no such file")
    from optuna.storages.journal import JournalFileBackend

    if not heartbeat:
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    store = HeartbeatJournalStorage(JournalFileBackend(str(path)))
    store.set_heartbeat(**heartbeat)
    return store


def _grpc(url: str, heartbeat: dict[str, Any]) -> optuna.storages.BaseStorage:
    """A client of ``hpsearch storage-proxy`` (Optuna's gRPC storage proxy), with heartbeats if asked.

    The heartbeats are trial system attrs written through the proxy like any other write, so
    they work whatever storage the proxy serves.
    """
    hostport = url.split("://", 1)[1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise StorageError(f"storage {url}: expected grpc://HOST:PORT")
    from optuna.storages import GrpcStorageProxy

    class HeartbeatGrpcStorageProxy(SystemAttrHeartbeat, GrpcStorageProxy):
        """Optuna's gRPC storage proxy client with hpsearch's heartbeats (Optuna's has none)."""

    with warnings.catch_warnings():  # "experimental" since Optuna 4.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = (HeartbeatGrpcStorageProxy if heartbeat else GrpcStorageProxy)(host=host, port=int(port))
    if heartbeat and isinstance(proxy, SystemAttrHeartbeat):
        proxy.set_heartbeat(**heartbeat)
    try:
        proxy.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT_S)  # a worker may start before its proxy
    except ConnectionError as e:
        raise StorageError(f"storage {url}: no gRPC storage proxy answers there") from e
    return proxy
