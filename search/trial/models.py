"""Keras model builders (``mlp``, ``cnn``) from sampled hyperparameters.

``params`` is the dict :meth:`spaces.Space.sample` returns: per-layer values are tuples.
Input normalization is a ``Rescaling`` layer, so the data stays in its raw pixel scale and is
never copied per trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from spaces import schema

__all__ = ["build", "count_flops", "make_optimizer"]

Layer = Any  # keras layers are untyped


def make_optimizer(p: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """The optimizer ``p["optimizer"]`` names (its class from :data:`spaces.schema.OPTIMIZER_CLASSES`).

    ``momentum`` applies to SGD and RMSprop, ``nesterov`` to SGD; a ``weight_decay`` of 0 means
    none, except for AdamW, whose own default decay (0.004) then applies.
    """
    name = p["optimizer"]
    options: dict[str, Any] = {"learning_rate": p["learning_rate"], "weight_decay": p["weight_decay"] or None}
    if name in ("sgd", "rmsprop"):
        options["momentum"] = p["momentum"]
    if name == "sgd":
        options["nesterov"] = p["nesterov"]
    if name == "adamw":
        options["weight_decay"] = p["weight_decay"] or 0.004
    return getattr(keras.optimizers, schema.OPTIMIZER_CLASSES[name])(**options)


def build(
    params: Mapping[str, Any],
    *,
    family: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    pixel_max: float,
    metrics: Sequence[str] = (),
    feature_stats: tuple[Any, Any] | None = None,
) -> keras.Model:
    """Build and compile a classifier.

    Two classes get one sigmoid output and binary cross-entropy; more get a softmax with sparse
    labels, or one-hot labels when a metric needs them (``auc``, ``precision``... on several
    classes: Keras computes them on one-hot labels). With ``normalize``, images are rescaled by
    ``1 / pixel_max`` and feature rows standardized with ``feature_stats`` (mean, variance).

    Example:
        >>> import spaces, optuna
        >>> space = spaces.load("quickstart")
        >>> params = space.sample(optuna.create_study(directions=list(space.directions)).ask())
        >>> model = build(params, family="mlp", input_shape=(8, 8, 1), num_classes=10, pixel_max=16.0)
        >>> model.output_shape
        (None, 10)
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    if params["normalize"]:
        if len(input_shape) == 1 and feature_stats is not None:
            mean, variance = feature_stats
            x = keras.layers.Normalization(mean=mean, variance=variance)(x)
        else:
            x = keras.layers.Rescaling(1.0 / pixel_max)(x)
    if family == "cnn":
        if len(input_shape) != 3:
            raise ValueError(f"a cnn needs images (H, W, C), got samples of shape {input_shape}")
        x = _conv_blocks(x, params)
    x = keras.layers.Flatten()(x)
    for units in params["units"]:
        x = _dense_block(x, units, params)
    binary = num_classes == 2
    # float32 at the output even under mixed precision: a float16 softmax loses accuracy
    outputs = keras.layers.Dense(
        1 if binary else num_classes,
        activation="sigmoid" if binary else "softmax",
        kernel_initializer=params["initializer"],
        dtype="float32",
    )(x)
    model = keras.Model(inputs, outputs)
    if binary:
        loss = "binary_crossentropy"
    else:
        loss = "categorical_crossentropy" if metrics else "sparse_categorical_crossentropy"
    model.compile(optimizer=make_optimizer(params), loss=loss, metrics=["accuracy", *map(_metric, metrics)])
    return model


def _metric(name: str) -> Any:
    cls, options = schema.KERAS_METRICS[name]
    return getattr(keras.metrics, cls)(name=name, **options)


def _regularizer(params: Mapping[str, Any]) -> Any:
    if params["l1"] or params["l2"]:
        return keras.regularizers.L1L2(l1=params["l1"], l2=params["l2"])
    return None


def _dense_block(x: Layer, units: int, params: Mapping[str, Any]) -> Layer:
    bn = params["batch_norm"]
    x = keras.layers.Dense(
        units,
        kernel_initializer=params["initializer"],
        kernel_regularizer=_regularizer(params),
        use_bias=not bn,  # batch norm's beta is the bias
    )(x)
    if bn:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation(params["activation"])(x)
    if params["dropout"] > 0:
        x = keras.layers.Dropout(params["dropout"])(x)
    return x


def _conv_blocks(x: Layer, params: Mapping[str, Any]) -> Layer:
    """Conv2D -> [BatchNorm] -> activation -> MaxPooling (while the map is >= 2 wide) -> Dropout."""
    for filters in params["filters"]:
        x = keras.layers.Conv2D(
            filters,
            params["kernel_size"],
            padding="same",
            kernel_initializer=params["initializer"],
            kernel_regularizer=_regularizer(params),
            use_bias=not params["batch_norm"],
        )(x)
        if params["batch_norm"]:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation(params["activation"])(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D(2)(x)
        if params["dropout"] > 0:
            x = keras.layers.Dropout(params["dropout"])(x)
    return x


def count_flops(model: keras.Model) -> int:
    """Forward FLOPs per sample of the Dense and Conv2D layers (a multiply-add counts as 2).

    Activations, pooling and normalization are ignored: they are a small fraction here.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a nested model, e.g. a KerasTuner hypermodel's
            total += count_flops(layer)
        elif isinstance(layer, keras.layers.Dense):
            fan_in = int(layer.input.shape[-1])
            total += 2 * fan_in * layer.units + (layer.units if layer.use_bias else 0)
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            c_in = int(layer.input.shape[-1])
            kh, kw = layer.kernel_size
            total += 2 * kh * kw * c_in * int(c_out) * int(h) * int(w)
    return total
