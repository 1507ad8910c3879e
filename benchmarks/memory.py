"""Resident memory of one worker over many consecutive trials (tiny digits trials).

Runs ``--trials`` real hpsearch trials (random MLPs on 300 digits samples, 1 epoch, TPE, an
in-memory study) in this process and records the resident set size after each. Growth is
measured from the end of the warm-up (``--warmup`` trials) to the end.

    python benchmarks/memory.py [--trials 200] [--warmup 20] [--keep-custom-gradients]

``--keep-custom-gradients``: as before the fix, leave TensorFlow's ``tf.custom_gradient``
registry entries (each holding a traced graph) in place between trials
(``storage.compat.release_custom_gradients`` made a no-op), to measure what the fix releases.

Writes benchmarks/results/memory.json (memory-keep.json) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import optuna

import spaces
from search.trial.data import load_dataset
from search.trial.objective import Objective

sys.path.insert(0, str(Path(__file__).parent))
from memory_recycle import SPACE  # the same tiny trials as the worker-process benchmark

RESULTS = Path(__file__).parent / "results" / "memory.json"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--keep-custom-gradients", action="store_true")
    args = parser.parse_args(argv)
    if args.keep_custom_gradients:
        from storage import compat

        compat.release_custom_gradients = lambda: 0  # the objective's call finds this
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = spaces.loads(SPACE, source="memory.py")
    data = load_dataset("digits", validation_fraction=0.2, limit=300, seed=space.seed)
    study = optuna.create_study(directions=list(space.directions))
    objective = Objective(space, data, device="CPU")
    rss: list[float] = []
    start = time.perf_counter()
    for _ in range(args.trials):
        study.optimize(objective, n_trials=1)
        rss.append(rss_mib())
    seconds = time.perf_counter() - start
    base, end = rss[args.warmup - 1], rss[-1]
    result = {
        "args": vars(args),
        "rss_mib": rss,
        "after_warmup_mib": base,
        "end_mib": end,
        "growth": end / base - 1,
        "mib_per_trial_after_warmup": (end - base) / (args.trials - args.warmup),
        "seconds_per_trial": seconds / args.trials,
        "median_train_seconds": statistics.median(t.user_attrs["train_seconds"] for t in study.trials),
    }
    path = RESULTS.with_name("memory-keep.json") if args.keep_custom_gradients else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    head = f"| trials | RSS after {args.warmup} (MiB) | RSS after {args.trials} (MiB) | growth"
    print(f"{head} | MiB per trial | max (MiB) |")
    print("|---|---|---|---|---|---|")
    per, growth = result["mib_per_trial_after_warmup"], result["growth"]
    print(f"| {args.trials} | {base:.0f} | {end:.0f} | {growth:+.1%} | {per:.2f} | {max(rss):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
