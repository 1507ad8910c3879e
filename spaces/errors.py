"""The one error of this package: a space (file, preset, or option naming one) is invalid."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A space file, preset name or command-line option is invalid.

    The message is one line that names the source, the field and the value
    (``spaces/mlp.yaml: optimizer.learning_rate: log=true needs low > 0, got 0``).
    """
