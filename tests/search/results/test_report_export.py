"""`hpsearch report` and `hpsearch export` checked against the study; the progress display.

Studies here hold trials added through Optuna (no training): their values and attrs are known,
so the files can be checked exactly.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

import spaces
import storage
from search.cli import main
from search.study.create import create_or_load
from search.study.queue import top_up
from search.worker.progress import ProgressDisplay, format_eta
from tests.helpers import float_range, int_range, space_text

SECTIONS = {
    "dataset": {"name": "digits"},
    "model": {"layers": 1, "units": int_range(4, 64)},
    "optimizer": {"learning_rate": float_range(1.0e-4, 1.0e-1, log=True)},
}
MULTI = space_text("rep", base=SECTIONS)
SINGLE = space_text("one", base=SECTIONS, objectives=["val_accuracy"])
DISTS = {"units_0": IntDistribution(4, 64), "learning_rate": FloatDistribution(1e-4, 1e-1, log=True)}
# (val_accuracy, train_seconds, units, state): trials 0 and 2 are the Pareto front
ROWS = [
    (0.90, 2.0, 32, TrialState.COMPLETE),
    (0.80, 3.0, 16, TrialState.COMPLETE),  # dominated by trial 0
    (0.70, 1.0, 8, TrialState.COMPLETE),
    (None, None, 4, TrialState.FAIL),
    (None, None, 64, TrialState.PRUNED),
]


def _study(tmp_path: Path, text: str) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'rep.db'}"
    space = spaces.loads(text, source="test")
    study = create_or_load(space, storage.open_storage(url, heartbeat_interval=None))
    for i, (acc, secs, units, state) in enumerate(ROWS):
        values = None if acc is None else ([acc, secs] if space.is_multi_objective else [acc])
        attrs = {"epochs_run": 2, "param_count": 100 * units, "curves": {"val_accuracy": [0.5, acc or 0.0]}}
        if state == TrialState.FAIL:
            attrs["fail_reason"] = "loss became nan"
        study.add_trial(
            create_trial(
                state=state,
                values=values,
                params={"units_0": units, "learning_rate": 0.1 / 2**i},
                distributions=DISTS,
                user_attrs=attrs,
            )
        )
    return url, study


def test_json_export_holds_every_trial(tmp_path: Path) -> None:
    url, _ = _study(tmp_path, MULTI)
    out = tmp_path / "trials.json"
    assert main(["export", "--study", "rep", "--storage", url, "--format", "json", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["metrics"] == ["val_accuracy", "train_seconds"] and data["directions"] == [
        "maximize",
        "minimize",
    ]
    trials = data["trials"]
    assert [t["state"] for t in trials] == [r[3].name for r in ROWS]
    assert [t["params"]["units_0"] for t in trials] == [r[2] for r in ROWS]
    assert trials[0]["values"] == {"val_accuracy": 0.9, "train_seconds": 2.0} and trials[3]["values"] is None
    assert trials[3]["user_attrs"]["fail_reason"] == "loss became nan"
    assert trials[2]["user_attrs"]["curves"] == {"val_accuracy": [0.5, 0.7]}


def test_csv_export_uses_optuna_column_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = _study(tmp_path, MULTI)
    assert main(["export", "--study", "rep", "--storage", url, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == len(ROWS)
    assert {"values_val_accuracy", "values_train_seconds", "params_units_0", "user_attrs_param_count"} <= set(
        rows[0]
    )
    assert [float(r["values_val_accuracy"]) for r in rows[:3]] == [0.9, 0.8, 0.7]
    assert rows[3]["values_val_accuracy"] == "" and rows[3]["state"] == "FAIL"
    assert json.loads(rows[1]["user_attrs_curves"]) == {"val_accuracy": [0.5, 0.8]}


def test_report_is_self_contained_and_shows_the_front(tmp_path: Path) -> None:
    url, _ = _study(tmp_path, MULTI)
    out = tmp_path / "r.html"
    assert main(["report", "--study", "rep", "--storage", url, "--out", str(out)]) == 0
    page = out.read_text()
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()[:2000]) == 1  # plotly.js inlined exactly once
    assert "<script src" not in page.replace(" ", "") and "<link" not in page  # nothing to fetch
    assert "5 trials (3 complete, 1 pruned, 1 fail)" in page
    table = page.split('<table id="best-trials">')[1].split("</table>")[0]
    assert [row.split("<td>")[1].split("<")[0] for row in table.split("<tr>")[2:]] == ["0", "2"]
    assert "<td>0.9000</td>" in table and "<td>3,200</td>" in table
    header = table.split("</tr>")[0]  # train_seconds is an objective: no second "seconds" column
    assert "<th>train_seconds</th>" in header and "<th>seconds</th>" not in header
    for title in (
        "Pareto front: val_accuracy vs train_seconds",
        "Parameter importances",
        "Parallel coordinates",
    ):
        assert title in page
    assert "Slice plots (val_accuracy)" in page and "Slice plots (train_seconds)" in page
    assert "Learning curves (val_accuracy by epoch)" in page  # from hpsearch's curves
    assert page.count('class="plotly-graph-div"') == 6 and 'class="note"' not in page
    assert "units: {type: int, low: 4, high: 64}" in page.split('<pre id="space">')[1]  # the space's text


def test_single_objective_report_shows_the_history(tmp_path: Path) -> None:
    url, _ = _study(tmp_path, SINGLE)
    out = tmp_path / "r.html"
    assert main(["report", "--study", "one", "--storage", url, "--out", str(out)]) == 0
    page = out.read_text()
    assert "Optimization history" in page and "Pareto" not in page
    table = page.split('<table id="best-trials">')[1]
    assert table.split("<tr>")[2].startswith("<td>0</td><td>0.9000</td>")


def test_bad_output_or_study_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = _study(tmp_path, MULTI)
    missing = tmp_path / "no" / "r.html"
    assert main(["report", "--study", "rep", "--storage", url, "--out", str(missing)]) == 2
    assert "--out" in capsys.readouterr().err and not missing.parent.exists()
    assert main(["export", "--study", "nope", "--storage", url, "--format", "json"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seconds", "shown"), [(None, "?"), (0.2, "0s"), (59.4, "59s"), (185, "3m05s"), (3725, "1h02m")]
)
def test_eta_format(seconds: float | None, shown: str) -> None:
    assert format_eta(seconds) == shown


def test_terminal_gets_an_in_place_bar_with_the_best_so_far(tmp_path: Path) -> None:
    _, study = _study(tmp_path, MULTI)
    top_up(study, len(ROWS) + 2)  # two trials still to run
    space = spaces.loads(MULTI, source="test")
    out = io.StringIO()
    display = ProgressDisplay(study, space, out, tty=True)
    display.trial_done(study, study.trials[2])
    display.close()
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    assert "5/7" in text and "best front of 2, val_accuracy=0.9000 (#0)" in text
    assert "trial 2   COMPLETE val_accuracy=0.7000" in text  # the trial's line above the bar


def test_eta_never_runs_past_the_timeout_when_the_timeout_binds(tmp_path: Path) -> None:
    _, study = _study(tmp_path, MULTI)
    top_up(study, 1000)  # --trials 1000 --timeout 600: the timeout ends the run, not the budget
    space = spaces.loads(MULTI, source="test")
    display = ProgressDisplay(study, space, io.StringIO(), tty=False, timeout=600.0)
    done = display.done_at_start + 2  # two trials in 30 s: 995 more would take 4 hours
    assert display.eta(done, 1000, elapsed=30.0) == pytest.approx(570.0)
    assert display.eta(done, 1000, elapsed=700.0) == 0.0
    untimed = ProgressDisplay(study, space, io.StringIO(), tty=False)
    assert untimed.eta(done, 1000, elapsed=30.0) == pytest.approx(30.0 / 2 * (1000 - done))
