"""Warm start: a new study begins with the best configurations of a finished one.

``hpsearch run SPACE --warm-start OLD`` queues OLD's best configurations that fit SPACE (every
parameter inside the new ranges, conditions included) as the new study's first trials, before
its blank ones. They are trained on the new study's data, so every value the new study shows is
its own; the sampler then starts from good regions instead of random ones (MNIST -> Fashion-MNIST,
yesterday's study -> today's wider space). Done once per study: resuming adds nothing.

Only public Optuna APIs: ``Study.trials``, ``best_trials``, ``create_trial`` and ``add_trial``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.errors import ConfigError
from spaces import Space

__all__ = ["DEFAULT_COUNT", "fitting", "start_from", "warm_start"]

DEFAULT_COUNT = 5  # configurations taken, at most half the budget


class _Misfit(Exception):
    """A source parameter is missing from the new space's range."""


class _Replay:
    """Answers ``space.sample``'s suggestions with a finished trial's values, or raises :class:`_Misfit`."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.source = params
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, BaseDistribution] = {}

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        value = self._value(name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not low <= value <= high
            or (value - low) % step
        ):
            raise _Misfit(name)
        return int(self._keep(name, value, IntDistribution(low, high, log=log, step=step)))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        value = self._value(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise _Misfit(name)
        if step is not None and not math.isclose(
            (value - low) / step, round((value - low) / step), abs_tol=1e-8
        ):
            raise _Misfit(name)
        return float(self._keep(name, float(value), FloatDistribution(low, high, log=log, step=step)))

    def suggest_categorical(self, name: str, choices: Sequence[CategoricalChoiceType]) -> Any:
        value = self._value(name)
        if value not in choices:
            raise _Misfit(name)
        return self._keep(name, value, CategoricalDistribution(choices))

    def _value(self, name: str) -> Any:
        if name not in self.source:
            raise _Misfit(name)
        return self.source[name]

    def _keep(self, name: str, value: Any, distribution: BaseDistribution) -> Any:
        self.params[name] = value
        self.distributions[name] = distribution
        return value


def fitting(space: Space, trial: FrozenTrial) -> tuple[dict[str, Any], dict[str, BaseDistribution]] | None:
    """A finished trial's parameters and their distributions in ``space``; ``None`` if one does not fit.

    A hypermodel's parameters appear only when ``build(hp)`` runs: its trials are taken as they
    are, with their own distributions (the same hypermodel file is expected).
    """
    if space.hypermodel is not None:
        return dict(trial.params), dict(trial.distributions)
    replay = _Replay(dict(trial.params))
    try:
        space.sample(replay)  # type: ignore[arg-type]  # the suggest_* calls are all it makes
    except _Misfit:
        return None
    return replay.params, replay.distributions


def warm_start(study: optuna.Study, space: Space, source: optuna.Study, count: int) -> list[int]:
    """Queue up to ``count`` of ``source``'s best configurations that fit ``space``; their source numbers.

    Best first: a single objective by its value, several by the Pareto front and then the first
    objective. Distinct configurations only. Nothing is queued a second time for one study.
    """
    if keys.WARM_START in study.user_attrs:
        return []
    taken: list[int] = []
    seen: list[dict[str, Any]] = []
    for trial in _ranked(source):
        if len(taken) >= count:
            break
        fit = fitting(space, trial)
        if fit is None or fit[0] in seen:
            continue
        params, distributions = fit
        seen.append(params)
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=params,
                distributions=distributions,
                user_attrs={keys.WARM_START_FROM: f"{source.study_name}#{trial.number}"},
            )
        )
        taken.append(trial.number)
    study.set_user_attr(keys.WARM_START, {"study": source.study_name, "trials": taken})
    return taken


def start_from(
    study: optuna.Study, space: Space, storage: optuna.storages.BaseStorage, source: str, budget: int
) -> str:
    """Warm-start ``study`` from the study named ``source`` in ``storage``; a line saying what happened.

    Takes at most :data:`DEFAULT_COUNT` configurations, and at most half of ``budget``.

    Raises:
        ConfigError: ``source`` is the study itself or not in the storage.
    """
    if source == study.study_name:
        raise ConfigError(f"--warm-start {source}: that is the study itself")
    try:
        old = optuna.load_study(study_name=source, storage=storage)
    except KeyError:
        raise ConfigError(f"--warm-start {source}: no such study in this storage") from None
    already = keys.WARM_START in study.user_attrs  # a resumed study was warm-started before
    taken = warm_start(study, space, old, min(DEFAULT_COUNT, max(1, budget // 2)))
    if taken:
        numbers = ", ".join(f"#{n}" for n in taken)
        return f"warm start: {len(taken)} configurations of study {source!r} ({numbers}) run first"
    if already:
        return f"warm start: done when the study was created ({study.user_attrs[keys.WARM_START]})"
    return f"warm start: no finished configuration of study {source!r} fits this space"


def _ranked(source: optuna.Study) -> list[FrozenTrial]:
    done = [t for t in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    first = source.directions[0]
    sign = -1.0 if first == optuna.study.StudyDirection.MAXIMIZE else 1.0
    by_first = sorted(done, key=lambda t: sign * t.values[0])
    if len(source.directions) == 1:
        return by_first
    front = sorted(source.best_trials, key=lambda t: sign * t.values[0])
    numbers = {t.number for t in front}
    return front + [t for t in by_first if t.number not in numbers]
