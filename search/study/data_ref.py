"""A study's data file: recorded at creation, checked on resume, bound when the space is read back.

A study made from ``dataset: {path: ...}`` stores the file's absolute path and sha256
(``hpsearch:data``). A process that reads the space back from the study -- a worker, ``evaluate``,
``lr-find`` -- reads that path (or its own copy, ``--data PATH``) and refuses bytes whose sha256
differs. A ``dataset: {loader: FILE.py:NAME}`` is code: as for hypermodels, the study keeps the
reference and the hash, never a path to import, and each process names its own copy with
``--data FILE.py:NAME``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import keys
from search.errors import ConfigError
from spaces.refs import split_spec

if TYPE_CHECKING:
    import optuna

    from spaces import Space

__all__ = ["bind", "check_resume", "record", "worker_argument"]


def record(study: optuna.Study, space: Space) -> None:
    """Store a file dataset's location and sha256 in a new study."""
    spec = space.dataset
    if spec.is_file:
        study.set_user_attr(
            keys.DATA,
            {"kind": spec.kind, "file": spec.file, "sha256": spec.sha256, "test_file": spec.test_file},
        )


def check_resume(attrs: Mapping[str, Any], space: Space, study_name: str) -> None:
    """Refuse to resume a study whose data file changed since it was created."""
    stored = attrs.get(keys.DATA)
    spec = space.dataset
    if not spec.is_file or not isinstance(stored, Mapping) or spec.sha256 is None:
        return
    if stored.get("sha256") != spec.sha256:
        raise ConfigError(
            f"study {study_name!r}: dataset {spec.file} changed since the study was created "
            f"(sha256 {spec.sha256[:12]}, study has {str(stored.get('sha256'))[:12]}); "
            "restore the file or pick another --study"
        )


def bind(space: Space, attrs: Mapping[str, Any], study_name: str, data: str | None = None) -> Space:
    """The space read back from a study, its data bound to the recorded file or to ``data``.

    A loader stays unbound without ``data``: loading its data then says to pass ``--data``.

    Raises:
        ConfigError: ``data`` given for a bundled dataset or not the study's loader; no record.
    """
    spec = space.dataset
    if not spec.is_file:
        if data is not None:
            raise ConfigError(f"study {study_name!r} uses the bundled dataset {spec.name}; drop --data")
        return space
    stored = attrs.get(keys.DATA)
    if not isinstance(stored, Mapping) or not isinstance(stored.get("sha256"), str):
        raise ConfigError(f"study {study_name!r}: no record of its dataset {spec.name}'s file")
    file = stored.get("file")
    if spec.kind == "loader":
        if data is None:  # loading it says what to pass; reading the space needs no data
            return space
        parts = split_spec(data)
        if parts is None or parts[1] != spec.loader:
            raise ConfigError(f"--data: expected FILE.py:{spec.loader} (the study's loader), got {data!r}")
        file = parts[0]
    elif data is not None:
        file = data
    if not isinstance(file, str):
        raise ConfigError(f"study {study_name!r}: no file recorded for dataset {spec.name}; pass --data PATH")
    path = Path(file).expanduser().resolve()
    if not path.exists():
        raise ConfigError(f"dataset {spec.name}: {path}: no such file (pass --data PATH: your copy)")
    test = stored.get("test_file") if isinstance(stored.get("test_file"), str) else None
    bound = dataclasses.replace(spec, file=str(path), sha256=stored["sha256"], test_file=test)
    return dataclasses.replace(space, dataset=bound)


def worker_argument(space: Space) -> str | None:
    """``--data`` for local workers started by ``hpsearch run --workers K`` (a loader only)."""
    spec = space.dataset
    return f"{spec.file}:{spec.loader}" if spec.kind == "loader" and spec.file else None
