"""The ``hpsearch`` command line: one function per subcommand, ``main(argv) -> exit code``.

User errors print one line (``hpsearch: error: ...``) and exit 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import optuna

import spaces
import storage
from search.cli.commands import (
    cmd_best,
    cmd_dashboard,
    cmd_devices,
    cmd_evaluate,
    cmd_export,
    cmd_lr_find,
    cmd_report,
    cmd_spaces,
    cmd_storage_proxy,
    cmd_studies,
    cmd_validate,
)
from search.errors import USER_ERRORS, ConfigError
from search.worker.recycle import DEFAULT_MAX_GROWTH, growth_percent

if TYPE_CHECKING:
    from search.study.queue import QueueStudy
    from search.trial.data import Dataset

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
    return value


def _device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (default), cpu, gpu, or gpu:N (index or UUID)")
    p.add_argument("--per-gpu", type=_positive_int, default=1, help="workers sharing each GPU (default 1)")


def _server_options(p: argparse.ArgumentParser, url_help: str, *, port: int) -> None:
    p.add_argument("--storage", help=url_help)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=_positive_int, default=port, help=f"port (default: {port})")


def _worker_options(p: argparse.ArgumentParser) -> None:
    _device_options(p)
    p.add_argument("--timeout", type=_positive_float, help="start no new trial after S seconds")
    p.add_argument(
        "--max-failures", type=_positive_int, default=5, help="stop after N failed trials in a row"
    )
    p.add_argument(
        "--heartbeat",
        type=_positive_int,
        default=None,
        help="seconds between heartbeats of a running trial; a trial is stale after 3 missed "
        "(default: $HPSEARCH_HEARTBEAT or 10)",
    )
    p.add_argument(
        "--max-memory-growth",
        type=growth_percent,
        default=DEFAULT_MAX_GROWTH,
        metavar="PCT",
        help="restart the worker process between trials when its resident memory grew more than PCT%% "
        "after warm-up (default 8; 0 = never)",
    )
    _artifacts_option(p)


def _artifacts_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--artifacts",
        metavar="DIR",
        help="trial artifacts directory (default: $HPSEARCH_ARTIFACTS, else next to a SQLite/journal "
        "file, else ./hpsearch-artifacts)",
    )


def _study_options(p: argparse.ArgumentParser, url_help: str) -> None:
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", help=url_help)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hpsearch", description="Hyperparameter search for Keras models on Optuna."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    url_help = f"storage URL (default: ${storage.ENV_VAR}, else {storage.DEFAULT_URL})"

    r = sub.add_parser("run", help="create or resume a study and run its trials")
    r.add_argument(
        "space", metavar="SPACE", help="a space YAML file or a preset name (see `hpsearch spaces`)"
    )
    r.add_argument("--study", help="study name (default: the space's name)")
    r.add_argument("--storage", help=url_help)
    r.add_argument(
        "--trials", type=_positive_int, help="trials the study should hold (default: budget.trials)"
    )
    r.add_argument("--data-dir", help="directory with dataset files (default: $HPSEARCH_DATA_DIR)")
    r.add_argument("--workers", type=_positive_int, default=1, help="run K local worker processes")
    _worker_options(r)
    r.set_defaults(func=cmd_run)

    w = sub.add_parser("worker", help="join an existing study and run its queued trials")
    _study_options(w, url_help)
    w.add_argument("--max-trials", type=_positive_int, help="at most N trials from this worker")
    w.add_argument(
        "--index", type=_non_negative_int, help="worker index, for seeding (default: the process id)"
    )
    w.add_argument("--data-dir", help="directory with dataset files (default: $HPSEARCH_DATA_DIR)")
    w.add_argument(
        "--hypermodel", metavar="FILE.py:NAME", help="your copy of the study's KerasTuner hypermodel"
    )
    _worker_options(w)
    w.set_defaults(func=cmd_worker)

    g = sub.add_parser("storage-proxy", help="serve a storage to many workers over gRPC")
    _server_options(g, url_help, port=13000)
    g.set_defaults(func=cmd_storage_proxy)

    s = sub.add_parser("studies", help="list the studies in a storage")
    s.add_argument("--storage", help=url_help)
    s.set_defaults(func=cmd_studies)

    b = sub.add_parser("best", help="the best trial, or the Pareto front of a multi-objective study")
    _study_options(b, url_help)
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=cmd_best)

    v = sub.add_parser("validate", help="check space files without running anything")
    v.add_argument("space", nargs="+", metavar="SPACE", help="space YAML files or preset names")
    v.set_defaults(func=cmd_validate)

    c = sub.add_parser("create", help="create or resume a study and queue its budget; run nothing")
    c.add_argument("space", metavar="SPACE", help="a space YAML file or a preset name")
    c.add_argument("--study", help="study name (default: the space's name)")
    c.add_argument("--storage", help=url_help)
    c.add_argument(
        "--trials", type=_positive_int, help="trials the study should hold (default: budget.trials)"
    )
    c.set_defaults(func=cmd_create)

    db = sub.add_parser("dashboard", help="optuna-dashboard on a storage (no authentication: keep it local)")
    _server_options(db, url_help, port=8080)
    _artifacts_option(db)
    db.set_defaults(func=cmd_dashboard)

    rp = sub.add_parser("report", help="a self-contained HTML report of a study (plots, best trials)")
    _study_options(rp, url_help)
    rp.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")
    rp.set_defaults(func=cmd_report)

    ex = sub.add_parser("export", help="every trial of a study as CSV or JSON")
    _study_options(ex, url_help)
    ex.add_argument("--format", choices=["csv", "json"], required=True, help="csv or json")
    ex.add_argument("--out", help="file to write (default: stdout)")
    ex.set_defaults(func=cmd_export)

    d = sub.add_parser("devices", help="the GPUs found and where K workers would run")
    d.add_argument("--workers", type=_positive_int, default=1, help="plan for K workers")
    _device_options(d)
    d.set_defaults(func=cmd_devices)

    sp = sub.add_parser("spaces", help="list the bundled presets")
    sp.set_defaults(func=cmd_spaces)

    ev = sub.add_parser(
        "evaluate",
        help="retrain a trial, test it once on the test split, save the model and a confusion matrix",
        description="Retrain the chosen trial with its parameters (on train+validation for its best "
        "epoch count, or on train exactly as the trial ran), evaluate it once on the test split, print "
        "test accuracy / loss, the confusion matrix and a per-class precision / recall / F1 table, save "
        "OUT/STUDY-trialN/model.keras and confusion_matrix.png, and record the test metrics in the "
        "trial's user attrs. The search itself never reads the test split.",
    )
    _study_options(ev, url_help)
    ev.add_argument(
        "--trial",
        type=_non_negative_int,
        help="trial number (default: the best trial; with several "
        "objectives the Pareto trial best on the first one)",
    )
    ev.add_argument(
        "--fit",
        default="train+validation",
        choices=("train+validation", "train"),
        help=(
            "train+validation (default): both, for the trial's best_epoch epochs; train: repeat the trial "
            "as it ran (validation, early stopping with the best epoch restored)"
        ),
    )
    ev.add_argument("--out", default="hpsearch-eval", help="output directory (default: hpsearch-eval)")
    ev.add_argument("--data-dir", help="directory with dataset files (default: $HPSEARCH_DATA_DIR)")
    ev.add_argument(
        "--hypermodel", metavar="FILE.py:NAME", help="your copy of the study's KerasTuner hypermodel"
    )
    ev.set_defaults(func=cmd_evaluate)

    lr = sub.add_parser(
        "lr-find",
        help="learning-rate range test: loss against an exponentially growing rate over one epoch",
        description="Train one configuration of SPACE for one epoch of its training split while the "
        "learning rate grows by a constant factor each batch from --min-lr to --max-lr; print the rate "
        "with the lowest (smoothed) loss and a suggested rate (a tenth of it), save the loss-vs-rate plot, "
        "and optionally write a copy of SPACE whose optimizer.learning_rate is the suggested log range.",
    )
    lr.add_argument("space", metavar="SPACE", nargs="?", help="a space YAML file or a preset name")
    lr.add_argument("--study", help="instead of SPACE: a study's space and one of its trials' parameters")
    lr.add_argument("--trial", type=_non_negative_int, help="with --study: the trial (default: the best)")
    lr.add_argument("--storage", help=url_help)
    lr.add_argument(
        "--trial-params",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="fix parameters, e.g. optimizer=sgd training.batch_size=64 units=[256,128]; every other "
        "searched parameter takes its first choice, or its default when inside its range (else the low end)",
    )
    lr.add_argument("--min-lr", type=_positive_float, default=1e-6, help="first rate (default 1e-6)")
    lr.add_argument("--max-lr", type=_positive_float, default=10.0, help="last rate (default 10)")
    lr.add_argument("--plot", help="PNG to write (default: lr-find-SPACENAME.png)")
    lr.add_argument(
        "--write-space", metavar="PATH", help="write a copy of SPACE with the suggested range (a new file)"
    )
    lr.add_argument("--data-dir", help="directory with dataset files (default: $HPSEARCH_DATA_DIR)")
    lr.set_defaults(func=cmd_lr_find)
    return p


def _open(url: str, args: argparse.Namespace, *, create: bool = True) -> optuna.storages.BaseStorage:
    if args.heartbeat is None:
        text = os.environ.get("HPSEARCH_HEARTBEAT", "10")
        try:
            args.heartbeat = _positive_int(text)
        except argparse.ArgumentTypeError as e:
            raise ConfigError(f"HPSEARCH_HEARTBEAT: {e}") from None
    from search.study import open_storage  # a stale trial is re-queued

    return open_storage(url, create=create, heartbeat_interval=args.heartbeat)


def cmd_run(args: argparse.Namespace) -> int:
    from search.study.create import create_or_load
    from search.study.queue import slots, top_up
    from search.trial.data import load_for  # imported late: `hpsearch validate` needs none of this

    space = spaces.load(args.space)  # a rejected space stops here: nothing is written
    url = storage.resolve(args.storage)
    dataset = load_for(space, args.data_dir)  # missing data stops here too
    store = _open(url, args)
    study = create_or_load(space, store, study_name=args.study)
    trials = args.trials or space.budget.trials
    top_up(study, trials)
    counts = slots(study.get_trials(deepcopy=False))
    print(
        f"study {study.study_name!r} in {storage.redact(url)}: {counts.done}/{counts.used} trials done | "
        f"{dataset.name}: {len(dataset.y_train)} train / {len(dataset.y_val)} validation images "
        f"({dataset.source})",
        flush=True,
    )
    if counts.done >= trials and not counts.running and not counts.waiting:
        print(
            f"study {study.study_name!r} already has {counts.done} finished trials; nothing to run "
            "(raise --trials to run more)"
        )
    if args.workers > 1:
        from search.hypermodels.binding import worker_argument
        from search.worker.launcher import launch

        args.hypermodel = worker_argument(space)  # the workers import the file this run named
        code = launch(study.study_name, url, args)
    else:
        code = _work(study, space, dataset, store, url, args)
    from search.results.tables import front_table

    print()
    print(front_table(study, space.metrics))
    return code


def cmd_create(args: argparse.Namespace) -> int:
    from search.study.create import create_or_load
    from search.study.queue import slots, top_up

    space = spaces.load(args.space)
    url = storage.resolve(args.storage)
    study = create_or_load(space, storage.open_storage(url, heartbeat_interval=None), study_name=args.study)
    queued = top_up(study, args.trials or space.budget.trials)
    counts = slots(study.get_trials(deepcopy=False))
    print(
        f"study {study.study_name!r} in {storage.redact(url)}: {counts.done} done, {counts.running} running, "
        f"{counts.waiting} queued ({queued} added); workers: hpsearch worker --study {study.study_name}"
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from search.hypermodels.binding import bind_worker
    from search.study.create import load_space, open_study
    from search.trial.data import load_for

    url = storage.resolve(args.storage)
    store = _open(url, args, create=False)
    space = load_space(store, args.study)
    attrs = store.get_study_user_attrs(store.get_study_id_from_name(args.study))
    space = bind_worker(space, attrs, args.study, args.hypermodel)  # never a path read from the study
    dataset = load_for(space, args.data_dir)
    index = os.getpid() if args.index is None else args.index
    study = open_study(space, store, args.study, worker=index)
    print(
        f"worker {args.index if args.index is not None else f'pid {index}'} on study {args.study!r} "
        f"in {storage.redact(url)} | {dataset.name}: {len(dataset.y_train)} train images",
        flush=True,
    )
    code = _work(study, space, dataset, store, url, args, as_worker=True)
    from search.results.tables import front_table

    print()
    print(front_table(study, space.metrics))
    return code


def _work(
    study: QueueStudy,
    space: spaces.Space,
    dataset: Dataset,
    store: optuna.storages.BaseStorage,
    url: str,
    args: argparse.Namespace,
    *,
    as_worker: bool = False,
) -> int:
    """Run this process's share of the study; the exit code."""
    from search.worker import devices, recycle
    from search.worker.loop import run
    from search.worker.native import quiet_native_stderr

    gpus, why = devices.discover()
    held = devices.claim(
        gpus, devices.Policy(args.device, args.per_gpu), start=getattr(args, "index", None) or 0
    )
    devices.apply(held.placement)  # before TensorFlow is imported
    print(f"device: {held.placement.describe() if gpus else 'CPU (' + why + ')'}", flush=True)
    from search.results import artifacts

    artifacts.use(artifacts.open_store(artifacts.resolve_dir(args.artifacts, url)))
    stop = threading.Event()
    with quiet_native_stderr(enabled=not args.debug):
        from search.trial.objective import Objective

        devices.configure_tf(held.placement)
        objective = Objective(
            space,
            dataset,
            stop=stop,
            device=held.placement.describe(),
            device_info=devices.as_dict(held.placement),
            on_gpu=held.placement.gpu is not None,
        )
    recycler = recycle.Recycler(args.max_memory_growth, enabled=args.argv is not None)  # budgets survive it
    recycler.reseed(study, space, getattr(args, "index", None) or 0)
    max_trials, timeout = recycler.budgets(
        getattr(args, "max_trials", None), args.timeout or space.budget.timeout
    )
    result = run(
        study,
        space,
        objective,
        stop=stop,
        max_trials=max_trials,
        timeout=timeout,
        max_failures_in_row=args.max_failures,
        heartbeat=args.heartbeat is not None and storage.backend(url) in ("sqlite", "postgresql"),
        recycle=recycler,
    )
    if result.recycle:
        recycle.restart(recycler, args.argv or [])  # does not return: the same command, a fresh process
    if result.signalled:
        handed_back = "" if result.requeued is None else f"trial {result.requeued} was re-queued; "
        print(f"{result.signalled}: {handed_back}the study resumes where it stopped", file=sys.stderr)
        return 0 if as_worker else 130
    if result.stop_reason:
        print(f"hpsearch: stopped: {result.stop_reason}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:]) if argv is None else None  # a worker restarts itself only as a command
    # our progress lines replace Optuna's per-trial logs (failed trials included)
    optuna.logging.set_verbosity(optuna.logging.INFO if args.debug else optuna.logging.ERROR)
    try:
        return int(args.func(args))
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"hpsearch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\nhpsearch: interrupted", file=sys.stderr)
        return 130
