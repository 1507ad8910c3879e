"""Which trials count: the best one or the Pareto front, a trial picked by number, its epochs.

Example:
    >>> import optuna
    >>> study = optuna.create_study(direction="maximize")
    >>> study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    >>> best_trials(study)[0].number == study.best_trial.number
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.errors import ConfigError, HPSearchError
from spaces import Objective
from storage import compat

__all__ = ["best_epoch", "best_trials", "choose_trial", "chosen_epochs", "final_metrics", "trial_params"]


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (single objective) or the Pareto front, ordered by the first objective.

    The front's trials are the storage's own, not copies: callers only read them. Optuna's
    ``study.best_trials`` deep-copies every trial of the study (their curves included) to
    find the front, 88 ms at 1,000 trials here, and a worker asks after every trial.
    """
    if len(study.directions) == 1:
        try:
            return [study.best_trial]
        except ValueError:
            return []
    front = compat.pareto_front(study.get_trials(deepcopy=False), study.directions)
    reverse = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return sorted(front, key=lambda t: t.values[0], reverse=reverse)


def choose_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number``, or by default the best trial (multi-objective: the Pareto trial that is
    best on the first objective)."""
    if number is None:
        best = best_trials(study)
        if not best:
            raise HPSearchError(f"study {study.study_name!r} has no completed trial to evaluate")
        return best[0]
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise ConfigError(f"--trial {number}: study {study.study_name!r} has trials 0..{len(trials) - 1}")
    trial = trials[number]
    if trial.state != TrialState.COMPLETE:
        raise ConfigError(f"--trial {number}: the trial is {trial.state.name}, not COMPLETE")
    return trial


def trial_params(trial: FrozenTrial) -> dict[str, Any]:
    """Every hyperparameter the trial trained with (per-layer values back as tuples)."""
    params = trial.user_attrs.get(keys.PARAMS)
    if not isinstance(params, dict):
        raise HPSearchError(f"trial {trial.number} has no recorded params; it was not run by hpsearch")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def chosen_epochs(trial: FrozenTrial, params: dict[str, Any]) -> int:
    """Epochs to retrain: the trial's ``best_epoch`` (worked out from its curves for trials
    recorded before that attr existed, whose early stopping always watched ``val_loss``), else
    its budget."""
    value = trial.user_attrs.get(keys.BEST_EPOCH)
    if isinstance(value, int) and value > 0:
        return value
    curves = trial.user_attrs.get(keys.CURVES)
    if isinstance(curves, dict) and curves.get("val_loss"):
        return best_epoch(curves, params["patience"] > 0, Objective("val_loss", "minimize"))
    return int(params["epochs"])


def best_epoch(curves: dict[str, list[float]], restored_best: bool, watched: Objective) -> int:
    """The epoch (1-based) whose weights training leaves behind; 0 when no epoch finished.

    Keras 3's ``EarlyStopping(restore_best_weights=True)`` restores the first epoch with the
    best value of the ``watched`` metric (``Space.watched``) at the end of training, also when
    training ran all its epochs without stopping early; without it the last epoch's weights stay.
    """
    epochs = len(curves["val_loss"])
    values = np.asarray(curves.get(watched.metric) or [], dtype=float)
    if restored_best and len(values) == epochs and np.isfinite(values).any():
        best = np.nanargmax if watched.direction == "maximize" else np.nanargmin
        return int(best(values)) + 1
    return epochs


def final_metrics(
    curves: dict[str, list[float]], restored_best: bool, watched: Objective
) -> dict[str, float]:
    """The metrics of the model that training leaves behind: every logged one.

    With early stopping the best weights (``watched``) are restored, so that epoch's metrics are
    reported; otherwise the last epoch's.
    """
    if not curves["val_loss"]:
        return {}
    i = best_epoch(curves, restored_best, watched) - 1
    return {key: values[i] for key, values in curves.items() if key != "epoch_seconds" and len(values) > i}
