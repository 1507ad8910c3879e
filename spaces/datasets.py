"""The ``dataset`` section: a bundled dataset by name, a file the user names, or a loader.

Accepted spellings (a path is relative to the space file)::

    dataset: fashion_mnist                          # bundled: digits, mnist, fashion_mnist
    dataset: {path: data.npz}                       # x_train, y_train [, x_val, y_val, x_test, y_test]
    dataset: {path: images/, image_size: [32, 32]}  # one subfolder per class
    dataset: {path: table.csv, label: species}      # numeric features, one label column
    dataset: {loader: load.py:arrays}               # a function returning arrays

A file is resolved and hashed (sha256), never read here; a loader is hashed, never imported.
Read back from a study's text (no ``base``) the reference stays unresolved: the worker binds it
to the study's record.

Example:
    >>> from spaces.fields import Err
    >>> dataset("digits", None, Err("s.yaml")).kind
    'bundled'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spaces import schema
from spaces.fields import Err, as_float, as_int, known, mapping, show
from spaces.refs import split_spec, tree_sha256
from spaces.space import DataKind, DatasetSpec

__all__ = ["dataset"]

_COMMON = ("validation_fraction", "limit")
_MAX_SIDE = 4096  # pixels per side of a resized image


def dataset(value: Any, base: Path | None, err: Err) -> DatasetSpec:
    """Check the ``dataset`` section; resolve and hash a file or loader against ``base`` when given."""
    if value is None:
        raise err("dataset", f"required; one of {', '.join(schema.DATASETS)}, or {{path: FILE}}")
    if isinstance(value, str):
        value = {"name": value}
    d = mapping(value, "dataset", err)
    given = [k for k in ("name", "path", "loader") if k in d]
    if len(given) != 1:
        what = "both " + " and ".join(given) if given else "none"
        raise err("dataset", f"expected exactly one of name, path or loader; got {what}")
    fraction = as_float(d.get("validation_fraction", 0.1), "dataset.validation_fraction", err)
    if not 0.0 < fraction <= 0.5:
        raise err("dataset.validation_fraction", f"expected a number in (0, 0.5], got {fraction:g}")
    limit = d.get("limit")
    if limit is not None:
        limit = as_int(limit, "dataset.limit", err, low=1)
    if "name" in d:
        mapping(d, "dataset", err, allowed=("name", *_COMMON))
        name = d["name"]
        if not known(name, schema.DATASETS):
            raise err("dataset.name", f"expected one of {', '.join(schema.DATASETS)}, got {name!r}")
        return DatasetSpec(name=name, validation_fraction=fraction, limit=limit)
    if "loader" in d:
        mapping(d, "dataset", err, allowed=("loader", *_COMMON))
        parts = split_spec(d["loader"])
        if parts is None:
            raise err("dataset.loader", f"expected 'FILE.py:NAME' (a function), got {show(d['loader'])}")
        file, sha = _resolve(parts[0], base, "dataset.loader", err, folder=False)
        return DatasetSpec(
            name=d["loader"], validation_fraction=fraction, limit=limit, kind="loader",
            file=file, sha256=sha, loader=parts[1],
        )  # fmt: skip
    return _file(d, base, fraction, limit, err)


def _file(d: dict[str, Any], base: Path | None, fraction: float, limit: int | None, err: Err) -> DatasetSpec:
    path = d["path"]
    if not isinstance(path, str) or not path.strip():
        raise err("dataset.path", f"expected a file or folder path, got {show(path)}")
    kind: DataKind
    allowed: tuple[str, ...]
    if path.lower().endswith(".npz"):
        kind, allowed = "npz", ()
    elif path.lower().endswith((".csv", ".tsv")):
        kind, allowed = "csv", ("label", "test")
    elif path.endswith("/") or base is None or _absolute(path, base).is_dir():  # base None: a study's text
        kind, allowed = "images", ("image_size", "test")
    else:
        raise err("dataset.path", f"{path}: expected a .npz or .csv file, or a folder of class subfolders")
    mapping(d, "dataset", err, allowed=("path", *_COMMON, *allowed))
    label = d.get("label")
    if kind == "csv" and (not isinstance(label, str) or not label):
        raise err("dataset.label", f"required for a CSV: the name of its label column, got {show(label)}")
    size = _image_size(d.get("image_size"), err) if "image_size" in d else None
    test = d.get("test")
    if test is not None and not isinstance(test, str):
        raise err("dataset.test", f"expected a path, got {show(test)}")
    file, sha = _resolve(path, base, "dataset.path", err, folder=kind == "images")
    test_file = None
    if test is not None and base is not None:
        test_file = str(_absolute(test, base))
        if not Path(test_file).exists():
            raise err("dataset.test", f"{test}: no such file or folder (looked at {test_file})")
    return DatasetSpec(
        name=path, validation_fraction=fraction, limit=limit, kind=kind, file=file, sha256=sha,
        label=label, image_size=size, test=test, test_file=test_file,
    )  # fmt: skip


def _image_size(value: Any, err: Err) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise err("dataset.image_size", f"expected [height, width], got {show(value)}")
    h, w = (as_int(v, "dataset.image_size", err, low=1, high=_MAX_SIDE) for v in value)
    return h, w


def _absolute(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _resolve(
    path: str, base: Path | None, field: str, err: Err, *, folder: bool
) -> tuple[str | None, str | None]:
    """The absolute path and sha256 of what ``path`` names; ``(None, None)`` without ``base``."""
    if base is None:
        return None, None
    where = _absolute(path, base)
    if folder and not where.is_dir():
        raise err(field, f"{path}: no such folder (looked at {where})")
    if not folder and not where.is_file():
        raise err(field, f"{path}: no such file (looked at {where})")
    try:
        return str(where), tree_sha256(where)
    except OSError as e:
        raise err(field, f"{where}: cannot read: {e}") from e
