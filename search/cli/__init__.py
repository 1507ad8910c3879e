"""The ``hpsearch`` command line: parse, dispatch to a subcommand, map errors to exit codes.

May import everything; nothing imports it (``python -m search`` runs it).
"""

from search.cli.main import main

__all__ = ["main"]
