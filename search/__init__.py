"""The hpsearch engine: studies, objectives, workers and the CLI.

Importing ``search`` is cheap; TensorFlow loads only when a trial is about to run.
"""

from __future__ import annotations

from search.errors import ConfigError, DataError, HPSearchError, StorageError, TrialFailed

__all__ = ["ConfigError", "DataError", "HPSearchError", "StorageError", "TrialFailed"]
