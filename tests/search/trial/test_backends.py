"""Keras 3 backends: the choice and its precedence, and every trial path on each backend.

The choice is tested in this process. Training on JAX or PyTorch needs a process whose first
``import keras`` saw that backend, so those checks run in a subprocess per backend
(``backend_probe.py`` and the ``hpsearch`` command line). A backend that is not installed skips
loudly -- unless ``HPSEARCH_REQUIRE_BACKENDS=1`` (set by .ci/run), which turns the skip into a
failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

import spaces
from search.errors import ConfigError
from search.trial import backend
from search.worker import devices
from tests.helpers import space_text, subprocess_env

TIMEOUT_S = 300


def _require(name: str) -> None:
    module = backend._MODULE[name]
    if importlib.util.find_spec(module) is not None:
        return
    message = f"{module.upper()} NOT INSTALLED: backend {name} NOT TESTED (pip install 'hpsearch[{name}]')"
    if os.environ.get("HPSEARCH_REQUIRE_BACKENDS") == "1":  # set by .ci/run: CI must not skip them
        pytest.fail(message + " and HPSEARCH_REQUIRE_BACKENDS=1")
    pytest.skip(message)


def _space(**training: Any) -> spaces.Space:
    return spaces.loads(space_text("b", base={"dataset": "digits"}, training=training), source="test")


# --- the choice, in this process ------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "env", "in_space", "expected"),
    [
        (None, None, None, ("tensorflow", "default")),
        (None, None, "torch", ("torch", "training.backend")),
        (None, "jax", "torch", ("jax", "KERAS_BACKEND")),
        ("torch", "jax", "tensorflow", ("torch", "--backend")),
        (None, "", "jax", ("jax", "training.backend")),  # an empty variable is unset
    ],
)
def test_flag_beats_the_environment_beats_the_space(
    flag: str | None, env: str | None, in_space: str | None, expected: tuple[str, str]
) -> None:
    space = _space(backend=in_space) if in_space else _space()
    environ = {} if env is None else {"KERAS_BACKEND": env}
    chosen = backend.resolve(flag, space, environ)
    assert (chosen.name, chosen.source) == expected


def test_a_backend_hpsearch_cannot_train_on_is_one_line() -> None:
    with pytest.raises(
        ConfigError, match=r"^KERAS_BACKEND: expected one of tensorflow, jax, torch, got 'numpy'$"
    ):
        backend.resolve(None, None, {"KERAS_BACKEND": "numpy"})


def test_a_searched_backend_is_refused_when_the_space_loads() -> None:
    with pytest.raises(ConfigError, match=r"training\.backend: one value per space, not searched"):
        _space(backend=["jax", "torch"])


def test_a_worker_already_on_another_backend_stops_with_one_line() -> None:
    import keras  # this test process runs on TensorFlow

    assert keras.backend.backend() == "tensorflow"
    environ: dict[str, str] = {}
    with pytest.raises(
        ConfigError, match=r"^--backend: backend jax asked for, but Keras already runs on tensorflow"
    ):
        backend.select(backend.Backend("jax", "--backend"), environ)
    assert environ == {}  # nothing set
    backend.select(backend.Backend("tensorflow", "default"), environ)
    assert environ == {"KERAS_BACKEND": "tensorflow"}


def test_jax_on_a_shared_gpu_grows_up_to_its_share_and_keeps_the_users_settings() -> None:
    gpu = devices.Gpu(0, "GPU-fake", "NVIDIA H200", 143771, 0, 0)
    environ: dict[str, str] = {}
    devices.apply(devices.Placement(gpu, slot=1, per_gpu=4), environ, backend_name="jax")
    assert environ == {
        "CUDA_VISIBLE_DEVICES": "GPU-fake",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.237",  # 95 % of the card / 4, rounded down
    }
    mine = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.1"}
    devices.apply(devices.Placement(gpu, per_gpu=1), mine, backend_name="jax")
    assert (
        mine["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.1" and mine["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    )
    for name in ("tensorflow", "torch"):  # they are capped after their import (backend.configure)
        other: dict[str, str] = {}
        devices.apply(devices.Placement(gpu, per_gpu=4), other, backend_name=name)
        assert other == {"CUDA_VISIBLE_DEVICES": "GPU-fake"}


def test_the_cpu_gets_no_gpu_memory_settings() -> None:
    environ: dict[str, str] = {}
    devices.apply(devices.Placement(None), environ, backend_name="jax")
    assert environ == {"CUDA_VISIBLE_DEVICES": "-1"}
    assert devices.Placement(None).memory_fraction is None


# --- every trial path, per backend, in a subprocess -----------------------------------------


@pytest.fixture(scope="module", params=["jax", "torch"])  # TensorFlow: the rest of the suite
def probe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What backend_probe.py saw on one backend (one subprocess per backend for all checks)."""
    name = str(request.param)
    _require(name)
    out = tmp_path_factory.mktemp(f"probe-{name}")
    run = subprocess.run(
        [sys.executable, "-m", "tests.search.trial.backend_probe", str(out)],
        env=subprocess_env(KERAS_BACKEND=name, CUDA_VISIBLE_DEVICES="-1"),
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    result["name"] = name
    return result


def test_a_trial_completes_and_records_its_backend(probe: dict[str, Any]) -> None:
    done = probe["complete"]
    assert probe["keras_backend"] == probe["name"]
    assert (done["state"], done["backend"], done["params_backend"]) == (
        "COMPLETE",
        probe["name"],
        probe["name"],
    )
    assert done["epochs_run"] == 2 and 0.0 <= done["val_accuracy"] <= 1.0
    # PyTorch's trainer takes one step per execution; the others several (the measured fast path)
    assert (done["fast_paths"]["steps_per_execution"] == 1) == (probe["name"] == "torch")


def test_pruning_nan_and_stop_end_the_trial_as_on_tensorflow(probe: dict[str, Any]) -> None:
    pruned, nan, stop = probe["pruned"], probe["nan"], probe["stop"]
    assert pruned["state"] == "PRUNED" and pruned["epochs_run"] == 1
    assert nan["state"] == "FAIL" and nan["fail_reason"].startswith("loss became") and nan["epochs_run"] <= 1
    assert stop["outcome"] == "stopped" and stop["fail_reason"].startswith("worker stopped")
    assert stop["epochs_run"] < 3  # ended in mid-training, not after its 3 epochs


def test_a_saved_model_loads_back_with_the_same_predictions(probe: dict[str, Any]) -> None:
    assert probe["round_trip"] == {"same_predictions": True}


def test_nothing_imports_tensorflow_on_another_backend(probe: dict[str, Any]) -> None:
    assert probe["tensorflow_imported"] is False


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_hpsearch_run_and_evaluate_on_the_backend(name: str, tmp_path: Path, space_file: Path) -> None:
    """``run --backend`` trains there (its trials say so); ``evaluate``'s saved model loads anywhere."""
    _require(name)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    env = subprocess_env(CUDA_VISIBLE_DEVICES="-1")
    env.pop("KERAS_BACKEND", None)
    run = subprocess.run(
        [sys.executable, "-m", "search", "run", str(space_file), "--storage", url, "--backend", name],
        env=env, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"backend: {name} (--backend)" in run.stdout
    trials = optuna.load_study(study_name="e2e", storage=url).get_trials()
    assert {t.user_attrs["backend"] for t in trials} == {name}
    done = next(t for t in trials if t.state.name == "COMPLETE")
    evaluate = subprocess.run(
        [sys.executable, "-m", "search", "evaluate", "--study", "e2e", "--storage", url,
         "--trial", str(done.number), "--out", str(tmp_path / "eval")],
        env={**env, "KERAS_BACKEND": name}, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path,
    )  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stdout[-3000:] + evaluate.stderr[-3000:]
    import keras  # this process: TensorFlow; a .keras file does not depend on the backend

    model = keras.saving.load_model(tmp_path / "eval" / f"e2e-trial{done.number}" / "model.keras")
    assert model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0).shape == (2, 10)


def test_a_gpu_runs_several_steps_per_execution_where_a_cpu_runs_one() -> None:
    from search.trial.training import FLOPS_PER_EXECUTION, GPU_FLOPS_PER_EXECUTION, pick_steps_per_execution

    # 784-512-10 at batch 1024: 2.5 GFLOP per step, over the CPU's 2 GFLOP cap, far under the GPU's
    step = {"batch_size": 1024, "n_train": 54000, "flops_per_sample": 2 * (784 * 512 + 512 * 10)}
    assert pick_steps_per_execution(**step, flops_cap=FLOPS_PER_EXECUTION) == 1
    assert pick_steps_per_execution(**step, flops_cap=GPU_FLOPS_PER_EXECUTION) == 4  # 4096 samples
