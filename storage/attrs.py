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
    >>> set_user_attrs(study._storage, trial._trial_id, {"a": 1, "b": [2, 3]})
    >>> trial.user_attrs == {"a": 1, "b": [2, 3]}
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

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
    backend = getattr(store, "_backend", store)  # optuna's _CachedStorage keeps the RDB here
    if not isinstance(backend, optuna.storages.RDBStorage):
        if finished_ok:
            raise TypeError("only an RDB storage can change a finished trial's user attrs")
        for key, value in attrs.items():
            store.set_trial_user_attr(trial_id, key, value)
        return
    rows = [
        {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()
    ]
    with_retry(_upsert, backend, trial_id, rows, finished_ok)  # an upsert: safe to repeat


def _upsert(
    backend: optuna.storages.RDBStorage, trial_id: int, rows: list[dict[str, Any]], finished_ok: bool
) -> None:
    from optuna.storages._rdb import models  # Optuna's schema: the table set_user_attr writes

    table = models.TrialUserAttributeModel
    session = backend.scoped_session()
    try:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        if not finished_ok:
            state: TrialState = trial.state  # type: ignore[assignment]  # an Enum column
            backend.check_trial_is_updatable(trial_id, state)
        dialect = backend.engine.name
        if dialect in ("sqlite", "postgresql"):
            insert = _dialect_insert(dialect)(table).values(rows)
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=[table.trial_id, table.key],
                    set_={"value_json": insert.excluded.value_json},
                )
            )
        else:  # MySQL and others: the ORM, row by row, still one transaction
            for row in rows:
                found = session.query(table).filter_by(trial_id=trial_id, key=row["key"]).one_or_none()
                if found is None:
                    session.add(table(**row))
                else:
                    found.value_json = row["value_json"]
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def _dialect_insert(dialect: str) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert
