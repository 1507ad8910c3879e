"""Work on one chosen configuration after (or before) a search: final evaluation and lr-find.

Owns: retraining a trial and testing it once on the test split (:mod:`.evaluate`), and the
learning-rate range test (:mod:`.lr_find`, its configuration picking in :mod:`.configs`).
May import: ``spaces``, ``storage`` and every ``search`` subpackage but ``cli`` and ``worker``.
"""
