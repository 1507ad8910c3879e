"""Per-trial artifacts and notes from the real worker loop: real Keras trials on tiny digits."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna_dashboard import get_note

import spaces
import storage
from search.errors import ConfigError
from search.results import artifacts
from search.study import open_storage
from search.study.create import create_or_load
from search.study.queue import top_up
from search.trial.data import load_dataset
from search.trial.objective import Objective
from search.worker.loop import run
from storage import compat
from tests.helpers import space_text

SPACE = space_text(
    "art",
    dataset={"name": "digits", "validation_fraction": 0.2, "limit": 200},
    sampler={"type": "grid"},
    budget={"trials": 2},
    model={"layers": 1, "units": [8, 9]},
    training={"batch_size": 64, "epochs": 2},
)


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("sqlite:///runs/studies.db", {}, "runs/studies-artifacts"),
        ("sqlite:////abs/x.sqlite3", {}, "/abs/x-artifacts"),
        ("journal:///data/j.log", {}, "/data/j-artifacts"),
        ("postgresql+psycopg://u@h/db", {}, "hpsearch-artifacts"),
        ("sqlite:///:memory:", {}, "hpsearch-artifacts"),
        ("sqlite:///runs/studies.db", {"HPSEARCH_ARTIFACTS": "/shared/art"}, "/shared/art"),
    ],
)
def test_default_directory_follows_the_storage(url: str, env: dict[str, str], expected: str) -> None:
    assert artifacts.default_dir(url, env) == Path(expected)
    assert artifacts.resolve_dir("/cli/dir", url, env) == Path("/cli/dir")  # --artifacts wins


def test_a_file_in_the_way_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match=r"artifacts directory .*taken/sub: cannot create"):
        artifacts.open_store(tmp_path / "taken" / "sub")


@pytest.fixture
def store_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "art"
    artifacts.use(artifacts.open_store(directory))
    yield directory
    artifacts.use(None)


def _meta(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    metas = get_all_artifact_meta(trial, storage=compat.study_storage(study))
    return {m.filename: m for m in metas}


def _note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """The trial's note through optuna-dashboard's own API, which takes an ``optuna.Trial``."""
    return get_note(optuna.Trial(study, compat.trial_id(trial)))


def test_trained_trials_upload_curves_and_summary_failed_ones_nothing(
    store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from search.trial import models

    real_build = models.build

    def build_or_refuse(params: dict[str, Any], **kwargs: Any) -> Any:
        if list(params["units"]) == [9]:
            raise ValueError("refused by the test")  # an impossible configuration: no training
        return real_build(params, **kwargs)

    monkeypatch.setattr("search.trial.models.build", build_or_refuse)  # reached through build_model
    space = spaces.loads(SPACE, source="test")
    store = open_storage(f"sqlite:///{tmp_path / 'a.db'}")
    study = create_or_load(space, store)
    top_up(study, 2)
    data = load_dataset("digits", validation_fraction=0.2, limit=200, seed=space.seed)
    objective = Objective(space, data, device="CPU (test)")
    out = io.StringIO()
    run(study, space, objective, stop=threading.Event(), out=out)

    by_units = {t.params["units_0"]: t for t in study.get_trials()}
    trained, refused = by_units[8], by_units[9]
    assert (trained.state.name, refused.state.name) == ("COMPLETE", "FAIL")
    files = _meta(study, trained)
    assert set(files) == {f"trial-{trained.number}-curves.svg", f"trial-{trained.number}-model.txt"}
    assert files[f"trial-{trained.number}-curves.svg"].mimetype == "image/svg+xml"
    svg = (store_dir / files[f"trial-{trained.number}-curves.svg"].artifact_id).read_text()
    count = trained.user_attrs["param_count"]
    assert svg.startswith("<?xml") and "<svg" in svg
    assert f"trial {trained.number}: {count:,} parameters" in svg  # text kept as text
    assert "overfitting gap at the end" in svg
    summary = (store_dir / files[f"trial-{trained.number}-model.txt"].artifact_id).read_text()
    assert f"{count:,} parameters" in summary and "FLOPs per sample" in summary
    assert "dense" in summary.lower()  # Keras' own layer table
    assert _meta(study, refused) == {}  # failed before training: nothing uploaded
    assert len(list(store_dir.iterdir())) == 2

    notes = {t.params["units_0"]: _note(study, t) for t in (trained, refused)}
    assert "COMPLETE" in notes[8] and "device: CPU (test)" in notes[8] and "epochs run: 2 of 2" in notes[8]
    assert f"{count:,} parameters" in notes[8] and "overfitting gap" in notes[8]
    assert "failed:** impossible configuration: refused by the test" in notes[9]

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[1/2") and " eta " in lines[0] and "| best " in lines[0]
    assert lines[1].startswith("[2/2") and "eta 0s" in lines[1]
    assert f"| best front of 1, val_accuracy={trained.values[0]:.4f} (#{trained.number})" in lines[1]
    assert json.dumps(study.metric_names) == '["val_accuracy", "train_seconds"]'


def test_pruned_note_says_why() -> None:
    from optuna.trial import TrialState, create_trial

    from search.results.notes import trial_note

    trial = create_trial(
        state=TrialState.PRUNED,
        user_attrs={"prune_reason": "val_accuracy 0.31 below the median at epoch 2", "epochs_run": 2},
    )
    note = trial_note(trial, ["val_accuracy", "train_seconds"])
    assert "PRUNED" in note and "**pruned:** val_accuracy 0.31 below the median at epoch 2" in note
    assert "epochs run: 2" in note


def test_notes_of_any_length_read_back_through_the_dashboards_api(tmp_path: Path) -> None:
    """The note is written in optuna-dashboard's storage format directly (no read of the
    study's other notes), so its public ``get_note`` must read back each trial's whole note."""
    from search.results.notes import save_trial_note, trial_note

    store = storage.open_storage(f"sqlite:///{tmp_path / 'n.db'}", heartbeat_interval=None)
    study = optuna.create_study(storage=store, directions=["maximize", "minimize"])
    long_reason = "out of memory: " + "x" * 5000  # more than two of the dashboard's 2045-char chunks
    for reason in (long_reason, "short"):
        trial = study.ask()
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    trials = study.get_trials()
    for trial in trials:
        save_trial_note(study, trial, ["val_accuracy", "train_seconds"])
    for trial in trials:
        assert _note(study, trial) == trial_note(trial, ["val_accuracy", "train_seconds"])
    assert long_reason in _note(study, trials[0])
