"""Optuna's RDB tables written directly, each write one transaction (see the package)."""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from storage.compat.trials import rdb_backend

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

CLAIM_KEY = "hpsearch:claim"  # trial system attr: the token of the claim that started this run


def claim_waiting_trial(study: optuna.Study, *, token: str | None = None, again: bool = False) -> int | None:
    """Atomically switch one WAITING trial to RUNNING; its id, or None when none is waiting.

    Public API: ``Study.ask`` does this too, but creates a new trial when the queue is empty,
    so two workers asking at the end of a budget would overshoot it.

    On an RDB storage, with a ``token``, the claim is one transaction of hpsearch's own, on
    Optuna's tables: the first WAITING trial (rows locked by another claim are skipped) becomes
    RUNNING, gets its first heartbeat when the storage records them, and the token as a trial
    system attr. ``again``: an earlier attempt with this token may have committed before its
    reply was lost; the trial it claimed is returned instead of claiming another. Optuna's own
    claim (``Study._pop_waiting_trial_id``) is neither: a trial claimed by a lost attempt stays
    RUNNING without any heartbeat, which Optuna never finds stale. Other storages use Optuna's.
    """
    study._thread_local.cached_all_trials = None  # as Study.ask: see trials queued since
    backend = rdb_backend(study._storage)
    if token is None or not isinstance(backend, optuna.storages.RDBStorage):
        trial: int | None = study._pop_waiting_trial_id()
        return trial
    from optuna.storages._rdb import models  # Optuna's schema

    session: Session = backend.scoped_session()
    try:
        claimed = _held_by(session, study._study_id, token) if again else None
        if claimed is None:
            row = (
                session.query(models.TrialModel)
                .filter(models.TrialModel.study_id == study._study_id)
                .filter(models.TrialModel.state == TrialState.WAITING)
                .order_by(models.TrialModel.number)
                .with_for_update(skip_locked=True)
                .first()
            )
            if row is None:
                session.rollback()
                return None
            claimed = int(row.trial_id)
            row.state = TrialState.RUNNING  # an Enum column
            row.datetime_start = datetime.datetime.now()  # as Optuna's
            _upsert_system_attr(session, claimed, CLAIM_KEY, token)
            if backend.heartbeat_interval is not None:
                beat = models.TrialHeartbeatModel.where_trial_id(claimed, session, for_update=True)
                if beat is None:
                    session.add(models.TrialHeartbeatModel(trial_id=claimed))  # now, by the database
                else:
                    beat.heartbeat = session.execute(sqlalchemy.func.now()).scalar()
        session.commit()
        return claimed
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


_MARKERS = threading.Lock()


def insert_study_system_attr(study: optuna.Study, key: str, value: Any) -> bool:
    """Set a study system attr only if it is not set yet, atomically; whether this call set it.

    Public API: ``set_study_system_attr`` overwrites, so two workers promoting the same trial
    at once would both believe they did. On an RDB storage this is one INSERT into Optuna's
    table, whose unique (study, key) index refuses the second; other storages live in one
    process (in-memory) or are written by one (a journal file per study here), so a lock does.
    """
    backend = rdb_backend(study._storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        with _MARKERS:
            if key in study._storage.get_study_system_attrs(study._study_id):
                return False
            study._storage.set_study_system_attr(study._study_id, key, value)
            return True
    from optuna.storages._rdb import models  # Optuna's schema

    row = models.StudySystemAttributeModel(study_id=study._study_id, key=key, value_json=json.dumps(value))
    try:
        with _transaction(backend) as session:
            session.add(row)
    except sqlalchemy.exc.IntegrityError:  # the unique (study, key) index: set already
        return False
    return True


def add_blank_waiting(study: optuna.Study, count: int) -> None:
    """Queue ``count`` blank WAITING trials, in one transaction on an RDB storage.

    Public API: ``study.add_trial`` (and ``add_trials``) commit one transaction per trial: a
    budget of 1,000 took 4.9 s of every ``hpsearch run`` start on SQLite here, and is 1,000
    round trips to a PostgreSQL server. The rows are the ones ``_create_new_trial`` writes for a
    blank WAITING template (the trial row alone, no start time), numbered as it numbers them
    (the study's earlier rows counted) under the same lock on the study's row. Other storages
    get ``add_trial`` per trial.
    """
    backend = rdb_backend(study._storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        for _ in range(count):
            study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))
        return
    from optuna.storages._rdb import models  # Optuna's schema

    trial = models.TrialModel
    with _transaction(backend) as session:
        models.StudyModel.find_or_raise_by_id(study._study_id, session, for_update=True)
        first = (
            session.query(sqlalchemy.func.count(trial.trial_id))
            .filter(trial.study_id == study._study_id)
            .scalar()
        )
        session.add_all(
            trial(
                study_id=study._study_id,
                number=int(first or 0) + i,
                state=TrialState.WAITING,
                datetime_start=None,
            )
            for i in range(count)
        )


