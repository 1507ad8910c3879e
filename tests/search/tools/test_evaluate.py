"""`hpsearch evaluate` on a tiny real study, and the best-epoch bookkeeping it relies on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest

import spaces
import storage
from search.cli import main
from search.errors import ConfigError
from search.results.tables import best_trials
from search.study.create import create_or_load
from search.tools.evaluate import chosen_epochs, evaluate
from search.trial.callbacks import CurveRecorder, early_stopping
from search.trial.objective import best_epoch
from search.trial.testsplit import load_test
from tests.helpers import TINY, int_range, space_text, write_space


@pytest.fixture(scope="module")
def study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("evaluate")
    space = write_space(
        folder,
        "tiny-eval",
        dataset={"name": "digits", "validation_fraction": 0.2, "limit": 300},
        objectives=["val_accuracy", "train_seconds"],
        sampler={"type": "random", "seed": 5},
        budget={"trials": 2},
        model={"units": int_range(16, 48)},
        training={"batch_size": 32, "epochs": 4, "patience": 1, "lr_schedule": "cosine"},
    )
    url = f"sqlite:///{folder / 'eval.db'}"
    assert main(["run", str(space), "--storage", url]) == 0
    return url


def _study(url: str) -> optuna.Study:
    return optuna.load_study(
        study_name="tiny-eval", storage=storage.open_storage(url, heartbeat_interval=None)
    )


def test_trials_record_the_epoch_whose_metrics_they_report(study_url: str) -> None:
    for trial in _study(study_url).trials:
        curves, best = trial.user_attrs["curves"], trial.user_attrs["best_epoch"]
        assert 1 <= best <= trial.user_attrs["epochs_run"]
        # patience > 0: the best epoch of the first objective is restored (val_loss would differ)
        assert best == int(np.argmax(curves["val_accuracy"])) + 1
        assert trial.user_attrs["val_accuracy"] == curves["val_accuracy"][best - 1] == trial.values[0]


def test_evaluate_prints_a_full_confusion_matrix_and_saves_a_loadable_model(
    study_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--study", "tiny-eval", "--storage", study_url, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    test_size = len(load_test("digits").y)
    rows = [line.split() for line in out.splitlines() if re.fullmatch(r"\s*\d(\s+\d+){10}", line)]
    assert len(rows) == 10 and all(len(r) == 11 for r in rows)
    matrix = np.array([[int(v) for v in r[1:]] for r in rows])
    assert matrix.sum() == test_size == 360
    accuracy = float(re.search(r"test_accuracy=([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    assert accuracy == pytest.approx(np.trace(matrix) / test_size, abs=1e-4)
    assert "precision" in out and "recall" in out and "f1-score" in out and "macro avg" in out

    chosen = best_trials(_study(study_url))[0]  # the Pareto trial with the best val_accuracy
    folder = tmp_path / f"tiny-eval-trial{chosen.number}"
    model = keras.saving.load_model(folder / "model.keras", safe_mode=True)
    test = load_test("digits")
    _, reloaded_accuracy = model.evaluate(test.x, test.y, verbose=0)
    assert reloaded_accuracy == pytest.approx(accuracy, abs=1e-4)  # the saved model is the one tested
    assert (folder / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((folder / "evaluation.json").read_text())
    assert np.array(saved["test_confusion_matrix"]).tolist() == matrix.tolist()

    evaluated = _study(study_url).trials[chosen.number]
    assert evaluated.user_attrs["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert np.array(evaluated.user_attrs["test_confusion_matrix"]).sum() == 360
    assert (
        evaluated.user_attrs["test_fit"]
        == f"train+validation, {chosen.user_attrs['best_epoch']} epochs, 587 samples"
    )
    assert evaluated.state == optuna.trial.TrialState.COMPLETE


def test_evaluate_a_chosen_trial_trained_as_it_ran(
    study_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate", "--study", "tiny-eval", "--storage", study_url, "--out", str(tmp_path)]
    assert main([*args, "--trial", "0", "--fit", "train"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("trial 0 of study 'tiny-eval': retrained on train (300 samples,")
    found = re.search(
        r"validation accuracy of the retrained model ([0-9.]+) \(the trial recorded ([0-9.]+)\)", out
    )
    assert found is not None
    # same data, seed and callbacks as the trial: the scored model comes back (identical on this
    # machine; 0.01 = 3 of 287 validation images leaves room for float reduction order elsewhere)
    assert float(found.group(1)) == pytest.approx(float(found.group(2)), abs=0.01)
    # the trial's cosine schedule over its 4 epochs: the rate of the last epoch run is saved
    ran = int(re.search(r"300 samples, (\d) epochs", out).group(1))  # type: ignore[union-attr]
    model = keras.saving.load_model(tmp_path / "tiny-eval-trial0" / "model.keras", safe_mode=True)
    expected = 1e-3 * (1 + np.cos(np.pi * (ran - 1) / 4)) / 2
    assert float(model.optimizer.learning_rate) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trial", "7"], "--trial 7: study 'tiny-eval' has trials 0..1"),
        (["--study", "nope"], "no study named 'nope'"),
    ],
)
def test_evaluate_rejects_unknown_trials_and_studies(
    study_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["evaluate", "--study", "tiny-eval", "--storage", study_url, "--out", str(tmp_path / "o"), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "watched", [spaces.Objective("val_loss", "minimize"), spaces.Objective("val_accuracy", "maximize")]
)
def test_keras_restores_the_best_epoch_also_when_training_does_not_stop_early(
    watched: spaces.Objective,
) -> None:
    """Keras 3's EarlyStopping restores the best weights at the end of every fit."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(
        optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    # epoch 1 learns; later epochs take huge steps, so the validation loss gets worse
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.5 if epoch == 0 else 200.0)
    recorder = CurveRecorder()
    stop = early_stopping(watched, patience=10)
    model.fit(x, y, validation_data=(x, y), epochs=3, callbacks=[schedule, recorder, stop], verbose=0)
    assert stop.stopped_epoch == 0  # it ran all its epochs
    best = best_epoch(recorder.curves, True, watched)
    assert best < recorder.epochs  # a later epoch was worse, so restoring matters
    restored = model.evaluate(x, y, verbose=0, return_dict=True)[watched.metric.removeprefix("val_")]
    assert restored == pytest.approx(recorder.curves[watched.metric][best - 1], rel=1e-5)


