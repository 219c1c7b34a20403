"""Reading untrusted text: strict JSON, bounded YAML and the value check, for every channel.

Every channel that reads text it does not trust goes through this module: the runtime's
HTTP bodies, MQTT payloads and Python API values; the scenario files, ``serve.yaml`` and
placement instances; the entries ``twinedge ledger append`` reads and the price tables of
``twinedge ledger settle``. Each channel passes its own :class:`Limits` and turns a
:class:`TextInputError` into its own error (a file name in front, a 400 problem...). A
value is refused when it holds:

- bytes that are not UTF-8 (a lone surrogate written as raw bytes is not UTF-8 either);
- a string or key with a NUL character (PostgreSQL ``jsonb`` and file paths cannot hold
  ``\\u0000``) or a lone surrogate (``"\\ud800"`` escaped: not a character);
- a number that is not finite (JSON ``NaN``/``Infinity``, ``1e400`` which overflows to
  Infinity; YAML ``.inf``/``.nan``; RFC 8259 section 6 allows finite numbers only);
- an integer longer than :attr:`Limits.max_int_digits` digits or outside
  :attr:`Limits.int_range` (checked on the text, before Python converts it);
- nesting deeper than :attr:`Limits.max_depth` (checked without recursion, and a text
  too deep for Python's parser is refused, not crashed on);
- YAML aliases that refer to a node containing them, or that expand the document by more
  than :attr:`Limits.max_alias_nodes` nodes (the "billion laughs": a 1 kB file that
  expands to 10^9 nodes; sizes are memoised per node, so this costs the written size).

YAML is read with PyYAML's safe loader (no Python object is ever built from a tag).

This module sits at the bottom of the package: it depends on nothing else in twinedge.

References:
    RFC 8259, The JavaScript Object Notation (JSON) Data Interchange Format.
    RFC 6901, JavaScript Object Notation (JSON) Pointer.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "INT64",
    "Limits",
    "TextInputError",
    "check_text",
    "check_value",
    "decode_utf8",
    "load_yaml",
    "loads",
    "location",
    "read_text",
]

INT64 = (-(2**63), 2**63 - 1)
"""The signed 64-bit range, what the runtime's stores index exactly."""


@dataclass(frozen=True)
class Limits:
    """What one channel accepts; every bound is a parameter, not a copy of code.

    Attributes:
        max_depth: deepest nesting of lists and mappings (``None``: only what the parser
            itself can take; the caller bounds depth its own way).
        max_int_digits: longest integer literal, sign not counted.
        int_range: smallest and largest integer, inclusive (``None``: any).
        int_range_name: how messages name ``int_range``.
        max_number_chars: longest number literal of any kind.
        max_alias_nodes: most nodes YAML aliases may add to a document when expanded.
        json_only: refuse values JSON cannot hold (other types, non-string keys); off for
            YAML, whose keys may be numbers and whose values may be dates.
        yaml12_exponents: read YAML 1.2 exponent numbers (``1e9``, ``5.0e6``: strings in
            YAML 1.1) as numbers.
        parse_float: how JSON fractions and exponents are read (``Decimal`` keeps them
            exactly as written).
    """

    max_depth: int | None = 64
    max_int_digits: int = 400
    int_range: tuple[int, int] | None = None
    int_range_name: str = "the signed 64-bit range"
    max_number_chars: int = 400
    max_alias_nodes: int = 100_000
    json_only: bool = True
    yaml12_exponents: bool = False
    parse_float: Callable[[str], Any] = float


