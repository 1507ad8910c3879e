"""Several user attrs of one trial in one database transaction.

Optuna writes each ``trial.set_user_attr`` as its own transaction (a trial lookup, an upsert, a
commit). A trial records about fifteen attrs, so on SQLite and PostgreSQL hpsearch writes them
in a few batches instead: one transaction, one state check and one multi-row upsert each, into
Optuna's own table (the same rows ``set_user_attr`` writes; readers see no difference). Other
storages (journal, gRPC, in-memory) get one ``set_trial_user_attr`` per key.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> set_user_attrs(compat.study_storage(study), compat.trial_id(trial), {"a": 1, "b": [2, 3]})
    >>> study.trials[0].user_attrs == {"a": 1, "b": [2, 3]}
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from storage import compat
from storage.retry import with_retry

__all__ = ["set_user_attrs"]


def set_user_attrs(
    store: optuna.storages.BaseStorage, trial_id: int, attrs: Mapping[str, Any], *, finished_ok: bool = False
) -> None:
    """Writes ``attrs`` to the trial's user attrs, in one transaction on an RDB storage.

    Args:
        store: the study's storage (Optuna's cache around an RDB storage is looked through).
        trial_id: the trial's storage id.
        attrs: JSON-serializable values by key; existing keys are overwritten.
        finished_ok: also write to a finished trial (``hpsearch evaluate`` adds test metrics
            to a COMPLETE trial, which Optuna's API refuses). RDB storages only.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: the trial is finished and ``finished_ok``
            is false.
    """
    if not attrs:
        return
    backend = compat.rdb_backend(store)
    if not isinstance(backend, optuna.storages.RDBStorage):
        if finished_ok:
            raise TypeError("only an RDB storage can change a finished trial's user attrs")
        for key, value in attrs.items():
            store.set_trial_user_attr(trial_id, key, value)
        return
    # an upsert: safe to repeat
    with_retry(compat.upsert_trial_user_attrs, backend, trial_id, attrs, finished_ok=finished_ok)
