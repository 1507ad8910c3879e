"""Database outages under real workers: ridden out below the limit, a clean exit past it.

PostgreSQL here is a server of the test's own (``tests/storage/pg_cluster.py``), stopped and
started again while real `hpsearch worker` processes train tiny Keras models: the shared server
on 127.0.0.1:5432 is never touched. Heartbeats every 2 s (stale after 6 s), so that an outage
is ten times the grace period and recovery is quick.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

import spaces
import storage
from search.study import open_storage
from search.study.create import create_or_load
from search.study.queue import slots, top_up
from tests.helpers import TINY, space_text, subprocess_env, wait_until
from tests.storage.pg_cluster import Cluster, own_cluster

OUTAGE_S = 60
BUDGET = 30
# ~1 s a trial: the budget below lasts well past the moment the server is stopped
STEADY = {"dataset": {"limit": 300}, "training": {"epochs": 4}}
SLOW = {"dataset": {"limit": 400}, "training": {"epochs": 60}}  # ~5-10 s a trial


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with own_cluster() as own:
        yield own


def _queued_study(url: str, budget: int, **sections: Any) -> None:
    text = space_text("many", base=TINY, **sections)
    study = create_or_load(spaces.loads(text, source="test"), open_storage(url))
    top_up(study, budget)


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    store = storage.open_storage(url, heartbeat_interval=None)
    return optuna.load_study(study_name="many", storage=store).get_trials()


def _count(url: str, state: str) -> int:
    return sum(t.state.name == state for t in _trials(url))


class _Worker:
    """`hpsearch worker` with its stdout and stderr in files (a pipe nobody reads could fill)."""

    def __init__(self, url: str, folder: Path, index: int, **env: str) -> None:
        self.out, self.err = folder / f"w{index}.out", folder / f"w{index}.err"
        cmd = [
            sys.executable,
            "-m",
            "search",
            "worker",
            "--study",
            "many",
            "--storage",
            url,
            "--index",
            str(index),
        ]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, env=subprocess_env(HPSEARCH_HEARTBEAT="2", **env)
            )

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.timeout(900)
def test_three_workers_ride_out_a_60_s_outage_and_finish_the_budget(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.create_database("outage")
    _queued_study(url, budget=BUDGET, **STEADY)
    workers = [_Worker(url, tmp_path, i) for i in range(3)]
    try:
        wait_until(lambda: _count(url, "COMPLETE") >= 3 and _count(url, "RUNNING"), timeout=300,
                   what="the workers running trials")  # fmt: skip
        cluster.stop()
        stopped = time.monotonic()
        # the server stays down for OUTAGE_S seconds; no worker may give up meanwhile (before the
        # fix they all died after ~30 s of retries)
        while time.monotonic() - stopped < OUTAGE_S:
            gone = [w.output() for w in workers if w.proc.poll() is not None]
            assert not gone, gone
            time.sleep(1)
        cluster.start()
        codes = [w.wait(timeout=600) for w in workers]
    finally:
        for w in workers:
            w.kill()
    outputs = [w.output() for w in workers]
    assert codes == [0, 0, 0], outputs
    assert not any("Traceback" in o for o in outputs), outputs
    # each worker met the outage and saw the server come back
    for o in outputs:
        assert "transient database error" in o and "database reachable again after" in o, o
    trials = _trials(url)
    counts = slots(trials)
    # nothing lost or duplicated: exactly the budget finished; a trial declared stale is failed
    # and re-queued (counted in `requeued`, its copy ran); nothing is left RUNNING or WAITING
    assert (counts.done, counts.running, counts.waiting) == (BUDGET, 0, 0)
    assert sum(t.state.name == "COMPLETE" for t in trials) == BUDGET
    assert sum(t.state.name == "FAIL" for t in trials) == counts.requeued
    assert len(trials) == BUDGET + counts.requeued


@pytest.mark.timeout(600)
def test_past_the_limit_a_worker_exits_with_one_line_and_its_trial_is_recovered(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = cluster.create_database("limit")
    _queued_study(url, budget=1, **SLOW)
    worker = _Worker(url, tmp_path, 0, HPSEARCH_DB_OUTAGE_S="5")
    try:
        wait_until(lambda: any(t.state.name == "RUNNING" and t.params for t in _trials(url)), timeout=300,
                   what="a running trial")  # fmt: skip
        cluster.stop()
        code = worker.wait(timeout=120)  # 5 s of outage, then the trial's next batch at most
    finally:
        worker.kill()
    errors = worker.err.read_text()
    assert code != 0, worker.output()
    assert "Traceback" not in worker.output()
    (line,) = [x for x in errors.splitlines() if x.startswith("hpsearch:")]
    assert errors.splitlines()[-1] == line
    assert line.startswith("hpsearch: error: worker stopped: database unreachable for "), line
    assert (
        "(HPSEARCH_DB_OUTAGE_S=5)" in line and "trial 0 stays RUNNING until its heartbeats are stale" in line
    )

    cluster.start()
    (lost,) = [t for t in _trials(url) if t.state.name == "RUNNING"]
    rescuer = subprocess.run(
        [sys.executable, "-m", "search", "worker", "--study", "many", "--storage", url],
        capture_output=True, text=True, timeout=300, env=subprocess_env(HPSEARCH_HEARTBEAT="2"),
    )  # fmt: skip
    assert rescuer.returncode == 0, rescuer.stdout + rescuer.stderr
    trials = _trials(url)
    assert trials[lost.number].state.name == "FAIL"
    copy = next(t for t in trials if t.system_attrs.get("failed_trial") == lost.number)
    assert copy.state.name == "COMPLETE" and copy.params == lost.params
    assert (slots(trials).done, slots(trials).running, slots(trials).waiting) == (1, 0, 0)
