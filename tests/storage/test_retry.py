"""storage.retry: which errors are retried, how often, how long it waits; a finished trial is never
finished twice. Backoff goes through the injectable ``sleep`` (or a zero base delay): nothing here
really sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
import sqlalchemy.exc
from optuna.trial import TrialState

import storage
from storage import compat, retry
from storage.retry import RetryingRDBStorage, is_transient, with_retry


def _operational(message: str = "server closed the connection") -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(message))


def _caused_by(error: BaseException) -> Exception:
    try:
        raise error
    except BaseException as cause:
        try:
            raise optuna.exceptions.StorageInternalError("commit failed") from cause
        except optuna.exceptions.StorageInternalError as wrapped:
            return wrapped


def _during(error: BaseException) -> Exception:
    """A ValueError raised while ``error`` was being handled (``__context__``, no ``from``)."""
    try:
        try:
            raise error
        except BaseException:
            raise ValueError("while cleaning up")  # noqa: B904 - the implicit __context__ is the point
    except ValueError as e:
        return e


ERRORS: dict[str, tuple[BaseException, bool]] = {
    "dropped connection": (_operational(), True),
    "interface error": (sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("connection closed")), True),
    "invalidated connection": (
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("reset"), connection_invalidated=True),
        True,
    ),
    "cause is transient": (_caused_by(_operational()), True),  # Optuna wraps SQLAlchemy's errors
    "raised while handling one": (_during(_operational()), True),
    "other DBAPI error": (
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("bad"), connection_invalidated=False),
        False,
    ),
    "integrity error": (sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("unique violation")), False),
    "bad SQL": (sqlalchemy.exc.ProgrammingError("SELEC", {}, Exception("syntax error")), False),
    "cause is not": (_caused_by(ValueError("invalid data")), False),
    "Optuna's own": (optuna.exceptions.UpdateFinishedTrialError("finished"), False),
    "plain error": (ValueError("no"), False),
}


@pytest.mark.parametrize(("error", "transient"), ERRORS.values(), ids=ERRORS.keys())
def test_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


class Flaky:
    """A call that raises ``errors`` in turn, then returns ``"done"``; it counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors, self.calls = list(errors), 0
        self.__name__ = "flaky"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ("done", args, kwargs)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def test_transient_errors_are_retried_with_growing_jittered_backoff(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    call = Flaky(_operational(), _operational(), _operational())
    with caplog.at_level(logging.WARNING, logger="hpsearch.storage"):
        result = with_retry(call, 1, key="v", sleep=sleeps.append)
    assert result == ("done", (1,), {"key": "v"})  # arguments passed through on every attempt
    assert call.calls == 4
    # attempt n waits BASE_DELAY_S * 2**(n-1), times a jitter in [0.5, 1]
    for n, delay in enumerate(sleeps, start=1):
        full = retry.BASE_DELAY_S * 2 ** (n - 1)
        assert full / 2 <= delay <= full
    assert len(sleeps) == 3
    logged = [r.getMessage() for r in caplog.records if r.name == "hpsearch.storage"]
    assert [m.split(", retrying")[0] for m in logged] == [
        f"transient database error in flaky (attempt {n}/{retry.ATTEMPTS}" for n in (1, 2, 3)
    ]


def test_other_errors_are_raised_at_once(sleeps: list[float]) -> None:
    for error in (ValueError("bad value"), sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup"))):
        call = Flaky(error)
        with pytest.raises(type(error)):
            with_retry(call, sleep=sleeps.append)
        assert call.calls == 1
    assert sleeps == []


def test_attempts_are_capped_and_the_last_error_is_raised(sleeps: list[float]) -> None:
    errors = [_operational(f"down {i}") for i in range(retry.ATTEMPTS + 1)]
    call = Flaky(*errors)
    with pytest.raises(sqlalchemy.exc.OperationalError, match=f"down {retry.ATTEMPTS - 1}"):
        with_retry(call, sleep=sleeps.append)
    assert call.calls == retry.ATTEMPTS
    assert len(sleeps) == retry.ATTEMPTS - 1  # no wait after the last attempt
    assert max(sleeps) <= retry.MAX_DELAY_S  # the backoff is capped
    assert sleeps[-1] >= retry.MAX_DELAY_S / 2  # 0.1 s * 2**8 is far over the cap: capped, then jittered

    call = Flaky(_operational(), _operational(), _operational())
    with pytest.raises(sqlalchemy.exc.OperationalError):
        with_retry(call, attempts=2, sleep=sleeps.append)
    assert call.calls == 2


def test_also_retries_further_errors_at_this_call_site_only(sleeps: list[float]) -> None:
    class AlreadyExists(sqlalchemy.exc.ProgrammingError):
        pass

    race = AlreadyExists("CREATE TABLE", {}, Exception("relation already exists"))
    call = Flaky(race, sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup")))
    also = (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)
    assert with_retry(call, also=also, sleep=sleeps.append)[0] == "done"  # a subclass counts too
    assert call.calls == 3 and len(sleeps) == 2

    call = Flaky(race)
    with pytest.raises(AlreadyExists):
        with_retry(call, sleep=sleeps.append)  # without `also`: not transient
    assert call.calls == 1


# ---- RetryingRDBStorage --------------------------------------------------------------------------


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Storage methods retry with the default ``sleep``: a zero base delay makes every wait 0 s."""
    monkeypatch.setattr(retry, "BASE_DELAY_S", 0.0)


@pytest.fixture
def store(tmp_path: Path) -> RetryingRDBStorage:
    opened = storage.open_storage(f"sqlite:///{tmp_path / 'r.db'}", heartbeat_interval=None)
    assert isinstance(opened, RetryingRDBStorage)
    return opened


def test_every_database_method_is_wrapped() -> None:
    assert issubclass(RetryingRDBStorage, optuna.storages.RDBStorage)  # Optuna's cache still applies
    for name in compat.RDB_METHODS:
        wrapped = getattr(RetryingRDBStorage, name)
        assert wrapped is not getattr(optuna.storages.RDBStorage, name), name
        assert wrapped.__wrapped__ is getattr(optuna.storages.RDBStorage, name), name


@pytest.fixture
def failing_statements(store: RetryingRDBStorage) -> Iterator[Callable[[int], None]]:
    """``fail(n)``: the next ``n`` SQL statements on ``store`` raise a dropped-connection error."""
    left = [0]

    def before_cursor_execute(*args: Any) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise _operational("server closed the connection (injected)")

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", before_cursor_execute)
    yield lambda n: left.__setitem__(0, n)
    sqlalchemy.event.remove(store.engine, "before_cursor_execute", before_cursor_execute)


def test_a_dropped_connection_is_retried_inside_optuna(
    store: RetryingRDBStorage,
    failing_statements: Callable[[int], None],
    no_backoff: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    study = optuna.create_study(storage=store, study_name="s")
    failing_statements(2)
    with caplog.at_level(logging.WARNING, logger="hpsearch.storage"):
        trial = study.ask()  # Optuna wraps the error in StorageInternalError; its cause is transient
        study.tell(trial, 1.0)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]
    retried = [r.getMessage() for r in caplog.records if r.name == "hpsearch.storage"]
    assert len(retried) == 2


def _finish_then_drop(monkeypatch: pytest.MonkeyPatch, values: list[float] | None = None) -> list[int]:
    """Optuna's ``set_trial_state_values`` whose first call commits (``values`` if given: as another
    worker) and then loses the reply, as when the connection drops after the commit."""
    real = optuna.storages.RDBStorage.set_trial_state_values
    calls: list[int] = []

    def lossy(self: Any, trial_id: int, state: TrialState, vals: Any = None) -> bool:
        calls.append(trial_id)
        done = real(self, trial_id, state, values if values is not None and len(calls) == 1 else vals)
        if len(calls) == 1:
            raise optuna.exceptions.StorageInternalError("commit reply lost") from _operational()
        return done

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", lossy)
    return calls


def test_a_finish_whose_reply_was_lost_is_not_done_twice(
    store: RetryingRDBStorage, monkeypatch: pytest.MonkeyPatch, no_backoff: None
) -> None:
    study = optuna.create_study(storage=store, study_name="s")
    trial_id = compat.trial_id(study.ask())
    calls = _finish_then_drop(monkeypatch)
    assert store.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5]) is True
    assert calls == [trial_id]  # the retry read the trial back instead of finishing it again
    (trial,) = study.get_trials()
    assert (trial.state, trial.values) == (TrialState.COMPLETE, [0.5])


def test_a_trial_finished_by_someone_else_is_not_taken_for_ours(
    store: RetryingRDBStorage, monkeypatch: pytest.MonkeyPatch, no_backoff: None
) -> None:
    study = optuna.create_study(storage=store, study_name="s")
    trial_id = compat.trial_id(study.ask())
    calls = _finish_then_drop(monkeypatch, values=[0.9])  # other values than ours
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        store.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    assert calls == [trial_id, trial_id]
    assert study.get_trials()[0].values == [0.9]


def test_a_finish_that_failed_before_the_commit_is_simply_done_again(
    store: RetryingRDBStorage, failing_statements: Callable[[int], None], no_backoff: None
) -> None:
    study = optuna.create_study(storage=store, study_name="s")
    trial_id = compat.trial_id(study.ask())
    failing_statements(1)
    assert store.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5]) is True
    assert study.get_trials()[0].values == [0.5]
