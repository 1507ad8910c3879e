"""What a space file may contain: every key, its type, bounds and default.

Registries are plain names; ``search.trial.models`` and ``search.study.create`` map them to Keras and
Optuna objects.  A name in a data file is never turned into an import path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "DATASETS",
    "DATASET_INFO",
    "FAMILIES",
    "INITIALIZERS",
    "KERAS_METRICS",
    "LR_SCHEDULES",
    "METRICS",
    "OPTIMIZERS",
    "OPTIMIZER_CLASSES",
    "PRUNERS",
    "SAMPLERS",
    "SECTIONS",
    "STUDY_METRICS",
    "BundledDataset",
    "Field",
    "PrunerKind",
    "SamplerKind",
]

Kind = Literal["int", "float", "bool", "name"]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "linear", "gelu", "swish", "softplus")
INITIALIZERS = (
    "zeros",
    "ones",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "orthogonal",
)
# name -> the class in keras.optimizers
OPTIMIZER_CLASSES: dict[str, str] = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "nadam": "Nadam",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adamax": "Adamax",
}
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)
FAMILIES = ("mlp", "cnn")
# training.lr_schedule: the learning rate over ``training.epochs`` (search.trial.callbacks.lr_schedule)
LR_SCHEDULES = ("constant", "cosine")
# Keras 3 backends a worker may train on (training.backend, --backend, KERAS_BACKEND)
BACKENDS = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class BundledDataset:
    """A dataset hpsearch knows by name: its class names and largest pixel value."""

    class_names: tuple[str, ...]
    pixel_max: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_DIGIT_NAMES = tuple(str(i) for i in range(10))
DATASET_INFO: dict[str, BundledDataset] = {
    "digits": BundledDataset(_DIGIT_NAMES, 16.0),  # scikit-learn's 8x8 digits, 0..16
    "mnist": BundledDataset(_DIGIT_NAMES, 255.0),
    "fashion_mnist": BundledDataset(
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        255.0,
    ),
}
DATASETS = tuple(DATASET_INFO)

# Keras metrics a declarative model may log besides accuracy and loss (``training.metrics``):
# name -> (class in keras.metrics, its options); each is logged as NAME and val_NAME
KERAS_METRICS: dict[str, tuple[str, dict[str, Any]]] = {
    "auc": ("AUC", {}),
    "prc": ("AUC", {"curve": "PR"}),  # area under the precision-recall curve
    "precision": ("Precision", {}),
    "recall": ("Recall", {}),
}
# what hpsearch measures itself, once per trial
STUDY_METRICS: dict[str, str] = {"train_seconds": "minimize", "param_count": "minimize", "flops": "minimize"}
# metric -> the direction that makes sense for it (a metric not listed needs its direction given)
METRICS: dict[str, str] = {
    **{
        f"{prefix}{name}": direction
        for name, direction in (
            ("accuracy", "maximize"),
            ("loss", "minimize"),
            *((m, "maximize") for m in KERAS_METRICS),
            ("mae", "minimize"),
            ("mse", "minimize"),
        )
        for prefix in ("val_", "")
    },
    **STUDY_METRICS,
}
# metrics every declarative model logs per epoch, so a pruner can watch them
EPOCH_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")


@dataclass(frozen=True)
class Field:
    """One key of the ``model``, ``optimizer`` or ``training`` section."""

    kind: Kind
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: the value must be > low instead of >= low
    high_open: bool = False
    names: tuple[str, ...] = ()
    per_layer: str | None = None
    families: tuple[str, ...] = FAMILIES
    flat: str | None = None  # name in the params dict when it differs from the key
    searchable: bool = True  # False: one fixed value per space (e.g. training.backend)

    def describe(self) -> str:
        """The accepted values, for error messages."""
        if self.kind == "name":
            return "one of " + ", ".join(self.names)
        if self.kind == "bool":
            return "true or false"

        def show(x: float) -> str:
            return f"{int(x):,}" if self.kind == "int" else f"{x:g}"

        lo = "" if self.low is None else ("> " if self.low_open else ">= ") + show(self.low)
        hi = "" if self.high is None else ("< " if self.high_open else "<= ") + show(self.high)
        what = "an integer" if self.kind == "int" else "a number"
        return f"{what} {lo}{' and ' if lo and hi else ''}{hi}".strip()


SECTIONS: dict[str, dict[str, Field]] = {
    "model": {
        "conv_blocks": Field("int", 2, low=1, high=6, families=("cnn",)),
        "filters": Field("int", 32, low=1, high=4096, per_layer="conv_blocks", families=("cnn",)),
        "kernel_size": Field("int", 3, low=1, high=7, families=("cnn",)),
        "layers": Field("int", 1, low=0, high=16),
        "units": Field("int", 128, low=1, high=65536, per_layer="layers"),
        "activation": Field("name", "relu", names=ACTIVATIONS),
        "initializer": Field("name", "glorot_uniform", names=INITIALIZERS),
        "dropout": Field("float", 0.0, low=0.0, high=1.0, high_open=True),
        "batch_norm": Field("bool", False),
        "l1": Field("float", 0.0, low=0.0),
        "l2": Field("float", 0.0, low=0.0),
    },
    "optimizer": {
        "name": Field("name", "adam", names=OPTIMIZERS, flat="optimizer"),
        "learning_rate": Field("float", 1e-3, low=0.0, low_open=True),
        "momentum": Field("float", 0.0, low=0.0, high=1.0, high_open=True),
        "nesterov": Field("bool", False),
        "weight_decay": Field("float", 0.0, low=0.0),
    },
    "training": {
        "batch_size": Field("int", 64, low=1, high=1_000_000),
        "epochs": Field("int", 10, low=1, high=100_000),
        "patience": Field("int", 0, low=0, high=100_000),
        "lr_schedule": Field("name", "constant", names=LR_SCHEDULES),
        "normalize": Field("bool", True),
        "mixed_precision": Field("bool", False),  # float16 compute on a GPU; float32 on the CPU
        # Keras 3's backend; a process runs one, so it is one fixed value, never searched
        "backend": Field("name", "tensorflow", names=BACKENDS, searchable=False),
    },
}

Option = tuple[Kind, Any]  # (kind, default); default None means "Optuna's default"


@dataclass(frozen=True)
class SamplerKind:
    """A sampler a space may name: its class in ``optuna.samplers`` and the options it takes."""

    cls: str
    options: dict[str, Option]
    single_objective: bool = False
    needs: tuple[str, str] | None = None  # (module it imports, how to install it)


@dataclass(frozen=True)
class PrunerKind:
    """A pruner a space may name: its class in ``optuna.pruners`` and the options it takes."""

    cls: str
    options: dict[str, Option]


_STARTUP: dict[str, Option] = {"n_startup_trials": ("int", None)}
SAMPLERS: dict[str, SamplerKind] = {
    "tpe": SamplerKind(
        "TPESampler",
        {"n_startup_trials": ("int", None), "multivariate": ("bool", True), "constant_liar": ("bool", True)},
    ),
    "random": SamplerKind("RandomSampler", {}),
    "grid": SamplerKind("GridSampler", {}),
    "nsga2": SamplerKind("NSGAIISampler", {"population_size": ("int", None)}),
    "nsga3": SamplerKind("NSGAIIISampler", {"population_size": ("int", None)}),
    "gp": SamplerKind("GPSampler", _STARTUP, needs=("torch", "pip install 'hpsearch[gp]'")),
    "cmaes": SamplerKind(
        "CmaEsSampler", _STARTUP, single_objective=True, needs=("cmaes", "pip install cmaes")
    ),
}

_EVERY: dict[str, Option] = {
    "n_startup_trials": ("int", None),
    "n_warmup_steps": ("int", None),
    "interval_steps": ("int", None),
}
PRUNERS: dict[str, PrunerKind] = {
    "none": PrunerKind("NopPruner", {}),
    "median": PrunerKind("MedianPruner", _EVERY),
    "percentile": PrunerKind("PercentilePruner", {"percentile": ("float", 25.0), **_EVERY}),
    "successive_halving": PrunerKind(
        "SuccessiveHalvingPruner",
        {
            "min_resource": ("int", None),
            "reduction_factor": ("int", None),
            "min_early_stopping_rate": ("int", None),
        },
    ),
    "hyperband": PrunerKind(
        "HyperbandPruner",
        {"min_resource": ("int", None), "max_resource": ("int", None), "reduction_factor": ("int", None)},
    ),
    # hpsearch's own (search.study.asha); Optuna's study pruner stays NopPruner
    "asha": PrunerKind("NopPruner", {"min_epochs": ("int", 1), "reduction_factor": ("int", 3)}),
    "threshold": PrunerKind(
        "ThresholdPruner",
        {"lower": ("float", None), "upper": ("float", None), "n_warmup_steps": ("int", None)},
    ),
}
