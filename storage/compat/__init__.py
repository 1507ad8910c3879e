"""The one door to third-party internals: every private Optuna / optuna-dashboard / KerasTuner /
TensorFlow API.

Each function says why the public API does not do; each has a test that reads its effect back
through a public API (``tests/storage/test_compat.py``), so an upgrade that moves an internal
fails there first. Three modules: :mod:`~storage.compat.trials` (Optuna's studies and trials),
:mod:`~storage.compat.rows` (Optuna's RDB tables written directly: claims, markers, the queue),
:mod:`~storage.compat.libraries` (optuna-dashboard, KerasTuner, TensorFlow); callers import
this package. pyproject.toml bounds these libraries below their next major release.

It lives in ``storage``, the bottom layer, so that every package reaches it without importing
upwards; it imports nothing of ours outside it. optuna-dashboard and KerasTuner load lazily, only when
the functions that need them run; TensorFlow is never imported here (only used if imported).
"""

from storage.compat.libraries import (
    dashboard_note_attrs,
    kt_kind,
    release_custom_gradients,
    suggesting_hyperparameters,
)
from storage.compat.rows import (
    CLAIM_KEY,
    add_blank_waiting,
    claim_waiting_trial,
    delete_blank_waiting,
    insert_study_system_attr,
    upsert_trial_user_attrs,
)
from storage.compat.trials import (
    RDB_METHODS,
    BaseHeartbeat,
    fix_params,
    fixed_params,
    pareto_front,
    rdb_backend,
    study_id,
    study_storage,
    trial_id,
    update_cached_user_attrs,
)

__all__ = [
    "CLAIM_KEY",
    "RDB_METHODS",
    "BaseHeartbeat",
    "add_blank_waiting",
    "claim_waiting_trial",
    "dashboard_note_attrs",
    "delete_blank_waiting",
    "fix_params",
    "fixed_params",
    "insert_study_system_attr",
    "kt_kind",
    "pareto_front",
    "rdb_backend",
    "release_custom_gradients",
    "study_id",
    "study_storage",
    "suggesting_hyperparameters",
    "trial_id",
    "update_cached_user_attrs",
    "upsert_trial_user_attrs",
]
