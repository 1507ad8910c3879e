"""hpsearch against KerasTuner on the KerasTuner tutorial hypermodel, same data, same wall clock.

Three tools search the tutorial's Fashion-MNIST MLP space (units 32..512 step 32, learning rate
in {1e-2, 1e-3, 1e-4}; the very same ``build(hp)`` from spaces/presets/hypermodels/kt_tutorial.py)
for ``--budget`` seconds each, single-process, one after the other for each of ``--seeds`` seeds:

- KerasTuner Hyperband (max_epochs 10, factor 3, as in the tutorial)
- KerasTuner RandomSearch (10 epochs per trial)
- hpsearch with its defaults for this space: the ``kt-tutorial`` preset (TPE sampler, median
  pruner, 10 epochs, SQLite storage), through the real worker loop

All train with batch size 256 on the same 54,000 / 6,000 train / validation split of the
Fashion-MNIST training set (hpsearch's loader, seed 0). A trial counts when it finishes inside
the budget; the running one is stopped at the budget. Recorded per run: best validation accuracy
so far after every finished trial (KerasTuner: its trial score, the best epoch; hpsearch: the
trial's value, the last epoch), time to reach 0.87 and 0.88, trials finished, and the test
accuracy (t10k files, evaluated once) of the best model each tool hands back.

    flock /tmp/hpsearch-bench.lock python benchmarks/vs_kerastuner.py [--budget 200] [--seeds 3]

Writes benchmarks/results/vs_kerastuner.json and vs_kerastuner.png, prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras_tuner as kt
import numpy as np
import optuna
import yaml

import spaces
from search.errors import WorkerStopping
from search.hypermodels import loader as hm
from search.study import open_storage
from search.study.create import create_or_load
from search.study.queue import top_up
from search.trial.data import Dataset, load_dataset
from search.trial.objective import Objective
from search.worker.loop import run

RESULTS = Path(__file__).parent / "results"
TEST_DIR = Path("/usr/share/datasets/fashion-mnist")
TARGETS = (0.87, 0.88)
TOOLS = ("KerasTuner Hyperband", "KerasTuner RandomSearch", "hpsearch (TPE + median pruning)")
BATCH, EPOCHS = 256, 10
QUEUED = 120  # hpsearch's trial budget: more than finish in 200 s here
Events = list[tuple[float, float]]  # (seconds since the tool started, value of a finished trial)


def read_test(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """The t10k images (scaled to [0, 1]) and labels."""

    def idx(name: str, offset: int) -> np.ndarray:
        with gzip.open(directory / f"{name}.gz", "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)

    x = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 28, 28, 1).astype(np.float32) / 255.0
    return x, idx("t10k-labels-idx1-ubyte", 8).astype(np.int32)


def test_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.predict(x, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def tutorial_builder() -> Callable[[Any], Any]:
    space = spaces.load("kt-tutorial")
    assert space.hypermodel is not None  # the preset names one
    return hm.load_builder(space.hypermodel)


class BudgetSpent(kt.errors.FatalError):
    """Raised inside fit at the deadline: KerasTuner re-raises fatal errors and ends the search."""


class Deadline(keras.callbacks.Callback):
    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if time.perf_counter() > self.deadline:
            raise BudgetSpent


def run_kerastuner(kind: str, seed: int, data: Dataset, budget: float, tmp: str) -> dict[str, Any]:
    x_train, x_val = data.x_train / 255.0, data.x_val / 255.0  # the tutorial's own scaling
    events: Events = []
    start = time.perf_counter()

    class Tracking:
        def on_trial_end(self, trial: Any) -> None:
            super().on_trial_end(trial)  # type: ignore[misc]
            if trial.status == "COMPLETED" and trial.score is not None:
                events.append((time.perf_counter() - start, float(trial.score)))

    common = {"objective": "val_accuracy", "seed": seed, "directory": tmp, "overwrite": True}
    tuner: Any
    if kind == "hyperband":
        cls = type("TrackedHyperband", (Tracking, kt.Hyperband), {})
        tuner = cls(
            tutorial_builder(), max_epochs=EPOCHS, factor=3, hyperband_iterations=1000,
            project_name=f"hb{seed}", **common,
        )  # fmt: skip
    else:
        cls = type("TrackedRandomSearch", (Tracking, kt.RandomSearch), {})
        tuner = cls(tutorial_builder(), max_trials=100_000, project_name=f"rs{seed}", **common)
    with contextlib.suppress(BudgetSpent):
        tuner.search(
            x_train, data.y_train, epochs=EPOCHS, batch_size=BATCH, validation_data=(x_val, data.y_val),
            callbacks=[Deadline(start + budget)], verbose=0,
        )  # fmt: skip
    wall = time.perf_counter() - start
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    best = tuner.get_best_models(1)[0] if done else None
    return {"events": events, "trials_finished": len(done), "wall_seconds": wall, "model": best}


def run_hpsearch(seed: int, data: Dataset, budget: float, tmp: str) -> dict[str, Any]:
    preset = Path(str(spaces.load("kt-tutorial").hypermodel.file)).parent.parent  # type: ignore[union-attr]
    doc = yaml.safe_load((preset / "kt-tutorial.yaml").read_text())
    # queue more trials than fit in the budget (queueing is part of the measured time)
    doc.update(name=f"vs-kt-{seed}", seed=seed, budget={"trials": QUEUED})
    doc["sampler"]["seed"] = seed
    space = spaces.loads(yaml.safe_dump(doc), source="benchmark", base_dir=preset)
    assert space.hypermodel is not None and space.hypermodel.file and space.hypermodel.sha256
    # keep a handle on each built model so the best one can be tested (benchmark-only hook)
    built: dict[str, Any] = {}
    builder = hm.load_builder(space.hypermodel)

    def capture(hp: Any) -> Any:
        built["model"] = builder(hp)
        return built["model"]

    hm._BUILDERS[(space.hypermodel.file, space.hypermodel.sha256, space.hypermodel.name)] = capture
    events: Events = []
    best: dict[str, Any] = {"value": -math.inf, "model": None}
    start = time.perf_counter()
    store = open_storage(f"sqlite:///{tmp}/vs-kt-{seed}.db")
    study = create_or_load(space, store)
    top_up(study, QUEUED)
    stop = threading.Event()
    objective = Objective(space, data, stop=stop)

    def tracked(trial: optuna.Trial) -> float | tuple[float, ...]:
        value = objective(trial)
        assert isinstance(value, float)
        events.append((time.perf_counter() - start, value))
        if value > best["value"]:
            best.update(value=value, model=built["model"])
        return value

    timer = threading.Timer(budget - (time.perf_counter() - start), stop.set)
    timer.start()
    with open(os.devnull, "w") as quiet, contextlib.suppress(WorkerStopping):
        run(study, space, tracked, stop=stop, timeout=budget, out=quiet)
    timer.cancel()
    wall = time.perf_counter() - start
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    return {
        "events": events,
        "trials_finished": sum(t.state in (states.COMPLETE, states.PRUNED) for t in trials),
        "trials_pruned": sum(t.state == states.PRUNED for t in trials),
        "wall_seconds": wall,
        "model": best["model"],
    }


def summarize(events: Events, budget: float) -> dict[str, Any]:
    curve: Events = []
    for t, v in sorted(events):
        if t <= budget and (not curve or v > curve[-1][1]):
            curve.append((round(t, 2), round(v, 4)))
    reach = {f"{target:.2f}": next((t for t, v in curve if v >= target), None) for target in TARGETS}
    return {"best_so_far": curve, "time_to": reach, "best_val_accuracy": curve[-1][1] if curve else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--budget", type=float, default=200.0, help="seconds per tool and seed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit", type=int, help="training images (default: all 54,000)")
    parser.add_argument("--tools", default="0,1,2", help="indexes into TOOLS, for development")
    parser.add_argument("--out", default="vs_kerastuner", help="name of the JSON / PNG in results/")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    data = load_dataset("fashion_mnist", validation_fraction=0.1, limit=args.limit, seed=0)
    x_test, y_test = read_test(TEST_DIR)
    runs: dict[str, list[dict[str, Any]]] = {TOOLS[int(i)]: [] for i in args.tools.split(",")}
    for seed in range(args.seeds):
        for tool in [TOOLS[int(i)] for i in args.tools.split(",")]:
            keras.backend.clear_session()
            with tempfile.TemporaryDirectory() as tmp:
                if tool.startswith("hpsearch"):
                    result = run_hpsearch(seed, data, args.budget, tmp)
                else:
                    kind = "hyperband" if "Hyperband" in tool else "random"
                    result = run_kerastuner(kind, seed, data, args.budget, tmp)
                model = result.pop("model")
                result["test_accuracy"] = None if model is None else test_accuracy(model, x_test, y_test)
            result.update(summarize(result.pop("events"), args.budget), seed=seed)
            runs[tool].append(result)
            brief = {k: v for k, v in result.items() if k != "best_so_far"}
            print(f"seed {seed} {tool}: {json.dumps(brief)}", file=sys.stderr, flush=True)
    report(args, runs, len(data.y_train), len(data.y_val))


def _median(values: list[float | None]) -> float | None:
    finite = [math.inf if v is None else v for v in values]
    m = statistics.median(finite)
    return None if math.isinf(m) else m


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], n_train: int, n_val: int) -> None:
    medians = {
        tool: {
            **{f"time_to_{k}": _median([r["time_to"][k] for r in rs]) for k in rs[0]["time_to"]},
            **{
                k: _median([r[k] for r in rs])
                for k in ("best_val_accuracy", "trials_finished", "test_accuracy")
            },
        }
        for tool, rs in runs.items()
    }
    payload = {
        "args": vars(args),
        "train_images": n_train,
        "validation_images": n_val,
        "machine": f"{os.cpu_count()} CPU cores, shared with other processes during the run",
        "versions": {"keras": keras.__version__, "keras_tuner": kt.__version__, "optuna": optuna.__version__},
        "median": medians,
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(runs, args, RESULTS / f"{args.out}.png")

    def sec(v: float | None) -> str:
        return f"> {args.budget:g} s" if v is None else f"{v:.0f} s"

    def acc(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    print(
        f"| tool (median of {args.seeds} seeds, {args.budget:g} s each) | time to 0.87 val acc "
        "| time to 0.88 val acc | best val acc | trials finished | test acc of best model |"
    )
    print("|---|---|---|---|---|---|")
    for tool, m in medians.items():
        print(
            f"| {tool} | {sec(m['time_to_0.87'])} | {sec(m['time_to_0.88'])} | {acc(m['best_val_accuracy'])} "
            f"| {m['trials_finished']:g} | {acc(m['test_accuracy'])} |"
        )


def plot(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for color, (tool, rs) in zip(("tab:blue", "tab:orange", "tab:green"), runs.items(), strict=False):
        for i, r in enumerate(rs):
            curve = r["best_so_far"]
            if not curve:
                continue
            xs = [t for t, _ in curve] + [args.budget]
            ys = [v for _, v in curve] + [curve[-1][1]]
            ax.step(xs, ys, where="post", color=color, alpha=0.8, label=tool if i == 0 else None)
    for target in TARGETS:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0.80, 0.90)
    ax.set_xlim(0, args.budget)
    ax.set_xlabel("wall-clock seconds (2 shared CPU cores)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"KerasTuner tutorial MLP on Fashion-MNIST, {args.seeds} seeds each")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
