"""Commands that read or serve stored studies: ``studies``, ``best``, ``report``, ``export``,
``dashboard``, ``storage-proxy``.

Heavy imports stay inside the handlers so that ``hpsearch --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import optuna

import storage
from search.cli.options import ARTIFACTS, JSON, STORAGE, STUDY, server
from search.cli.output import print_json
from search.cli.registry import Commands, option
from search.errors import ConfigError, StorageError
from spaces import check_name

__all__ = ["commands", "studies_json"]

commands = Commands()

# best, report and export read a study and name no file after it: they take any name a study in
# the storage has (a plain Optuna script's "lr sweep" too); a name outside hpsearch's rule that no
# study has is refused by that rule.
ANY_STUDY = (
    STUDY.but(type=str, help="study name (any study in the storage, made by hpsearch or not)"),
    STORAGE,
)


def _read(url_option: str | None) -> optuna.storages.BaseStorage:
    """An existing storage, opened for reading (a missing SQLite file is an error, never created)."""
    return storage.open_storage(storage.resolve(url_option), create=False, heartbeat_interval=None)


def studies_json(store: optuna.storages.BaseStorage) -> dict[str, Any]:
    """``hpsearch studies --json``: every study with its directions, trials by state and best trials."""
    from search.results.facts import metric_names
    from search.results.select import best_trials

    out = []
    for s in optuna.get_all_study_summaries(store, include_best_trial=False):
        study = optuna.load_study(study_name=s.study_name, storage=store)
        trials = study.get_trials(deepcopy=False)
        metrics = metric_names(study)
        states = {st.name.lower(): sum(t.state == st for t in trials) for st in optuna.trial.TrialState}
        out.append(
            {
                "study": s.study_name,
                "directions": [d.name.lower() for d in s.directions],
                "metrics": metrics,
                "trials": len(trials),
                "states": {k: n for k, n in states.items() if n},
                "best_trials": [
                    {"number": t.number, "values": dict(zip(metrics, t.values or [], strict=False))}
                    for t in best_trials(study)
                ],
            }
        )
    return {"studies": out}


@commands.command("studies", STORAGE, JSON, help="list the studies in a storage")
def cmd_studies(args: argparse.Namespace) -> int:
    store = _read(args.storage)
    if args.json:
        print_json(studies_json(store))
    else:
        from search.results.tables import studies_table

        print(studies_table(store))
    return 0


def _study(args: argparse.Namespace) -> optuna.Study:
    """``--study`` in ``--storage``: made by hpsearch or by any Optuna script."""
    from search.results.facts import load_study

    try:
        return load_study(_read(args.storage), args.study)
    except StorageError:
        check_name(args.study, "argument --study")  # a name hpsearch's rule refuses: that rule's line
        raise


@commands.command(
    "best", ANY_STUDY, JSON, help="the best trial, or the Pareto front of a multi-objective study"
)
def cmd_best(args: argparse.Namespace) -> int:
    from search.results.facts import metric_names
    from search.results.tables import best_trials, front_table, trial_json

    study = _study(args)
    metrics = metric_names(study)
    if args.json:
        payload = {
            "study": args.study,
            "directions": [d.name.lower() for d in study.directions],
            "metrics": metrics,
            "best_trials": [trial_json(t, metrics) for t in best_trials(study)],
        }
        print_json(payload)
    else:
        print(front_table(study, metrics))
    return 0


@commands.command(
    "report",
    ANY_STUDY,
    option("--out", default="report.html", help="the HTML file to write (default: report.html)"),
    help="a self-contained HTML report of a study (plots, best trials)",
)
def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search.results.facts import metric_names
    from search.results.html_report import write_report

    study = _study(args)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist")
    write_report(study, metric_names(study), out)
    print(f"report of study {args.study!r} ({len(study.trials)} trials) written to {out}")
    return 0


@commands.command(
    "export",
    ANY_STUDY,
    option("--format", choices=["csv", "json"], required=True, help="csv or json"),
    option("--out", help="file to write (default: stdout)"),
    help="every trial of a study as CSV or JSON",
)
def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search.results.export import export_trials
    from search.results.facts import metric_names

    study = _study(args)
    if args.out and not Path(args.out).parent.is_dir():
        raise ConfigError(f"--out {args.out}: directory {Path(args.out).parent} does not exist")
    text = export_trials(study, metric_names(study), args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(study.trials)} trials of study {args.study!r} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


@commands.command(
    "dashboard",
    server(port=8080),
    ARTIFACTS,
    help="optuna-dashboard on a storage (no authentication: keep it local)",
)
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
    _warn_if_open("optuna-dashboard", args.host, args.port)
    optuna_dashboard.run_server(store, host=args.host, port=args.port, artifact_store=artifact_store)
    return 0


@commands.command(
    "storage-proxy",
    server(port=13000),
    help="serve a storage to many workers over gRPC (no authentication: keep it on a private network)",
)
def cmd_storage_proxy(args: argparse.Namespace) -> int:
    url = storage.resolve(args.storage)
    store = storage.open_storage(url, heartbeat_interval=None)
    print(f"serving {storage.redact(url)} to gRPC clients at grpc://{args.host}:{args.port}", flush=True)
    _warn_if_open(
        "the storage proxy",
        args.host,
        args.port,
        advice="Bind it to an address only your workers reach (a private network), or firewall the port.",
    )
    optuna.storages.run_grpc_proxy_server(store, host=args.host, port=args.port)
    return 0


def _warn_if_open(server: str, host: str, port: int, *, advice: str | None = None) -> None:
    """Warn on stderr when a server without authentication listens beyond this machine."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return
    tunnel = f"Prefer --host 127.0.0.1 and an SSH tunnel (ssh -L {port}:127.0.0.1:{port} HOST)."
    print(
        f"warning: {server} has no authentication; bound to {host}, anyone who can reach port {port} "
        f"can read and change every study. {advice or tunnel}",
        file=sys.stderr,
        flush=True,
    )
