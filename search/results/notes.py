"""A finished trial's key facts as an optuna-dashboard note (Markdown on the trial's page).

The worker writes the note when the trial has ended, so it can say how it ended: the device,
epochs run, objective values, model size, and why it was pruned or failed -- readable in the
dashboard without opening the worker's log.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from storage import compat

__all__ = ["save_trial_note", "trial_note"]


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def trial_note(trial: FrozenTrial, metrics: Sequence[str]) -> str:
    """The note's Markdown for a finished trial."""
    attrs = trial.user_attrs
    lines = [f"### Trial {trial.number}: {trial.state.name}", ""]
    if trial.state == TrialState.FAIL:
        lines.append(f"- **failed:** {attrs.get('fail_reason', 'no reason recorded; see the worker log')}")
    elif trial.state == TrialState.PRUNED:
        epochs = attrs.get(keys.EPOCHS_RUN)
        reason = attrs.get(keys.PRUNE_REASON) or (f"after {epochs} epochs" if epochs else "by the pruner")
        lines.append(f"- **pruned:** {reason}")
    if trial.values is not None:
        lines.append(
            "- " + ", ".join(f"{m}: **{_num(v)}**" for m, v in zip(metrics, trial.values, strict=False))
        )
    device = attrs.get(keys.DEVICE)
    if device:
        precision = attrs.get(keys.PRECISION)
        lines.append(f"- device: {device}" + (f", {precision}" if precision else ""))
    if keys.EPOCHS_RUN in attrs:
        planned = (attrs.get(keys.PARAMS) or {}).get("epochs")
        lines.append(f"- epochs run: {attrs['epochs_run']}" + (f" of {planned}" if planned else ""))
    if keys.TRAIN_SECONDS in attrs:
        lines.append(f"- training time: {_num(float(attrs['train_seconds']))} s")
    if keys.PARAM_COUNT in attrs:
        size = f"- model: {_num(int(attrs['param_count']))} parameters"
        if attrs.get(keys.FLOPS) is not None:
            size += f", {_num(int(attrs['flops']))} FLOPs per sample (forward)"
        lines.append(size)
    if "accuracy" in attrs and "val_accuracy" in attrs:
        gap = float(attrs["accuracy"]) - float(attrs["val_accuracy"])
        lines.append(f"- overfitting gap (train - validation accuracy): {gap:+.4f}")
    return "\n".join(lines) + "\n"


def save_trial_note(study: optuna.Study, trial: FrozenTrial, metrics: Sequence[str]) -> None:
    """Write :func:`trial_note` as the trial's dashboard note (through the study's storage).

    The note is stored as ``optuna_dashboard.save_note`` stores it (study system attrs: a
    version and the body in chunks), but written directly as version 1: a trial's note is
    written once, when it ends. ``save_note`` reads every note of the study twice to find the
    version and stale chunks: 43-47 ms per trial at 1,000 trials on SQLite here, growing with the study.
    """
    store, study_id = compat.study_storage(study), compat.study_id(study)
    try:
        note = compat.dashboard_note_attrs(compat.trial_id(trial), trial_note(trial, metrics))
        for key, value in note.items():  # the version first, as save_note writes it
            store.set_study_system_attr(study_id, key, value)
    except Exception as e:  # a note is a convenience: it never ends a worker
        print(f"warning: trial {trial.number}: note not saved: {e}", file=sys.stderr, flush=True)
