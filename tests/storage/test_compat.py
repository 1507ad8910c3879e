"""storage.compat: each use of a private Optuna / optuna-dashboard / KerasTuner API, read back
through the public API. An upgrade that moves one of those internals fails here first.
"""

from __future__ import annotations

from typing import Any

import keras_tuner as kt
import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from optuna_dashboard import get_note

import storage
from storage import compat
from tests.helpers import dashboard_api

# ---- Optuna: studies and trials ------------------------------------------------------------------


def _study(url: str, name: str = "s", directions: tuple[str, ...] = ("maximize",)) -> optuna.Study:
    store = storage.open_storage(url, heartbeat_interval=None)
    return optuna.create_study(storage=store, study_name=name, directions=list(directions))


def test_ids_are_the_storage_ids(storage_url: str) -> None:
    study = _study(storage_url)
    _study(storage_url, name="other")  # so that the ids are not all 0
    store = compat.study_storage(study)
    assert compat.study_id(study) == store.get_study_id_from_name("s")
    asked = study.ask()
    study.tell(study.ask(), 1.0)
    for trial in (asked, *study.get_trials()):
        assert compat.trial_id(trial) == store.get_trial_id_from_study_id_trial_number(
            compat.study_id(study), trial.number
        )


def test_study_storage_is_the_storage_the_study_writes_to(storage_url: str) -> None:
    study = _study(storage_url)
    compat.study_storage(study).set_study_user_attr(compat.study_id(study), "written", [1, 2])
    assert study.user_attrs == {"written": [1, 2]}
    reopened = optuna.load_study(study_name="s", storage=storage.open_storage(storage_url))
    assert reopened.user_attrs == {"written": [1, 2]}


def test_rdb_backend_looks_through_optunas_cache(storage_url: str) -> None:
    store = storage.open_storage(storage_url, heartbeat_interval=None)
    study = optuna.create_study(storage=store)
    # an RDB storage is wrapped in Optuna's cache; the others are used as they are
    assert compat.rdb_backend(compat.study_storage(study)) is store
    in_memory = optuna.storages.InMemoryStorage()
    assert compat.rdb_backend(in_memory) is in_memory


def test_claim_waiting_trial_moves_one_waiting_trial_to_running(storage_url: str) -> None:
    study = _study(storage_url)
    assert compat.claim_waiting_trial(study) is None  # an empty queue: no trial created either
    assert study.get_trials() == []
    # queued through another connection, as another process would: the claim must see it
    other = optuna.load_study(study_name="s", storage=storage.open_storage(storage_url))
    other.enqueue_trial({"x": 1.0})
    other.enqueue_trial({"x": 2.0})
    claimed = compat.claim_waiting_trial(study)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.WAITING]
    assert claimed == compat.trial_id(trials[0])
    assert compat.claim_waiting_trial(study) == compat.trial_id(trials[1])
    assert compat.claim_waiting_trial(study) is None
    assert [t.state for t in other.get_trials()] == [TrialState.RUNNING] * 2


@pytest.mark.backends("sqlite", "postgresql")
def test_claim_waiting_trial_with_a_token_beats_and_can_be_asked_again(storage_url: str) -> None:
    store = storage.open_storage(storage_url, heartbeat_interval=10)
    study = optuna.create_study(storage=store, study_name="s")
    study.enqueue_trial({"x": 1.0})
    study.enqueue_trial({"x": 2.0})
    first, second = (compat.trial_id(t) for t in study.get_trials())
    assert compat.claim_waiting_trial(study, token="t1") == first
    # asked again with the same token (its reply was lost): the same trial, not the next one
    assert compat.claim_waiting_trial(study, token="t1", again=True) == first
    assert compat.claim_waiting_trial(study, token="t2", again=True) == second  # nothing held: claims
    assert compat.claim_waiting_trial(study, token="t3") is None
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.RUNNING] * 2
    assert [t.system_attrs[compat.CLAIM_KEY] for t in trials] == ["t1", "t2"]
    assert all(t.datetime_start is not None for t in trials)
    # each has its first heartbeat: a claim that dies with its worker goes stale
    backend = compat.rdb_backend(store)
    assert isinstance(backend, optuna.storages.RDBStorage)
    with backend.engine.connect() as db:
        beats = db.execute(sqlalchemy.text("SELECT trial_id FROM trial_heartbeats ORDER BY trial_id")).all()
    assert [b[0] for b in beats] == [first, second]


def test_insert_study_system_attr_sets_a_key_once(storage_url: str) -> None:
    study = _study(storage_url)
    assert compat.insert_study_system_attr(study, "k", 1) is True
    assert compat.insert_study_system_attr(study, "k", 2) is False  # the first one stays
    store = storage.open_storage(storage_url, heartbeat_interval=None)
    assert store.get_study_system_attrs(store.get_study_id_from_name("s"))["k"] == 1


