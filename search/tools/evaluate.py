"""Final evaluation of one trial on the test split: retrain, test once, report, save the model.

The search never reads the test split; this is the one place that does, after the search, for
a trial the user picked (the best trial, or one of the Pareto front).

Example:
    >>> import optuna, storage
    >>> store = storage.open_storage("sqlite:///hpsearch.db")  # doctest: +SKIP
    >>> result = evaluate(store, "quickstart", out_dir="eval")  # doctest: +SKIP
    >>> result.confusion.sum() == result.test_size  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from numpy.typing import NDArray
from optuna.trial import FrozenTrial

import storage
from search import keys
from search.errors import ConfigError, TrialFailed
from search.results.select import choose_trial, chosen_epochs, trial_params
from search.tools.evaluation import Evaluation, as_attrs, format_evaluation, plot_confusion

if TYPE_CHECKING:
    from search.trial.data import Dataset
    from spaces import Space

__all__ = ["FITS", "Evaluation", "evaluate", "format_evaluation"]

FITS = ("train+validation", "train")


def evaluate(
    store: optuna.storages.BaseStorage,
    study_name: str,
    *,
    trial: int | None = None,
    out_dir: str | Path = "hpsearch-eval",
    fit: str = "train+validation",
    data_dir: str | None = None,
    hypermodel: str | None = None,
    data: str | None = None,
) -> Evaluation:
    """Retrain a trial, evaluate it once on the test split, save the model and the matrix image.

    ``fit="train+validation"`` trains on both for the trial's ``best_epoch`` epochs (the epoch
    whose weights the search kept and scored); ``fit="train"`` repeats the trial as it ran (same
    data, seed, epochs and early stopping), so the saved model is the one that was scored. The
    test metrics are recorded in the trial's user attrs (``test_accuracy``, ``test_loss``, ...).
    A KerasTuner hypermodel study needs ``hypermodel``: the user's own copy of the file, checked
    against the study's sha256 as for a worker (one that overrides ``HyperModel.fit`` retrains
    through it); a file dataset is read where the study recorded
    it, or from ``data`` (a loader's ``FILE.py:NAME`` must be given).

    Raises:
        ConfigError: unknown trial or fit, an output directory that is a file, a study name that
            would write outside ``out_dir``, or a configuration that cannot be built.
        HPSearchError: the study has no completed trial, the test data is missing, or training
            failed (:class:`TrialFailed`, with the reason a trial would record).
    """
    from sklearn.metrics import classification_report, confusion_matrix

    from search.hypermodels.binding import bind_worker
    from search.study.create import load_space
    from search.trial.build import failure_reason, fresh_model, label_encoding
    from search.trial.data import load_for
    from search.trial.testsplit import load_test_for

    if fit not in FITS:
        raise ConfigError(f"--fit: expected one of {', '.join(FITS)}, got {fit!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    space = load_space(store, study_name, data=data)
    from search.trial import backend as backends

    backends.select(backends.resolve(None, space))  # $KERAS_BACKEND, else the space's; before Keras starts
    study = optuna.load_study(study_name=study_name, storage=store)
    space = bind_worker(space, study.user_attrs, study_name, hypermodel)  # your copy of its hypermodel
    chosen = choose_trial(study, trial)
    target = _inside(out, f"{study_name}-trial{chosen.number}")  # before any work: nothing outside --out
    params = trial_params(chosen)
    ds = load_for(space, data_dir)
    test = load_test_for(space, data_dir)

    seed = space.seed + chosen.number  # the trial's own seed
    model = fresh_model(space, params, ds, seed=seed, trial_params=chosen.params)
    names = ds.class_names or tuple(str(i) for i in range(ds.num_classes))
    test_y: NDArray[Any] = test.y
    if label_encoding(model) == "one_hot":  # a categorical loss: one-hot labels, as in the trial
        ds, test_y = ds.one_hot(), np.eye(ds.num_classes, dtype=np.float32)[test.y]
    try:
        epochs, train_size = _fit(model, ds, params, chosen, fit, space)
    except Exception as e:  # out of memory, a custom layer's error: one line, as for the trial
        reason = failure_reason(e, during="train", hypermodel=space.hypermodel)
        if reason is None:
            raise
        raise TrialFailed(f"trial {chosen.number} could not be retrained: {reason}") from e
    val_accuracy = None
    if fit == "train":  # the trial repeated: its validation accuracy should come back
        val_accuracy = _accuracy(model.evaluate(ds.x_val, ds.y_val, verbose=0, return_dict=True))
    scores = model.evaluate(test.x, test_y, verbose=0, return_dict=True)
    test_loss, test_accuracy = float(scores["loss"]), _accuracy(scores)
    probabilities = np.asarray(model.predict(test.x, verbose=0))
    if probabilities.shape[-1] == 1:  # one sigmoid output: two classes
        predicted = (probabilities[:, 0] > 0.5).astype(np.int64)
    else:
        predicted = np.argmax(probabilities, axis=1)
    labels = list(range(test.num_classes))
    matrix = confusion_matrix(test.y, predicted, labels=labels)
    report = classification_report(
        test.y, predicted, labels=labels, target_names=names, digits=4, zero_division=0
    )
    per_class = classification_report(
        test.y, predicted, labels=labels, target_names=names, output_dict=True, zero_division=0
    )

    target.mkdir(parents=True, exist_ok=True)
    model_path = target / "model.keras"
    model.save(model_path)
    plot_path = plot_confusion(matrix, names, target / "confusion_matrix.png", title=_title(space, chosen))
    result = Evaluation(
        study=study_name,
        trial=chosen.number,
        fit=fit,
        epochs=epochs,
        train_size=train_size,
        test_size=len(test.y),
        test_source=test.source,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        confusion=matrix,
        class_names=names,
        report=str(report),
        per_class=dict(per_class),
        model_path=model_path,
        plot_path=plot_path,
        val_accuracy=val_accuracy,
        recorded_val_accuracy=chosen.user_attrs.get("val_accuracy"),
    )
    (target / "evaluation.json").write_text(json.dumps(as_attrs(result), indent=2))
    _record(store, study, chosen, as_attrs(result))
    return result


def _fit(
    model: Any, ds: Dataset, params: dict[str, Any], trial: FrozenTrial, fit: str, space: Space
) -> tuple[int, int]:
    """Train as ``fit`` says; the epochs run and the number of training samples.

    A hypermodel that overrides ``HyperModel.fit`` trains through it, as its trial did, with
    the trial's values for what it tunes there (``batch_size``, ``shuffle``, ...).
    """
    import dataclasses

    import keras

    from search.hypermodels.adapter import OptunaHyperParameters
    from search.hypermodels.loader import hypermodel_of, load_builder
    from search.trial.callbacks import early_stopping, lr_schedule
    from search.trial.hyperfit import overrides_fit, run_fit

    # the trial's schedule over its epochs: a shorter retrain stops where the trial's best was
    schedule = lr_schedule(params.get("lr_schedule", "constant"), model, int(params["epochs"]))
    callbacks: list[keras.callbacks.Callback] = [] if schedule is None else [schedule]
    if fit == "train":
        data, epochs = ds, int(params["epochs"])
        if params["patience"] > 0:
            callbacks.append(early_stopping(space.watched, params["patience"]))
    else:
        epochs = int(chosen_epochs(trial, params))
        x, y = np.concatenate([ds.x_train, ds.x_val]), np.concatenate([ds.y_train, ds.y_val])
        data = dataclasses.replace(ds, x_train=x, y_train=y)
    hypermodel = None if space.hypermodel is None else hypermodel_of(load_builder(space.hypermodel))
    if overrides_fit(hypermodel):
        hp = OptunaHyperParameters(optuna.trial.FixedTrial(dict(trial.params)))
        result = run_fit(
            hypermodel, hp, model, data, batch_size=params["batch_size"], epochs=epochs,
            callbacks=callbacks, validate=fit == "train",
        )  # fmt: skip
    else:
        result = model.fit(
            data.x_train, data.y_train, batch_size=params["batch_size"], epochs=epochs, shuffle=True,
            validation_data=(ds.x_val, ds.y_val) if fit == "train" else None,
            callbacks=callbacks, verbose=0,
        )  # fmt: skip
    ran = getattr(result, "epoch", None)  # a History; an override may return a dict or a number
    return (len(ran) if fit == "train" and isinstance(ran, list) else epochs), len(data.y_train)


def _accuracy(scores: dict[str, Any]) -> float:
    """The accuracy among a model's evaluated metrics (Keras names it accuracy, or acc)."""
    value = scores.get("accuracy", scores.get("acc", scores.get("compile_metrics")))
    if isinstance(value, dict):
        value = value.get("accuracy")
    return float("nan") if value is None else float(value)


def _inside(out: Path, name: str) -> Path:
    """``out / name``, refused unless it stays inside ``out`` once resolved (``..``, symbolic links)."""
    target = out / name
    base, resolved = out.resolve(), target.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise ConfigError(f"--out {out}: {name!r} would be written outside it, at {resolved}")
    return target


def _title(space: Space, trial: FrozenTrial) -> str:
    return f"{space.name}: trial {trial.number} on the {space.dataset.name} test split"


def _record(
    store: optuna.storages.BaseStorage, study: optuna.Study, trial: FrozenTrial, attrs: dict[str, Any]
) -> None:
    """Store ``attrs`` in the finished trial's user attrs.

    Optuna's API refuses to change a finished trial, so on SQLite / PostgreSQL the rows are
    written into Optuna's own table (:func:`storage.set_user_attrs`); other storages (journal,
    gRPC) get a study user attr ``hpsearch:test:trial N`` instead.
    """
    if not isinstance(store, optuna.storages.RDBStorage):
        study.set_user_attr(f"{keys.TEST_PREFIX}{trial.number}", attrs)
        return
    trial_id = store.get_trial_id_from_study_id_trial_number(
        store.get_study_id_from_name(study.study_name), trial.number
    )
    storage.set_user_attrs(store, trial_id, attrs, finished_ok=True)
