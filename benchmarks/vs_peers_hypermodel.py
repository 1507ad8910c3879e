"""The peers' side of benchmarks/vs_peers.py: each space written by hand, as a KerasTuner or an
Optuna user would write it, the one Keras model both build from the sampled values, and the runs.

- ``kt_hypermodel(space)``: a ``kt.HyperModel`` whose ``build(hp)`` samples the space with
  ``hp.Int`` / ``hp.Float`` / ``hp.Choice`` / ``hp.Boolean`` (momentum and nesterov inside
  ``hp.conditional_scope("optimizer", ["sgd"])``) and whose ``fit(hp, model, ...)`` picks the
  batch size, KerasTuner's documented way to tune a ``fit`` argument.
- ``optuna_params(trial, space)``: the same space with ``trial.suggest_*``.
- ``build_model(params)``: the MLP hpsearch builds for the same values (search/trial/models.py):
  Flatten, then per hidden layer Dense (no bias under batch norm) -> [BatchNormalization] ->
  activation -> [Dropout], the initializer on every Dense, L2 on the hidden kernels, a softmax
  output; sparse categorical cross-entropy. The peers feed pixels already scaled to [0, 1] (the
  KerasTuner tutorial's way); hpsearch scales them with a ``Rescaling`` layer: the same inputs.
- ``run_kerastuner`` / ``run_optuna``: one search for the budget, each epoch end appended to
  RUNDIR/epochs*.jsonl by ``epoch_log`` as it happens, then the best model's test accuracy.

The protocol is described in vs_peers.py. Nothing here imports TensorFlow, KerasTuner or Optuna
until a function needs them, so a run's clock does not pay for a peer it does not use.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EPOCHS",
    "MAX_TRIALS",
    "SPACES",
    "build_model",
    "kt_hypermodel",
    "optuna_params",
    "optuna_search",
    "read_jsonl",
    "run_kerastuner",
    "run_optuna",
]

SPACES = ("issue", "preset")
BATCH_SIZES = [32, 64, 128, 256]
EPOCHS = 10
PATIENCE = {"issue": 0, "preset": 2}  # EarlyStopping(val_loss, restore_best_weights) when > 0
ISSUE_ACTIVATIONS = ["relu", "tanh", "sigmoid"]
ISSUE_OPTIMIZERS = ["adam", "sgd", "rmsprop"]
PRESET_ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu", "selu"]
PRESET_INITIALIZERS = ["glorot_uniform", "he_normal", "random_normal"]
PRESET_OPTIMIZERS = ["adam", "adamw", "nadam", "sgd", "rmsprop", "adagrad"]


MAX_TRIALS = 1000  # KerasTuner's max_trials (and hpsearch's budget.trials): more than fit in the budget
HYPERBAND_ITERATIONS = 1000  # one Hyperband iteration of max_epochs 10 can end before the budget
Record = tuple[float, float]  # (seconds since the run started, val_accuracy of one epoch)


def kt_params(hp: Any, space: str) -> dict[str, Any]:
    """The model's hyperparameters drawn from a KerasTuner ``HyperParameters`` object."""
    if space == "issue":
        layers = hp.Int("layers", 1, 3)
        return {
            "units": [hp.Int(f"units_{i}", 32, 512, sampling="log") for i in range(layers)],
            "activation": hp.Choice("activation", ISSUE_ACTIVATIONS),
            "dropout": hp.Float("dropout", 0.0, 0.5),
            "optimizer": hp.Choice("optimizer", ISSUE_OPTIMIZERS),
            "learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log"),
        }
    layers = hp.Int("layers", 1, 4)
    params = {
        "units": [hp.Int(f"units_{i}", 32, 1024, sampling="log") for i in range(layers)],
        "activation": hp.Choice("activation", PRESET_ACTIVATIONS),
        "initializer": hp.Choice("initializer", PRESET_INITIALIZERS),
        "dropout": hp.Float("dropout", 0.0, 0.5),
        "batch_norm": hp.Boolean("batch_norm"),
        "l2": hp.Float("l2", 1e-6, 1e-2, sampling="log"),
        "optimizer": hp.Choice("optimizer", PRESET_OPTIMIZERS),
        "learning_rate": hp.Float("learning_rate", 1e-4, 1e-1, sampling="log"),
    }
    if params["optimizer"] == "sgd":
        with hp.conditional_scope("optimizer", ["sgd"]):
            params["momentum"] = hp.Float("momentum", 0.0, 0.99)
            params["nesterov"] = hp.Boolean("nesterov")
    return params


