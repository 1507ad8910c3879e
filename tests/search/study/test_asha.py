"""ASHA's scheduling and promotions through claim / report / tell, on synthetic curves (no training).

A synthetic worker claims trials as hpsearch's worker does (``QueueStudy.ask``, which promotes a
paused trial or hands out the baseline), samples the space, and "trains" by reporting a curve
computed from the parameters through the same :class:`AshaReporter` the Keras callback uses.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import spaces
import storage
from search import keys
from search.study import asha
from search.study.create import create_or_load, open_study
from search.study.queue import QueueEmpty, QueueStudy, drop_unrun, top_up
from search.trial.scheduling import AshaReporter, Continuation
from tests.helpers import TINY, float_range, space_text

EPOCHS = 9  # rungs at 1 and 3
SPACE = space_text(
    "synthetic",
    base=TINY,
    objectives=[{"metric": "val_accuracy"}],
    sampler={"type": "tpe", "seed": 3},
    model={"layers": 1, "units": 8},
    optimizer={"learning_rate": float_range(1e-4, 1e-1, log=True)},
    training={"epochs": EPOCHS},
)


def curve(lr: float, epoch: int) -> float:
    """Accuracy after ``epoch`` epochs: best at lr 1e-2, rising with the epochs."""
    quality = 1.0 - abs(math.log10(lr) + 2.0) / 3.0
    return quality * (1.0 - 0.5 ** (epoch + 1))


def work(study: QueueStudy, space: spaces.Space, epochs_trained: Counter[int]) -> int:
    """One synthetic worker: claim, train (report per epoch), pause or complete; trials run."""
    scheduler = asha.for_space(space)
    assert scheduler is not None
    ran = 0
    while True:
        try:
            trial = study.ask()
        except QueueEmpty:
            return ran
        params = space.sample(trial)
        after = Continuation.of(trial)
        reporter = AshaReporter(
            trial, scheduler, epochs=EPOCHS, after=after.epoch, metric="val_accuracy", native=True
        )
        value = 0.0
        for epoch in range(after.epoch + 1, EPOCHS + 1):
            value = curve(params["learning_rate"], epoch)
            epochs_trained[trial.number] += 1
            if reporter.report(value, epoch):
                trial.set_user_attr(keys.PAUSED_AT, epoch)
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, value)
        ran += 1


def _study(url: str, trials: int) -> tuple[QueueStudy, spaces.Space]:
    space = spaces.loads(SPACE, source="test")
    study = create_or_load(space, storage.open_storage(url))
    top_up(study, trials)
    return study, space


def test_defaults_schedule_asha_and_start_from_the_centre() -> None:
    space = spaces.loads(SPACE, source="test")
    assert space.pruner.type == "asha" and space.sampler.baseline
    assert asha.for_space(space) == asha.Asha(min_epochs=1, eta=3, maximize=True)
    assert asha.Asha().rungs(EPOCHS) == (1, 3)
    multi = spaces.loads(
        space_text("m", base=TINY, objectives=[{"metric": "val_accuracy"}, {"metric": "train_seconds"}]),
        source="test",
    )
    assert multi.pruner.type == "none"  # pausing on accuracy alone would hide fast Pareto points


def test_a_bad_first_trial_stops_after_one_epoch_and_the_best_are_promoted(tmp_path: Path) -> None:
    study, space = _study(f"sqlite:///{tmp_path / 'a.db'}", 30)
    trained: Counter[int] = Counter()
    assert work(study, space, trained) == 30
    trials = study.get_trials(deepcopy=False)
    first = trials[0]
    # nothing to compare with at its first rung: it pauses there instead of training 9 epochs
    assert first.user_attrs[keys.BASELINE] is True and first.params["learning_rate"] == pytest.approx(
        10**-2.5
    )
    assert first.state == TrialState.PRUNED and first.user_attrs[keys.PAUSED_AT] == 1
    assert trained[0] == 1
    continued = [t for t in trials if keys.RESUMED_FROM in t.user_attrs]
    assert continued, "no paused trial was ever promoted"
    for t in continued:
        source = trials[t.user_attrs[keys.RESUMED_FROM]["trial"]]
        assert t.params == source.params
        assert t.user_attrs[keys.RESUMED_FROM]["epoch"] == source.user_attrs[keys.PAUSED_AT]
        assert min(t.intermediate_values) == source.user_attrs[keys.PAUSED_AT] + 1  # no epoch twice
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete
    # every configuration's epochs add up to at most one full training: nothing is retrained
    by_config = Counter()
    for t in trials:
        by_config[t.params["learning_rate"]] += trained[t.number]
    assert max(by_config.values()) == EPOCHS
    # the top third at rung 1 went on; the rest of the configurations stopped there
    assert sum(trained.values()) < 30 * EPOCHS // 2  # trained fully, 30 trials would take 270 epochs


@pytest.mark.backends("sqlite", "postgresql")
def test_promotions_are_exact_with_three_workers(storage_url: str) -> None:
    study, space = _study(storage_url, 45)
    workers = [
        open_study(space, storage.open_storage(storage_url), study.study_name, worker=i) for i in range(3)
    ]
    trained: Counter[int] = Counter()
    errors: list[BaseException] = []

    def run(s: QueueStudy) -> None:
        try:
            work(s, space, trained)
        except BaseException as e:  # surfaced below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    trials = optuna.load_study(study_name=study.study_name, storage=storage_url).get_trials()
    assert len(trials) == 45 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    sources = [t.user_attrs[keys.RESUMED_FROM]["trial"] for t in trials if keys.RESUMED_FROM in t.user_attrs]
    assert sources and len(sources) == len(set(sources)), "a paused trial was promoted twice"
    store = storage.open_storage(storage_url)
    attrs = store.get_study_system_attrs(store.get_study_id_from_name(study.study_name))
    marks = {k for k in attrs if k.startswith(asha.PROMOTED)}
    assert marks == {f"{asha.PROMOTED}{n}" for n in sources}
    assert sum(keys.BASELINE in t.user_attrs for t in trials) == 1
    for number in sources:  # only paused trials are continued, each from where it paused
        assert trials[number].state == TrialState.PRUNED and keys.PAUSED_AT in trials[number].user_attrs


def test_promotions_pick_the_top_third_of_a_rung_best_first() -> None:
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.9, 0.7, 0.8, 0.6, 0.4):
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.PRUNED, intermediate_values={1: value}, user_attrs={keys.PAUSED_AT: 1}
            )
        )
    picked = asha.Asha(eta=3).promotions(study.get_trials(), taken=set())
    assert [p.source.intermediate_values[1] for p in picked] == [0.9, 0.8]  # 6 at the rung: top 2
    assert asha.Asha(eta=3).promotions(study.get_trials(), taken={1}) == picked[1:]
    lower = asha.Asha(eta=3, maximize=False).promotions(study.get_trials(), taken=set())
    assert [p.source.intermediate_values[1] for p in lower] == [0.4, 0.5]


def test_a_timeout_leaves_no_blank_queued_trials(tmp_path: Path) -> None:
    study, _ = _study(f"sqlite:///{tmp_path / 't.db'}", 1000)
    trial = study.ask()  # one trial ran; the run then stopped on its timeout
    study.tell(trial, 0.5)
    assert drop_unrun(study) == 999
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.COMPLETE]
    top_up(study, 1000)  # a resumed run queues the budget again, numbered after the others
    assert [t.number for t in study.get_trials(deepcopy=False)] == list(range(1000))


def test_blank_trials_before_a_kept_one_stay(tmp_path: Path) -> None:
    study, _ = _study(f"sqlite:///{tmp_path / 'k.db'}", 5)
    study.enqueue_trial({"learning_rate": 0.01})  # e.g. a trial re-queued after the blanks
    assert drop_unrun(study) == 0  # deleting them would give a later trial a taken number
    assert len(study.get_trials(deepcopy=False)) == 6


def test_the_budgets_last_trial_finishes_the_best_paused_one(tmp_path: Path) -> None:
    study, space = _study(f"sqlite:///{tmp_path / 'l.db'}", 4)
    work(study, space, Counter())
    trials = study.get_trials(deepcopy=False)
    last = trials[-1]
    assert last.state == TrialState.COMPLETE and keys.RESUMED_FROM in last.user_attrs
    paused = [t for t in trials[:-1] if t.state == TrialState.PRUNED]
    best = max(
        paused,
        key=lambda t: (t.user_attrs[keys.PAUSED_AT], t.intermediate_values[t.user_attrs[keys.PAUSED_AT]]),
    )
    assert last.user_attrs[keys.RESUMED_FROM]["trial"] == best.number
