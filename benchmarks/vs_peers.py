"""hpsearch's default search against the tools people would pick instead, on full Fashion-MNIST.

Every tool searches the same space for the same wall-clock budget (``--budget``, default 600 s),
run as its users would run it, on the same 54,000 / 6,000 train / validation split of the
Fashion-MNIST training set (hpsearch's own loader, split seed 0), 10 epochs at most per trial:

- ``hpsearch``: ``hpsearch run SPACE.yaml --storage sqlite:///RUNDIR/study.db --timeout BUDGET``,
  one worker, the space with no sampler and no pruner section (hpsearch's defaults are what is
  measured) except ``sampler: {seed: N}``. It gets SIGTERM at the budget (its documented clean
  stop: the running trial is handed back), so no trial finishes after the budget.
- ``kt-hyperband``: ``kt.Hyperband(max_epochs=10, factor=3, seed=N)``; ``hyperband_iterations``
  is set high so that it fills the budget instead of stopping after one iteration.
- ``kt-random`` / ``kt-bayes``: ``kt.RandomSearch`` / ``kt.BayesianOptimization``, max_trials 1000.
  KerasTuner has no timeout: a callback raises a ``kt.errors.FatalError`` at the first epoch end
  (or epoch start) past the budget, which ends ``tuner.search``.
- ``optuna``: ``optuna.create_study(direction="maximize", sampler=TPESampler(seed=N),
  pruner=HyperbandPruner())``, an objective that builds the model with ``trial.suggest_*``, a
  Keras callback calling ``trial.report`` / ``trial.should_prune`` every epoch,
  ``study.optimize(objective, timeout=BUDGET)``; the same callback as KerasTuner's stops the trial
  still running at the budget. The objective returns ``model.evaluate`` on the validation set, as
  Optuna's Keras example does, and saves a model that beats the study's best so far.

The peers' ``build(hp)`` / ``trial.suggest_*`` spaces are written by hand in
benchmarks/vs_peers_hypermodel.py. The two spaces:

- ``issue``: benchmarks/vs_peers_space.yaml: 1-3 hidden layers of 32-512 units (log, per layer),
  relu/tanh/sigmoid, dropout 0-0.5, adam/sgd/rmsprop, learning rate 1e-4..1e-2 (log), batch size
  32/64/128/256, 10 epochs, val_accuracy only.
- ``preset``: the ``fashion-mlp`` preset's space with val_accuracy as its only objective (its
  sampler section cut to the seed): 1-4 layers of 32-1024 units, five activations, three
  initializers, dropout, batch norm, L2 1e-6..1e-2 (log), six optimizers, learning rate
  1e-4..1e-1, momentum and nesterov for sgd only, 10 epochs, early stopping on val_loss with
  patience 2 and the best weights restored (the peers too).

Measured, the same way for every tool, per epoch: each epoch end of every trial is a record
(seconds since the run started, that epoch's val_accuracy). The peers' records come from a Keras
callback writing ``time.time()`` at ``on_epoch_end`` to RUNDIR/epochs*.jsonl as it happens. The
run of a peer starts when the driver starts its process (Python, TensorFlow and data loading
count); hpsearch's when its ``hpsearch run`` process starts. hpsearch's records are read from its
study afterwards: each trial's ``curves`` user attr (``val_accuracy``, ``epoch_seconds``); epoch i
is taken to end at the trial's ``datetime_complete`` minus the ``epoch_seconds`` of the epochs
after i, so everything hpsearch does after training a trial counts against it. A trial without a
``datetime_complete`` (still RUNNING, or handed back at the stop) is skipped; one that continues
an earlier trial (a user attr whose key contains ``resume``) adds only its own epochs. From the
records: time to 0.87 / 0.88 / 0.885 best-so-far val accuracy, best val accuracy at half the
budget and at the budget; plus trials finished (KerasTuner: COMPLETED trials; Optuna and
hpsearch: COMPLETE or PRUNED ones) and, after the budget and not timed, the t10k test accuracy
of each tool's best model: KerasTuner ``tuner.get_best_models(1)[0]``; Optuna the best trial's
saved model; hpsearch ``hpsearch evaluate --fit train`` (the best trial retrained as it ran, on
the same 54,000 images the peers' models saw; the default ``--fit train+validation`` would train
on 60,000).

Runs go two at a time (``--jobs 2``), in pairs that start together and are waited for together,
each pinned to one core (``taskset -c``) with ``OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1
TF_NUM_INTEROP_THREADS=1`` (TensorFlow 2.21 honours both variables: one busy thread per process;
pinning alone also sizes its pools to one core). The same seed's runs of different tools are
paired (hpsearch seed 0 with kt-hyperband seed 0, ...), cores alternating between pairs. Each run
is a subprocess of this script (``vs_peers.py _one ...``) that writes
benchmarks/results/vs_peers/SPACE/TOOL-seedN.json; runs whose JSON exists are skipped, so an
interrupted benchmark resumes where it stopped. ``--two-cores``: hpsearch with ``--workers 2``
against one peer (``--peer``, default optuna: two processes on one SQLite study, as Optuna's
parallelization docs show; a KerasTuner peer is one process with two TensorFlow threads), both
cores unpinned, one run at a time, 3 seeds; results in SPACE-2cores/.

Then the report: benchmarks/results/vs_peers/summary.json and summary.md (also printed) with,
per space and tool, the medians over seeds and the per-seed values, the issue's three goals as
PASS / FAIL with their numbers, and SPACE.png (best-so-far val accuracy against time, every
seed). The full benchmark is 42 runs of 10 minutes, two at a time (2 spaces x (3 tools x 5
seeds + 2 tools x 3 seeds)), 21 waves plus the test evaluations after each: about 4 hours;
``--two-cores`` is 12 runs one at a time, about 2 hours 15 minutes. Run it in the background,
alone on the machine (each run records its CPU time / wall time: far below 1 means it was not):

    nohup .venv/bin/python benchmarks/vs_peers.py > /tmp/vs_peers.log 2>&1 &
    .venv/bin/python benchmarks/vs_peers.py --report-only      # the report from the JSONs so far
    nohup .venv/bin/python benchmarks/vs_peers.py --two-cores > /tmp/vs_peers_2.log 2>&1 &

Each run's output goes to benchmarks/results/vs_peers/SPACE/TOOL-seedN.log. A rehearsal of every
tool end to end (4 minutes; delete benchmarks/results/vs_peers/ after): ``.venv/bin/python
benchmarks/vs_peers.py --budget 40 --seeds 1 --minor-seeds 1 --spaces issue --limit 5000``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # vs_peers_hypermodel, also when imported from elsewhere
import vs_peers_hypermodel as peers  # noqa: E402

ROOT = HERE.parent
RESULTS = HERE / "results" / "vs_peers"
ISSUE_SPACE = HERE / "vs_peers_space.yaml"
PRESET_SPACE = ROOT / "spaces" / "presets" / "fashion-mlp.yaml"
TOOLS = ("hpsearch", "kt-hyperband", "optuna", "kt-random", "kt-bayes")
MAIN_TOOLS = ("hpsearch", "kt-hyperband", "optuna")
PEERS = TOOLS[1:]
TARGETS = (0.87, 0.88, 0.885)
GOAL_TARGET, GOAL_ACCURACY, GOAL_MARGIN = 0.88, 0.890, 0.005
AFTER_BUDGET_S = 1800  # the driver kills a run this long after its budget (test evaluation hangs)
STOP_GRACE_S = 300  # hpsearch's SIGTERM: the running trial's next batch; then SIGKILL
THREADS = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
Record = tuple[float, float]  # (seconds since the run started, val_accuracy of one epoch)


# --------------------------------------------------------------------------- one run


def space_text(space: str, seed: int, budget: float, limit: int | None) -> str:
    """hpsearch's per-seed space: the sampler seed, the budget and (rehearsals) the data limit."""
    if space == "issue":
        doc = yaml.safe_load(ISSUE_SPACE.read_text())
    else:
        doc = yaml.safe_load(PRESET_SPACE.read_text())
        doc["objectives"] = [{"metric": "val_accuracy", "direction": "maximize"}]
        doc.pop("pruner", None)
        doc["description"] = "the fashion-mlp preset, val_accuracy only (benchmarks/vs_peers.py)"
    # `sampler: {seed: N}`, not a top-level `seed:`, which would change the split the peers share
    doc["sampler"] = {"seed": seed}
    doc["name"] = f"vs-peers-{space}-seed{seed}"
    doc["budget"] = {"trials": peers.MAX_TRIALS, "timeout": budget}
    if limit is not None:
        doc["dataset"] = {**doc["dataset"], "limit": limit}
    return yaml.safe_dump(doc, sort_keys=False)