def test_fix_params_makes_a_claimed_trial_suggest_them(storage_url: str) -> None:
    study = _study(storage_url)
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))
    claimed = compat.claim_waiting_trial(study)
    assert claimed is not None
    compat.fix_params(study, claimed, {"x": 0.25})
    trial = optuna.Trial(study, claimed)
    assert trial.suggest_float("x", 0.0, 1.0) == 0.25
    assert compat.fixed_params(study.get_trials()[0]) == {"x": 0.25}


@pytest.mark.backends("sqlite", "postgresql")
def test_delete_blank_waiting_keeps_numbers_unique(storage_url: str) -> None:
    study = _study(storage_url)
    study.tell(study.ask(), 1.0)
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))
    assert compat.delete_blank_waiting(study) == 3
    assert [t.number for t in study.get_trials()] == [0]
    study.enqueue_trial({"x": 1.0})
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))
    assert compat.delete_blank_waiting(study) == 1  # the blank after the queued one; not the queued one
    assert [(t.number, t.state) for t in study.get_trials()] == [
        (0, TrialState.COMPLETE),
        (1, TrialState.WAITING),
    ]


def test_add_blank_waiting_writes_what_add_trial_writes(storage_url: str) -> None:
    study, other = _study(storage_url), _study(storage_url, name="other")
    study.tell(study.ask(), 1.0)
    other.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))  # another study's rows
    compat.add_blank_waiting(study, 3)
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))  # Optuna numbers the next
    compat.add_blank_waiting(other, 2)
    trials = study.get_trials()
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.COMPLETE)] + [
        (n, TrialState.WAITING) for n in (1, 2, 3, 4)
    ]
    assert all(t.params == {} and t.datetime_start is None and not t.system_attrs for t in trials[1:])
    assert [t.number for t in other.get_trials()] == [0, 1, 2]
    fresh = optuna.load_study(
        study_name="s", storage=storage.open_storage(storage_url, heartbeat_interval=None)
    )
    assert [t.number for t in fresh.get_trials()] == [0, 1, 2, 3, 4]
    claimed = study.ask()  # Optuna's own queue pops the first blank
    assert claimed.number == 1


def test_update_cached_user_attrs_shows_in_the_running_trial() -> None:
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("kept", 1)
    storage.set_user_attrs(compat.study_storage(study), compat.trial_id(trial), {"batched": [1, 2]})
    compat.update_cached_user_attrs(trial, {"batched": [1, 2]})
    assert trial.user_attrs == {"kept": 1, "batched": [1, 2]} == study.trials[0].user_attrs


@pytest.mark.parametrize("constrained", [False, True])
def test_pareto_front_is_optunas_best_trials(constrained: bool) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    # (accuracy, seconds): 0, 1 and 3 are the front; 1 breaks the constraint when there is one
    for number, (accuracy, seconds) in enumerate([(0.9, 3.0), (0.95, 5.0), (0.8, 4.0), (0.7, 1.0)]):
        trial = study.ask()
        if constrained:
            trial.set_constraint("memory", 1.0 if number == 1 else -1.0)  # > 0: infeasible
        study.tell(trial, [accuracy, seconds])
    study.tell(study.ask(), state=TrialState.FAIL)
    study.tell(study.ask(), state=TrialState.PRUNED)
    study.ask()  # still running

    front = compat.pareto_front(study.get_trials(), study.directions)
    assert sorted(t.number for t in front) == sorted(t.number for t in study.best_trials)
    assert sorted(t.number for t in front) == ([0, 3] if constrained else [0, 1, 3])


# ---- Optuna: the RDB storage ---------------------------------------------------------------------


def test_rdb_methods_are_optunas_own_database_methods() -> None:
    base = optuna.storages.BaseStorage
    for name in compat.RDB_METHODS:
        method = getattr(optuna.storages.RDBStorage, name)
        assert callable(method), name
        assert method is not getattr(base, name, None), f"{name}: no longer RDBStorage's own"


