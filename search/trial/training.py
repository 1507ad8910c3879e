"""The trial's training loop: ``model.fit`` with the fast paths that keep its learning dynamics.

A search is hundreds of trainings, so per-step Python overhead matters more than in a notebook.
:func:`fit` is ``model.fit`` with the same batch size, optimizer, per-epoch seeded shuffle and
callbacks, plus these fast paths (measured in docs/benchmarks.md, "Fast trials"):

- **Data as ready tensors, once per worker** (:func:`prepare`): the float32 arrays become
  the backend's tensors once per process (on the first GPU when one is visible; see
  :func:`search.trial.backend.to_device`), so a trial does not copy the dataset again;
  ``model.fit`` slices them with its own array adapter (TensorFlow: a vectorized ``tf.data``
  pipeline; JAX / PyTorch: indexing on the device), so batches and shuffling are those of a
  plain ``fit`` on the numpy arrays.
- **steps_per_execution** (:func:`pick_steps_per_execution`): several optimizer steps run in
  one ``tf.function`` call. Every step is still one optimizer update on one batch of
  ``batch_size`` samples (the last one partial), so the number of updates per epoch stays
  ``ceil(n / batch_size)``. Per-batch callbacks (NaN guard, SIGTERM / timeout stop) see the
  logs every execution: the logged loss is the epoch's running mean, so a NaN in any step of
  the execution still shows, and a stop request waits at most one execution. TensorFlow and
  JAX take it (on JAX it also saves a device-to-host sync of the logs per step); PyTorch's
  trainer refuses it, so there it stays 1.
- **Large validation batches** of equal size (at most 4096; 6000 samples -> 2 x 3000, so
  one traced shape): validation is a forward pass only, its metrics are sample-weighted
  means, so a larger batch changes nothing but the time it takes.
- **XLA for the training step where it pays** (:func:`pick_jit_compile`): on a CPU, XLA
  fuses a small MLP's many small ops (bias, activation, Adam's update) and cuts its epoch
  time by a third or more, but compiles for ~0.5 s per trial and made a CNN 2x slower. So it
  is on for models built only of layers measured faster with it, in trials long enough to
  repay the compile; only the training step is compiled (validation gains nothing from it).
  On a GPU Keras' own ``"auto"`` choice stands for both. This is TensorFlow's only: JAX
  compiles every step with XLA anyway, and PyTorch's ``torch.compile`` keeps Keras' default (off).
- **No retracing**: the train / test functions are traced once per trial (one model); each
  epoch reuses them, because every epoch feeds tensors of the same shapes.

Example:
    >>> from search.trial.data import load_dataset
    >>> data = prepare(load_dataset("digits", limit=100))
    >>> pick_steps_per_execution(batch_size=32, n_train=data.n_train, flops_per_sample=2000)
    4
"""

from __future__ import annotations

import gc
import math
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import keras

from search.trial import backend

if TYPE_CHECKING:
    from search.trial.data import Dataset

__all__ = [
    "FastPaths",
    "PreparedData",
    "fit",
    "freeze_long_lived",
    "pick_jit_compile",
    "pick_steps_per_execution",
    "pick_validation_batch",
    "prepare",
]

