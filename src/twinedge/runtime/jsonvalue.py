"""What a twin may hold: strict JSON decoding, value checks and type-strict equality.

Every channel into the service (HTTP bodies, MQTT payloads, the Python API) goes through
the same rules, so a value either is refused at the edge with a clear reason or can be
stored by every store, read back unchanged and compared correctly:

- text is valid UTF-8 with no lone surrogate (``"\\ud800"``) and no NUL character
  (PostgreSQL ``jsonb`` cannot hold ``\\u0000``), in keys and in values;
- numbers are finite (``1e400`` overflows to Infinity; ``NaN`` and ``Infinity`` are not
  JSON, RFC 8259 section 6) and integers lie in the signed 64-bit range
  ``-2**63 .. 2**63-1`` (what the stores index exactly);
- nesting is bounded (checked by the callers with :func:`twinedge.runtime.things.too_deep`).

Change detection compares JSON values with :func:`json_equal`, which tells ``true`` from
``1`` and ``1`` from ``1.0``: Python's ``==`` does not, and a write that only changes a
value's type would otherwise be acknowledged and lost.

References:
    RFC 8259, The JavaScript Object Notation (JSON) Data Interchange Format.
"""

from __future__ import annotations

import json
import math
from typing import Any

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_NUMBER_CHARS = 400  # longer numerals are refused before Python parses them


class JSONValueError(ValueError):
    """A value that twinedge does not store; ``pointer`` says where (RFC 6901)."""

    def __init__(self, message: str, pointer: str | None = None, **extra: Any):
        super().__init__(message)
        self.message, self.pointer, self.extra = message, pointer, extra


def _parse_int(s: str) -> int:
    if len(s) > MAX_NUMBER_CHARS:
        raise JSONValueError(f"a number of {len(s)} digits is out of range")
    v = int(s)
    if not INT_MIN <= v <= INT_MAX:
        raise JSONValueError(f"integer {s} is outside the signed 64-bit range")
    return v


def _parse_float(s: str) -> float:
    if len(s) > MAX_NUMBER_CHARS:
        raise JSONValueError(f"a number of {len(s)} characters is out of range")
    v = float(s)
    if not math.isfinite(v):
        raise JSONValueError(f"number {s} is too large for a double (it would be Infinity)")
    return v


def _no_constant(name: str) -> Any:
    raise JSONValueError(f"{name} is not JSON (RFC 8259 allows finite numbers only)")


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_no_constant
)


def loads(data: bytes | bytearray | str) -> Any:
    """Decode strict JSON and check every value with :func:`check_value`.

    Parameters:
        data: UTF-8 bytes or text.

    Raises:
        JSONValueError: not UTF-8, not JSON, nested too deeply to parse, or holding a
            value twinedge does not store (the message says which and where).

    Examples:
        >>> loads(b'{"a": [1, true]}')
        {'a': [1, True]}
        >>> loads(b'[1e400]')
        Traceback (most recent call last):
        ...
        twinedge.runtime.jsonvalue.JSONValueError: number 1e400 is too large for a double (it would be Infinity)
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JSONValueError(
                f"the body is not UTF-8 (byte {e.start})", position=e.start
            ) from None
    else:
        text = data
    try:
        value = _DECODER.decode(text)
    except JSONValueError:
        raise
    except json.JSONDecodeError as e:
        raise JSONValueError(
            f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}",
            line=e.lineno,
            column=e.colno,
            position=e.pos,
        ) from None
    except RecursionError:
        raise JSONValueError("the JSON nests too deeply") from None
    except ValueError as e:  # e.g. Python's limit on integer digits
        raise JSONValueError(f"malformed JSON: {e}") from None
    check_value(value)
    return value


def check_text(s: str, what: str = "text", pointer: str = "") -> str:
    """Refuse a lone surrogate or a NUL character in ``s``; returns ``s``.

    Raises:
        JSONValueError: naming ``what`` and the offending character position.
    """
    if "\x00" in s:
        raise JSONValueError(
            f"{what} holds a NUL character (\\u0000) at position {s.index(chr(0))}", pointer
        )
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise JSONValueError(
            f"{what} holds a lone surrogate (\\u{ord(s[e.start]):04x}) at position {e.start}; "
            "text must be valid Unicode",
            pointer,
        ) from None
    return s


def check_value(v: Any, pointer: str = "") -> None:
    """Check a decoded JSON value (iteratively, so depth cannot crash it).

    Raises:
        JSONValueError: for a non-JSON type, a non-finite number, an integer outside the
            64-bit range, or text with a lone surrogate or a NUL; ``pointer`` locates it.

    Examples:
        >>> check_value({"ok": [1, 2.5, "x", None, False]})
        >>> check_value({"bad": float("nan")})
        Traceback (most recent call last):
        ...
        twinedge.runtime.jsonvalue.JSONValueError: nan is not a finite number
    """
    stack: list[tuple[Any, str]] = [(v, pointer)]
    while stack:
        x, p = stack.pop()
        if x is None or isinstance(x, bool):
            continue
        if isinstance(x, str):
            check_text(x, "a string", p)
        elif isinstance(x, int):
            if not INT_MIN <= x <= INT_MAX:
                raise JSONValueError("an integer is outside the signed 64-bit range", p)
        elif isinstance(x, float):
            if not math.isfinite(x):
                raise JSONValueError(f"{x} is not a finite number", p)
        elif isinstance(x, dict):
            for k, y in x.items():
                if not isinstance(k, str):
                    raise JSONValueError(f"object keys must be strings, got {k!r}", p)
                kp = f"{p}/{k.replace('~', '~0').replace('/', '~1')}"
                check_text(k, "a key", kp)
                stack.append((y, kp))
        elif isinstance(x, list):
            stack.extend((y, f"{p}/{i}") for i, y in enumerate(x))
        else:
            raise JSONValueError(f"{type(x).__name__} is not a JSON value", p)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values that respects their types.

    ``true`` and ``1`` differ, as do ``1`` and ``1.0`` (a client that writes one and
    reads the other back has lost something); object key order does not matter.

    Examples:
        >>> json_equal({"a": [1, True]}, {"a": [1, True]})
        True
        >>> json_equal([1], [True]), json_equal(1, 1.0), 1 == True
        (False, False, True)
    """
    if a is b:
        return True
    ta, tb = type(a), type(b)
    if ta is not tb:
        return False
    if ta is dict:
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if ta is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
