"""The ``hpsearch`` command line."""

from search.cli.main import main

__all__ = ["main"]
