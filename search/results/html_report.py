"""``hpsearch report``: one self-contained HTML file with a study's plots and its best trials.

The plots are Optuna's own (:mod:`optuna.visualization`, plotly figures) and the trials'
learning curves; plotly.js is inlined once, so the file opens offline and can be mailed or
attached to a ticket. A study made without hpsearch shows what it has: its objectives (named by
``study.set_metric_names`` if its script set them), durations, intermediate values as curves.
"""

from __future__ import annotations

import functools
import html
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.results.facts import duration, space_text
from search.results.tables import best_trials, compact_params, fmt

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["render_report", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 4px 10px; text-align: left; }
tr:nth-child(even) { background: #f6f6f6; } th { border-bottom: 2px solid #999; }
.note { color: #777; font-style: italic; }
"""


def _value(i: int) -> Callable[[FrozenTrial], float]:
    return lambda t: float(t.values[i])


def _plots(study: optuna.Study, metrics: Sequence[str]) -> list[tuple[str, Callable[[], go.Figure]]]:
    """(title, figure factory) for every plot the report shows."""
    vis = optuna.visualization
    multi = len(study.directions) > 1
    target: dict[str, Any] = {"target": _value(0), "target_name": metrics[0]} if multi else {}
    plots: list[tuple[str, Callable[[], go.Figure]]] = []
    if multi and len(study.directions) in (2, 3):
        plots.append(
            (
                f"Pareto front: {' vs '.join(metrics)}",
                lambda: vis.plot_pareto_front(study, target_names=list(metrics)),
            )
        )
    else:
        plots.append(("Optimization history", lambda: vis.plot_optimization_history(study, **target)))
    plots.append(
        (
            "Parameter importances",
            lambda: (
                vis.plot_param_importances(study)
                if multi
                else vis.plot_param_importances(study, target_name=metrics[0])
            ),
        )
    )
    plots.append(
        (f"Parallel coordinates ({metrics[0]})", lambda: vis.plot_parallel_coordinate(study, **target))
    )
    for i, metric in enumerate(metrics):
        by_i: dict[str, Any] = {"target_name": metric}
        if multi:
            by_i["target"] = _value(i)
        plots.append((f"Slice plots ({metric})", functools.partial(vis.plot_slice, study, **by_i)))
    return plots


def _figure_html(factory: Callable[[], go.Figure], div_id: str) -> str:
    try:
        with warnings.catch_warnings():  # Optuna warns on e.g. too few trials for importances
            warnings.simplefilter("ignore")
            fig = factory()
    except (ValueError, RuntimeError) as e:  # e.g. importances need two completed trials
        return f'<p class="note">not available: {html.escape(str(e))}</p>'
    fig.update_layout(height=480)
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id))


def _best_table(study: optuna.Study, metrics: Sequence[str]) -> str:
    """The best trial or the front; a column no trial has a value for is left out (``seconds``
    too when ``train_seconds`` is an objective)."""
    trials = best_trials(study)
    if not trials:
        return '<p class="note">no trial completed yet</p>'
    columns: list[tuple[str, list[str | None]]] = [
        ("trial", [str(t.number) for t in trials]),
        *((m, [_shown(t.values[i], fmt) for t in trials]) for i, m in enumerate(metrics)),
        ("epochs", [_shown(t.user_attrs.get(keys.EPOCHS_RUN), fmt) for t in trials]),
        ("seconds", [None if keys.TRAIN_SECONDS in metrics else _shown(duration(t), fmt) for t in trials]),
        ("weights", [_shown(t.user_attrs.get(keys.PARAM_COUNT), _count) for t in trials]),
        ("FLOPs", [_shown(t.user_attrs.get(keys.FLOPS), _count) for t in trials]),
        ("device", [_shown(t.user_attrs.get(keys.DEVICE), str) for t in trials]),
        ("parameters", [compact_params(t.params) for t in trials]),
    ]
    shown = [(name, cells) for name, cells in columns if any(c is not None for c in cells)]
    header = "<tr>" + "".join(f"<th>{html.escape(name)}</th>" for name, _ in shown) + "</tr>"
    rows = [
        "<tr>" + "".join(f"<td>{html.escape(cells[r] or '-')}</td>" for _, cells in shown) + "</tr>"
        for r in range(len(trials))
    ]
    return f'<table id="best-trials">{header}{"".join(rows)}</table>'


def _shown(value: Any, show: Callable[[Any], str]) -> str | None:
    return None if value is None else show(value)


def _count(value: Any) -> str:
    """``12,345`` for a number; anything else (a script's own attr of that name) as it is."""
    return f"{value:,}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _curves(study: optuna.Study, metric: str) -> tuple[str, Callable[[], go.Figure]] | None:
    """Every finished trial's learning curve: hpsearch's per-epoch ``metric``, else the values
    the trial reported by step (``trial.report``); None when no trial has either."""
    by_epoch, by_step = [], []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        curves = t.user_attrs.get(keys.CURVES)
        curve = curves.get(metric) if isinstance(curves, dict) else None
        if isinstance(curve, list) and curve:
            by_epoch.append((t, list(range(1, len(curve) + 1)), curve))
        elif t.intermediate_values:
            steps = sorted(t.intermediate_values)
            by_step.append((t, steps, [t.intermediate_values[s] for s in steps]))
    if not by_epoch and not by_step:
        return None
    title = (
        f"Learning curves ({metric} by epoch)"
        if by_epoch
        else "Learning curves (intermediate values by step)"
    )

    def figure() -> go.Figure:
        import plotly.graph_objects as go

        fig = go.Figure()
        for state in (TrialState.COMPLETE, TrialState.PRUNED):
            xs: list[Any] = []
            ys: list[Any] = []
            names: list[str] = []
            for t, x, y in by_epoch + by_step:
                if t.state == state:  # one trace per state, trials apart by a gap (None)
                    xs += [*x, None]
                    ys += [*y, None]
                    names += [f"trial {t.number}"] * (len(x) + 1)
            if xs:
                dash = "solid" if state == TrialState.COMPLETE else "dot"
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        text=names,
                        mode="lines",
                        name=state.name.lower(),
                        line={"dash": dash},
                        hovertemplate="%{text}: %{y}<extra></extra>",
                    )
                )
        fig.update_layout(
            xaxis_title="epoch" if by_epoch else "step", yaxis_title=metric if by_epoch else "value"
        )
        return fig

    return title, figure


def render_report(study: optuna.Study, metrics: Sequence[str]) -> str:
    """The report's HTML text (plotly.js included)."""
    from plotly.offline import get_plotlyjs

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    states = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"
    directions = ", ".join(f"{d.name.lower()} {m}" for m, d in zip(metrics, study.directions, strict=False))
    title = "Pareto-optimal trials" if len(study.directions) > 1 else "Best trial"
    parts = [
        f"<h1>Study {html.escape(study.study_name)}</h1>",
        f'<p id="summary">{len(trials)} trials ({html.escape(states)}); '
        f"objectives: {html.escape(directions)}</p>",
        f"<h2>{title}</h2>",
        _best_table(study, metrics),
    ]
    plots = _plots(study, metrics)
    curves = _curves(study, metrics[0])
    if curves is not None:
        plots.insert(1, curves)
    for i, (name, factory) in enumerate(plots):
        parts += [f"<h2>{html.escape(name)}</h2>", _figure_html(factory, f"plot-{i}")]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>hpsearch report: {html.escape(study.study_name)}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        + "\n".join(parts + _space(study))
        + "</body></html>\n"
    )


def _space(study: optuna.Study) -> list[str]:
    """The space hpsearch searched, as its YAML; nothing for a study made without hpsearch."""
    text = space_text(study)
    return [] if text is None else ["<h2>Space</h2>", f'<pre id="space">{html.escape(text)}</pre>']


def write_report(study: optuna.Study, metrics: Sequence[str], path: Path) -> Path:
    """Write :func:`render_report` to ``path`` (written whole, then renamed into place)."""
    text = render_report(study, metrics)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
