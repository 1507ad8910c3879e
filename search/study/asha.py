"""Asynchronous successive halving over epochs (ASHA, Li et al. 2020): the default scheduler.

Every configuration first trains to the lowest rung (``min_epochs``, 1 by default). The rungs
are ``min_epochs * reduction_factor**k`` epochs with at least ``reduction_factor`` times as
many epochs to go (1 and 3 for 10 epochs and the default factor 3; 1, 3, 9 for 27). At a rung
a trial goes on only if its pruning metric there is in the top ``1 / reduction_factor`` of
every value recorded at that rung so far, its own included; otherwise it *pauses*: its weights
and optimizer state are saved (:mod:`search.trial.checkpoint`) and it ends PRUNED with
``paused_at`` = the rung's epoch. When later trials make a paused one top
``1 / reduction_factor`` of its rung, the next trial a worker claims *promotes* it instead of
sampling: it takes the paused trial's parameters and continues
from its checkpoint at that epoch (a worker without the file retrains those epochs first).

Why not Optuna's ``SuccessiveHalvingPruner`` / ``HyperbandPruner``: an Optuna trial cannot be
suspended, so they let a rung's first trials through (nothing to compare them with yet) and the
very first configuration trains every epoch however slow and bad it is -- in the issue that
asked for this, 376 s of a 600 s budget. Here nothing trains past a rung before it has beaten
``reduction_factor - 1`` others there, and nothing is trained twice.

Promotions are exact with any number of workers: each is claimed by one INSERT that the
storage's unique index allows once (:func:`storage.compat.insert_study_system_attr`). A
promotion uses one of the budget's queued trials, so ``budget.trials`` counts trials as
KerasTuner's Hyperband does: a continuation is a trial.

Example:
    >>> Asha(min_epochs=1, eta=3).rungs(10), Asha(min_epochs=1, eta=3).rungs(27)
    ((1, 3), (1, 3, 9))
    >>> Asha(eta=3).keep_going(0.9, [0.8, 0.7]), Asha(eta=3).keep_going(0.75, [0.8, 0.7])
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

import storage
from search import keys
from search.study.baseline import baseline
from spaces import Space
from storage import compat

__all__ = [
    "BASELINE",
    "PROMOTED",
    "Asha",
    "Promotion",
    "for_space",
    "on_claim",
    "promote",
    "rung_value",
    "values_at",
]

PROMOTED = "hpsearch:promoted:"  # + the paused trial's number: a study system attr, set once
BASELINE = "hpsearch:baseline"  # the study's baseline trial was claimed (set once)


@dataclass(frozen=True)
class Promotion:
    """A paused trial to continue: ``source`` paused at ``epoch``."""

    source: FrozenTrial
    epoch: int


@dataclass(frozen=True)
class Asha:
    """The rungs and the two decisions: go on at a rung, and which paused trial to promote."""

    min_epochs: int = 1
    eta: int = 3
    maximize: bool = True

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """The rung epochs of a trial that trains ``epochs`` epochs.

        A rung is worth a stop only while at least ``eta`` times its epochs are left to train
        (as Hyperband's ``max_epochs / eta**k``): pausing at epoch 9 of 10 saves nothing.
        """
        out, rung = [], max(1, self.min_epochs)
        while rung * self.eta <= epochs:
            out.append(rung)
            rung *= self.eta
        return tuple(out)

    def next_rung(self, epochs: int, after: int) -> int:
        """The epoch where a trial that starts after ``after`` may next pause (else ``epochs``)."""
        return next((r for r in self.rungs(epochs) if r > after), epochs)

    def keep_going(self, value: float, others: Sequence[float]) -> bool:
        """Whether ``value`` is in the top ``1 / eta`` of ``others`` and itself at a rung."""
        top = (len(others) + 1) // self.eta
        return self._better_count(value, others) < top

    def promotions(self, trials: Sequence[FrozenTrial], taken: set[int]) -> list[Promotion]:
        """The paused trials now in the top ``1 / eta`` of their rung, not yet promoted.

        Highest rung first (closest to a finished model), then best value first.
        """
        paused: dict[int, list[FrozenTrial]] = {}
        for t in trials:
            epoch = t.user_attrs.get(keys.PAUSED_AT)
            if t.state == TrialState.PRUNED and isinstance(epoch, int) and t.number not in taken:
                paused.setdefault(epoch, []).append(t)
        out: list[Promotion] = []
        for epoch in sorted(paused, reverse=True):
            at_rung = {t.number: v for t in trials if (v := rung_value(t, epoch)) is not None}
            top = len(at_rung) // self.eta
            if top == 0:
                continue
            # the top-th best value at the rung: a paused trial at least that good is promotable
            # (sorted once per rung, not compared pairwise: a study may hold thousands of trials)
            ranked = sorted(at_rung.values(), reverse=self.maximize)
            bar = ranked[top - 1]
            ready = [
                (value, t)
                for t in paused[epoch]
                if (value := at_rung.get(t.number)) is not None
                and (value >= bar if self.maximize else value <= bar)
            ]
            ready.sort(key=lambda pair: pair[0], reverse=self.maximize)
            out.extend(Promotion(t, epoch) for _, t in ready)
        return out

    def best_paused(self, trials: Sequence[FrozenTrial], taken: set[int]) -> list[Promotion]:
        """Every paused trial not yet promoted, highest rung first, best value first."""
        paused = [
            Promotion(t, t.user_attrs[keys.PAUSED_AT])
            for t in trials
            if t.state == TrialState.PRUNED
            and isinstance(t.user_attrs.get(keys.PAUSED_AT), int)
            and t.number not in taken
        ]
        sign = -1.0 if self.maximize else 1.0
        return sorted(paused, key=lambda p: (-p.epoch, sign * (rung_value(p.source, p.epoch) or 0.0)))

    def _better_count(self, value: float, others: Sequence[float]) -> int:
        return sum(1 for v in others if (v > value if self.maximize else v < value))


def rung_value(trial: FrozenTrial, epoch: int) -> float | None:
    """The trial's pruning metric after ``epoch`` epochs, if it recorded one there.

    Single-objective studies report it as Optuna intermediate values; multi-objective ones keep
    it in the ``pruning_curve`` user attr (see :mod:`search.trial.pruning`). A continuation only
    reports the epochs it trained, so a configuration counts once per rung.
    """
    if epoch in trial.intermediate_values:
        return float(trial.intermediate_values[epoch])
    curve = trial.user_attrs.get(keys.PRUNING_CURVE) or {}
    value = curve.get(str(epoch))
    return None if value is None else float(value)


def values_at(trials: Sequence[FrozenTrial], epoch: int, *, besides: int) -> list[float]:
    """Every value recorded at ``epoch`` by trials other than number ``besides``."""
    return [v for t in trials if t.number != besides and (v := rung_value(t, epoch)) is not None]


def promote(
    asha: Asha, study: optuna.Study, trial_id: int, trials: Sequence[FrozenTrial], *, best: bool = False
) -> Promotion | None:
    """Turn the claimed (RUNNING, blank) trial into the best promotion left, if any.

    ``best``: when none is due, continue the best paused trial of the highest rung anyway (the
    budget's last trial: a study of 4 trials still ends with a fully trained model).

    The claimed trial takes the paused trial's parameters (``fixed_params``, as
    ``enqueue_trial`` would) and records ``resumed_from``; the objective continues it from the
    paused trial's checkpoint.
    """
    attrs = compat.study_storage(study).get_study_system_attrs(compat.study_id(study))
    taken = {int(k[len(PROMOTED) :]) for k in attrs if k.startswith(PROMOTED)}
    due = asha.promotions(trials, taken)
    if not due and best:
        due = asha.best_paused(trials, taken)
    for promotion in due:
        number = promotion.source.number
        if compat.insert_study_system_attr(study, f"{PROMOTED}{number}", trial_id):
            compat.fix_params(study, trial_id, promotion.source.params)
            seconds = float(promotion.source.user_attrs.get(keys.TRAIN_SECONDS, 0.0))
            resumed = {"trial": number, "epoch": promotion.epoch, "seconds": seconds}
            storage.set_user_attrs(compat.study_storage(study), trial_id, {keys.RESUMED_FROM: resumed})
            return promotion
    return None


def start_with(
    study: optuna.Study, trial_id: int, params: dict[str, Any], trials: Sequence[FrozenTrial]
) -> bool:
    """Give the claimed trial the baseline ``params`` if the study has tried nothing yet."""
    if not params:
        return False
    for t in trials:
        if t.params or compat.fixed_params(t):
            return False  # a trial already ran, or is queued with values (warm start, re-queue)
    if not compat.insert_study_system_attr(study, BASELINE, trial_id):
        return False
    compat.fix_params(study, trial_id, params)
    storage.set_user_attrs(compat.study_storage(study), trial_id, {keys.BASELINE: True})
    return True


def for_space(space: Space) -> Asha | None:
    """The space's ASHA scheduler, or None when it names another pruner."""
    if space.pruner.type != "asha":
        return None
    options = space.pruner.options
    return Asha(
        min_epochs=int(options["min_epochs"]),
        eta=int(options["reduction_factor"]),
        maximize=space.pruner.direction == "maximize",
    )


def on_claim(space: Space) -> Callable[[optuna.Study, int], None] | None:
    """What a worker does with each trial it claims: promote a paused trial, else the baseline."""
    scheduler = for_space(space)
    first = baseline(space) if space.sampler.baseline and space.hypermodel is None else {}
    if scheduler is None and not first:
        return None

    def claimed(study: optuna.Study, trial_id: int) -> None:
        trials = study.get_trials(deepcopy=False)  # read once per claim
        mine = next((t for t in trials if compat.trial_id(t) == trial_id), None)
        if compat.fixed_params(mine or compat.study_storage(study).get_trial(trial_id)):
            return  # queued with its values: re-queued, warm start, enqueued by hand
        if scheduler is not None:
            # no queued trial left: the budget's last trial finishes the best paused one
            last = not any(t.state == TrialState.WAITING for t in trials)
            if promote(scheduler, study, trial_id, trials, best=last) is not None:
                return
        if first:
            start_with(study, trial_id, first, trials)

    return claimed
