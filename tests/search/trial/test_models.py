"""Model building for each family and option, and the FLOPs count."""

from __future__ import annotations

from typing import Any

import keras
import pytest

from search.trial.models import build, count_flops
from spaces import schema

BASE: dict[str, Any] = {
    "layers": 1,
    "units": (16,),
    "activation": "relu",
    "initializer": "glorot_uniform",
    "dropout": 0.0,
    "batch_norm": False,
    "l1": 0.0,
    "l2": 0.0,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "momentum": 0.0,
    "nesterov": False,
    "weight_decay": 0.0,
    "batch_size": 32,
    "epochs": 1,
    "patience": 0,
    "normalize": True,
    "conv_blocks": 2,
    "filters": (4, 8),
    "kernel_size": 3,
}


def _build(family: str = "mlp", shape: tuple[int, int, int] = (8, 8, 1), **overrides: Any) -> keras.Model:
    return build({**BASE, **overrides}, family=family, input_shape=shape, num_classes=10, pixel_max=16.0)


def _types(model: keras.Model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("name", schema.OPTIMIZERS)
def test_every_optimizer_in_the_schema_builds(name: str) -> None:
    model = _build(optimizer=name, learning_rate=0.05, momentum=0.9, nesterov=True)
    assert type(model.optimizer).__name__.lower() == name
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_sgd_gets_momentum_and_nesterov() -> None:
    opt = _build(optimizer="sgd", momentum=0.8, nesterov=True).optimizer
    assert opt.momentum == pytest.approx(0.8)
    assert opt.nesterov is True


@pytest.mark.parametrize("activation", schema.ACTIVATIONS)
def test_every_activation_builds(activation: str) -> None:
    model = _build(activation=activation)
    acts = [layer.activation.__name__ for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    assert acts == [{"swish": "silu"}.get(activation, activation)]  # Keras' name for swish


@pytest.mark.parametrize("initializer", schema.INITIALIZERS)
def test_every_initializer_builds(initializer: str) -> None:
    model = _build(initializer=initializer)
    dense = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    assert type(dense.kernel_initializer).__name__.lower().replace("_", "") == initializer.replace("_", "")


def test_mlp_layers_follow_the_params() -> None:
    model = _build(layers=3, units=(32, 16, 8), batch_norm=True, dropout=0.25, l1=1e-5, l2=1e-4)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [32, 16, 8, 10]
    assert _types(model).count("BatchNormalization") == 3
    assert _types(model).count("Dropout") == 3
    assert dense[0].kernel_regularizer is not None
    assert dense[0].use_bias is False  # batch norm supplies the shift


def test_zero_hidden_layers_is_softmax_regression() -> None:
    model = _build(layers=0, units=())
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [10]


def test_normalize_adds_a_rescaling_layer_only_when_on() -> None:
    assert "Rescaling" in _types(_build(normalize=True))
    assert "Rescaling" not in _types(_build(normalize=False))


def test_cnn_pools_only_while_the_feature_map_is_at_least_two_wide() -> None:
    model = _build("cnn", conv_blocks=4, filters=(4, 4, 4, 4), dropout=0.1, layers=0, units=())
    assert _types(model).count("Conv2D") == 4
    assert _types(model).count("MaxPooling2D") == 3  # 8 -> 4 -> 2 -> 1, then no more
    assert _types(model).count("Dropout") == 4
    assert model.output_shape == (None, 10)


def test_flops_of_the_notebook_mlp() -> None:
    model = build(
        {**BASE, "units": (128,)}, family="mlp", input_shape=(28, 28, 1), num_classes=10, pixel_max=255.0
    )
    assert count_flops(model) == (2 * 784 * 128 + 128) + (2 * 128 * 10 + 10)


def test_flops_of_a_conv_layer() -> None:
    model = _build("cnn", conv_blocks=1, filters=(4,), kernel_size=3, layers=0, units=())
    conv = 2 * 3 * 3 * 1 * 4 * 8 * 8  # same padding keeps 8x8
    dense = 2 * (4 * 4 * 4) * 10 + 10  # pooled to 4x4x4
    assert count_flops(model) == conv + dense
