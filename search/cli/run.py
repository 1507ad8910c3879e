"""Commands that fill a study and run its trials: ``run``, ``create``, ``worker``.

Heavy imports stay inside the handlers so that ``hpsearch --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

import optuna

import spaces
import storage
from search import keys
from search.cli.checks import load_checked
from search.cli.options import (
    DATA,
    DATA_DIR,
    HYPERMODEL,
    NEW_STUDY,
    SPACE,
    STORAGE,
    STUDY,
    TRIALS,
    WARM_START,
    WORKER,
    non_negative_int,
    positive_int,
)
from search.cli.registry import Commands, option
from search.errors import ConfigError

if TYPE_CHECKING:
    from search.study.queue import QueueStudy
    from search.trial.data import Dataset

__all__ = ["commands"]

commands = Commands()


def _open(url: str, args: argparse.Namespace, *, create: bool = True) -> optuna.storages.BaseStorage:
    """The storage with heartbeats; fills in ``args.heartbeat`` from ``$HPSEARCH_HEARTBEAT``."""
    if args.heartbeat is None:
        text = os.environ.get("HPSEARCH_HEARTBEAT", "10")
        try:
            args.heartbeat = positive_int(text)
        except argparse.ArgumentTypeError as e:
            raise ConfigError(f"HPSEARCH_HEARTBEAT: {e}") from None
    from search.study import open_storage  # a stale trial is re-queued

    return open_storage(url, create=create, heartbeat_interval=args.heartbeat)


def _work(
    study: QueueStudy,
    space: spaces.Space,
    dataset: Dataset,
    url: str,
    args: argparse.Namespace,
    *,
    exit_on_signal: int = 130,
    own_verdict: bool = False,
) -> int:
    """This process's share of the study (``search.worker.run_worker``); the exit code."""
    from search.worker import run_worker

    return run_worker(
        study,
        space,
        dataset,
        url,
        device=args.device,
        per_gpu=args.per_gpu,
        backend=args.backend,
        index=getattr(args, "index", None),
        max_trials=getattr(args, "max_trials", None),
        timeout=args.timeout,
        max_failures=args.max_failures,
        heartbeat_interval=args.heartbeat,
        max_memory_growth=args.max_memory_growth,
        artifacts_dir=args.artifacts,
        restart_argv=args.argv,
        quiet=not args.debug,
        exit_on_signal=exit_on_signal,
        own_verdict=own_verdict,
    )


