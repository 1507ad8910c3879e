"""KerasTuner hypermodels as hpsearch spaces: loading, real studies on digits, the worker's hash check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import optuna
import pytest

import spaces
from search.cli import main
from search.errors import ConfigError
from search.hypermodels.loader import load_builder
from search.study import open_storage
from search.study.create import load_space
from tests.helpers import dashboard_api, flow, subprocess_env, write_space

TUTORIAL = Path(spaces.__file__).parent / "presets" / "hypermodels" / "kt_tutorial.py"
SINGLE = ["val_accuracy"]
MULTI = ["val_accuracy", "train_seconds"]
BUILD = "hm/tutorial.py:build"


def _space(tmp_path: Path, objectives: list[str] = SINGLE, hypermodel: str = BUILD) -> Path:
    """The study's space next to ``hm/tutorial.py`` (a copy of the tutorial unless one is there)."""
    (tmp_path / "hm").mkdir(exist_ok=True)
    if not (tmp_path / "hm" / "tutorial.py").exists():
        shutil.copy(TUTORIAL, tmp_path / "hm" / "tutorial.py")
    return write_space(
        tmp_path,
        "kt-digits",
        dataset={"name": "digits", "validation_fraction": 0.2, "limit": 200},
        objectives=objectives,
        sampler={"type": "tpe", "seed": 3},
        pruner={"type": "median", "n_startup_trials": 1},
        budget={"trials": 2},
        model={"hypermodel": hypermodel},
        training={"batch_size": 32, "epochs": 2},
    )


def _study(url: str, name: str = "kt-digits") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url))


def test_the_space_resolves_and_hashes_the_file_next_to_it(tmp_path: Path) -> None:
    space = spaces.load(_space(tmp_path))
    ref = space.hypermodel
    assert ref is not None and space.family == "hypermodel"
    assert ref.file == str((tmp_path / "hm" / "tutorial.py").resolve())
    assert ref.name == "build" and ref.sha256 is not None and len(ref.sha256) == 64
    assert [p.name for p in space.params] == [
        "batch_size",
        "epochs",
        "patience",
        "lr_schedule",
        "normalize",
        "mixed_precision",
        "backend",
    ]
    # the same text without a file to resolve against (a study's copy) imports nothing
    stored = spaces.loads(space.text, source="study x")
    assert stored.hypermodel is not None and stored.hypermodel.file is None
    with pytest.raises(ConfigError, match="not bound to a local file"):
        load_builder(stored.hypermodel)
    # only the bytes that were hashed ever run
    (tmp_path / "hm" / "tutorial.py").write_text("raise SystemExit('must not run')\n")
    with pytest.raises(ConfigError, match="changed since it was checked"):
        load_builder(ref)


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        ({"model": {"hypermodel": "tutorial"}}, r"model.hypermodel: expected 'FILE.py:NAME'"),
        ({"model": {"hypermodel": "hm/tutorial.py:"}}, r"model.hypermodel: expected 'FILE.py:NAME'"),
        ({"model": {"hypermodel": "nope.py:build"}}, r"model.hypermodel: nope.py: no such file"),
        ({"model": {"hypermodel": BUILD, "layers": 2}}, r"model.layers: unknown key"),
        ({"model": {"hypermodel": BUILD}, "optimizer": {"name": "sgd"}}, r"optimizer: not used with"),
        ({"model": {"hypermodel": BUILD}, "sampler": {"type": "grid"}}, r"sampler.type: grid needs"),
    ],
    ids=lambda v: flow(v) if isinstance(v, dict) else None,
)
def test_bad_hypermodel_sections_are_one_line_errors(
    tmp_path: Path, sections: dict[str, Any], match: str
) -> None:
    _space(tmp_path)
    with pytest.raises(ConfigError, match=match):
        spaces.load(write_space(tmp_path, "bad", **sections))


