"""The objective: trial -> params -> model -> train -> recorded metrics and objective values."""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import optuna

from search.callbacks import CurveRecorder, NanGuard
from search.errors import TrialFailed
from search.models import build, count_flops
from search.pruning import PruningCallback

if TYPE_CHECKING:
    from search.data import Dataset
    from spaces import Space

__all__ = ["Objective", "describe_device"]


def describe_device() -> str:
    """Where Keras trains in this process: the first visible GPU, else the CPU."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name.replace("/device:", "") if gpus else "CPU"


class Objective:
    """Trains one Keras model per trial and returns the space's objective values.

    Every finished trial records user attrs: ``val_accuracy``, ``val_loss``, ``accuracy``,
    ``loss``, ``train_seconds`` (``model.fit`` only), ``epochs_run``, ``params`` (every
    hyperparameter, fixed ones included), ``param_count``, ``flops`` (forward, per sample),
    ``device`` and ``curves`` (per-epoch metrics). A failed trial also records ``fail_reason``.
    """

    def __init__(self, space: Space, dataset: Dataset, *, device: str | None = None) -> None:
        self.space = space
        self.data = dataset
        self.device = device or describe_device()
        self.prune = space.pruner.type != "none" and not space.is_multi_objective

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        params = self.space.sample(trial)
        keras.backend.clear_session()
        gc.collect()
        keras.utils.set_random_seed(self.space.seed + trial.number)
        trial.set_user_attr("params", _jsonable(params))
        trial.set_user_attr("device", self.device)
        try:
            model = build(
                params,
                family=self.space.family,
                input_shape=self.data.input_shape,
                num_classes=self.data.num_classes,
                pixel_max=self.data.pixel_max,
            )
        except (ValueError, TypeError) as e:
            raise self._fail(trial, f"impossible configuration: {e}") from e
        trial.set_user_attr("param_count", int(model.count_params()))
        trial.set_user_attr("flops", count_flops(model))

        guard, recorder = NanGuard(), CurveRecorder()
        callbacks: list[keras.callbacks.Callback] = [guard, recorder]
        if params["patience"] > 0:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=params["patience"], restore_best_weights=True
                )
            )
        pruning = PruningCallback(trial, self.space.pruner.metric) if self.prune else None
        if pruning is not None:
            callbacks.append(pruning)

        start = time.perf_counter()
        try:
            model.fit(
                self.data.x_train,
                self.data.y_train,
                batch_size=params["batch_size"],
                epochs=params["epochs"],
                validation_data=(self.data.x_val, self.data.y_val),
                callbacks=callbacks,
                verbose=0,
            )
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C or SIGINT)")
            raise
        except MemoryError as e:
            raise self._fail(trial, f"out of memory: {e}") from e
        except Exception as e:  # TF's errors have no common base we can import cheaply
            if type(e).__name__ in ("ResourceExhaustedError", "InternalError"):
                raise self._fail(trial, f"out of memory: {str(e).splitlines()[0]}") from e
            raise
        train_seconds = time.perf_counter() - start

        metrics = _final_metrics(recorder, params["patience"] > 0)
        metrics["train_seconds"] = train_seconds
        metrics["param_count"] = float(model.count_params())
        metrics["flops"] = float(count_flops(model))
        for key in ("val_accuracy", "val_loss", "accuracy", "loss", "train_seconds"):
            if key in metrics:
                trial.set_user_attr(key, metrics[key])
        trial.set_user_attr("epochs_run", recorder.epochs)
        trial.set_user_attr("curves", recorder.curves)

        if guard.reason is not None:
            raise self._fail(trial, guard.reason)
        if pruning is not None and pruning.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at epoch {pruning.pruned_at}")
        values = tuple(metrics[m] for m in self.space.metrics)
        return values if self.space.is_multi_objective else values[0]

    @staticmethod
    def _fail(trial: optuna.Trial, reason: str) -> TrialFailed:
        trial.set_user_attr("fail_reason", reason)
        return TrialFailed(reason)


def _final_metrics(recorder: CurveRecorder, restored_best: bool) -> dict[str, float]:
    """The metrics of the model that training leaves behind.

    With early stopping the best weights (lowest ``val_loss``) are restored, so that epoch's
    metrics are reported; otherwise the last epoch's.
    """
    curves = recorder.curves
    if not curves["val_loss"]:
        return {}
    losses = np.asarray(curves["val_loss"], dtype=float)
    i = int(np.nanargmin(losses)) if restored_best and np.isfinite(losses).any() else len(losses) - 1
    return {
        key: curves[key][i]
        for key in ("val_accuracy", "val_loss", "accuracy", "loss")
        if len(curves[key]) > i
    }


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