def hpsearch_command() -> list[str]:
    cli = Path(sys.executable).with_name("hpsearch")
    return [str(cli)] if cli.exists() else [sys.executable, "-m", "search"]


def stop_at(proc: subprocess.Popen[bytes], deadline: float) -> str:
    """Wait for ``proc`` until ``deadline``, then SIGTERM it (SIGKILL after a grace); how it ended."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        code = proc.wait(timeout=max(deadline - time.time(), 0.0))
        return f"exited {code} before the budget"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
        return "budget"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"budget (still running {STOP_GRACE_S} s after SIGTERM: killed)"


def run_hpsearch(args: argparse.Namespace, rundir: Path) -> dict[str, Any]:
    space_file = rundir / "space.yaml"
    space_file.write_text(space_text(args.space, args.seed, args.budget, args.limit))
    study = f"vs-peers-{args.space}-seed{args.seed}"
    url = f"sqlite:///{rundir / 'study.db'}"
    cmd = [*hpsearch_command(), "run", str(space_file), "--storage", url, "--timeout", f"{args.budget:g}"]
    if args.two_cores:
        cmd += ["--workers", "2"]
    with (rundir / "hpsearch.log").open("wb") as log:
        t0 = time.time()  # the run starts with the hpsearch process
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=rundir)
        (rundir / "t0").write_text(repr(t0))  # for salvage() if this process dies
        ended = stop_at(proc, t0 + args.budget)
    search_seconds = time.time() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = collect_hpsearch(url, study, t0, args.budget)
    out.update(ended=ended, search_seconds=search_seconds, cpu_seconds=usage.ru_utime + usage.ru_stime)
    text = (rundir / "hpsearch.log").read_text(errors="replace")
    print(text, flush=True)  # into TOOL-seedN.log: the run directory is deleted
    out["worker_restarts"] = text.count("to release it")  # the memory restart line of search.worker.recycle
    best = out["best"]  # the best trial finished inside the budget, not the study's best
    out["test_accuracy"] = hpsearch_test(url, study, best["trial"], rundir) if best else None
    return out


def collect_hpsearch(url: str, study_name: str, t0: float, budget: float) -> dict[str, Any]:
    """Epoch records, trial counts and the best trial, read from an hpsearch study."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=url)
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    records: list[Record] = []
    resumed = 0
    for t in trials:
        if t.datetime_complete is None:
            continue
        own, continued = own_epochs(t)
        resumed += continued
        end = t.datetime_complete.timestamp() - t0
        for i, (value, _) in enumerate(own):
            records.append((end - sum(s for _, s in own[i + 1 :]), value))
    done = [
        t
        for t in trials
        if t.state in (states.COMPLETE, states.PRUNED)
        and t.datetime_complete is not None
        and t.datetime_complete.timestamp() - t0 <= budget
    ]
    complete = [t for t in done if t.state == states.COMPLETE and t.value is not None]
    best = max(complete, key=lambda t: t.value or 0.0) if complete else None
    return {
        "records": sorted(records),
        "trials_finished": len(done),
        "trials_pruned": sum(t.state == states.PRUNED for t in done),
        "trials_resumed": resumed,
        "trial_states": {
            s.name: sum(t.state == s for t in trials) for s in states if any(t.state == s for t in trials)
        },
        "best": None
        if best is None
        else {"trial": best.number, "val_accuracy": best.value, "params": best.params},
    }