@pytest.mark.backends("sqlite", "postgresql")
def test_upsert_trial_user_attrs_writes_optunas_rows(storage_url: str) -> None:
    study = _study(storage_url)
    backend = compat.rdb_backend(compat.study_storage(study))
    assert isinstance(backend, optuna.storages.RDBStorage)
    trial = study.ask()
    trial.set_user_attr("kept", 1)
    trial.set_user_attr("replaced", "old")
    attrs: dict[str, Any] = {"replaced": "new", "curves": {"loss": [0.5, 0.25]}, "ok": True, "none": None}
    compat.upsert_trial_user_attrs(backend, compat.trial_id(trial), attrs, finished_ok=False)
    assert study.trials[0].user_attrs == {"kept": 1, **attrs}

    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        compat.upsert_trial_user_attrs(backend, compat.trial_id(trial), {"late": 1}, finished_ok=False)
    compat.upsert_trial_user_attrs(backend, compat.trial_id(trial), {"test_accuracy": 0.9}, finished_ok=True)
    reopened = optuna.load_study(study_name="s", storage=storage.open_storage(storage_url))
    assert reopened.trials[0].user_attrs == {"kept": 1, **attrs, "test_accuracy": 0.9}
    assert reopened.trials[0].state == TrialState.COMPLETE


# ---- optuna-dashboard ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["**COMPLETE** val_accuracy=0.9", "é" + "x" * 5000], ids=["short", "long"])
def test_dashboard_note_attrs_are_read_back_as_the_trials_note(tmp_path: Any, body: str) -> None:
    store = storage.open_storage(f"sqlite:///{tmp_path / 'n.db'}", heartbeat_interval=None)
    study = optuna.create_study(storage=store, study_name="noted")
    trials = [study.ask(), study.ask()]
    for key, value in compat.dashboard_note_attrs(compat.trial_id(trials[1]), body).items():
        store.set_study_system_attr(compat.study_id(study), key, value)
    assert get_note(trials[1]) == body
    assert get_note(trials[0]) == ""  # another trial's note is untouched
    shown = dashboard_api(store, f"/api/studies/{compat.study_id(study)}")["trials"]
    assert shown[1]["note"] == {"version": 1, "body": body}


# ---- KerasTuner ----------------------------------------------------------------------------------


def test_kt_kind_names_each_hyperparameter_type() -> None:
    hp = kt.HyperParameters()
    hp.Fixed("fixed", 3)
    hp.Boolean("boolean")
    hp.Choice("choice", ["a", "b"])
    hp.Int("int", 1, 4)
    hp.Float("float", 0.0, 1.0)
    assert [(h.name, compat.kt_kind(h)) for h in hp.space] == [
        (kind, kind) for kind in ("fixed", "boolean", "choice", "int", "float")
    ]
    assert compat.kt_kind(object()) is None


def test_suggesting_hyperparameters_takes_each_new_active_value_from_suggest() -> None:
    asked: list[str] = []

    class Largest(compat.suggesting_hyperparameters()):  # type: ignore[misc]
        def suggest(self, hp: Any) -> Any:
            asked.append(hp.name)
            kind = compat.kt_kind(hp)
            return hp.max_value if kind == "int" else hp.values[-1] if kind == "choice" else True

    assert compat.suggesting_hyperparameters() is compat.suggesting_hyperparameters()  # one class
    hp = Largest()
    assert isinstance(hp, kt.HyperParameters)
    assert hp.Int("units", 8, 64, step=8) == 64  # not the default (8)
    assert hp.Int("units", 8, 64, step=8) == 64 and asked == ["units"]  # suggested once per name
    with hp.name_scope("block"):
        assert hp.Choice("act", ["relu", "tanh"]) == "tanh"
    assert hp.Boolean("extra") is True
    with hp.conditional_scope("extra", [False]):
        assert hp.Int("inactive", 1, 4) is None  # inactive: never suggested
    with pytest.raises(ValueError, match="min_value 5 is greater than the max_value 1"):
        hp.Int("bad", 5, 1)  # KerasTuner still validates first
    assert asked == ["units", "block/act", "extra"]
    assert hp.values == {"units": 64, "block/act": "tanh", "extra": True}


# ---- TensorFlow ------------------------------------------------------------------------------------


def test_release_custom_gradients_frees_the_traced_graphs_and_gradients_still_work() -> None:
    import gc
    import weakref

    import tensorflow as tf

    @tf.custom_gradient
    def double(x: tf.Tensor) -> Any:
        return 2.0 * x, lambda dy: 3.0 * dy  # a gradient that is not the true one: it is used

    def traced() -> tuple[weakref.ref[Any], float]:
        @tf.function
        def grad(x: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = double(x)
            return tape.gradient(y, x)

        concrete = grad.get_concrete_function(tf.TensorSpec([], tf.float32))
        return weakref.ref(concrete.graph), float(grad(tf.constant(1.0)))

    graph, value = traced()
    gc.collect()
    assert value == 3.0
    assert graph() is not None  # held by TensorFlow's gradient registry: the leak
    assert compat.release_custom_gradients() >= 1
    gc.collect()
    assert graph() is None
    assert compat.release_custom_gradients() == 0
    assert traced()[1] == 3.0  # a new trace registers (and finds) its own gradient again