@commands.command(
    "run",
    SPACE.but(help="a space YAML file or a preset name (see `hpsearch spaces`)"),
    NEW_STUDY,
    STORAGE,
    TRIALS,
    WARM_START,
    DATA_DIR,
    option("--workers", type=positive_int, default=1, help="run K local worker processes"),
    WORKER,
    help="create or resume a study and run its trials",
)
def cmd_run(args: argparse.Namespace) -> int:
    from search.study.create import create_or_load
    from search.study.queue import slots, top_up
    from search.trial.data import load_for  # imported late: `hpsearch validate` needs none of this

    space = load_checked(
        args.space, data_dir=args.data_dir, backend=args.backend
    )  # a rejected space stops here
    url = storage.resolve(args.storage)
    dataset = load_for(space, args.data_dir)  # missing data stops here too
    store = _open(url, args)
    study = create_or_load(space, store, study_name=args.study)
    trials = args.trials or space.budget.trials
    _warm(study, space, store, args.warm_start, trials)
    top_up(study, trials)
    counts = slots(study.get_trials(deepcopy=False))
    print(
        f"study {study.study_name!r} in {storage.redact(url)}: {counts.done}/{counts.used} trials done | "
        f"{dataset.name}: {len(dataset.y_train)} train / {len(dataset.y_val)} validation samples "
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
        from search.study.data_ref import worker_argument as data_argument
        from search.worker.launcher import launch

        args.hypermodel = worker_argument(space)  # the workers import the file this run named
        args.data = data_argument(space)  # ... and call the data loader it named
        code = launch(url, [_worker_argv(study.study_name, i, args) for i in range(args.workers)])
    else:
        code = _work(study, space, dataset, url, args)
    if args.timeout or space.budget.timeout:
        from search.study.queue import drop_unrun

        dropped = drop_unrun(study)
        if dropped:
            print(f"timeout: {dropped} queued trials never started were removed (run again to queue them)")
    from search.results.tables import front_table

    print()
    print(front_table(study, space.metrics))
    return _verdict(study, code, launched=args.workers > 1)


def _own_copies(space: spaces.Space) -> str:
    """What a worker must name itself: the hypermodel and the data loader this study runs."""
    from search.hypermodels.binding import worker_argument
    from search.study.data_ref import worker_argument as data_argument

    hypermodel, data = worker_argument(space), data_argument(space)
    return (f" --hypermodel {hypermodel}" if hypermodel else "") + (f" --data {data}" if data else "")


def _warm(
    study: optuna.Study,
    space: spaces.Space,
    store: optuna.storages.BaseStorage,
    source: str | None,
    budget: int,
) -> None:
    """``--warm-start SOURCE``: queue SOURCE's best fitting configurations first (once per study)."""
    if source is not None:
        from search.study.warm import start_from

        print(start_from(study, space, store, source, budget), flush=True)


def _verdict(study: optuna.Study, code: int, *, launched: bool = False) -> int:
    """``run``'s exit code: 1, with one line, when it ended and no trial of the study completed.

    A worker's own code wins (1 stopped after failures in a row, 130 interrupted), but local
    workers that failed (``launched``: each said why) still end in the study's line; trials
    still running elsewhere may yet complete, so they leave the verdict at 0.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    judged = code == 0 or (launched and code == 1)
    if not judged or TrialState.COMPLETE in states or TrialState.RUNNING in states:
        return code
    counts = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in TrialState if s in states) or "none"
    failed = [t for t in trials if t.state == TrialState.FAIL and keys.FAIL_REASON in t.user_attrs]
    last = f"; last failure: {failed[-1].user_attrs[keys.FAIL_REASON]}" if failed else ""
    name = study.study_name
    print(f"hpsearch: no trial of study {name!r} completed (trials: {counts}){last}", file=sys.stderr)
    return 1


@commands.command(
    "create",
    SPACE,
    NEW_STUDY,
    STORAGE,
    TRIALS,
    WARM_START,
    help="create or resume a study and queue its budget; run nothing",
)
def cmd_create(args: argparse.Namespace) -> int:
    from search.study.create import create_or_load
    from search.study.queue import slots, top_up

    space = load_checked(args.space)  # before the study is written
    url = storage.resolve(args.storage)
    store = storage.open_storage(url, heartbeat_interval=None)
    study = create_or_load(space, store, study_name=args.study)
    _warm(study, space, store, args.warm_start, args.trials or space.budget.trials)
    queued = top_up(study, args.trials or space.budget.trials)
    counts = slots(study.get_trials(deepcopy=False))
    print(
        f"study {study.study_name!r} in {storage.redact(url)}: {counts.done} done, {counts.running} running, "
        f"{counts.waiting} queued ({queued} added); workers: hpsearch worker --study {study.study_name}"
        + _own_copies(space)
    )
    return 0


@commands.command(
    "worker",
    STUDY,
    STORAGE,
    option("--max-trials", type=positive_int, help="at most N trials from this worker"),
    option("--index", type=non_negative_int, help="worker index, for seeding (default: the process id)"),
    DATA_DIR,
    HYPERMODEL,
    DATA,
    WORKER,
    help="join an existing study and run its queued trials",
)
def cmd_worker(args: argparse.Namespace) -> int:
    from search.hypermodels.binding import bind_worker
    from search.study.create import load_space, open_study
    from search.trial.data import load_for

    url = storage.resolve(args.storage)
    store = _open(url, args, create=False)
    space = load_space(store, args.study, data=args.data)
    attrs = store.get_study_user_attrs(store.get_study_id_from_name(args.study))
    space = bind_worker(space, attrs, args.study, args.hypermodel)  # never a path read from the study
    dataset = load_for(space, args.data_dir)
    index = os.getpid() if args.index is None else args.index
    study = open_study(space, store, args.study, worker=index)
    print(
        f"worker {args.index if args.index is not None else f'pid {index}'} on study {args.study!r} "
        f"in {storage.redact(url)} | {dataset.name}: {len(dataset.y_train)} train samples",
        flush=True,
    )
    code = _work(study, space, dataset, url, args, exit_on_signal=0, own_verdict=True)  # 0: handed back
    from search.results.tables import front_table

    print()
    print(front_table(study, space.metrics))
    return code


def _worker_argv(study: str, index: int, args: argparse.Namespace) -> list[str]:
    """``hpsearch worker ...`` for local worker ``index`` of ``run --workers K``: this run's options."""
    argv = ["--debug"] if args.debug else []
    argv += ["worker", "--study", study, "--index", str(index), "--heartbeat", str(args.heartbeat)]
    argv += [
        "--max-failures",
        str(args.max_failures),
        "--device",
        args.device,
        "--per-gpu",
        str(args.per_gpu),
    ]
    argv += ["--max-memory-growth", str(args.max_memory_growth)]
    for flag, value in (
        ("--timeout", args.timeout),
        ("--data-dir", args.data_dir),
        ("--artifacts", args.artifacts),
        ("--hypermodel", args.hypermodel),
        ("--backend", args.backend),
    ):
        if value:
            argv += [flag, str(value)]
    return argv