def own_epochs(trial: Any) -> tuple[list[tuple[float, float]], bool]:
    """A finished trial's (val_accuracy, epoch_seconds) pairs; True when it continues another trial.

    hpsearch's curve recorder logs only the epochs the trial itself trained: a continuation from
    a checkpoint starts at its ``initial_epoch``, one that retrained did train those epochs again.
    The two lists are aligned at their ends, should one ever hold more.
    """
    curves = trial.user_attrs.get("curves") or {}
    acc = [float(v) for v in curves.get("val_accuracy") or []]
    secs = [float(v) for v in curves.get("epoch_seconds") or []]
    n = min(len(acc), len(secs))
    pairs = list(zip(acc[len(acc) - n :], secs[len(secs) - n :], strict=True))
    return pairs, any("resume" in key.lower() for key in trial.user_attrs)


def hpsearch_test(url: str, study: str, trial: int, rundir: Path) -> float | None:
    """``hpsearch evaluate --fit train`` of ``trial``: its test accuracy (None on failure)."""
    out = rundir / "eval"
    cmd = [*hpsearch_command(), "evaluate", "--storage", url, "--study", study, "--trial", str(trial)]
    cmd += ["--fit", "train"]
    with (rundir / "evaluate.log").open("wb") as log:
        subprocess.run(
            [*cmd, "--out", str(out)], stdout=log, stderr=subprocess.STDOUT, cwd=rundir, check=False
        )
    for path in out.glob("*/evaluation.json"):
        return float(json.loads(path.read_text())["test_accuracy"])
    text = (rundir / "evaluate.log").read_text(errors="replace")
    m = re.search(r"test_accuracy=([0-9.]+)", text)
    return float(m.group(1)) if m else None


