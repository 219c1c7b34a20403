"""Reading untrusted input files: one guarded path for YAML and JSON.

Every file a user hands to twinedge (a scenario, the ``twinedge serve`` configuration, a
placement instance) is read here, and refused with one :class:`~twinedge.errors.InputError`
line naming the file and, where known, the field, when it is:

- larger than :data:`MAX_FILE_BYTES` (checked before reading);
- not UTF-8 (a lone surrogate written as raw bytes is not UTF-8 either);
- nested deeper than :data:`MAX_DEPTH` levels (checked while parsing, so a 10,000-level
  file never reaches Python's recursion limit);
- a YAML file whose aliases expand it by more than :data:`MAX_ALIAS_NODES` nodes, or refer
  to themselves (the "billion laughs": a 1 kB file that expands to 10^9 nodes);
- holding an integer of more than :data:`MAX_INT_DIGITS` digits, a number that is not finite
  (``.inf``, ``.nan``, ``1.0e400``, JSON ``NaN``/``Infinity``/``1e400``);
- holding a string (or key) with a NUL character or a lone surrogate (``"\\ud800"`` escaped):
  no name, path or URL needs them, and they break file paths, terminals and UTF-8 outputs.

YAML is read with PyYAML's safe loader (no Python objects are ever built from tags), plus
YAML 1.2 exponent numbers (``1e9``, ``5.0e6``: strings in YAML 1.1) read as numbers.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from twinedge.errors import InputError

MAX_FILE_BYTES = 64 * 2**20
"""Largest input file read (64 MiB)."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings, aliases expanded."""
MAX_ALIAS_NODES = 100_000
"""Most nodes that YAML aliases may add to a document when expanded."""
MAX_INT_DIGITS = 40
"""Longest integer literal (a 128-bit seed has 39 digits)."""


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file of at most :data:`MAX_FILE_BYTES` bytes."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(
                f"{p}: got a file of {size / 2**20:,.0f} MiB; expected at most "
                f"{MAX_FILE_BYTES // 2**20} MiB"
            )
        with open(p, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{p}: cannot read the file ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{p}: got a file of more than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.end]
        raise InputError(
            f"{p}: line {line}, column {col}: got bytes {bad!r} that are not UTF-8; "
            "expected a UTF-8 text file"
        ) from None


class _Refused(yaml.YAMLError):
    def __init__(self, message: str, mark: Any = None):
        super().__init__(message)
        self.message, self.mark = message, mark


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


