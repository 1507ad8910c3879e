"""KerasTuner hypermodels as KerasTuner's guide writes them: what the user writes, what hpsearch does.

=====================================================  =============================================
the user writes (kt_guide.py)                          hpsearch
=====================================================  =============================================
``loss="categorical_crossentropy"`` (one-hot labels)   trains on one-hot labels; trials complete
``HyperModel.fit`` tuning ``batch_size``, ``shuffle``  calls it with the data and callbacks; both are
                                                       searched and recorded with the trial
a ``HyperModel`` needing ``num_classes``               validate / run: one line, exit 2, no study;
                                                       ``model.arguments`` gives it
an input shape that is not the data's                  validate / run: one line, exit 2, no study
an objective the model does not log (``val_auc``)      validate / run: one line, exit 2, no study
=====================================================  =============================================
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import search
from search.cli import main
from search.errors import ConfigError
from tests.helpers import write_space

GUIDE = Path(__file__).with_name("kt_guide.py")
SMALL = {
    "dataset": {"name": "digits", "limit": 200},
    "training": {"epochs": 1},
    "objectives": ["val_accuracy"],
}


def _space(tmp_path: Path, name: str, model: dict[str, Any], **sections: Any) -> Path:
    shutil.copy(GUIDE, tmp_path / "kt_guide.py")
    return write_space(tmp_path, name, base=SMALL, model=model, **sections)


@pytest.mark.parametrize(
    ("name", "model", "params"),
    [
        ("categorical", {"hypermodel": "kt_guide.py:build_model"}, {"units", "learning_rate"}),
        ("fit-override", {"hypermodel": "kt_guide.py:MyHyperModel"}, {"units", "batch_size", "shuffle"}),
        (
            "constructor",
            {"hypermodel": "kt_guide.py:NeedsArgs", "arguments": {"num_classes": 10}},
            set(),
        ),
    ],
)
def test_guide_hypermodels_train(tmp_path: Path, name: str, model: dict[str, Any], params: set[str]) -> None:
    url = f"sqlite:///{tmp_path / 'kt.db'}"
    assert main(["run", str(_space(tmp_path, name, model)), "--storage", url, "--trials", "2"]) == 0
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(params <= set(t.params) for t in trials)
    if name != "constructor":  # one softmax layer learns slowly; the others: 10 classes, well above 0.1
        assert all(t.user_attrs["val_accuracy"] > 0.3 for t in trials)
    if name == "fit-override":
        assert all(t.user_attrs["fast_paths"] == {"fit": "HyperModel.fit"} for t in trials)


RECORDING = """
import json, pathlib
import keras, keras_tuner as kt

CALLS = pathlib.Path(__file__).with_name("fit_calls.jsonl")


class Recording(kt.HyperModel):
    def build(self, hp):
        model = keras.Sequential([
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Int("units", 8, 32, step=8), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, x, y, **kwargs):
        batch_size = hp.Choice("batch_size", [16, 32])
        call = {"batch_size": batch_size, "samples": len(x), "validation": "validation_data" in kwargs}
        with CALLS.open("a") as f:
            f.write(json.dumps(call) + "\\n")
        return model.fit(x, y, batch_size=batch_size, **kwargs)
"""


def test_evaluate_retrains_through_the_fit_override_with_the_trials_values(tmp_path: Path) -> None:
    (tmp_path / "recording.py").write_text(RECORDING)
    space = write_space(tmp_path, "rec", base=SMALL, model={"hypermodel": "recording.py:Recording"})
    url = f"sqlite:///{tmp_path / 'kt.db'}"
    assert main(["run", str(space), "--storage", url, "--trials", "2"]) == 0
    calls = tmp_path / "fit_calls.jsonl"
    searched = [json.loads(line) for line in calls.read_text().splitlines()]
    calls.unlink()
    best = optuna.load_study(study_name="rec", storage=url).best_trial
    evaluate = ["evaluate", "--study", "rec", "--storage", url, "--out", str(tmp_path / "eval")]
    hypermodel = ["--hypermodel", f"{tmp_path / 'recording.py'}:Recording"]
    for fit in ("train", "train+validation"):
        assert main([*evaluate, *hypermodel, "--fit", fit]) == 0
    retrained = [json.loads(line) for line in calls.read_text().splitlines()]
    # the trial's own batch size, through its fit; train+validation: more samples, nothing held out
    assert [(c["batch_size"], c["validation"]) for c in retrained] == [
        (best.params["batch_size"], True),
        (best.params["batch_size"], False),
    ]
    assert retrained[0]["samples"] == searched[0]["samples"] < retrained[1]["samples"]


@pytest.mark.parametrize(
    ("model", "sections", "message"),
    [
        (
            {"hypermodel": "kt_guide.py:NeedsArgs"},
            {},
            r"NeedsArgs\(\) cannot be built: missing a required argument: 'num_classes'; give them",
        ),
        (
            {"hypermodel": "kt_guide.py:wrong_shape"},
            {},
            r"does not take digits's samples of shape \(8, 8, 1\): .*expected shape=\(None, 28, 28\)",
        ),
        (
            {"hypermodel": "kt_guide.py:build_model"},
            {"objectives": [{"metric": "val_auc", "direction": "maximize"}]},
            r"the model logs no val_auc \(it logs accuracy, loss\)",
        ),
    ],
)
def test_what_would_fail_every_trial_is_one_line_before_a_study_is_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: dict[str, Any],
    sections: dict[str, Any],
    message: str,
) -> None:
    space = _space(tmp_path, "broken", model, **sections)
    url = f"sqlite:///{tmp_path / 'kt.db'}"
    for command in (["validate", str(space)], ["run", str(space), "--storage", url]):
        capsys.readouterr()
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith("hpsearch: error: hypermodel kt_guide.py:"), err
        assert re.search(message, err), err
    with pytest.raises(ConfigError, match=message):  # the Python API checks it the same way
        search.run(str(space), storage=url)
    assert not (tmp_path / "kt.db").exists() or optuna.get_all_study_names(url) == []
