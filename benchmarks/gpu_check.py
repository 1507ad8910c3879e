"""The measuring half of benchmarks/gpu_check.sh (which sets up the machine and runs the steps).

    python benchmarks/gpu_check.py epoch --out FILE [--epochs 6] [--limit N]   # under KERAS_BACKEND
    python benchmarks/gpu_check.py spaces OUTDIR [--gpu]          # the short study and the OOM study
    python benchmarks/gpu_check.py summarize OUTDIR               # results.json + summary.txt

``epoch``: a 784-512-10 MLP at batch 1024 on Fashion-MNIST with the data resident on the device
(:func:`search.trial.training.prepare`), trained by hpsearch's ``fit`` in float32 and in
mixed_float16; epoch time (median of epochs 2..), validation accuracy and the device's peak memory.
``summarize`` reads what the steps left in OUTDIR: trials per minute per K, each worker's peak
GPU memory against 1/K of the card (from nvidia-smi's samples), the OOM study, the devices.
Only Keras, numpy, optuna and hpsearch are needed; nothing imports TensorFlow.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

MLP_UNITS = 512
BATCH = 1024
GOAL_EPOCH_S = 0.2
GOAL_SPEEDUP = 3.0

SHORT_SPACE = """\
name: gpu-fashion-mlp
description: a short fashion-mlp study for trials per minute (benchmarks/gpu_check.sh)
dataset: {{name: fashion_mnist, validation_fraction: 0.1{limit}}}
sampler: {{type: random, seed: 1}}
budget: {{trials: 400}}
model:
  family: mlp
  layers: {{type: int, low: 1, high: 2}}
  units: {{type: int, low: 64, high: 512, log: true}}
  activation: [relu, tanh]
optimizer:
  name: adam
  learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
training: {{batch_size: [512, 1024], epochs: {epochs}}}
"""
# units_0 x units_1 over {{64, HUGE}}: three configurations fit in a 1/4 share of the card, one
# (HUGE x HUGE: 4.3 G parameters, 17 GB of weights + 34 GB of Adam state on a GPU) cannot
OOM_SPACE = """\
name: gpu-oom
description: one configuration too big for a 1/4 share of the GPU (benchmarks/gpu_check.sh)
dataset: {{name: fashion_mnist, validation_fraction: 0.1{limit}}}
sampler: {{type: grid}}
budget: {{trials: 4}}
model: {{family: mlp, layers: 2, units: [64, {huge}]}}
optimizer: {{name: adam}}
training: {{batch_size: 1024, epochs: 1}}
"""


def _epoch(args: argparse.Namespace) -> int:
    from search.trial import backend as backends

    chosen = backends.resolve(None, None)
    backends.select(chosen)  # before Keras: as a worker does
    import keras

    from search.trial.data import load_dataset
    from search.trial.models import count_flops
    from search.trial.training import fit, prepare

    result: dict[str, Any] = {
        "backend": chosen.name,
        "units": MLP_UNITS,
        "batch": BATCH,
        "epochs": args.epochs,
    }
    start = time.perf_counter()
    data = load_dataset("fashion_mnist", validation_fraction=0.1, limit=args.limit)
    tensors = prepare(data)
    result["device"] = tensors.device
    result["load_and_prepare_s"] = time.perf_counter() - start
    result["n_train"] = len(data.x_train)

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.seconds.append(time.perf_counter() - self._t)
            self.val_accuracy = float((logs or {}).get("val_accuracy", float("nan")))

    for policy in ("float32", "mixed_float16"):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        keras.mixed_precision.set_global_policy(policy)
        inputs = keras.Input((28, 28, 1))
        x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
        x = keras.layers.Dense(MLP_UNITS, activation="relu")(x)
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", dtype="float32")(x))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        timer = Timer()
        t = time.perf_counter()
        used = fit(
            model,
            tensors,
            batch_size=BATCH,
            epochs=args.epochs,
            callbacks=[timer],
            flops_per_sample=count_flops(model),
        )
        result[policy] = {
            "epoch_s": statistics.median(timer.seconds[1:] or timer.seconds),
            "first_epoch_s": timer.seconds[0],
            "fit_s": time.perf_counter() - t,
            "val_accuracy": timer.val_accuracy,
            "fast_paths": used,
        }
    keras.mixed_precision.set_global_policy("float32")
    result["peak_memory_mib"] = _peak_memory(chosen.name)
    result["goal_epoch_s"] = GOAL_EPOCH_S
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


def _peak_memory(name: str) -> float | None:
    """The backend's own count of its peak device memory, in MiB (None on a CPU)."""
    if name == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    if name == "jax":
        import jax

        dev = jax.devices()[0]
        stats = dev.memory_stats() if dev.platform == "gpu" else None
        return stats.get("peak_bytes_in_use", 0) / 2**20 if stats else None
    return None


