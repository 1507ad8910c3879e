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

__all__ = ["file_sha256", "parse_hypermodel", "split_spec", "tree_sha256"]

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
    """Hex sha256 of a file's bytes (read in chunks: a data file may be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(path: str | Path) -> str:
    """A file's sha256; for a folder, the sha256 of each file's relative path and sha256, in order.

    Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are left out, as the
    image loader leaves them out.
    """
    root = Path(path)
    if root.is_file():
        return file_sha256(root)
    digest = hashlib.sha256()
    for item in sorted(root.rglob("*")):
        rel = item.relative_to(root)
        if item.is_file() and not any(part.startswith(".") for part in rel.parts):
            digest.update(f"{rel.as_posix()}\0{file_sha256(item)}\n".encode())
    return digest.hexdigest()


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
    mapping(model, "model", err, allowed=("hypermodel", "arguments"))
    arguments = mapping(model.get("arguments", {}), "model.arguments", err)
    for key, value in arguments.items():
        if not _plain(value):
            raise err(
                f"model.arguments.{key}", f"expected a number, text, true/false or a list, got {show(value)}"
            )
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
        return HypermodelRef(spec=spec, name=name, arguments=arguments)
    path = Path(file).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    if not path.is_file():
        raise err("model.hypermodel", f"{file}: no such file (looked at {path})")
    try:
        digest = file_sha256(path)
    except OSError as e:
        raise err("model.hypermodel", f"{path}: cannot read: {e}") from e
    return HypermodelRef(spec=spec, name=name, file=str(path), sha256=digest, arguments=arguments)


def _plain(value: Any) -> bool:
    """A constructor argument YAML can state: a scalar, or a list of them (no mappings, no code)."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))
