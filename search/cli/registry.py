"""The registry of subcommands: each one's name, help, options and handler, declared together.

A handler module keeps a :class:`Commands` and registers each handler with its decorator::

    commands = Commands()

    @commands.command("spaces", JSON, help="list the bundled presets")
    def spaces_(args: argparse.Namespace) -> int: ...

Options are :class:`Option` values (``search.cli.options`` declares the shared ones once);
:func:`build_parser` turns commands into one ``argparse`` parser. ``--debug`` is accepted before and
after the subcommand.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Command", "Commands", "Handler", "Option", "build_parser", "option"]

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Option:
    """One ``add_argument`` call: its flags (or positional name) and keyword settings."""

    flags: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def but(self, **changes: Any) -> Option:
        """The same option with some settings changed, e.g. an optional ``--study`` with its own help."""
        return Option(self.flags, {**self.settings, **changes})

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.flags, **self.settings)


def option(*flags: str, **settings: Any) -> Option:
    """An :class:`Option`; takes exactly what ``ArgumentParser.add_argument`` takes."""
    return Option(flags, settings)


@dataclass(frozen=True)
class Command:
    """A subcommand: ``hpsearch NAME [OPTIONS]`` runs ``handler(args)``, which returns the exit code."""

    name: str
    help: str
    handler: Handler
    options: tuple[Option, ...]
    description: str | None = None


class Commands:
    """An ordered collection of commands, filled by the :meth:`command` decorator."""

    def __init__(self) -> None:
        self._commands: list[Command] = []

    def command(
        self, name: str, *options: Option | Iterable[Option], help: str, description: str | None = None
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler as subcommand ``name``; options and option groups in order."""
        flat = tuple(o for group in options for o in ([group] if isinstance(group, Option) else group))

        def register(handler: Handler) -> Handler:
            if any(c.name == name for c in self._commands):
                raise ValueError(f"command {name!r} is registered twice")
            self._commands.append(Command(name, help, handler, flat, description))
            return handler

        return register

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands)


def build_parser(
    commands: Iterable[Command], *, top: Iterable[Option], anywhere: Iterable[Option]
) -> argparse.ArgumentParser:
    """The ``hpsearch`` parser.

    Args:
        commands: the subcommands, in the order ``--help`` lists them.
        top: options of ``hpsearch`` itself (before the subcommand), e.g. ``--version``.
        anywhere: options accepted before and after the subcommand (``--debug``). Given after it,
            they override; not given, the value from before the subcommand stays.
    """
    anywhere = tuple(anywhere)
    parser = argparse.ArgumentParser(
        prog="hpsearch", description="Hyperparameter search for Keras models on Optuna."
    )
    for o in (*top, *anywhere):
        o.add_to(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    names: set[str] = set()
    for c in commands:
        if c.name in names:
            raise ValueError(f"command {c.name!r} is registered twice")
        names.add(c.name)
        p = sub.add_parser(c.name, help=c.help, description=c.description)
        for o in c.options:
            o.add_to(p)
        for o in anywhere:  # SUPPRESS: a subparser's default would overwrite the value given before it
            o.but(default=argparse.SUPPRESS).add_to(p)
        p.set_defaults(func=c.handler)
    return parser
