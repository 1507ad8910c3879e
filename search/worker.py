"""The worker loop: run trials of one study until its budget, a timeout or too many failures."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from search.errors import TrialFailed
from search.report import trial_line

if TYPE_CHECKING:
    from collections.abc import Callable

    from spaces import Space

__all__ = ["FINISHED", "RunResult", "run"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
MAX_FAILURES_IN_ROW = 5


@dataclass
class RunResult:
    """What one worker did."""

    ran: int
    stop_reason: str | None = None  # set when the worker gave up before the budget


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run(
    study: optuna.Study,
    space: Space,
    objective: Callable[[optuna.Trial], float | tuple[float, ...]],
    *,
    trials: int,
    timeout: float | None = None,
    max_failures_in_row: int = MAX_FAILURES_IN_ROW,
    out: TextIO | None = None,
) -> RunResult:
    """Run trials until the study holds ``trials`` finished trials (all workers together).

    A trial that raises :class:`TrialFailed` ends FAIL and the worker goes on; after
    ``max_failures_in_row`` such failures in a row the worker stops and says why.
    """
    out = out or sys.stdout
    remaining = trials - finished_count(study)
    if remaining <= 0:
        print(
            f"study {study.study_name!r} already has {trials} finished trials; nothing to run "
            "(raise --trials to run more)",
            file=out,
        )
        return RunResult(ran=0)
    progress = _Progress(space, trials, max_failures_in_row, out)
    study.optimize(
        objective,
        n_trials=remaining,
        timeout=timeout,
        catch=(TrialFailed,),
        callbacks=[MaxTrialsCallback(trials, states=FINISHED), progress],
        gc_after_trial=False,  # the objective collects before each build
    )
    return RunResult(ran=progress.ran, stop_reason=progress.stop_reason)


class _Progress:
    """Prints one line per finished trial and enforces the failures-in-a-row limit."""

    def __init__(self, space: Space, total: int, limit: int, out: TextIO) -> None:
        self.space, self.total, self.limit, self.out = space, total, limit, out
        self.start = time.perf_counter()
        self.ran = 0
        self.failures_in_row = 0
        self.stop_reason: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.ran += 1
        done = finished_count(study)
        elapsed = time.perf_counter() - self.start
        print(trial_line(trial, self.space.metrics, done, self.total, elapsed), file=self.out, flush=True)
        self.failures_in_row = self.failures_in_row + 1 if trial.state == TrialState.FAIL else 0
        if self.failures_in_row >= self.limit:
            reason = trial.user_attrs.get("fail_reason", "see the trial's fail_reason")
            self.stop_reason = f"{self.limit} trials failed in a row (last: {reason})"
            study.stop()
