"""The trial's training loop: ``model.fit`` with the fast paths that keep its learning dynamics.

A search is hundreds of trainings, so per-step Python overhead matters more than in a notebook.
:func:`fit` is ``model.fit`` with the same batch size, optimizer, per-epoch seeded shuffle and
callbacks, plus these fast paths (see README "Trial throughput" for their measurements):

- **Data as ready tensors, once per worker** (:func:`prepare`): the float32 arrays become
  TensorFlow tensors once per process (on the first GPU when one is visible), so a trial does
  not copy the dataset again; ``model.fit`` slices them with its own vectorized ``tf.data``
  pipeline, so batches and shuffling are those of a plain ``fit`` on the numpy arrays.
- **steps_per_execution** (:func:`pick_steps_per_execution`): several optimizer steps run in
  one ``tf.function`` call. Every step is still one optimizer update on one batch of
  ``batch_size`` samples (the last one partial), so the number of updates per epoch stays
  ``ceil(n / batch_size)``. Per-batch callbacks (NaN guard, SIGTERM / timeout stop) see the
  logs every execution: the logged loss is the epoch's running mean, so a NaN in any step of
  the execution still shows, and a stop request waits at most one execution.
- **Large validation batches**: validation is a forward pass only, its metrics are
  sample-weighted means, so a larger batch changes nothing but the time it takes.
- **No XLA on CPU**: ``jit_compile`` is off where no GPU is visible (it measured slower here);
  on a GPU Keras' own ``"auto"`` choice stands.
- **No retracing**: the train / test functions are traced once per trial (one model); each
  epoch reuses them, because every epoch feeds tensors of the same shapes.

Example:
    >>> from search.data import load_dataset
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

if TYPE_CHECKING:
    import tensorflow as tf

    from search.data import Dataset

__all__ = [
    "FastPaths",
    "PreparedData",
    "fit",
    "freeze_long_lived",
    "pick_steps_per_execution",
    "prepare",
]

# One execution aims at this many training samples (and at most this much compute, below), so
# Python runs once per ~4k samples instead of once per batch; measured in benchmarks/throughput.py.
SAMPLES_PER_EXECUTION = 4096
# ... but at most ~2 GFLOP of training work per execution (~50-100 ms on this CPU), so a stop
# request or a NaN is still seen within a fraction of a second for large models.
FLOPS_PER_EXECUTION = 2e9
VALIDATION_BATCH = 4096


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths :func:`fit` uses; the defaults are the measured choices.

    Attributes:
        steps_per_execution: Optimizer steps per ``tf.function`` call; ``None`` picks one per
            trial with :func:`pick_steps_per_execution`, ``1`` is Keras' default.
        validation_batch_size: Batch size of the validation pass; ``None`` uses the training
            batch size (Keras' default).
        jit_compile: XLA; ``None`` turns it off on CPU and leaves Keras' choice on a GPU.
    """

    steps_per_execution: int | None = None
    validation_batch_size: int | None = VALIDATION_BATCH
    jit_compile: bool | None = None


PLAIN = FastPaths(steps_per_execution=1, validation_batch_size=None, jit_compile=None)
"""``model.fit`` as a notebook calls it (used by the benchmarks and tests to compare)."""


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A dataset's arrays as ready tensors, built once per worker process by :func:`prepare`.

    Attributes:
        x_train: Training images, float32, raw pixel scale.
        y_train: Training labels, int32.
        x_val: Validation images.
        y_val: Validation labels.
        device: Where the tensors live (``"CPU"`` or a GPU name).
    """

    x_train: tf.Tensor = field(repr=False)
    y_train: tf.Tensor = field(repr=False)
    x_val: tf.Tensor = field(repr=False)
    y_val: tf.Tensor = field(repr=False)
    device: str

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])


_PREPARED: weakref.WeakKeyDictionary[Dataset, PreparedData] = weakref.WeakKeyDictionary()


def prepare(dataset: Dataset) -> PreparedData:
    """The dataset as tensors, on the first visible GPU if there is one; cached per dataset.

    Datasets are loaded once per process (``search.data.load_dataset`` caches them), so this
    converts each once per worker, never per trial.
    """
    cached = _PREPARED.get(dataset)
    if cached is not None:
        return cached
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    device = gpus[0].name if gpus else "/CPU:0"
    with tf.device(device):
        x_train, y_train, x_val, y_val = (
            tf.identity(tf.convert_to_tensor(a))
            for a in (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val)
        )
    where = device.replace("/device:", "").strip("/")
    prepared = PreparedData(x_train, y_train, x_val, y_val, device=where)
    _PREPARED[dataset] = prepared
    return prepared


def freeze_long_lived() -> None:
    """Moves every object alive now (TensorFlow's modules, the data) out of the collector's view.

    Each trial runs ``gc.collect()``; with TensorFlow imported a full collection walks millions
    of long-lived objects and took ~0.4 s here. Frozen objects are never collected, so this is
    called once per worker after a collection, when what is alive stays alive (``gc.freeze``).
    """
    gc.collect()
    gc.freeze()


def pick_steps_per_execution(*, batch_size: int, n_train: int, flops_per_sample: int) -> int:
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
    by_flops = int(FLOPS_PER_EXECUTION // max(1, 3 * flops_per_sample * batch_size))
    return max(1, min(steps_per_epoch, by_samples, by_flops))


def fit(
    model: keras.Model,
    data: PreparedData,
    *,
    batch_size: int,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
    flops_per_sample: int,
    paths: FastPaths = FastPaths(),
) -> dict[str, Any]:
    """Trains a compiled model like ``model.fit(x, y, batch_size, epochs, validation_data)``.

    Returns:
        What the run used: ``steps_per_execution``, ``validation_batch_size``, ``jit_compile``
        (recorded in the trial so runs stay comparable).
    """
    spe = paths.steps_per_execution or pick_steps_per_execution(
        batch_size=batch_size, n_train=data.n_train, flops_per_sample=flops_per_sample
    )
    # set before the first fit: Keras builds the train / test functions lazily from these
    model.steps_per_execution = spe
    if paths.jit_compile is not None:
        model.jit_compile = paths.jit_compile
    elif data.device.startswith("CPU"):
        model.jit_compile = False
    model.fit(
        data.x_train,
        data.y_train,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        validation_data=(data.x_val, data.y_val),
        validation_batch_size=paths.validation_batch_size,
        callbacks=callbacks,
        verbose=0,
    )
    return {
        "steps_per_execution": spe,
        "validation_batch_size": paths.validation_batch_size or batch_size,
        "jit_compile": bool(model.jit_compile),
    }
