"""Epoch time of hpsearch's trial training vs a notebook's plain ``model.fit``, side by side.

For each config (784-128-10 MLP at batch 32, 64, 256; 784-512-512-10 at batch 64) and each of
``--runs`` rounds, the same model (same seed) is trained ``--epochs`` epochs on Fashion-MNIST
twice: as the notebooks wrote it (``model.fit(x, y, batch_size, epochs, validation_data)`` on
numpy arrays) and with :func:`search.trial.training.fit`, which picks its fast paths (XLA among
them) as it would for a trial of that many epochs. A run's epoch time is the median of epochs
2.. (epoch 1 includes tracing and compiling); the whole ``fit`` is timed too, so what the
compile costs shows. Both include the validation pass. Reported: medians over the runs, the
ratios plain / hpsearch, and achieved training FLOP/s (3 x forward FLOPs per training sample +
forward FLOPs per validation sample) as a fraction of the float32 matmul peak measured in the
same run (numpy in a child process with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, and
TensorFlow's own matmul; the larger is the peak).

    python benchmarks/throughput.py [--runs 5] [--epochs 10] [--limit N]

Writes benchmarks/results/throughput.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras

from search.trial.data import load_dataset
from search.trial.models import count_flops
from search.trial.training import fit, prepare

RESULTS = Path(__file__).parent / "results" / "throughput.json"
CONFIGS: list[tuple[tuple[int, ...], int]] = [((128,), 32), ((128,), 64), ((128,), 256), ((512, 512), 64)]

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


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def _model(units: tuple[int, ...]) -> keras.Model:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    for u in units:
        x = keras.layers.Dense(u, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _peaks() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run(
        [sys.executable, "-c", NUMPY_PEAK], env=env, capture_output=True, text=True, check=True
    )
    numpy_peak = json.loads(out.stdout.strip().splitlines()[-1])
    import tensorflow as tf

    a = tf.random.uniform((2048, 2048))
    tf.matmul(a, a).numpy()
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        tf.matmul(a, a).numpy()
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t))
    return {"numpy": numpy_peak["flops"], "numpy_kernel": numpy_peak["kernel"], "tensorflow": best}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="a trial's epochs (XLA is chosen for them)")
    parser.add_argument("--limit", type=int, default=None, help="training samples (default: all)")
    args = parser.parse_args(argv)
    data = load_dataset("fashion_mnist", validation_fraction=0.1, limit=args.limit)
    tensors = prepare(data)
    n_train, n_val = len(data.x_train), len(data.x_val)
    rows: dict[str, dict[str, list[float]]] = {}
    peaks: list[dict[str, Any]] = []
    for run in range(args.runs):
        peaks.append(_peaks())
        for units, batch in CONFIGS:
            name = f"784-{'-'.join(map(str, units))}-10 @ {batch}"
            row = rows.setdefault(
                name,
                {k: [] for k in ("plain", "hpsearch", "ratio", "plain_fit", "hpsearch_fit", "fit_ratio")},
            )
            plain, timer = _model(units), EpochTimer()
            start = time.perf_counter()
            plain.fit(
                data.x_train, data.y_train, batch_size=batch, epochs=args.epochs,
                validation_data=(data.x_val, data.y_val), callbacks=[timer], verbose=0,
            )  # fmt: skip
            fit_plain = time.perf_counter() - start
            t_plain = statistics.median(timer.seconds[1:])
            fast, timer = _model(units), EpochTimer()
            flops = count_flops(fast)
            start = time.perf_counter()
            used = fit(
                fast, tensors, batch_size=batch, epochs=args.epochs, callbacks=[timer], flops_per_sample=flops
            )
            fit_fast = time.perf_counter() - start
            t_fast = statistics.median(timer.seconds[1:])
            for key, value in (
                ("plain", t_plain), ("hpsearch", t_fast), ("ratio", t_plain / t_fast),
                ("plain_fit", fit_plain), ("hpsearch_fit", fit_fast), ("fit_ratio", fit_plain / fit_fast),
            ):  # fmt: skip
                row[key].append(value)
            row.setdefault("used", [used])
            row.setdefault("flops_per_epoch", [flops * (3 * n_train + n_val)])
            print(
                f"run {run + 1}: {name}: plain {t_plain:.3f} s/epoch {fit_plain:.2f} s fit, "
                f"hpsearch {t_fast:.3f} s/epoch {fit_fast:.2f} s fit ({used})",
                flush=True,
            )
    peak = statistics.median(max(p["numpy"], p["tensorflow"]) for p in peaks)
    table = [
        "| model @ batch | plain s/epoch | hpsearch s/epoch | speed-up per epoch "
        f"| whole fit ({args.epochs} epochs) plain / hpsearch s | speed-up of the fit | steps/exec | XLA "
        "| GFLOP/s plain | GFLOP/s hpsearch | of peak (hpsearch) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {}
    for name, row in rows.items():
        p, f, r, pf, ff, fr = (
            statistics.median(row[k])
            for k in ("plain", "hpsearch", "ratio", "plain_fit", "hpsearch_fit", "fit_ratio")
        )
        work, used = row["flops_per_epoch"][0], row["used"][0]
        summary[name] = {
            "plain_s": p, "hpsearch_s": f, "speedup": r,
            "plain_fit_s": pf, "hpsearch_fit_s": ff, "fit_speedup": fr, **used,
            "gflops_plain": work / p / 1e9, "gflops_hpsearch": work / f / 1e9,
            "peak_fraction": work / f / peak,
        }  # fmt: skip
        s = summary[name]
        table.append(
            f"| {name} | {p:.2f} | {f:.2f} | {r:.2f}x | {pf:.1f} / {ff:.1f} | {fr:.2f}x "
            f"| {used['steps_per_execution']} | {'yes' if used['jit_compile'] else 'no'} "
            f"| {s['gflops_plain']:.1f} | {s['gflops_hpsearch']:.1f} | {s['peak_fraction']:.0%} |"
        )
    med = {k: statistics.median(p[k] for p in peaks) for k in ("numpy", "tensorflow")}
    table.append(
        f"\nfloat32 matmul peak (2048x2048, best of 5, median over runs): numpy {med['numpy'] / 1e9:.0f} "
        f"GFLOP/s (kernel {peaks[0]['numpy_kernel']}), TensorFlow {med['tensorflow'] / 1e9:.0f} GFLOP/s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "args": vars(args),
        "n_train": n_train,
        "n_val": n_val,
        "peaks": peaks,
        "configs": summary,
        "raw": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
