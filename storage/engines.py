"""Open an Optuna storage for a URL, with settings that suit each backend.

- SQLite: the file is switched to WAL journaling (persistent per file) and connections wait up
  to 60 s on a lock, so a dashboard reading the file does not make a worker fail with
  "database is locked".
- PostgreSQL: ``pool_pre_ping`` (survives connections dropped while idle) and a small pool per
  process (many workers must not exhaust ``max_connections``).
- Journal: Optuna's append-only file storage.

RDB storages get heartbeats: a worker that dies (``kill -9``, a lost machine) stops beating, and
after the grace period its trial is failed by whichever worker looks next, and handed to the
caller's ``stale_trial_callback`` (hpsearch's re-queues it with the same parameters).
Transient database errors are retried in :mod:`storage.retry`.
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

from storage.errors import StorageError
from storage.retry import RetryingRDBStorage, with_retry
from storage.urls import backend, redact

__all__ = ["open_storage", "sqlite_path"]

SQLITE_LOCK_TIMEOUT_S = 60
# per process: 1 connection in steady use (+1 for the heartbeat thread); at most 2 + 2
PG_POOL = {"pool_size": 2, "max_overflow": 2, "pool_recycle": 1800, "pool_pre_ping": True}
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
        heartbeat_interval: seconds between a running trial's heartbeats on RDB storages
            (None: no heartbeats); a trial is stale after ``GRACE_FACTOR`` missed beats.
        stale_trial_callback: called with each trial found stale (Optuna's
            ``heartbeat_stale_trial_callback``); None leaves it FAIL.

    Raises:
        StorageError: the URL is malformed, the file is missing, or the server cannot be reached.
    """
    kind = backend(url)
    try:
        if kind == "journal":
            return _journal(url, create)
        if kind == "grpc":
            return _grpc(url)
        engine_kwargs: dict[str, Any]
        if kind == "sqlite":
            path = sqlite_path(url)
            if path is not None:
                _prepare_sqlite(path, create)
            engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
        else:
            engine_kwargs = dict(PG_POOL)
        heartbeat: dict[str, Any] = {}
        if heartbeat_interval is not None:
            heartbeat = {
                "heartbeat_interval": heartbeat_interval,
                "grace_period": GRACE_FACTOR * heartbeat_interval,
                "heartbeat_stale_trial_callback": stale_trial_callback,
            }
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # workers starting together on a new database race to create its tables; the loser
            # sees "already exists" / a unique violation and simply tries again
            rdb = with_retry(
                RetryingRDBStorage,
                url,
                engine_kwargs=engine_kwargs,
                also=(sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError),
                attempts=4,
                **heartbeat,
            )
        if kind == "sqlite":
            _serialize_sqlite_transactions(rdb.engine)
        return rdb
    except (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"storage {redact(url)}: cannot open: {first}") from e


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


def _journal(url: str, create: bool) -> optuna.storages.BaseStorage:
    path = Path(url.split("://", 1)[1])
    if not path.exists() and not create:
        raise StorageError(f"storage journal://{path}: no such file")
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _grpc(url: str) -> optuna.storages.BaseStorage:
    """A client of ``hpsearch storage-proxy`` (Optuna's gRPC storage proxy)."""
    hostport = url.split("://", 1)[1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise StorageError(f"storage {url}: expected grpc://HOST:PORT")
    from optuna.storages import GrpcStorageProxy

    with warnings.catch_warnings():  # "experimental" since Optuna 4.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = GrpcStorageProxy(host=host, port=int(port))
    try:
        proxy.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT_S)  # a worker may start before its proxy
    except ConnectionError as e:
        raise StorageError(f"storage {url}: no gRPC storage proxy answers there") from e
    return proxy