class TextInputError(ValueError):
    """Text or a value that is refused; ``message`` says why, the rest where.

    ``path`` locates the value in the document (keys and indices), ``pointer`` is the
    same as a JSON pointer (RFC 6901) after the base pointer the caller gave (``None``
    when the error is about the text, not one value), and
    ``line``/``column`` (1-based) locate it in the text where the parser knows them.
    ``extra`` holds what a machine reader may want (``position``, ``line``, ``column``).
    """

    def __init__(
        self,
        message: str,
        path: tuple[Any, ...] = (),
        *,
        base: str | None = None,
        line: int | None = None,
        column: int | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        self.message, self.path, self.line, self.column = message, path, line, column
        self.pointer: str | None = None  # not about one value (the text cannot be read)
        if base is not None or path:
            self.pointer = (base or "") + "".join(f"/{_escape(p)}" for p in path)
        self.extra = extra
        if line is not None:
            self.extra.update(line=line, column=column)

    def where(self) -> str:
        """Where the refused part is, for a message: ``"line 3, column 5"`` or ``"a.b[0]"``
        (``""`` when unknown)."""
        if self.line is not None:
            return f"line {self.line}, column {self.column}"
        return location(self.path) if self.path else ""


def _escape(part: Any) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def location(path: tuple[Any, ...], limit: int = 60) -> str:
    """A path of keys and indices as people write it, clipped to ``limit`` characters
    (a key that is not printable text is shown as its Python literal).

    Examples:
        >>> location(("run", "hosts", 2, "x_m"))
        'run.hosts[2].x_m'
        >>> location(())
        '(top level)'
    """
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            text = part if isinstance(part, str) and part.isprintable() else repr(part)
            out += ("." if out else "") + text
    return _clip(out, limit) if out else "(top level)"


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _at(text: str | bytes, pos: int) -> tuple[int, int]:
    if isinstance(text, str):
        return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
    return text.count(b"\n", 0, pos) + 1, pos - (text.rfind(b"\n", 0, pos) + 1) + 1


# --- bytes and files ------------------------------------------------------------------------


def decode_utf8(data: bytes | bytearray) -> str:
    """``data`` as text, refused where it is not UTF-8.

    Examples:
        >>> decode_utf8(b'caf\\xc3\\xa9')
        'café'
        >>> decode_utf8(b'ok\\ncaf\\xe9')
        Traceback (most recent call last):
        ...
        twinedge.textinput.TextInputError: line 2, column 4: got bytes b'\\xe9' that are not UTF-8
    """
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _at(bytes(data), e.start)
        raise TextInputError(
            f"line {line}, column {col}: got bytes {data[e.start : e.end]!r} that are not UTF-8",
            position=e.start,
        ) from None


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


def read_text(path: str | Path, max_bytes: int) -> str:
    """The text of a UTF-8 file of at most ``max_bytes`` bytes (the size is checked
    before reading, and again while reading).

    Raises:
        TextInputError: the file is too large or not UTF-8.
        OSError: the file cannot be read (each channel says so its own way).
    """
    p = Path(path)
    size = p.stat().st_size
    if size > max_bytes:
        raise TextInputError(
            f"got a file of {_size(size)}; expected at most {_size(max_bytes)}", size=size
        )
    with open(p, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TextInputError(f"got a file of more than {_size(max_bytes)}")
    return decode_utf8(data)


# --- values -----------------------------------------------------------------------------------


def check_text(s: str, what: str = "", path: tuple[Any, ...] = (), base: str = "") -> str:
    """Refuse a lone surrogate or a NUL character in ``s`` (``what`` names it); returns ``s``.

    Examples:
        >>> check_text("fine")
        'fine'
        >>> check_text("a\\x00b", "the name")
        Traceback (most recent call last):
        ...
        twinedge.textinput.TextInputError: got the name 'a\\x00b' with a NUL character (\\u0000) at position 1; expected text without NUL
    """
    if "\x00" in s:
        got = f"got {what + ' ' if what else ''}{_clip(repr(s))}"
        raise TextInputError(
            f"{got} with a NUL character (\\u0000) at position {s.index(chr(0))}; "
            "expected text without NUL",
            path,
            base=base,
        )
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        got = f"got {what + ' ' if what else ''}{_clip(repr(s))}"
        raise TextInputError(
            f"{got} with a lone surrogate (\\u{ord(s[e.start]):04x}) at position {e.start}; "
            "expected valid Unicode text",
            path,
            base=base,
        ) from None
    return s


def _int_problem(n: int, limits: Limits) -> str | None:
    if limits.int_range is not None and not limits.int_range[0] <= n <= limits.int_range[1]:
        return f"got an integer outside {limits.int_range_name}"
    return None


def _fast_ok(x: Any, limits: Limits, level: int) -> bool:
    """Whether ``x`` passes :func:`check_value` for sure, as fast as Python allows: no
    paths are built (``False`` sends the caller to the slow check, which says why)."""
    t = type(x)
    if t is str:
        if "\x00" in x:
            return False
        if not x.isascii():
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                return False
        return True
    if t is int:
        r = limits.int_range
        if r is not None and not r[0] <= x <= r[1]:
            return False
        return -(10**15) < x < 10**15 or len(str(abs(x))) <= limits.max_int_digits
    if t is float:
        return math.isfinite(x)
    if x is None or t is bool:
        return True
    depth = limits.max_depth
    if depth is not None and level >= depth:
        return False
    if t is dict:
        for k, y in x.items():
            if (
                type(k) is not str
                or not _fast_ok(k, limits, level)
                or not _fast_ok(y, limits, level + 1)
            ):
                return False
        return True
    if t is list:
        return all(_fast_ok(y, limits, level + 1) for y in x)
    return False  # anything else: the slow check decides


def check_value(value: Any, limits: Limits, base: str = "") -> None:
    """Check a decoded value iteratively (depth cannot crash it), keys too.

    ``base`` is the JSON pointer of ``value`` in a larger document, for the error's
    ``pointer``.

    Raises:
        TextInputError: a string with a NUL or a lone surrogate, a number that is not
            finite, an integer out of range, nesting too deep, or (``json_only``) a type
            JSON has not; ``path`` locates it.

    Examples:
        >>> check_value({"ok": [1, 2.5, "x", None, False]}, Limits())
        >>> check_value({"bad": [float("nan")]}, Limits())
        Traceback (most recent call last):
        ...
        twinedge.textinput.TextInputError: got nan; expected a finite number
    """
    try:
        if _fast_ok(value, limits, 0):
            return
    except RecursionError:
        pass
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    depth = limits.max_depth
    while stack:
        x, path = stack.pop()
        if depth is not None and len(path) >= depth:  # the top level is level 1, as in YAML
            raise TextInputError(
                f"nested more than {depth} levels deep; expected at most {depth}", path, base=base
            )
        if x is None or isinstance(x, bool):
            continue
        if isinstance(x, str):
            check_text(x, "", path, base)
        elif isinstance(x, int):
            if problem := _int_problem(x, limits):
                raise TextInputError(problem, path, base=base)
        elif isinstance(x, float | Decimal):
            if not (math.isfinite(x) if isinstance(x, float) else x.is_finite()):
                raise TextInputError(f"got {x}; expected a finite number", path, base=base)
        elif isinstance(x, dict):
            for k, y in x.items():
                if isinstance(k, str):
                    check_text(k, "a key", (*path, k), base)
                elif limits.json_only:
                    raise TextInputError(f"object keys must be strings, got {k!r}", path, base=base)
                else:
                    stack.append((k, (*path, repr(k))))
                stack.append((y, (*path, k if isinstance(k, str) else repr(k))))
        elif isinstance(x, list | tuple) or (
            not limits.json_only and isinstance(x, set | frozenset)
        ):
            stack.extend((y, (*path, i)) for i, y in enumerate(x))
        elif limits.json_only:
            raise TextInputError(f"{type(x).__name__} is not a JSON value", path, base=base)


# --- JSON -------------------------------------------------------------------------------------


def _digits(s: str, limits: Limits) -> None:
    digits = len(s.lstrip("+-"))
    if digits > limits.max_int_digits:
        raise TextInputError(
            f"got an integer of {digits:,} digits; expected at most {limits.max_int_digits}"
        )


def _int_text(s: str, limits: Limits) -> int:
    _digits(s, limits)
    n = int(s)
    if problem := _int_problem(n, limits):
        raise TextInputError(f"{problem} ({_clip(s)})")
    return n


def _too_deep(limits: Limits) -> TextInputError:
    if limits.max_depth is None:
        return TextInputError("nested too deeply to be read")
    return TextInputError(f"nested too deeply; expected at most {limits.max_depth} levels")


@functools.cache
def _long_number(max_chars: int) -> re.Pattern[str]:
    return re.compile(f"[-0-9][-+0-9.eE]{{{max_chars},}}")


def _no_constant(s: str) -> Any:
    raise ValueError(s)


_PLAIN = json.JSONDecoder(parse_constant=_no_constant)


def loads(data: bytes | bytearray | str, limits: Limits) -> Any:
    """Decode strict JSON under ``limits`` and check every value with :func:`check_value`.

    Raises:
        TextInputError: not UTF-8, not JSON, nested too deeply, or holding a value that
            is refused (the message says which; ``line``/``column`` or ``path`` where).

    Examples:
        >>> loads(b'{"a": [1, true]}', Limits())
        {'a': [1, True]}
        >>> loads('[1e400]', Limits())
        Traceback (most recent call last):
        ...
        twinedge.textinput.TextInputError: got 1e400, too large to be a finite number; expected a finite number
    """
    text = decode_utf8(data) if isinstance(data, bytes | bytearray) else data
    if limits.parse_float is float and not _long_number(limits.max_number_chars).search(text):
        # the common case first: Python's C parser, then one pass that proves the value
        # fine; anything doubtful is parsed again below, where the message is made (a
        # number literal too long is doubtful: once parsed, its length is gone)
        try:
            value = _PLAIN.decode(text)
            if _fast_ok(value, limits, 0):
                return value
        except (ValueError, RecursionError):
            pass

    def parse_float(s: str) -> Any:
        if len(s) > limits.max_number_chars:
            raise TextInputError(
                f"got a number of {len(s):,} characters; expected at most {limits.max_number_chars}"
            )
        if not math.isfinite(float(s)):
            raise TextInputError(
                f"got {_clip(s)}, too large to be a finite number; expected a finite number"
            )
        return limits.parse_float(s)

    def parse_constant(s: str) -> Any:
        raise TextInputError(f"got {s}; expected a finite number (JSON has no NaN or Infinity)")

    try:
        value = json.loads(
            text,
            parse_int=lambda s: _int_text(s, limits),
            parse_float=parse_float,
            parse_constant=parse_constant,
        )
    except TextInputError:
        raise
    except json.JSONDecodeError as e:
        raise TextInputError(
            f"line {e.lineno} column {e.colno}: got invalid JSON ({e.msg})",
            line=e.lineno,
            column=e.colno,
            position=e.pos,
        ) from None
    except RecursionError:
        raise _too_deep(limits) from None
    except ValueError as e:  # what Python itself refuses; the limits above come first
        raise TextInputError(f"got invalid JSON ({e})") from None
    check_value(value, limits)
    return value


# --- YAML -------------------------------------------------------------------------------------


def _refused(message: str, mark: Any = None) -> TextInputError:
    if mark is None:
        return TextInputError(message)
    return TextInputError(
        f"line {mark.line + 1}, column {mark.column + 1}: {message}",
        line=mark.line + 1,
        column=mark.column + 1,
    )


class _GuardedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounded nesting, alias expansion and integer length."""

    def __init__(self, stream: str, limits: Limits):
        super().__init__(stream)
        self.limits = limits
        self._depth = 0
        self._open: list[str | None] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise _refused(
                    f"alias *{event.anchor} refers to a node that contains it; expected "
                    "aliases to complete nodes only",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        self._depth += 1
        most = self.limits.max_depth
        if most is not None and self._depth > most:
            raise _refused(
                f"nested more than {most} levels deep; expected at most {most}", event.start_mark
            )
        self._open.append(getattr(event, "anchor", None))
        try:
            return super().compose_node(parent, index)
        finally:
            self._open.pop()
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        _check_expansion(node, self.limits)
        return node

    def construct_yaml_int(self, node: Any) -> int:
        text = str(node.value).replace("_", "")
        try:
            _digits(text, self.limits)
            n = super().construct_yaml_int(node)
            if problem := _int_problem(n, self.limits):
                raise TextInputError(f"{problem} ({_clip(text)})")
        except TextInputError as e:
            raise _refused(e.message, node.start_mark) from None
        return n


_GuardedLoader.add_constructor("tag:yaml.org,2002:int", _GuardedLoader.construct_yaml_int)


class _GuardedLoader12(_GuardedLoader):
    """:class:`_GuardedLoader` that reads YAML 1.2 exponent numbers as numbers."""


# 1e9, 1.5e-3, 2.0e6: YAML 1.1 wants a dot and a signed exponent and reads these as strings
_GuardedLoader12.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _check_expansion(root: Any, limits: Limits) -> None:
    """Refuse a node graph whose aliases expand it too far, or nest it too deep."""
    if root is None:
        return
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in size:
            continue
        children = _children(node)
        if not done:
            seen.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)
            continue
        size[key] = 1 + sum(size[id(c)] for c in children)
        height[key] = 1 + max((height[id(c)] for c in children), default=0)
    total, deep, literal = size[id(root)], height[id(root)], len(seen)
    if total - literal > limits.max_alias_nodes:
        raise TextInputError(
            f"aliases expand the document from {literal:,} to {total:,} nodes; expected "
            f"aliases to add at most {limits.max_alias_nodes:,} (a 'billion laughs' file?)"
        )
    if limits.max_depth is not None and deep > limits.max_depth + 1:
        raise TextInputError(
            f"aliases nest the document {deep - 1} levels deep; expected at most {limits.max_depth}"
        )


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def load_yaml(text: str, limits: Limits) -> Any:
    """Parse one YAML document under ``limits`` and check it with :func:`check_value`.

    Examples:
        >>> load_yaml("a: &x [1, 2]\\nb: *x\\n", Limits(json_only=False))
        {'a': [1, 2], 'b': [1, 2]}
        >>> load_yaml("a: &x [*x]", Limits(json_only=False))
        Traceback (most recent call last):
        ...
        twinedge.textinput.TextInputError: line 1, column 8: alias *x refers to a node that contains it; expected aliases to complete nodes only
    """
    loader = None
    try:  # the reader checks the characters as the loader is made
        loader = (_GuardedLoader12 if limits.yaml12_exponents else _GuardedLoader)(text, limits)
        data = loader.get_single_data()
    except TextInputError:
        raise
    except yaml.reader.ReaderError as e:
        line, col = _at(text, e.position)
        char = chr(e.character) if isinstance(e.character, int) else e.character
        raise TextInputError(
            f"line {line}, column {col}: not valid YAML (character {char!r} is not "
            "allowed in YAML)",
            line=line,
            column=col,
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        if mark is None:
            raise TextInputError(f"not valid YAML ({problem})") from None
        raise _refused(f"not valid YAML ({problem})", mark) from None
    except RecursionError:
        raise _too_deep(limits) from None
    except ValueError as e:  # e.g. a date that does not exist
        raise TextInputError(f"got a value that cannot be read ({e})") from None
    finally:
        if loader is not None:
            loader.dispose()
    check_value(data, limits)
    return data
