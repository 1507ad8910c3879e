"""`hpsearch` end to end: real Keras trials on tiny real data, real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import storage
from search.cli import main
from search.study import open_storage


def _study(url: str, name: str = "e2e") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(storage.resolve(url, {})))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_run_stores_space_trials_and_prints_the_front(
    url: str, space_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(space_file), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "0/2 trials done" in out
    assert "[1/2" in out and "[2/2" in out
    assert "Pareto-optimal trials of study 'e2e'" in out
    study = _study(url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.user_attrs["hpsearch:space"] == space_file.read_text()
    for trial in study.trials:
        assert {
            "val_accuracy",
            "val_loss",
            "train_seconds",
            "epochs_run",
            "params",
            "flops",
            "device",
            "curves",
        } <= set(trial.user_attrs)


def test_resuming_adds_trials_instead_of_starting_over(
    url: str, space_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(space_file), "--storage", url, "--trials", "1"]) == 0
    first = _study(url).trials[0]
    capsys.readouterr()
    assert main(["run", str(space_file), "--storage", url, "--trials", "3"]) == 0
    assert "1/3 trials done" in capsys.readouterr().out
    trials = _study(url).trials
    assert len(trials) == 3
    assert (trials[0].number, trials[0].params, trials[0].values) == (
        first.number,
        first.params,
        first.values,
    )
    assert trials[1].params != trials[0].params  # the resumed sampler does not replay trial 0
    assert main(["run", str(space_file), "--storage", url, "--trials", "3"]) == 0
    assert "already has 3 finished trials; nothing to run" in capsys.readouterr().out
    assert len(_study(url).trials) == 3


def test_nan_trial_fails_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # grid over two learning rates: 1e30 overflows the weights (NaN loss), 0.01 trains normally
    space = tmp_path / "nan.yaml"
    space.write_text(
        "name: nan\ndataset: {name: digits, limit: 200}\nsampler: {type: grid}\nbudget: {trials: 2}\n"
        "model: {layers: 1, units: 8}\n"
        "optimizer: {name: sgd, learning_rate: [1.0e+30, 0.01]}\n"
        "training: {epochs: 2, normalize: false}\n"
    )
    url = f"sqlite:///{tmp_path / 'nan.db'}"
    assert main(["run", str(space), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "FAIL     reason: loss became" in out
    states = {t.params["learning_rate"]: t.state.name for t in _study(url, "nan").trials}
    assert states == {1e30: "FAIL", 0.01: "COMPLETE"}


DOOMED = (  # learning rate 1e30 on raw pixels: every trial's loss becomes NaN
    "name: doomed\ndataset: {name: digits, limit: 200}\nbudget: {trials: %d}\n"
    "optimizer: {name: sgd, learning_rate: 1.0e+30}\ntraining: {epochs: 2, normalize: false}\n"
)


def test_too_many_failures_in_a_row_stop_the_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "doomed.yaml"
    space.write_text(DOOMED % 10)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["run", str(space), "--storage", url, "--max-failures", "2"]) == 1
    err = capsys.readouterr().err
    assert "stopped: 2 trials failed in a row (last: loss became" in err
    assert "no trial of study" not in err  # one line says why
    states = [t.state.name for t in _study(url, "doomed").trials]
    assert states == ["FAIL", "FAIL"] + ["WAITING"] * 8  # the rest of the budget stays queued


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_in_which_no_trial_completed_exits_1(
    workers: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20: a budget under --max-failures (or spread over workers) all failed, and `run` said 0."""
    space = tmp_path / "doomed.yaml"
    space.write_text(DOOMED % 2)
    run = ["run", str(space), "--storage", f"sqlite:///{tmp_path / 'd.db'}", "--workers", str(workers)]
    for _ in range(2):  # the second time there is nothing left to run: the verdict stays
        assert main(run) == 1
        last = capsys.readouterr().err.strip().splitlines()[-1]
        verdict = (
            r"hpsearch: no trial of study 'doomed' completed \(trials: 2 fail\); last failure: loss became "
        )
        assert re.match(verdict, last), last


def test_a_worker_whose_every_trial_failed_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "doomed.yaml").write_text(DOOMED % 2)
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["create", str(tmp_path / "doomed.yaml"), "--storage", url]) == 0
    assert main(["worker", "--study", "doomed", "--storage", url]) == 1  # `run` judges the study instead
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(r"hpsearch: all 2 trials of this worker failed \(last: loss became ", last), last