def _spaces(args: argparse.Namespace) -> int:
    out = Path(args.outdir)
    limit = "" if args.gpu else ", limit: 3000"  # the CPU rehearsal: small data, same flow
    (out / "short.yaml").write_text(SHORT_SPACE.format(limit=limit, epochs=3 if args.gpu else 1))
    (out / "oom.yaml").write_text(OOM_SPACE.format(limit=limit, huge=65536 if args.gpu else 128))
    return 0


# --- summarize -------------------------------------------------------------------------------


def _study(db: Path, name: str) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    out: dict[str, Any] = {"states": states, "complete": len(done)}
    if done:
        first = min(t.datetime_start for t in done if t.datetime_start)
        last = max(t.datetime_complete for t in done if t.datetime_complete)
        minutes = max((last - first).total_seconds() / 60, 1e-9)
        out["trials_per_minute"] = len(done) / minutes
        out["median_train_seconds"] = statistics.median(t.user_attrs.get("train_seconds", 0.0) for t in done)
        out["devices"] = sorted({str(t.user_attrs.get("device")) for t in done})
        out["backends"] = sorted({str(t.user_attrs.get("backend")) for t in done})
    failed = [t for t in trials if t.state.name == "FAIL"]
    out["fail_reasons"] = [f"trial {t.number}: {t.user_attrs.get('fail_reason', '?')}"[:300] for t in failed]
    return out


def _memory(path: Path, total_mib: float, k: int) -> dict[str, Any]:
    """Per-process peak GPU memory from `nvidia-smi --query-compute-apps=pid,used_memory` samples."""
    if not path.exists() or not path.read_text().strip():
        return {"available": False}
    peaks: dict[str, float] = {}
    for row in csv.reader(path.read_text().splitlines()):
        if len(row) >= 2 and row[1].strip().replace(".", "", 1).isdigit():
            pid = row[0].strip()
            peaks[pid] = max(peaks.get(pid, 0.0), float(row[1]))
    share = total_mib / k if total_mib else None
    return {
        "available": bool(peaks),
        "peak_mib_by_pid": peaks,
        "share_mib": share,
        "all_under_share": bool(peaks) and share is not None and all(v < share for v in peaks.values()),
    }