def run_one(args: argparse.Namespace) -> None:
    """``_one``: one tool, one space, one seed; writes the run's JSON."""
    rundir = Path(args.rundir)
    if rundir.exists():
        shutil.rmtree(rundir)  # a run interrupted earlier starts again from nothing
    rundir.mkdir(parents=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load = os.getloadavg()
    if args.tool == "hpsearch":
        out = run_hpsearch(args, rundir)
    elif args.tool == "optuna":
        out = peers.run_optuna(args, rundir, args.t0, spawn=lambda i: _spawn_optuna_worker(args, rundir, i))
    else:
        out = peers.run_kerastuner(args, rundir, args.t0)
    write_result(args, out, started=started, load=load)
    if not args.keep_runs:
        shutil.rmtree(rundir, ignore_errors=True)


def write_result(
    args: argparse.Namespace,
    out: dict[str, Any],
    *,
    started: str,
    load: Any,
    env: Mapping[str, str] = os.environ,
) -> None:
    """The run's JSON (written whole, then renamed): settings, results, measures, epoch records."""
    records = out.pop("records")
    result = {
        "tool": args.tool,
        "space": args.space,
        "seed": args.seed,
        "two_cores": args.two_cores,
        "budget": args.budget,
        "limit": args.limit,
        "started": started,
        "load_average_at_start": [round(v, 2) for v in load],
        "core": env.get("VS_PEERS_CORE") or None,
        "threads": {k: env.get(k) for k in THREADS},
        "versions": versions(),
        **out,
        "cpu_share": round(out["cpu_seconds"] / out["search_seconds"], 3) if out.get("cpu_seconds") else None,
        **measure(records, args.budget),
        "epochs_after_budget": sum(t > args.budget for t, _ in records),
        "records": [[round(t, 2), round(v, 5)] for t, v in records if t <= args.budget],
    }
    path = Path(args.result)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(dumps(result))
    tmp.replace(path)


def dumps(result: dict[str, Any]) -> str:
    """JSON, indented, with the long lists of [seconds, accuracy] pairs one line each."""
    rest = {k: v for k, v in result.items() if k not in ("best_so_far", "records")}
    lines = json.dumps(rest, indent=1)[:-2].splitlines()
    for key in ("best_so_far", "records"):
        lines[-1] += ","
        lines.append(f' "{key}": {json.dumps(result[key], separators=(",", ":"))}')
    return "\n".join(lines) + "\n}\n"


def versions() -> dict[str, str]:
    names = ("hpsearch", "tensorflow", "keras", "keras-tuner", "optuna")
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _spawn_optuna_worker(args: argparse.Namespace, rundir: Path, worker: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*_self_command("_optuna_worker", args, rundir, args.t0), "--worker", str(worker)]
    )


def run_optuna_worker(args: argparse.Namespace) -> None:
    """``_optuna_worker``: one of ``--two-cores`` Optuna's two processes on its SQLite study."""
    rundir = Path(args.rundir)
    peers.optuna_search(
        args, rundir, args.t0, storage=f"sqlite:///{rundir / 'optuna.db'}", worker=args.worker
    )


# --------------------------------------------------------------------------- measures


def best_so_far(records: list[Record], budget: float) -> list[Record]:
    curve: list[Record] = []
    for t, v in sorted(records):
        if t <= budget and (not curve or v > curve[-1][1]):
            curve.append((t, v))
    return curve


def measure(records: list[Record], budget: float) -> dict[str, Any]:
    """Time to each target, best val accuracy at half the budget and at the budget, epochs."""
    curve = best_so_far(records, budget)

    def best_at(s: float) -> float | None:
        seen = [v for t, v in curve if t <= s]
        return seen[-1] if seen else None

    return {
        "time_to": {f"{x:g}": next((round(t, 1) for t, v in curve if v >= x), None) for x in TARGETS},
        "best_at": {f"{s:g}": best_at(s) for s in (budget / 2, budget)},
        "epochs_trained": sum(t <= budget for t, _ in records),
        "best_so_far": [[round(t, 2), round(v, 5)] for t, v in curve],
    }


# --------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class Job:
    space: str
    tool: str
    seed: int
    two_cores: bool

    @property
    def group(self) -> str:
        return f"{self.space}-2cores" if self.two_cores else self.space

    @property
    def name(self) -> str:
        return f"{self.group}/{self.tool}-seed{self.seed}"

    @property
    def result(self) -> Path:
        return RESULTS / self.group / f"{self.tool}-seed{self.seed}.json"


