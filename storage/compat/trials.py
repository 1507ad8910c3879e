"""Optuna's studies and trials: the private attributes and helpers hpsearch reads (see the package)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat as _BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study was opened on (with Optuna's cache around an RDB storage).

    Public API: none; ``Study`` keeps it as ``_storage`` (``Trial.storage`` is public, but a
    study callback or a loaded study has no trial).
    """
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's storage id. Public API: ``storage.get_study_id_from_name``, one query more."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's storage id. Public API: ``get_trial_id_from_study_id_trial_number``, one query more
    per call; a worker needs it several times per trial."""
    return trial._trial_id


def update_cached_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """Make a running trial's own copy see user attrs written around ``set_user_attr``.

    Public API: ``trial.set_user_attr`` writes one transaction per key; hpsearch batches them
    (:func:`upsert_trial_user_attrs`) and then updates the trial's cached copy, as
    ``set_user_attr`` does itself.
    """
    trial._cached_frozen_trial.user_attrs.update(attrs)


def fix_params(study: optuna.Study, trial: int, params: Mapping[str, Any]) -> None:
    """Make a RUNNING trial of ours suggest ``params`` (the values ``enqueue_trial`` fixes).

    Public API: ``enqueue_trial`` fixes them on a new WAITING trial, which the next claim would
    not necessarily pick; here a trial already claimed is turned into a promotion. The key is
    the one ``enqueue_trial`` writes and ``optuna.Trial`` reads when it is made.
    """
    study._storage.set_trial_system_attr(trial, "fixed_params", dict(params))


def fixed_params(trial: FrozenTrial) -> dict[str, Any] | None:
    """The values a trial was queued with (``enqueue_trial``, a re-queue, a promotion), if any."""
    fixed = trial.system_attrs.get("fixed_params")
    return dict(fixed) if fixed else None


def pareto_front(
    trials: Sequence[FrozenTrial], directions: Sequence[optuna.study.StudyDirection]
) -> list[FrozenTrial]:
    """The Pareto-optimal trials among ``trials`` (COMPLETE ones, constraints honoured).

    Public API: ``study.best_trials`` finds the same front, but deep-copies every trial of the
    study first (88 ms at 1,000 trials here), and a worker asks after every trial.
    """
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return list(_get_pareto_front_trials_by_trials(complete, list(directions), consider_constraint=True))


# -- Optuna: the RDB storage ---------------------------------------------------------------------

# RDBStorage methods that talk to the database, for storage.retry to wrap. Where a public method
# only delegates to a private one (create_new_trial -> _create_new_trial, get_all_trials ->
# _get_trials), the private one is named: Optuna's cached storage calls those directly.
RDB_METHODS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "_create_new_trial",
    "_set_trial_param",
    "get_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "_get_trials",
    "_get_best_trial_id",
    "record_heartbeat",
    "_get_stale_trial_ids",
)


def rdb_backend(store: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """The ``RDBStorage`` under Optuna's cache (``_CachedStorage._backend``); other storages as they are.

    Public API: none; a study opened on an ``RDBStorage`` wraps it in a private cache class.
    (A ``JournalStorage`` has a ``_backend`` too, its log file: not what is asked for here.)
    """
    inner = getattr(store, "_backend", None)
    return inner if isinstance(inner, optuna.storages.RDBStorage) else store


# -- Optuna: heartbeats ---------------------------------------------------------------------------

# Optuna runs a heartbeat thread beside each trial, and fails stale trials at every ``optimize``
# step, only for a storage that is a ``BaseHeartbeat`` (private: ``optuna.storages._heartbeat``)
# with an interval. storage.heartbeats subclasses it to give the journal and gRPC storages
# heartbeats; its hooks are ``record_heartbeat`` and ``_get_stale_trial_ids``. Public API: none.
BaseHeartbeat = _BaseHeartbeat
