"""Multi-objective pruning: Optuna's pruners decide exactly as they would in a single-objective study.

Synthetic learning curves, no Keras: the same curves go through a single-objective study
(Optuna's native report / should_prune) and a two-objective study (hpsearch's reporter); the
prune decisions must be identical, trial by trial and step by step.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

import spaces
import storage
from search.trial.pruning import CURVE_ATTR, MultiObjectiveReporter, NativeReporter, Reporter
from spaces.optuna import make_pruner
from tests.helpers import flow, space_text

STEPS = 8
PRUNERS: list[dict[str, Any]] = [
    {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
    {"type": "percentile", "percentile": 40, "n_startup_trials": 3},
    {"type": "successive_halving", "min_resource": 1, "reduction_factor": 2},
    {"type": "hyperband", "min_resource": 1, "max_resource": 8, "reduction_factor": 2},
    {"type": "threshold", "lower": 0.45, "n_warmup_steps": 2},
    {"type": "median", "n_startup_trials": 3, "patience": 1},
]


def _curves(n: int, seed: int = 0) -> list[list[float]]:
    """Saturating accuracy curves with different ceilings and speeds, plus a little noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ceiling, speed = rng.uniform(0.3, 0.95), rng.uniform(0.2, 1.5)
        steps = np.arange(1, STEPS + 1)
        curve = ceiling * (1 - np.exp(-speed * steps)) + rng.normal(0, 0.01, STEPS)
        out.append([float(v) for v in curve])
    return out


def _pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    text = space_text("p", objectives=["val_accuracy"], pruner=spec)
    return make_pruner(spaces.loads(text, source="test").pruner)


def _run(study: optuna.Study, reporter_for: object, curves: list[list[float]]) -> list[int | None]:
    """Feed each curve to a new trial; return the step each trial was pruned at (None: completed)."""
    decisions: list[int | None] = []
    for curve in curves:
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        reporter: Reporter = reporter_for(trial)  # type: ignore[operator]
        pruned_at = next((step for step, v in enumerate(curve, 1) if reporter.report(v, step)), None)
        decisions.append(pruned_at)
        if pruned_at is not None:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            last = curve[-1]
            study.tell(trial, last if len(study.directions) == 1 else [last, 1.0 - last])
    return decisions


def _single(spec: dict[str, Any], curves: list[list[float]]) -> list[int | None]:
    study = optuna.create_study(study_name="curves", direction="maximize", pruner=_pruner(spec))
    return _run(study, NativeReporter, curves)


def _multi(
    spec: dict[str, Any], curves: list[list[float]], stores: list[optuna.storages.BaseStorage]
) -> list[int | None]:
    """A two-objective study; trial i is run by 'worker' i % len(stores), each with its own storage."""
    pruners = [_pruner(spec) for _ in stores]  # one pruner instance per worker, as in real workers
    studies = [
        optuna.create_study(
            study_name="curves", storage=s, directions=["maximize", "minimize"], load_if_exists=True
        )
        for s in stores
    ]
    decisions: list[int | None] = []
    for i, curve in enumerate(curves):
        w = i % len(stores)
        decisions += _run(
            studies[w],
            lambda t, w=w: MultiObjectiveReporter(t, pruners[w], stores[w], StudyDirection.MAXIMIZE),
            [curve],
        )
    return decisions


@pytest.mark.parametrize("spec", PRUNERS, ids=flow)
def test_multi_objective_decisions_equal_single_objective_decisions(spec: dict[str, Any]) -> None:
    curves = _curves(30)
    expected = _single(spec, curves)
    assert any(d is not None for d in expected) and any(d is None for d in expected)  # a real test
    assert _multi(spec, curves, [optuna.storages.InMemoryStorage()]) == expected


@pytest.mark.parametrize("spec", [PRUNERS[0], PRUNERS[2]], ids=flow)
def test_two_workers_on_one_sqlite_file_decide_from_each_others_curves(
    spec: dict[str, Any], tmp_path: Path
) -> None:
    # two storage objects on one file stand for two worker processes (or a study resumed later):
    # every decision must come from what is in the file, not from one process's memory
    url = f"sqlite:///{tmp_path / 'w.db'}"
    curves = _curves(24, seed=1)
    stores = [storage.open_storage(url, heartbeat_interval=None) for _ in range(2)]
    assert _multi(spec, curves, stores) == _single(spec, curves)


def test_pruned_trial_keeps_its_curve_and_no_intermediate_values() -> None:
    store = optuna.storages.InMemoryStorage()
    _multi(PRUNERS[4], [[0.9] * STEPS, [0.1] * STEPS], [store])
    study = optuna.load_study(study_name="curves", storage=store)
    good, bad = study.trials
    assert (good.state, bad.state) == (TrialState.COMPLETE, TrialState.PRUNED)
    assert bad.user_attrs[CURVE_ATTR] == {"1": 0.1, "2": 0.1}  # n_warmup_steps=2: judged from step 2
    assert bad.intermediate_values == {}  # kept away from the samplers, see search/trial/pruning.py


@pytest.mark.parametrize(
    "sampler",
    [
        optuna.samplers.TPESampler(seed=0, constant_liar=True),
        optuna.samplers.NSGAIISampler(seed=0, population_size=20),
        "nsga3",
        optuna.samplers.RandomSampler(seed=0),
    ],
    ids=["tpe", "nsga2", "nsga3", "random"],
)
def test_multi_objective_samplers_keep_working_with_hundreds_of_pruned_trials(sampler: object) -> None:
    # optuna#5260 family: MO TPE fails on pruned trials that carry intermediate values
    if sampler == "nsga3":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.NSGAIIISampler(seed=0, population_size=20)
    store = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        study_name="curves", storage=store, directions=["maximize", "minimize"], sampler=sampler
    )
    pruner = _pruner(PRUNERS[0])
    rng = np.random.default_rng(0)
    for _ in range(200):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        units = trial.suggest_int("units", 8, 512, log=True)
        reporter = MultiObjectiveReporter(trial, pruner, store, StudyDirection.MAXIMIZE)
        curve = x * (1 - np.exp(-np.arange(1, 5))) + rng.normal(0, 0.01, 4)
        if any(reporter.report(float(v), s) for s, v in enumerate(curve, 1)):
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, [float(curve[-1]), float(units)])
    states = [t.state for t in study.trials]
    assert states.count(TrialState.PRUNED) >= 20  # median pruning of uniform-x curves prunes about half
    assert states.count(TrialState.COMPLETE) >= 20
    assert study.best_trials  # the Pareto front is still computed
