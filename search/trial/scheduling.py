"""A trial's side of ASHA (:mod:`search.study.asha`): judge it at each rung, pause it, continue it.

- :class:`AshaReporter` takes each epoch's pruning metric (as Optuna intermediate values, or
  the ``pruning_curve`` attr in multi-objective studies) and, at a rung, answers whether the
  trial pauses: it goes on only in the top ``1 / reduction_factor`` of the values there.
- :class:`Continuation` is what a promoted trial continues from: it restores the paused
  trial's checkpoint into the freshly built model and trains on from that epoch; without the
  file (another machine, a deleted folder) it retrains from the first epoch and reports only
  the epochs after the paused one, so a configuration counts once per rung.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import optuna

from search import keys
from search.study.asha import Asha, values_at
from search.trial import checkpoint
from search.trial.pruning import CURVE_ATTR

__all__ = ["AshaReporter", "Continuation"]


class AshaReporter:
    """Records the metric each epoch; at a rung, True (stop: pause) unless in the top 1 / eta."""

    def __init__(
        self, trial: optuna.Trial, scheduler: Asha, *, epochs: int, after: int, metric: str, native: bool
    ) -> None:
        self.trial, self.scheduler, self.metric, self.native = trial, scheduler, metric, native
        self.rungs = set(scheduler.rungs(epochs))
        self.after = after  # a continuation: the epochs up to here are the paused trial's
        self.curve: dict[str, float] = {}
        self.reason: str | None = None

    def report(self, value: float, step: int) -> bool:
        if step <= self.after:
            return False
        if self.native:
            self.trial.report(value, step)
        else:
            self.curve[str(step)] = value
            self.trial.set_user_attr(CURVE_ATTR, dict(self.curve))
        if step not in self.rungs:
            return False
        others = values_at(self.trial.study.get_trials(deepcopy=False), step, besides=self.trial.number)
        if self.scheduler.keep_going(value, others):
            return False
        share = f"1/{self.scheduler.eta}"
        self.reason = (
            f"paused at epoch {step}: {self.metric}={value:.4f}, not top {share} of {len(others) + 1} there"
        )
        return True


@dataclass(frozen=True)
class Continuation:
    """Where a trial starts: epoch 0, or a paused trial's epoch (``resumed_from``)."""

    source: int | None = None
    epoch: int = 0
    seconds: float = 0.0  # the paused trial's training seconds, part of this model's cost

    @classmethod
    def of(cls, trial: optuna.Trial) -> Continuation:
        resumed = trial.user_attrs.get(keys.RESUMED_FROM)
        if not isinstance(resumed, dict):
            return cls()
        return cls(int(resumed["trial"]), int(resumed["epoch"]), float(resumed.get("seconds", 0.0)))

    def restore(self, model: keras.Model, directory: Path | None, study: str, params: dict[str, Any]) -> int:
        """Load the paused trial's checkpoint into ``model``; the epoch training starts at."""
        if self.source is None or directory is None:
            return 0
        path = checkpoint.path_for(directory, study, self.source)
        if not checkpoint.restore(model, path, params):
            return 0
        checkpoint.discard(path)  # promoted once: nobody else loads it
        return self.epoch


def pause(model: keras.Model, directory: Path | None, trial: optuna.Trial, params: dict[str, Any]) -> None:
    """Save the paused trial's model where a promotion will look for it."""
    if directory is not None:
        checkpoint.save(model, checkpoint.path_for(directory, trial.study.study_name, trial.number), params)
