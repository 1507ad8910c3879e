"""Hypermodels written as KerasTuner's getting-started guide writes them (tests/.../test_kt_guide.py).

Not a test module: the tests point spaces at it by path, as a user's file.
"""

import keras
import keras_tuner as kt


def build_model(hp):
    model = keras.Sequential()
    model.add(keras.layers.Flatten())
    units = hp.Int("units", min_value=32, max_value=512, step=32)
    model.add(keras.layers.Dense(units=units, activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=hp.Choice("learning_rate", values=[1e-2, 1e-3])),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


class MyHyperModel(kt.HyperModel):
    def build(self, hp):
        return build_model(hp)

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(
            *args, batch_size=hp.Choice("batch_size", [16, 32]), shuffle=hp.Boolean("shuffle"), **kwargs
        )


class NeedsArgs(kt.HyperModel):
    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes

    def build(self, hp):
        model = keras.Sequential(
            [keras.layers.Flatten(), keras.layers.Dense(self.num_classes, activation="softmax")]
        )
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


def wrong_shape(hp):
    model = keras.Sequential(
        [keras.Input(shape=(28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
