"""Per-trial storage overhead of each backend, measured side by side in one run.

A trivial objective (no training) reports 10 intermediate values per trial, so what is timed is
the storage and sampler work hpsearch pays for every trial: ask, params, reports, user attrs,
tell. Each backend runs ``--trials`` trials, ``--repeats`` times; the median is reported.

    python benchmarks/storage_overhead.py [--trials 100] [--repeats 3] [--pg postgresql://...]

Writes benchmarks/results/storage_overhead.json and prints a Markdown table.
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

import storage
from search.study import open_storage

RESULTS = Path(__file__).parent / "results" / "storage_overhead.json"


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_int("units", 8, 512, log=True)
    for step in range(10):
        trial.report(x * x / (step + 1), step)
    trial.set_user_attr("curves", {"val_loss": [x * x] * 10})
    return x * x + y


def _seconds_per_trial(url: str | None, trials: int) -> float:
    store = open_storage(url) if url else optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        storage=store,
        study_name=f"bench-{uuid.uuid4().hex[:8]}",
        sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True),
        pruner=optuna.pruners.MedianPruner(),
    )
    start = time.perf_counter()
    study.optimize(_objective, n_trials=trials)
    return (time.perf_counter() - start) / trials


def _pg_database(server: str) -> tuple[str, str] | None:
    try:
        import psycopg

        name = f"hpsearch_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server + "/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{server}/{name}", name
    except Exception as e:  # the benchmark runs without PostgreSQL too
        print(f"PostgreSQL skipped: {e}")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        backends: dict[str, str | None] = {
            "in-memory": None,
            "journal file": f"journal://{tmp}/bench.log",
            "sqlite file": f"sqlite:///{tmp}/bench.db",
        }
        pg = _pg_database(args.pg)
        if pg:
            backends["postgresql"] = storage.resolve(pg[0], {})
        runs: dict[str, list[float]] = {name: [] for name in backends}
        for _ in range(args.repeats):  # interleaved, so drift hits every backend alike
            for name, url in backends.items():
                runs[name].append(_seconds_per_trial(url, args.trials))
        if pg:
            import psycopg

            with psycopg.connect(args.pg + "/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg[1]}" WITH (FORCE)')

    result = {
        "trials": args.trials,
        "repeats": args.repeats,
        "ms_per_trial_median": {k: round(statistics.median(v) * 1000, 1) for k, v in runs.items()},
        "ms_per_trial_runs": {k: [round(x * 1000, 1) for x in v] for k, v in runs.items()},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    base = result["ms_per_trial_median"]["in-memory"]
    print(f"| storage | ms per trial (median of {args.repeats} x {args.trials} trials) | vs in-memory |")
    print("|---|---|---|")
    for name, ms in result["ms_per_trial_median"].items():
        print(f"| {name} | {ms} | {ms / base:.1f}x |")


if __name__ == "__main__":
    main()
