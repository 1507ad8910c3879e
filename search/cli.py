"""The ``hpsearch`` command line: one function per subcommand, ``main(argv) -> exit code``.

User errors print one line (``hpsearch: error: ...``) and exit 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import spaces
import storage
from search.errors import HPSearchError

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
    return value


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
        "--trials", type=_positive_int, help="finished trials the study should hold (default: budget.trials)"
    )
    r.add_argument("--timeout", type=_positive_float, help="stop starting new trials after S seconds")
    r.add_argument("--data-dir", help="directory with dataset files (default: $HPSEARCH_DATA_DIR)")
    r.add_argument(
        "--max-failures", type=_positive_int, default=5, help="stop after N failed trials in a row"
    )
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("studies", help="list the studies in a storage")
    s.add_argument("--storage", help=url_help)
    s.set_defaults(func=cmd_studies)

    b = sub.add_parser("best", help="the best trial, or the Pareto front of a multi-objective study")
    b.add_argument("--study", required=True, help="study name")
    b.add_argument("--storage", help=url_help)
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.set_defaults(func=cmd_best)

    v = sub.add_parser("validate", help="check space files without running anything")
    v.add_argument("space", nargs="+", metavar="SPACE", help="space YAML files or preset names")
    v.set_defaults(func=cmd_validate)

    sp = sub.add_parser("spaces", help="list the bundled presets")
    sp.set_defaults(func=cmd_spaces)
    return p


def cmd_run(args: argparse.Namespace) -> int:
    space = spaces.load(args.space)  # a rejected space stops here: nothing is written
    url = storage.resolve(args.storage)
    from search import data  # imported late: `hpsearch validate` needs none of this

    dataset = data.load_dataset(
        space.dataset.name,
        data_dir=args.data_dir,
        validation_fraction=space.dataset.validation_fraction,
        limit=space.dataset.limit,
        seed=space.seed,
    )
    store = storage.open_storage(url)
    from search.native import quiet_native_stderr
    from search.report import front_table
    from search.study import create_or_load
    from search.worker import finished_count, run

    with quiet_native_stderr(enabled=not args.debug):
        from search.objective import Objective

        objective = Objective(space, dataset, storage=store)
    study = create_or_load(space, store, study_name=args.study)
    trials = args.trials or space.budget.trials
    timeout = args.timeout or space.budget.timeout
    print(
        f"study {study.study_name!r} in {storage.redact(url)}: "
        f"{finished_count(study)}/{trials} trials done | "
        f"{dataset.name}: {len(dataset.y_train)} train / {len(dataset.y_val)} validation images "
        f"({dataset.source}) | {space.family} on {objective.device}",
        flush=True,
    )
    try:
        result = run(
            study, space, objective, trials=trials, timeout=timeout, max_failures_in_row=args.max_failures
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are saved; run the same command to resume", file=sys.stderr)
        return 130
    print()
    print(front_table(study, space.metrics))
    if result.stop_reason:
        print(f"hpsearch: stopped: {result.stop_reason}", file=sys.stderr)
        return 1
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from search.report import studies_table

    print(studies_table(storage.open_storage(storage.resolve(args.storage), create=False)))
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    import optuna

    from search.report import best_trials, front_table, trial_json
    from search.study import load_space

    store = storage.open_storage(storage.resolve(args.storage), create=False)
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
        searched = sum(p.searched for p in space.params)
        objectives = ", ".join(f"{o.direction} {o.metric}" for o in space.objectives)
        print(
            f"{name}: ok - {space.name}: {space.family} on {space.dataset.name}, {searched} searched "
            f"parameters, {objectives}, sampler {space.sampler.type}, pruner {space.pruner.type}"
        )
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    presets = spaces.presets()
    width = max(map(len, presets))
    for name, description in presets.items():
        print(f"{name:<{width}}  {description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    args = _parser().parse_args(argv)
    import optuna

    # our progress lines replace Optuna's per-trial logs (failed trials included)
    optuna.logging.set_verbosity(optuna.logging.INFO if args.debug else optuna.logging.ERROR)
    try:
        return int(args.func(args))
    except HPSearchError as e:
        if args.debug:
            raise
        print(f"hpsearch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
