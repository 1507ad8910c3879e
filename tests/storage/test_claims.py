"""storage.claim: WAITING -> RUNNING once, with the trial's first heartbeat, even when the reply to
the claim is lost (the commit succeeded, then the connection dropped) and the claim is retried.

The lost reply is injected after the commit of whichever transaction switched a trial to RUNNING,
so the same test tells Optuna's claim (which a retry turns into a second claim, leaving the first
trial RUNNING without a heartbeat: never found stale) from hpsearch's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import optuna
import pytest
import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.orm
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

import storage
from search.study.queue import QueueStudy, requeue
from storage import compat, outage, retry
from tests.helpers import wait_until


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_DELAY_S", 0.0)  # retries without waiting
    monkeypatch.setattr(outage, "STATE", outage.Outage())
    monkeypatch.delenv(outage.OUTAGE_VAR, raising=False)


def _queued(url: str, n: int, *, heartbeat: int = 10) -> optuna.Study:
    store = storage.open_storage(url, heartbeat_interval=heartbeat, stale_trial_callback=requeue)
    study = optuna.create_study(storage=store, study_name="c")
    for x in range(n):
        study.enqueue_trial({"x": float(x)})
    return study


@pytest.fixture
def lose_reply() -> Iterator[list[int]]:
    """Once armed (``armed.append(1)``), the next commit that switches a trial to RUNNING succeeds,
    and then raises a dropped-connection error, as if the reply had been lost."""
    armed: list[int] = []
    claiming: set[int] = set()

    def after_flush(session: sqlalchemy.orm.Session, context: Any) -> None:
        for row in session.dirty:
            if type(row).__name__ == "TrialModel" and row.state == TrialState.RUNNING:
                claiming.add(id(session))

    def after_commit(session: sqlalchemy.orm.Session) -> None:
        if armed and id(session) in claiming:
            armed.clear()
            raise sqlalchemy.exc.OperationalError(
                "COMMIT", {}, Exception("server closed the connection (lost reply)")
            )

    def after_rollback(session: sqlalchemy.orm.Session) -> None:
        claiming.discard(id(session))

    events = [
        ("after_flush", after_flush),
        ("after_commit", after_commit),
        ("after_rollback", after_rollback),
    ]
    for name, fn in events:
        sqlalchemy.event.listen(sqlalchemy.orm.Session, name, fn)
    yield armed
    for name, fn in events:
        sqlalchemy.event.remove(sqlalchemy.orm.Session, name, fn)


def _heartbeats(study: optuna.Study) -> set[int]:
    backend = compat.rdb_backend(compat.study_storage(study))
    assert isinstance(backend, optuna.storages.RDBStorage)
    with backend.engine.connect() as db:
        return {row[0] for row in db.execute(sqlalchemy.text("SELECT trial_id FROM trial_heartbeats"))}


@pytest.mark.backends("sqlite", "postgresql")
def test_a_claim_whose_reply_was_lost_returns_the_trial_it_claimed(
    storage_url: str, lose_reply: list[int]
) -> None:
    queued = _queued(storage_url, 2)
    study = QueueStudy(study_name="c", storage=compat.study_storage(queued))  # as a worker claims
    first = compat.trial_id(study.get_trials()[0])
    lose_reply.append(1)
    claimed = study.ask()
    assert not lose_reply  # the reply was lost, and the claim retried
    assert compat.trial_id(claimed) == first
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.WAITING]  # not two claims
    assert _heartbeats(study) == {first}  # beating from the claim on: it can go stale if its worker dies


@pytest.mark.backends("sqlite", "postgresql")
def test_a_claim_given_up_after_its_commit_leaves_a_trial_that_is_recovered(
    storage_url: str, lose_reply: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _queued(storage_url, 1, heartbeat=1)  # stale after 3 s
    monkeypatch.setenv(outage.OUTAGE_VAR, "0")  # the first lost reply is past the limit
    lose_reply.append(1)
    with pytest.raises(storage.DatabaseUnavailable, match="lost reply"):
        storage.claim(study)
    (orphan,) = study.get_trials()
    assert orphan.state == TrialState.RUNNING  # claimed, but its worker never learnt it
    assert _heartbeats(study) == {compat.trial_id(orphan)}

    def recovered() -> bool:
        fail_stale_trials(study)  # what the next worker does before each trial
        return [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]

    wait_until(recovered, timeout=30, what="the orphaned claim failed and re-queued", poll=0.5)
    copy = study.get_trials()[1]
    assert copy.params == orphan.params and copy.system_attrs["failed_trial"] == orphan.number
    assert compat.CLAIM_KEY not in copy.system_attrs  # the copy does not look claimed


def test_claims_without_an_rdb_storage_use_optunas_and_beat_at_once(tmp_path: Any) -> None:
    study = _queued(f"journal://{tmp_path / 'j.log'}", 2)
    claimed = storage.claim(study)
    (running, waiting) = study.get_trials()
    assert claimed == compat.trial_id(running) and running.state == TrialState.RUNNING
    assert isinstance(running.system_attrs[storage.HEARTBEAT_KEY], float)
    assert waiting.state == TrialState.WAITING and storage.HEARTBEAT_KEY not in waiting.system_attrs
    assert storage.claim(study) == compat.trial_id(waiting)
    assert storage.claim(study) is None
