"""Parsing specs (YAML) and plans and manifests (JSON) strictly, within limits.

Text comes here already read within its size limit (``files.read_text``). What is
refused is said in one sentence for the loaders to prefix with the file's name:

- **YAML** (specs): one document; at most ``MAX_DEPTH`` levels of nesting; lists of at
  most ``files.MAX_LIST_ITEMS`` entries; at most ``MAX_YAML_VALUES`` values once aliases
  are expanded (aliases share objects, but everything downstream, from validation to
  the plan written, repeats them); no key twice in one mapping; numbers as YAML 1.2's
  core schema writes them, with the forms YAML 1.1 reads differently (``010``,
  ``0x10``, ``1_000``, ``1:30``, ``yes``/``no``) left as strings, which the spec's fields
  then refuse by name;
- **JSON** (plans, manifests): no key twice in one object, no ``NaN`` or ``Infinity``,
  no nesting deeper than Python's parser can take.
"""

from __future__ import annotations

import gc
import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from planner.errors import brief
from planner.files import MAX_LIST_ITEMS

MAX_YAML_VALUES = 2_000_000  # scalars, lists and mappings, aliases counted as often as used
MAX_DEPTH = 64  # a spec is 4 levels deep (a table's initializer config), a plan 6

@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a large document becomes objects.

    Parsing and validating a plan of thousands of tables makes millions of objects and no
    cycles (an alias to its own container is refused); the collector, started by the
    count of allocations, would walk them again and again: reading such a plan takes a
    third of the time without it.

    What was made then goes straight to the oldest generation (frozen and thawed at once,
    which moves objects without walking them): it is the document the caller keeps, and
    as young objects the collector would walk it twice more (0.1 s of a worker's load of
    20,000 tables on 4,096 ranks) before it got there. Skipped while the application
    keeps objects frozen itself (``gc.freeze`` before a fork): thawing would undo that.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


# --- YAML ------------------------------------------------------------------------------


class YamlRefused(yaml.MarkedYAMLError):
    """Well-formed YAML the planner will not read: too big once expanded, too deep, a key
    given twice, a number in a form YAML versions read differently."""


class _CoreResolver(BaseResolver):
    """Plain scalars typed as YAML 1.2's core schema types them, less its octal and hex.

    PyYAML follows YAML 1.1, where ``010`` is 8, ``0x10`` 16, ``1:30`` 90 and ``yes``
    true; YAML 1.2 reads the first and last as 10 and "yes". Here only plain decimals
    are numbers and only true/false are booleans; the rest stay strings, and a number
    field holding a string says what to write instead.
    """


for _tag, _pattern, _first in (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", r"[-+]?(?:0|[1-9][0-9]*)", "-+0123456789"),
    (
        "float",  # a point or an exponent makes a float: 1.5, .5, 1., 1e9 (not 010)
        r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+0123456789.",
    ),
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("merge", r"<<", "<"),
):
    _CoreResolver.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"), list(_first)
    )

try:  # libyaml's parser when available: several times faster on large specs
    from yaml.cyaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


_DECIMAL = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")


class _StrictLoader(Composer, _Parser, SafeConstructor, _CoreResolver):
    """A safe loader that counts what it composes and refuses repeated keys.

    The composer runs in Python over the parser's events so that depth and the size of
    every node, aliases expanded, are known before anything is constructed.
    """

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        _CoreResolver.__init__(self)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values under it, aliases expanded
        self._aliased = False  # whether an alias was met (the size limit's likely cause)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        self._aliased = self._aliased or isinstance(event, yaml.AliasEvent)
        if isinstance(event, yaml.AliasEvent) and event.anchor in self.anchors:
            target = self.anchors[event.anchor]
            if id(target) not in self._sizes:
                raise YamlRefused(
                    None,
                    None,
                    f"alias *{event.anchor} refers to a node that contains it",
                    event.start_mark,
                )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlRefused(
                None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark
            )
        node = super().compose_node(parent, index)
        self._depth -= 1
        size = self._sizes.get(id(node))
        if size is None:
            size = 1 + sum(self._sizes[id(child)] for child in _children(node))
            self._sizes[id(node)] = size
        if size > MAX_YAML_VALUES:
            aliased = " once aliases are expanded; use fewer aliases of large parts"
            raise YamlRefused(
                None,
                None,
                f"more than {MAX_YAML_VALUES:,} values"
                + (aliased if self._aliased else ", the most a spec may hold"),
                event.start_mark,
            )
        if isinstance(node, SequenceNode) and len(node.value) > MAX_LIST_ITEMS:
            raise YamlRefused(
                None,
                None,
                f"a list of {len(node.value):,} entries; a spec holds at most "
                f"{MAX_LIST_ITEMS:,} tables and {MAX_LIST_ITEMS:,} inputs",
                event.start_mark,
            )
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        first_seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first_seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: the constructor says so below
                continue
            if earlier is not key_node.start_mark:
                raise YamlRefused(
                    None,
                    None,
                    f"key {brief(key)} given twice in one mapping (first at line "
                    f"{earlier.line + 1}); keep one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        value = self.construct_scalar(node)
        if not _DECIMAL.match(value) or len(value) > 40:
            raise YamlRefused(
                None,
                None,
                f"{value[:40]!r} is not a decimal integer of at most 40 digits",
                node.start_mark,
            )
        return int(value)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def parse_yaml(text: str) -> Any:
    """The one document in ``text``; raises yaml.YAMLError (YamlRefused for our limits)."""
    loader = _StrictLoader(text)
    try:
        with gc_paused():
            return loader.get_single_data()
    finally:
        loader.dispose()


# --- JSON ------------------------------------------------------------------------------


class JsonRefused(ValueError):
    """Well-formed JSON the planner will not read."""


def parse_json(text: str, kind: str = "a plan") -> Any:
    """The JSON document in ``text``; json.JSONDecodeError for bad syntax, JsonRefused
    for what ``kind`` (a plan, a checkpoint manifest) never holds: a key twice, NaN,
    nesting past Python's parser."""

    def no_constant(name: str) -> Any:
        raise JsonRefused(f"{name} is not a number {kind} may hold")

    try:
        with gc_paused():
            return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=no_constant)
    except RecursionError as exc:
        raise JsonRefused(f"nested too deeply to read; {kind} is a few levels deep") from exc
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        if isinstance(exc, JsonRefused):
            raise
        raise JsonRefused(f"a value cannot be read ({str(exc).split(':')[0]})") from exc


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        twice = next(key for key, _ in pairs if counts[key] > 1)
        raise JsonRefused(f"key {brief(twice)} given twice in one object; keep one")
    return found


def json_syntax_problem(exc: json.JSONDecodeError) -> str:
    """Where the JSON parser stopped and its reason, whole: its messages that end in
    "at" ("Unterminated string starting at") leave the place to the position."""
    reason = exc.msg.removesuffix(" at") + (" there" if exc.msg.endswith(" at") else "")
    return f"not valid JSON at line {exc.lineno}, column {exc.colno}: {reason}"
