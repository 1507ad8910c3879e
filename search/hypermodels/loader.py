"""Load a KerasTuner hypermodel from the user's own file, once per process.

Safety rule: a hypermodel is user code, so it is imported only from a local file the user
pointed at -- the space file given to ``hpsearch run`` (relative to that file) or a worker's
``--hypermodel FILE.py:NAME``. A study stores the reference and the file's sha256, never code
(:mod:`search.hypermodels.binding`); the bytes imported are the bytes that were hashed.

Example:
    >>> import spaces
    >>> space = spaces.load("kt-tutorial")
    >>> space.family, space.hypermodel.name
    ('hypermodel', 'build')
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.errors import ConfigError
from spaces.space import HypermodelRef

__all__ = ["Builder", "load_builder"]

Builder = Callable[[Any], Any]
_BUILDERS: dict[tuple[str, str, str], Builder] = {}  # (file, sha256, name) -> build; per process


def load_builder(ref: HypermodelRef) -> Builder:
    """Import the hypermodel file once per process and return its ``build(hp)``.

    ``NAME`` may be a function ``build(hp)``, a ``kt.HyperModel`` subclass (instantiated with no
    arguments) or a ``kt.HyperModel`` instance.
    """
    if ref.file is None or ref.sha256 is None:
        raise ConfigError(f"hypermodel {ref.spec}: not bound to a local file; pass --hypermodel FILE.py:NAME")
    key = (ref.file, ref.sha256, ref.name)
    if key in _BUILDERS:
        return _BUILDERS[key]
    import keras_tuner as kt

    try:
        source = Path(ref.file).read_bytes()
    except OSError as e:
        raise ConfigError(f"hypermodel {ref.file}: cannot read: {e}") from e
    if hashlib.sha256(source).hexdigest() != ref.sha256:  # run exactly the bytes that were checked
        raise ConfigError(f"hypermodel {ref.file}: changed since it was checked; run again")
    module_name = f"hpsearch_hypermodel_{ref.sha256[:16]}"
    module = types.ModuleType(module_name)
    module.__file__ = ref.file
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        exec(compile(source, ref.file, "exec"), module.__dict__)
    except Exception as e:  # the user's module: any error is theirs, reported in one line
        del sys.modules[module_name]
        raise ConfigError(f"hypermodel {ref.file}: importing it failed: {type(e).__name__}: {e}") from e
    target = getattr(module, ref.name, None)
    if isinstance(target, type) and issubclass(target, kt.HyperModel):
        target = target()
    if isinstance(target, kt.HyperModel):
        builder: Builder = target.build
    elif callable(target):
        builder = target
    else:
        found = "nothing" if target is None else type(target).__name__
        raise ConfigError(
            f"hypermodel {ref.file}: {ref.name!r} must be a function build(hp) or a kt.HyperModel, "
            f"found {found}"
        )
    _BUILDERS[key] = builder
    return builder