def optuna_params(trial: Any, space: str) -> dict[str, Any]:
    """The model's hyperparameters and the batch size drawn from an ``optuna.Trial``."""
    if space == "issue":
        layers = trial.suggest_int("layers", 1, 3)
        return {
            "units": [trial.suggest_int(f"units_{i}", 32, 512, log=True) for i in range(layers)],
            "activation": trial.suggest_categorical("activation", ISSUE_ACTIVATIONS),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "optimizer": trial.suggest_categorical("optimizer", ISSUE_OPTIMIZERS),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
        }
    layers = trial.suggest_int("layers", 1, 4)
    params = {
        "units": [trial.suggest_int(f"units_{i}", 32, 1024, log=True) for i in range(layers)],
        "activation": trial.suggest_categorical("activation", PRESET_ACTIVATIONS),
        "initializer": trial.suggest_categorical("initializer", PRESET_INITIALIZERS),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "batch_norm": trial.suggest_categorical("batch_norm", [False, True]),
        "l2": trial.suggest_float("l2", 1e-6, 1e-2, log=True),
        "optimizer": trial.suggest_categorical("optimizer", PRESET_OPTIMIZERS),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True),
        "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
    }
    if params["optimizer"] == "sgd":
        params["momentum"] = trial.suggest_float("momentum", 0.0, 0.99)
        params["nesterov"] = trial.suggest_categorical("nesterov", [False, True])
    return params


