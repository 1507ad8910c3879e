"""Commands that check inputs or use one trial: ``validate``, ``spaces``, ``devices``, ``evaluate``,
``lr-find``.

Heavy imports stay inside the handlers so that ``hpsearch --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

import optuna

import spaces
import storage
from search.cli.options import (
    DATA,
    DATA_DIR,
    DEVICE,
    HYPERMODEL,
    IN_STUDY,
    JSON,
    SPACE,
    STORAGE,
    STUDY,
    non_negative_int,
    positive_float,
    positive_int,
)
from search.cli.output import print_json
from search.cli.registry import Commands, option
from search.errors import ConfigError

__all__ = ["commands", "space_json"]

commands = Commands()


def space_json(source: str, space: spaces.Space) -> dict[str, Any]:
    """One entry of ``hpsearch validate --json``."""
    return {
        "source": source,
        "name": space.name,
        "family": space.family,
        "dataset": space.dataset.name,
        "searched": [p.name for p in space.params if p.searched],
        "hypermodel": None if space.hypermodel is None else space.hypermodel.spec,
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in space.objectives],
        "sampler": space.sampler.type,
        "pruner": space.pruner.type,
        "trials": space.budget.trials,
    }


@commands.command(
    "validate",
    SPACE.but(nargs="+", help="space YAML files or preset names"),
    JSON,
    help="check space files (and import their hypermodels) without running anything",
)
def cmd_validate(args: argparse.Namespace) -> int:
    from search.cli.checks import validate_here  # a hypermodel is built once: what `run` would refuse

    if args.json:  # every file checked before anything is printed: one document or one error
        checked = [space_json(name, validate_here(name, debug=args.debug)) for name in args.space]
        print_json({"spaces": checked})
        return 0
    for name in args.space:
        space = validate_here(name, debug=args.debug)
        searched = f"{sum(p.searched for p in space.params)} searched parameters"
        if space.hypermodel is not None:  # its parameters exist only once build(hp) runs
            searched = f"{space.hypermodel.spec} (its hp.* calls) + {searched} in training"
        objectives = ", ".join(f"{o.direction} {o.metric}" for o in space.objectives)
        print(
            f"{name}: ok - {space.name}: {space.family} on {space.dataset.name}, {searched}, "
            f"{objectives}, sampler {space.sampler.type}, pruner {space.pruner.type}"
        )
    return 0


@commands.command("spaces", JSON, help="list the bundled presets")
def cmd_spaces(args: argparse.Namespace) -> int:
    presets = spaces.presets()
    if args.json:
        print_json({"presets": [{"name": k, "description": v} for k, v in presets.items()]})
        return 0
    width = max(map(len, presets))
    for name, description in presets.items():
        print(f"{name:<{width}}  {description}")
    return 0


@commands.command(
    "devices",
    option("--workers", type=positive_int, default=1, help="plan for K workers"),
    DEVICE,
    JSON,
    help="the GPUs found and where K workers would run",
)
def cmd_devices(args: argparse.Namespace) -> int:
    from search.worker import devices

    policy = devices.Policy(args.device, args.per_gpu)
    gpus, why = devices.discover()
    plans = [devices.plan(i, gpus, policy) for i in range(args.workers)]  # as `run --workers K` claims
    if args.json:
        print_json(
            {
                "gpus": [
                    {
                        "index": g.index,
                        "uuid": g.uuid,
                        "name": g.name,
                        "memory_used_mib": g.memory_used_mib,
                        "memory_total_mib": g.memory_total_mib,
                        "utilization": g.utilization,
                        "busy": devices.busy(g, policy),
                    }
                    for g in gpus
                ],
                "no_gpu": why or None,
                "workers": [
                    {
                        "worker": i,
                        "device": p.describe(),
                        "placement": devices.as_dict(p),
                        "memory_cap_mib": p.memory_limit_mib,
                    }
                    for i, p in enumerate(plans)
                ],
            }
        )
        return 0
    if not gpus:
        print(f"no GPU: {why}; every worker trains on the CPU")
    for g in gpus:
        state = "busy" if devices.busy(g, policy) else "free"
        print(
            f"GPU {g.index}  {g.name}  {g.uuid}  {g.memory_used_mib}/{g.memory_total_mib} MiB used  "
            f"{g.utilization}% util  {state}"
        )
    for i, placement in enumerate(plans):
        cap = placement.memory_limit_mib
        print(f"worker {i}: {placement.describe()}" + (f", memory cap {cap} MiB" if cap else ""))
    return 0


@commands.command(
    "evaluate",
    IN_STUDY,
    option(
        "--trial",
        type=non_negative_int,
        help="trial number (default: the best trial; with several "
        "objectives the Pareto trial best on the first one)",
    ),
    option(
        "--fit",
        default="train+validation",
        choices=("train+validation", "train"),
        help="train+validation (default): both, for the trial's best_epoch epochs; train: repeat the trial "
        "as it ran (validation, early stopping with the best epoch restored)",
    ),
    option("--out", default="hpsearch-eval", help="output directory (default: hpsearch-eval)"),
    DATA_DIR,
    HYPERMODEL,
    DATA,
    help="retrain a trial, test it once on the test split, save the model and a confusion matrix",
    description="Retrain the chosen trial with its parameters (on train+validation for its best "
    "epoch count, or on train exactly as the trial ran), evaluate it once on the test split, print "
    "test accuracy / loss, the confusion matrix and a per-class precision / recall / F1 table, save "
    "OUT/STUDY-trialN/model.keras and confusion_matrix.png, and record the test metrics in the "
    "trial's user attrs. The search itself never reads the test split.",
)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from search.tools.evaluate import evaluate, format_evaluation
    from search.worker.native import quiet_native_stderr

    store = storage.open_storage(storage.resolve(args.storage), create=False, heartbeat_interval=None)
    with quiet_native_stderr(enabled=not args.debug):  # TensorFlow's start-up chatter stays hidden
        result = evaluate(
            store,
            args.study,
            trial=args.trial,
            out_dir=args.out,
            fit=args.fit,
            data_dir=args.data_dir,
            hypermodel=args.hypermodel,
            data=args.data,
        )
    print(format_evaluation(result))
    return 0


@commands.command(
    "lr-find",
    SPACE.but(nargs="?"),
    STUDY.but(required=False, help="instead of SPACE: a study's space and one of its trials' parameters"),
    option("--trial", type=non_negative_int, help="with --study: the trial (default: the best)"),
    STORAGE,
    option(
        "--trial-params",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="fix parameters, e.g. optimizer=sgd training.batch_size=64 units=[256,128]; every other "
        "searched parameter takes its first choice, or its default when inside its range (else the low end)",
    ),
    option("--min-lr", type=positive_float, default=1e-6, help="first rate (default 1e-6)"),
    option("--max-lr", type=positive_float, default=10.0, help="last rate (default 10)"),
    option("--plot", help="PNG to write (default: lr-find-SPACENAME.png)"),
    option(
        "--write-space", metavar="PATH", help="write a copy of SPACE with the suggested range (a new file)"
    ),
    DATA_DIR,
    DATA,
    help="learning-rate range test: loss against an exponentially growing rate over one epoch",
    description="Train one configuration of SPACE for one epoch of its training split while the "
    "learning rate grows by a constant factor each batch from --min-lr to --max-lr; print the rate "
    "with the lowest (smoothed) loss and a suggested rate (a tenth of it), save the loss-vs-rate plot, "
    "and optionally write a copy of SPACE whose optimizer.learning_rate is the suggested log range.",
)
def cmd_lr_find(args: argparse.Namespace) -> int:
    from search.worker.native import quiet_native_stderr

    if (args.space is None) == (args.study is None):
        raise ConfigError("lr-find: give either SPACE or --study NAME")
    if args.study is None and args.trial is not None:
        raise ConfigError("lr-find: --trial needs --study")
    if args.study is not None and args.trial_params:
        raise ConfigError("lr-find: --trial-params is for SPACE; --study takes the trial's parameters")
    space = spaces.load(args.space) if args.space is not None else None
    trial_params_: dict[str, Any] | None = None
    if space is None:
        from search.results.select import choose_trial, trial_params
        from search.study.create import load_space

        store = storage.open_storage(storage.resolve(args.storage), create=False, heartbeat_interval=None)
        space = load_space(store, args.study, data=args.data)
        trial_params_ = trial_params(
            choose_trial(optuna.load_study(study_name=args.study, storage=store), args.trial)
        )
    from search.trial import backend as backends

    backends.select(backends.resolve(None, space))  # $KERAS_BACKEND, else the space's; before Keras starts
    with quiet_native_stderr(enabled=not args.debug):
        from search.tools import lr_find

        if trial_params_ is not None:
            params = trial_params_
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
