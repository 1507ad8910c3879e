"""The objective on a tiny real dataset: recorded attrs, pruning, NaN, early stopping."""

from __future__ import annotations

import contextlib
import math
import resource
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import optuna
import pytest
import sqlalchemy.exc
import tensorflow as tf

import spaces
from search.errors import StorageError, TrialFailed, WorkerStopping
from search.trial.data import load_dataset
from search.trial.objective import Objective
from tests.helpers import space_text

TINY = {
    "dataset": {"name": "digits", "validation_fraction": 0.2, "limit": 300},
    "model": {"layers": 1, "units": 16},
    "training": {"batch_size": 64, "epochs": 2},
}


def _objective(**sections: Any) -> tuple[Objective, optuna.Study]:
    """An objective and a study for TINY, its sections updated by ``sections``."""
    space = spaces.loads(space_text("tiny", base=TINY, **sections), source="test")
    data = load_dataset("digits", validation_fraction=0.2, limit=300, seed=space.seed)
    from spaces.optuna import make_pruner

    study = optuna.create_study(directions=list(space.directions), pruner=make_pruner(space.pruner))
    return Objective(space, data, device="CPU (test)"), study


def test_finished_trial_records_everything_the_report_needs() -> None:
    objective, study = _objective()
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    attrs = trial.user_attrs
    assert trial.values == [attrs["val_accuracy"], attrs["train_seconds"]]
    assert 0.0 <= attrs["val_accuracy"] <= 1.0
    assert attrs["train_seconds"] > 0
    assert attrs["epochs_run"] == 2
    assert attrs["params"]["units"] == [16] and attrs["params"]["optimizer"] == "adam"
    assert attrs["param_count"] == 64 * 16 + 16 + 16 * 10 + 10
    assert attrs["flops"] == 2 * 64 * 16 + 16 + 2 * 16 * 10 + 10
    assert attrs["device"] == "CPU (test)"
    curves = attrs["curves"]
    assert {len(curves[k]) for k in ("accuracy", "loss", "val_accuracy", "val_loss", "epoch_seconds")} == {2}
    assert attrs["val_loss"] == curves["val_loss"][-1]  # no early stopping: the last epoch


def test_single_objective_returns_a_float() -> None:
    objective, study = _objective(objectives=["val_loss"])
    study.optimize(objective, n_trials=1)
    assert study.trials[0].value == study.trials[0].user_attrs["val_loss"]


def test_pruned_trial_stops_early_and_keeps_its_curves() -> None:
    # val_accuracy can never exceed 1.0, so a threshold pruner with lower=1.5 prunes at step 1
    objective, study = _objective(
        training={"epochs": 5}, objectives=["val_accuracy"], pruner={"type": "threshold", "lower": 1.5}
    )
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["epochs_run"] == 1
    assert trial.intermediate_values.keys() == {1}
    assert trial.user_attrs["train_seconds"] > 0


def test_nan_loss_fails_the_trial_with_its_reason() -> None:
    # learning rate 1e30 on raw 0..16 pixels overflows the weights within the first batches
    objective, study = _objective(
        training={"epochs": 3, "normalize": False}, optimizer={"name": "sgd", "learning_rate": 1.0e30}
    )
    study.optimize(objective, n_trials=1, catch=(TrialFailed,))
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith("loss became")
    assert trial.user_attrs["epochs_run"] <= 1  # stopped at once, not after all 3 epochs


@pytest.mark.parametrize(("objective", "best_of"), [("val_accuracy", max), ("val_loss", min)])
def test_early_stopping_reports_the_restored_best_epoch_of_the_objective(
    objective: str, best_of: Callable[[list[float]], float]
) -> None:
    objective_, study = _objective(
        training={"epochs": 12, "patience": 1},
        model={"units": 256},
        optimizer={"name": "adam", "learning_rate": 0.05},
        objectives=[objective],
        pruner={"type": "none"},  # ASHA (one objective's default) would pause it after epoch 1
    )
    study.optimize(objective_, n_trials=1)
    attrs = study.trials[0].user_attrs
    curve = attrs["curves"][objective]
    assert attrs[objective] == best_of(curve) == study.trials[0].value
    best = curve.index(best_of(curve))
    # lr 0.05 on 300 samples overfits within a few epochs, so the best epoch is not the last one
    assert best < len(curve) - 1
    assert attrs["best_epoch"] == best + 1
    assert attrs["val_accuracy"] == attrs["curves"]["val_accuracy"][best]
    assert attrs["val_loss"] == attrs["curves"]["val_loss"][best]
    assert attrs["epochs_run"] == len(curve) <= 12


def test_same_trial_number_same_result() -> None:
    # seeded per trial: two fresh studies training trial 0 with the same params agree exactly
    results = []
    for _ in range(2):
        objective, study = _objective()
        study.optimize(objective, n_trials=1)
        results.append(study.trials[0].user_attrs["curves"]["val_loss"])
    assert results[0] == results[1]
    assert all(math.isfinite(v) for v in results[0])


def test_impossible_configuration_is_a_trial_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    objective, study = _objective()

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("kernel larger than the image")

    monkeypatch.setattr("search.trial.models.build", broken)  # called through build_model
    study.optimize(objective, n_trials=1, catch=(TrialFailed,))
    assert (
        study.trials[0].user_attrs["fail_reason"] == "impossible configuration: kernel larger than the image"
    )


