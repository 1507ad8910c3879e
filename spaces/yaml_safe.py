"""YAML text -> plain Python data with bounded work and memory, or one ``FILE: FIELD: PROBLEM`` line.

``yaml.SafeLoader`` builds only plain data, but on its own a few hundred bytes can still make it
allocate without limit, recurse until Python gives up, or keep one of two keys silently.
:class:`SpaceLoader` is ``SafeLoader`` with these refused, each where it is first seen:

- anchors and aliases (``&a`` / ``*a``): expanding aliases is the "billion laughs", and a space
  needs neither, so a file that uses one is refused outright;
- nesting deeper than :data:`~spaces.limits.MAX_DEPTH` levels (PyYAML's composer recurses);
- a key given twice in one mapping (PyYAML keeps the last), and merge keys (``<<``);
- integers beyond :data:`~spaces.limits.MAX_INT` in magnitude, before they are built;
- a scalar a constructor cannot build (``!!int x``, the date ``2020-13-45``): a line, not a traceback.

:func:`parse` also refuses text over :data:`~spaces.limits.MAX_BYTES` and characters YAML forbids
(a NUL byte, say) with their line, before PyYAML sees them.

Example:
    >>> from spaces.fields import Err
    >>> parse("a: 1\\nb: [x, y]\\n", Err("s.yaml"))
    {'a': 1, 'b': ['x', 'y']}
    >>> parse("a: &x [1]\\nb: *x\\n", Err("s.yaml"))
    Traceback (most recent call last):
    ...
    spaces.errors.ConfigError: s.yaml: a: YAML anchors and aliases are not allowed, got &x at line 1
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from spaces.fields import Err
from spaces.limits import MAX_BYTES, MAX_DEPTH, MAX_INT, shorten

__all__ = ["Refused", "SpaceLoader", "parse"]

_INT = "tag:yaml.org,2002:int"
_MERGE = "tag:yaml.org,2002:merge"
# the characters YAML 1.1 allows in a stream (PyYAML's Reader.NON_PRINTABLE, inverted)
_FORBIDDEN = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class Refused(yaml.YAMLError):
    """Input :class:`SpaceLoader` will not read: ``field`` (dotted path) and the problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


class SpaceLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases, deep nesting, duplicate keys and huge integers."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str | None] = []  # the field being composed: keys and [index]es

    @property
    def field(self) -> str:
        out = ""
        for label in self._path:
            if label is not None:
                out += label if label.startswith("[") or not out else f".{label}"
        return out

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        # index: the key node (a mapping's value), an int (a sequence item), None (a key or the root)
        if isinstance(parent, SequenceNode):
            label: str | None = f"[{index}]"
        elif isinstance(index, ScalarNode):
            label = shorten(index.value, 40)
        else:
            label = None if index is None else "?"
        self._path.append(label)
        try:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
                raise Refused(
                    self.field,
                    f"YAML anchors and aliases are not allowed, got {sign}{shorten(str(event.anchor), 40)}"
                    f" at line {line}",
                )
            if len(self._path) > MAX_DEPTH:
                raise Refused(self.field, f"nested more than {MAX_DEPTH} levels deep at line {line}")
            node = super().compose_node(parent, index)
            if isinstance(node, MappingNode):
                self._check_keys(node)
            elif isinstance(node, ScalarNode) and node.tag == _INT:
                self._check_int(node)
            return node
        finally:
            self._path.pop()

    def _check_keys(self, node: MappingNode) -> None:
        first: dict[tuple[str, str], Mark] = {}
        for key, _ in node.value:
            line = key.start_mark.line + 1
            if key.tag == _MERGE:
                raise Refused(self.field, f"YAML merge keys (<<) are not allowed, got one at line {line}")
            if not isinstance(key, ScalarNode):
                continue  # not text: refused later, as a key that is not text
            ident = (key.tag, key.value)
            if ident in first:
                mark = first[ident]
                column = key.start_mark.column + 1
                where = (
                    f"line {line} (first at line {mark.line + 1})"
                    if mark.line + 1 != line
                    else f"line {line}, column {column} (first at column {mark.column + 1})"
                )
                raise Refused(self.field, f"duplicate key {shorten(repr(key.value), 60)} at {where}")
            first[ident] = key.start_mark

    def _check_int(self, node: ScalarNode) -> None:
        text = node.value.replace("_", "").lstrip("+-")
        digits = len(text)
        if digits <= 40:  # cheap to build, whatever its base; then compare
            try:
                value = self.construct_yaml_int(node)
            except ValueError:  # `!!int x`: construct_object reports it with its line
                return
            if abs(value) <= MAX_INT:
                return
        raise Refused(
            self.field,
            f"integer {shorten(node.value, 40)} ({digits} {'digits' if text.isdigit() else 'characters'})"
            " is too large; at most 2**63 - 1",
        )

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError, KeyError, AttributeError) as e:
            # PyYAML's scalar constructors (int, float, bool, timestamp) raise these on text that
            # their tag does not fit, e.g. `!!bool maybe` (KeyError) or `2020-13-45` (ValueError)
            what = shorten(repr(node.value), 40) if isinstance(node, ScalarNode) else "this node"
            raise ConstructorError(
                None, None, f"cannot read {what} as {node.tag} ({type(e).__name__})", node.start_mark
            ) from e


def parse(text: str, err: Err) -> Any:
    """The data in ``text`` (one YAML document), or a one-line ``ConfigError`` from ``err``."""
    if len(text) > MAX_BYTES:
        raise err("", f"{len(text):,} characters is too long; a space file holds at most {MAX_BYTES:,}")
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        char = "NUL (U+0000)" if bad.group() == "\0" else f"U+{ord(bad.group()):04X}"
        raise err("", f"line {line}, column {column}: character {char} is not allowed in YAML text")
    loader = SpaceLoader(text)
    try:
        return loader.get_single_data()
    except Refused as e:
        raise err(e.field, e.problem) from e
    except yaml.MarkedYAMLError as e:
        where = f"line {e.problem_mark.line + 1}: " if e.problem_mark else ""
        what = e.problem or str(e)
        if e.context:
            what = f"{e.context}, {what}"
        raise err("", f"{where}invalid YAML: {what}") from e
    except yaml.YAMLError as e:
        raise err("", f"invalid YAML: {e}") from e
    finally:
        loader.dispose()
