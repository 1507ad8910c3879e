"""The one place where transient database errors are retried.

Transient means the operation may succeed if tried again: a dropped or reset connection, a
server restart, a deadlock, a serialization failure, SQLite's "database is locked". They are
retried with capped, jittered backoff for as long as the outage is younger than its limit
(:mod:`storage.outage`: ``$HPSEARCH_DB_OUTAGE_S``, default 120 s), counted in time, not attempts.

Permanent means no retry can help although the error looks like a connection error: the
database does not exist, the password or role is wrong, a connection option is invalid. Those
raise :class:`~storage.errors.DatabaseUnavailable` at once. Everything else (bad SQL,
integrity errors, Optuna's own errors) is raised as it is, at once.

Writes that must not happen twice read back before retrying: finishing a trial here, claiming
one in :mod:`storage.claims`.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import sqlalchemy.exc

from storage import compat, outage
from storage.errors import DatabaseUnavailable

__all__ = ["RetryingRDBStorage", "is_permanent", "is_transient", "with_retry"]

T = TypeVar("T")
_log = logging.getLogger("hpsearch.storage")

BASE_DELAY_S = 0.1
MAX_DELAY_S = 5.0  # a restarted server is noticed within 5 s

# SQLSTATEs that no retry can cure: class 28 invalid authorization, 3D000 invalid catalog name
_PERMANENT_SQLSTATE = re.compile(r"28...|3D000")
# libpq reports connection failures without a SQLSTATE (psycopg's sqlstate is None): its messages
_PERMANENT_MESSAGE = re.compile(
    r'database "[^"]*" does not exist|role "[^"]*" does not exist|password authentication failed'
    r"|authentication failed for user|no pg_hba\.conf entry|no password supplied"
    r'|invalid [a-z_]+ value: "|invalid connection option|invalid URI query parameter'
    r"|invalid integer value .* for connection option|invalid port number|does not support SSL"
)
# what a failed connection raises (an invalid URI parameter: ProgrammingError), as opposed to
# errors in a statement (DataError, IntegrityError, ...) whose messages may read alike
_CONNECTING = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.ProgrammingError,
)


def is_permanent(error: BaseException) -> bool:
    """True if ``error`` (or what caused it) is a connection error that no retry can cure."""
    for seen in outage.chain(error):
        if not isinstance(seen, sqlalchemy.exc.DBAPIError):
            continue
        orig = seen.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if isinstance(code, str) and _PERMANENT_SQLSTATE.fullmatch(code):
            return True
        if isinstance(seen, _CONNECTING) and _PERMANENT_MESSAGE.search(str(orig)):
            return True
    return False


def is_transient(error: BaseException) -> bool:
    """True if ``error`` (or what caused it) is a database error worth retrying."""
    if is_permanent(error):
        return False
    for seen in outage.chain(error):
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
    return False


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, ...): doubling, capped, jittered."""
    return min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** min(attempt - 1, 30)) * random.uniform(0.5, 1.0)


def with_retry(
    call: Callable[..., T],
    *args: Any,
    attempts: int | None = None,
    also: tuple[type[BaseException], ...] = (),
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> T:
    """``call(*args, **kwargs)``, retried on transient errors with capped, jittered backoff.

    Args:
        call: the database call.
        attempts: None (database calls): retry until the outage is older than its limit (see
            :mod:`storage.outage`), then raise :class:`DatabaseUnavailable`. A number: at most
            that many quick attempts, quietly, then the last error (opening a storage).
        also: further exceptions worth retrying at this call site.
        sleep: waits between attempts (tests pass a fake).

    Raises:
        DatabaseUnavailable: a permanent connection error (at once), or the outage outlasted
            its limit.
    """
    where = getattr(call, "__name__", "call")
    attempt = 0
    while True:
        attempt += 1
        try:
            result = call(*args, **kwargs)
        except Exception as e:
            if is_permanent(e):
                raise DatabaseUnavailable(f"{outage.first_line(e)} (not retried)", permanent=True) from e
            if not (is_transient(e) or isinstance(e, also)):
                raise
            if attempts is not None:
                if attempt >= attempts:
                    raise
                sleep(backoff(attempt))
                continue
            limit_s = outage.limit()
            state = outage.STATE
            lasted = state.failed(where, e, limit_s)
            if lasted >= limit_s:
                raise state.give_up(e, lasted, limit_s) from e
            sleep(min(backoff(attempt), limit_s - lasted + 0.01))  # the last try comes at the limit
        else:
            outage.STATE.succeeded()
            return result


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return with_retry(method, self, *args, **kwargs)

    return wrapper


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose database calls survive transient errors.

    Still an ``RDBStorage``, so Optuna keeps its cache and heartbeat support for it.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        """A heartbeat, retried like every call, that never raises.

        Optuna's heartbeat thread dies of any error, and its trial then goes stale while it still
        trains. Past the outage limit the worker is told through :func:`storage.outage.on_give_up`;
        the next beat tries again.
        """
        try:
            with_retry(optuna.storages.RDBStorage.record_heartbeat, self, trial_id)
        except DatabaseUnavailable:
            pass  # the give-up callbacks were called
        except Exception as e:
            _log.warning("heartbeat of trial id %d not recorded: %s", trial_id, outage.first_line(e))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials, except just after this process saw the database come back.

        During an outage no worker can beat, so right after it every running trial looks stale;
        its worker beats again within seconds. Until a grace period has passed, none is stale
        (checked in the next call; at worst a dead worker's trial is recovered a grace later).
        """
        interval = self.heartbeat_interval or 0
        grace = self.grace_period or 2 * interval
        # a live worker beats within MAX_DELAY_S (its retries' backoff) of the database's return
        if outage.STATE.recovered_within(max(grace, 2 * MAX_DELAY_S), lasting=interval):
            return []
        ids: list[int] = with_retry(optuna.storages.RDBStorage._get_stale_trial_ids, self, study_id)
        return ids


for _name in compat.RDB_METHODS:
    if _name not in RetryingRDBStorage.__dict__:
        setattr(RetryingRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))


def _set_trial_state_values(
    self: optuna.storages.RDBStorage,
    trial_id: int,
    state: optuna.trial.TrialState,
    values: Any = None,
) -> bool:
    """Finishing a trial, retried without doing it twice.

    If the connection drops after the commit but before the reply, a blind retry would find
    the trial finished and raise. So a retry first reads the trial back: already in the
    requested finished state with the same values means the first attempt succeeded.
    """
    attempted = False

    def attempt() -> bool:
        nonlocal attempted
        if attempted and state.is_finished():
            now = optuna.storages.RDBStorage.get_trial(self, trial_id)
            if now.state == state and (values is None or list(now.values or []) == list(values)):
                return True
        attempted = True
        return bool(optuna.storages.RDBStorage.set_trial_state_values(self, trial_id, state, values))

    return with_retry(attempt)


RetryingRDBStorage.set_trial_state_values = _set_trial_state_values  # type: ignore[method-assign]
