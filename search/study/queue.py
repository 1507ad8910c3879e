"""The study's trial budget as a queue: exactly N trials, however many workers share it.

``hpsearch run`` queues one blank WAITING trial per budget slot; workers only *claim* queued
trials (Optuna's atomic WAITING -> RUNNING switch), never create new ones. So 4 workers on a
budget of 40 finish exactly 40 trials, without a lock and without overshooting at the end.

A trial that fails by itself (NaN, out of memory, impossible config) uses up its slot: that
configuration was evaluated. A trial lost with its worker (killed, SIGTERM, stale heartbeat) is
re-queued with the same parameters by Optuna's ``RetryHeartbeatStaleTrialCallback``, so it
does not use up a slot.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

import storage
from search import keys
from storage import compat

__all__ = ["QueueEmpty", "QueueStudy", "Slots", "drop_unrun", "requeue", "slots", "top_up"]


class QueueEmpty(Exception):
    """No queued trial is left to claim."""


class QueueStudy(optuna.Study):
    """A study whose ``ask`` claims a queued trial or raises :class:`QueueEmpty`.

    ``Study.ask`` creates a new trial when the queue is empty; two workers doing that at the
    same moment would overshoot the budget. This override only pops the queue, atomically, with
    the trial's first heartbeat, and safe to retry after a lost reply (:func:`storage.claim`).
    """

    # called with each claimed trial's id before it becomes an optuna.Trial: it may fix the
    # trial's parameters (an ASHA promotion, the baseline; search.study.asha)
    on_claim: Callable[[optuna.Study, int], None] | None = None

    def ask(self, fixed_distributions: dict[str, Any] | None = None) -> optuna.Trial:
        if fixed_distributions:
            raise ValueError("QueueStudy.ask takes no fixed distributions")
        trial_id = storage.claim(self)
        if trial_id is None:
            raise QueueEmpty
        if self.on_claim is not None:
            self.on_claim(self, trial_id)
        return optuna.Trial(self, trial_id)


@dataclass(frozen=True)
class Slots:
    """Where a study's budget stands."""

    done: int  # COMPLETE, PRUNED, or FAIL by the trial's own fault
    running: int
    waiting: int
    requeued: int  # lost with a worker and queued again

    @property
    def used(self) -> int:
        return self.done + self.running + self.waiting


def slots(trials: Sequence[FrozenTrial]) -> Slots:
    """Count a study's trials against its budget.

    A trial stopped to be re-queued (SIGTERM, the database lost) whose re-queueing never
    happened (the database failed right then) does not use up its slot: :func:`top_up` queues
    a trial in its place.
    """
    history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history
    with warnings.catch_warnings():  # "experimental" since Optuna 3.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = {n for t in trials for n in history(t)}
    done = sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.number not in retried and not t.user_attrs.get(keys.REQUEUED))
        for t in trials
    )
    return Slots(
        done=done,
        running=sum(t.state == TrialState.RUNNING for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
        requeued=len(retried),
    )


def top_up(study: optuna.Study, budget: int) -> int:
    """Queue blank trials until the budget is covered; returns how many were queued.

    Call it from one process (the launcher): two concurrent top-ups would both add the same gap.
    """
    missing = budget - slots(study.get_trials(deepcopy=False)).used
    if missing > 0:
        compat.add_blank_waiting(study, missing)  # one transaction, not one per trial
    return max(missing, 0)


def drop_unrun(study: optuna.Study) -> int:
    """After a run that ended on its timeout: delete the blank queued trials nobody ran.

    A budget of 1,000 trials with a 10-minute timeout would otherwise leave ~990 blank WAITING
    trials in optuna-dashboard. Nothing is lost: they hold no parameters, and the next ``hpsearch
    run`` queues the budget again. Done only when no trial is running (a worker elsewhere may
    still be claiming them); trials queued with parameters (re-queued, warm start) stay.
    """
    if any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
        return 0
    return compat.delete_blank_waiting(study)


with warnings.catch_warnings():  # "experimental" since Optuna 2.8
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    _retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    _retry_always = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)


def requeue(study: optuna.Study, trial: FrozenTrial, *, limited: bool = True) -> None:
    """Queue a lost trial again with the same parameters.

    ``limited``: at most 3 times per configuration (a configuration that keeps killing its
    worker is not retried forever); a worker stopped on purpose hands its trial back always.

    The copy does not inherit the lost run's user attrs (curves, reasons; only what makes it an
    ASHA continuation or the baseline) nor its heartbeat and claim: they describe a run that did
    not finish.
    """
    blank = copy.copy(trial)
    # a continuation stays one (search.study.asha): it must not report its first epochs again
    blank.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in (keys.RESUMED_FROM, keys.BASELINE)}
    blank.system_attrs = {
        k: v for k, v in trial.system_attrs.items() if k not in (storage.CLAIM_KEY, storage.HEARTBEAT_KEY)
    }
    blank.intermediate_values = {}
    (_retry if limited else _retry_always)(study, blank)
