"""`hpsearch lr-find`: a real range test on tiny data, its plot and the space copy it writes."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest

import spaces
from search.cli import main
from search.errors import ConfigError
from search.tools.lr_find import RangeTest, parse_overrides, pick_params, range_test, write_space
from search.trial.data import load_dataset
from tests import helpers
from tests.helpers import float_range, int_range, space_text

SECTIONS = {
    "dataset": {"name": "digits", "validation_fraction": 0.2, "limit": 400},
    "sampler": {"type": "random", "seed": 1},
    "model": {"layers": int_range(1, 2), "units": [32, 64]},
    "optimizer": {
        "name": ["adam", "sgd"],
        "learning_rate": float_range(1.0e-4, 1.0e-1, log=True),
        "momentum": float_range(0.0, 0.9, when={"name": "sgd"}),
    },
    "training": {"batch_size": 8, "epochs": 2},
}
SPACE = space_text("tiny-lr", base=SECTIONS)


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    return helpers.write_space(tmp_path, "tiny-lr", base=SECTIONS)


def test_range_test_finds_a_rate_inside_the_tested_range() -> None:
    space = spaces.loads(SPACE)
    params = pick_params(space, {})
    found = range_test(space, load_dataset("digits", limit=400, seed=0), params, min_lr=1e-5, max_lr=10.0)
    assert len(found.rates) == len(found.losses) == len(found.smoothed) <= 50  # 400 images / batch 8
    ratios = [b / a for a, b in zip(found.rates, found.rates[1:], strict=False)]
    assert ratios == pytest.approx([ratios[0]] * len(ratios))  # a constant factor per batch
    assert found.rates[0] == pytest.approx(1e-5)
    assert 1e-5 <= found.low < found.suggested < found.high == found.best <= 10.0
    # the first batches (tiny rates) barely learn; the best smoothed loss is well below them
    assert min(found.smoothed) < found.smoothed[0]


def test_cli_prints_the_rates_writes_the_plot_and_a_space_copy(
    space_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot, copy = tmp_path / "lr.png", tmp_path / "tuned.yaml"
    args = [
        "lr-find",
        str(space_file),
        "--trial-params",
        "optimizer=sgd",
        "layers=2",
        "training.batch_size=16",
    ]
    assert main([*args, "--min-lr", "1e-4", "--plot", str(plot), "--write-space", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "optimizer=sgd" in out and "batch_size=16" in out and "units=[32, 32]" in out
    best = float(re.search(r"lowest loss at learning rate ([0-9.e+-]+)", out).group(1))  # type: ignore[union-attr]
    suggested = float(re.search(r"suggested learning rate ([0-9.e+-]+)", out).group(1))  # type: ignore[union-attr]
    assert 1e-4 <= suggested < best <= 10.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tuned = spaces.load(copy)
    (lr,) = [p for p in tuned.params if p.name == "learning_rate"]
    assert lr.domain.log and lr.domain.high == pytest.approx(best, rel=0.01)  # type: ignore[union-attr]
    assert space_file.read_text() == SPACE  # the input is untouched
    # never overwrite: not the copy, not the input
    for target in (copy, space_file):
        assert main([*args, "--plot", str(plot), "--write-space", str(target)]) == 2
        assert "the file exists" in capsys.readouterr().err
    assert space_file.read_text() == SPACE


def test_cli_takes_a_trials_parameters_from_a_study(
    space_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'lr.db'}"
    assert main(["run", str(space_file), "--storage", url, "--trials", "1"]) == 0
    trial = optuna.load_study(study_name="tiny-lr", storage=url).trials[0]
    capsys.readouterr()
    plot = tmp_path / "study.png"
    assert main(["lr-find", "--study", "tiny-lr", "--trial", "0", "--storage", url, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert f"optimizer={trial.params['optimizer']} " in out and f"layers={trial.params['layers']} " in out
    assert plot.is_file()
    for args, message in [
        (["lr-find"], "give either SPACE or --study NAME"),
        (["lr-find", str(space_file), "--study", "tiny-lr"], "give either SPACE or --study NAME"),
        (["lr-find", str(space_file), "--trial", "0"], "--trial needs --study"),
        (["lr-find", "--study", "tiny-lr", "--trial-params", "layers=1"], "--trial-params is for SPACE"),
    ]:
        assert main([*args, "--storage", url]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["optimizer"], "expected KEY=VALUE"),
        (["colour=red"], "'colour': unknown parameter"),
        (["optimizer=lion"], r"optimizer\.name: expected one of sgd, adam"),
        (["training.batch_size=0"], r"training\.batch_size: expected an integer >= 1"),
    ],
)
def test_bad_trial_params_are_one_line_errors(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pick_params(spaces.loads(SPACE), parse_overrides(items))


def test_conditional_parameters_follow_the_overridden_value() -> None:
    momentum = float_range(0.5, 0.9, when={"name": "sgd"})
    space = spaces.loads(space_text("tiny-lr", base=SECTIONS, optimizer={"momentum": momentum}))
    # momentum exists only with sgd: with adam it is inactive (its default), with sgd it is active
    assert pick_params(space, parse_overrides(["optimizer=adam"]))["momentum"] == 0.0
    assert pick_params(space, parse_overrides(["optimizer=sgd"]))["momentum"] == 0.5  # low end of [0.5, 0.9]
    with pytest.raises(ConfigError, match=r"optimizer\.momentum: expected a number >= 0 and < 1, got 2"):
        pick_params(space, parse_overrides(["optimizer=sgd", "momentum=2"]))


def test_unset_parameters_take_the_first_choice_or_the_default() -> None:
    params = pick_params(spaces.loads(SPACE), {})
    assert params["optimizer"] == "adam" and params["layers"] == 1 and params["units"] == (32,)
    assert params["learning_rate"] == 1e-3 and params["momentum"] == 0.0  # default inside the range


def _found(best: float) -> RangeTest:
    return RangeTest((1e-5, 1.0), (2.3, 9.0), (2.3, 9.0), 1e-5, 1.0, best, best / 10, best / 100, best, False)


def test_a_grid_space_gets_log_spaced_rates_and_a_budget_for_the_new_grid(tmp_path: Path) -> None:
    out = write_space(spaces.load("fashion-sweep-activation"), _found(0.01), tmp_path / "grid.yaml")
    tuned = spaces.load(out)
    assert tuned.grid() == {"activation": ["sigmoid", "relu", "tanh", "linear"], "learning_rate": RATES}
    assert tuned.budget.trials == 4 * 5


RATES = [0.0001, 0.000316, 0.001, 0.00316, 0.01]
