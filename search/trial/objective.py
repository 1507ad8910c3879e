"""The objective: trial -> params -> model -> train -> recorded metrics and objective values."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import optuna

import storage
from search import keys
from search.errors import TrialFailed, WorkerStopping
from search.hypermodels.adapter import OptunaHyperParameters
from search.hypermodels.loader import hypermodel_of, load_builder
from search.results import artifacts
from search.results.select import best_epoch, final_metrics
from search.study import asha
from search.trial import backend
from search.trial.build import build_hypermodel, build_model, failure_reason, label_encoding
from search.trial.callbacks import CurveRecorder, NanGuard, StopWhen, early_stopping, lr_schedule
from search.trial.hyperfit import overrides_fit, run_fit, scores
from search.trial.models import count_flops
from search.trial.pruning import MultiObjectiveReporter, NativeReporter, PruningCallback, Reporter
from search.trial.scheduling import AshaReporter, Continuation, pause
from search.trial.training import fit, freeze_long_lived, prepare
from storage import compat

if TYPE_CHECKING:
    from search.trial.data import Dataset
    from spaces import Space

__all__ = ["Objective", "describe_device"]


def describe_device() -> str:
    """Where Keras trains in this process: the first visible GPU, else the CPU."""
    return backend.describe_device(keras.backend.backend())


class Objective:
    """Trains one Keras model per trial and returns the space's objective values.

    Every finished trial records user attrs: ``val_accuracy``, ``val_loss``, ``accuracy``,
    ``loss``, ``train_seconds`` (``model.fit`` only), ``epochs_run``, ``best_epoch`` (the epoch
    whose weights and metrics are kept), ``params`` (every hyperparameter, fixed ones included),
    ``param_count``, ``flops`` (forward, per sample), ``device``, ``backend`` (Keras 3's:
    tensorflow, jax or torch), ``curves`` (per-epoch metrics) and ``fast_paths`` (steps per
    execution, validation batch, XLA: what :func:`search.trial.training.fit` chose).

    A trial's own failure raises :class:`TrialFailed` and records ``fail_reason``: NaN loss, the
    trial timeout, any exception building or training the model (out of memory, a bad config, a
    hypermodel's or custom layer's error: :func:`search.trial.build.failure_reason`). What is not
    the trial's fault propagates (a database error, :class:`WorkerStopping`,
    ``KeyboardInterrupt``); an unimportable hypermodel raises ``ConfigError`` here, first.
    """

    def __init__(
        self,
        space: Space,
        dataset: Dataset,
        *,
        device: str | None = None,
        stop: threading.Event | None = None,
        device_info: Mapping[str, Any] | None = None,
        on_gpu: bool = False,
        checkpoints: Path | None = None,
        schedule: bool = True,
        timeout: float | None = None,
    ) -> None:
        """
        Args:
            space: what to sample and train.
            dataset: the data, loaded once for every trial of this process.
            device: how to describe the device in the trial's attrs (default: detected).
            stop: set by the worker on SIGTERM / SIGINT; the running trial stops at the next
                batch and raises :class:`WorkerStopping` so the worker can re-queue it.
            device_info: the worker's placement (GPU index, UUID, memory cap), recorded per trial.
            on_gpu: this worker trains on a GPU (mixed precision applies only there).
            checkpoints: where ASHA's paused trials save their models for a promotion to
                continue (:mod:`search.study.asha`); None: a promotion retrains them.
            schedule: the trials come from hpsearch's queue, which promotes paused trials. A
                plain ``study.optimize`` cannot continue them, so there ``pruner: asha`` leaves
                the decision to the study's own pruner (``trial.should_prune``).
            timeout: the search's time budget (seconds; None: ``budget.timeout``): a trial whose
                first epoch would take over a twentieth of it is PRUNED within a few batches
                (:class:`~search.trial.callbacks.StopWhen`).
        """
        if space.hypermodel is not None:  # imported once, before any trial: a broken file stops the worker
            load_builder(space.hypermodel)
        # each trial builds a new model, so TensorFlow's "tf.function retracing" warning says nothing
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        self.space = space
        self.data = dataset
        # once per worker: every trial trains on these tensors (keyed by the labels' rank:
        # 1 class indices, 2 one-hot rows, made on the first trial that wants them)
        self._tensors = {1: prepare(dataset)}
        freeze_long_lived()
        self.device_info = dict(device_info) if device_info is not None else None
        self.device = device or describe_device()
        self.on_gpu = on_gpu
        self.prune = space.pruner.type != "none"
        self.stop = stop or threading.Event()
        self.asha = asha.for_space(space) if schedule else None
        self.checkpoints = checkpoints
        self.timeout = timeout or space.budget.timeout
        # multi-objective pruning: this worker's pruner instance (see search.trial.pruning)
        self._mo: optuna.pruners.BasePruner | None = None
        if self.prune and space.is_multi_objective and self.asha is None:
            from spaces.optuna import make_pruner

            self._mo = make_pruner(space.pruner)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        if self.stop.is_set():  # asked to stop between trials: hand this one back untouched
            raise self._stopping(trial)
        params = self.space.sample(trial)
        params["backend"] = keras.backend.backend()  # the one it trains on (--backend may override)
        after = Continuation.of(trial)  # an ASHA promotion continues a paused trial
        keras.backend.clear_session(free_memory=False)  # the one gc.collect() is below
        compat.release_custom_gradients()  # TensorFlow's registry holds every traced graph
        freeze_long_lived()  # frees the last trial's model; what survives is not walked again
        keras.utils.set_random_seed(self.space.seed + trial.number)
        mixed = bool(params["mixed_precision"]) and self.on_gpu
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
        setup: dict[str, Any] = {
            keys.PARAMS: _jsonable(params),
            keys.DEVICE: self.device,
            keys.BACKEND: keras.backend.backend(),
            keys.PRECISION: "mixed_float16" if mixed else "float32",
        }
        if self.device_info is not None:
            setup[keys.DEVICE_INFO] = self.device_info
        # the attrs go in three transactions (before the build, after it, after training), not
        # one each; the build comes second because a KerasTuner hypermodel adds to "params"
        _record(trial, setup)
        hp = None
        try:  # Keras, a hypermodel's build(hp), a custom layer: any error of theirs fails this trial
            if self.space.hypermodel is None:
                model = build_model(self.space, trial, params, self.data)
            else:  # the same hp suggests what an overridden HyperModel.fit tunes
                hp = OptunaHyperParameters(trial)
                model = build_hypermodel(self.space, hp, params, self.data)
            flops = count_flops(model)
            param_count = int(model.count_params())
            data = self._data_for(label_encoding(model))
        except Exception as e:
            reason = failure_reason(e, during="build", hypermodel=self.space.hypermodel)
            if reason is None:  # a database error, a stop: not this trial's failure
                raise
            raise self._fail(trial, reason) from e
        ref = self.space.hypermodel
        hypermodel = None if hp is None or ref is None else hypermodel_of(load_builder(ref))
        override = hp is not None and overrides_fit(hypermodel)  # KerasTuner's fit(hp, model, ...)
        study = trial.study.study_name
        schedule = lr_schedule(params["lr_schedule"], model, params["epochs"])  # before the restore
        first = 0 if override else after.restore(model, self.checkpoints, study, _jsonable(params))
        built: dict[str, Any] = {keys.PARAM_COUNT: param_count, keys.FLOPS: flops}
        if after.source is not None:
            built[keys.RESUMED] = "checkpoint" if first else "retrained"
        _record(trial, built)

        guard, recorder = NanGuard(), CurveRecorder()
        stopper = StopWhen(self.stop, self.space.budget.trial_timeout, budget=None if first else self.timeout)
        callbacks: list[keras.callbacks.Callback] = [guard, recorder, stopper]
        if params["patience"] > 0:
            callbacks.append(early_stopping(self.space.watched, params["patience"]))
        if schedule is not None:
            callbacks.append(schedule)
        pruning = self._pruning_callback(trial, params["epochs"], after.epoch)
        if pruning is not None:
            callbacks.append(pruning)

        start = time.perf_counter()
        scored: dict[str, float] = {}
        try:
            if override and hp is not None:
                result = run_fit(
                    hypermodel, hp, model, data, batch_size=params["batch_size"],
                    epochs=params["epochs"], callbacks=callbacks,
                )  # fmt: skip
                scored = scores(result, recorder.curves, self.space.metrics[0])
                _record(trial, {keys.PARAMS: {**trial.user_attrs.get(keys.PARAMS, {}), **hp.values}})
                used: dict[str, Any] = {"fit": "HyperModel.fit"}
            else:
                used = fit(
                    model,
                    self._tensors[data.y_train.ndim],
                    batch_size=params["batch_size"],
                    epochs=params["epochs"],
                    callbacks=callbacks,
                    flops_per_sample=flops,
                    initial_epoch=first,
                    until=None if self.asha is None else self.asha.next_rung(params["epochs"], first),
                )
        except optuna.TrialPruned as e:  # too slow for the timeout (StopWhen): no epoch to keep
            _record(trial, {keys.PRUNE_REASON: str(e)})
            raise
        except Exception as e:  # out of memory, a custom layer's error, ...: this trial fails alone
            reason = failure_reason(e, during="train", hypermodel=self.space.hypermodel)
            if reason is None:
                raise
            raise self._fail(trial, reason) from e
        train_seconds = time.perf_counter() - start + (after.seconds if first else 0.0)

        restored = params["patience"] > 0
        metrics = {**final_metrics(recorder.curves, restored, self.space.watched), **scored}
        metrics[keys.TRAIN_SECONDS] = train_seconds
        metrics[keys.PARAM_COUNT] = float(param_count)
        metrics[keys.FLOPS] = float(flops)
        shown = ("val_accuracy", "val_loss", "accuracy", "loss", keys.TRAIN_SECONDS, *self.space.metrics)
        results: dict[str, Any] = {key: metrics[key] for key in dict.fromkeys(shown) if key in metrics}
        results[keys.EPOCHS_RUN] = first + recorder.epochs
        results[keys.BEST_EPOCH] = first + best_epoch(recorder.curves, restored, self.space.watched)
        results[keys.CURVES] = recorder.curves
        results[keys.FAST_PATHS] = used  # so that the train_seconds of two trials can be compared
        _record(trial, results)
        artifacts.record(trial, model, recorder.curves)  # dashboard: curves SVG + model summary

        if stopper.reason == "signal":
            raise self._stopping(trial)
        if guard.reason is not None:
            raise self._fail(trial, guard.reason)
        if stopper.reason == "timeout":
            limit = self.space.budget.trial_timeout
            raise self._fail(trial, f"still training after budget.trial_timeout = {limit:g} s")
        if pruning is not None and pruning.pruned_at is not None:
            if self.asha is not None:
                pause(model, self.checkpoints, trial, _jsonable(params))
                _record(trial, {keys.PAUSED_AT: pruning.pruned_at})
                raise optuna.TrialPruned(f"paused at epoch {pruning.pruned_at}")
            raise optuna.TrialPruned(f"pruned at epoch {pruning.pruned_at}")
        missing = [m for m in self.space.metrics if m not in metrics]
        if missing:
            logged = ", ".join(
                sorted(k for k in recorder.curves if k != "epoch_seconds" and recorder.curves[k])
            )
            raise self._fail(
                trial, f"the model logs no {', '.join(missing)} (it logs: {logged or 'nothing'})"
            )
        values = tuple(metrics[m] for m in self.space.metrics)
        return values if self.space.is_multi_objective else values[0]

    def _data_for(self, encoding: str) -> Dataset:
        """The dataset with the labels the model's loss wants (tensors made once per encoding)."""
        if encoding != "one_hot":
            return self.data
        data = self.data.one_hot()
        if 2 not in self._tensors:
            self._tensors[2] = prepare(data)
        return data

    def _pruning_callback(self, trial: optuna.Trial, epochs: int, after: int) -> PruningCallback | None:
        if not self.prune:
            return None
        metric = self.space.pruner.metric
        reporter: Reporter
        if self.asha is not None:
            native = not self.space.is_multi_objective
            reporter = AshaReporter(
                trial, self.asha, epochs=epochs, after=after, metric=metric, native=native
            )
        elif self._mo is None:
            reporter = NativeReporter(trial)
        else:
            direction = optuna.study.StudyDirection[self.space.pruner.direction.upper()]
            # the trial's own storage: for an RDB, Optuna's cache of it, so each epoch's look at
            # the other trials reads only those that changed, not the whole study again
            reporter = MultiObjectiveReporter(trial, self._mo, trial.storage, direction)
        return PruningCallback(trial, reporter, metric, self.space.pruner.type)

    @staticmethod
    def _stopping(trial: optuna.Trial) -> WorkerStopping:
        reason = "worker stopped (SIGTERM / SIGINT); trial re-queued"
        _record(trial, {keys.FAIL_REASON: reason, keys.REQUEUED: True})
        return WorkerStopping(trial.number)

    @staticmethod
    def _fail(trial: optuna.Trial, reason: str) -> TrialFailed:
        trial.set_user_attr(keys.FAIL_REASON, reason)
        return TrialFailed(reason)


def _record(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """``trial.set_user_attr`` for each of ``attrs``, in one storage transaction."""
    storage.set_user_attrs(trial.storage, compat.trial_id(trial), attrs)
    compat.update_cached_user_attrs(trial, attrs)  # the trial's own copy, as set_user_attr keeps it


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