def _summarize(args: argparse.Namespace) -> int:
    out = Path(args.outdir)
    meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
    total = float(meta.get("memory_total_mib") or 0)
    results: dict[str, Any] = {"meta": meta, "epoch": {}, "workers": {}, "oom": {}}
    for f in sorted(out.glob("epoch-*.json")):
        results["epoch"][f.stem.removeprefix("epoch-")] = json.loads(f.read_text())
    for f in sorted(out.glob("k-*.db")):  # k-BACKEND-K.db
        _, backend, k = f.stem.split("-")
        entry = _study(f, f.stem)
        entry["memory"] = _memory(out / f"mem-{backend}-{k}.csv", total, int(k))
        wall = out / f"wall-{backend}-{k}.txt"
        entry["wall_s"], entry["exit_code"] = (
            (float(wall.read_text().split()[0]) / 1000, int(wall.read_text().split()[1]))
            if wall.exists()
            else (None, None)
        )
        results["workers"].setdefault(backend, {})[k] = entry
    for f in sorted(out.glob("oom-*.db")):
        backend = f.stem.removeprefix("oom-")
        entry = _study(f, f.stem)
        code = out / f"oom-{backend}.code"
        entry["exit_code"] = int(code.read_text().strip()) if code.exists() else None
        entry["oom_failed"] = any(
            "memory" in r.lower() or "resource_exhausted" in r.lower() for r in entry["fail_reasons"]
        )
        results["oom"][backend] = entry
    kind = "REAL GPU" if meta.get("gpu") else "NO GPU: rehearsal"
    lines = [f"hpsearch GPU check: {meta.get('gpu_name', 'no GPU')} ({kind})"]
    lines.append(f"python {meta.get('python', '?')}; {meta.get('versions', '')}")
    for b, r in results["epoch"].items():
        f32, f16 = r["float32"], r["mixed_float16"]
        ok = (
            ("meets" if f32["epoch_s"] < GOAL_EPOCH_S else "MISSES")
            if meta.get("gpu")
            else "not judged: no GPU,"
        )
        lines.append(
            f"epoch 784-{MLP_UNITS}-10 @ {BATCH}, {b} on {r['device']}: float32 {f32['epoch_s']:.3f} s/epoch "
            f"({ok} the {GOAL_EPOCH_S} s goal), val_accuracy {f32['val_accuracy']:.4f}; mixed_float16 "
            f"{f16['epoch_s']:.3f} s/epoch, val_accuracy {f16['val_accuracy']:.4f}; "
            f"peak memory {r['peak_memory_mib']} MiB"
        )
    for b, by_k in results["workers"].items():
        base = by_k.get("1", {}).get("trials_per_minute")
        for k in sorted(by_k, key=int):
            e = by_k[k]
            tpm = e.get("trials_per_minute")
            ratio = f" = {tpm / base:.2f}x K=1" if tpm and base else ""
            mem = e["memory"]
            peaks = sorted(round(v) for v in mem.get("peak_mib_by_pid", {}).values())
            memtxt = (
                f"peak GPU memory per worker {peaks} MiB vs share {mem['share_mib']:.0f} MiB: "
                f"{'all under' if mem['all_under_share'] else 'NOT all under'}"
                if mem.get("available")
                else "per-worker GPU memory: not available"
            )
            tpm_text = f"{tpm:.1f}" if tpm else "n/a"
            lines.append(
                f"{b} --workers {k} --per-gpu {k}: {e['complete']} trials complete, "
                f"{tpm_text} trials/min{ratio}; exit {e['exit_code']}; {memtxt}"
            )
        top = by_k.get("8", {}).get("trials_per_minute")
        if base and top:
            verdict = (
                ("meets" if top >= GOAL_SPEEDUP * base else "MISSES") if meta.get("gpu") else "not judged:"
            )
            lines.append(f"{b}: K=8 / K=1 = {top / base:.2f}x ({verdict} the {GOAL_SPEEDUP:g}x goal)")
    for b, e in results["oom"].items():
        lines.append(
            f"OOM study on {b}: states {e['states']}, exit {e['exit_code']}, an out-of-memory failure: "
            f"{'yes' if e['oom_failed'] else 'NO'}; {'; '.join(e['fail_reasons'])[:300]}"
        )
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    epoch = sub.add_parser("epoch")
    epoch.add_argument("--out", required=True)
    epoch.add_argument("--epochs", type=int, default=6)
    epoch.add_argument("--limit", type=int, default=None)
    spaces_ = sub.add_parser("spaces")
    spaces_.add_argument("outdir")
    spaces_.add_argument("--gpu", action="store_true")
    summarize = sub.add_parser("summarize")
    summarize.add_argument("outdir")
    args = parser.parse_args(argv)
    os.environ.setdefault("HPSEARCH_OFFLINE", "1")
    return {"epoch": _epoch, "spaces": _spaces, "summarize": _summarize}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
