"""Keras callbacks that every trial uses: a NaN guard, a per-epoch curve recorder, the stop
checks, early stopping and the learning-rate schedule."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import keras
import optuna

from spaces import Objective

__all__ = ["CurveRecorder", "NanGuard", "StopWhen", "early_stopping", "lr_schedule"]

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
    """Stops training at the next batch when the worker must stop, the trial ran too long, or
    its first epoch would take over ``FIRST_EPOCH_SHARE`` of the search's ``budget`` (seconds).

    ``reason`` is then ``"signal"``, ``"timeout"`` or ``"too slow"``; the last raises
    ``optuna.TrialPruned`` out of ``fit``: no one configuration eats the budget, and the sampler
    learns that the region is slow (the trial ends PRUNED with no value). The first epoch's time
    is projected from the batches after the first (which compiles), from the
    ``SLOW_AFTER_BATCHES``-th on; only the first epoch of this ``fit`` is judged: a trial that
    got through it is not stopped for its speed.
    """

    FIRST_EPOCH_SHARE = 0.05  # a search of T seconds tries at least ~20 configurations
    SLOW_AFTER_BATCHES = 10  # steps measured before judging: one slow step (a GC pause) does not decide

    def __init__(self, stop: threading.Event, seconds: float | None, budget: float | None = None) -> None:
        super().__init__()
        self.stop = stop
        self.seconds = seconds
        self.first_epoch_s = None if budget is None else budget * self.FIRST_EPOCH_SHARE
        self.budget = budget
        self.reason: str | None = None
        self.projected: float | None = None
        self._start = time.perf_counter()
        self._first_batch: tuple[float, int] | None = None  # when the first call came, its batch
        self._in_first_epoch = True

    def too_slow(self) -> str:
        """Why it stopped for its speed."""
        return (
            f"too slow: its first epoch would take ~{self.projected or 0:.0f} s, over "
            f"{self.FIRST_EPOCH_SHARE:.0%} of the {self.budget or 0:g} s timeout"
        )

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._in_first_epoch = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        if self.stop.is_set():
            self.reason = "signal"
        elif self.seconds is not None and now - self._start > self.seconds:
            self.reason = "timeout"
        elif self.first_epoch_s is not None and self._in_first_epoch:
            self._judge_first_epoch(batch, now)
        if self.reason is not None:
            self.model.stop_training = True

    def _judge_first_epoch(self, batch: int, now: float) -> None:
        # with steps_per_execution > 1 Keras calls back once per execution, ``batch`` its last step
        if self._first_batch is None:
            self._first_batch = (now, batch)
            return
        steps, (then, first) = self.params.get("steps"), self._first_batch
        if not steps or batch - first < self.SLOW_AFTER_BATCHES:
            return
        projected = (now - self._start) + (now - then) / (batch - first) * (steps - batch - 1)
        if self.first_epoch_s is not None and projected > self.first_epoch_s:
            self.reason, self.projected = "too slow", projected
            raise optuna.TrialPruned(self.too_slow())  # now: Keras would still validate the epoch


def early_stopping(watched: Objective, patience: int) -> keras.callbacks.EarlyStopping:
    """Early stopping on ``watched`` (``Space.watched``), the best epoch's weights restored."""
    mode = "max" if watched.direction == "maximize" else "min"
    return keras.callbacks.EarlyStopping(
        monitor=watched.metric, mode=mode, patience=patience, restore_best_weights=True
    )


def lr_schedule(name: str, model: keras.Model, epochs: int) -> keras.callbacks.Callback | None:
    """``training.lr_schedule``: None for ``constant``; for ``cosine``, the compiled model's rate
    (``base``, read now: call it before a checkpoint restores a decayed one) decays along a half
    cosine over ``epochs`` (epoch ``e`` trains at ``base * (1 + cos(pi * e / epochs)) / 2``).

    The rate is a function of the epoch number alone, so a paused trial continued from its
    checkpoint, and ``hpsearch evaluate`` retraining for the trial's best epoch, train at the
    rates the trial had; early stopping may end a trial before the rate gets low.
    """
    if name == "constant":
        return None
    base = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))

    def rate(epoch: int, _current: float) -> float:
        return base * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2

    return keras.callbacks.LearningRateScheduler(rate)
