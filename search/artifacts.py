"""Per-trial artifacts for optuna-dashboard: learning curves (PNG) and the model summary (text).

Artifacts are files in an Optuna :class:`~optuna.artifacts.FileSystemArtifactStore`; their
metadata is a trial system attr written through the worker's own storage, so the dashboard
lists them on the trial's page as soon as the trial's row is read. Where the files live:

``--artifacts DIR`` > ``$HPSEARCH_ARTIFACTS`` > next to a SQLite / journal file
(``studies.db`` -> ``studies-artifacts/``) > ``./hpsearch-artifacts``.

A worker calls :func:`use` once with its store; the objective calls :func:`record` after
training (a no-op when no store is in use, e.g. in tests that build an ``Objective`` alone).

Example:
    >>> from search.artifacts import default_dir
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
from search.errors import ConfigError

if TYPE_CHECKING:
    import keras

__all__ = ["ENV_VAR", "default_dir", "open_store", "record", "render_curves", "resolve_dir", "summary", "use"]

ENV_VAR = "HPSEARCH_ARTIFACTS"
FALLBACK_DIR = "hpsearch-artifacts"
TEXT_MIMETYPE = "text/plain; charset=utf-8"  # the summary draws its table with box characters

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
    """Upload a trained trial's learning curves (PNG) and model summary (text).

    Called once per trial after ``model.fit``; a trial that failed before training has no
    model and uploads nothing. A failed upload is reported on stderr and does not fail the trial.
    """
    if _store is None or not curves.get("loss"):
        return
    attrs = trial.user_attrs
    facts = {"param_count": int(model.count_params()), "flops": attrs.get("flops")}
    try:
        with tempfile.TemporaryDirectory(prefix="hpsearch-artifacts-") as tmp:
            png = Path(tmp) / f"trial-{trial.number}-curves.png"
            render_curves(curves, png, title=f"trial {trial.number}", facts=facts)
            txt = Path(tmp) / f"trial-{trial.number}-model.txt"
            txt.write_text(summary(model, facts), encoding="utf-8")
            upload_artifact(artifact_store=_store, file_path=str(png), study_or_trial=trial)
            upload_artifact(
                artifact_store=_store, file_path=str(txt), study_or_trial=trial, mimetype=TEXT_MIMETYPE
            )
    except OSError as e:
        print(f"warning: trial {trial.number}: artifacts not saved: {e}", file=sys.stderr, flush=True)


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:g} "


def _facts_line(facts: Mapping[str, Any]) -> str:
    parts = [f"{facts['param_count']:,} parameters"]
    if facts.get("flops") is not None:
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
    """Accuracy and loss by epoch (train and validation) with the overfitting gap, as a PNG."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed
    from matplotlib.ticker import MaxNLocator

    epochs = list(range(1, len(curves["loss"]) + 1))
    fig = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    acc, val_acc = list(curves.get("accuracy", [])), list(curves.get("val_accuracy", []))
    for ax, key, label in ((acc_ax, "accuracy", "accuracy"), (loss_ax, "loss", "loss")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = list(curves.get(prefix + key, []))
            if values:
                ax.plot(epochs[: len(values)], values, style, ms=3, label=f"{prefix.rstrip('_') or 'train'}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    n = min(len(acc), len(val_acc))
    if n:
        gap = [a - v for a, v in zip(acc[:n], val_acc[:n], strict=True)]
        acc_ax.fill_between(epochs[:n], val_acc[:n], acc[:n], alpha=0.15, color="tab:red", label="gap")
        acc_ax.legend(loc="best", fontsize=8)
        last = gap[-1]
        shown = f"{last:+.3f}" if math.isfinite(last) else str(last)
        acc_ax.set_title(f"accuracy (overfitting gap at the end: {shown})", fontsize=9)
    loss_ax.set_title("loss", fontsize=9)
    fig.suptitle(f"{title}: {_facts_line(facts)}", fontsize=10)
    fig.savefig(path, format="png")
    return path
