"""Load a KerasTuner hypermodel from the user's own file, once per process.

Safety rule: a hypermodel is user code, so it is imported only from a local file the user
pointed at -- the space file given to ``hpsearch run`` (relative to that file) or a worker's
``--hypermodel FILE.py:NAME``. A study stores the reference and the file's sha256, never code
(:mod:`search.hypermodels.binding`); the bytes imported are the bytes that were hashed. A file
that fails to import is one ``ConfigError`` naming it, its line and what it raised.

Example:
    >>> import spaces
    >>> space = spaces.load("kt-tutorial")
    >>> space.family, space.hypermodel.name
    ('hypermodel', 'build')
"""

from __future__ import annotations

import hashlib
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.errors import ConfigError
from spaces.space import HypermodelRef

if TYPE_CHECKING:
    from spaces import Space

__all__ = ["Builder", "check", "first_line", "hypermodel_of", "load_builder", "load_module", "where"]

Builder = Callable[[Any], Any]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terminal colours in Keras' messages
_BUILDERS: dict[tuple[str, str, str], Builder] = {}  # (file, sha256, name) -> build; per process


def check(space: Space) -> Space:
    """``space``, once its hypermodel (if any) imports and has ``NAME``: before anything is written.

    ``validate``, ``run`` and ``create`` call it on the space file the user named, so a broken
    hypermodel is one line and exit 2 instead of a study whose trials cannot run. It imports
    TensorFlow (through the user's file) but lists no device: a worker that trains in this
    process still picks its GPU afterwards (TensorFlow reads ``CUDA_VISIBLE_DEVICES`` then).

    Raises:
        ConfigError: the file cannot be read or imported, or ``NAME`` is not a hypermodel.
    """
    if space.hypermodel is not None:
        load_builder(space.hypermodel)
    return space


def load_builder(ref: HypermodelRef) -> Builder:
    """Import the hypermodel file once per process and return its ``build(hp)``.

    ``NAME`` may be a function ``build(hp)``, a ``kt.HyperModel`` subclass (instantiated with
    the space's ``model.arguments``, or none) or a ``kt.HyperModel`` instance.
    """
    if ref.file is None or ref.sha256 is None:
        raise ConfigError(f"hypermodel {ref.spec}: not bound to a local file; pass --hypermodel FILE.py:NAME")
    key = (ref.file, ref.sha256, ref.name)
    if key in _BUILDERS:
        return _BUILDERS[key]
    import keras_tuner as kt

    module = load_module(ref.file, ref.sha256, "hypermodel")
    target = getattr(module, ref.name, None)
    if isinstance(target, type) and issubclass(target, kt.HyperModel):
        target = _instantiate(target, ref)
    elif ref.arguments:
        raise ConfigError(f"hypermodel {ref.spec}: model.arguments are for a kt.HyperModel class only")
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


def hypermodel_of(builder: Builder) -> Any:
    """The ``kt.HyperModel`` instance whose ``build`` ``builder`` is; ``None`` for a function."""
    return getattr(builder, "__self__", None)


def _instantiate(cls: type, ref: HypermodelRef) -> Any:
    """``cls(**model.arguments)``; a constructor that needs other arguments is one line."""
    import inspect

    arguments = dict(ref.arguments)
    try:
        inspect.signature(cls).bind(**arguments)
    except TypeError as e:
        given = f" with model.arguments {sorted(arguments)}" if arguments else ""
        raise ConfigError(
            f"hypermodel {ref.spec}: {cls.__name__}(){given} cannot be built: {e}; "
            f"give them in the space (model: {{hypermodel: {ref.spec}, arguments: {{...}}}}) "
            "or name an instance in the file"
        ) from None
    try:
        return cls(**arguments)
    except Exception as e:  # the user's constructor: its error is theirs, in one line
        line = where(e, ref.file)
        at = "" if line is None else f" at line {line}"
        raise ConfigError(
            f"hypermodel {ref.spec}: {cls.__name__}(...) raised {type(e).__name__}{at}: {first_line(e)}"
        ) from e


def load_module(file: str, sha256: str, what: str) -> types.ModuleType:
    """Import a user's file (a hypermodel, a data loader) from exactly the bytes that were hashed.

    Raises:
        ConfigError: the file cannot be read, changed since it was hashed, or fails to import
            (its line and what it raised).
    """
    try:
        source = Path(file).read_bytes()
    except OSError as e:
        raise ConfigError(f"{what} {file}: cannot read: {e}") from e
    if hashlib.sha256(source).hexdigest() != sha256:  # run exactly the bytes that were checked
        raise ConfigError(f"{what} {file}: changed since it was checked; run again")
    module_name = f"hpsearch_{what.replace(' ', '_')}_{sha256[:16]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module = types.ModuleType(module_name)
    module.__file__ = file
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        exec(compile(source, file, "exec"), module.__dict__)
    except (Exception, SystemExit) as e:  # the user's module: any error is theirs, reported in one line
        del sys.modules[module_name]
        line = where(e, file)
        at = "" if line is None else f" at line {line}"
        raise ConfigError(
            f"{what} {file}: importing it failed{at}: {type(e).__name__}: {first_line(e)}"
        ) from e
    return module


def first_line(error: BaseException, *, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters (for one-line reasons).

    Keras puts what a layer raised on the third line ("Exception encountered when calling
    Boom.call().", a blank line, the message in bold); it is kept, without the bold.
    """
    lines = [line.strip() for line in _ANSI.sub("", str(error)).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if text.startswith("Exception encountered when calling") and len(lines) > 1:
        text = f"{text.rstrip('.:')}: {lines[1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def where(error: BaseException, file: str | None) -> int | None:
    """The last line of ``file`` in the error's traceback (a hypermodel's own line); None if none."""
    if isinstance(error, SyntaxError) and error.filename == file and error.lineno:
        return int(error.lineno)
    line = None
    tb = error.__traceback__
    while tb is not None:
        if file is not None and tb.tb_frame.f_code.co_filename == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
