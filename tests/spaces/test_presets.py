"""The notebook presets: every preset validates and builds; one-factor sweeps are the right grids."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest

import spaces
from search.hypermodels.adapter import OptunaHyperParameters
from search.hypermodels.loader import load_builder
from search.tools.lr_find import pick_params
from search.trial.models import build

ALL = sorted(spaces.presets())
SWEEPS: dict[str, dict[str, list[Any]]] = {
    "units": {"units_0": [50, 128, 256, 512, 1024]},
    "depth": {"layers": [1, 2, 3, 4, 5]},
    "activation": {"activation": ["sigmoid", "relu", "tanh", "linear"]},
    "batch-size": {"batch_size": [1, 10, 32, 100, 1000, 10000]},
    "optimizer": {
        "optimizer": ["sgd", "adam", "rmsprop", "adagrad"],
        "learning_rate": [1e-4, 1e-3, 1e-2, 1e-1],
    },
    "learning-rate": {"learning_rate": [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1e-1]},
    "initializer": {"initializer": ["zeros", "random_normal", "glorot_uniform"]},
    "dropout": {"dropout": [0.0, 0.2, 0.5]},
    "l2": {"l2": [0.0, 1e-4, 1e-3, 1e-2]},
    "batch-norm": {"batch_norm": [False, True]},
    "early-stopping": {"patience": [0, 2, 5]},
    "normalize": {"normalize": [True, False], "optimizer": ["adam", "sgd"]},
}
# the notebooks' baseline: 784-128-10 relu, adam, batch 32, 10 epochs
BASELINE = {
    "layers": 1,
    "units": (128,),
    "activation": "relu",
    "initializer": "glorot_uniform",
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "batch_size": 32,
    "epochs": 10,
    "patience": 0,
    "normalize": True,
    "dropout": 0.0,
    "l2": 0.0,
    "batch_norm": False,
}
CHANGED_TOO = {"early-stopping": {"epochs": 30}, "normalize": {"learning_rate": 1e-2}}


def test_every_notebook_experiment_has_a_preset_on_both_datasets() -> None:
    for dataset in ("mnist", "fashion"):
        for factor in SWEEPS:
            assert f"{dataset}-sweep-{factor}" in ALL
        assert {f"{dataset}-mlp", f"{dataset}-cnn"} <= set(ALL)  # the full searches


@pytest.mark.parametrize("name", ALL)
def test_preset_validates_describes_itself_and_builds_a_model(name: str) -> None:
    space = spaces.load(name)
    assert space.name == name and space.description and "\n" not in space.description
    shape = (8, 8, 1) if space.dataset.name == "digits" else (28, 28, 1)
    if space.hypermodel is not None:  # a KerasTuner preset: build(hp) with the hp defaults
        model = load_builder(space.hypermodel)(OptunaHyperParameters())
        model.build((None, *shape))  # the tutorial's Sequential takes its input shape from the data
    else:
        params = pick_params(space, {})
        model = build(params, family=space.family, input_shape=shape, num_classes=10, pixel_max=255.0)
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("dataset", ["mnist", "fashion"])
@pytest.mark.parametrize("factor", sorted(SWEEPS))
def test_one_factor_sweep_is_the_expected_grid_around_the_baseline(dataset: str, factor: str) -> None:
    space = spaces.load(f"{dataset}-sweep-{factor}")
    expected = SWEEPS[factor]
    assert space.sampler.type == "grid"
    assert space.dataset.name == ("mnist" if dataset == "mnist" else "fashion_mnist")
    assert space.grid() == expected
    assert space.budget.trials == math.prod(len(v) for v in expected.values())
    # the grid sampler visits every point exactly once within the budget
    study = optuna.create_study(directions=list(space.directions), sampler=_sampler(space))
    seen = set()
    for i in range(space.budget.trials):
        trial = study.ask()
        params = space.sample(trial)
        seen.add(tuple(sorted(trial.params.items())))
        fixed = {**BASELINE, **CHANGED_TOO.get(factor, {})}
        for key, value in fixed.items():
            if key not in expected and not (key == "units" and "units_0" in expected):
                want = (128,) * params["layers"] if key == "units" else value
                assert params[key] == want, f"{key} must stay at the baseline"
        if i < space.budget.trials - 1:  # the grid sampler stops the study after its last point
            study.tell(trial, [0.5, 1.0])
    assert len(seen) == space.budget.trials


def _sampler(space: spaces.Space) -> optuna.samplers.BaseSampler:
    from spaces.optuna import make_sampler

    return make_sampler(space)
