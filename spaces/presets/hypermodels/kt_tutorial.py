"""The KerasTuner tutorial hypermodel ("Introduction to the Keras Tuner", Fashion-MNIST MLP).

Unchanged from the tutorial except that ``Flatten`` takes its input shape from the data (the
tutorial hard-codes ``input_shape=(28, 28)``), so the same file also runs on the 8x8 digits.
hpsearch scales the pixels to [0, 1] in front of the model (``training.normalize``), as the
tutorial does to its arrays.
"""

from __future__ import annotations

from typing import Any

import keras


def build(hp: Any) -> keras.Model:
    model = keras.Sequential()
    model.add(keras.layers.Flatten())
    # Tune the number of units in the first Dense layer: an optimal value between 32 and 512.
    hp_units = hp.Int("units", min_value=32, max_value=512, step=32)
    model.add(keras.layers.Dense(units=hp_units, activation="relu"))
    model.add(keras.layers.Dense(10))
    # Tune the learning rate for the optimizer: one of 0.01, 0.001 or 0.0001.
    hp_learning_rate = hp.Choice("learning_rate", values=[1e-2, 1e-3, 1e-4])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=hp_learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
