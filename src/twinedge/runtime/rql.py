"""RQL: the filter language of search, groups, grants and event subscriptions.

The syntax follows Eclipse Ditto's RQL (Resource Query Language, itself after the
persvr RQL draft, https://github.com/persvr/rql): prefix calls such as
``and(eq(attributes/kind,"vehicle"),gt(features/battery/properties/level,20))``.
``docs/search.md`` is the user's reference; this module is the single authority on what
a filter means. It holds

* :func:`parse` — a hand-written recursive-descent parser producing frozen dataclass
  nodes; every error is an :class:`~twinedge.errors.InvalidInput` whose
  detail names the column and draws a caret under the offending character;
* :func:`evaluate` — the Python evaluation (group membership, event subscriptions);
* :func:`compile_sql` — the translation to SQL over the stores' index tables (a
  ``fields`` side table of flattened values plus typed columns of ``things`` for the
  service fields), used by SQLite and PostgreSQL alike.

Semantics (identical in Python and SQL; the stores' property test checks it):

* A path is a JSON Pointer (RFC 6901) into the thing without the leading ``/``; it walks
  objects only (arrays are opaque values). A path that does not resolve makes every
  operator false — except ``not``, which negates as usual.
* Values are typed: null, boolean, number, string, object, array. ``eq`` matches a
  value of the same type only (``"5"`` never equals ``5``; ``true`` never equals ``1``).
  Numbers compare as IEEE-754 doubles.
* ``ne(p, v)`` is ``exists(p) and not eq(p, v)``.
* ``gt``/``ge``/``lt``/``le`` take a number or a string and compare with values of the
  same type only; strings compare by Unicode code point (= UTF-8 byte order).
* ``like`` matches strings only; ``*`` is any run, ``?`` one character, ``\\`` escapes.
  ``ilike`` (as in Ditto) is ``like`` ignoring the case of the ASCII letters A-Z: the
  same on every store (SQLite's ``lower`` folds ASCII only; PostgreSQL's folds by
  locale, so the SQL folds with ``translate`` over A-Z instead).
* ``within(p, circle(x, y, r))``: the value at ``p`` is an object with numeric ``x`` and
  ``y`` (metres, local frame) and ``(x-cx)**2 + (y-cy)**2 <= r**2``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from twinedge.errors import InvalidInput
from twinedge.runtime.things import escape_token, unescape_token

__all__ = [
    "COLUMN_FIELDS",
    "And",
    "Compare",
    "Exists",
    "In",
    "Like",
    "Node",
    "Not",
    "Or",
    "SqlDialect",
    "Within",
    "ascii_lower",
    "compile_sql",
    "evaluate",
    "like_to_regex",
    "num_value",
    "parse",
    "parse_path",
    "path_text",
    "value_kind",
]

Scalar = str | int | float | bool | None
CompareOp = Literal["eq", "ne", "gt", "ge", "lt", "le"]

MAX_DEPTH = 64
MAX_LENGTH = 64_000
MAX_PATH_SEGMENTS = 64
MAX_COORD = 1e15  # |x|, |y| and r of a circle, in metres
TINY = 1e-150  # coordinate differences below this count as 0 in within()

# value kinds; the number is also the sort rank of the kind
K_NULL, K_BOOL, K_NUM, K_STR, K_OBJ, K_ARR = 0, 1, 2, 3, 4, 5


# --- nodes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """Base class of the parsed filter tree."""


@dataclass(frozen=True)
class And(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    child: Node


@dataclass(frozen=True)
class Compare(Node):
    op: CompareOp
    path: tuple[str, ...]
    value: Scalar


@dataclass(frozen=True)
class In(Node):
    path: tuple[str, ...]
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Like(Node):
    path: tuple[str, ...]
    pattern: str
    ignore_case: bool = False  # ilike: A-Z match a-z


@dataclass(frozen=True)
class Exists(Node):
    path: tuple[str, ...]


@dataclass(frozen=True)
class Within(Node):
    path: tuple[str, ...]
    x: float
    y: float
    r: float


# --- values -----------------------------------------------------------------------------


def value_kind(v: Any) -> int:
    """The kind of a JSON value: 0 null, 1 bool, 2 number, 3 string, 4 object, 5 array."""
    if v is None:
        return K_NULL
    if isinstance(v, bool):
        return K_BOOL
    if isinstance(v, int | float):
        return K_NUM
    if isinstance(v, str):
        return K_STR
    if isinstance(v, dict):
        return K_OBJ
    return K_ARR


def num_value(v: int | float | bool) -> float:
    """A JSON number (or boolean) as the double the SQL index stores (huge ints -> ±inf)."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def path_text(tokens: Sequence[str]) -> str:
    """``("features", "a/b")`` -> ``"features/a~1b"`` (the form stored in the index)."""
    return "/".join(escape_token(t) for t in tokens)