class _GuardedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounded nesting, alias expansion and integer length."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._open: list[str | None] = []

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise _Refused(
                    f"alias *{event.anchor} refers to a node that contains it; expected "
                    "aliases to complete nodes only",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(
                f"nested more than {MAX_DEPTH} levels deep; expected at most {MAX_DEPTH}",
                event.start_mark,
            )
        self._open.append(getattr(event, "anchor", None))
        try:
            return super().compose_node(parent, index)
        finally:
            self._open.pop()
            self._depth -= 1

    def compose_document(self) -> Any:  # type: ignore[override]
        node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_yaml_int(self, node: Any) -> int:  # type: ignore[override]
        text = str(node.value).replace("_", "").lstrip("+-")
        if len(text) > MAX_INT_DIGITS:
            raise _Refused(
                f"got an integer of {len(text):,} digits; expected at most {MAX_INT_DIGITS}",
                node.start_mark,
            )
        return super().construct_yaml_int(node)


_GuardedLoader.add_constructor("tag:yaml.org,2002:int", _GuardedLoader.construct_yaml_int)
# YAML 1.2 numbers that YAML 1.1 reads as strings: 1e9, 1.5e-3, 2.0e6 (1.1 wants a dot and a
# signed exponent). Users write them for sizes and rates; read them as the numbers they are.
_GuardedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _check_expansion(root: Any) -> None:
    """Refuse a node graph whose aliases expand it too far (sizes memoised per node, so
    this costs the written size, not the expanded one)."""
    if root is None:
        return
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    seen_literal: set[int] = set()
    literal = 0
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in size:
            continue
        children = _children(node)
        if not done:
            if key not in seen_literal:
                seen_literal.add(key)
                literal += 1
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)
            continue
        size[key] = 1 + sum(size[id(c)] for c in children)
        height[key] = 1 + max((height[id(c)] for c in children), default=0)
    total, deep = size[id(root)], height[id(root)]
    if total - literal > MAX_ALIAS_NODES:
        raise _Refused(
            f"aliases expand the document from {literal:,} to {total:,} nodes; expected "
            f"aliases to add at most {MAX_ALIAS_NODES:,} (a 'billion laughs' file?)"
        )
    if deep > MAX_DEPTH + 1:
        raise _Refused(
            f"aliases nest the document {deep - 1} levels deep; expected at most {MAX_DEPTH}"
        )


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` (one document) from ``source`` under the limits above."""
    try:
        data = yaml.load(text, Loader=_GuardedLoader)  # a SafeLoader subclass
    except _Refused as exc:
        raise InputError(f"{source}: {_at(exc.mark)}{exc.message}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise InputError(
            f"{source}: line {line}, column {col}: not valid YAML (character "
            f"{exc.character!r} is not allowed in YAML)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise InputError(f"{source}: {where}: not valid YAML ({problem})") from None
    check_values(data, source)
    return data


def load_json(text: str, source: str) -> Any:
    """Parse JSON ``text`` from ``source`` under the limits above."""

    def parse_int(s: str) -> int:
        if len(s.lstrip("-")) > MAX_INT_DIGITS:
            raise _Refused(
                f"got an integer of {len(s.lstrip('-')):,} digits; expected at most "
                f"{MAX_INT_DIGITS}"
            )
        return int(s)

    def parse_float(s: str) -> float:
        v = float(s)
        if not math.isfinite(v):
            raise _Refused(f"got {_clip(s)}, too large to be a finite number; expected one")
        return v

    def parse_constant(s: str) -> float:
        raise _Refused(f"got {s}; expected a finite number (JSON has no NaN or Infinity)")

    try:
        data = json.loads(
            text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant
        )
    except _Refused as exc:
        raise InputError(f"{source}: {exc.message}") from None
    except RecursionError:
        raise InputError(
            f"{source}: nested too deeply; expected at most {MAX_DEPTH} levels"
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{source}: line {exc.lineno} column {exc.colno}: got invalid JSON ({exc.msg}); "
            "expected a JSON object"
        ) from None
    check_values(data, source)
    return data


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _path(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (part if isinstance(part, str) else repr(part))
    return out or "(top level)"


def _bad_string(s: str) -> str | None:
    if "\x00" in s:
        return "a NUL character"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (not a character)"
    return None


def check_values(data: Any, source: str) -> None:
    """Refuse non-finite numbers, NUL characters and lone surrogates anywhere in ``data``
    (keys too), and nesting deeper than :data:`MAX_DEPTH`; the message names the field."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, parts = stack.pop()
        if len(parts) > MAX_DEPTH:
            raise InputError(
                f"{source}: {_path(parts[:4])}...: nested more than {MAX_DEPTH} levels deep; "
                f"expected at most {MAX_DEPTH}"
            )
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and (why := _bad_string(k)):
                    raise InputError(
                        f"{source}: {_path(parts)}: got a key {k!r} with {why}; "
                        "expected printable text"
                    )
                if isinstance(k, str):
                    key_part: Any = k
                else:
                    stack.append((k, (*parts, repr(k))))
                    key_part = repr(k)
                stack.append((v, (*parts, key_part)))
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend((v, (*parts, i)) for i, v in enumerate(value))
        elif isinstance(value, str):
            if why := _bad_string(value):
                raise InputError(
                    f"{source}: {_path(parts)}: got {_clip(repr(value))} with {why}; "
                    "expected printable text"
                )
        elif isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{source}: {_path(parts)}: got {value}; expected a finite number")
