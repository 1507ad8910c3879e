"""A two-objective Keras study on the offline digits in which trials are pruned."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from search.cli import main
from search.study import open_storage
from search.trial.pruning import CURVE_ATTR
from tests.helpers import write_space

# Learning rates 1e-5 and 2e-5 leave a 32-unit MLP near chance (0.05-0.13 here) after 2 epochs;
# 0.01 and 0.003 are at 0.59-0.86. The threshold (0.3) sits far from both, so which trials are
# pruned does not depend on the random seed or the order the grid runs in.
SPACE = {
    "dataset": {"name": "digits", "validation_fraction": 0.2, "limit": 600},
    "sampler": {"type": "grid", "seed": 0},
    "pruner": {"type": "threshold", "lower": 0.3, "n_warmup_steps": 2},
    "budget": {"trials": 4},
    "model": {"layers": 1, "units": 32},
    "optimizer": {"name": "adam", "learning_rate": [0.01, 0.003, 1.0e-5, 2.0e-5]},
    "training": {"batch_size": 64, "epochs": 4},
}


def test_multi_objective_study_prunes_and_still_reports_its_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = write_space(tmp_path, "mo-prune", **SPACE)
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    assert main(["run", str(space), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "PRUNED   threshold pruner at epoch 2: val_accuracy=" in out
    assert "Pareto-optimal trials of study 'mo-prune'" in out

    study = optuna.load_study(study_name="mo-prune", storage=open_storage(url))
    by_lr = {t.params["learning_rate"]: t for t in study.trials}
    assert {lr: t.state.name for lr, t in by_lr.items()} == {
        0.01: "COMPLETE",
        0.003: "COMPLETE",
        1e-5: "PRUNED",
        2e-5: "PRUNED",
    }
    pruned = by_lr[1e-5]
    assert pruned.user_attrs["epochs_run"] == 2
    assert list(pruned.user_attrs[CURVE_ATTR]) == ["1", "2"]
    assert pruned.user_attrs["prune_reason"].startswith("threshold pruner at epoch 2")
    assert len(pruned.user_attrs["curves"]["val_accuracy"]) == 2  # its curves are kept

    assert main(["studies", "--storage", url]) == 0
    assert "complete=2 pruned=2" in capsys.readouterr().out
    assert main(["best", "--study", "mo-prune", "--storage", url, "--json"]) == 0
    front = json.loads(capsys.readouterr().out)["best_trials"]
    assert {t["state"] for t in front} == {"COMPLETE"}
    assert {t["params"]["learning_rate"] for t in front} <= {0.01, 0.003}
