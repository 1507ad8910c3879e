"""The trial's fast training path keeps ``model.fit``'s behaviour: steps, weights, stops, NaN."""

from __future__ import annotations

import math
import threading

import keras
import numpy as np
import optuna
import pytest

import spaces
from search.trial.callbacks import CurveRecorder, NanGuard, StopWhen, lr_schedule
from search.trial.data import load_dataset
from search.trial.models import build, count_flops
from search.trial.training import (
    PLAIN,
    XLA_MIN_STEPS,
    FastPaths,
    fit,
    pick_jit_compile,
    pick_steps_per_execution,
    pick_validation_batch,
    prepare,
)
from tests.helpers import space_text

SPACE = space_text("t", model={"layers": 1, "units": 16}, training={"batch_size": 64, "epochs": 2})


def _model(seed: int = 0) -> tuple[keras.Model, dict[str, object]]:
    import optuna

    space = spaces.loads(SPACE, source="test")
    params = space.sample(optuna.create_study(directions=list(space.directions)).ask())
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = build(params, family="mlp", input_shape=(8, 8, 1), num_classes=10, pixel_max=16.0)
    return model, params


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    # 300 samples at batch 64: 5 steps per epoch, the last one partial (44 samples)
    return load_dataset("digits", validation_fraction=0.2, limit=300)


@pytest.mark.parametrize("spe", [None, 1, 2, 3, 5, 64])
def test_optimizer_steps_per_epoch_are_the_notebooks(data, spe: int | None) -> None:  # type: ignore[no-untyped-def]
    model, _ = _model()
    used = fit(
        model,
        prepare(data),
        batch_size=64,
        epochs=3,
        callbacks=[],
        flops_per_sample=count_flops(model),
        paths=FastPaths(steps_per_execution=spe),
    )
    assert int(model.optimizer.iterations) == 3 * math.ceil(300 / 64)
    assert used["steps_per_execution"] == (spe or 5)


