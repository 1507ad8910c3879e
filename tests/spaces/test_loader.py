"""Space validation, table-driven: valid files load, each kind of bad file fails with one line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

import spaces
from search.errors import ConfigError
from spaces import Choice, Fixed, FloatRange, IntRange

BASE = """\
name: t
dataset: digits
"""


def _load(tmp_path: Path, body: str, base: str = BASE) -> spaces.Space:
    path = tmp_path / "space.yaml"
    path.write_text(base + textwrap.dedent(body))
    return spaces.load(path)


INVALID = [
    # (yaml body, message regex) -- each must name the field and the problem
    ("model: {layerz: 2}\n", r"model\.layerz: unknown key"),
    ("colour: red\n", r"colour: unknown key"),
    ("model: {units: {type: int, low: 64, high: 8}}\n", r"model\.units: low > high \(64 > 8\)"),
    (
        "optimizer: {learning_rate: {type: float, low: 0, high: 0.1, log: true}}\n",
        r"optimizer\.learning_rate\.low: log=true needs low > 0, got 0",
    ),
    ("optimizer: {name: adamx}\n", r"optimizer\.name: expected one of sgd, adam.*got 'adamx'"),
    ("model: {activation: [relu, swoosh]}\n", r"model\.activation\.choices: expected one of .* got 'swoosh'"),
    (
        "model: {activation: {type: categorical, choices: []}}\n",
        r"model\.activation\.choices: expected a non-empty list",
    ),
    ("model: {layers: two}\n", r"model\.layers: expected an integer, got str 'two'"),
    ("model: {layers: true}\n", r"model\.layers: expected an integer, got bool True"),
    ("model: {dropout: 1.5}\n", r"model\.dropout: expected a number >= 0 and < 1, got 1\.5"),
    ("model: {units: {type: float, low: 1, high: 2}}\n", r"model\.units\.type: float does not fit"),
    ("model: {units: {type: int, low: 1}}\n", r"model\.units\.high: required for type int"),
    ("model: {units: {type: int, low: 1, high: 10, step: 4}}\n", r"model\.units\.step: high - low = 9"),
    ("model: {units: {type: integer, low: 1, high: 2}}\n", r"model\.units\.type: expected int, float"),
    ("model: {units: {type: int, low: 1, high: 8, log: true, step: 2}}\n", r"model\.units\.step: log=true"),
    ("model: {family: rnn}\n", r"model\.family: expected one of mlp, cnn, got 'rnn'"),
    ("model: {filters: 8}\n", r"model\.filters: only for model family cnn"),
    ("model: {activation: [relu, relu]}\n", r"model\.activation\.choices: duplicate"),
    (
        "optimizer: {momentum: {type: float, low: 0, high: 0.9, when: {name: sgdd}}}\n",
        r"momentum\.when: name can never be 'sgdd'",
    ),
    (
        "optimizer: {momentum: {type: float, low: 0, high: 0.9, when: {colour: x}}}\n",
        r"momentum\.when: 'colour' is not a parameter",
    ),
    ("model: {units: {type: int, low: 8, high: 9, when: {layers: 1}}}\n", r"model\.units\.when: per-layer"),
    ("training: {batch_size: 0}\n", r"training\.batch_size: expected an integer >= 1 .*got 0"),
    ("sampler: {type: annealing}\n", r"sampler\.type: expected one of tpe"),
    ("sampler: {type: tpe, n_startup: 3}\n", r"sampler\.n_startup: unknown key"),
    ("sampler: {type: cmaes}\n", r"sampler\.type: cmaes supports one objective only"),
    ("pruner: {type: median, n_warmup_steps: -1}\n", r"pruner\.n_warmup_steps: expected an integer >= 0"),
    ("pruner: {type: percentile, percentile: 120}\n", r"pruner\.percentile: expected a number in \[0, 100\]"),
    (
        "objectives: [val_accuracy]\npruner: {type: median, metric: val_loss}\n",
        r"pruner\.metric: val_loss is minimized",
    ),
    (
        "objectives: [{metric: val_loss, direction: maximize}]\n",
        r"objectives\[0\]\.direction: val_loss must be minimized",
    ),
    ("objectives: [f1]\n", r"objectives\[0\]\.metric: expected one of"),
    ("objectives: []\n", r"objectives: expected a list of 1 to 3"),
    ("budget: {trials: 0}\n", r"budget\.trials: expected an integer >= 1"),
    (
        "sampler: {type: grid}\nmodel: {dropout: {type: float, low: 0, high: 0.5}}\n",
        r"model\.dropout: the grid sampler needs a step",
    ),
    ("model: [1, 2]\n", r"model: expected a mapping, got list"),
    ("pruner: {type: threshold}\n", r"pruner: threshold: .*lower.*upper"),
    (
        "pruner: {type: successive_halving, reduction_factor: 1}\n",
        r"pruner: successive_halving: .*reduction_factor",
    ),
    ("sampler: {type: nsga2, population_size: 1}\n", r"sampler: nsga2: .*population_size"),
    ("seed: 5000000000\n", r"seed: expected an integer below 2\*\*32"),
    (
        "model: {dropout: {type: float, low: 0, high: 0.9, step: 0.6}}\n",
        r"model\.dropout\.step: high - low = 0\.9",
    ),
    ("budget: {trials: 5, 1: 2}\n", r"budget: keys must be text"),
    ("model: {units: 32\n", r"line \d+: invalid YAML"),
    (
        "extra: !!python/object/apply:os.system [echo hi]\n",
        r"invalid YAML: could not determine a constructor for the tag",
    ),
]


@pytest.mark.parametrize(("body", "match"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_space_is_rejected_with_one_line_naming_file_and_field(
    tmp_path: Path, body: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        _load(tmp_path, body)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "space.yaml") + ": ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("base", "match"),
    [
        ("dataset: digits\n", r"name: expected a name"),
        ("name: t\n", r"dataset: required"),
        ("name: t\ndataset: cifar\n", r"dataset\.name: expected one of digits"),
        (
            "name: t\ndataset: {name: digits, validation_fraction: 0.9}\n",
            r"validation_fraction: expected a number in \(0, 0\.5\]",
        ),
        ("- a\n- b\n", r"expected a YAML mapping at the top, got list"),
    ],
)
def test_invalid_top_level(tmp_path: Path, base: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _load(tmp_path, "", base=base)


def test_domains_are_typed_and_frozen(tmp_path: Path) -> None:
    space = _load(
        tmp_path,
        """
        model:
          layers: {type: int, low: 1, high: 3}
          units: {type: int, low: 32, high: 1024, log: true}
          activation: [relu, tanh]
          batch_norm: {type: bool}
          dropout: 0.25
        optimizer:
          learning_rate: {type: float, low: 1e-4, high: 1e-1, log: true}   # no dot: PyYAML reads text
        """,
    )
    by_name = {p.name: p for p in space.params}
    assert by_name["layers"].domain == IntRange(1, 3)
    assert by_name["units"].domain == IntRange(32, 1024, log=True)
    assert by_name["units"].per_layer == "layers"
    assert by_name["activation"].domain == Choice(("relu", "tanh"))
    assert by_name["batch_norm"].domain == Choice((False, True))
    assert by_name["dropout"].domain == Fixed(0.25)
    assert by_name["learning_rate"].domain == FloatRange(1e-4, 1e-1, log=True)
    assert by_name["optimizer"].domain == Fixed("adam")  # a default
    assert space.directions == ("maximize", "minimize")  # the default objectives
    with pytest.raises(AttributeError):
        space.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("objectives", "watched"),
    [
        ("[val_accuracy, train_seconds]", ("val_accuracy", "maximize")),
        ("[train_seconds, val_loss]", ("val_loss", "minimize")),  # the first val_ objective
        ("[param_count, val_auc]\ntraining: {metrics: [auc]}", ("val_auc", "maximize")),
        ("[accuracy]", ("val_loss", "minimize")),  # none on the validation split
    ],
)
def test_early_stopping_watches_the_first_validation_objective(
    tmp_path: Path, objectives: str, watched: tuple[str, str]
) -> None:
    space = _load(tmp_path, f"objectives: {objectives}\n")
    assert (space.watched.metric, space.watched.direction) == watched


def test_conditional_parameter_is_sampled_only_when_its_condition_holds(tmp_path: Path) -> None:
    space = _load(
        tmp_path,
        """
        sampler: {type: random, seed: 1}
        optimizer:
          momentum: {type: float, low: 0.5, high: 0.9, when: {name: sgd}}
          name: [sgd, adam]
        """,
    )
    study = optuna.create_study(
        directions=list(space.directions), sampler=optuna.samplers.RandomSampler(seed=3)
    )
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = space.sample(trial)
        seen.add(params["optimizer"])
        if params["optimizer"] == "sgd":
            assert 0.5 <= params["momentum"] <= 0.9
            assert "momentum" in trial.params
        else:
            assert params["momentum"] == 0.0  # the default, not sampled
            assert "momentum" not in trial.params
    assert seen == {"sgd", "adam"}  # 30 fair coin flips all landing on one side: p = 2**-29


def test_units_are_sampled_once_per_existing_layer(tmp_path: Path) -> None:
    space = _load(
        tmp_path, "model: {layers: {type: int, low: 0, high: 3}, units: {type: int, low: 8, high: 64}}\n"
    )
    study = optuna.create_study(directions=list(space.directions))
    for _ in range(20):
        trial = study.ask()
        params = space.sample(trial)
        assert len(params["units"]) == params["layers"]
        assert sorted(k for k in trial.params if k.startswith("units_")) == [
            f"units_{i}" for i in range(params["layers"])
        ]


def test_grid_lists_every_value_and_per_layer_slots(tmp_path: Path) -> None:
    space = _load(
        tmp_path,
        """
        sampler: {type: grid}
        model:
          layers: {type: int, low: 1, high: 2}
          units: [16, 32]
          dropout: {type: float, low: 0.0, high: 0.5, step: 0.25}
        """,
    )
    assert space.grid() == {
        "layers": [1, 2],
        "units_0": [16, 32],
        "units_1": [16, 32],
        "dropout": [0.0, 0.25, 0.5],
    }


def test_same_meaning_same_fingerprint(tmp_path: Path) -> None:
    a = spaces.loads("name: t\ndataset: digits\nmodel: {layers: 2}\n")
    b = spaces.loads("# a comment\nname: t\nmodel:\n  layers: 2\ndataset: digits\n")
    c = spaces.loads("name: t\ndataset: digits\nmodel: {layers: 3}\n")
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_every_preset_loads_and_describes_itself() -> None:
    presets = spaces.presets()
    assert {"quickstart", "fashion-mlp", "fashion-cnn", "mnist-mlp"} <= set(presets)
    for name, description in presets.items():
        assert description
        assert spaces.load(name).name == name


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match=r"nope: not a file and not a preset; presets: .*quickstart"):
        spaces.load("nope")
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such file"):
        spaces.load("missing.yaml")
