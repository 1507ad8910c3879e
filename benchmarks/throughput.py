"""Epoch time of hpsearch's trial training vs a notebook's plain ``model.fit``, per Keras backend.

For each config (784-128-10 MLP at batch 32, 64, 256; 784-512-512-10 at batch 64; a small CNN
at batch 64), each backend (TensorFlow, JAX, PyTorch: one child process each, since Keras picks
its backend at import) and each of ``--runs`` rounds, the same model (same seed) is trained
``--epochs`` epochs on Fashion-MNIST three times: as the notebooks wrote it
(``model.fit(x, y, batch_size, epochs, validation_data)`` on numpy arrays), with
:func:`search.trial.training.fit` on the tensors :func:`search.trial.training.prepare` put on the
device once per worker (what a trial does), and with that ``fit`` on the numpy arrays (so the
value of preparing the data shows per backend). A run's epoch time is the median of epochs 2..
(epoch 1 includes tracing and compiling); the whole ``fit`` is timed too, so what the compile
costs shows. All include the validation pass. Reported: medians over the runs, the ratios plain /
hpsearch, and achieved training FLOP/s (3 x forward FLOPs per training sample + forward FLOPs
per validation sample) as a fraction of the float32 matmul peak measured in the same run (numpy
in a child process with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, and each backend's own
``keras.ops.matmul``; the larger is the peak).

    python benchmarks/throughput.py [--runs 5] [--epochs 10] [--limit N] [--backends tensorflow,jax,torch]

Writes benchmarks/results/throughput.json (or ``--out``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "throughput.json"
# (name, dense units, batch, conv filters)
CONFIGS: list[tuple[tuple[int, ...], int, tuple[int, ...]]] = [
    ((128,), 32, ()),
    ((128,), 64, ()),
    ((128,), 256, ()),
    ((512, 512), 64, ()),
    ((128,), 64, (32, 64)),
]
VARIANTS = ("plain", "hpsearch", "hpsearch_numpy")
BACKENDS = ("tensorflow", "jax", "torch")

NUMPY_PEAK = """
import json, time, numpy as np
from threadpoolctl import threadpool_info
a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32); b = a.copy()
a @ b
best = 0.0
for _ in range(5):
    t = time.perf_counter(); a @ b; best = max(best, 2 * 2048**3 / (time.perf_counter() - t))
blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
print(json.dumps({"flops": best, "kernel": blas[0].get("architecture") if blas else None}))
"""


def config_name(units: tuple[int, ...], batch: int, filters: tuple[int, ...]) -> str:
    convs = "".join(f"c{f}-" for f in filters)
    return f"{'cnn ' if filters else ''}784-{convs}{'-'.join(map(str, units))}-10 @ {batch}"


def _numpy_peak() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run(
        [sys.executable, "-c", NUMPY_PEAK], env=env, capture_output=True, text=True, check=True
    )
    peak: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return peak


# --- one backend, in its own process ---------------------------------------------------------


def _child(args: argparse.Namespace) -> int:
    """Every config on this process' backend; prints one JSON line."""
    from search.trial import backend as backends

    backends.select(backends.Backend(args.child, "--backends"))  # before Keras is imported
    import keras

    from search.trial.data import load_dataset
    from search.trial.models import count_flops
    from search.trial.training import PreparedData, fit, prepare

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    def model(units: tuple[int, ...], filters: tuple[int, ...]) -> Any:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        inputs = keras.Input((28, 28, 1))
        x = keras.layers.Rescaling(1 / 255)(inputs)
        for f in filters:
            x = keras.layers.Conv2D(f, 3, padding="same", activation="relu")(x)
            x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Flatten()(x)
        for u in units:
            x = keras.layers.Dense(u, activation="relu")(x)
        m = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m

    def backend_peak() -> float:
        a = keras.random.uniform((2048, 2048))
        keras.ops.convert_to_numpy(keras.ops.matmul(a, a))
        best = 0.0
        for _ in range(5):
            t = time.perf_counter()
            keras.ops.convert_to_numpy(keras.ops.matmul(a, a))
            best = max(best, 2 * 2048**3 / (time.perf_counter() - t))
        return best

    data = load_dataset("fashion_mnist", validation_fraction=0.1, limit=args.limit)
    tensors = prepare(data)
    arrays = PreparedData(data.x_train, data.y_train, data.x_val, data.y_val, tensors.device, tensors.backend)
    n_train, n_val = len(data.x_train), len(data.x_val)
    rows: dict[str, dict[str, Any]] = {}
    peaks: list[float] = []
    for run in range(args.runs):
        peaks.append(backend_peak())
        for units, batch, filters in CONFIGS:
            name = config_name(units, batch, filters)
            row = rows.setdefault(name, {f"{v}{s}": [] for v in VARIANTS for s in ("", "_fit")})
            for variant in VARIANTS:
                m, timer = model(units, filters), EpochTimer()
                flops = count_flops(m)
                start = time.perf_counter()
                if variant == "plain":
                    m.fit(
                        data.x_train, data.y_train, batch_size=batch, epochs=args.epochs,
                        validation_data=(data.x_val, data.y_val), callbacks=[timer], verbose=0,
                    )  # fmt: skip
                else:
                    on = tensors if variant == "hpsearch" else arrays
                    used = fit(
                        m, on, batch_size=batch, epochs=args.epochs, callbacks=[timer], flops_per_sample=flops
                    )
                    row["used"] = used
                row[f"{variant}_fit"].append(time.perf_counter() - start)
                row[variant].append(statistics.median(timer.seconds[1:] or timer.seconds))
            row["flops_per_epoch"] = flops * (3 * n_train + n_val)
            print(
                f"{args.child} run {run + 1}: {name}: "
                + ", ".join(f"{v} {row[v][-1]:.3f} s/epoch" for v in VARIANTS),
                file=sys.stderr,
                flush=True,
            )
    out = {"backend": args.child, "device": tensors.device, "n_train": n_train, "n_val": n_val}
    print(json.dumps({**out, "peaks": peaks, "rows": rows}))
    return 0


