"""storage.retry.RetryingRDBStorage: Optuna's RDB storage whose every database call is retried; a
finished trial is never finished twice; heartbeats never kill Optuna's heartbeat thread; no trial
is taken for stale just because the database was down. Backoff is zero here (no real waits).
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
from storage import compat, outage, retry
from storage.errors import DatabaseUnavailable
from storage.retry import RetryingRDBStorage


def _operational(message: str = "server closed the connection") -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(message))


@pytest.fixture(autouse=True)
def _own_outage_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "STATE", outage.Outage())
    monkeypatch.delenv(outage.OUTAGE_VAR, raising=False)


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
    own = {"record_heartbeat", "_get_stale_trial_ids"}  # written out below, tested below
    for name in compat.RDB_METHODS:
        wrapped = getattr(RetryingRDBStorage, name)
        assert wrapped is not getattr(optuna.storages.RDBStorage, name), name
        if name not in own:
            assert wrapped.__wrapped__ is getattr(optuna.storages.RDBStorage, name), name
    assert own <= set(compat.RDB_METHODS)


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
    (said,) = [r.getMessage() for r in caplog.records if r.name == "hpsearch.storage"]  # once an outage
    assert said.startswith("transient database error in ") and "(injected); retrying for up to 120 s" in said


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


# ---- heartbeats ----------------------------------------------------------------------------------


@pytest.fixture
def beating(tmp_path: Path) -> RetryingRDBStorage:
    opened = storage.open_storage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat_interval=1)  # stale after 3 s
    assert isinstance(opened, RetryingRDBStorage)
    return opened


def test_a_heartbeat_never_raises_and_past_the_limit_the_worker_is_told(
    beating: RetryingRDBStorage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    study = optuna.create_study(storage=beating, study_name="s")
    trial_id = compat.trial_id(study.ask())
    monkeypatch.setenv(outage.OUTAGE_VAR, "0")
    told: list[DatabaseUnavailable] = []

    def down(*args: Any) -> None:
        raise _operational("Connection refused")

    sqlalchemy.event.listen(beating.engine, "before_cursor_execute", down)
    with outage.on_give_up(told.append):
        beating.record_heartbeat(trial_id)  # Optuna's heartbeat thread would have died here
        beating.record_heartbeat(trial_id)  # and the next beat tries again, quietly
    sqlalchemy.event.remove(beating.engine, "before_cursor_execute", down)
    assert len(told) == 1 and "Connection refused" in str(told[0])

    def broken(self: Any, trial_id: int) -> None:
        raise ValueError("not a database error")

    monkeypatch.setattr(optuna.storages.RDBStorage, "record_heartbeat", broken)
    with caplog.at_level(logging.WARNING, logger="hpsearch.storage"):
        beating.record_heartbeat(trial_id)  # not silent either
    assert f"heartbeat of trial id {trial_id} not recorded: not a database error" in caplog.messages


def test_no_trial_is_stale_just_because_the_database_was_down(
    beating: RetryingRDBStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = optuna.create_study(storage=beating, study_name="s")
    trial_id = compat.trial_id(study.ask())
    beating.record_heartbeat(trial_id)
    with beating.engine.begin() as db:  # its last beat long ago, as after an outage
        db.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
    study_id = compat.study_id(study)
    assert beating._get_stale_trial_ids(study_id) == [trial_id]

    now = [0.0]
    monkeypatch.setattr(outage, "STATE", outage.Outage(clock=lambda: now[0]))
    outage.STATE.failed("get_trial", _operational(), 120)
    now[0] = 60.0
    outage.STATE.succeeded()  # a 60 s outage just ended: its worker has had no chance to beat yet
    assert beating._get_stale_trial_ids(study_id) == []
    now[0] += 2 * retry.MAX_DELAY_S  # long enough for any live worker to have beaten again
    assert beating._get_stale_trial_ids(study_id) == [trial_id]