def test_retrain_epochs_come_from_best_epoch_or_the_curves() -> None:
    curves = {"val_loss": [0.9, 0.5, 0.7, 0.8]}
    params = {"patience": 2, "epochs": 10}

    def trial(**attrs: object) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(values=[0.5], user_attrs=attrs)

    assert chosen_epochs(trial(best_epoch=3, curves=curves), params) == 3
    assert chosen_epochs(trial(curves=curves), params) == 2  # restored best of an older trial
    assert chosen_epochs(trial(curves=curves), {**params, "patience": 0}) == 4  # the last epoch
    assert chosen_epochs(trial(), params) == 10


@pytest.mark.parametrize("name", ["../escaped", "linked"])
def test_evaluate_never_writes_outside_its_out_directory(tmp_path: Path, name: str) -> None:
    """The CLI refuses such a --study; a study named so by other means still writes nothing outside."""
    store = storage.open_storage(f"sqlite:///{tmp_path / 'e.db'}", heartbeat_interval=None)
    space = spaces.loads(space_text("e", base=TINY), source="test")
    study = create_or_load(space, store, study_name=name)
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1.0]))
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "linked-trial0").symlink_to(elsewhere)  # a link inside --out that leads out of it
    with pytest.raises(ConfigError, match=f"--out {out}: '{name}-trial0' would be written outside it"):
        evaluate(store, name, out_dir=out)
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "escaped-trial0").exists()
    assert [p.name for p in out.iterdir()] == ["linked-trial0"]