def build_model(params: dict[str, Any], input_shape: tuple[int, ...], num_classes: int = 10) -> Any:
    """A compiled Keras MLP for ``params`` (missing keys: Keras' defaults, as in hpsearch)."""
    import keras

    initializer = params.get("initializer", "glorot_uniform")
    batch_norm = params.get("batch_norm", False)
    l2 = params.get("l2", 0.0)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    for units in params["units"]:
        x = keras.layers.Dense(
            units,
            kernel_initializer=initializer,
            kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
            use_bias=not batch_norm,
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation(params["activation"])(x)
        if params["dropout"] > 0:
            x = keras.layers.Dropout(params["dropout"])(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", kernel_initializer=initializer)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=_optimizer(params), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _optimizer(params: dict[str, Any]) -> Any:
    import keras

    name, rate = params["optimizer"], params["learning_rate"]
    if name == "sgd":
        return keras.optimizers.SGD(
            learning_rate=rate,
            momentum=params.get("momentum", 0.0),
            nesterov=params.get("nesterov", False),
        )
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,  # its own weight decay (0.004), as hpsearch's default
        "nadam": keras.optimizers.Nadam,
        "rmsprop": keras.optimizers.RMSprop,
        "adagrad": keras.optimizers.Adagrad,
    }
    return classes[name](learning_rate=rate)


def kt_hypermodel(space: str, input_shape: tuple[int, ...]) -> Any:
    """A ``kt.HyperModel`` for ``space``: ``build(hp)`` draws the model, ``fit`` the batch size."""
    import keras_tuner as kt

    class PeerHyperModel(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            return build_model(kt_params(hp, space), input_shape)

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            return model.fit(*args, batch_size=hp.Choice("batch_size", BATCH_SIZES), **kwargs)

    return PeerHyperModel(name=f"vs-peers-{space}")


# --------------------------------------------------------------------------- running the peers


class BudgetSpent(Exception):
    """Raised in a peer's training at the first epoch boundary past the budget."""


def epoch_log(path: Path, t0: float, deadline: float, error: type[Exception] = BudgetSpent) -> Any:
    """A Keras callback that appends one JSON line per epoch end and raises ``error`` past ``deadline``.

    It keeps only plain values (KerasTuner deep-copies its callbacks for every trial) and opens
    the file for each line, so a killed run loses nothing that was measured.
    """
    import keras

    fits = itertools.count()  # shared by KerasTuner's copies: numbers the fits of this process

    class EpochLog(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.fit_index = next(fits)
            self._check()

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._check()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            now = time.time()
            value = (logs or {}).get("val_accuracy")
            if value is not None:
                line = {"t": round(now - t0, 3), "val_accuracy": float(value), "fit": self.fit_index}
                with path.open("a") as f:
                    f.write(json.dumps({**line, "epoch": epoch + 1}) + "\n")
            self._check()

        def _check(self) -> None:
            if time.time() > deadline:
                raise error(f"budget spent at {time.time() - t0:.1f} s")

    return EpochLog()


def read_jsonl(rundir: Path) -> list[Record]:
    """The peer's epoch records from every epochs*.jsonl in ``rundir`` (a cut last line is skipped)."""
    records: list[Record] = []
    for path in sorted(rundir.glob("epochs*.jsonl")):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                row = json.loads(line)
                records.append((float(row["t"]), float(row["val_accuracy"])))
    return sorted(records)


@dataclass(frozen=True)
class Data:
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any


def load_data(limit: int | None) -> Data:
    """hpsearch's split of the Fashion-MNIST training set (seed 0), pixels scaled to [0, 1]."""
    from search.trial.data import load_dataset

    ds = load_dataset("fashion_mnist", validation_fraction=0.1, limit=limit, seed=0)
    return Data(ds.x_train / ds.pixel_max, ds.y_train, ds.x_val / ds.pixel_max, ds.y_val)


def test_accuracy(model: Any) -> float:
    """Accuracy on the t10k images, scaled as in training (read as ``hpsearch evaluate`` reads them)."""
    from search.trial.testsplit import load_test

    test = load_test("fashion_mnist")
    scores = model.evaluate(test.x / test.pixel_max, test.y, batch_size=1024, verbose=0, return_dict=True)
    return float(scores["accuracy"])


def early_stopping(space: str) -> list[Any]:
    import keras

    patience = PATIENCE[space]
    if not patience:
        return []
    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)]


def run_kerastuner(args: argparse.Namespace, rundir: Path, t0: float) -> dict[str, Any]:
    import keras
    import keras_tuner as kt

    class KerasTunerBudgetSpent(BudgetSpent, kt.errors.FatalError):
        """A fatal error: KerasTuner re-raises it instead of counting a failed trial."""

    keras.utils.set_random_seed(args.seed)
    data = load_data(args.limit)
    deadline = t0 + args.budget
    hypermodel = kt_hypermodel(args.space, data.x_train.shape[1:])
    common: dict[str, Any] = {
        "objective": "val_accuracy",
        "seed": args.seed,
        "directory": str(rundir),
        "project_name": "kt",
        "overwrite": True,
    }
    tuner: Any
    if args.tool == "kt-hyperband":
        tuner = kt.Hyperband(
            hypermodel, max_epochs=EPOCHS, factor=3, hyperband_iterations=HYPERBAND_ITERATIONS, **common
        )
    elif args.tool == "kt-random":
        tuner = kt.RandomSearch(hypermodel, max_trials=MAX_TRIALS, **common)
    else:
        tuner = kt.BayesianOptimization(hypermodel, max_trials=MAX_TRIALS, **common)
    log = epoch_log(rundir / "epochs.jsonl", t0, deadline, KerasTunerBudgetSpent)
    ended = "search finished"
    try:
        tuner.search(
            data.x_train,
            data.y_train,
            epochs=EPOCHS,
            validation_data=(data.x_val, data.y_val),
            callbacks=[log, *early_stopping(args.space)],
            verbose=0,
        )
    except KerasTunerBudgetSpent:
        ended = "budget"
    out = finish_timing(rundir, t0)
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    out.update(ended=ended, trials_finished=len(done), trials_pruned=None, test_accuracy=None, best=None)
    if done:
        best = tuner.oracle.get_best_trials(1)[0]
        out["best"] = {
            "trial": best.trial_id,
            "val_accuracy": best.score,
            "params": best.hyperparameters.values,
        }
        out["test_accuracy"] = test_accuracy(tuner.get_best_models(1)[0])
    return out


def optuna_search(
    args: argparse.Namespace, rundir: Path, t0: float, *, storage: str | None = None, worker: int = 0
) -> Any:
    """One Optuna process: create (or join) the study and optimize until the budget is spent."""
    import keras
    import optuna

    keras.utils.set_random_seed(args.seed + 1000 * worker)
    data = load_data(args.limit)
    deadline = t0 + args.budget
    log = epoch_log(rundir / f"epochs-w{worker}.jsonl", t0, deadline)

    class ReportAndPrune(keras.callbacks.Callback):
        """Optuna's pruning protocol: report each epoch's val_accuracy, stop when told to."""

        def __init__(self, trial: optuna.Trial) -> None:
            super().__init__()
            self.trial, self.pruned = trial, False

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.trial.report(float((logs or {})["val_accuracy"]), epoch)
            if self.trial.should_prune():
                self.pruned = True
                self.model.stop_training = True

    def objective(trial: optuna.Trial) -> float:
        keras.backend.clear_session()
        params = optuna_params(trial, args.space)
        model = build_model(params, data.x_train.shape[1:])
        pruning = ReportAndPrune(trial)
        model.fit(
            data.x_train,
            data.y_train,
            batch_size=params["batch_size"],
            epochs=EPOCHS,
            validation_data=(data.x_val, data.y_val),
            callbacks=[log, pruning, *early_stopping(args.space)],
            verbose=0,
        )
        if pruning.pruned:
            raise optuna.TrialPruned()
        score = float(model.evaluate(data.x_val, data.y_val, verbose=0)[1])
        try:
            best = trial.study.best_value
        except ValueError:  # no trial completed yet
            best = -math.inf
        if score > best:
            model.save(rundir / f"trial-{trial.number}.keras")
        return score

    study = optuna.create_study(
        study_name="optuna",
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        # two processes seeded alike would sample the same configurations
        sampler=optuna.samplers.TPESampler(seed=args.seed + 1000 * worker),
        pruner=optuna.pruners.HyperbandPruner(),
    )
    with contextlib.suppress(BudgetSpent):
        study.optimize(objective, timeout=max(deadline - time.time(), 0.001))
    return study


def run_optuna(
    args: argparse.Namespace, rundir: Path, t0: float, *, spawn: Callable[[int], subprocess.Popen[bytes]]
) -> dict[str, Any]:
    """Optuna's search, in this process (or, ``--two-cores``, two ``spawn``-ed ones); the run's results."""
    import optuna

    if args.two_cores:  # Optuna's docs: the same script in two processes on one RDB study
        url = f"sqlite:///{rundir / 'optuna.db'}"
        optuna.create_study(study_name="optuna", storage=url, direction="maximize", load_if_exists=True)
        workers = [spawn(i) for i in range(2)]
        for w in workers:
            w.wait()
        study = optuna.load_study(study_name="optuna", storage=url)
        ended = "budget"
    else:
        study = optuna_search(args, rundir, t0)
        ended = "budget" if time.time() >= t0 + args.budget else "search finished"
    out = finish_timing(rundir, t0)
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    out.update(
        ended=ended,
        trials_finished=sum(t.state in (states.COMPLETE, states.PRUNED) for t in trials),
        trials_pruned=sum(t.state == states.PRUNED for t in trials),
        test_accuracy=None,
        best=None,
    )
    if any(t.state == states.COMPLETE for t in trials):
        import keras

        best = study.best_trial
        out["best"] = {"trial": best.number, "val_accuracy": best.value, "params": best.params}
        saved = rundir / f"trial-{best.number}.keras"
        if saved.exists():
            out["test_accuracy"] = test_accuracy(keras.models.load_model(saved))
    return out


def finish_timing(rundir: Path, t0: float) -> dict[str, Any]:
    """What every peer's run reports the moment its search ends (before any test evaluation)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
    return {"records": read_jsonl(rundir), "search_seconds": time.time() - t0, "cpu_seconds": cpu}