def test_same_weights_as_a_plain_fit_on_numpy_arrays(data) -> None:  # type: ignore[no-untyped-def]
    # the same seed, batches and shuffle order: only the number of steps per tf.function call
    # and the validation batch size differ, neither of which touches the weights
    plain, _ = _model(seed=7)
    plain.fit(
        data.x_train,
        data.y_train,
        batch_size=64,
        epochs=3,
        validation_data=(data.x_val, data.y_val),
        verbose=0,
    )
    expected = [w.copy() for w in plain.get_weights()]
    fast, _ = _model(seed=7)
    fit(fast, prepare(data), batch_size=64, epochs=3, callbacks=[], flops_per_sample=count_flops(fast))
    assert fast.steps_per_execution > 1
    for got, want in zip(fast.get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_validation_metrics_do_not_depend_on_the_validation_batch(data) -> None:  # type: ignore[no-untyped-def]
    logs = []
    for paths in (PLAIN, FastPaths()):
        model, _ = _model(seed=3)
        history = keras.callbacks.History()
        fit(
            model,
            prepare(data),
            batch_size=64,
            epochs=1,
            callbacks=[history],
            flops_per_sample=count_flops(model),
            paths=paths,
        )
        logs.append(history.history)
    for key in ("val_loss", "val_accuracy"):
        np.testing.assert_allclose(logs[0][key], logs[1][key], rtol=1e-5)


def test_stop_request_is_seen_after_one_execution(data) -> None:  # type: ignore[no-untyped-def]
    stop = threading.Event()
    stop.set()
    stopper = StopWhen(stop, None)
    model, _ = _model()
    fit(
        model,
        prepare(data),
        batch_size=64,
        epochs=5,
        callbacks=[stopper],
        flops_per_sample=1,
        paths=FastPaths(steps_per_execution=2),
    )
    assert stopper.reason == "signal"
    assert int(model.optimizer.iterations) == 2  # one execution of 2 steps, not 5 epochs


def test_nan_inside_an_execution_is_caught(data) -> None:  # type: ignore[no-untyped-def]
    # lr 1e30 overflows the weights within the first steps of the first execution
    model, _ = _model()
    model.optimizer.learning_rate.assign(1e30)
    guard = NanGuard()
    fit(
        model,
        prepare(data),
        batch_size=16,
        epochs=3,
        callbacks=[guard],
        flops_per_sample=1,
        paths=FastPaths(steps_per_execution=4),
    )
    assert guard.reason is not None and guard.reason.startswith("loss became")
    assert int(model.optimizer.iterations) < math.ceil(300 / 16)  # stopped inside the first epoch


def test_prepared_tensors_are_built_once_per_dataset(data) -> None:  # type: ignore[no-untyped-def]
    first = prepare(data)
    assert prepare(data) is first
    assert first.device == "CPU:0" and first.n_train == 300
    np.testing.assert_array_equal(first.x_train.numpy(), data.x_train)


def test_steps_per_execution_rule() -> None:
    assert pick_steps_per_execution(batch_size=32, n_train=54000, flops_per_sample=1000) == 128
    assert pick_steps_per_execution(batch_size=64, n_train=100, flops_per_sample=1000) == 2  # one epoch
    assert pick_steps_per_execution(batch_size=256, n_train=54000, flops_per_sample=10**9) == 1


def test_validation_batches_are_equal_and_capped() -> None:
    assert pick_validation_batch(6000) == 3000  # 2 x 3000: one traced shape, not 4096 + 1904
    assert pick_validation_batch(287) == 287
    assert pick_validation_batch(8192) == 4096
    assert pick_validation_batch(8193) == 2731  # 3 batches, the last one sample short


def test_xla_only_for_measured_layers_in_long_trials() -> None:
    mlp, params = _model()  # Rescaling, Flatten, Dense: all measured faster under XLA
    assert pick_jit_compile(mlp, total_steps=XLA_MIN_STEPS)
    assert not pick_jit_compile(mlp, total_steps=XLA_MIN_STEPS - 1)  # compile time not repaid
    shape = {"input_shape": (8, 8, 1), "num_classes": 10, "pixel_max": 16.0}
    bn = build({**params, "batch_norm": True, "dropout": 0.0}, family="mlp", **shape)
    assert pick_jit_compile(bn, total_steps=10**5)
    dropout = build({**params, "dropout": 0.2}, family="mlp", **shape)
    assert not pick_jit_compile(dropout, total_steps=10**5)  # XLA's CPU random numbers: 8x slower
    cnn = build({**params, "filters": (4,), "kernel_size": 3}, family="cnn", **shape)
    assert not pick_jit_compile(cnn, total_steps=10**5)  # Conv2D measured 2x slower under XLA


def test_xla_training_step_keeps_the_steps_and_the_weights(data) -> None:  # type: ignore[no-untyped-def]
    # XLA fuses the step's ops, so the float rounding may differ, not the updates themselves
    plain, _ = _model(seed=5)
    fit(plain, prepare(data), batch_size=64, epochs=2, callbacks=[], flops_per_sample=1, paths=PLAIN)
    fast, _ = _model(seed=5)
    history = keras.callbacks.History()
    used = fit(
        fast,
        prepare(data),
        batch_size=64,
        epochs=2,
        callbacks=[history],
        flops_per_sample=1,
        paths=FastPaths(jit_compile=True),
    )
    assert used["jit_compile"] is True
    assert not fast.jit_compile  # the validation step was built without XLA
    assert int(fast.optimizer.iterations) == 2 * math.ceil(300 / 64)
    assert len(history.history["val_accuracy"]) == 2
    for got, want in zip(fast.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_short_cpu_trials_skip_xla(data) -> None:  # type: ignore[no-untyped-def]
    model, _ = _model()
    used = fit(model, prepare(data), batch_size=64, epochs=2, callbacks=[], flops_per_sample=1)
    assert used == {"steps_per_execution": 5, "validation_batch_size": 287, "jit_compile": False}


class _Clock:
    """``time.perf_counter`` for StopWhen: the test moves ``now``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _started(monkeypatch: pytest.MonkeyPatch) -> tuple[StopWhen, _Clock]:
    """A StopWhen for a 100 s search at the start of a 100-step epoch, on a clock the test moves."""
    clock = _Clock()
    monkeypatch.setattr("search.trial.callbacks.time.perf_counter", clock)
    stopper = StopWhen(threading.Event(), None, budget=100.0)
    stopper.set_model(keras.Sequential())
    stopper.set_params({"steps": 100, "epochs": 3})
    stopper.on_train_begin()
    return stopper, clock


@pytest.mark.parametrize(
    ("per_batch", "calls_every", "stops_at"),
    [
        (0.2, 1, 10),  # 100 steps x 0.2 s = 20 s > 5 % of 100 s: judged from batch 10 on
        (0.2, 4, 15),  # steps_per_execution 4: called at batches 3, 7, 11, 15 (12 after the first)
        (0.015, 1, None),  # 3 + 1.5 s: under the 5 s
    ],
)
def test_a_first_epoch_over_a_twentieth_of_the_budget_stops_training(
    monkeypatch: pytest.MonkeyPatch, per_batch: float, calls_every: int, stops_at: int | None
) -> None:
    stopper, clock = _started(monkeypatch)
    clock.now = 3.0  # compiling, before the first batch ends
    stopped = None
    for batch in range(calls_every - 1, 100, calls_every):
        clock.now += per_batch * calls_every
        try:
            stopper.on_train_batch_end(batch)
        except optuna.TrialPruned:
            stopped = batch
            break
    assert stopped == stops_at
    if stops_at is not None:
        assert stopper.reason == "too slow" and stopper.projected is not None
        assert stopper.projected == pytest.approx(3.0 + 100 * per_batch, rel=0.02)
        assert stopper.too_slow().endswith("over 5% of the 100 s timeout")


def test_only_the_first_epoch_is_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    stopper, clock = _started(monkeypatch)
    stopper.on_epoch_end(0)  # a fast first epoch (or a promoted trial's: no budget at all)
    for batch in range(100):
        clock.now += 1.0
        stopper.on_train_batch_end(batch)
    assert stopper.reason is None


def _rates(model: keras.Model, data, epochs: int, first: int = 0) -> list[float]:  # type: ignore[no-untyped-def]
    """The learning rate each epoch trained at, from the schedule's ``learning_rate`` log."""
    recorder, schedule = CurveRecorder(), lr_schedule("cosine", model, 4)
    model.optimizer.learning_rate.assign(0.123)  # a checkpoint's decayed rate: the base is read above
    assert schedule is not None
    fit(model, prepare(data), batch_size=64, epochs=epochs, callbacks=[schedule, recorder],
        flops_per_sample=0, initial_epoch=first)  # fmt: skip
    return recorder.curves["learning_rate"]


def test_a_cosine_schedule_decays_over_the_epochs_and_continues_where_it_paused(data) -> None:  # type: ignore[no-untyped-def]
    model, params = _model()
    base = float(params["learning_rate"])
    whole = _rates(model, data, 4)
    assert whole == pytest.approx([base, base * (2 + 2**0.5) / 4, base / 2, base * (2 - 2**0.5) / 4])
    continued, _ = _model()
    assert _rates(continued, data, 4, first=2) == pytest.approx(whole[2:])
    assert lr_schedule("constant", continued, 4) is None