def parse_path(text: str, pointer: str = "/filter") -> tuple[str, ...]:
    """A path as written in a filter, a sort or a field list -> its tokens
    (:class:`~twinedge.errors.InvalidInput` if bad, with ``pointer`` naming the parameter
    it came from)."""
    try:
        return _Parser(text)._path_tokens(text.strip(), 1)
    except InvalidInput as e:
        e.pointer = pointer
        raise


_MISSING = object()


def _resolve(doc: Any, path: tuple[str, ...]) -> Any:
    cur = doc
    for t in path:
        if not isinstance(cur, dict):
            return _MISSING
        cur = cur.get(t, _MISSING)
        if cur is _MISSING:
            return _MISSING
    return cur


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """``*`` -> any run, ``?`` -> one character, ``\\x`` -> a literal ``x``."""
    out = []
    for kind, ch in like_tokens(pattern):
        out.append(".*" if kind == "*" else "." if kind == "?" else re.escape(ch))
    return re.compile("".join(out), re.S)


def like_tokens(pattern: str) -> list[tuple[str, str]]:
    """The pattern as ``(kind, char)`` pairs: kind ``*``, ``?`` or ``c`` (a literal)."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(("c", pattern[i + 1]))
            i += 2
            continue
        out.append((ch, ch) if ch in "*?" else ("c", ch))
        i += 1
    return out


# --- the parser -------------------------------------------------------------------------

_LOGICAL = ("and", "or", "not")
_COMPARE = ("eq", "ne", "gt", "ge", "lt", "le")
_OPERATORS = (*_LOGICAL, *_COMPARE, "in", "like", "ilike", "exists", "within")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """``text`` with A-Z as a-z and every other character kept (what ``ilike`` folds).

    Examples:
        >>> ascii_lower("Ärger-ABC")
        'Ärger-abc'
    """
    return text.translate(_ASCII_LOWER)


_PATH_STOP = set(',()"') | {" ", "\t", "\r", "\n"}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DECODER = json.JSONDecoder(parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    # errors ------------------------------------------------------------------------
    def fail(self, message: str, pos: int | None = None) -> InvalidInput:
        pos = self.pos if pos is None else pos
        col = pos + 1
        # show at most 70 characters around the error so the caret stays readable
        start = max(0, pos - 50)
        snippet = self.text[start : start + 70].replace("\n", " ").replace("\t", " ")
        caret = " " * (pos - start) + "^"
        detail = f"{message.replace('{col}', str(col))}\n  {snippet}\n  {caret}"
        return InvalidInput(detail, pointer="/filter", column=col)

    def unexpected(self, expected: str) -> InvalidInput:
        if self.pos >= len(self.text):
            return self.fail(f"unexpected end of filter at column {{col}}: expected {expected}")
        ch = self.text[self.pos]
        return self.fail(f"unexpected {ch!r} at column {{col}}: expected {expected}")

    # lexing helpers ------------------------------------------------------------------
    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def expect(self, ch: str, expected: str) -> None:
        self.ws()
        if self.pos < len(self.text) and self.text[self.pos] == ch:
            self.pos += 1
            return
        raise self.unexpected(expected)

    def peek(self) -> str:
        self.ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    # grammar -------------------------------------------------------------------------
    def parse(self) -> Node:
        if len(self.text) > MAX_LENGTH:
            raise InvalidInput(
                f"the filter is {len(self.text)} characters long; at most {MAX_LENGTH} are allowed",
                pointer="/filter",
            )
        node = self.query(0)
        self.ws()
        if self.pos < len(self.text):
            raise self.unexpected("the end of the filter")
        return node

    def query(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.fail(f"the filter nests deeper than {MAX_DEPTH} levels at column {{col}}")
        self.ws()
        start = self.pos
        m = _NAME_RE.match(self.text, self.pos)
        if not m:
            raise self.unexpected("an operator such as eq(path,value) or and(...)")
        name = m.group(0)
        if name not in _OPERATORS:
            raise self.fail(
                f"unknown operator {name!r} at column {{col}}: expected one of "
                + ", ".join(_OPERATORS),
                start,
            )
        self.pos = m.end()
        self.expect("(", f"'(' after {name}")
        if name in ("and", "or"):
            children = [self.query(depth + 1)]
            while self.peek() == ",":
                self.pos += 1
                children.append(self.query(depth + 1))
            self.expect(")", f"',' or ')' to close {name}(")
            return (And if name == "and" else Or)(tuple(children))
        if name == "not":
            child = self.query(depth + 1)
            self.expect(")", "')' to close not( — not takes exactly one query")
            return Not(child)
        path = self.path()
        if name == "exists":
            self.expect(")", "')' to close exists( — exists takes only a path")
            return Exists(path)
        self.expect(",", f"',' and a value after the path of {name}(")
        if name in _COMPARE:
            vpos = self.pos
            value = self.value()
            if name in ("gt", "ge", "lt", "le") and value_kind(value) not in (K_NUM, K_STR):
                raise self.fail(
                    f"{name} at column {{col}} compares with a number or a string, "
                    f"not {json.dumps(value)}",
                    vpos,
                )
            self.expect(")", f"')' to close {name}( — {name} takes a path and one value")
            return Compare(name, path, value)  # type: ignore[arg-type]
        if name == "in":
            values = [self.value()]
            while self.peek() == ",":
                self.pos += 1
                values.append(self.value())
            self.expect(")", "',' or ')' to close in(")
            return In(path, tuple(values))
        if name in ("like", "ilike"):
            vpos = self.pos
            value = self.value()
            if not isinstance(value, str):
                raise self.fail(f"{name} at column {{col}} needs a string pattern", vpos)
            self.expect(")", f"')' to close {name}( — {name} takes a path and one pattern")
            return Like(path, value, name == "ilike")
        # within
        self.ws()
        cstart = self.pos
        m = _NAME_RE.match(self.text, self.pos)
        if not m or m.group(0) != "circle":
            raise self.unexpected("circle(x,y,r)")
        self.pos = m.end()
        self.expect("(", "'(' after circle")
        nums = []
        for i in range(3):
            vpos = self.pos
            v = self.value()
            if value_kind(v) != K_NUM:
                raise self.fail(
                    f"circle at column {{col}} needs 3 numbers (x, y, r); got {json.dumps(v)}", vpos
                )
            nums.append(num_value(v))  # type: ignore[arg-type]
            if i < 2:
                self.expect(",", "',' between the numbers of circle(x,y,r)")
        self.expect(")", "')' to close circle( — circle takes x, y and r")
        if nums[2] < 0 or not all(abs(n) <= MAX_COORD for n in nums):
            raise self.fail(
                "circle at column {col} needs x and y within ±1e15 and a radius 0 <= r <= 1e15",
                cstart,
            )
        self.expect(")", "')' to close within(")
        return Within(path, nums[0], nums[1], nums[2])

    def path(self) -> tuple[str, ...]:
        self.ws()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _PATH_STOP:
            self.pos += 1
        if self.pos == start:
            raise self.unexpected("a path such as attributes/kind")
        return self._path_tokens(self.text[start : self.pos], start + 1)

    def _path_tokens(self, raw: str, col: int) -> tuple[str, ...]:
        body = raw[1:] if raw.startswith("/") else raw
        if not body:
            raise self.fail(
                "empty path at column {col}: expected a path such as attributes/kind", col - 1
            )
        tokens = body.split("/")
        if len(tokens) > MAX_PATH_SEGMENTS:
            raise self.fail(
                f"the path at column {{col}} has {len(tokens)} segments; at most "
                f"{MAX_PATH_SEGMENTS} (documents nest at most 32 levels)",
                col - 1,
            )
        offset = col - 1 + (len(raw) - len(body))
        for t in tokens:
            if not t:
                raise self.fail(
                    "empty segment in the path at column {col} ('//' or a trailing '/')", offset
                )
            if "\x00" in t:
                raise self.fail(
                    "a path may not contain NUL (\\u0000); see column {col}",
                    offset + t.index("\x00"),
                )
            if not t.isascii():
                try:
                    t.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise self.fail(
                        "the path at column {col} is not valid Unicode (lone surrogate)",
                        offset + e.start,
                    ) from None
            bad = re.search(r"~(?![01])", t)
            if bad:
                raise self.fail(
                    "'~' at column {col} must be followed by 0 or 1 (RFC 6901)",
                    offset + bad.start(),
                )
            offset += len(t) + 1
        return tuple(unescape_token(t) for t in tokens)

    def value(self) -> Scalar:
        self.ws()
        start = self.pos
        ch = self.text[self.pos] if self.pos < len(self.text) else ""
        if ch not in '"-0123456789tfn':
            raise self.unexpected('a value (a "string", a number, true, false or null)')
        try:
            value, end = _DECODER.raw_decode(self.text, self.pos)
        except (json.JSONDecodeError, ValueError) as e:
            pos = getattr(e, "pos", start)
            msg = getattr(e, "msg", "not a JSON value")
            raise self.fail(f"bad value at column {{col}}: {msg}", pos) from None
        if isinstance(value, dict | list):  # pragma: no cover - excluded by the first char
            raise self.fail(
                "a value at column {col} must be a string, number, true, false or null", start
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail("the number at column {col} is out of range", start)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**1023:
            raise self.fail("the number at column {col} is out of range", start)
        if isinstance(value, str):
            if "\x00" in value:
                raise self.fail("strings may not contain NUL (\\u0000); see column {col}", start)
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise self.fail(
                    "the string at column {col} is not valid Unicode (lone surrogate)", start
                ) from None
        self.pos = end
        return value


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Node:
    """Parse RQL ``text`` into a tree of nodes; :class:`~twinedge.errors.InvalidInput`
    (with ``column`` in its ``extra``) if bad."""
    if not isinstance(text, str):
        raise InvalidInput("a filter must be a string of RQL", pointer="/filter")
    return _Parser(text).parse()


# --- Python evaluation ----------------------------------------------------------------------


def _eq(v: Any, want: Scalar) -> bool:
    if value_kind(v) != value_kind(want):
        return False
    if isinstance(want, int | float):  # a number or a boolean: as the index stores it
        return num_value(v) == num_value(want)
    return v == want


_Ordered = TypeVar("_Ordered", float, str)


def _in_order(op: str, a: _Ordered, b: _Ordered) -> bool:
    if op == "gt":
        return a > b
    if op == "ge":
        return a >= b
    if op == "lt":
        return a < b
    return a <= b


def _cmp(op: str, v: Any, want: Scalar) -> bool:
    if value_kind(v) != value_kind(want):
        return False
    if isinstance(want, str):
        return _in_order(op, v, want)
    if want is None:  # the parser allows only numbers and strings here
        raise TypeError(f"{op!r} compares numbers or strings, not null")
    # a number (or a boolean: False < True either way)
    return _in_order(op, num_value(v), num_value(want))


def evaluate(node: Node, thing: dict[str, Any]) -> bool:
    """Whether ``thing`` matches the parsed filter ``node``."""
    if isinstance(node, And):
        return all(evaluate(c, thing) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate(c, thing) for c in node.children)
    if isinstance(node, Not):
        return not evaluate(node.child, thing)
    v = _resolve(thing, node.path)  # type: ignore[attr-defined]
    if v is _MISSING:
        return False
    if isinstance(node, Compare):
        if node.op == "eq":
            return _eq(v, node.value)
        if node.op == "ne":
            return not _eq(v, node.value)
        return _cmp(node.op, v, node.value)
    if isinstance(node, In):
        return any(_eq(v, w) for w in node.values)
    if isinstance(node, Exists):
        return True
    if isinstance(node, Like):
        if not isinstance(v, str):
            return False
        if node.ignore_case:
            return _like_regex(ascii_lower(node.pattern)).fullmatch(ascii_lower(v)) is not None
        return _like_regex(node.pattern).fullmatch(v) is not None
    if isinstance(node, Within):
        if not isinstance(v, dict):
            return False
        x, y = v.get("x"), v.get("y")
        if value_kind(x) != K_NUM or value_kind(y) != K_NUM:
            return False
        dx, dy = num_value(x) - node.x, num_value(y) - node.y  # type: ignore[arg-type]
        return _square(dx) + _square(dy) <= node.r * node.r
    raise TypeError(f"not an RQL node: {node!r}")


def _square(d: float) -> float:
    # as the SQL does: a difference under TINY counts as 0 (PostgreSQL raises on a float
    # underflow instead of rounding to zero)
    return 0.0 if abs(d) < TINY else d * d


@functools.lru_cache(maxsize=256)
def _like_regex(pattern: str) -> re.Pattern[str]:
    return like_to_regex(pattern)


# --- SQL compilation ------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlDialect:
    """What differs between the SQL engines for a filter: the pattern operator.

    The compiled SQL always uses ``?`` placeholders; a store with another paramstyle
    rewrites them (the SQL text contains no other ``?``).
    """

    name: Literal["sqlite", "postgres"]
    # PostgreSQL's B-tree refuses entries over ~2.7 kB, so it indexes left(str, N) of the
    # fields table; the compiler then adds the matching prefix condition (None: whole str)
    index_prefix: int | None = None

    def pattern(self, tokens: list[tuple[str, str]]) -> tuple[str, str]:
        """``(operator, pattern)`` matching exactly what :func:`like_to_regex` matches."""
        out = []
        if self.name == "sqlite":  # GLOB: case-sensitive, UTF-8 aware, [c] quotes c
            for kind, ch in tokens:
                out.append(kind if kind in "*?" else f"[{ch}]" if ch in "*?[" else ch)
            return "GLOB", "".join(out)
        for kind, ch in tokens:  # PostgreSQL LIKE with the default escape '\'
            out.append(
                "%" if kind == "*" else "_" if kind == "?" else "\\" + ch if ch in "%_\\" else ch
            )
        return "LIKE", "".join(out)


SQLITE = SqlDialect("sqlite")
POSTGRES = SqlDialect("postgres", index_prefix=256)


@dataclass(frozen=True)
class ColumnField:
    """A service field kept as a typed column of ``things`` instead of in ``fields``.

    ``kind`` is the JSON kind of its values; ``nullable``: the value may be JSON null
    (stored as SQL NULL with ``present`` = 1); ``present``: the column saying whether
    the key exists at all (None = it always exists).
    """

    column: str
    kind: int
    nullable: bool = False
    present: str | None = None


# The store keeps these as columns (always present except _host, which may be absent or
# null); every other path lives in the ``fields`` table.
COLUMN_FIELDS: dict[str, ColumnField] = {
    "thingId": ColumnField("thing_id", K_STR),
    "_domain": ColumnField("domain", K_STR),
    "_revision": ColumnField("revision", K_NUM),
    "_created": ColumnField("created", K_STR),
    "_modified": ColumnField("modified", K_STR),
    "_host": ColumnField("host", K_STR, nullable=True, present="host_set"),
}

TRUE, FALSE = "(1=1)", "(1=0)"


def _and(*parts: str) -> str:
    kept = [p for p in parts if p != TRUE]
    return "(" + " AND ".join(kept) + ")" if kept else TRUE


def _successor(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:
                nxt = 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


def _literal_prefix(tokens: list[tuple[str, str]]) -> str:
    out = []
    for kind, ch in tokens:
        if kind != "c":
            break
        out.append(ch)
    return "".join(out)


class _Compiler:
    def __init__(self, dialect: SqlDialect, alias: str):
        self.d = dialect
        self.t = alias
        self.params: list[Any] = []

    def p(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def str_cmp(self, expr: str, sym: str, value: str) -> str:
        """``expr sym value`` for a ``fields.str`` column, with the index-prefix condition
        the dialect needs (truncation is monotone, so the prefix test is implied)."""
        n = self.d.index_prefix
        if n is None or not expr.endswith(".str"):
            return f"{expr} {sym} {self.p(value)}"
        if len(value) < n:  # then comparing the prefix is exact (and needs only the index)
            return f"left({expr}, {n}) {sym} {self.p(value)}"
        loose = {"=": "=", ">": ">=", ">=": ">=", "<": "<=", "<=": "<="}[sym]
        return f"left({expr}, {n}) {loose} {self.p(value[:n])} AND {expr} {sym} {self.p(value)}"

    # The fields table has three partial indexes, one per "part" of its rows: numbers and
    # booleans (num set), strings (str set), and the rest (null, objects, arrays). Every
    # subquery names its part so the engine picks that index.
    PARTS: ClassVar[dict[str, str]] = {
        "num": "f.num IS NOT NULL",
        "str": "f.str IS NOT NULL",
        "node": "f.num IS NULL AND f.str IS NULL",
    }

    def value_cond(self, value: Scalar) -> tuple[str, str]:
        """``(part, condition)`` on a row ``f`` of that part: the row holds ``value``
        (never NULL within its part, so ``NOT`` is safe)."""
        kind = value_kind(value)
        if kind == K_NULL:
            return "node", f"f.kind = {K_NULL}"
        if kind == K_STR:
            return "str", self.str_cmp("f.str", "=", value)  # type: ignore[arg-type]
        return "num", f"(f.kind = {kind} AND f.num = {self.p(num_value(value))})"  # type: ignore[arg-type]

    def in_fields(
        self, path: tuple[str, ...], parts: list[tuple[str, Callable[[], str] | None]]
    ) -> str:
        subs = []
        for part, cond in parts:
            # the path parameter first: placeholders are positional
            where = f"f.path = {self.p(path_text(path))} AND {self.PARTS[part]}"
            if cond is not None:
                where += f" AND {cond()}"
            subs.append(f"SELECT f.thing_id FROM fields f WHERE {where}")
        return f"{self.t}.thing_id IN ({' UNION ALL '.join(subs)})"

    def compile(self, node: Node) -> str:
        if isinstance(node, And):
            return "(" + " AND ".join(self.compile(c) for c in node.children) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.compile(c) for c in node.children) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.compile(node.child)})"
        path: tuple[str, ...] = node.path  # type: ignore[attr-defined]
        col = COLUMN_FIELDS.get(path[0])
        if col is not None:
            return self.column(node, col) if len(path) == 1 else FALSE
        if isinstance(node, Exists):
            return self.in_fields(path, [(part, None) for part in self.PARTS])
        if isinstance(node, Compare):
            value: Any = node.value
            if node.op in ("eq", "ne"):
                kind = value_kind(value)
                vpart = "node" if kind == K_NULL else "str" if kind == K_STR else "num"

                def cond(negate: bool = node.op == "ne") -> str:
                    c = self.value_cond(value)[1]
                    return f"NOT ({c})" if negate else c

                if node.op == "eq":
                    return self.in_fields(path, [(vpart, cond)])
                return self.in_fields(
                    path, [(part, cond if part == vpart else None) for part in self.PARTS]
                )
            sym = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[node.op]
            if value_kind(value) == K_STR:
                return self.in_fields(path, [("str", lambda: self.str_cmp("f.str", sym, value))])
            return self.in_fields(
                path,
                [("num", lambda: f"f.kind = {K_NUM} AND f.num {sym} {self.p(num_value(value))}")],
            )
        if isinstance(node, In):
            values = node.values
            strs = sorted({v for v in values if isinstance(v, str)})
            others = [v for v in values if not isinstance(v, str)]
            parts: list[tuple[str, Callable[[], str] | None]] = []
            if strs:

                def str_in() -> str:
                    n = self.d.index_prefix
                    if n is None:
                        return f"f.str IN ({', '.join(self.p(x) for x in strs)})"
                    short = [x for x in strs if len(x) < n]
                    long = [x for x in strs if len(x) >= n]
                    ors = []
                    if short:
                        ors.append(f"left(f.str, {n}) IN ({', '.join(self.p(x) for x in short)})")
                    if long:
                        ors.append(
                            f"(left(f.str, {n}) IN ({', '.join(self.p(x[:n]) for x in long)}) "
                            f"AND f.str IN ({', '.join(self.p(x) for x in long)}))"
                        )
                    return "(" + " OR ".join(ors) + ")"

                parts.append(("str", str_in))
            nums = [v for v in others if v is not None]
            if nums:
                parts.append(
                    ("num", lambda: "(" + " OR ".join(self.value_cond(v)[1] for v in nums) + ")")
                )
            if any(v is None for v in others):
                parts.append(("node", lambda: f"f.kind = {K_NULL}"))
            return self.in_fields(path, parts)
        if isinstance(node, Like):
            pattern, fold = node.pattern, node.ignore_case
            return self.in_fields(
                path, [("str", lambda: self.like("f.str", pattern, TRUE, ignore_case=fold))]
            )
        if isinstance(node, Within):
            # a bounding box on the indexed x and y leaves (widened a hair so rounding can
            # never drop a point the exact test accepts), then the exact test inside a CASE
            # so it only ever sees boxed values (PostgreSQL raises on float overflow)
            pad = node.r * 1e-9 + (abs(node.x) + abs(node.y)) * 1e-12 + 1e-9
            xlo, xhi = node.x - node.r - pad, node.x + node.r + pad
            ylo, yhi = node.y - node.r - pad, node.y + node.r + pad
            fx_ = f"fx.path = {self.p(path_text((*path, 'x')))} AND fx.num IS NOT NULL AND fx.kind = {K_NUM}"
            fy_ = f"fy.path = {self.p(path_text((*path, 'y')))} AND fy.num IS NOT NULL AND fy.kind = {K_NUM}"
            box = [
                f"fx.num BETWEEN {self.p(xlo)} AND {self.p(xhi)}",
                f"fy.num BETWEEN {self.p(ylo)} AND {self.p(yhi)}",
            ]
            box_again = (
                f"fx.num BETWEEN {self.p(xlo)} AND {self.p(xhi)} "
                f"AND fy.num BETWEEN {self.p(ylo)} AND {self.p(yhi)}"
            )
            sq = []
            for axis, centre in (("fx.num", node.x), ("fy.num", node.y)):
                d = [f"({axis} - {self.p(centre)})" for _ in range(3)]  # a parameter each
                sq.append(f"(CASE WHEN abs{d[0]} < {TINY!r} THEN 0.0 ELSE {d[1]} * {d[2]} END)")
            exact = (
                f"(CASE WHEN {box_again} THEN {sq[0]} + {sq[1]} <= {self.p(node.r * node.r)} "
                "ELSE 1=0 END)"
            )
            return (
                f"{self.t}.thing_id IN (SELECT fx.thing_id FROM fields fx JOIN fields fy "
                f"ON fy.thing_id = fx.thing_id WHERE {fx_} AND {fy_} AND {box[0]} AND {box[1]} "
                f"AND {exact})"
            )
        raise TypeError(f"not an RQL node: {node!r}")

    def like(self, expr: str, pattern: str, guard: str, *, ignore_case: bool = False) -> str:
        if ignore_case:  # no index range: the index holds the values as they are
            tokens = like_tokens(ascii_lower(pattern))
            op, pat = self.d.pattern(tokens)
            folded = (
                f"lower({expr})"  # SQLite's lower() folds A-Z only
                if self.d.name == "sqlite"
                else f"translate({expr}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
            )
            return _and(guard, f"{folded} {op} {self.p(pat)}")
        tokens = like_tokens(pattern)
        op, pat = self.d.pattern(tokens)
        parts = [guard]
        prefix = _literal_prefix(tokens)
        if prefix:  # an explicit range so the (path, str) index is used for any prefix
            parts.append(self.str_cmp(expr, ">=", prefix))
            upper = _successor(prefix)
            if upper is not None:
                parts.append(self.str_cmp(expr, "<", upper))
        parts.append(f"{expr} {op} {self.p(pat)}")
        return _and(*parts)

    # a service field kept as a column of things
    def column(self, node: Node, col: ColumnField) -> str:
        c = f"{self.t}.{col.column}"
        present = f"{self.t}.{col.present} = 1" if col.present else TRUE
        has_value = f"{c} IS NOT NULL" if col.nullable else TRUE

        def eq(value: Scalar) -> str:
            kind = value_kind(value)
            if kind == K_NULL:
                return f"({present} AND {c} IS NULL)" if col.nullable else FALSE
            if kind != col.kind:
                return FALSE
            if kind == K_NUM:
                num = num_value(value)  # type: ignore[arg-type]
                if col.column == "revision":
                    if not num.is_integer():
                        return FALSE
                    if abs(num) > 2**62:
                        return FALSE
                    return f"{c} = {self.p(int(num))}"
                return f"{c} = {self.p(num)}"
            return _and(has_value, f"{c} = {self.p(value)}")

        if isinstance(node, Exists):
            return present
        if isinstance(node, Compare):
            if node.op == "eq":
                return eq(node.value)
            if node.op == "ne":
                return _and(present, f"NOT {eq(node.value)}")
            if value_kind(node.value) != col.kind:
                return FALSE
            sym = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[node.op]
            value: Any = node.value
            if col.column == "revision":  # an integer column: keep integer parameters
                num = num_value(value)
                if abs(num) > 2**62:
                    big = num > 0
                    return TRUE if (node.op in ("lt", "le")) == big else FALSE
                if not num.is_integer():
                    value = math.floor(num) if node.op in ("gt", "le") else math.ceil(num)
                    sym = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[node.op]
                else:
                    value = int(num)
            return _and(has_value, f"{c} {sym} {self.p(value)}")
        if isinstance(node, In):
            return "(" + " OR ".join(eq(v) for v in node.values) + ")"
        if isinstance(node, Like):
            if col.kind != K_STR:
                return FALSE
            return self.like(c, node.pattern, has_value, ignore_case=node.ignore_case)
        if isinstance(node, Within):
            return FALSE
        raise TypeError(f"not an RQL node: {node!r}")


def compile_sql(
    node: Node, dialect: SqlDialect = SQLITE, alias: str = "t"
) -> tuple[str, list[Any]]:
    """A SQL boolean expression (``?`` placeholders) over ``things AS alias`` and the
    ``fields`` index table, true exactly where :func:`evaluate` is, and its parameters.

    Never NULL (so ``NOT`` works): every comparison of a nullable column is guarded.
    """
    c = _Compiler(dialect, alias)
    sql = c.compile(node)
    return sql, c.params


def compiler_for(dialect: SqlDialect) -> Callable[[Node], tuple[str, list[Any]]]:
    """``compile_sql`` bound to ``dialect`` (a convenience for the stores)."""
    return functools.partial(compile_sql, dialect=dialect)
