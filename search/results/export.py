"""``hpsearch export``: every trial of a study as CSV or JSON, made by hpsearch or not.

Both carry each trial's number, state, objective values (named by metric), parameters, user
attrs (the per-epoch ``curves`` included), intermediate values, timestamps and duration (seconds
from start to completion). CSV columns follow Optuna's ``trials_dataframe`` names (``value`` or
``values_<metric>``, ``params_<name>``, ``user_attrs_<key>``); a non-scalar cell (``curves``,
``params``, the intermediate values) is JSON-encoded.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from search.results.facts import elapsed, value_columns

__all__ = ["FORMATS", "export_trials", "trial_record"]

FORMATS = ("csv", "json")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def trial_record(trial: FrozenTrial, metrics: Sequence[str]) -> dict[str, Any]:
    """One trial as plain JSON data (intermediate values keyed by step, as text)."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": dict(zip(metrics, trial.values, strict=False)) if trial.values is not None else None,
        "params": trial.params,
        "user_attrs": trial.user_attrs,
        "intermediate_values": {str(s): v for s, v in sorted(trial.intermediate_values.items())},
        "datetime_start": _iso(trial.datetime_start),
        "datetime_complete": _iso(trial.datetime_complete),
        "duration": elapsed(trial),
    }


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return "" if value is None else value
    return json.dumps(value, separators=(",", ":"))


def _csv(records: list[dict[str, Any]], metrics: Sequence[str], columns: Sequence[str]) -> str:
    params = sorted({k for r in records for k in r["params"]})
    attrs = sorted({k for r in records for k in r["user_attrs"]})
    steps = any(r["intermediate_values"] for r in records)
    header = [
        "number",
        "state",
        *columns,
        *(f"params_{p}" for p in params),
        *(f"user_attrs_{a}" for a in attrs),
        *(["intermediate_values"] if steps else []),
        "datetime_start",
        "datetime_complete",
        "duration",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in records:
        values = r["values"] or {}
        writer.writerow(
            [
                r["number"],
                r["state"],
                *(_cell(values.get(m)) for m in metrics),
                *(_cell(r["params"].get(p)) for p in params),
                *(_cell(r["user_attrs"].get(a)) for a in attrs),
                *([_cell(r["intermediate_values"] or None)] if steps else []),
                _cell(r["datetime_start"]),
                _cell(r["datetime_complete"]),
                _cell(r["duration"]),
            ]
        )
    return buf.getvalue()


def export_trials(study: optuna.Study, metrics: Sequence[str], fmt: str) -> str:
    """Every trial of ``study`` in ``fmt`` (``csv`` or ``json``), ordered by trial number."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    records = [
        trial_record(t, metrics) for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    ]
    if fmt == "csv":
        return _csv(records, metrics, value_columns(study, metrics))
    payload = {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "metrics": list(metrics),
        "trials": records,
    }
    return json.dumps(payload, indent=2, allow_nan=True) + "\n"
