"""Storage overhead with many workers: SQLite, journal and PostgreSQL with 1, 4 and 16 workers.

Each worker is a separate process running hpsearch's worker loop (queue claims, heartbeats on
RDB storages, retries) on a trivial objective -- no training -- so what is measured is the
storage work per trial. Reported: trials per second for the whole study, storage milliseconds per
trial per worker (wall time x workers / trials), and for PostgreSQL the peak number of
connections to the study's database.

    python benchmarks/workers.py [--trials 240] [--repeats 3] [--workers 1 4 16]

Writes benchmarks/results/workers.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import statistics
import tempfile
import threading
import uuid
from pathlib import Path

import optuna

import spaces
import storage
from search.study import open_storage
from search.study.create import create_or_load, open_study
from search.study.queue import QueueEmpty, top_up

RESULTS = Path(__file__).parent / "results" / "workers.json"
SPACE = """\
name: bench
dataset: digits
model: {layers: {type: int, low: 1, high: 4}, units: {type: int, low: 8, high: 512}}
"""
PG = "postgresql://postgres@127.0.0.1:5432"


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    layers = trial.suggest_int("layers", 1, 4)
    units = [trial.suggest_int(f"units_{i}", 8, 512) for i in range(layers)]
    trial.set_user_attr("curves", {"val_loss": [1.0] * 10})
    return sum(units) / 2048, float(layers)


def _worker(url: str, index: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    heartbeat = 10 if storage.backend(url) != "journal" else None
    store = open_storage(url, heartbeat_interval=heartbeat)
    study = open_study(spaces.loads(SPACE), store, "bench", worker=index)
    with contextlib.suppress(QueueEmpty):
        study.optimize(_objective, gc_after_trial=False)


def _peak_connections(database: str, stop: threading.Event, peak: list[int]) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchone()
            peak[0] = max(peak[0], int(row[0]) if row else 0)
            stop.wait(0.05)


def one_run(kind: str, workers: int, trials: int, tmp: str) -> dict[str, float]:
    database = f"hpsearch_bench_{uuid.uuid4().hex[:8]}"
    if kind == "postgresql":
        import psycopg

        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        url = storage.resolve(f"{PG}/{database}", {})
    elif kind == "sqlite":
        url = f"sqlite:///{tmp}/{database}.db"
    else:
        url = f"journal://{tmp}/{database}.log"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    store = storage.open_storage(url, heartbeat_interval=None)
    top_up(create_or_load(spaces.loads(SPACE), store), trials)
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_peak_connections, args=(database, stop, peak), daemon=True)
    if kind == "postgresql":
        watcher.start()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(url, i)) for i in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    stop.set()
    trials_done = [
        t for t in optuna.load_study(study_name="bench", storage=store).trials if t.state.is_finished()
    ]
    done = len(trials_done)
    # from the first trial's start to the last one's end: process start-up is not storage work
    ends = [t.datetime_complete for t in trials_done if t.datetime_complete is not None]
    starts = [t.datetime_start for t in trials_done if t.datetime_start is not None]
    wall = (max(ends) - min(starts)).total_seconds()
    if kind == "postgresql":
        watcher.join()
        import psycopg

        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return {
        "trials": done,
        "wall_s": round(wall, 2),
        "trials_per_s": round(done / wall, 1),
        "ms_per_trial_per_worker": round(1000 * wall * workers / done, 1),
        "peak_connections": peak[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "journal", "postgresql"])
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):  # interleaved so drift hits every configuration alike
            for kind in args.backends:
                for n in args.workers:
                    runs.setdefault(f"{kind} x{n}", []).append(one_run(kind, n, args.trials, tmp))
                    print(f"{kind} x{n}: {runs[f'{kind} x{n}'][-1]}", flush=True)
    keys = ("trials_per_s", "ms_per_trial_per_worker", "peak_connections", "wall_s")
    medians = {k: {m: statistics.median(r[m] for r in rs) for m in keys} for k, rs in runs.items()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "median": medians, "runs": runs}, indent=2) + "\n")
    print(
        f"| storage x workers (median of {args.repeats}, {args.trials} trials) | trials/s | "
        "ms per trial per worker | peak PostgreSQL connections |"
    )
    print("|---|---|---|---|")
    for name, m in medians.items():
        conns = f"{m['peak_connections']:g}" if name.startswith("postgresql") else "-"
        print(f"| {name} | {m['trials_per_s']:g} | {m['ms_per_trial_per_worker']:g} | {conns} |")


if __name__ == "__main__":
    main()