# One execution aims at this many training samples (and at most this much compute, below), so
# Python runs once per ~4k samples instead of once per batch; measured in benchmarks/throughput.py.
SAMPLES_PER_EXECUTION = 4096
# ... but at most ~2 GFLOP of training work per execution (~50-100 ms on this CPU), so a stop
# request or a NaN is still seen within a fraction of a second for large models.
FLOPS_PER_EXECUTION = 2e9
# On a GPU the same 2 GFLOP take well under a millisecond, so the cap there is 100x higher (still
# ~10-50 ms of work per execution); only the ~4k-samples aim applies in practice. Not yet measured
# on a GPU: benchmarks/gpu_check.sh records the steps per execution it used.
GPU_FLOPS_PER_EXECUTION = 2e11
VALIDATION_BATCH = 4096
# XLA on a CPU saved 0.2-0.5 ms per optimizer step of the 784-128-10 / 784-512-512-10 MLPs and
# costs ~0.5 s of compiling per trial (full and partial batch shapes): it pays from ~2000 steps.
XLA_MIN_STEPS = 2000
# Layers whose training step measured faster under XLA on this CPU (benchmarks/throughput.py);
# anything else keeps the plain TensorFlow graph: Conv2D measured 2x slower, Dropout up to 8x
# (XLA's CPU random numbers: a 445-unit dropout MLP, 10.3 s an epoch against 1.3 s without).
_XLA_CPU_LAYERS = (
    "InputLayer",
    "Rescaling",
    "Flatten",
    "Dense",
    "Activation",
    "BatchNormalization",
)


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths :func:`fit` uses; the defaults are the measured choices.

    Attributes:
        steps_per_execution: Optimizer steps per ``tf.function`` call; ``None`` picks one per
            trial with :func:`pick_steps_per_execution`, ``1`` is Keras' default.
        validation_batch_size: Batch size of the validation pass; ``None`` uses the training
            batch size (Keras' default).
        jit_compile: XLA for the training step; ``None`` picks per trial with
            :func:`pick_jit_compile` on a CPU and leaves Keras' choice on a GPU. TensorFlow
            only: JAX and PyTorch always keep Keras' choice.
    """

    steps_per_execution: int | None = None
    validation_batch_size: int | None = VALIDATION_BATCH
    jit_compile: bool | None = None


PLAIN = FastPaths(steps_per_execution=1, validation_batch_size=None, jit_compile=False)
"""``model.fit`` as a notebook calls it on a CPU (used by the benchmarks and tests to compare)."""


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A dataset's arrays as ready tensors, built once per worker process by :func:`prepare`.

    Attributes:
        x_train: Training images, float32, raw pixel scale (a tensor of the backend).
        y_train: Training labels, int32.
        x_val: Validation images.
        y_val: Validation labels.
        device: Where the tensors live (``"CPU:0"`` or a GPU name).
        backend: The Keras backend the tensors belong to.
    """

    x_train: Any = field(repr=False)
    y_train: Any = field(repr=False)
    x_val: Any = field(repr=False)
    y_val: Any = field(repr=False)
    device: str
    backend: str = backend.DEFAULT

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])


_PREPARED: weakref.WeakKeyDictionary[Dataset, PreparedData] = weakref.WeakKeyDictionary()


def prepare(dataset: Dataset) -> PreparedData:
    """The dataset as tensors, on the first visible GPU if there is one; cached per dataset.

    Datasets are loaded once per process (``search.trial.data.load_dataset`` caches them), so this
    converts each once per worker, never per trial.
    """
    cached = _PREPARED.get(dataset)
    if cached is not None:
        return cached
    name = keras.backend.backend()
    arrays = (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val)
    (x_train, y_train, x_val, y_val), where = backend.to_device(name, arrays)
    prepared = PreparedData(x_train, y_train, x_val, y_val, device=where, backend=name)
    _PREPARED[dataset] = prepared
    return prepared


def freeze_long_lived() -> None:
    """Collects garbage, then moves every object still alive out of the collector's view.

    Each trial collects once; with TensorFlow imported a full collection walks millions of
    long-lived objects (0.4 s here), and what each trial's Keras / TensorFlow state leaves
    behind adds to them (40 ms per collection after a few trials). Frozen objects are never
    walked again (``gc.freeze``), so a worker calls this once at start and the objective before
    each trial, right after ``clear_session``: the previous trial's model is garbage by then and
    is freed by this collection, and what survives it stays alive anyway.
    """
    gc.collect()
    gc.freeze()


