"""Heartbeats on the journal and gRPC storages (Optuna has none there): hpsearch's, kept in a trial
system attr, driven by Optuna's own heartbeat thread and stale-trial recovery.

The gRPC storage is a real ``hpsearch storage-proxy`` process in front of a SQLite file. Another
storage object on the same file or proxy plays the other worker. Staleness is tested on beats
dated in the past, not by waiting for them to age.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

import storage
from search.study.queue import QueueStudy, requeue
from storage import compat
from tests.helpers import free_port, subprocess_env, wait_until


@pytest.fixture(params=["journal", "grpc"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "journal":
        yield f"journal://{tmp_path / 'j.log'}"
        return
    pytest.importorskip("grpc")
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "search", "storage-proxy", "--storage", f"sqlite:///{tmp_path / 'p.db'}",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env(),
    )  # fmt: skip
    assert proxy.stdout is not None
    try:
        assert "serving" in proxy.stdout.readline()
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)


def _open(url: str) -> optuna.storages.BaseStorage:
    """As a worker opens it: beats every second, stale after 3 s, stale trials re-queued."""
    return storage.open_storage(url, heartbeat_interval=1, stale_trial_callback=requeue)


def _queued(url: str, n: int) -> optuna.Study:
    study = optuna.create_study(storage=_open(url), study_name="h")
    for x in range(n):
        study.enqueue_trial({"x": float(x)})
    return study


def _beat(url: str, number: int) -> float | None:
    """The last heartbeat of trial ``number``, read by another worker."""
    beat = optuna.load_study(study_name="h", storage=_open(url)).trials[number].system_attrs
    return beat.get(storage.HEARTBEAT_KEY)


def test_optunas_heartbeat_thread_beats_through_hpsearchs_heartbeats(url: str) -> None:
    store = _open(url)
    assert store.get_heartbeat_interval() == 1  # type: ignore[attr-defined]
    study = _queued(url, 1)
    seen: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        # plain Optuna claims without a beat: a beat can only come from Optuna's heartbeat thread
        seen.append(wait_until(lambda: _beat(url, trial.number), timeout=30, what="a heartbeat"))
        return 1.0

    study.optimize(objective, n_trials=1)
    assert seen and time.time() - 60 < seen[0] <= time.time()
    assert study.trials[0].state == TrialState.COMPLETE


def test_a_dead_workers_trial_is_failed_and_requeued(url: str) -> None:
    study = QueueStudy(study_name="h", storage=compat.study_storage(_queued(url, 2)))
    trial = study.ask()  # the claim beats at once
    trial.suggest_float("x", 0, 10)
    beat = _beat(url, trial.number)
    assert beat is not None
    other = optuna.load_study(study_name="h", storage=_open(url))
    fail_stale_trials(other)
    assert [t.state for t in other.trials] == [TrialState.RUNNING, TrialState.WAITING]  # alive: kept

    compat.study_storage(study).set_trial_system_attr(
        compat.trial_id(trial), storage.HEARTBEAT_KEY, beat - 60
    )
    fail_stale_trials(other)  # its worker died a minute ago
    states = [t.state for t in other.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
    copy = other.trials[2]
    assert copy.params == {"x": 0.0} and copy.system_attrs["failed_trial"] == 0
    assert storage.HEARTBEAT_KEY not in copy.system_attrs and compat.CLAIM_KEY not in copy.system_attrs


def test_a_heartbeat_never_raises(url: str) -> None:
    study = _queued(url, 1)
    trial = study.ask()
    study.tell(trial, 1.0)
    store = compat.study_storage(study)
    store.record_heartbeat(compat.trial_id(trial))  # type: ignore[attr-defined]  # finished: nothing to do
    beats = [threading.Thread(target=store.record_heartbeat, args=(10**6,)) for _ in range(2)]  # type: ignore[attr-defined]
    for b in beats:  # no such trial: a warning, not a dead thread
        b.start()
        b.join()
    assert study.trials[0].state == TrialState.COMPLETE


def test_without_heartbeats_the_storages_are_optunas_own(tmp_path: Path) -> None:
    journal = storage.open_storage(f"journal://{tmp_path / 'j.log'}", heartbeat_interval=None)
    assert type(journal) is optuna.storages.JournalStorage
