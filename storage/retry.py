"""The one place where transient database errors are retried.

Transient means the operation may succeed if tried again: a dropped or reset connection, a
server restart, a deadlock, a serialization failure, SQLite's "database is locked". Everything
else (bad SQL, integrity errors, Optuna's own errors) is raised at once.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import sqlalchemy.exc

from storage import compat

__all__ = ["RetryingRDBStorage", "is_transient", "with_retry"]

T = TypeVar("T")
_log = logging.getLogger("hpsearch.storage")

ATTEMPTS = 10  # with the backoff below: up to about 30 s, enough for a server restart
BASE_DELAY_S = 0.1
MAX_DELAY_S = 5.0


def is_transient(error: BaseException) -> bool:
    """True if ``error`` (or what caused it) is a database error worth retrying."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def with_retry(
    call: Callable[..., T],
    *args: Any,
    attempts: int = ATTEMPTS,
    also: tuple[type[BaseException], ...] = (),
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> T:
    """``call(*args, **kwargs)``, retried on transient errors with capped, jittered backoff.

    ``also`` lists further exceptions worth retrying at this call site.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call(*args, **kwargs)
        except Exception as e:
            if attempt == attempts or not (is_transient(e) or isinstance(e, also)):
                raise
            delay = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            _log.warning(
                "transient database error in %s (attempt %d/%d, retrying in %.1fs): %s",
                getattr(call, "__name__", "call"),
                attempt,
                attempts,
                delay,
                str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return with_retry(method, self, *args, **kwargs)

    return wrapper


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose database calls survive transient errors.

    Still an ``RDBStorage``, so Optuna keeps its cache and heartbeat support for it.
    """


for _name in compat.RDB_METHODS:
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