# --- the parent: every backend side by side --------------------------------------------------


def _run_backend(name: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", name, "--runs", str(args.runs), "--epochs", str(args.epochs)]
    if args.limit:
        argv += ["--limit", str(args.limit)]
    env = {**os.environ, "KERAS_BACKEND": name}
    out = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _table(results: dict[str, dict[str, Any]], numpy_peak: float, epochs: int) -> list[str]:
    names = list(results)
    head = "| model @ batch | " + " | ".join(
        f"{b}: plain / hpsearch s/epoch (x) | {b}: hpsearch on numpy arrays s/epoch | {b}: whole fit "
        f"({epochs} epochs) plain / hpsearch s"
        for b in names
    )
    lines = [head + " |", "|---|" + "---|---|---|" * len(names)]
    first = results[names[0]]["rows"]
    for config in first:
        cells = []
        for b in names:
            row = results[b]["rows"][config]
            p, f, n = (statistics.median(row[v]) for v in VARIANTS)
            pf, ff = statistics.median(row["plain_fit"]), statistics.median(row["hpsearch_fit"])
            cells.append(f"{p:.2f} / {f:.2f} ({p / f:.2f}x) | {n:.2f} | {pf:.1f} / {ff:.1f}")
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    lines.append("")
    for b in names:
        used = {c: r["used"] for c, r in results[b]["rows"].items()}
        peak = max(numpy_peak, statistics.median(results[b]["peaks"]))
        best = max(
            results[b]["rows"].items(),
            key=lambda kv: kv[1]["flops_per_epoch"] / statistics.median(kv[1]["hpsearch"]),
        )
        frac = best[1]["flops_per_epoch"] / statistics.median(best[1]["hpsearch"]) / peak
        spe = ", ".join(
            f"{c}: {u['steps_per_execution']}{' XLA' if u['jit_compile'] else ''}" for c, u in used.items()
        )
        own = statistics.median(results[b]["peaks"]) / 1e9
        lines.append(
            f"- {b} ({results[b]['device']}): matmul peak {own:.0f} GFLOP/s; "
            f"best fraction of peak {frac:.0%} ({best[0]}); steps/exec: {spe}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="a trial's epochs (XLA is chosen for them)")
    parser.add_argument("--limit", type=int, default=None, help="samples loaded (default: all)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated; missing ones skip")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    modules = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    chosen = [b for b in wanted if importlib.util.find_spec(modules[b]) is not None]
    for b in sorted(set(wanted) - set(chosen)):
        print(f"throughput: backend {b} is not installed; skipped", file=sys.stderr)
    numpy_peaks = [_numpy_peak() for _ in range(args.runs)]
    numpy_peak = statistics.median(p["flops"] for p in numpy_peaks)
    results = {b: _run_backend(b, args) for b in chosen}
    table = _table(results, numpy_peak, args.epochs)
    table.append(
        f"- numpy matmul peak (2048x2048, best of 5, median over runs): {numpy_peak / 1e9:.0f} GFLOP/s "
        f"(kernel {numpy_peaks[0]['kernel']})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        b: {
            config: {
                **{v: statistics.median(row[v]) for v in (*VARIANTS, *(f"{v}_fit" for v in VARIANTS))},
                "speedup": statistics.median(
                    p / f for p, f in zip(row["plain"], row["hpsearch"], strict=True)
                ),
                **row["used"],
            }
            for config, row in r["rows"].items()
        }
        for b, r in results.items()
    }
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "numpy_peaks": numpy_peaks,
        "summary": summary,
        "backends": results,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
