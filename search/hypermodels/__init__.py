"""KerasTuner hypermodels: load the user's file, adapt ``hp.*`` calls to Optuna, bind a study's reference.

Owns: importing user code safely (:mod:`.loader`), KerasTuner's ``HyperParameters`` on an Optuna
trial (:mod:`.adapter`), and the study's record of a hypermodel -- a reference and a sha256, never
code (:mod:`.binding`).
May import: ``spaces``, ``storage``, ``search.errors``, ``search.keys``.
"""
