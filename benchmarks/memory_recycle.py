"""Resident memory of a real ``hpsearch worker`` process over many trials, with and without recycling.

Creates an SQLite study of ``--trials`` tiny digits trials (the space of benchmarks/memory.py),
starts ``python -m search worker`` on it and samples that PID's resident memory
(``/proc/PID/status`` VmRSS) every 0.2 s and after each finished trial, once per
``--max-memory-growth`` value (default: 0 = never restart, and 10 = the default). The PID stays
the same across restarts (the worker re-executes itself), so one PID covers the whole run.

    python benchmarks/memory_recycle.py [--trials 200] [--warmup 3] [--growth 0 10]

Writes benchmarks/results/memory_recycle.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna

import spaces
from search.study import open_storage
from search.study.create import create_or_load
from search.study.queue import top_up

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "memory_recycle.json"
SPACE = """\
name: memory
dataset: {name: digits, validation_fraction: 0.2, limit: 300}
model:
  layers: {type: int, low: 1, high: 3}
  units: {type: int, low: 8, high: 256, log: true}
  activation: {type: categorical, choices: [relu, tanh]}
  dropout: {type: float, low: 0.0, high: 0.3}
optimizer: {name: {type: categorical, choices: [adam, sgd, rmsprop]}}
training: {batch_size: {type: categorical, choices: [16, 32, 64]}, epochs: 1}
"""
TRIAL_DONE = re.compile(r"\] trial \d+ ")


def vm_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None  # exited, or between exec steps


def one_run(growth: float, trials: int, warmup: int, workdir: Path) -> dict[str, object]:
    url = f"sqlite:///{workdir / f'memory-{growth:g}.db'}"
    study = create_or_load(spaces.loads(SPACE, source="memory_recycle.py"), open_storage(url))
    top_up(study, trials)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "search", "worker", "--study", "memory", "--storage", url]
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "--max-memory-growth", f"{growth:g}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    after_trial: list[float] = []
    events: list[tuple[float, str]] = []  # (seconds, "trial" | "restart")
    samples: list[tuple[float, float]] = []  # (seconds, MiB)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            now = time.perf_counter() - start
            if TRIAL_DONE.search(line):
                events.append((now, "trial"))
                rss = vm_rss_mib(proc.pid)
                if rss is not None:
                    after_trial.append(rss)
            elif "restart" in line and line.startswith("worker:"):
                events.append((now, "restart"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        rss = vm_rss_mib(proc.pid)
        if rss is not None:
            samples.append((time.perf_counter() - start, rss))
        time.sleep(0.2)
    reader.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"worker exited {proc.returncode}:\n{''.join(lines[-20:])}")
    done = [t for t, kind in events if kind == "trial"]
    restarts = [t for t, kind in events if kind == "restart"]
    base = after_trial[warmup - 1]
    peak_sampled = max(m for t, m in samples if t >= done[warmup - 1])
    # a restart's cost: from its line to the next finished trial, less a median trial-to-trial gap
    gaps = [b - a for a, b in itertools.pairwise(done)]
    after_restart = [min(t for t in done if t > r) - r for r in restarts if any(t > r for t in done)]
    n_complete = sum(
        1 for t in optuna.load_study(study_name="memory", storage=url).trials if t.state.name == "COMPLETE"
    )
    return {
        "max_memory_growth": growth,
        "trials_complete": n_complete,
        "after_warmup_mib": base,
        "final_mib": after_trial[-1],
        "max_after_trial_mib": max(after_trial[warmup - 1 :]),
        "peak_sampled_mib": peak_sampled,
        "growth_after_trial": max(after_trial[warmup - 1 :]) / base - 1,
        "growth_final": after_trial[-1] / base - 1,
        "restarts": len(restarts),
        "seconds": seconds,
        "median_trial_gap_s": statistics.median(gaps),
        "median_restart_gap_s": statistics.median(after_restart) if after_restart else None,
        "rss_after_trial_mib": after_trial,
        "restart_lines": [line.strip() for line in lines if line.startswith("worker:") and "restart" in line],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=3, help="RSS after this trial is the baseline")
    parser.add_argument("--growth", type=float, nargs="+", default=[0.0, 10.0])
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(g, args.trials, args.warmup, Path(tmp)) for g in args.growth]
    off = next((r for r in runs if r["max_memory_growth"] == 0), None)
    result = {
        "args": vars(args),
        "runs": runs,
        "note": "one run each, side by side; other processes shared the 2 cores",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"| --max-memory-growth | trials | RSS after {args.warmup} (MiB) | max after a trial (MiB) | growth "
        "| final (MiB) | peak 0.2 s (MiB) | restarts | wall (s) | vs off | s per restart |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        ratio = "" if off is None else f"{r['seconds'] / off['seconds']:.2f}x"  # type: ignore[operator]
        gap = r["median_restart_gap_s"]
        per = "" if gap is None else f"{gap - r['median_trial_gap_s']:.1f}"  # type: ignore[operator]
        print(
            f"| {r['max_memory_growth']:g} | {r['trials_complete']} | {r['after_warmup_mib']:.0f} | "
            f"{r['max_after_trial_mib']:.0f} | {r['growth_after_trial']:+.1%} | {r['final_mib']:.0f} | "
            f"{r['peak_sampled_mib']:.0f} | {r['restarts']} | {r['seconds']:.0f} | {ratio} | {per} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