def delete_blank_waiting(study: optuna.Study) -> int:
    """Delete the study's trailing blank WAITING trials (no parameters fixed); how many went.

    Public API: none deletes a trial. ``hpsearch run`` queues one blank trial per budget slot;
    when the run ends on its timeout the slots left over would stay in optuna-dashboard as
    hundreds of WAITING trials. A blank holds nothing (its row, no attrs). Only the trailing
    ones go (none after them but blanks): Optuna numbers a new trial by counting the rows
    before it, so deleting rows in the middle would give two trials one number. Only on an RDB
    storage; others keep them (0).
    """
    backend = rdb_backend(study._storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return 0
    from optuna.storages._rdb import models  # Optuna's schema

    trial, attr = models.TrialModel, models.TrialSystemAttributeModel
    with _transaction(backend) as session:
        with_attrs = session.query(attr.trial_id)
        blank = (trial.state == TrialState.WAITING) & trial.trial_id.not_in(with_attrs)
        last_kept = (
            session.query(sqlalchemy.func.max(trial.trial_id))
            .filter(trial.study_id == study._study_id, ~blank)
            .scalar()
        )
        rows = session.query(trial.trial_id).filter(trial.study_id == study._study_id, blank)
        if last_kept is not None:
            rows = rows.filter(trial.trial_id > last_kept)
        ids = [int(row[0]) for row in rows.with_for_update(skip_locked=True).all()]
        if ids:
            session.query(trial).filter(trial.trial_id.in_(ids)).delete(synchronize_session=False)
    _forget_cached(study._storage, ids)
    study._thread_local.cached_all_trials = None
    return len(ids)


def _forget_cached(store: optuna.storages.BaseStorage, ids: Sequence[int]) -> None:
    """Drop deleted trials from Optuna's cache around an RDB storage (``_CachedStorage``)."""
    cache = getattr(store, "_trial_id_to_study_id_and_number", None)
    if cache is None:
        return
    with store._lock:  # type: ignore[attr-defined]  # the cache's own
        for trial_id in ids:
            found = cache.pop(trial_id, None)
            if found is None:
                continue
            store._study_id_and_number_to_trial_id.pop(found, None)  # type: ignore[attr-defined]
            info = store._studies.get(found[0])  # type: ignore[attr-defined]
            if info is not None:
                info.trials.pop(found[1], None)
                info.unfinished_trial_ids.discard(trial_id)


@contextlib.contextmanager
def _transaction(backend: optuna.storages.RDBStorage) -> Iterator[Session]:
    """A session of Optuna's RDB storage: committed at the end, rolled back on an error."""
    session: Session = backend.scoped_session()
    try:
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


def _held_by(session: Session, study: int, token: str) -> int | None:
    """The RUNNING trial of ``study`` that the claim ``token`` started, if any."""
    from optuna.storages._rdb import models

    attr = models.TrialSystemAttributeModel
    found = (
        session.query(attr.trial_id)
        .join(models.TrialModel, models.TrialModel.trial_id == attr.trial_id)
        .filter(models.TrialModel.study_id == study)
        .filter(models.TrialModel.state == TrialState.RUNNING)
        .filter(attr.key == CLAIM_KEY, attr.value_json == json.dumps(token))
        .first()
    )
    return None if found is None else int(found[0])


def _upsert_system_attr(session: Session, trial: int, key: str, value: Any) -> None:
    from optuna.storages._rdb import models

    attr = models.TrialSystemAttributeModel
    found = session.query(attr).filter(attr.trial_id == trial, attr.key == key).one_or_none()
    if found is None:
        session.add(attr(trial_id=trial, key=key, value_json=json.dumps(value)))
    else:
        found.value_json = json.dumps(value)  # a re-queued copy's inherited one


def upsert_trial_user_attrs(
    backend: optuna.storages.RDBStorage, trial: int, attrs: Mapping[str, Any], *, finished_ok: bool
) -> None:
    """Write several user attrs of one trial in one transaction, into Optuna's own table.

    Public API: ``set_trial_user_attr`` is one transaction per key (about fifteen per trial), and
    refuses a finished trial (``hpsearch evaluate`` adds test metrics to a COMPLETE one). The
    rows are those ``set_trial_user_attr`` writes, so every reader sees no difference.
    """
    from optuna.storages._rdb import models  # Optuna's schema

    table = models.TrialUserAttributeModel
    rows = [{"trial_id": trial, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
    with _transaction(backend) as session:
        found_trial = models.TrialModel.find_or_raise_by_id(trial, session)
        if not finished_ok:
            state: TrialState = found_trial.state  # type: ignore[assignment]  # an Enum column
            backend.check_trial_is_updatable(trial, state)
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
                found = session.query(table).filter_by(trial_id=trial, key=row["key"]).one_or_none()
                if found is None:
                    session.add(table(**row))
                else:
                    found.value_json = row["value_json"]


def _dialect_insert(dialect: str) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert
