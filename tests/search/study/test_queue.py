"""The budget queue under contention: 4 processes claim trials from one study at full speed.

The objective is trivial (no training): what is tested is that every queued trial is claimed by
exactly one process -- on SQLite that needs transactions that take the write lock at BEGIN.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

import spaces
import storage
from search import keys
from search.study.create import create_or_load
from search.study.queue import requeue, slots, top_up
from tests.helpers import int_range, space_text, subprocess_env

WORKERS = 4
SPACE = space_text("q", model={"units": int_range(8, 512)})
# Each process holds its first trial until as many trials as processes have been claimed, so all
# of them are claiming side by side from then on, whatever order the operating system starts them
# in. The count of claimed (running or complete) trials only grows, so no process can miss it; the
# first ones claimed are one per process, since none claims a second before the count is reached.
# (Waiting for that many *running* trials at once could miss the moment: the others go on, finish
# the queue, and the running count never comes back.)
FAKE_WORKER = """
import contextlib, sys, time, optuna, spaces
from optuna.trial import TrialState
from search.study.queue import QueueEmpty
from search.study.create import open_study
from search.study import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
url, index, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[4])
study = open_study(spaces.loads(sys.argv[3]), open_storage(url), "q", worker=index)
first = [True]
def objective(trial):
    trial.set_user_attr("worker", index)
    deadline = time.monotonic() + 120
    claimed = (TrialState.RUNNING, TrialState.COMPLETE)
    while first[0] and len(study.get_trials(deepcopy=False, states=claimed)) < workers:
        if time.monotonic() > deadline:
            sys.exit(f"worker {index}: the other workers never claimed a trial")
        time.sleep(0.05)
    first[0] = False
    return trial.suggest_int("units_0", 8, 512) / 512, 1.0
with contextlib.suppress(QueueEmpty):
    study.optimize(objective)
"""


def test_every_queued_trial_is_claimed_exactly_once(storage_url: str) -> None:
    store = storage.open_storage(storage_url, heartbeat_interval=None)
    study = create_or_load(spaces.loads(SPACE), store)
    assert top_up(study, 60) == 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FAKE_WORKER, storage_url, str(i), SPACE, str(WORKERS)],
            env=subprocess_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * WORKERS, errors  # a double claim fails its `tell`
    trials = optuna.load_study(study_name="q", storage=store).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 60
    # every process took part: each held a trial before any could claim a second one
    assert {t.user_attrs["worker"] for t in trials} == set(range(WORKERS))
    assert slots(trials).done == 60
    assert top_up(study, 60) == 0  # the budget is covered: nothing more is queued


def test_a_trial_stopped_but_never_requeued_gives_its_slot_back(tmp_path: Path) -> None:
    store = storage.open_storage(f"sqlite:///{tmp_path / 'q.db'}", heartbeat_interval=None)
    study = create_or_load(spaces.loads(SPACE), store)
    top_up(study, 3)
    for handed_back in (True, False):
        trial = study.ask()
        trial.set_user_attr(keys.REQUEUED, True)  # as the objective marks a trial stopped mid-run
        study.tell(trial, state=TrialState.FAIL)
        if handed_back:
            requeue(study, study.get_trials()[trial.number], limited=False)
    counts = slots(study.get_trials())
    # the handed-back one is replaced by its copy; the other (its re-queueing failed: the database
    # went away at that moment) counts as neither done nor re-queued, so its slot is free again
    assert (counts.done, counts.waiting, counts.requeued, counts.used) == (0, 2, 1, 2)
    assert top_up(study, 3) == 1
