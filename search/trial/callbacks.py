"""Keras callbacks that every trial uses: a NaN guard and a per-epoch curve recorder."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import keras

from spaces import Objective

__all__ = ["CurveRecorder", "NanGuard", "StopWhen", "early_stopping"]

CURVE_KEYS = ("accuracy", "loss", "val_accuracy", "val_loss")


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite and remembers why.

    Keras' ``TerminateOnNaN`` stops too but leaves no trace; the objective needs the reason to
    end the trial as FAIL.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.reason = f"loss became {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True


class CurveRecorder(keras.callbacks.Callback):
    """Keeps each epoch's logged metrics (accuracy, loss and any other) and the epoch's wall time.

    ``accuracy``, ``loss`` and their ``val_`` twins are always there (empty lists until logged).
    """

    def __init__(self) -> None:
        super().__init__()
        self.curves: dict[str, list[float]] = {key: [] for key in (*CURVE_KEYS, "epoch_seconds")}
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) or getattr(value, "shape", None) == ():
                self.curves.setdefault(key, []).append(float(value))
        self.curves["epoch_seconds"].append(time.perf_counter() - self._start)

    @property
    def epochs(self) -> int:
        return len(self.curves["epoch_seconds"])


class StopWhen(keras.callbacks.Callback):
    """Stops training at the next batch when the worker must stop or the trial ran too long.

    ``reason`` is then ``"signal"`` or ``"timeout"``.
    """

    def __init__(self, stop: threading.Event, seconds: float | None) -> None:
        super().__init__()
        self.stop = stop
        self.seconds = seconds
        self.reason: str | None = None
        self._start = time.perf_counter()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stop.is_set():
            self.reason = "signal"
        elif self.seconds is not None and time.perf_counter() - self._start > self.seconds:
            self.reason = "timeout"
        if self.reason is not None:
            self.model.stop_training = True


def early_stopping(watched: Objective, patience: int) -> keras.callbacks.EarlyStopping:
    """Early stopping on ``watched`` (``Space.watched``), the best epoch's weights restored."""
    mode = "max" if watched.direction == "maximize" else "min"
    return keras.callbacks.EarlyStopping(
        monitor=watched.metric, mode=mode, patience=patience, restore_best_weights=True
    )
