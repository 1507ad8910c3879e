"""Pruning: a Keras callback that reports a metric to Optuna each epoch and asks to prune.

Single-objective studies use Optuna's own ``trial.report`` / ``trial.should_prune`` with the
pruner built by :func:`search.study.make_pruner`.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import optuna

__all__ = ["PruningCallback"]


class PruningCallback(keras.callbacks.Callback):
    """Reports ``metric`` after every epoch; on a prune decision stops training.

    It does not raise inside ``fit``: the objective raises ``TrialPruned`` after ``fit``
    returns, so a pruned trial still records its curves and training time.
    """

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        super().__init__()
        self.trial = trial
        self.metric = metric
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=epoch + 1)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True
