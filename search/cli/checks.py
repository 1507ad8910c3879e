"""What ``run``, ``create`` and ``validate`` check before anything is written.

Heavy imports stay inside the functions so that ``hpsearch --help`` stays fast.
"""

from __future__ import annotations

import spaces

__all__ = ["load_checked", "validate_here"]


def load_checked(
    source: str, *, debug: bool = False, data_dir: str | None = None, backend: str | None = None
) -> spaces.Space:
    """The space, checked as far as it can be without a study: nothing is written before.

    A file dataset is read (its shape against the model family); a hypermodel is imported, and
    built once with its default values and scored on a few samples, in a child process
    (:mod:`search.trial.check`): this process may train afterwards on a GPU and backend of its
    own choosing.
    """
    space = spaces.load(source)
    if space.dataset.is_file:
        from search.trial.data import load_for

        load_for(space, data_dir)
    if space.hypermodel is not None:
        from search.trial.check import check_in_child

        check_in_child(space, data_dir, backend=backend)
    return space


def validate_here(source: str, *, debug: bool = False) -> spaces.Space:
    """``hpsearch validate``: :func:`load_checked`, building the hypermodel here (validate trains nothing).

    TensorFlow starts first with its native start-up chatter hidden, so that an error in the
    user's file is the one line on stderr.
    """
    from search.errors import USER_ERRORS
    from search.worker.native import quiet_native_stderr

    space = spaces.load(source)
    if space.hypermodel is None and not space.dataset.is_file:
        return space
    refused: BaseException | None = None
    with quiet_native_stderr(enabled=not debug):  # an error's own line is enough: no chatter replayed
        from search.hypermodels.loader import check
        from search.trial.data import load_for

        try:
            dataset = load_for(space)
            if space.hypermodel is not None:
                from search.trial.build import check_hypermodel

                check_hypermodel(check(space), dataset)
        except USER_ERRORS as e:
            refused = e
    if refused is not None:
        raise refused
    return space