def test_trial_over_its_time_limit_fails_with_the_reason() -> None:
    # the first batch alone (tracing included) takes far longer than 10 ms
    objective, study = _objective(training={"epochs": 50}, budget={"trial_timeout": 0.01})
    study.optimize(objective, n_trials=1, catch=(TrialFailed,))
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "still training after budget.trial_timeout = 0.01 s"
    assert trial.user_attrs["epochs_run"] < 50


@pytest.mark.parametrize(("timeout", "state"), [(0.01, "PRUNED"), (3600, "COMPLETE")])
def test_a_trial_too_slow_for_the_timeout_is_pruned_in_its_first_epoch(timeout: float, state: str) -> None:
    # 30 batches of 8, 4 per execution (the model's FLOPs): called back at batches 3, 7, 11, 15;
    # a twentieth of a 0.01 s timeout is 0.5 ms for the whole first epoch
    objective, study = _objective(
        model={"layers": 3, "units": 2048}, training={"epochs": 2, "batch_size": 8},
        budget={"timeout": timeout}, objectives=["val_accuracy"], pruner={"type": "none"},
    )  # fmt: skip
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state.name == state
    if state == "PRUNED":
        assert trial.intermediate_values == {}  # stopped inside epoch 1: no value to pause with
        reason = trial.user_attrs["prune_reason"]
        assert (
            reason.startswith("too slow: its first epoch would take ~") and "of the 0.01 s timeout" in reason
        )
    else:
        assert trial.user_attrs["fast_paths"]["steps_per_execution"] == 4  # so it could have stopped


@contextlib.contextmanager
def _address_space_limited(extra_gib: int) -> Iterator[None]:
    """This process may map only ``extra_gib`` GiB more (RLIMIT_AS): a big allocation fails at once,
    as on a full GPU, instead of swapping the shared test machine."""
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_gib * 2**30, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_out_of_memory_while_building_fails_that_trial_alone() -> None:
    """Issue 20: `units: 65536, layers: 2` crashed the worker with a traceback."""
    objective, study = _objective(
        model={"layers": 2, "units": {"type": "categorical", "choices": [65536, 16]}}
    )
    study.enqueue_trial({"units_0": 65536, "units_1": 65536})  # a 65536 x 65536 kernel: 16 GiB
    study.enqueue_trial({"units_0": 16, "units_1": 16})
    with _address_space_limited(extra_gib=4):
        study.optimize(objective, n_trials=2, catch=(TrialFailed,))
    big, small = study.trials
    assert big.state == optuna.trial.TrialState.FAIL
    assert big.user_attrs["fail_reason"].startswith(
        "out of memory while building the model: OOM when allocating tensor with shape[65536,65536]"
    )
    assert "param_count" not in big.user_attrs  # it never got that far
    assert small.state == optuna.trial.TrialState.COMPLETE  # the worker went on


def _raise(error: BaseException) -> Callable[..., NoReturn]:
    def raising(*args: object, **kwargs: object) -> NoReturn:
        raise error

    return raising


FAILURES = {  # where, what is raised there, the trial's fail_reason
    "build error": (
        "build",
        RuntimeError("no such block"),
        "building the model raised RuntimeError: no such block",
    ),
    "build OOM": ("build", MemoryError("no room"), "out of memory while building the model: no room"),
    "TF OOM": (
        "build",
        tf.errors.ResourceExhaustedError(None, None, "{{function_node x}} OOM when allocating tensor"),
        "out of memory while building the model: OOM when allocating tensor",
    ),
    "train error": ("train", KeyError("x"), "training raised KeyError: 'x'"),
    "train OOM": ("train", MemoryError(), "out of memory while training: "),
    "GPU OOM": (
        "train",
        tf.errors.InternalError(None, None, "CUDA_ERROR_OUT_OF_MEMORY: out of memory"),
        "out of memory while training: CUDA_ERROR_OUT_OF_MEMORY: out of memory",
    ),
}
TARGET = {"build": "search.trial.models.build", "train": "search.trial.objective.fit"}


@pytest.mark.parametrize(("where", "error", "reason"), FAILURES.values(), ids=FAILURES.keys())
def test_any_error_of_building_or_training_fails_the_trial_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, where: str, error: Exception, reason: str
) -> None:
    objective, study = _objective()
    monkeypatch.setattr(TARGET[where], _raise(error))
    trial = study.ask()
    with pytest.raises(TrialFailed) as failed:
        objective(trial)
    assert str(failed.value) == reason
    assert study.trials[0].user_attrs["fail_reason"] == reason


PROPAGATE = {  # not the trial's failure: the worker must see them as they are
    "stop": WorkerStopping(0),
    "Ctrl-C": KeyboardInterrupt(),
    "storage": StorageError("storage sqlite:///x.db: cannot open: disk I/O error"),
    "database": sqlalchemy.exc.OperationalError(
        "UPDATE trials", {}, Exception("server closed the connection")
    ),
}


@pytest.mark.parametrize("where", ["build", "train"])
@pytest.mark.parametrize("error", PROPAGATE.values(), ids=PROPAGATE.keys())
def test_stops_and_database_errors_are_not_trial_failures(
    monkeypatch: pytest.MonkeyPatch, where: str, error: BaseException
) -> None:
    objective, study = _objective()
    monkeypatch.setattr(TARGET[where], _raise(error))
    with pytest.raises(type(error)):
        objective(study.ask())
    assert "fail_reason" not in study.trials[0].user_attrs
