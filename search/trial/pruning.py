"""Pruning for single- and multi-objective studies behind one Keras callback.

Single-objective studies use Optuna's native ``trial.report`` / ``trial.should_prune``.

Optuna raises ``NotImplementedError`` for ``Trial.report`` in multi-objective studies
(optuna#3450). hpsearch prunes them anyway, with Optuna's own pruner classes:

- each epoch's pruning metric is saved in the trial's ``pruning_curve`` user attr (in storage,
  so other workers and a resumed study see it);
- the pruner is asked through :class:`MetricStorage`, a view of the same storage in which the
  study has one direction (the pruning metric's) and every trial's intermediate values are its
  ``pruning_curve``. To the pruner this *is* a single-objective study, so its decisions are the
  ones it would make there; nothing of its math is re-derived here.

The curve is deliberately not stored as Optuna intermediate values: the multi-objective
``TPESampler`` calls ``study.direction`` on pruned trials that have intermediate values and
fails (the optuna#5260 family), so the samplers must not see them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Container, Sequence
from typing import Any, Protocol

import keras
import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search import keys

__all__ = [
    "CURVE_ATTR",
    "MetricStorage",
    "MultiObjectiveReporter",
    "NativeReporter",
    "PruningCallback",
    "Reporter",
]

CURVE_ATTR = keys.PRUNING_CURVE
REASON_ATTR = keys.PRUNE_REASON


class Reporter(Protocol):
    """Takes one epoch's pruning metric; answers whether the trial should stop now."""

    def report(self, value: float, step: int) -> bool: ...


class NativeReporter:
    """Single-objective studies: Optuna's own report / should_prune."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def report(self, value: float, step: int) -> bool:
        self.trial.report(value, step)
        return self.trial.should_prune()


class MultiObjectiveReporter:
    """Multi-objective studies: save the curve in storage, ask the pruner through a view."""

    def __init__(
        self,
        trial: optuna.Trial,
        pruner: optuna.pruners.BasePruner,
        storage: BaseStorage,
        direction: StudyDirection,
    ) -> None:
        self.trial = trial
        self.pruner = pruner
        self.metric_storage = MetricStorage(storage, direction)
        self.view = optuna.Study(
            study_name=trial.study.study_name,
            storage=self.metric_storage,
            sampler=optuna.samplers.RandomSampler(),  # never asked; the view only judges
            pruner=pruner,
        )
        study_id = storage.get_study_id_from_name(trial.study.study_name)
        self.trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        self.curve: dict[str, float] = {}

    def report(self, value: float, step: int) -> bool:
        self.curve[str(step)] = value
        self.trial.set_user_attr(CURVE_ATTR, dict(self.curve))
        return self.pruner.prune(self.view, self.metric_storage.get_trial(self.trial_id))


class PruningCallback(keras.callbacks.Callback):
    """Reports ``metric`` after every epoch; on a prune decision records why and stops training.

    It does not raise inside ``fit``: the objective raises ``TrialPruned`` after ``fit``
    returns, so a pruned trial still records its curves and training time.
    """

    def __init__(self, trial: optuna.Trial, reporter: Reporter, metric: str, pruner_name: str) -> None:
        super().__init__()
        self.trial = trial
        self.reporter = reporter
        self.metric = metric
        self.pruner_name = pruner_name
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        step = epoch + 1
        if self.reporter.report(float(value), step):
            self.pruned_at = step
            reason = getattr(self.reporter, "reason", None) or (
                f"{self.pruner_name} pruner at epoch {step}: {self.metric}={float(value):.4f}"
            )
            self.trial.set_user_attr(REASON_ATTR, reason)
            self.model.stop_training = True


def _with_curve(trial: FrozenTrial) -> FrozenTrial:
    view = copy.copy(trial)  # shallow: only the intermediate values change
    curve = trial.user_attrs.get(CURVE_ATTR) or {}
    view.intermediate_values = {int(step): float(v) for step, v in curve.items()}
    return view


class MetricStorage(BaseStorage):
    """A multi-objective study's storage seen as a single-objective one, for pruners.

    Reads go to the real storage, with the study's directions replaced by the pruning metric's
    and each trial's intermediate values replaced by its ``pruning_curve``. Writes (for example
    SuccessiveHalving's rung records) go to the real storage unchanged.
    """

    def __init__(self, inner: BaseStorage, direction: StudyDirection) -> None:
        self.inner = inner
        self.direction = direction

    # reads that the view changes
    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return [self.direction]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return _with_curve(self.inner.get_trial(trial_id))

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return [_with_curve(t) for t in self.inner.get_all_trials(study_id, deepcopy=False, states=states)]

    # everything else passes through
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self.inner.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self.inner.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.inner.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.inner.get_study_name_from_id(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[Any]:
        return self.inner.get_all_studies()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self.inner.create_new_trial(study_id, template_trial)

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        self.inner.set_trial_param(trial_id, param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self.inner.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        return self.inner.set_trial_state_values(trial_id, state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self.inner.set_trial_intermediate_value(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.inner.set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.inner.set_trial_system_attr(trial_id, key, value)
