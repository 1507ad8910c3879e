"""What several test files need: the checkout, child-process environments, free ports, polling
with a deadline, optuna-dashboard's API without a server, and space files.

Space files are written from Python values, one section a line in YAML flow style:

    >>> space_text("t", model={"layers": 1, "units": int_range(4, 16)})
    'name: t\\ndataset: digits\\nmodel: {layers: 1, units: {type: int, low: 4, high: 16}}\\n'
    >>> space_text("t", base=TINY, training={"epochs": 3}).splitlines()[-1]
    'training: {batch_size: 64, epochs: 3}'
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from wsgiref.util import setup_testing_defaults

import optuna
import yaml

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def subprocess_env(**extra: str) -> dict[str, str]:
    """``os.environ`` with this checkout first on PYTHONPATH (plus ``extra``), for child processes."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], T], *, timeout: float = 60, what: str = "the condition", poll: float = 0.2
) -> T:
    """Call ``condition`` until it returns something true, and return that.

    AssertionError after ``timeout`` seconds. ``condition`` may raise to give up early (the
    process it waits for has exited, say).
    """
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(poll)
    return result


def http_get(url: str, timeout: float = 30) -> Any:
    """GET ``url``: the parsed body if it is JSON, else the bytes."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read()
        return json.loads(body) if response.headers.get_content_type() == "application/json" else body


def answers(url: str) -> bool:
    """True once a server answers ``url`` (any reply that is not a connection error)."""
    try:
        http_get(url, timeout=5)
    except OSError:  # refused, reset, not listening yet (an HTTP error page is an OSError too)
        return False
    return True


def dashboard_api(store: optuna.storages.BaseStorage, path: str) -> Any:
    """GET ``path`` from optuna-dashboard's own WSGI app on ``store`` (no server): the parsed JSON."""
    import optuna_dashboard

    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    status: list[str] = []
    app = optuna_dashboard.wsgi(store)
    body = b"".join(app(environ, lambda code, headers, exc=None: status.append(code)))
    assert status == ["200 OK"], status
    return json.loads(body)


# ---- space files -------------------------------------------------------------------------------


def int_range(low: int, high: int, **options: Any) -> dict[str, Any]:
    return {"type": "int", "low": low, "high": high, **options}


def float_range(low: float, high: float, **options: Any) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, **options}


# the smallest space that trains: 60 digits, one epoch, one small layer, a seeded random sampler
TINY: dict[str, Any] = {
    "dataset": {"name": "digits", "limit": 60},
    "sampler": {"type": "random", "seed": 0},
    "model": {"layers": 1, "units": int_range(4, 16)},
    "training": {"batch_size": 64, "epochs": 1},
}


def flow(value: Any) -> str:
    """``value`` as YAML on one line (flow style), e.g. ``{type: tpe, seed: 1}``."""
    return str(yaml.safe_dump([value], default_flow_style=True, width=10**6, sort_keys=False))[1:-2]


def space_text(name: str, *, base: Mapping[str, Any] | None = None, **sections: Any) -> str:
    """A space file: ``name``, then the sections of ``base`` updated by ``sections``.

    A mapping updates the base's mapping of the same section key by key; anything else replaces
    it; None drops the section. ``dataset`` is ``digits`` unless given.
    """
    merged: dict[str, Any] = {"dataset": "digits", **(base or {})}
    for key, value in sections.items():
        old = merged.get(key)
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(old, Mapping):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return "".join(f"{key}: {flow(value)}\n" for key, value in {"name": name, **merged}.items())


def write_space(folder: Path, name: str, *, base: Mapping[str, Any] | None = None, **sections: Any) -> Path:
    """Writes :func:`space_text` to ``folder/NAME.yaml``; its path."""
    path = folder / f"{name}.yaml"
    path.write_text(space_text(name, base=base, **sections))
    return path
