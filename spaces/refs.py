"""The ``model: {hypermodel: FILE.py:NAME}`` form of a space: parse, resolve and hash, never import.

A hypermodel is user code. The loader resolves the file only when the space was read from a
local file (or a bundled preset) the user named, relative to that file; a space read back from
a study's stored text keeps the reference unresolved, so nothing stored in a study can make a
process import a path.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from spaces.fields import Err, mapping, show
from spaces.space import HypermodelRef

__all__ = ["file_sha256", "parse_hypermodel", "split_spec"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def split_spec(spec: Any) -> tuple[str, str] | None:
    """``"dir/file.py:build"`` -> ``("dir/file.py", "build")``; ``None`` if malformed."""
    if not isinstance(spec, str) or ":" not in spec:
        return None
    file, name = spec.rsplit(":", 1)
    if not file.endswith(".py") or not _NAME.match(name):
        return None
    return file, name


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def parse_hypermodel(
    model: dict[str, Any], doc: dict[str, Any], base: Path | None, err: Err
) -> HypermodelRef:
    """Check a hypermodel ``model`` section; resolve the file against ``base`` when given.

    Args:
        model: the ``model`` mapping (it has a ``hypermodel`` key).
        doc: the whole document, to reject sections a hypermodel replaces.
        base: directory of the space file the user named; ``None`` for a study's stored text.
        err: error builder naming the source.
    """
    mapping(model, "model", err, allowed=("hypermodel",))
    if "optimizer" in doc:
        raise err("optimizer", "not used with model.hypermodel: the hypermodel compiles its own model")
    spec = model["hypermodel"]
    parts = split_spec(spec)
    if parts is None:
        raise err(
            "model.hypermodel", f"expected 'FILE.py:NAME' (a function or kt.HyperModel), got {show(spec)}"
        )
    file, name = parts
    if base is None:
        return HypermodelRef(spec=spec, name=name)
    path = Path(file).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    if not path.is_file():
        raise err("model.hypermodel", f"{file}: no such file (looked at {path})")
    try:
        digest = file_sha256(path)
    except OSError as e:
        raise err("model.hypermodel", f"{path}: cannot read: {e}") from e
    return HypermodelRef(spec=spec, name=name, file=str(path), sha256=digest)
