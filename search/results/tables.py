"""Text summaries of trials and studies: progress lines, Pareto tables, study lists, JSON.

Which trials are best is :mod:`search.results.select`'s question; here they are only shown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.results.facts import duration, metric_names
from search.results.select import best_trials

__all__ = ["best_trials", "compact_params", "fmt", "front_table", "studies_table", "trial_json", "trial_line"]


def fmt(value: Any) -> str:
    """A value for a table cell: floats to 4 decimals, or 3 significant digits when tiny or huge."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def compact_params(params: dict[str, Any]) -> str:
    """``layers=2 units=[128,64] lr=0.001``: per-layer values (``units_0``...) joined in lists."""
    grouped: dict[str, Any] = {}
    for name, value in params.items():
        m = re.fullmatch(r"(.+)_(\d+)", name)
        if m and m.group(1) in ("units", "filters"):
            grouped.setdefault(m.group(1), []).append(value)
        else:
            grouped[name] = value
    parts = []
    for name, value in grouped.items():
        shown = "[" + ",".join(fmt(v) for v in value) + "]" if isinstance(value, list) else fmt(value)
        parts.append(f"{name}={shown}")
    return " ".join(parts)


def trial_line(
    trial: FrozenTrial,
    metrics: Sequence[str],
    done: int,
    total: int,
    elapsed: float,
    *,
    eta: str | None = None,
) -> str:
    """One progress line for a finished trial (``eta``: the time left, shown after the elapsed)."""
    clock = f"{elapsed:6.1f}s" + (f" eta {eta}" if eta is not None else "")
    head = f"[{done:>{len(str(total))}}/{total} {clock}] trial {trial.number:<3} {trial.state.name:<8}"
    if trial.state == TrialState.COMPLETE and trial.values is not None:
        shown = " ".join(f"{m}={fmt(v)}" for m, v in zip(metrics, trial.values, strict=False))
    elif trial.state == TrialState.FAIL:
        shown = f"reason: {trial.user_attrs.get('fail_reason', 'see the worker log')}"
    else:
        epochs = trial.user_attrs.get(keys.EPOCHS_RUN)
        shown = trial.user_attrs.get(keys.PRUNE_REASON) or (f"after {epochs} epochs" if epochs else "")
    resumed = trial.user_attrs.get(keys.RESUMED_FROM)
    if isinstance(resumed, dict):  # an ASHA promotion: the parameters are the paused trial's
        shown += f" (continues #{resumed.get('trial')} from epoch {resumed.get('epoch')})"
    return f"{head} {shown}  {compact_params(trial.params)}".rstrip()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    return "\n".join(lines)


def front_table(study: optuna.Study, metrics: Sequence[str]) -> str:
    """The Pareto-optimal trials (or the best one) as a text table.

    ``seconds`` is hpsearch's training time, else the trial's start to completion (left out when
    ``train_seconds`` is an objective); a column no trial has a value for (``epochs`` in a study
    made without hpsearch) is left out.
    """
    trials = best_trials(study)
    title = "Pareto-optimal trials" if len(study.directions) > 1 else "Best trial"
    if not trials:
        return f"{title}: none yet (no trial completed)"
    columns: list[tuple[str, list[Any]]] = [
        ("trial", [t.number for t in trials]),
        *((m, [t.values[i] for t in trials]) for i, m in enumerate(metrics)),
        ("epochs", [t.user_attrs.get(keys.EPOCHS_RUN) for t in trials]),
        ("seconds", [None if keys.TRAIN_SECONDS in metrics else duration(t) for t in trials]),
        ("params", [compact_params(t.params) for t in trials]),
    ]
    shown = [(name, cells) for name, cells in columns if any(c is not None for c in cells)]
    rows = [
        [fmt(cells[r]) if cells[r] is not None else "-" for _, cells in shown] for r in range(len(trials))
    ]
    return f"{title} of study {study.study_name!r}:\n" + _table([name for name, _ in shown], rows)


def studies_table(storage: optuna.storages.BaseStorage) -> str:
    """Every study in a storage: directions, trials by state, best values."""
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        return "no studies in this storage"
    rows = []
    for s in summaries:
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {st: sum(t.state == st for t in trials) for st in TrialState}
        states = " ".join(f"{st.name.lower()}={n}" for st, n in counts.items() if n)
        metrics = metric_names(study)
        best = best_trials(study)
        if len(s.directions) == 1:
            best_s = f"{metrics[0]}={fmt(best[0].value)} (#{best[0].number})" if best else "-"
        else:
            best_s = (
                f"front of {len(best)}: "
                + ", ".join(
                    f"{m} {'max' if d.name == 'MAXIMIZE' else 'min'} {fmt(_extreme(best, i, d.name))}"
                    for i, (m, d) in enumerate(zip(metrics, s.directions, strict=False))
                )
                if best
                else "-"
            )
        directions = ",".join(d.name.lower() for d in s.directions)
        rows.append([s.study_name, directions, str(len(trials)), states or "-", best_s])
    return _table(["study", "directions", "trials", "states", "best"], rows)


def _extreme(trials: Sequence[FrozenTrial], i: int, direction: str) -> float:
    values = [float(t.values[i]) for t in trials]
    return max(values) if direction == "MAXIMIZE" else min(values)


def trial_json(trial: FrozenTrial, metrics: Sequence[str]) -> dict[str, Any]:
    """A trial as plain JSON: number, objective values by metric, params, recorded attrs, its
    duration in seconds and its intermediate values (by step; empty when it reported none)."""
    attrs = {k: v for k, v in trial.user_attrs.items() if k != keys.CURVES}
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": dict(zip(metrics, trial.values or [], strict=False)),
        "params": trial.params,
        "user_attrs": attrs,
        "seconds": duration(trial),
        "intermediate_values": {str(step): v for step, v in sorted(trial.intermediate_values.items())},
    }