def pick_steps_per_execution(
    *, batch_size: int, n_train: int, flops_per_sample: int, flops_cap: float = FLOPS_PER_EXECUTION
) -> int:
    """Optimizer steps per execution: ~4k samples per call, at most ~2 GFLOP, at most an epoch.

    A training step costs about three forward passes (forward, two backward matmuls).

    Example:
        >>> pick_steps_per_execution(batch_size=64, n_train=54000, flops_per_sample=203_530)
        51
        >>> pick_steps_per_execution(batch_size=256, n_train=54000, flops_per_sample=203_530)
        12
    """
    steps_per_epoch = math.ceil(n_train / batch_size)
    by_samples = SAMPLES_PER_EXECUTION // batch_size
    by_flops = int(flops_cap // max(1, 3 * flops_per_sample * batch_size))
    return max(1, min(steps_per_epoch, by_samples, by_flops))


def pick_validation_batch(n_val: int, cap: int = VALIDATION_BATCH) -> int:
    """The largest batch of at most ``cap`` that splits ``n_val`` samples into equal batches.

    Equal batches mean one input shape, so the test step is traced once, not twice.

    Example:
        >>> pick_validation_batch(6000), pick_validation_batch(287), pick_validation_batch(10000)
        (3000, 287, 3334)
    """
    return math.ceil(n_val / max(1, math.ceil(n_val / cap)))


def pick_jit_compile(model: keras.Model, *, total_steps: int) -> bool:
    """Whether XLA compiles a CPU trial's training step.

    Only for models made of layers measured faster under XLA here, and only when the trial
    runs at least ``XLA_MIN_STEPS`` optimizer steps, so the compile time is repaid.

    Example:
        >>> inputs = keras.Input((8,))
        >>> mlp = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        >>> pick_jit_compile(mlp, total_steps=8440), pick_jit_compile(mlp, total_steps=300)
        (True, False)
        >>> dropout = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dropout(0.2)(inputs)))
        >>> pick_jit_compile(dropout, total_steps=8440)
        False
    """
    return total_steps >= XLA_MIN_STEPS and all(
        type(layer).__name__ in _XLA_CPU_LAYERS for layer in _layers(model)
    )


def _layers(model: keras.Model) -> list[Any]:
    """Every layer, nested models' (e.g. a KerasTuner hypermodel's) included."""
    out: list[Any] = []
    for layer in model.layers:
        out.extend(_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def fit(
    model: keras.Model,
    data: PreparedData,
    *,
    batch_size: int,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
    flops_per_sample: int,
    paths: FastPaths = FastPaths(),
    initial_epoch: int = 0,
    until: int | None = None,
) -> dict[str, Any]:
    """Trains a compiled model like ``model.fit(x, y, batch_size, epochs, validation_data)``.

    ``initial_epoch``: a continued trial starts after the epochs it already trained;
    ``until``: the epoch where it may be stopped (its next ASHA rung; default ``epochs``), so XLA
    compiles only for trials sure to train long enough to repay it.

    Returns:
        What the run used: ``steps_per_execution``, ``validation_batch_size``, ``jit_compile``
        (of the training step: XLA on TensorFlow and JAX, ``torch.compile`` on PyTorch;
        recorded in the trial so runs stay comparable).
    """
    name = keras.backend.backend()
    on_cpu = data.device.startswith("CPU")
    spe = paths.steps_per_execution or pick_steps_per_execution(
        batch_size=batch_size,
        n_train=data.n_train,
        flops_per_sample=flops_per_sample,
        flops_cap=FLOPS_PER_EXECUTION if on_cpu else GPU_FLOPS_PER_EXECUTION,
    )
    if not backend.supports_steps_per_execution(name):
        spe = 1
    # set before the first fit: Keras builds the train / test functions lazily from these
    model.steps_per_execution = spe
    jit = paths.jit_compile if backend.owns_xla(name) else None
    if jit is None and on_cpu and backend.owns_xla(name):
        # the epochs this trial is sure to train: to its next ASHA rung, where it may pause
        steps = ((until or epochs) - initial_epoch) * math.ceil(data.n_train / batch_size)
        jit = pick_jit_compile(model, total_steps=steps)
    if jit is not None:
        model.jit_compile = jit  # Keras turns it off (with a warning) for layers XLA cannot take
    xla_train = bool(model.jit_compile)
    if on_cpu and xla_train and backend.owns_xla(name):
        model.make_train_function(force=True)  # the XLA training step, which fit reuses ...
        model.jit_compile = False  # ... and the test step, built later, without XLA
    val_batch = paths.validation_batch_size
    if val_batch is not None:
        val_batch = pick_validation_batch(int(data.x_val.shape[0]), val_batch)
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=batch_size,
        epochs=epochs,
        initial_epoch=initial_epoch,  # a continued ASHA trial: epochs it has not trained yet
        shuffle=True,
        validation_data=(data.x_val, data.y_val),
        validation_batch_size=val_batch,
        callbacks=callbacks,
        verbose=0,
    )
    return {
        "steps_per_execution": spe,
        "validation_batch_size": val_batch or batch_size,
        "jit_compile": xla_train,
    }
