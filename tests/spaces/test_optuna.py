"""spaces.optuna: sampler and pruner factories, exercised through ask / report / tell without Keras."""

from __future__ import annotations

import importlib.util
from typing import Any

import optuna
import pytest

import spaces
from search.errors import ConfigError
from spaces.optuna import make_pruner, make_sampler
from tests.helpers import float_range, flow, int_range, space_text

Spec = dict[str, Any]
MULTI = ["val_accuracy", "train_seconds"]


def _space(
    sampler: Spec | None = None, pruner: Spec | None = None, objectives: list[str] | None = None
) -> spaces.Space:
    text = space_text(
        "s",
        objectives=objectives or ["val_accuracy"],
        sampler=sampler or {"type": "tpe"},
        pruner=pruner or {"type": "none"},
        model={"layers": int_range(1, 2), "units": int_range(8, 64, step=8)},
        optimizer={"learning_rate": float_range(0.001, 0.1, step=0.001)},
    )
    return spaces.loads(text, source="test")


@pytest.mark.parametrize(
    ("sampler", "cls", "objectives"),
    [
        ({"type": "tpe", "seed": 1}, optuna.samplers.TPESampler, None),
        ({"type": "random"}, optuna.samplers.RandomSampler, None),
        ({"type": "grid"}, optuna.samplers.GridSampler, None),
        ({"type": "nsga2", "population_size": 4}, optuna.samplers.NSGAIISampler, MULTI),
        ({"type": "cmaes", "n_startup_trials": 2}, optuna.samplers.CmaEsSampler, None),
        ({"type": "tpe"}, optuna.samplers.TPESampler, MULTI),
    ],
    ids=lambda v: flow(v) if isinstance(v, (dict, list)) else ("single" if v is None else None),
)
def test_each_sampler_drives_ask_and_tell(sampler: Spec, cls: type, objectives: list[str] | None) -> None:
    space = _space(sampler, objectives=objectives)
    made = make_sampler(space)
    assert isinstance(made, cls)
    study = optuna.create_study(directions=list(space.directions), sampler=made)
    for _ in range(6):
        trial = study.ask()
        params = space.sample(trial)
        value = params["learning_rate"] * sum(params["units"])
        study.tell(trial, value if len(space.directions) == 1 else [value, float(params["layers"])])
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) > 1  # it does explore


def test_tpe_uses_constant_liar_so_parallel_workers_do_not_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []  # constant_liar as passed to TPESampler (it has no public getter)

    def recording_tpe(*args: Any, **kwargs: Any) -> optuna.samplers.TPESampler:
        made.append(kwargs.get("constant_liar"))
        return real_tpe(*args, **kwargs)

    real_tpe = optuna.samplers.TPESampler
    default, off = _space({"type": "tpe"}), _space({"type": "tpe", "constant_liar": False})
    monkeypatch.setattr(optuna.samplers, "TPESampler", recording_tpe)
    make_sampler(default)
    make_sampler(off)
    assert made == [True, False]


def test_seed_offset_changes_the_first_points() -> None:
    space = _space({"type": "random", "seed": 3})
    first = [
        optuna.create_study(sampler=make_sampler(space)).ask().suggest_float("x", 0, 1) for _ in range(2)
    ]
    shifted = optuna.create_study(sampler=make_sampler(space, seed_offset=5)).ask().suggest_float("x", 0, 1)
    assert first[0] == first[1] != shifted


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here")
def test_gp_without_torch_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match=r"sampler\.type: gp needs the package 'torch'.*hpsearch\[gp\]"):
        _space({"type": "gp"})


@pytest.mark.parametrize(
    ("pruner", "cls"),
    [
        ({"type": "none"}, optuna.pruners.NopPruner),
        ({"type": "median", "n_startup_trials": 2}, optuna.pruners.MedianPruner),
        ({"type": "percentile", "percentile": 50, "n_startup_trials": 2}, optuna.pruners.PercentilePruner),
        ({"type": "successive_halving"}, optuna.pruners.SuccessiveHalvingPruner),
        ({"type": "hyperband", "max_resource": 8}, optuna.pruners.HyperbandPruner),
        ({"type": "threshold", "lower": 0.5}, optuna.pruners.ThresholdPruner),
        ({"type": "median", "patience": 2}, optuna.pruners.PatientPruner),
    ],
    ids=lambda v: flow(v) if isinstance(v, dict) else None,
)
def test_pruner_factory(pruner: Spec, cls: type) -> None:
    assert isinstance(make_pruner(_space(pruner=pruner).pruner), cls)


def _curve(study: optuna.Study, values: list[float]) -> optuna.trial.FrozenTrial:
    """Run one trial through ask / report / tell; stop reporting when the pruner says so."""
    trial = study.ask()
    for step, value in enumerate(values, start=1):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return study.trials[-1]
    study.tell(trial, values[-1])
    return study.trials[-1]


@pytest.mark.parametrize(
    "pruner",
    [
        {"type": "median", "n_startup_trials": 2},
        {"type": "percentile", "percentile": 50, "n_startup_trials": 2},
        {"type": "threshold", "lower": 0.5},
    ],
    ids=flow,
)
def test_a_hopeless_curve_is_pruned_and_a_good_one_is_not(pruner: Spec) -> None:
    study = optuna.create_study(direction="maximize", pruner=make_pruner(_space(pruner=pruner).pruner))
    for _ in range(2):
        _curve(study, [0.6, 0.7, 0.8, 0.9])
    assert _curve(study, [0.1, 0.1, 0.1, 0.1]).state == optuna.trial.TrialState.PRUNED
    assert _curve(study, [0.7, 0.8, 0.9, 0.95]).state == optuna.trial.TrialState.COMPLETE


def test_patience_delays_the_prune() -> None:
    # a falling curve, always under the threshold: the patient pruner lets it run until its best
    # value is `patience` + 1 steps old
    study = optuna.create_study(
        direction="maximize",
        pruner=make_pruner(_space(pruner={"type": "threshold", "lower": 0.5, "patience": 2}).pruner),
    )
    trial = _curve(study, [0.3, 0.25, 0.2, 0.15, 0.1])
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert max(trial.intermediate_values) == 4  # a plain threshold pruner would stop at step 1