@pytest.mark.parametrize("objectives", [SINGLE, MULTI], ids=["single", "multi"])
def test_the_tutorial_hypermodel_runs_a_study(tmp_path: Path, objectives: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'kt.db'}"
    assert main(["run", str(_space(tmp_path, objectives)), "--storage", url]) == 0
    study = _study(url)
    trials = study.get_trials()
    done = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    assert len(trials) == 2 and all(t.state in done for t in trials)  # the pruner may stop trial 1
    # trial 0 completes: the median pruner needs n_startup_trials=1 finished trial first
    assert trials[0].state == optuna.trial.TrialState.COMPLETE
    assert len(trials[0].values) == len(objectives)
    for t in trials:
        # KerasTuner names in the study (and so in the dashboard), on KerasTuner's grid
        assert set(t.params) == {"units", "learning_rate"}
        assert t.params["units"] % 32 == 0 and 32 <= t.params["units"] <= 512
        assert t.params["learning_rate"] in (1e-2, 1e-3, 1e-4)
        assert t.user_attrs["params"]["units"] == t.params["units"]
        assert t.user_attrs["flops"] > 0  # counted inside the hypermodel's nested model
        assert 1 <= len(t.user_attrs["curves"]["val_accuracy"]) <= 2
    # optuna-dashboard's own app (its WSGI API, no server) shows them under the same names
    (summary,) = dashboard_api(open_storage(url), "/api/studies")["study_summaries"]
    shown = dashboard_api(open_storage(url), f"/api/studies/{summary['study_id']}")
    assert {p["name"] for p in shown["union_search_space"]} == {"units", "learning_rate"}
    assert [p["name"] for p in shown["trials"][0]["params"]] == ["units", "learning_rate"]


def test_a_worker_runs_only_its_own_matching_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'kt.db'}"
    assert main(["create", str(_space(tmp_path)), "--storage", url]) == 0
    worker = ["worker", "--study", "kt-digits", "--storage", url]
    capsys.readouterr()

    assert main(worker) == 2  # the study's own path is never imported
    assert "pass --hypermodel FILE.py:build" in capsys.readouterr().err

    edited = tmp_path / "edited.py"
    edited.write_text(TUTORIAL.read_text() + "\n# edited\n")
    assert main([*worker, "--hypermodel", f"{edited}:build"]) == 2
    err = capsys.readouterr().err
    assert "differs from the study's" in err and len(err.strip().splitlines()) == 1

    assert main([*worker, "--hypermodel", f"{TUTORIAL}:model_builder"]) == 2
    assert "the study runs 'build', not 'model_builder'" in capsys.readouterr().err
    assert _study(url).get_trials()[0].state == optuna.trial.TrialState.WAITING  # nothing ran

    copy = tmp_path / "elsewhere" / "my_copy.py"  # same bytes, another place: accepted
    copy.parent.mkdir()
    shutil.copy(TUTORIAL, copy)
    assert main([*worker, "--hypermodel", f"{copy}:build"]) == 0
    # both ran (the median pruner may stop the second one early)
    assert [t.state.name for t in _study(url).get_trials()] in (["COMPLETE"] * 2, ["COMPLETE", "PRUNED"])


def test_a_declarative_study_refuses_a_hypermodel_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert main(["create", "quickstart", "--storage", url, "--trials", "1"]) == 0
    assert (
        main(["worker", "--study", "quickstart", "--storage", url, "--hypermodel", f"{TUTORIAL}:build"]) == 2
    )
    assert "has no hypermodel; drop --hypermodel" in capsys.readouterr().err


def test_resuming_after_the_file_changed_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'kt.db'}"
    path = _space(tmp_path)
    assert main(["create", str(path), "--storage", url]) == 0
    (tmp_path / "hm" / "tutorial.py").write_text(TUTORIAL.read_text() + "\n# edited\n")
    assert main(["create", str(path), "--storage", url]) == 2
    assert "changed since the study was created" in capsys.readouterr().err
    assert load_space(open_storage(url), "kt-digits").hypermodel is not None


UNIMPORTABLE = {  # refused by validate, run and create before anything is written
    "import error": (
        "import not_a_module_anywhere\n",
        "importing it failed at line 1: ModuleNotFoundError: No module named 'not_a_module_anywhere'",
    ),
    "syntax error": ("def build(hp)\n    return 3\n", "importing it failed at line 1: SyntaxError"),
    "exits": ("import sys\nsys.exit('no')\n", "importing it failed at line 2: SystemExit: no"),
    "not callable": ("build = 3\n", "must be a function build\\(hp\\) or a kt.HyperModel, found int"),
    "no such name": ("def other(hp):\n    pass\n", "'build' must be a function .* found nothing"),
}