def plan(args: argparse.Namespace) -> list[Job]:
    """Every job, the same seed's tools next to each other (so pairs see the same machine load)."""
    spaces = [s for s in args.spaces.split(",") if s]
    tools = [t for t in args.tools.split(",") if t]
    if args.two_cores:
        tools = ["hpsearch", args.peer]
        seeds = args.seeds if args.seeds is not None else 3
        return [Job(s, t, n, True) for s in spaces for n in range(seeds) for t in tools]
    main, minor = 5 if args.seeds is None else args.seeds, args.minor_seeds
    return [
        Job(s, t, n, False)
        for s in spaces
        for n in range(max(main, minor))
        for t in tools
        if n < (main if t in MAIN_TOOLS else minor)
    ]


def _self_command(command: str, args: argparse.Namespace, rundir: Path, t0: float) -> list[str]:
    """``python vs_peers.py COMMAND ...`` with a run's options."""
    cmd = [sys.executable, str(Path(__file__).resolve()), command, "--tool", args.tool, "--space", args.space]
    cmd += ["--seed", str(args.seed), "--budget", f"{args.budget:g}", "--rundir", str(rundir)]
    cmd += ["--t0", repr(t0), "--result", str(args.result)]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    if args.two_cores:
        cmd.append("--two-cores")
    if getattr(args, "keep_runs", False):
        cmd.append("--keep-runs")
    return cmd


def job_env(job: Job, core: int | None) -> dict[str, str]:
    """The environment of a run: one thread per process (a KerasTuner run on both cores: two)."""
    threads = "2" if job.two_cores and job.tool.startswith("kt-") else "1"
    env = {**os.environ, **{k: threads for k in THREADS}}
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", HPSEARCH_OFFLINE="1", PYTHONUNBUFFERED="1"
    )
    env["VS_PEERS_CORE"] = "" if core is None else str(core)
    return env


def launch(job: Job, args: argparse.Namespace, core: int | None) -> subprocess.Popen[bytes]:
    """Start ``_one`` for ``job``: pinned to ``core`` (None: unpinned), its output to a log."""
    env = job_env(job, core)
    one = argparse.Namespace(
        tool=job.tool,
        space=job.space,
        seed=job.seed,
        budget=args.budget,
        limit=args.limit,
        two_cores=job.two_cores,
        result=job.result,
        keep_runs=args.keep_runs,
    )
    rundir = Path(args.workdir) / job.group / f"{job.tool}-seed{job.seed}"
    cmd = _self_command("_one", one, rundir, time.time())
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    log_path = job.result.with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def run_jobs(args: argparse.Namespace) -> None:
    """Run the pending jobs in waves of ``--jobs`` (one per core), each wave waited for as a whole.

    A wave's runs start together and the next wave waits for all of them, so paired runs share
    the machine for their whole budget; the cores alternate from one wave to the next.
    """
    pending = [j for j in plan(args) if not j.result.exists()]
    width = 1 if args.two_cores else args.jobs
    waves = [pending[i : i + width] for i in range(0, len(pending), width)]
    print(f"{len(pending)} runs to do in {len(waves)} waves of up to {width}", flush=True)
    running: list[tuple[Job, int | None, subprocess.Popen[bytes]]] = []

    def stop_all(signum: int, frame: Any) -> None:  # SIGTERM / Ctrl-C: end the runs, write nothing
        for _, _, p in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for _, _, p in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        sys.exit(130)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for w, wave in enumerate(waves):
        stamp = datetime.now().strftime("%H:%M:%S")
        print(f"{stamp} wave {w + 1}/{len(waves)}: {', '.join(j.name for j in wave)}", flush=True)
        for i, job in enumerate(wave):
            core = None if args.two_cores else (i + w) % width
            running.append((job, core, launch(job, args, core)))
        limit = time.time() + args.budget + AFTER_BUDGET_S
        for job, core, proc in running:
            try:
                code: int | None = proc.wait(timeout=max(limit - time.time(), 1.0))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
            if not job.result.exists():
                salvage(job, args, core, f"the run {'was killed' if code is None else f'exited {code}'}")
            brief = json.loads(job.result.read_text())
            print(
                f"  {job.name} (core {core}): time to 0.88 {brief['time_to'].get('0.88')}, "
                f"best {brief['best_at']}, {brief.get('trials_finished')} trials, "
                f"test {brief.get('test_accuracy')}, cpu share {brief.get('cpu_share')}",
                flush=True,
            )
        running.clear()


