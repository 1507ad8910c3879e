"""ASHA with real Keras training: a short study on digits, paused trials continued from their checkpoints."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import storage
from search import keys
from search.cli import main
from search.trial import checkpoint
from tests.helpers import float_range, int_range, write_space

SPACE = {
    "dataset": {"name": "digits", "limit": 400},
    "objectives": [{"metric": "val_accuracy"}],
    "sampler": {"seed": 1},
    "model": {"layers": 1, "units": int_range(8, 64, log=True)},
    "optimizer": {"name": ["adam", "sgd"], "learning_rate": float_range(1e-3, 1e-1, log=True)},
    "training": {"batch_size": 64, "epochs": 9},
    "budget": {"trials": 14},
}


def test_a_short_study_pauses_and_continues_from_checkpoints(tmp_path: Path) -> None:
    space = write_space(tmp_path, "asha", base=SPACE)
    db = tmp_path / "a.db"
    assert main(["run", str(space), "--storage", f"sqlite:///{db}"]) == 0
    store = storage.open_storage(f"sqlite:///{db}", heartbeat_interval=None)
    trials = optuna.load_study(study_name="asha", storage=store).get_trials()
    assert len(trials) == 14
    first = trials[0]
    assert first.user_attrs[keys.BASELINE] is True and first.params["optimizer"] == "adam"
    assert first.user_attrs[keys.PAUSED_AT] == 1 and first.user_attrs[keys.EPOCHS_RUN] == 1
    continued = [t for t in trials if keys.RESUMED_FROM in t.user_attrs]
    assert continued
    for t in continued:
        start = t.user_attrs[keys.RESUMED_FROM]["epoch"]
        assert t.user_attrs[keys.RESUMED] == "checkpoint"  # same machine: nothing retrained
        assert min(t.intermediate_values) == start + 1
        assert t.user_attrs[keys.EPOCHS_RUN] == start + len(t.user_attrs[keys.CURVES]["val_accuracy"])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(t.user_attrs[keys.EPOCHS_RUN] == 9 for t in complete)
    assert not (tmp_path / "a-artifacts" / "checkpoints").exists() or not any(
        (tmp_path / "a-artifacts" / "checkpoints").iterdir()
    )  # the search is over: no paused trial will continue


def _model(units: int = 4) -> keras.Model:
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(units, activation="relu")(inputs)))
    model.compile(optimizer="adam", loss="mse")
    return model


def test_a_checkpoint_restores_weights_and_optimizer_state(tmp_path: Path) -> None:
    x, y = np.random.default_rng(0).normal(size=(64, 3)), np.zeros((64, 1))
    trained = _model()
    trained.fit(x, y, epochs=2, verbose=0)
    path = checkpoint.path_for(tmp_path, "study/with odd:name", 7)
    checkpoint.save(trained, path, {"units": 4})
    fresh = _model()
    assert checkpoint.restore(fresh, path, {"units": 4})
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), trained.predict(x, verbose=0))
    assert int(fresh.optimizer.iterations.numpy()) == int(trained.optimizer.iterations.numpy()) == 4
    fresh.fit(x, y, epochs=1, verbose=0)  # trains on from the restored state
    assert int(fresh.optimizer.iterations.numpy()) == 6
    assert not checkpoint.restore(_model(), path, {"units": 5})  # other parameters: not this model
    assert not checkpoint.restore(_model(units=5), path, {"units": 4})  # other shapes
    assert not checkpoint.restore(_model(), tmp_path / "missing.npz", {"units": 4})


@pytest.mark.parametrize("epochs", [2, 3])
def test_short_trainings_have_few_or_no_rungs(epochs: int) -> None:
    from search.study.asha import Asha

    assert Asha().rungs(epochs) == (() if epochs < 3 else (1,))
