"""What any Optuna study holds, whoever made it: objective names, the space, trial durations.

hpsearch records its own facts (the objectives' names, the space's text, ``train_seconds``);
a study made by a plain Optuna script has Optuna's alone (``study.metric_names`` if its script
set them, timestamps). The readers here prefer hpsearch's and fall back to Optuna's, so
``studies``, ``best``, ``report`` and ``export`` show any study.

Example:
    >>> import optuna
    >>> metric_names(optuna.create_study(directions=["minimize", "maximize"]))
    ['values_0', 'values_1']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial

from search import keys
from search.errors import StorageError

__all__ = ["duration", "elapsed", "load_study", "metric_names", "space_text", "value_columns"]


def load_study(store: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Study ``name`` of ``store``, made by hpsearch or not.

    Raises:
        StorageError: no study of that name (the message lists the ones there are).
    """
    try:
        store.get_study_id_from_name(name)
    except KeyError:
        known = ", ".join(s.study_name for s in optuna.get_all_study_summaries(store)) or "none"
        raise StorageError(f"no study named {name!r} in this storage; studies: {known}") from None
    return optuna.load_study(study_name=name, storage=store)


def _names(value: object, count: int) -> list[str] | None:
    if isinstance(value, (list, tuple)) and len(value) == count and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def metric_names(study: optuna.Study) -> list[str]:
    """The objectives' names: hpsearch's metrics, else the script's ``study.set_metric_names``,
    else Optuna's own column names (``value``; ``values_0``, ``values_1``, ... for several)."""
    count = len(study.directions)
    named = _names(study.user_attrs.get(keys.METRICS), count) or _names(study.metric_names, count)
    if named is not None:
        return named
    return ["value"] if count == 1 else [f"values_{i}" for i in range(count)]


def value_columns(study: optuna.Study, metrics: Sequence[str]) -> list[str]:
    """The CSV columns of the objective values, named as Optuna's ``trials_dataframe`` names them:
    ``values_<metric>`` for named objectives, else ``value`` or ``values_<i>``."""
    if _names(study.user_attrs.get(keys.METRICS), len(metrics)) or study.metric_names is not None:
        return [f"values_{m}" for m in metrics]
    return list(metrics)


def space_text(study: optuna.Study) -> str | None:
    """The YAML text of the space hpsearch stored in the study; None for a study made without it."""
    text = study.user_attrs.get(keys.SPACE)
    return text if isinstance(text, str) else None


def elapsed(trial: FrozenTrial) -> float | None:
    """Seconds from the trial's start to its completion; None while it runs (or never started)."""
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def duration(trial: FrozenTrial) -> float | None:
    """Seconds the trial took: hpsearch's ``train_seconds``, else :func:`elapsed`."""
    recorded = trial.user_attrs.get(keys.TRAIN_SECONDS)
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool) and math.isfinite(recorded):
        return float(recorded)
    return elapsed(trial)
