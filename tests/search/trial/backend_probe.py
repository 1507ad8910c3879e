"""Run every trial path once on the backend named in ``$KERAS_BACKEND``; print one JSON line.

Keras picks its backend at its first import, so a test process (already on TensorFlow) cannot
try another one: tests/search/trial/test_backends.py runs this module in a subprocess per
backend, ``python -m tests.search.trial.backend_probe OUT_DIR``, and asserts on what it prints.
Each check is small (300 digits, 1-3 epochs) so that the three backends add seconds, not minutes.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from search.trial import backend as backends

backends.select(backends.resolve(None, None))  # before Keras: as a worker does

import keras  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402

import spaces  # noqa: E402
from search.errors import TrialFailed, WorkerStopping  # noqa: E402
from search.trial.data import load_dataset  # noqa: E402
from search.trial.objective import Objective  # noqa: E402
from spaces.optuna import make_pruner  # noqa: E402
from tests.helpers import space_text  # noqa: E402

TINY = {
    "dataset": {"name": "digits", "validation_fraction": 0.2, "limit": 300},
    "model": {"layers": 1, "units": 16},
    "training": {"batch_size": 64, "epochs": 2},
}


class SetAfter(threading.Event):
    """A stop event that reads as set from its ``n``-th look on: a stop in mid-training, no timer."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.looks, self.n = 0, n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n


def _trial(stop: threading.Event | None = None, **sections: Any) -> tuple[optuna.trial.FrozenTrial, str]:
    space = spaces.loads(space_text("tiny", base=TINY, **sections), source="probe")
    data = load_dataset("digits", validation_fraction=0.2, limit=300, seed=space.seed)
    study = optuna.create_study(directions=list(space.directions), pruner=make_pruner(space.pruner))
    objective = Objective(space, data, device="CPU (probe)", stop=stop)
    outcome = "complete"
    try:
        study.optimize(objective, n_trials=1, catch=(TrialFailed,))
    except WorkerStopping:
        outcome = "stopped"
    return study.trials[0], outcome


def _summary(trial: optuna.trial.FrozenTrial, outcome: str) -> dict[str, Any]:
    attrs = trial.user_attrs
    return {
        "state": trial.state.name,
        "outcome": outcome,
        "backend": attrs.get("backend"),
        "params_backend": attrs.get("params", {}).get("backend"),
        "epochs_run": attrs.get("epochs_run"),
        "fail_reason": attrs.get("fail_reason"),
        "val_accuracy": attrs.get("val_accuracy"),
        "fast_paths": attrs.get("fast_paths"),
    }


def _round_trip(out: Path) -> dict[str, Any]:
    """A model saved as .keras loads back with the same predictions."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 16)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Dense(8)(x)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = load_dataset("digits", validation_fraction=0.2, limit=100)
    model.fit(data.x_train, data.y_train, epochs=1, verbose=0)
    path = out / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    same = np.allclose(model.predict(data.x_val, verbose=0), loaded.predict(data.x_val, verbose=0))
    return {"same_predictions": bool(same)}


def main(out: Path) -> None:
    result: dict[str, Any] = {"keras_backend": keras.backend.backend()}
    result["complete"] = _summary(*_trial())
    # val_accuracy can never exceed 1.0, so a threshold pruner with lower=1.5 prunes at step 1
    result["pruned"] = _summary(
        *_trial(
            training={"epochs": 3}, objectives=["val_accuracy"], pruner={"type": "threshold", "lower": 1.5}
        )
    )
    # learning rate 1e30 on raw 0..16 pixels overflows the weights within the first batches
    result["nan"] = _summary(
        *_trial(
            training={"epochs": 3, "normalize": False}, optimizer={"name": "sgd", "learning_rate": 1.0e30}
        )
    )
    # looks 1 (before the trial) and 2 (first batch) read "go on"; the third batch stops it
    result["stop"] = _summary(*_trial(SetAfter(3), training={"epochs": 3, "batch_size": 16}))
    result["round_trip"] = _round_trip(out)
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
