"""A paused trial's model, saved so that a promotion continues it (see :mod:`search.study.asha`).

The file holds the model's weights (non-trainable ones too: batch-norm statistics, a
``Normalization`` layer's mean) and the optimizer's variables (step count, Adam's moments), as
plain arrays: the continuation rebuilds the same model from the same parameters and assigns
them, so any backend and any hypermodel (custom layers included) restores without Keras'
deserialization. The file also names the parameters it was trained with; a file that does not
match the model (other parameters, other shapes) is not used, and the continuation retrains.

One ``.npz`` per paused trial, ``<dir>/<study>/trial-<N>.npz``, written atomically (a temporary
file renamed), deleted once a continuation has loaded it.

Example:
    >>> import keras, tempfile
    >>> def make():
    ...     inputs = keras.Input((3,))
    ...     model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    ...     model.compile(optimizer="adam", loss="mse")
    ...     return model
    >>> path = Path(tempfile.mkdtemp()) / "t.npz"
    >>> a, b = make(), make()
    >>> save(a, path, {"x": 1})
    >>> restore(b, path, {"x": 1}), restore(b, path, {"x": 2})
    (True, False)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

__all__ = ["discard", "discard_study", "path_for", "restore", "save"]


def path_for(directory: Path, study: str, number: int) -> Path:
    """Where trial ``number`` of ``study`` keeps its checkpoint (the study name made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", study)[:60]
    digest = hashlib.sha256(study.encode()).hexdigest()[:8]
    return directory / f"{safe}-{digest}" / f"trial-{number}.npz"


def save(model: keras.Model, path: Path, params: dict[str, Any]) -> None:
    """Write the model's weights and optimizer state for a later :func:`restore`."""
    arrays = {f"w{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.weights)}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and optimizer.built:
        arrays.update({f"o{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)})
    arrays["meta"] = np.array(_stamp(params))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    with open(partial, "wb") as f:
        np.savez(f, **arrays)
    os.replace(partial, path)


def restore(model: keras.Model, path: Path, params: dict[str, Any]) -> bool:
    """Load a :func:`save` file into a freshly built, compiled model; False when it cannot."""
    try:
        with np.load(path) as f:
            if str(f["meta"]) != _stamp(params):
                return False
            if sum(k.startswith("w") for k in f.files) != len(model.weights):
                return False
            weights = [f[f"w{i}"] for i in range(len(model.weights))]
            slots = [f[f"o{i}"] for i in range(sum(k.startswith("o") for k in f.files))]
    except (OSError, KeyError, ValueError):
        return False
    if any(tuple(w.shape) != tuple(v.shape) for w, v in zip(weights, model.weights, strict=True)):
        return False
    optimizer = getattr(model, "optimizer", None)
    if slots and optimizer is not None:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        variables = optimizer.variables
        if len(variables) != len(slots) or any(
            tuple(s.shape) != tuple(v.shape) for s, v in zip(slots, variables, strict=True)
        ):
            return False
        for variable, value in zip(variables, slots, strict=True):
            variable.assign(value)
    for variable, value in zip(model.weights, weights, strict=True):
        variable.assign(value)
    return True


def discard(path: Path) -> None:
    """Delete a checkpoint (and its study's folder once empty)."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # other checkpoints remain
        path.parent.rmdir()


def discard_study(directory: Path, study: str) -> None:
    """Delete every checkpoint of ``study`` (its search has ended: nothing will be promoted)."""
    shutil.rmtree(path_for(directory, study, 0).parent, ignore_errors=True)


def _stamp(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)