@pytest.mark.parametrize(("source", "match"), UNIMPORTABLE.values(), ids=UNIMPORTABLE.keys())
def test_a_hypermodel_that_cannot_be_imported_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, match: str
) -> None:
    (tmp_path / "hm").mkdir()
    (tmp_path / "hm" / "tutorial.py").write_text(source)
    space, db = str(_space(tmp_path)), tmp_path / "b.db"
    at = ["--storage", f"sqlite:///{db}"]
    for argv in (["validate", space], ["run", space, *at], ["create", space, *at]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(match, err[0]), err
    assert not db.exists()  # no study, so the name is not taken by a study that cannot run


def test_after_the_file_is_fixed_the_study_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 20: a broken import used to leave a study (and a FAIL trial) that refused the fixed file."""
    (tmp_path / "hm").mkdir()
    (tmp_path / "hm" / "tutorial.py").write_text("import not_a_module_anywhere\n")
    url = f"sqlite:///{tmp_path / 'kt.db'}"
    assert main(["run", str(_space(tmp_path)), "--storage", url, "--trials", "1"]) == 2
    shutil.copy(TUTORIAL, tmp_path / "hm" / "tutorial.py")  # fixed
    assert main(["run", str(_space(tmp_path)), "--storage", url, "--trials", "1"]) == 0
    assert "changed since the study was created" not in capsys.readouterr().err
    assert [t.state.name for t in _study(url).trials] == ["COMPLETE"]


UNBUILDABLE = {  # the file imports, but every trial's build would fail: refused before a study is written
    "uncompiled": (
        "import keras\ndef build(hp):\n"
        "    return keras.Sequential([keras.layers.Dense(hp.Int('u', 1, 4))])\n",
        "must compile the model",
    ),
    "not a model": ("def build(hp):\n    return 3\n", "must return a keras.Model, got int"),
    "no accuracy": (
        "import keras\ndef build(hp):\n"
        "    m = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)])\n"
        "    m.compile(loss='sparse_categorical_crossentropy')\n    return m\n",
        "compile with metrics=\\['accuracy'\\]",
    ),
    "reverse_log": (
        "def build(hp):\n    hp.Float('lr', 1e-4, 1e-1, sampling='reverse_log')\n",
        "reverse_log' has no Optuna equivalent",
    ),
    "raises": (
        "def build(hp):\n    return 1 / 0\n",
        "hypermodel hm/tutorial.py:build: build\\(hp\\) raised ZeroDivisionError at line 2: division by zero",
    ),
}


@pytest.mark.parametrize(("source", "match"), UNBUILDABLE.values(), ids=UNBUILDABLE.keys())
def test_a_hypermodel_that_cannot_build_is_refused_before_a_study_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, match: str
) -> None:
    (tmp_path / "hm").mkdir()
    (tmp_path / "hm" / "tutorial.py").write_text(source)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    assert main(["run", str(_space(tmp_path)), "--storage", url]) == 2  # built once, in a child process
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hpsearch: error: ") and re.search(match, err[0]), err
    assert not (tmp_path / "b.db").exists()


def test_a_failing_build_or_layer_fails_that_trial_alone(tmp_path: Path) -> None:
    (tmp_path / "hm").mkdir()
    (tmp_path / "hm" / "tutorial.py").write_text(
        "import keras\n"
        "class Boom(keras.layers.Layer):\n"
        "    def call(self, x, training=None):\n"
        "        if training:\n"
        "            raise RuntimeError('custom layer failed')\n"
        "        return x\n"
        "def build(hp):\n"
        "    fail = hp.Choice('fail', ['no', 'build', 'layer'])\n"  # the default builds: it is checked once
        "    if fail == 'build':\n"
        "        raise KeyError('no such block')\n"
        "    m = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10, activation='softmax')])\n"
        "    if fail == 'layer':\n"
        "        m = keras.Sequential([Boom(), m])\n"
        "    m.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
        "    return m\n"
    )
    url = f"sqlite:///{tmp_path / 'f.db'}"
    space = _space(tmp_path)
    assert main(["create", str(space), "--storage", url]) == 0
    for fail in ("build", "layer", "no"):
        _study(url).enqueue_trial({"fail": fail})
    assert main(["run", str(space), "--storage", url, "--trials", "3"]) == 0  # one trial completed
    by_fail = {t.params["fail"]: t for t in _study(url).trials if t.params}
    assert any(t.state.name == "COMPLETE" for t in _study(url).trials if t.params.get("fail") == "no")
    assert by_fail["build"].user_attrs["fail_reason"] == (
        "hypermodel hm/tutorial.py:build: build(hp) raised KeyError at line 10: 'no such block'"
    )
    assert by_fail["layer"].user_attrs["fail_reason"] == (
        "training raised RuntimeError (hypermodel hm/tutorial.py:build, line 5): "
        "Exception encountered when calling Boom.call(): custom layer failed"
    )


def test_checking_a_hypermodel_initializes_no_device(tmp_path: Path) -> None:
    """`run` checks the hypermodel before its worker picks a GPU (CUDA_VISIBLE_DEVICES) and backend:
    the build-once check runs in a child, or TensorFlow would have started on every GPU before the choice."""
    code = (
        "import sys\nfrom search.cli import main\n"
        "assert main(['create', sys.argv[1], '--storage', sys.argv[2]]) == 0\n"
        "import tensorflow as tf\n"
        "tf.config.threading.set_intra_op_parallelism_threads(1)  # RuntimeError once TF started\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(_space(tmp_path)), f"sqlite:///{tmp_path / 'c.db'}"],
        capture_output=True, text=True, env=subprocess_env(TF_CPP_MIN_LOG_LEVEL="0"), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "study 'kt-digits'" in done.stdout
    assert "cuInit" not in done.stderr  # without a CUDA driver, TensorFlow logs its failed attempt


def test_a_hypermodel_class_with_conditional_parameters(tmp_path: Path) -> None:
    (tmp_path / "hm").mkdir()
    (tmp_path / "hm" / "tutorial.py").write_text(
        "import keras, keras_tuner as kt\n"
        "class Net(kt.HyperModel):\n"
        "    def build(self, hp):\n"
        "        m = keras.Sequential([keras.layers.Flatten()])\n"
        "        if hp.Boolean('hidden'):\n"
        "            with hp.conditional_scope('hidden', [True]):\n"
        "                m.add(keras.layers.Dense(hp.Int('units', 8, 16, step=8), activation='relu'))\n"
        "        m.add(keras.layers.Dense(10, activation='softmax'))\n"
        "        m.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
        "        return m\n"
    )
    url = f"sqlite:///{tmp_path / 'c.db'}"
    space = _space(tmp_path, hypermodel="hm/tutorial.py:Net")
    study_name = "kt-digits"
    assert main(["create", str(space), "--storage", url]) == 0
    study = _study(url, study_name)
    study.enqueue_trial({"hidden": True, "units": 16})  # both branches, whatever TPE would pick
    study.enqueue_trial({"hidden": False})
    assert main(["run", str(space), "--storage", url, "--trials", "4"]) == 0
    by_hidden = {t.params["hidden"]: t.params for t in _study(url).get_trials() if "hidden" in t.params}
    assert by_hidden[True] == {"hidden": True, "units": 16}
    assert by_hidden[False] == {"hidden": False}  # `units` exists only under hidden=True


def test_local_workers_get_the_file_this_run_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert main(["run", str(_space(tmp_path)), "--storage", url, "--workers", "2"]) == 0
    trials = _study(url).get_trials()
    assert len(trials) == 2 and all(t.state.is_finished() and "units" in t.params for t in trials)


def test_evaluate_rebuilds_a_hypermodel_trial_from_your_copy_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'kt.db'}"
    assert main(["run", str(_space(tmp_path)), "--storage", url]) == 0
    out = tmp_path / "eval"
    evaluate = ["evaluate", "--study", "kt-digits", "--storage", url, "--out", str(out)]
    capsys.readouterr()
    assert main(evaluate) == 2  # the study's stored path is never imported
    assert "pass --hypermodel FILE.py:build" in capsys.readouterr().err
    assert not out.exists()
    assert main([*evaluate, "--hypermodel", str(tmp_path / "hm" / "tutorial.py") + ":build"]) == 0
    (trial,) = [t for t in _study(url).trials if "test_fit" in t.user_attrs]  # the best one
    assert trial.user_attrs["test_fit"].startswith("train+validation")
    matrix = trial.user_attrs["test_confusion_matrix"]
    assert len(matrix) == 10 and sum(map(sum, matrix)) == 360  # the fixed digits test split
    # the saved model is the trial's architecture: its hp values were replayed from its params
    model = keras.saving.load_model(out / f"kt-digits-trial{trial.number}" / "model.keras", safe_mode=True)
    dense = [layer.units for layer in _layers(model) if isinstance(layer, keras.layers.Dense)]
    assert dense == [trial.params["units"], 10]


def _layers(model: Any) -> list[Any]:
    """Every layer, inside nested models too (the hypermodel sits behind the Rescaling input)."""
    found = []
    for layer in model.layers:
        found += _layers(layer) if hasattr(layer, "layers") else [layer]
    return found


def test_lr_find_refuses_a_hypermodel_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "lr.png"
    assert main(["lr-find", str(_space(tmp_path)), "--plot", str(plot)]) == 2
    assert "chooses its own learning rate" in capsys.readouterr().err
    assert not plot.exists()
