"""Subcommands that look at studies or prepare them, as opposed to running trials.

``search.cli.main`` declares their options; each function takes the parsed arguments and returns the
exit code. Heavy imports stay inside the functions so that ``hpsearch --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys

import optuna

import spaces
import storage
from search.errors import ConfigError

__all__ = [
    "cmd_best",
    "cmd_dashboard",
    "cmd_devices",
    "cmd_evaluate",
    "cmd_export",
    "cmd_lr_find",
    "cmd_report",
    "cmd_spaces",
    "cmd_storage_proxy",
    "cmd_studies",
    "cmd_validate",
]


def cmd_dashboard(args: argparse.Namespace) -> int:
    import optuna_dashboard

    from search.results import artifacts

    url = storage.resolve(args.storage)
    store = storage.open_storage(url, create=False, heartbeat_interval=None)
    directory = artifacts.resolve_dir(args.artifacts, url)
    artifact_store = artifacts.open_store(directory)
    print(
        f"optuna-dashboard for {storage.redact(url)} at http://{args.host}:{args.port} "
        f"(artifacts: {directory})",
        flush=True,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: optuna-dashboard has no authentication; bound to {args.host}, anyone who can reach "
            f"port {args.port} can read and change every study. Prefer --host 127.0.0.1 and an SSH tunnel "
            f"(ssh -L {args.port}:127.0.0.1:{args.port} HOST).",
            file=sys.stderr,
            flush=True,
        )
    optuna_dashboard.run_server(store, host=args.host, port=args.port, artifact_store=artifact_store)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search.results.html_report import write_report
    from search.study.create import load_space

    store = storage.open_storage(storage.resolve(args.storage), create=False, heartbeat_interval=None)
    space = load_space(store, args.study)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist")
    study = optuna.load_study(study_name=args.study, storage=store)
    write_report(study, space.metrics, out)
    print(f"report of study {args.study!r} ({len(study.trials)} trials) written to {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search.results.export import export_trials
    from search.study.create import load_space

    store = storage.open_storage(storage.resolve(args.storage), create=False, heartbeat_interval=None)
    space = load_space(store, args.study)
    if args.out and not Path(args.out).parent.is_dir():
        raise ConfigError(f"--out {args.out}: directory {Path(args.out).parent} does not exist")
    study = optuna.load_study(study_name=args.study, storage=store)
    text = export_trials(study, space.metrics, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(study.trials)} trials of study {args.study!r} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from search.worker import devices

    policy = devices.Policy(args.device, args.per_gpu)
    gpus, why = devices.discover()
    if not gpus:
        print(f"no GPU: {why}; every worker trains on the CPU")
    for g in gpus:
        state = "busy" if devices.busy(g, policy) else "free"
        print(
            f"GPU {g.index}  {g.name}  {g.uuid}  {g.memory_used_mib}/{g.memory_total_mib} MiB used  "
            f"{g.utilization}% util  {state}"
        )
    for i in range(args.workers):  # what `run --workers K` does: worker i claims from slot i on
        placement = devices.plan(i, gpus, policy)
        cap = placement.memory_limit_mib
        print(f"worker {i}: {placement.describe()}" + (f", memory cap {cap} MiB" if cap else ""))
    return 0


def cmd_storage_proxy(args: argparse.Namespace) -> int:
    url = storage.resolve(args.storage)
    store = storage.open_storage(url, heartbeat_interval=None)
    print(f"serving {storage.redact(url)} to gRPC clients at grpc://{args.host}:{args.port}", flush=True)
    optuna.storages.run_grpc_proxy_server(store, host=args.host, port=args.port)
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from search.results.tables import studies_table

    store = storage.open_storage(storage.resolve(args.storage), create=False, heartbeat_interval=None)
    print(studies_table(store))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from search.results.tables import best_trials, front_table, trial_json
    from search.study.create import load_space

    store = storage.open_storage(storage.resolve(args.storage), create=False, heartbeat_interval=None)
    space = load_space(store, args.study)
    study = optuna.load_study(study_name=args.study, storage=store)
    if args.json:
        payload = {
            "study": args.study,
            "directions": list(space.directions),
            "metrics": list(space.metrics),
            "best_trials": [trial_json(t, space.metrics) for t in best_trials(study)],
        }
        print(json.dumps(payload, indent=2))
    else:
        print(front_table(study, space.metrics))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    for name in args.space:
        space = spaces.load(name)
        searched = f"{sum(p.searched for p in space.params)} searched parameters"
        if space.hypermodel is not None:  # its parameters exist only once build(hp) runs
            searched = f"{space.hypermodel.spec} (its hp.* calls) + {searched} in training"
        objectives = ", ".join(f"{o.direction} {o.metric}" for o in space.objectives)
        print(
            f"{name}: ok - {space.name}: {space.family} on {space.dataset.name}, {searched}, "
            f"{objectives}, sampler {space.sampler.type}, pruner {space.pruner.type}"
        )
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    presets = spaces.presets()
    width = max(map(len, presets))
    for name, description in presets.items():
        print(f"{name:<{width}}  {description}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from search.tools.evaluate import evaluate, format_evaluation

    store = storage.open_storage(storage.resolve(args.storage), create=False, heartbeat_interval=None)
    from search.worker.native import quiet_native_stderr

    with quiet_native_stderr(enabled=not args.debug):  # TensorFlow's start-up chatter stays hidden
        result = evaluate(
            store,
            args.study,
            trial=args.trial,
            out_dir=args.out,
            fit=args.fit,
            data_dir=args.data_dir,
            hypermodel=args.hypermodel,
        )
    print(format_evaluation(result))
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from search.worker.native import quiet_native_stderr

    if (args.space is None) == (args.study is None):
        raise ConfigError("lr-find: give either SPACE or --study NAME")
    if args.study is None and args.trial is not None:
        raise ConfigError("lr-find: --trial needs --study")
    if args.study is not None and args.trial_params:
        raise ConfigError("lr-find: --trial-params is for SPACE; --study takes the trial's parameters")
    space = spaces.load(args.space) if args.space is not None else None
    with quiet_native_stderr(enabled=not args.debug):
        from search.tools import lr_find

        if space is None:
            from search.results.select import choose_trial, trial_params
            from search.study.create import load_space

            store = storage.open_storage(storage.resolve(args.storage), create=False, heartbeat_interval=None)
            space = load_space(store, args.study)
            trial = choose_trial(optuna.load_study(study_name=args.study, storage=store), args.trial)
            params = trial_params(trial)
        else:
            params = lr_find.pick_params(space, lr_find.parse_overrides(args.trial_params))
        from search.trial.data import load_for

        dataset = load_for(space, args.data_dir)
        found = lr_find.range_test(space, dataset, params, min_lr=args.min_lr, max_lr=args.max_lr)
    shown = " ".join(
        f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in params.items() if k != "learning_rate"
    )
    stopped = " (stopped: the loss diverged)" if found.stopped_early else ""
    print(
        f"{space.name}: {len(found.losses)} batches, rate {found.min_lr:g} .. {found.rates[-1]:.3g}{stopped}"
    )
    print(f"configuration: {shown}")
    print(
        f"lowest loss at learning rate {found.best:.3g}; suggested learning rate {found.suggested:.3g} "
        f"(range {found.low:.3g} .. {found.high:.3g})"
    )
    title = f"{space.name}: learning-rate range test"
    print(f"plot: {lr_find.plot(found, args.plot or f'lr-find-{space.name}.png', title=title)}")
    if args.write_space:
        print(f"space with the suggested range: {lr_find.write_space(space, found, args.write_space)}")
    return 0
