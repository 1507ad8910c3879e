"""Keras 3's backend for a worker process: which one, set before Keras' import, and what differs.

Keras reads ``KERAS_BACKEND`` once, at its first import, and a process cannot change backend
afterwards. So a worker resolves its backend (:func:`resolve`), sets it (:func:`select`), fixes
the device and its memory share (:func:`limit_memory` before the import, :func:`configure`
after), and only then imports Keras. Precedence, as for the storage URL: ``--backend`` >
``KERAS_BACKEND`` > the space's ``training.backend`` > ``tensorflow``.

Everything backend-specific lives here, imported lazily, so nothing imports TensorFlow unless the
backend is TensorFlow: where the data lives (:func:`to_device`), how to name the device
(:func:`describe_device`), the GPU memory cap, and which of the training fast paths apply
(:func:`supports_steps_per_execution`, :func:`owns_xla`).

Example:
    >>> resolve(None, None, environ={}).name
    'tensorflow'
    >>> resolve("jax", None, environ={"KERAS_BACKEND": "torch"})
    Backend(name='jax', source='--backend')
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any

from search.errors import ConfigError
from spaces.domains import Fixed
from spaces.schema import BACKENDS

if TYPE_CHECKING:
    import numpy as np

    from spaces import Space

__all__ = [
    "BACKENDS",
    "DEFAULT",
    "ENV",
    "Backend",
    "active",
    "configure",
    "describe_device",
    "limit_memory",
    "owns_xla",
    "resolve",
    "select",
    "space_backend",
    "supports_steps_per_execution",
    "to_device",
]

DEFAULT = "tensorflow"
ENV = "KERAS_BACKEND"
# what each backend needs importable, and how to get it
_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
_INSTALL = {
    "tensorflow": "pip install tensorflow",
    "jax": "pip install 'hpsearch[jax]'",
    "torch": "pip install 'hpsearch[torch]'",
}


@dataclass(frozen=True)
class Backend:
    """A resolved backend and where the choice came from (for messages and the worker's first line)."""

    name: str
    source: str


def space_backend(space: Space) -> str:
    """The space's ``training.backend`` (a fixed value: the loader refuses a searched one)."""
    for param in space.params:
        if param.name == "backend" and isinstance(param.domain, Fixed):
            return str(param.domain.value)
    return DEFAULT


def resolve(flag: str | None, space: Space | None, environ: Mapping[str, str] | None = None) -> Backend:
    """``--backend`` > ``KERAS_BACKEND`` > the space's ``training.backend`` > ``tensorflow``.

    Raises:
        ConfigError: a name hpsearch does not train on (Keras' ``numpy`` and ``openvino``
            backends cannot train).
    """
    env = os.environ if environ is None else environ
    from_space = space_backend(space) if space is not None else None
    for value, source in (
        (flag, "--backend"),
        (env.get(ENV) or None, ENV),
        (from_space if from_space != DEFAULT else None, "training.backend"),
    ):
        if value is not None:
            if value not in BACKENDS:
                raise ConfigError(f"{source}: expected one of {', '.join(BACKENDS)}, got {value!r}")
            return Backend(value, source)
    return Backend(DEFAULT, "default")


def active() -> str | None:
    """The backend Keras already runs on in this process, or None if Keras is not imported yet."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    return str(keras.backend.backend())


def select(
    backend: Backend, environ: MutableMapping[str, str] | None = None, *, block_tensorflow: bool = True
) -> None:
    """Set ``KERAS_BACKEND`` for this process (and the workers it starts), before Keras' import.

    On JAX or PyTorch, TensorFlow is then kept out of this process (``block_tensorflow``): a
    hypermodel file or a library that imports it gets an ImportError.

    Raises:
        ConfigError: the backend's library is not installed, or Keras already runs on another
            backend in this process (it cannot switch).
    """
    env = os.environ if environ is None else environ
    running = active()
    if running is not None and running != backend.name:
        raise ConfigError(
            f"{backend.source}: backend {backend.name} asked for, but Keras already runs on {running} "
            f"in this process; start a new process with {ENV}={backend.name}"
        )
    if running is None and importlib.util.find_spec(_MODULE[backend.name]) is None:
        raise ConfigError(
            f"{backend.source}: backend {backend.name} is not installed ({_INSTALL[backend.name]})"
        )
    env[ENV] = backend.name
    # Keras imports TensorFlow whenever it is installed, whatever the backend (to seed it in
    # set_random_seed, to look for its types when saving a model): seconds of start-up and
    # hundreds of MB per worker, and on a GPU a second framework on the card. An import that
    # fails with ModuleNotFoundError is what Keras takes as "not installed".
    blocked = any(isinstance(f, _NoTensorFlow) for f in sys.meta_path)
    if block_tensorflow and backend.name != "tensorflow" and "tensorflow" not in sys.modules and not blocked:
        sys.meta_path.insert(0, _NoTensorFlow())


class _NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import tensorflow`` fail with ModuleNotFoundError in a JAX or PyTorch worker.

    The finder still answers ``importlib.util.find_spec`` (with a spec of no origin, as PyTorch's
    dynamo expects) and the import fails when the module is created, so nothing is added to
    ``sys.modules``: ``"tensorflow" in sys.modules`` stays false, which Keras reads as "not
    inside a ``tf.data`` graph".
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname == "tensorflow" or fullname.startswith("tensorflow."):
            return ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        raise ModuleNotFoundError(
            f"hpsearch: TensorFlow is kept out of this {os.environ.get(ENV)} worker", name=spec.name
        )

    def exec_module(self, module: ModuleType) -> None:  # never reached: create_module raises
        raise ModuleNotFoundError(module.__name__)


def limit_memory(name: str, fraction: float | None, environ: MutableMapping[str, str] | None = None) -> None:
    """Before the backend's import: JAX's GPU allocator grows on demand, up to ``fraction``.

    JAX takes 75 % of a GPU at its first use unless told otherwise, which leaves nothing for a
    second worker; with preallocation off its allocator grows as needed, and
    ``XLA_PYTHON_CLIENT_MEM_FRACTION`` caps it at the worker's share. A value the user set
    already wins. TensorFlow and PyTorch are set after their import (:func:`configure`).
    """
    if name != "jax":
        return
    env = os.environ if environ is None else environ
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if fraction is not None:
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{fraction:.3f}")


def configure(name: str, *, memory_limit_mib: int | None, fraction: float | None) -> None:
    """After the backend's import, before any tensor: the GPU memory cap (or growth) per backend.

    TensorFlow: memory growth, or a logical device of ``memory_limit_mib``. PyTorch: the caching
    allocator's ``set_per_process_memory_fraction`` (an allocation past it raises CUDA OOM in
    this process only). JAX: nothing left to do (:func:`limit_memory`).
    """
    if name == "tensorflow":
        import contextlib

        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            with contextlib.suppress(RuntimeError):  # already initialised: nothing left to set
                if memory_limit_mib is None:
                    tf.config.experimental.set_memory_growth(gpu, True)
                else:
                    tf.config.set_logical_device_configuration(
                        gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=memory_limit_mib)]
                    )
    elif name == "torch" and fraction is not None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(fraction, 0)


def describe_device(name: str) -> str:
    """Where Keras trains in this process: ``GPU:0`` when a GPU is visible, else ``CPU``."""
    if name == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return gpus[0].name.replace("/device:", "") if gpus else "CPU"
    if name == "jax":
        import jax

        return "GPU:0" if jax.default_backend() == "gpu" else "CPU"
    import torch

    return "GPU:0" if torch.cuda.is_available() else "CPU"


def to_device(name: str, arrays: tuple[np.ndarray, ...]) -> tuple[tuple[Any, ...], str]:
    """The arrays as tensors of the backend on its first device, and that device's name.

    Done once per worker: every trial's ``fit`` then slices batches out of these on the device
    (Keras' array adapter indexes the backend's own tensors), so no trial copies the dataset
    from host memory again, and on a GPU no batch crosses the bus.
    """
    if name == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        device = gpus[0].name if gpus else "/CPU:0"
        with tf.device(device):
            tensors = tuple(tf.identity(tf.convert_to_tensor(a)) for a in arrays)
        return tensors, device.replace("/device:", "").strip("/")
    if name == "jax":
        import jax

        first = jax.devices()[0]
        where_jax = "GPU:0" if first.platform == "gpu" else "CPU:0"
        return tuple(jax.device_put(a, first) for a in arrays), where_jax
    import torch

    where = "cuda" if torch.cuda.is_available() else "cpu"
    tensors_t = tuple(torch.tensor(a, device=where) for a in arrays)  # a copy: the arrays are read-only
    return tensors_t, "GPU:0" if where == "cuda" else "CPU:0"


def supports_steps_per_execution(name: str) -> bool:
    """PyTorch's trainer refuses ``steps_per_execution > 1``; TensorFlow's and JAX's take it."""
    return name != "torch"


def owns_xla(name: str) -> bool:
    """Only TensorFlow's training step has a separate XLA choice worth making per trial.

    JAX always compiles with XLA (``jit_compile=False`` there means eager, far slower), and
    PyTorch's ``jit_compile`` is ``torch.compile``, whose compile time a short trial never repays;
    both keep Keras' own ``"auto"`` choice.
    """
    return name == "tensorflow"
