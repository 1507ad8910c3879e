"""Multi-objective pruning on Fashion-MNIST: the same two-objective search with and without it.

Both variants get the same wall-clock budget per run (``--budget`` seconds; the trial running
when it expires finishes), for each of ``--seeds`` sampler seeds, interleaved in one process so
machine drift hits both alike. Reported per variant, median over seeds: trials finished, epochs
trained, and the hypervolume of the Pareto front of (val_accuracy max, train_seconds min) with
reference point (val_accuracy=0, train_seconds=``--ref-seconds``).

    python benchmarks/mo_pruning.py [--budget 90] [--seeds 3] [--limit 12000]

Needs Fashion-MNIST (Debian's dataset-fashion-mnist, or --data-dir). Writes
benchmarks/results/mo_pruning.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume  # private, but it is Optuna's own

import spaces
from search.study import open_storage
from search.study.create import create_or_load
from search.study.queue import top_up
from search.trial.data import load_dataset
from search.trial.objective import Objective
from search.worker.loop import run

RESULTS = Path(__file__).parent / "results" / "mo_pruning.json"
SPACE = """\
name: bench-{variant}-{seed}
dataset: {{name: fashion_mnist, validation_fraction: 0.1, limit: {limit}}}
sampler: {{type: tpe, seed: {seed}}}
pruner: {pruner}
budget: {{trials: 1000}}
model:
  family: mlp
  layers: {{type: int, low: 1, high: 3}}
  units: {{type: int, low: 16, high: 512, log: true}}
  activation: [relu, tanh, sigmoid]
  dropout: {{type: float, low: 0.0, high: 0.4}}
optimizer:
  name: [adam, sgd, rmsprop]
  learning_rate: {{type: float, low: 1.0e-5, high: 1.0e-1, log: true}}
training: {{batch_size: [64, 128, 256], epochs: 8}}
"""
PRUNERS = {
    "no pruning": "{type: none}",
    "median pruning": "{type: median, n_startup_trials: 4, n_warmup_steps: 1}",
}


def hypervolume(study: optuna.Study, ref_seconds: float) -> float:
    points = np.array([[-t.values[0], t.values[1]] for t in study.best_trials if t.values[1] < ref_seconds])
    if len(points) == 0:
        return 0.0
    return float(compute_hypervolume(points, np.array([0.0, ref_seconds])))


def one_run(variant: str, seed: int, args: argparse.Namespace, tmp: str) -> dict[str, float]:
    text = SPACE.format(variant=variant.split()[0], seed=seed, limit=args.limit, pruner=PRUNERS[variant])
    space = spaces.loads(text, source="benchmark")
    data = load_dataset("fashion_mnist", data_dir=args.data_dir, validation_fraction=0.1, limit=args.limit)
    store = open_storage(f"sqlite:///{tmp}/{space.name}.db")
    study = create_or_load(space, store)
    top_up(study, 1000)  # the budget is a queue: more trials than the time allows
    start = time.perf_counter()
    objective = Objective(space, data)
    with open(os.devnull, "w") as quiet:
        run(study, space, objective, stop=threading.Event(), timeout=args.budget, out=quiet)
    wall = time.perf_counter() - start
    trials = study.get_trials(deepcopy=False)
    return {
        "wall_seconds": round(wall, 1),
        "trials_finished": sum(t.state.is_finished() for t in trials),
        "trials_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "epochs": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
        "hypervolume": round(hypervolume(study, args.ref_seconds), 4),
        "best_val_accuracy": round(max((t.values[0] for t in study.best_trials), default=0.0), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=12000, help="training images (of 54,000)")
    parser.add_argument("--ref-seconds", type=float, default=30.0)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in PRUNERS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for variant in PRUNERS:
                result = one_run(variant, seed, args, tmp)
                runs[variant].append(result)
                print(f"seed {seed} {variant}: {result}", file=sys.stderr, flush=True)
    keys = ("trials_finished", "trials_pruned", "epochs", "hypervolume", "best_val_accuracy", "wall_seconds")
    medians = {v: {k: statistics.median(r[k] for r in rs) for k in keys} for v, rs in runs.items()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "median": medians, "runs": runs}, indent=2) + "\n")
    print(
        f"| variant (median of {args.seeds} seeds, {args.budget:g} s each) | trials | pruned | epochs "
        f"| hypervolume (ref acc 0, {args.ref_seconds:g} s) | best val_accuracy |"
    )
    print("|---|---|---|---|---|---|")
    for variant, m in medians.items():
        print(
            f"| {variant} | {m['trials_finished']:g} | {m['trials_pruned']:g} | {m['epochs']:g} "
            f"| {m['hypervolume']:.4f} | {m['best_val_accuracy']:.4f} |"
        )


if __name__ == "__main__":
    main()
