"""A hypermodel built once before a study is written -- in a child process.

``hpsearch run`` (and ``create``, ``search.run``) refuse a hypermodel that would fail every trial
before anything is written (:func:`search.trial.build.check_hypermodel`). Building it starts
Keras and its backend, which must not happen in a process that trains afterwards: the worker
picks its GPU (``CUDA_VISIBLE_DEVICES``) and its Keras backend before they start. So the build
runs in a child (``python -m search.trial.check``) on the CPU, and its one line comes back.
``hpsearch validate``, which trains nothing, builds in its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path, PurePath

import spaces
from search.errors import USER_ERRORS, ConfigError, HPSearchError

__all__ = ["check_in_child", "main"]

_MARK = "hpsearch-check: "  # the child's own line on stderr, told apart from what TensorFlow prints


def check_in_child(space: spaces.Space, data_dir: str | None = None, *, backend: str | None = None) -> None:
    """Build ``space``'s hypermodel once in a child process on the CPU; raise its one line.

    Raises:
        ConfigError: what would fail every trial (exit 2 of the child).
        HPSearchError: the child failed otherwise (its last line).
    """
    ref = space.hypermodel
    if ref is None or ref.file is None:
        return
    spec_file = PurePath(ref.spec.rsplit(":", 1)[0])
    if spec_file.is_absolute() or ".." in spec_file.parts:
        base = Path("/")
        text = space.text.replace(ref.spec, f"{ref.file}:{ref.name}")  # resolved: no base needed
    else:  # the space file's directory, which the relative reference was resolved against
        base = Path(ref.file).parents[len(spec_file.parts) - 1]
        text = space.text
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    fixed = next((p.domain for p in space.params if p.name == "backend"), None)  # training.backend
    chosen = backend or os.environ.get("KERAS_BACKEND") or getattr(fixed, "value", None)
    if chosen:  # the worker's precedence: --backend, then $KERAS_BACKEND, then the space
        env["KERAS_BACKEND"] = str(chosen)
    argv = [sys.executable, "-m", "search.trial.check", str(base), space.source, data_dir or ""]
    done = subprocess.run(argv, input=text, capture_output=True, text=True, env=env, check=False)
    lines = done.stderr.strip().splitlines()
    ours = [line.removeprefix(_MARK) for line in lines if line.startswith(_MARK)]  # not a library's chatter
    last = (ours or lines or [f"exit code {done.returncode}"])[-1]
    if done.returncode == 2:
        raise ConfigError(last)
    if done.returncode != 0:
        raise HPSearchError(f"hypermodel {ref.spec}: checking it failed: {last}")


def main(argv: list[str]) -> int:
    """The child: ``BASE SOURCE DATA_DIR``, the space's text on stdin; exit 2 with one line on stderr."""
    from search.hypermodels.loader import check
    from search.trial.build import check_hypermodel
    from search.trial.data import load_for

    base, source, data_dir = argv
    try:
        space = spaces.loads(sys.stdin.read(), source=source, base_dir=Path(base))
        check_hypermodel(check(space), load_for(space, data_dir or None))
    except USER_ERRORS as e:
        print(f"{_MARK}{e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