def salvage(job: Job, args: argparse.Namespace, core: int | None, why: str) -> None:
    """A JSON from what a run that died left behind (its epoch records; no test accuracy)."""
    print(f"  {job.name}: {why}; its JSON is built from its records (see {job.result.with_suffix('.log')})")
    rundir = Path(args.workdir) / job.group / f"{job.tool}-seed{job.seed}"
    out: dict[str, Any] = {
        "records": peers.read_jsonl(rundir),
        "trials_finished": None,
        "test_accuracy": None,
    }
    db = rundir / "study.db"
    if job.tool == "hpsearch" and db.exists():
        with contextlib.suppress(Exception):  # a half-written study: the records stay empty
            start = float((rundir / "t0").read_text())
            out.update(
                collect_hpsearch(
                    f"sqlite:///{db}", f"vs-peers-{job.space}-seed{job.seed}", start, args.budget
                )
            )
    out.update(ended=why, incomplete=True)
    one = argparse.Namespace(
        tool=job.tool, space=job.space, seed=job.seed, two_cores=job.two_cores,
        budget=args.budget, limit=args.limit, result=job.result,
    )  # fmt: skip
    write_result(one, out, started="", load=os.getloadavg(), env=job_env(job, core))


# --------------------------------------------------------------------------- the report