def test_rejected_space_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndataset: digits\noptimizer: {learning_rate: {type: float, low: 0, high: 1, log: true}}\n"
    )
    db = tmp_path / "never.db"
    assert main(["run", str(bad), "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert err == f"hpsearch: error: {bad}: optimizer.learning_rate.low: log=true needs low > 0, got 0\n"
    assert not db.exists()


@pytest.mark.parametrize("named", [False, True])
def test_missing_data_is_one_error_naming_where_it_looked(
    named: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    if named:  # a directory without the files: named, never swapped for another copy of the data
        (tmp_path / "empty").mkdir()
        monkeypatch.setenv("HPSEARCH_DATA_DIR", str(tmp_path / "empty"))
    else:
        monkeypatch.delenv("HPSEARCH_DATA_DIR", raising=False)
    db = tmp_path / "never.db"
    assert main(["run", "mnist-mlp", "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    if named:
        assert err.startswith(
            f"hpsearch: error: mnist: $HPSEARCH_DATA_DIR {tmp_path / 'empty'}: no train files"
        )
    else:
        assert err.startswith("hpsearch: error: mnist: no data found; looked in")
        assert "--data-dir" in err
    assert err.count("\n") == 1
    assert not db.exists()


def test_studies_best_and_json(tmp_path: Path, space_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    assert main(["run", str(space_file), "--storage", url]) == 0
    capsys.readouterr()
    assert main(["studies", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "e2e" in out and "maximize,minimize" in out and "complete=2" in out
    assert main(["best", "--study", "e2e", "--storage", url, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    study = _study(url)
    assert payload["metrics"] == ["val_accuracy", "train_seconds"]
    assert sorted(t["number"] for t in payload["best_trials"]) == sorted(t.number for t in study.best_trials)
    first = payload["best_trials"][0]
    assert set(first["values"]) == {"val_accuracy", "train_seconds"}
    assert main(["studies", "--storage", url, "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["studies"]
    assert listed["study"] == "e2e" and listed["directions"] == ["maximize", "minimize"]
    assert (listed["trials"], listed["states"]) == (2, {"complete": 2})
    assert [t["number"] for t in listed["best_trials"]] == [t["number"] for t in payload["best_trials"]]
    assert main(["best", "--study", "nope", "--storage", url]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_read_commands_never_create_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "none.db"
    assert main(["studies", "--storage", f"sqlite:///{db}"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not db.exists()


def test_storage_comes_from_the_environment(
    tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv(storage.ENV_VAR, f"sqlite:///{db}")
    assert main(["run", str(space_file), "--trials", "1"]) == 0
    assert db.exists()
    assert f"sqlite:///{db}" in capsys.readouterr().out


def test_validate_and_spaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spaces"]) == 0
    assert "quickstart" in capsys.readouterr().out
    assert main(["validate", "quickstart", "fashion-cnn"]) == 0
    out = capsys.readouterr().out
    assert "quickstart: ok" in out and "fashion-cnn: ok - fashion-cnn: cnn on fashion_mnist" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndataset: digits\nmodel: {units: {type: int, low: 9, high: 3}}\n")
    assert main(["validate", str(bad)]) == 2
    assert capsys.readouterr().err == f"hpsearch: error: {bad}: model.units: low > high (9 > 3)\n"


def test_interrupted_run_requeues_its_trial_and_resumes(tmp_path: Path, space_file: Path) -> None:
    """A real `hpsearch` process gets Ctrl-C after its first trial; the rerun finishes the budget."""
    url = f"sqlite:///{tmp_path / 'int.db'}"
    cmd = [sys.executable, "-m", "search", "run", str(space_file), "--storage", url, "--trials", "4"]
    root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "trial 0 " in line:
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGINT: " in err and "the study resumes where it stopped" in err
    before = _study(url).trials
    assert "RUNNING" not in {t.state.name for t in before}
    assert [t.state.name for t in before].count("COMPLETE") < 4

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = _study(url).trials
    for t in before:  # what finished before the interrupt is kept as it was
        if t.state.name == "COMPLETE":
            assert (after[t.number].state.name, after[t.number].params) == ("COMPLETE", t.params)
    assert [t.state.name for t in after].count("COMPLETE") == 4
    stopped = [t for t in after if t.state.name == "FAIL"]
    assert len(stopped) <= 1  # the trial running at Ctrl-C (none if it came between two trials)
    for t in stopped:  # nothing lost: the stopped trial was handed back and run to the end
        assert t.user_attrs["fail_reason"].startswith("worker stopped")
        assert f"trial {t.number} was re-queued" in err
        copy = next(c for c in after if c.system_attrs.get("failed_trial") == t.number)
        assert copy.state.name == "COMPLETE"
        if t.params:  # stopped mid-training (not just after being claimed): same configuration
            assert copy.params == t.params


# ---- the command line itself: --version, --debug, --json, closed pipes, OPTUNA_STORAGE -------------
