"""What a study produced, for people: tables, the Pareto front, reports, exports, notes, artifacts.

Owns: what any Optuna study holds, whoever made it (:mod:`.facts`), text tables and trial
selection (:mod:`.tables`, :mod:`.select`), the HTML report
(:mod:`.html_report`), CSV / JSON export (:mod:`.export`), optuna-dashboard notes (:mod:`.notes`)
and per-trial artifacts (:mod:`.artifacts`).
May import: ``spaces``, ``storage``, ``search.hypermodels``, ``search.errors``, ``search.keys``.
"""
