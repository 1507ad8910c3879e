"""Warm start: a new study's first trials are a finished study's best configurations that fit it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import spaces
from search import keys
from search.cli import main
from search.study.warm import fitting, warm_start
from tests.helpers import TINY, int_range, write_space


def _finished(url: str, units: list[int], values: list[float]) -> optuna.Study:
    """A finished study over units_0 with the given values (no training needed)."""
    old = optuna.create_study(study_name="old", storage=url, direction="maximize")
    for u, v in zip(units, values, strict=True):
        old.add_trial(
            optuna.trial.create_trial(
                params={"units_0": u},
                distributions={"units_0": optuna.distributions.IntDistribution(1, 512)},
                value=v,
            )
        )
    return old


def test_the_best_fitting_configurations_are_queued_first_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    old = _finished(url, [8, 300, 12, 12, 4], [0.9, 0.99, 0.8, 0.7, 0.5])
    space = spaces.load(write_space(tmp_path, "new", base=TINY, model={"units": int_range(4, 16)}))
    new = optuna.create_study(study_name="new", storage=url, direction="maximize")
    assert warm_start(new, space, old, count=3) == [0, 2, 4]  # 300 does not fit; 12 is taken once
    waiting = new.get_trials(states=(TrialState.WAITING,))
    assert [t.params["units_0"] for t in waiting] == [8, 12, 4]
    assert waiting[0].user_attrs[keys.WARM_START_FROM] == "old#0"
    assert warm_start(new, space, old, count=3) == []  # resuming adds nothing
    assert new.user_attrs[keys.WARM_START] == {"study": "old", "trials": [0, 2, 4]}


def test_a_configuration_outside_a_condition_or_a_range_does_not_fit(tmp_path: Path) -> None:
    space = spaces.load(
        write_space(
            tmp_path,
            "cond",
            base=TINY,
            optimizer={
                "name": ["adam", "sgd"],
                "momentum": {"type": "float", "low": 0.5, "high": 0.9, "when": {"name": "sgd"}},
            },
        )
    )
    dist = optuna.distributions
    trial = optuna.trial.create_trial(
        params={"units_0": 8, "optimizer": "sgd", "momentum": 0.95},
        distributions={
            "units_0": dist.IntDistribution(1, 64),
            "optimizer": dist.CategoricalDistribution(["adam", "sgd"]),
            "momentum": dist.FloatDistribution(0.0, 0.99),
        },
        value=1.0,
    )
    assert fitting(space, trial) is None  # momentum 0.95 is outside 0.5..0.9
    adam = optuna.trial.create_trial(
        params={"units_0": 8, "optimizer": "adam", "momentum": 0.95},
        distributions=trial.distributions,
        value=1.0,
    )
    params, _ = fitting(space, adam) or ({}, {})
    assert params == {"units_0": 8, "optimizer": "adam"}  # momentum is inactive for adam: dropped


@pytest.mark.parametrize("command", ["run", "create"])
def test_cli_warm_start_runs_them_first_within_the_budget(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    _finished(url, [8, 16, 5], [0.5, 0.9, 0.7])
    space = write_space(tmp_path, "new", base=TINY)
    assert main([command, str(space), "--storage", url, "--trials", "4", "--warm-start", "old"]) == 0
    assert "warm start: 2 configurations of study 'old' (#1, #2) run first" in capsys.readouterr().out
    trials = optuna.load_study(study_name="new", storage=url).trials
    assert len(trials) == 4 and [t.params.get("units_0") for t in trials[:2]] == [16, 5]
    if command == "run":
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert main([command, str(space), "--storage", url, "--trials", "4", "--warm-start", "nope"]) == 2
    assert "--warm-start nope: no such study in this storage" in capsys.readouterr().err
