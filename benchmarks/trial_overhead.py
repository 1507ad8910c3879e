"""Per-trial overhead outside training: a trial's wall time minus its ``train_seconds``.

Real hpsearch trials (the Objective the worker runs: sample, clear_session / gc / seed, build,
fit, user attrs, tell) of a 784-128-10 MLP on Fashion-MNIST, 10 epochs at batch 256 (the
shortest 10-epoch trial, so the overhead's largest share), with the TPE sampler and the median
pruner reporting every epoch, on a SQLite file and on PostgreSQL. Each run times ``--trials``
trials per backend, backends interleaved; medians over ``--runs`` runs.

    python benchmarks/trial_overhead.py [--runs 5] [--trials 2] [--epochs 10] [--limit N]

Writes benchmarks/results/trial_overhead.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import optuna

import spaces
import storage
from search.data import load_dataset
from search.objective import Objective
from search.study import create_or_load

RESULTS = Path(__file__).parent / "results" / "trial_overhead.json"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"

SPACE = """\
name: overhead
dataset: {{name: fashion_mnist, validation_fraction: 0.1{limit}}}
sampler: {{type: tpe, seed: 0}}
pruner: {{type: median, n_warmup_steps: 100}}
model: {{layers: 1, units: 128, activation: {{type: categorical, choices: [relu, tanh]}}}}
optimizer: {{name: adam, learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}}}
training: {{batch_size: 256, epochs: {epochs}}}
"""


def _trials(url: str, space: spaces.Space, n: int) -> list[tuple[float, float]]:
    """(wall seconds, train_seconds) of ``n`` trials, each timed from ask to the end of tell."""
    study = create_or_load(space, storage.open_storage(url), study_name=f"bench-{uuid.uuid4().hex[:8]}")
    data = load_dataset(
        space.dataset.name, validation_fraction=0.1, limit=space.dataset.limit, seed=space.seed
    )
    objective = Objective(space, data, storage=study._storage, device="CPU")
    out = []
    for _ in range(n):
        study.enqueue_trial({})  # a blank budget slot, as `hpsearch run` queues them
        start = time.perf_counter()
        study.optimize(objective, n_trials=1)
        wall = time.perf_counter() - start
        out.append((wall, float(study.trials[-1].user_attrs["train_seconds"])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--pg", default=PG_SERVER)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    limit = f", limit: {args.limit}" if args.limit else ""
    space = spaces.loads(SPACE.format(limit=limit, epochs=args.epochs), source="trial_overhead.py")
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
            _trials(backends["sqlite"], space, 1)  # warm-up: data, TensorFlow, first traces
            for run in range(args.runs):
                for name, url in backends.items():
                    timed = _trials(url, space, args.trials)
                    row = rows.setdefault(name, {"overhead_s": [], "fraction": [], "wall_s": []})
                    over = statistics.median(w - t for w, t in timed)
                    wall = statistics.median(w for w, _ in timed)
                    row["overhead_s"].append(over)
                    row["wall_s"].append(wall)
                    row["fraction"].append(over / wall)
                    print(
                        f"run {run + 1}: {name}: trial {wall:.2f} s, overhead {over * 1000:.0f} ms",
                        flush=True,
                    )
    finally:
        with psycopg.connect(args.pg + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    summary = {name: {k: statistics.median(v) for k, v in row.items()} for name, row in rows.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "summary": summary, "raw": rows}, indent=2) + "\n")
    print(
        f"| storage | trial wall s ({args.epochs} epochs) | overhead ms (wall - train_seconds) "
        "| share of the trial |"
    )
    print("|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['wall_s']:.2f} | {s['overhead_s'] * 1000:.0f} | {s['fraction']:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
