"""Per-trial artifacts for optuna-dashboard: learning curves (SVG) and the model summary (text).

Artifacts are files in an Optuna :class:`~optuna.artifacts.FileSystemArtifactStore`; their
metadata is a trial system attr written through the worker's own storage, so the dashboard
lists them on the trial's page as soon as the trial's row is read. Where the files live:

``--artifacts DIR`` > ``$HPSEARCH_ARTIFACTS`` > next to a SQLite / journal file
(``studies.db`` -> ``studies-artifacts/``) > ``./hpsearch-artifacts``.

A worker calls :func:`use` once with its store; the objective calls :func:`record` after
training (a no-op when no store is in use, e.g. in tests that build an ``Objective`` alone).

Example:
    >>> from search.results.artifacts import default_dir
    >>> str(default_dir("sqlite:///runs/studies.db", environ={}))
    'runs/studies-artifacts'
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

import storage
from search import keys
from search.errors import ConfigError

if TYPE_CHECKING:
    import keras

__all__ = ["ENV_VAR", "default_dir", "open_store", "record", "render_curves", "resolve_dir", "summary", "use"]

ENV_VAR = "HPSEARCH_ARTIFACTS"
FALLBACK_DIR = "hpsearch-artifacts"
TEXT_MIMETYPE = "text/plain; charset=utf-8"  # the summary draws its table with box characters
SVG_MIMETYPE = "image/svg+xml"  # the dashboard shows image/* artifacts inline

_store: FileSystemArtifactStore | None = None


def default_dir(url: str, environ: Mapping[str, str] | None = None) -> Path:
    """Where a storage's artifacts live unless ``--artifacts`` says otherwise."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR])
    kind = storage.backend(url)
    path: Path | None = None
    if kind == "sqlite":
        path = storage.sqlite_path(url)
    elif kind == "journal":
        path = Path(url.split("://", 1)[1])
    if path is None:  # PostgreSQL, gRPC, in-memory SQLite: no file to sit next to
        return Path(FALLBACK_DIR)
    return path.parent / f"{path.stem}-artifacts"


def resolve_dir(cli_dir: str | None, url: str, environ: Mapping[str, str] | None = None) -> Path:
    """``--artifacts`` if given, else :func:`default_dir`."""
    return Path(cli_dir) if cli_dir else default_dir(url, environ)


def open_store(directory: Path) -> FileSystemArtifactStore:
    """The artifact store in ``directory``, created if missing.

    Raises:
        ConfigError: the directory cannot be created or written.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"artifacts directory {directory}: cannot create: {e.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"artifacts directory {directory}: not writable (set --artifacts or ${ENV_VAR})")
    return FileSystemArtifactStore(str(directory))


def use(store: FileSystemArtifactStore | None) -> None:
    """Make :func:`record` upload to ``store`` in this process (None: upload nothing)."""
    global _store
    _store = store


def record(trial: optuna.Trial, model: keras.Model, curves: Mapping[str, Sequence[float]]) -> None:
    """Upload a trained trial's learning curves (SVG) and model summary (text).

    Called once per trial after ``model.fit``; a trial that failed before training has no
    model and uploads nothing. A failed upload is reported on stderr and does not fail the trial.
    """
    if _store is None or not curves.get("loss"):
        return
    attrs = trial.user_attrs
    facts = {keys.PARAM_COUNT: int(model.count_params()), keys.FLOPS: attrs.get(keys.FLOPS)}
    try:
        with tempfile.TemporaryDirectory(prefix="hpsearch-artifacts-") as tmp:
            svg = Path(tmp) / f"trial-{trial.number}-curves.svg"
            render_curves(curves, svg, title=f"trial {trial.number}", facts=facts)
            txt = Path(tmp) / f"trial-{trial.number}-model.txt"
            txt.write_text(summary(model, facts), encoding="utf-8")
            upload_artifact(
                artifact_store=_store, file_path=str(svg), study_or_trial=trial, mimetype=SVG_MIMETYPE
            )
            upload_artifact(
                artifact_store=_store, file_path=str(txt), study_or_trial=trial, mimetype=TEXT_MIMETYPE
            )
    except (OSError, ImportError) as e:  # a full disk; a minimal install without matplotlib
        print(f"warning: trial {trial.number}: artifacts not saved: {e}", file=sys.stderr, flush=True)


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:g} "


def _facts_line(facts: Mapping[str, Any]) -> str:
    parts = [f"{facts['param_count']:,} parameters"]
    if facts.get(keys.FLOPS) is not None:
        parts.append(f"{_si(float(facts['flops']))}FLOPs per sample (forward)")
    return ", ".join(parts)


def summary(model: keras.Model, facts: Mapping[str, Any]) -> str:
    """Keras' model summary followed by the parameter count and FLOPs."""
    lines: list[str] = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    return "\n".join([*lines, "", _facts_line(facts), ""])


