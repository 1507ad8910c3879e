"""One trial: sample the space, build the model, train it, prune it, record what happened.

Owns: the objective (:mod:`.objective`), the training loop and its fast paths (:mod:`.training`),
the declarative models and the model build for a trial (:mod:`.models`, :mod:`.build`), Keras
callbacks (:mod:`.callbacks`), pruning on one or several objectives (:mod:`.pruning`), and the
datasets a trial trains on (:mod:`.data`, :mod:`.idx`).
May import: ``spaces``, ``storage``, ``search.study``, ``search.results``, ``search.hypermodels``,
``search.errors``, ``search.keys``. Keras is imported here, never above ``search.trial``'s callers.
"""
