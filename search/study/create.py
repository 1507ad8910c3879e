"""Create or load studies; open them as queues with the space's sampler and pruner.

A study carries its space: the YAML text is stored as a study user attr, so a worker needs only
the storage URL and the study name.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

import spaces
from search import keys
from search.errors import ConfigError, StorageError
from search.hypermodels import binding
from search.study import asha, data_ref
from search.study.queue import QueueStudy
from spaces import Space
from spaces.optuna import make_pruner, make_sampler

__all__ = ["create_or_load", "load_space", "open_study"]


def create_or_load(
    space: Space, storage: optuna.storages.BaseStorage, *, study_name: str | None = None
) -> QueueStudy:
    """Create the study for ``space`` (named ``space.name`` by default) or resume it.

    Resuming checks that the stored space means the same as ``space``: a study whose search
    space changed under it would mix incomparable trials.

    Raises:
        ConfigError: the study exists with a different space or was not made by hpsearch.
    """
    name = study_name or space.name
    attrs = _study_attrs(storage, name)
    if attrs is not None:
        stored = attrs.get(keys.FINGERPRINT)
        if stored is None:
            raise ConfigError(f"study {name!r} exists but was not created by hpsearch; pick another --study")
        if stored != space.fingerprint:
            raise ConfigError(
                f"study {name!r} exists with a different space (from {attrs.get(keys.SOURCE, '?')}); "
                "run it with the same space or pick another --study"
            )
        binding.check_resume(attrs, space, name)
        data_ref.check_resume(attrs, space, name)
        return _named(open_study(space, storage, name), space)  # studies made before metric names
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=list(space.directions),
        sampler=make_sampler(space),
        pruner=_study_pruner(space),
        load_if_exists=True,  # another worker may create it between the check and here
    )
    study.set_user_attr(keys.SPACE, space.text)
    study.set_user_attr(keys.FINGERPRINT, space.fingerprint)
    study.set_user_attr(keys.METRICS, list(space.metrics))
    study.set_user_attr(keys.SOURCE, space.source)
    binding.record(study, space)
    data_ref.record(study, space)
    return _named(open_study(space, storage, name), space)


def _named(study: QueueStudy, space: Space) -> QueueStudy:
    """Name the objectives (plots and optuna-dashboard label their axes with the names)."""
    if study.metric_names != list(space.metrics):
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(space.metrics))
    return study


def open_study(
    space: Space, storage: optuna.storages.BaseStorage, name: str, *, worker: int = 0
) -> QueueStudy:
    """An existing study as a :class:`QueueStudy` with the space's sampler and pruner.

    The sampler is seeded from ``sampler.seed``, the number of trials already in the study and
    the worker's index, so a resumed study does not replay its random start-up points and
    parallel workers do not sample the same ones.
    """
    n_trials = len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    study = QueueStudy(
        study_name=name,
        storage=storage,
        sampler=make_sampler(space, seed_offset=n_trials + 100_003 * worker),
        pruner=_study_pruner(space),
    )
    study.on_claim = asha.on_claim(space)
    return study


def load_space(storage: optuna.storages.BaseStorage, study_name: str, *, data: str | None = None) -> Space:
    """The space stored in a study by :func:`create_or_load`, its data file bound.

    A file dataset is read from the path the study recorded, or from ``data`` (the caller's own
    copy; a loader's ``FILE.py:NAME``), and checked by sha256 when it is loaded
    (:mod:`search.study.data_ref`).
    """
    attrs = _study_attrs(storage, study_name)
    if attrs is None:
        known = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage)) or "none"
        raise StorageError(f"no study named {study_name!r} in this storage; studies: {known}")
    text = attrs.get(keys.SPACE)
    if not isinstance(text, str):
        raise ConfigError(
            f"study {study_name!r} has no hpsearch space (it was not created by hpsearch); "
            "best, report and export read it"
        )
    return data_ref.bind(spaces.loads(text, source=f"study {study_name}"), attrs, study_name, data)


def _study_pruner(space: Space) -> optuna.pruners.BasePruner:
    # Optuna's Trial.report raises in multi-objective studies; pruning there is done elsewhere.
    if space.is_multi_objective:
        return optuna.pruners.NopPruner()
    return make_pruner(space.pruner)


def _study_attrs(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any] | None:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id)
