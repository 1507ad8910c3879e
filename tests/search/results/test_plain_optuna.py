"""`studies`, `best`, `report` and `export` on studies a plain Optuna script made (no hpsearch attrs).

The scripts here are what a user writes: ``create_study`` + ``optimize`` with ``suggest_*``,
``trial.report``, a pruned and a failed trial, user attrs of its own, several objectives with
``set_metric_names``. Parameters are enqueued, so every value is known.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import optuna
import pytest
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from search.cli import main
from search.results.facts import duration

XS = [1.0, 2.0, 3.0, 4.0, 5.0]  # x=4 is pruned, x=5 fails: trial 2 (x=3) is the best


def _single(url: str) -> optuna.Study:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 10)
        trial.suggest_categorical("opt", ["adam", "sgd"])
        trial.set_user_attr("note", f"run {trial.number}")
        for step in range(3):
            trial.report(x * (step + 1), step)
        if x == 4.0:
            raise optuna.TrialPruned()
        if x == 5.0:
            raise RuntimeError("boom")
        return x

    study = optuna.create_study(storage=url, study_name="plain", direction="maximize")
    for x in XS:
        study.enqueue_trial({"x": x, "opt": "sgd"})
    study.optimize(objective, n_trials=len(XS), catch=(RuntimeError,))
    return study


def _multi(url: str, *, named: bool) -> optuna.Study:
    study = optuna.create_study(storage=url, study_name="multi", directions=["minimize", "maximize"])
    if named:
        study.set_metric_names(["loss", "speed"])
    for x in (0.1, 0.5, 0.9):
        study.enqueue_trial({"x": x})
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("x", 0, 1) ** 2), n_trials=3)
    return study


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert err == "" or args[0] == "export", err  # no warning, no traceback
    return out


@pytest.mark.backends("sqlite", "postgresql")
def test_best_and_studies_show_a_plain_single_objective_study(
    storage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _single(storage_url)
    best = study.trials[2]
    seconds = (best.datetime_complete - best.datetime_start).total_seconds()  # type: ignore[operator]
    table = _cli(["best", "--study", "plain", "--storage", storage_url], capsys)
    assert table.splitlines()[:2] == ["Best trial of study 'plain':", "trial  value   seconds  params"]
    assert re.fullmatch(r"2 +3\.0000 +[0-9.e-]+ +x=3\.0000 opt=sgd", table.splitlines()[3])
    (shown,) = json.loads(_cli(["best", "--study", "plain", "--storage", storage_url, "--json"], capsys))[
        "best_trials"
    ]
    assert shown["values"] == {"value": 3.0} and shown["params"] == {"x": 3.0, "opt": "sgd"}
    assert shown["user_attrs"] == {"note": "run 2"} and shown["seconds"] == pytest.approx(seconds)
    assert shown["intermediate_values"] == {"0": 3.0, "1": 6.0, "2": 9.0}
    listed = _cli(["studies", "--storage", storage_url], capsys).splitlines()[2]
    assert re.fullmatch(r"plain +maximize +5 +complete=3 pruned=1 fail=1 +value=3\.0000 \(#2\)", listed)
    (summary,) = json.loads(_cli(["studies", "--storage", storage_url, "--json"], capsys))["studies"]
    assert summary["metrics"] == ["value"] and summary["best_trials"] == [
        {"number": 2, "values": {"value": 3.0}}
    ]


def test_export_of_a_plain_study_has_params_values_steps_and_durations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = _single(url)
    rows = list(
        csv.DictReader(
            io.StringIO(_cli(["export", "--study", "plain", "--storage", url, "--format", "csv"], capsys))
        )
    )
    assert list(rows[0]) == [
        "number",
        "state",
        "value",  # Optuna's own column name for an unnamed single objective
        "params_opt",
        "params_x",
        "user_attrs_note",
        "intermediate_values",
        "datetime_start",
        "datetime_complete",
        "duration",
    ]
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert [r["params_x"] for r in rows] == ["1.0", "2.0", "3.0", "4.0", "5.0"]
    assert rows[2]["value"] == "3.0" and rows[4]["value"] == ""
    assert json.loads(rows[3]["intermediate_values"]) == {"0": 4.0, "1": 8.0, "2": 12.0}
    for row, trial in zip(rows, study.trials, strict=True):
        assert float(row["duration"]) == pytest.approx(duration(trial))
    out = tmp_path / "plain.json"
    assert main(["export", "--study", "plain", "--storage", url, "--format", "json", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert (data["metrics"], data["directions"]) == (["value"], ["maximize"])
    assert data["trials"][4]["values"] is None and data["trials"][4]["user_attrs"] == {"note": "run 4"}


def test_report_of_a_plain_study_draws_its_intermediate_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    _single(url)
    out = tmp_path / "r.html"
    assert "written to" in _cli(["report", "--study", "plain", "--storage", url, "--out", str(out)], capsys)
    page = out.read_text()
    assert "5 trials (3 complete, 1 pruned, 1 fail); objectives: maximize value" in page
    assert "Learning curves (intermediate values by step)" in page and "Optimization history" in page
    header = page.split('<table id="best-trials">')[1].split("</tr>")[0]
    assert re.findall(r"<th>(.*?)</th>", header) == ["trial", "value", "seconds", "parameters"]
    assert "<h2>Space</h2>" not in page and 'class="note"' not in page  # no space; every plot drawn


@pytest.mark.parametrize(("named", "columns"), [(True, ["loss", "speed"]), (False, ["values_0", "values_1"])])
def test_a_plain_multi_objective_study_is_named_by_its_metric_names(
    named: bool, columns: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'multi.db'}"
    study = _multi(url, named=named)
    table = _cli(["best", "--study", "multi", "--storage", url], capsys).splitlines()
    assert table[1].split() == ["trial", *columns, "seconds", "params"]
    assert sorted(int(row.split()[0]) for row in table[3:]) == sorted(t.number for t in study.best_trials)
    rows = list(
        csv.DictReader(
            io.StringIO(_cli(["export", "--study", "multi", "--storage", url, "--format", "csv"], capsys))
        )
    )
    value_columns = [f"values_{m}" for m in columns] if named else columns  # as Optuna's trials_dataframe
    assert [c for c in rows[0] if c.startswith("value")] == value_columns
    assert [float(rows[1][c]) for c in value_columns] == [0.5, 0.25]
    out = tmp_path / "m.html"
    _cli(["report", "--study", "multi", "--storage", url, "--out", str(out)], capsys)
    page = out.read_text()
    assert f"Pareto front: {columns[0]} vs {columns[1]}" in page
    assert f"objectives: minimize {columns[0]}, maximize {columns[1]}" in page
    assert "Learning curves" not in page  # no trial reported a curve


def test_a_study_without_trials_reads_as_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(storage=url, study_name="empty")
    assert (
        _cli(["best", "--study", "empty", "--storage", url], capsys)
        == "Best trial: none yet (no trial completed)\n"
    )
    csv_text = _cli(["export", "--study", "empty", "--storage", url, "--format", "csv"], capsys)
    assert csv_text == "number,state,value,datetime_start,datetime_complete,duration\n"
    _cli(["report", "--study", "empty", "--storage", url, "--out", str(tmp_path / "e.html")], capsys)
    assert "0 trials (none)" in (tmp_path / "e.html").read_text()


def test_duration_prefers_hpsearch_training_time() -> None:
    dist: dict[str, BaseDistribution] = {"x": FloatDistribution(0, 1)}
    timed = create_trial(state=TrialState.COMPLETE, value=1.0, params={"x": 0.5}, distributions=dist)
    assert duration(timed) == (timed.datetime_complete - timed.datetime_start).total_seconds()  # type: ignore[operator]
    trained = create_trial(
        state=TrialState.COMPLETE,
        value=1.0,
        params={"x": 0.5},
        distributions=dist,
        user_attrs={"train_seconds": 12.5},
    )
    assert duration(trained) == 12.5
    running = create_trial(state=TrialState.RUNNING, params={"x": 0.5}, distributions=dist)
    assert duration(running) is None


def test_a_script_s_own_attrs_under_hpsearch_s_names_are_shown_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'own.db'}"
    study = optuna.create_study(storage=url, study_name="own", direction="maximize")
    attrs = {"param_count": "1M", "train_seconds": "fast", "curves": [1, 2], "epochs_run": "all"}

    def objective(trial: optuna.Trial) -> float:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return 1.0

    study.optimize(objective, n_trials=1)
    row = _cli(["best", "--study", "own", "--storage", url], capsys).splitlines()[3].split()
    assert row[:3] == ["0", "1.0000", "all"] and float(row[3]) >= 0  # seconds: start to completion
    out = tmp_path / "own.html"
    _cli(["report", "--study", "own", "--storage", url, "--out", str(out)], capsys)
    table = out.read_text().split('<table id="best-trials">')[1].split("</table>")[0]
    assert "<td>1M</td>" in table and "<td>all</td>" in table


def test_any_name_a_script_gave_its_study_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'named.db'}"
    optuna.create_study(storage=url, study_name="lr sweep: 1/2").optimize(lambda t: 1.0, n_trials=1)
    assert "lr sweep: 1/2" in _cli(["studies", "--storage", url], capsys)
    assert "Best trial of study 'lr sweep: 1/2'" in _cli(
        ["best", "--study", "lr sweep: 1/2", "--storage", url], capsys
    )
    assert '"lr sweep: 1/2"' in _cli(
        ["export", "--study", "lr sweep: 1/2", "--storage", url, "--format", "json"], capsys
    )
    assert (
        main(["best", "--study", "lr sweep", "--storage", url]) == 2
    )  # a name no study has: hpsearch's rule
    assert "argument --study: expected a name of letters" in capsys.readouterr().err
