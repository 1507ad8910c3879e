"""Claiming a queued trial, safe to retry: WAITING -> RUNNING with its first heartbeat, once.

A claim whose reply is lost (the connection drops after the commit) must not leave a trial
RUNNING that nobody runs and nobody can recover. On an RDB storage the claim, the trial's first
heartbeat and a token unique to this claim are written in one transaction
(:func:`storage.compat.claim_waiting_trial`), and a retry first looks for the trial holding its
token: the same trial comes back, not a second one. Should the retries give up, that trial has
a heartbeat, goes stale, and is recovered like any trial of a dead worker.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> study.enqueue_trial({"x": 1.0})
    >>> claim(study) == compat.trial_id(study.trials[0])
    True
    >>> claim(study) is None
    True
"""

from __future__ import annotations

import uuid

import optuna

from storage import compat
from storage.heartbeats import SystemAttrHeartbeat
from storage.retry import with_retry

__all__ = ["claim"]


def claim(study: optuna.Study) -> int | None:
    """Switch one WAITING trial of ``study`` to RUNNING and record its first heartbeat; its id.

    None when no trial is waiting. Transient errors are retried (:func:`storage.retry.with_retry`)
    without claiming twice.

    Raises:
        DatabaseUnavailable: the database stayed unreachable past the outage limit.
    """
    store = compat.study_storage(study)
    if not isinstance(compat.rdb_backend(store), optuna.storages.RDBStorage):
        trial_id = compat.claim_waiting_trial(study)
        beats = isinstance(store, SystemAttrHeartbeat) and store.get_heartbeat_interval()
        if beats and trial_id is not None:
            # at once: a worker that dies before Optuna's heartbeat thread starts must still
            # leave a trial that goes stale (one without any beat never does)
            store.record_heartbeat(trial_id)  # type: ignore[attr-defined]  # a SystemAttrHeartbeat
        return trial_id
    token = uuid.uuid4().hex
    attempted = False

    def attempt() -> int | None:
        nonlocal attempted
        again, attempted = attempted, True
        return compat.claim_waiting_trial(study, token=token, again=again)

    attempt.__name__ = "claim_waiting_trial"
    return with_retry(attempt)
