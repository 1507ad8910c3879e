"""A study's hypermodel reference: recorded at creation, checked on resume, bound to a worker's copy.

A study stores the hypermodel's reference (``FILE.py:NAME``) and the file's sha256, never code
and never a path to import: each worker names its own copy (``--hypermodel FILE.py:NAME``) and
:func:`bind_worker` refuses one whose name or sha256 differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search import keys
from search.errors import ConfigError
from spaces.refs import file_sha256, split_spec

if TYPE_CHECKING:
    import optuna

    from spaces import Space

__all__ = ["bind_worker", "check_resume", "record", "worker_argument"]


def record(study: optuna.Study, space: Space) -> None:
    """Store a hypermodel space's reference and file hash in a new study."""
    ref = space.hypermodel
    if ref is not None:
        file = Path(ref.file).name if ref.file else None
        study.set_user_attr(
            keys.HYPERMODEL, {"spec": ref.spec, "name": ref.name, "file": file, "sha256": ref.sha256}
        )


def check_resume(attrs: Mapping[str, Any], space: Space, study_name: str) -> None:
    """Refuse to resume a study whose hypermodel file changed since it was created."""
    stored = attrs.get(keys.HYPERMODEL)
    ref = space.hypermodel
    if ref is None or not isinstance(stored, Mapping) or ref.sha256 is None:
        return
    if stored.get("sha256") != ref.sha256:
        raise ConfigError(
            f"study {study_name!r}: hypermodel {ref.file} changed since the study was created "
            f"(sha256 {ref.sha256[:12]}, study has {str(stored.get('sha256'))[:12]}); "
            "restore the file or pick another --study"
        )


def bind_worker(space: Space, attrs: Mapping[str, Any], study_name: str, hypermodel: str | None) -> Space:
    """Bind a study's hypermodel to the worker's own copy given as ``--hypermodel FILE.py:NAME``.

    Raises:
        ConfigError: the option is missing or not needed, malformed, the file is missing, or its
            name or sha256 differs from what the study recorded.
    """
    ref = space.hypermodel
    if ref is None:
        if hypermodel is not None:
            raise ConfigError(f"study {study_name!r} has no hypermodel; drop --hypermodel")
        return space
    if hypermodel is None:
        raise ConfigError(
            f"study {study_name!r} runs the hypermodel {ref.spec}; pass --hypermodel FILE.py:{ref.name} "
            "(your local copy: hpsearch never imports a path stored in a study)"
        )
    parts = split_spec(hypermodel)
    if parts is None:
        raise ConfigError(f"--hypermodel: expected FILE.py:NAME, got {hypermodel!r}")
    file, name = parts
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"--hypermodel: {file}: no such file")
    stored = attrs.get(keys.HYPERMODEL)
    want = stored.get("sha256") if isinstance(stored, Mapping) else None
    digest = file_sha256(path)
    if name != ref.name:
        raise ConfigError(f"--hypermodel {hypermodel}: the study runs {ref.name!r}, not {name!r}")
    if digest != want:
        raise ConfigError(
            f"--hypermodel {hypermodel}: sha256 {digest[:12]} differs from the study's "
            f"{str(want)[:12]}; use the same file the study was created with"
        )
    return dataclasses.replace(space, hypermodel=dataclasses.replace(ref, file=str(path), sha256=digest))


def worker_argument(space: Space) -> str | None:
    """``--hypermodel`` for local workers started by ``hpsearch run --workers K``."""
    ref = space.hypermodel
    return None if ref is None or ref.file is None else f"{ref.file}:{ref.name}"