def render_curves(
    curves: Mapping[str, Sequence[float]], path: Path, *, title: str, facts: Mapping[str, Any]
) -> Path:
    """Accuracy and loss by epoch (train and validation) with the overfitting gap, as an SVG."""
    global _figure
    if _figure is None:
        _figure = _CurvesFigure()
    return _figure.draw(curves, path, title=f"{title}: {_facts_line(facts)}")


class _CurvesFigure:
    """The learning-curves figure, built once per process and redrawn for every trial.

    Building a matplotlib figure (axes, ticks, legends, a layout pass) cost ~90 of the ~120 ms
    a fresh PNG took here, paid once per trial. Redrawing a built one with new data takes
    ~80 ms as a PNG and ~38 ms as this SVG (side by side, median of 22). Only the worker's main
    thread draws (``record`` runs in the objective).
    """

    def __init__(self) -> None:
        from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed
        from matplotlib.patches import Patch
        from matplotlib.ticker import MaxNLocator

        self.fig = Figure(figsize=(9, 3.6), dpi=100)
        self.fig.subplots_adjust(left=0.09, right=0.985, bottom=0.14, top=0.83, wspace=0.24)
        self.acc_ax, self.loss_ax = self.fig.subplots(1, 2)
        self.lines: dict[str, Any] = {}
        for ax, key in ((self.acc_ax, "accuracy"), (self.loss_ax, "loss")):
            for prefix, style, label in (("", "-o", "train"), ("val_", "--s", "val")):
                (self.lines[prefix + key],) = ax.plot([], [], style, ms=3, label=label)
            ax.set_xlabel("epoch")
            # few ticks, titles at a fixed height: every text drawn or measured costs a redraw time
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True, min_n_ticks=1))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.title.set_y(1.01)
            ax._autotitlepos = False  # no search for overlapping tick labels on every draw
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
        gap = Patch(color="tab:red", alpha=0.15, label="gap")
        # one legend: both panels draw train and val in the same styles
        self.acc_ax.legend(
            handles=[self.lines["accuracy"], self.lines["val_accuracy"], gap], loc="best", fontsize=8
        )
        self.loss_ax.set_title("loss", fontsize=9)
        self.title = self.fig.suptitle("", fontsize=10)
        self.gap: Any = None

    def draw(self, curves: Mapping[str, Sequence[float]], path: Path, *, title: str) -> Path:
        epochs = 1
        for key, line in self.lines.items():
            values = [float(v) for v in curves.get(key, [])]
            line.set_data(range(1, len(values) + 1), values)
            epochs = max(epochs, len(values))
        if self.gap is not None:
            self.gap.remove()
            self.gap = None
        acc, val_acc = list(curves.get("accuracy", [])), list(curves.get("val_accuracy", []))
        n = min(len(acc), len(val_acc))
        heading = "accuracy"
        if n:
            self.gap = self.acc_ax.fill_between(
                range(1, n + 1), val_acc[:n], acc[:n], alpha=0.15, color="tab:red"
            )
            last = acc[n - 1] - val_acc[n - 1]
            heading = (
                f"accuracy (overfitting gap at the end: {f'{last:+.3f}' if math.isfinite(last) else last})"
            )
        self.acc_ax.set_title(heading, fontsize=9)
        for ax in (self.acc_ax, self.loss_ax):
            ax.set_xlim(0.5, epochs + 0.5)  # whole epochs, also for a single one
            ax.relim()
            ax.autoscale_view(scalex=False)
        self.title.set_text(title)
        import matplotlib

        # SVG with its text as text: half the time of a PNG (no glyph rasterizing, no zlib),
        # half the size, and sharp at any zoom in the dashboard
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "hpsearch"}):
            self.fig.savefig(path, format="svg", metadata={"Date": None})
        return path


_figure: _CurvesFigure | None = None
