"""KerasTuner's HyperParameters API on a real Optuna trial: each type and option, scopes, defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import pytest
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from search.errors import ConfigError
from search.hypermodels.adapter import OptunaHyperParameters

Call = Callable[[Any], Any]

# (hp call, the Optuna distribution it must register under the same name)
CASES: list[tuple[str, Call, BaseDistribution]] = [
    ("int step", lambda hp: hp.Int("x", 32, 512, step=32), IntDistribution(32, 512, step=32)),
    ("int step, max off grid", lambda hp: hp.Int("x", 6, 13, step=3), IntDistribution(6, 12, step=3)),
    ("int default step 1", lambda hp: hp.Int("x", 1, 10), IntDistribution(1, 10)),
    ("int log", lambda hp: hp.Int("x", 1, 1024, sampling="log"), IntDistribution(1, 1024, log=True)),
    (
        "int log with step: KerasTuner's grid",
        lambda hp: hp.Int("x", 2, 32, step=2, sampling="log"),
        CategoricalDistribution([2, 4, 8, 16, 32]),
    ),
    ("float", lambda hp: hp.Float("x", 0.0, 1.0), FloatDistribution(0.0, 1.0)),
    ("float step", lambda hp: hp.Float("x", 0, 1, step=0.3), FloatDistribution(0.0, 0.9, step=0.3)),
    (
        "float log",
        lambda hp: hp.Float("x", 1e-4, 1e-1, sampling="log"),
        FloatDistribution(1e-4, 1e-1, log=True),
    ),
    (
        "float log with step: KerasTuner's grid",
        lambda hp: hp.Float("x", 1e-3, 10, step=10, sampling="log"),
        CategoricalDistribution([1e-3, 1e-3 * 10, 1e-3 * 10**2, 1e-3 * 10**3, 1e-3 * 10**4]),
    ),
    ("choice", lambda hp: hp.Choice("x", ["relu", "tanh"]), CategoricalDistribution(["relu", "tanh"])),
    (
        "choice ordered numbers",
        lambda hp: hp.Choice("x", [1e-2, 1e-3, 1e-4], ordered=True, default=1e-3),
        CategoricalDistribution([1e-2, 1e-3, 1e-4]),
    ),
    ("boolean", lambda hp: hp.Boolean("x", default=True), CategoricalDistribution([False, True])),
    ("fixed", lambda hp: hp.Fixed("x", 3), CategoricalDistribution([3])),
]


def _trials(n: int, seed: int = 0) -> list[optuna.Trial]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [study.ask() for _ in range(n)]


@pytest.mark.parametrize(("call", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_type_maps_to_its_optuna_distribution(call: Call, expected: BaseDistribution) -> None:
    for trial in _trials(20):  # 20 random draws: every value must lie in the expected domain
        hp = OptunaHyperParameters(trial)
        value = call(hp)
        got = trial.distributions["x"]
        if isinstance(expected, CategoricalDistribution):
            assert isinstance(got, CategoricalDistribution)
            assert list(got.choices) == pytest.approx(list(expected.choices))
        else:
            assert got == expected
        assert trial.params["x"] == value == hp.values["x"] == hp.get("x") == hp["x"]
        # Optuna itself accepts the value under the distribution (create_trial checks containment)
        optuna.trial.create_trial(params={"x": value}, distributions={"x": got}, value=0.0)


def test_reverse_log_is_rejected_with_a_clear_error() -> None:
    (trial,) = _trials(1)
    for call in (
        lambda hp: hp.Float("lr", 1e-4, 1e-1, sampling="reverse_log"),
        lambda hp: hp.Int("n", 1, 100, sampling="reverse_log"),
    ):
        with pytest.raises(ConfigError, match="reverse_log' has no Optuna equivalent"):
            call(OptunaHyperParameters(trial))


def test_kerastuner_still_validates_the_arguments() -> None:
    (trial,) = _trials(1)
    hp = OptunaHyperParameters(trial)
    with pytest.raises(ValueError, match="min_value 5 is greater than the max_value 1"):
        hp.Int("n", 5, 1)
    with pytest.raises(ValueError, match="expected step > 1"):
        hp.Float("lr", 1e-4, 1e-1, step=1, sampling="log")
    assert trial.params == {}  # nothing was suggested for rejected calls


def test_without_a_trial_the_defaults_apply() -> None:
    hp = OptunaHyperParameters(None)
    assert hp.Int("units", 32, 512, step=32) == 32  # KerasTuner: min_value
    assert hp.Int("depth", 1, 4, default=3) == 3
    assert hp.Float("dropout", 0.1, 0.5) == 0.1
    assert hp.Float("lr", 1e-4, 1e-1, sampling="log", default=1e-3) == 1e-3
    assert hp.Choice("act", ["relu", "tanh"]) == "relu"
    assert hp.Choice("lr2", [1e-2, 1e-3], default=1e-3) == 1e-3
    assert hp.Boolean("bn") is False
    assert hp.Boolean("bn2", default=True) is True
    assert hp.Fixed("k", 7) == 7


def test_a_name_is_suggested_once_and_scopes_prefix_names() -> None:
    (trial,) = _trials(1)
    hp = OptunaHyperParameters(trial)
    first = hp.Int("units", 32, 512, step=32)
    assert hp.Int("units", 32, 512, step=32) == first
    with hp.name_scope("block1"):
        inner = hp.Choice("act", ["relu", "tanh"])
    assert trial.params == {"units": first, "block1/act": inner}
    assert "block1/act" in hp and "act" not in hp


def _conditional(hp: Any) -> dict[str, Any]:
    kind = hp.Choice("model_type", ["mlp", "cnn"])
    with hp.conditional_scope("model_type", ["mlp"]):
        units = hp.Int("units", 16, 64, step=16)
    with hp.conditional_scope("model_type", ["cnn"]):
        filters = hp.Int("filters", 8, 32, step=8)
        with hp.conditional_scope("filters", [16, 24]):
            nested = hp.Boolean("batch_norm")
    dropout = hp.Float("dropout", 0.0, 0.5, parent_name="model_type", parent_values=["mlp"])
    return {"kind": kind, "units": units, "filters": filters, "nested": nested, "dropout": dropout}


@pytest.mark.parametrize(
    ("fixed", "active", "inactive"),
    [
        ({"model_type": "mlp"}, {"model_type", "units", "dropout"}, {"filters", "batch_norm"}),
        ({"model_type": "cnn", "filters": 8}, {"model_type", "filters"}, {"units", "dropout", "batch_norm"}),
        ({"model_type": "cnn", "filters": 16}, {"model_type", "filters", "batch_norm"}, {"units", "dropout"}),
    ],
)
def test_conditional_parameters_appear_only_when_their_parent_has_the_value(
    fixed: dict[str, Any], active: set[str], inactive: set[str]
) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.enqueue_trial(fixed)
    trial = study.ask()
    hp = OptunaHyperParameters(trial)
    got = _conditional(hp)
    assert set(trial.params) == active
    assert set(hp.values) == active
    for name in inactive:
        assert name not in hp
        key = {"model_type": "kind", "batch_norm": "nested"}.get(name, name)
        assert got[key] is None  # KerasTuner returns None for inactive parameters
    assert trial.params["model_type"] == fixed["model_type"]


def test_conditional_scope_needs_a_defined_parent() -> None:
    (trial,) = _trials(1)
    hp = OptunaHyperParameters(trial)
    with pytest.raises(ValueError, match="not defined"), hp.conditional_scope("missing", [1]):
        pass
