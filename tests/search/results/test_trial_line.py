"""The progress line of a finished trial: what a user reads while a search runs."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.results.tables import trial_line

CAPPED = "stopped at epoch 9: its 18 epochs to go would take ~900 s, over 25% of the 1800 s timeout"


def _trial(state: TrialState, **attrs: object) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=state,
        value=0.9 if state == TrialState.COMPLETE else None,
        params={"units": 64},
        distributions={"units": optuna.distributions.IntDistribution(8, 128)},
        intermediate_values={9: 0.9},
        user_attrs=attrs,
    )


def test_a_trial_ended_at_its_rung_for_its_cost_says_why() -> None:
    resumed = {"trial": 3, "epoch": 3}
    line = trial_line(
        _trial(TrialState.COMPLETE, capped=CAPPED, resumed_from=resumed), ["val_accuracy"], 5, 10, 12.0
    )
    assert f"val_accuracy=0.9000 (continues #3 from epoch 3) ({CAPPED})  units=64" in line
    paused = _trial(TrialState.PRUNED, capped=CAPPED, prune_reason="paused at epoch 9: not top 1/3")
    line = trial_line(paused, ["val_accuracy"], 5, 10, 12.0)
    assert "PRUNED   paused at epoch 9: not top 1/3  units=64" in line  # its pause, not the cap
