"""Every key hpsearch writes into a study's or a trial's user attrs, named once.

Readers elsewhere (optuna-dashboard, ``hpsearch export``, a user's notebook) see these names,
so they are part of hpsearch's interface: change one and old studies read differently.
"""

from __future__ import annotations

from typing import Final

# study user attrs: what a worker needs to join a study (the space travels with it)
SPACE: Final = "hpsearch:space"  # the space's YAML text
FINGERPRINT: Final = "hpsearch:fingerprint"  # what the trials mean; a resumed study must match
METRICS: Final = "hpsearch:metrics"  # objective names, in order
SOURCE: Final = "hpsearch:source"  # the file or preset the study was created from
HYPERMODEL: Final = "hpsearch:hypermodel"  # {spec, name, file, sha256}: a reference, never code
WARM_START: Final = "hpsearch:warm_start"  # {study, trials}: the finished study this one started from
DATA: Final = "hpsearch:data"  # {kind, file, sha256, test_file}: a file dataset's location and hash
TEST_PREFIX: Final = "hpsearch:test:trial "  # + N: evaluate's results where trials cannot change

# trial user attrs, set while a trial runs
PARAMS: Final = "params"  # every hyperparameter, fixed ones included (per-layer values as lists)
DEVICE: Final = "device"
DEVICE_INFO: Final = "device_info"
PRECISION: Final = "precision"
BACKEND: Final = "backend"  # Keras 3's backend: tensorflow, jax or torch
PARAM_COUNT: Final = "param_count"
FLOPS: Final = "flops"  # forward pass, per sample
EPOCHS_RUN: Final = "epochs_run"
BEST_EPOCH: Final = "best_epoch"  # the epoch whose weights and metrics are kept
CURVES: Final = "curves"  # per-epoch metrics
FAST_PATHS: Final = "fast_paths"  # what the training loop chose (steps per execution, XLA, ...)
TRAIN_SECONDS: Final = "train_seconds"
FAIL_REASON: Final = "fail_reason"
PRUNE_REASON: Final = "prune_reason"
PRUNING_CURVE: Final = "pruning_curve"  # the pruned-on metric by epoch (multi-objective pruning)
WARM_START_FROM: Final = "warm_start_from"  # "STUDY#N": the configuration was that trial's
REQUEUED: Final = "requeued"  # True: the worker stopped mid-trial and handed the trial back
PAUSED_AT: Final = "paused_at"  # ASHA: the rung epoch where the trial paused (PRUNED, may be promoted)
RESUMED_FROM: Final = "resumed_from"  # ASHA: {trial, epoch}: this trial continues that paused one
RESUMED: Final = "resumed"  # "checkpoint" or "retrained": how a continuation got to its epoch
BASELINE: Final = "baseline"  # True: the study's first trial, the space's centre

# trial user attrs, set by `hpsearch evaluate` on the trial it tested
TEST_ACCURACY: Final = "test_accuracy"
TEST_LOSS: Final = "test_loss"
TEST_CONFUSION_MATRIX: Final = "test_confusion_matrix"  # rows: true class, columns: predicted
TEST_PER_CLASS: Final = "test_per_class"  # precision / recall / F1 / support by class name
TEST_FIT: Final = "test_fit"  # how the model was retrained
TEST_MODEL: Final = "test_model"  # the saved .keras file