def load_runs() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every run JSON under RESULTS: group (space, or SPACE-2cores) -> tool -> runs by seed."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for path in sorted(RESULTS.glob("*/*.json")):
        run = json.loads(path.read_text())
        records = [(float(t), float(v)) for t, v in run["records"]]
        run.update(measure(records, run["budget"]))  # recomputed: the targets may have changed
        groups.setdefault(path.parent.name, {}).setdefault(run["tool"], []).append(run)
    for tools in groups.values():
        for runs in tools.values():
            runs.sort(key=lambda r: r["seed"])
    order = {t: i for i, t in enumerate(TOOLS)}
    return {
        g: dict(sorted(tools.items(), key=lambda kv: order.get(kv[0], 99))) for g, tools in groups.items()
    }


def median_time(values: list[float | None]) -> float | None:
    """The median of times to a target, "never" (None) counted as infinite; None if it is."""
    m = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(m) else m


def run_values(run: dict[str, Any], budget: float) -> dict[str, Any]:
    half, full = f"{budget / 2:g}", f"{budget:g}"
    return {
        **{f"time_to_{k}": v for k, v in run["time_to"].items()},
        "best_at_half": run["best_at"].get(half),
        "best_at_end": run["best_at"].get(full),
        "trials_finished": run.get("trials_finished"),
        "test_accuracy": run.get("test_accuracy"),
        "epochs_trained": run.get("epochs_trained"),
        "cpu_share": run.get("cpu_share"),
    }


def summarize_group(tools: dict[str, list[dict[str, Any]]], budget: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool, runs in tools.items():
        per_seed = {r["seed"]: run_values(r, budget) for r in runs}
        keys = next(iter(per_seed.values())).keys()
        med: dict[str, Any] = {}
        for k in keys:
            values = [v[k] for v in per_seed.values()]
            if k.startswith("time_to"):
                med[k] = median_time(values)
            elif k.startswith("best_at"):  # no epoch yet counts as the worst accuracy
                m = statistics.median(0.0 if v is None else v for v in values)
                med[k] = m or None
            else:
                present = [v for v in values if v is not None]
                med[k] = statistics.median(present) if present else None
        out[tool] = {
            "median": med,
            "seeds": per_seed,
            "incomplete": [r["seed"] for r in runs if r.get("incomplete")],
        }
    return out


def goals(summary: dict[str, Any], budget: float) -> list[dict[str, Any]]:
    """The issue's three goals for one group, each PASS / FAIL with its numbers and the losing seeds."""
    hp = summary.get("hpsearch")
    peers_ = {t: s for t, s in summary.items() if t != "hpsearch"}
    if hp is None or not peers_:
        return []
    key = f"time_to_{GOAL_TARGET:g}"
    inf = math.inf
    fastest_tool = min(peers_, key=lambda t: peers_[t]["median"][key] or inf)
    fastest = peers_[fastest_tool]["median"][key]
    hp_time = hp["median"][key]
    half = inf if fastest is None else fastest / 2
    ok1 = hp_time is not None and hp_time <= half
    slow = [s for s, v in hp["seeds"].items() if (v[key] or inf) > half]
    res = [
        {
            "goal": f"hpsearch reaches {GOAL_TARGET:g} in at most half the time of the fastest peer (median)",
            "pass": ok1,
            "numbers": f"hpsearch {_sec(hp_time, budget)}; fastest peer {fastest_tool} "
            f"{_sec(fastest, budget)}" + (f" (half: {half:.0f} s)" if fastest is not None else ""),
            "losing_seeds": slow,
        }
    ]
    best_peer_tool = max(peers_, key=lambda t: peers_[t]["median"]["best_at_end"] or 0.0)
    best_peer = peers_[best_peer_tool]["median"]["best_at_end"] or 0.0
    hp_best = hp["median"]["best_at_end"] or 0.0
    above_all = all(hp_best > (s["median"]["best_at_end"] or 0.0) for s in peers_.values())
    bar = max(GOAL_ACCURACY, best_peer)
    res.append(
        {
            "goal": f"hpsearch's median best val accuracy at {budget:g} s >= {GOAL_ACCURACY:.3f} and above "
            "every peer's median",
            "pass": hp_best >= GOAL_ACCURACY and above_all,
            "numbers": f"hpsearch {hp_best:.4f}; best peer {best_peer_tool} {best_peer:.4f}",
            "losing_seeds": [s for s, v in hp["seeds"].items() if (v["best_at_end"] or 0.0) < bar],
        }
    )
    low = [s for s, v in hp["seeds"].items() if (v["best_at_end"] or 0.0) < best_peer - GOAL_MARGIN]
    worst = min((v["best_at_end"] or 0.0) for v in hp["seeds"].values())
    res.append(
        {
            "goal": f"no hpsearch seed below the best peer's median by more than {GOAL_MARGIN:g}",
            "pass": not low,
            "numbers": f"worst hpsearch seed {worst:.4f}; best peer median {best_peer:.4f} "
            f"({best_peer_tool}), floor {best_peer - GOAL_MARGIN:.4f}",
            "losing_seeds": low,
        }
    )
    return res


def _sec(v: float | None, budget: float) -> str:
    return f"> {budget:g} s" if v is None else f"{v:.0f} s"


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def markdown(group: str, summary: dict[str, Any], checks: list[dict[str, Any]], budget: float) -> str:
    half = f"{budget / 2:g}"
    cols = [
        *((f"time_to_{x:g}", f"time to {x:g}") for x in TARGETS),
        ("best_at_half", f"best val acc at {half} s"),
        ("best_at_end", f"best val acc at {budget:g} s"),
        ("trials_finished", "trials finished"),
        ("test_accuracy", "test acc of best model"),
        ("epochs_trained", "epochs trained"),
        ("cpu_share", "CPU time / wall"),
    ]

    def cell(key: str, value: Any, short: bool) -> str:
        if key.startswith("time_to"):
            return ("-" if value is None else f"{value:.0f}") if short else _sec(value, budget)
        if key in ("trials_finished", "epochs_trained"):
            return "-" if value is None else f"{value:g}"
        if key == "cpu_share":
            return "-" if value is None else f"{value:.2f}"
        return _acc(value)

    n_seeds = {t: len(s["seeds"]) for t, s in summary.items()}
    lines = [
        f"### {group}: median over seeds (per seed in brackets, seed 0 first; - = not reached / none)",
        "",
        "| tool | seeds | " + " | ".join(title for _, title in cols) + " |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for tool, s in summary.items():
        cells = []
        for key, _ in cols:
            per = ", ".join(cell(key, v[key], True) for v in s["seeds"].values())
            cells.append(f"{cell(key, s['median'][key], False)} ({per})")
        note = f" (incomplete: seeds {s['incomplete']})" if s["incomplete"] else ""
        lines.append(f"| {tool}{note} | {n_seeds[tool]} | " + " | ".join(cells) + " |")
    lines.append("")
    for c in checks:
        losing = f"; hpsearch loses in seeds {c['losing_seeds']}" if c["losing_seeds"] else ""
        lines.append(f"- **{'PASS' if c['pass'] else 'FAIL'}** {c['goal']}: {c['numbers']}{losing}")
    return "\n".join(lines) + "\n"


def plot(group: str, tools: dict[str, list[dict[str, Any]]], budget: float, path: Path) -> None:
    """Best-so-far val accuracy against time: thin lines per seed, a thick median per tool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(TOOLS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"), strict=True))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    grid = [budget * i / 300 for i in range(301)]
    top = 0.9
    for tool, runs in tools.items():
        color = colors.get(tool, "black")
        steps = []
        for r in runs:
            curve = [(float(t), float(v)) for t, v in r["best_so_far"]]
            if not curve:
                continue
            top = max(top, curve[-1][1] + 0.005)
            xs, ys = [t for t, _ in curve] + [budget], [v for _, v in curve] + [curve[-1][1]]
            ax.step(xs, ys, where="post", color=color, alpha=0.45, linewidth=0.8)
            steps.append([max((v for t, v in curve if t <= g), default=math.nan) for g in grid])
        if steps:
            med = [
                statistics.median([0.0 if math.isnan(s[i]) else s[i] for s in steps])
                for i in range(len(grid))
            ]
            ax.plot(grid, med, color=color, linewidth=2.2, label=f"{tool} (median of {len(steps)})")
    for x in TARGETS:
        ax.axhline(x, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0.80, min(top, 1.0))
    ax.set_xlim(0, budget)
    ax.set_xlabel(
        "seconds since the run started (one pinned core per run)" if "2cores" not in group else "seconds"
    )
    ax.set_ylabel("best validation accuracy so far (per epoch)")
    ax.set_title(f"vs_peers: {group} space, Fashion-MNIST, {budget:g} s per run")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report() -> None:
    groups = load_runs()
    if not groups:
        print(f"no results under {RESULTS}")
        return
    payload: dict[str, Any] = {"groups": {}}
    text = ["# hpsearch against its peers (benchmarks/vs_peers.py)", ""]
    for group, tools in groups.items():
        budgets = {r["budget"] for runs in tools.values() for r in runs}
        budget = max(budgets)
        summary = summarize_group(tools, budget)
        checks = goals(summary, budget)
        payload["groups"][group] = {"budget": budget, "tools": summary, "goals": checks}
        text.append(markdown(group, summary, checks, budget))
        if len(budgets) > 1:
            text.append(f"(mixed budgets in {group}: {sorted(budgets)}; the table uses {budget:g} s)\n")
        plot(group, tools, budget, RESULTS / f"{group}.png")
        text.append(f"![{group}]({group}.png)\n")
    first = next(r for tools in groups.values() for runs in tools.values() for r in runs)
    payload["versions"] = first.get("versions")
    payload["machine"] = f"{os.cpu_count()} CPU cores"
    (RESULTS / "summary.json").write_text(json.dumps(payload, indent=1) + "\n")
    md = "\n".join(text)
    (RESULTS / "summary.md").write_text(md)
    print(md)


# --------------------------------------------------------------------------- command line


def one_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"vs_peers.py {command}", description="one run (used by the driver)"
    )
    parser.add_argument("--tool", choices=TOOLS, required=True)
    parser.add_argument("--space", choices=peers.SPACES, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--budget", type=float, required=True)
    parser.add_argument("--rundir", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--t0", type=float, required=True, help="the run's start (time.time())")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--two-cores", action="store_true")
    parser.add_argument("--keep-runs", action="store_true")
    parser.add_argument("--worker", type=int, default=0)
    return parser


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("_one", "_optuna_worker"):
        command = sys.argv[1]
        args = one_parser(command).parse_args(sys.argv[2:])
        (run_one if command == "_one" else run_optuna_worker)(args)
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spaces", default="issue,preset", help="comma-separated: issue, preset")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, of: " + ", ".join(TOOLS))
    parser.add_argument(
        "--seeds", type=int, help="seeds of hpsearch, kt-hyperband, optuna (default 5; --two-cores 3)"
    )
    parser.add_argument("--minor-seeds", type=int, default=3, help="seeds of kt-random, kt-bayes (default 3)")
    parser.add_argument(
        "--budget", type=float, default=600.0, help="wall-clock seconds per run (default 600)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one per core (default 2)")
    parser.add_argument(
        "--two-cores", action="store_true", help="hpsearch --workers 2 vs --peer on both cores"
    )
    parser.add_argument(
        "--peer", default="optuna", choices=PEERS, help="--two-cores: the peer (default optuna)"
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the JSONs")
    parser.add_argument(
        "--workdir", default="/tmp/vs_peers-runs", help="run directories (deleted after each run)"
    )
    parser.add_argument("--keep-runs", action="store_true", help="keep the run directories")
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)  # rehearsals only: fewer training images
    args = parser.parse_args()
    unknown = {*args.spaces.split(","), *args.tools.split(",")} - {*peers.SPACES, *TOOLS, ""}
    if unknown:
        parser.error(f"unknown space or tool: {', '.join(sorted(unknown))}")
    if not 1 <= args.jobs <= (os.cpu_count() or 1):
        parser.error(f"--jobs: expected 1..{os.cpu_count()}, got {args.jobs}")
    if not args.report_only:
        run_jobs(args)
    report()


if __name__ == "__main__":
    main()
