"""Creating and resuming a study: what create_or_load sets up beyond the stored space."""

from __future__ import annotations

from pathlib import Path

import optuna

import spaces
import storage
from search.study.create import create_or_load
from storage import compat
from tests.helpers import space_text


def test_multi_objective_study_gets_no_optuna_pruner() -> None:
    space = spaces.loads(
        space_text("s", objectives=["val_accuracy", "train_seconds"], pruner={"type": "median"})
    )
    study = create_or_load(space, optuna.storages.InMemoryStorage())
    assert isinstance(study.pruner, optuna.pruners.NopPruner)  # Trial.report raises in MO studies


def test_resuming_an_unnamed_study_names_its_metrics(tmp_path: Path) -> None:
    space = spaces.loads(space_text("art"), source="test")
    store = storage.open_storage(f"sqlite:///{tmp_path / 'old.db'}", heartbeat_interval=None)
    study = create_or_load(space, store)
    store.set_study_system_attr(compat.study_id(study), "study:metric_names", None)  # as made before names
    assert optuna.load_study(study_name="art", storage=store).metric_names is None
    create_or_load(space, store)
    assert optuna.load_study(study_name="art", storage=store).metric_names == [
        "val_accuracy",
        "train_seconds",
    ]
