"""Per-trial overhead outside training: what the worker loop spends per trial besides ``fit``.

Real hpsearch trials through the worker loop (``search.worker.loop.run``: claim a queued trial,
sample, ``clear_session`` / ``gc`` / seed, build, fit, user attrs, learning-curves SVG and model
summary uploaded to an artifact store, tell, dashboard note, progress line) of a 784-128-10 MLP
on Fashion-MNIST, 10 epochs at batch 256 (the shortest 10-epoch trial, so the overhead's largest
share; ``--batch 64`` for a notebook's usual setting), TPE sampler, median pruner reporting every
epoch (the default two objectives, so the multi-objective pruning path), on a SQLite file and on
PostgreSQL. Each run queues ``--trials`` trials per backend and times the loop over them,
backends interleaved: overhead per trial = (loop wall time - sum of ``train_seconds``) / trials. The artifacts
(SVG + summary + upload) and the dashboard note are timed on their own, as parts of it.
Medians over ``--runs`` runs.

``--study-size N`` first adds N finished trials to each study (the attrs, curves and note a real
trial leaves), to see what grows with the study: the sampler reads every trial, the progress
line finds the Pareto front.

    python benchmarks/trial_overhead.py [--runs 5] [--trials 3] [--epochs 10] [--batch 256]
        [--limit N] [--study-size N]

Writes benchmarks/results/trial_overhead[-batchN][-studyN].json (no suffix at batch 256 and
size 0) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

import spaces
import storage
from search.results import artifacts, notes
from search.study import open_storage
from search.study.create import create_or_load, open_study
from search.study.queue import top_up
from search.trial.data import load_dataset
from search.trial.objective import Objective
from search.worker import loop as worker

RESULTS = Path(__file__).parent / "results" / "trial_overhead.json"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"

SPACE = """\
name: overhead
dataset: {{name: fashion_mnist, validation_fraction: 0.1{limit}}}
sampler: {{type: tpe, seed: 0}}
pruner: {{type: median, n_warmup_steps: 100}}
model: {{layers: 1, units: 128, activation: {{type: categorical, choices: [relu, tanh]}}}}
optimizer: {{name: adam, learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}}}
training: {{batch_size: {batch}, epochs: {epochs}}}
"""

SPENT: dict[str, float] = {"artifacts": 0.0, "note": 0.0}


def _timed(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - start

    return wrapper


# time the worker's own calls where it looks them up: the objective calls artifacts.record,
# the worker loop its imported save_trial_note
artifacts.record = _timed("artifacts", artifacts.record)
worker.save_trial_note = _timed("note", notes.save_trial_note)  # type: ignore[attr-defined]


def _prefill(study: optuna.Study, space: spaces.Space, size: int, epochs: int) -> None:
    """``size`` finished trials of SPACE with what a real one records: attrs, curves, note."""
    rng = np.random.default_rng(0)
    distributions = {
        "activation": CategoricalDistribution(["relu", "tanh"]),
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
    }
    for _ in range(size):
        curves = {k: rng.random(epochs).tolist() for k in ("accuracy", "val_accuracy", "loss", "val_loss")}
        params = {
            "activation": str(rng.choice(["relu", "tanh"])),
            "learning_rate": float(10 ** rng.uniform(-4, -2)),
        }
        attrs = {
            "params": params,
            "device": "CPU",
            "precision": "float32",
            "param_count": 101770,
            "flops": 203520,
            **{key: values[-1] for key, values in curves.items()},
            "train_seconds": float(4 + rng.random()),
            "epochs_run": epochs,
            "best_epoch": epochs,
            "curves": curves,
            "pruning_curve": {str(i + 1): v for i, v in enumerate(curves["val_accuracy"])},
            "fast_paths": {"steps_per_execution": 12, "validation_batch_size": 3000, "jit_compile": True},
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                values=[curves["val_accuracy"][-1], attrs["train_seconds"]],
                user_attrs=attrs,
                state=TrialState.COMPLETE,
            )
        )
    for trial in study.get_trials(deepcopy=False):
        notes.save_trial_note(study, trial, space.metrics)


def _loop(
    url: str, space: spaces.Space, n: int, tmp: Path, size: int = 0, epochs: int = 10
) -> dict[str, float]:
    """Runs ``n`` queued trials through the worker loop; per-trial overhead and its parts."""
    store = open_storage(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    create_or_load(space, store, study_name=name)
    study = open_study(space, store, name, worker=0)
    _prefill(study, space, size, epochs)
    top_up(study, size + n)
    data = load_dataset(
        space.dataset.name, validation_fraction=0.1, limit=space.dataset.limit, seed=space.seed
    )
    artifacts.use(artifacts.open_store(tmp / f"artifacts-{name}"))
    objective = Objective(space, data, device="CPU")
    for key in SPENT:
        SPENT[key] = 0.0
    start = time.perf_counter()
    worker.run(study, space, objective, stop=threading.Event(), out=io.StringIO())
    wall = time.perf_counter() - start
    trials = study.get_trials(deepcopy=False)[size:]  # the timed ones, not the prefilled
    train = sum(float(t.user_attrs["train_seconds"]) for t in trials)
    return {
        "trial_s": wall / n,
        "overhead_s": (wall - train) / n,
        "fraction": (wall - train) / wall,
        "artifacts_s": SPENT["artifacts"] / n,
        "note_s": SPENT["note"] / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--study-size", type=int, default=0, help="finished trials already in each study")
    parser.add_argument("--pg", default=PG_SERVER)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    limit = f", limit: {args.limit}" if args.limit else ""
    space = spaces.loads(
        SPACE.format(limit=limit, epochs=args.epochs, batch=args.batch), source="trial_overhead.py"
    )
    import psycopg

    db = f"hpsearch_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    rows: dict[str, dict[str, list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            backends = {
                "sqlite": f"sqlite:///{tmp}/bench.db",
                "postgresql": storage.resolve(f"{args.pg}/{db}", {}),
            }
            _loop(backends["sqlite"], space, 1, Path(tmp))  # warm-up: data, TensorFlow, first traces
            for run in range(args.runs):
                for name, url in backends.items():
                    got = _loop(url, space, args.trials, Path(tmp), args.study_size, args.epochs)
                    row = rows.setdefault(name, {key: [] for key in got})
                    for key, value in got.items():
                        row[key].append(value)
                    print(
                        f"run {run + 1}: {name}: trial {got['trial_s']:.2f} s, overhead "
                        f"{got['overhead_s'] * 1000:.0f} ms (artifacts {got['artifacts_s'] * 1000:.0f} ms, "
                        f"note {got['note_s'] * 1000:.0f} ms)",
                        flush=True,
                    )
    finally:
        with psycopg.connect(args.pg + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    summary = {name: {k: statistics.median(v) for k, v in row.items()} for name, row in rows.items()}
    suffix = (f"-batch{args.batch}" if args.batch != 256 else "") + (
        f"-study{args.study_size}" if args.study_size else ""
    )
    out = RESULTS.with_stem(RESULTS.stem + suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "summary": summary, "raw": rows}, indent=2) + "\n")
    print(
        f"| storage | trial wall s ({args.epochs} epochs, batch {args.batch}, "
        f"{args.study_size} trials before) "
        "| overhead ms per trial (wall - train_seconds) | of which artifacts ms | of which note ms "
        "| share of the trial |"
    )
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['trial_s']:.2f} | {s['overhead_s'] * 1000:.0f} | {s['artifacts_s'] * 1000:.0f} "
            f"| {s['note_s'] * 1000:.0f} | {s['fraction']:.1%} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
