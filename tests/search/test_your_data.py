"""Your own data, end to end: each file source through `hpsearch run`, a worker, `evaluate`, and
the Python API, on SQLite and PostgreSQL; a custom metric as objective and as pruning metric."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import search
import storage
from search import keys
from search.api import as_space
from search.cli import main
from search.study import open_storage
from tests.helpers import TINY, write_space
from tests.search.data_files import write_csv, write_images, write_loader, write_npz

BASE = {k: v for k, v in TINY.items() if k != "dataset"}
CNN = {"family": "cnn", "conv_blocks": 1, "filters": 4, "layers": 1, "units": 8}
SOURCES: dict[str, tuple[Callable[[Path], Path], str, dict[str, Any], dict[str, Any]]] = {
    # kind: (writer, file name, dataset section, other sections)
    "npz": (write_npz, "d.npz", {"path": "d.npz"}, {}),
    "images": (write_images, "images", {"path": "images/", "image_size": [8, 8]}, {"model": CNN}),
    "csv": (
        write_csv,
        "t.csv",
        {"path": "t.csv", "label": "label"},
        {
            "training": {"metrics": ["auc"], "epochs": 2},
            "objectives": [{"metric": "val_auc", "direction": "maximize"}],
            "pruner": {"type": "median", "metric": "val_auc", "n_startup_trials": 1},
        },
    ),
    "loader": (write_loader, "load.py", {"loader": "load.py:arrays"}, {}),
}


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url))


@pytest.mark.backends("sqlite", "postgresql")
@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_hpsearch_run_on_each_kind_of_file(kind: str, storage_url: str, tmp_path: Path) -> None:
    writer, name, dataset, sections = SOURCES[kind]
    writer(tmp_path / name)
    space = write_space(tmp_path, f"mine-{kind}", base=BASE, dataset=dataset, **sections)
    assert main(["run", str(space), "--storage", storage_url, "--trials", "3"]) == 0
    study = _study(storage_url, f"mine-{kind}")
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) >= 2
    recorded = study.user_attrs[keys.DATA]
    assert recorded["kind"] == kind and recorded["file"] == str(tmp_path / name)
    if kind == "csv":  # the custom metric is the objective and what the pruner watches
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        assert all(t.value == t.user_attrs["val_auc"] for t in done)
        assert all(len(t.intermediate_values) == t.user_attrs["epochs_run"] for t in done)
        assert all(t.user_attrs["curves"]["val_auc"] for t in done)


@pytest.mark.backends("sqlite")
def test_worker_reads_the_recorded_file_refuses_a_changed_one_and_takes_a_copy(
    storage_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_npz(tmp_path / "d.npz")
    space = write_space(tmp_path, "moved", base=BASE, dataset={"path": "d.npz"})
    assert main(["create", str(space), "--storage", storage_url, "--trials", "2"]) == 0
    shutil.copy(tmp_path / "d.npz", tmp_path / "copy.npz")
    write_npz(tmp_path / "d.npz", n=90)  # the file changes under the study
    capsys.readouterr()
    assert main(["worker", "--study", "moved", "--storage", storage_url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "d.npz: changed since the study was created (sha256 " in err
    assert all(t.state == TrialState.WAITING for t in _study(storage_url, "moved").trials)  # nothing lost
    assert (
        main(["worker", "--study", "moved", "--storage", storage_url, "--data", str(tmp_path / "copy.npz")])
        == 0
    )
    assert [t.state for t in _study(storage_url, "moved").trials] == [TrialState.COMPLETE] * 2


@pytest.mark.backends("sqlite")
def test_evaluate_tests_once_on_the_files_test_split(storage_url: str, tmp_path: Path) -> None:
    write_npz(tmp_path / "d.npz")
    space = write_space(tmp_path, "ev", base=BASE, dataset={"path": "d.npz"}, objectives=["val_accuracy"])
    assert main(["run", str(space), "--storage", storage_url, "--trials", "1"]) == 0
    assert main(["evaluate", "--study", "ev", "--storage", storage_url, "--out", str(tmp_path / "out")]) == 0
    best = _study(storage_url, "ev").best_trial
    assert 0.0 <= best.user_attrs["test_accuracy"] <= 1.0
    assert set(best.user_attrs["test_per_class"]) >= {"0", "1", "2"}


@pytest.mark.backends("sqlite", "postgresql")
def test_python_api_runs_on_arrays_in_memory_and_saves_them_by_content(
    storage_url: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4)).astype(np.float32)
    y = np.where(x[:, 0] > 0, "up", "down")
    space = {"name": "api", "objectives": ["val_accuracy"], **BASE}
    study = search.run(
        space,
        x=x,
        y=y,
        validation_data=(x[:20], y[:20]),
        storage=storage_url,
        trials=2,
        data_dir=tmp_path,
    )
    assert isinstance(study, optuna.Study) and len(study.trials) == 2
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    saved = Path(study.user_attrs[keys.DATA]["file"])
    assert saved.parent == tmp_path and saved.suffix == ".npz"
    again = search.run(
        space,
        x=x,
        y=y,
        validation_data=(x[:20], y[:20]),
        storage=storage_url,
        trials=3,
        data_dir=tmp_path,
    )
    assert len(again.trials) == 3 and sorted(tmp_path.glob("*.npz")) == [saved]  # resumed, not copied again


def test_python_api_objective_is_a_plain_optuna_objective() -> None:
    x = np.random.default_rng(1).normal(size=(60, 3))
    objective = search.objective(
        {"name": "plain", "objectives": ["val_accuracy", "train_seconds"], **BASE}, (x, x[:, 0] > 0)
    )
    study = optuna.create_study(directions=objective.directions)  # type: ignore[attr-defined]
    study.optimize(objective, n_trials=2)
    assert [len(t.values) for t in study.trials] == [2, 2]


@pytest.mark.backends("sqlite")
def test_python_api_with_two_workers_shares_the_saved_arrays(storage_url: str, tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(size=(60, 3))
    study = search.run(
        {"name": "two", "objectives": ["val_accuracy"], **BASE},
        x=x, y=(x[:, 1] > 0).astype(int), storage=storage_url, trials=4, workers=2, data_dir=tmp_path,
    )  # fmt: skip
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 4
    assert storage.backend(storage_url) == "sqlite"


def test_python_api_refuses_bad_arrays_before_writing_anything(tmp_path: Path) -> None:
    x = np.zeros((10, 3))
    with pytest.raises(search.DataError, match="10 samples in x_train but 9 labels in y_train"):
        search.run(
            {"name": "bad", **BASE},
            x=x,
            y=np.arange(9) % 2,
            storage=f"sqlite:///{tmp_path / 'b.db'}",
            data_dir=tmp_path / "d",
        )
    assert not (tmp_path / "d").exists() and not (tmp_path / "b.db").exists()


def test_a_dict_space_may_use_one_object_twice() -> None:
    shared = {"type": "int", "low": 4, "high": 16}  # YAML would write an alias; the loader refuses those
    space = as_space(
        {"name": "twice", "dataset": "digits", "model": {"family": "cnn", "units": shared, "filters": shared}}
    )
    assert space.name == "twice" and sum(p.searched for p in space.params) == 2
