"""Ledger entries: validation and canonical JSON encoding.

An entry is a JSON object with exactly the fields ``type`` (non-empty string such as
``placement``, ``migration``, ``offload``, ``settlement``, ``policy``, ``provenance``,
``usage``, ``witness``, ``trade``), ``domain`` (the owner domain whose log holds it), ``time``
(seconds, a finite number), ``actor`` (who wrote it) and ``body`` (an object).

The stored bytes are canonical JSON in the style of RFC 8785 (JSON Canonicalization
Scheme): object keys sorted, no insignificant whitespace, UTF-8, no NaN/Infinity.
Two deliberate simplifications, documented in docs/ledger.md: keys are sorted by
Unicode code point (RFC 8785 sorts by UTF-16 code unit; the orders differ only for
keys mixing characters above U+FFFF with ones in U+E000..U+FFFF), and numbers use
Python's shortest round-trip ``repr`` (RFC 8785 uses the same shortest digits but
ECMAScript's notation, e.g. it writes ``1`` for ``1.0``).  Both are deterministic,
so any party re-encoding a parsed entry gets the stored bytes back, which
:func:`is_canonical` checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring,
)
from typing import Any

from twinedge.errors import LedgerError

__all__ = [
    "ENTRY_FIELDS",
    "KNOWN_TYPES",
    "canonical_json",
    "encode_entries",
    "encode_entry",
    "is_canonical",
]

ENTRY_FIELDS = ("type", "domain", "time", "actor", "body")
KNOWN_TYPES = frozenset(
    {
        "placement",
        "migration",
        "handover",
        "offload",
        "settlement",
        "policy",
        "provenance",
        "usage",
        "trade",
        "witness",
    }
)
_FIELD_SET = frozenset(ENTRY_FIELDS)


def _no_default(o: object) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


# The C encoder built once (json.dumps rebuilds it on every call, which costs ~30% of an
# append).  Falls back to the pure-Python encoder where the C accelerator is missing.
_encoder: Callable[[Any], str]
if c_make_encoder is not None:  # pragma: no branch
    _c_encode = c_make_encoder(
        None, _no_default, encode_basestring, None, ":", ",", True, False, False
    )

    def _c_encoder(value: Any) -> str:
        return "".join(_c_encode(value, 0))

    _encoder = _c_encoder
else:  # pragma: no cover
    _encoder = json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
    ).encode


def canonical_json(value: Any) -> bytes:
    """Encode a JSON value canonically (sorted keys, no whitespace, UTF-8)."""
    try:
        return _encoder(value).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise LedgerError(
            f"value is not canonical-JSON encodable ({exc}); use str, int, finite float, "
            "bool, None, lists and string-keyed dicts only"
        ) from exc


def encode_entry(entry: Mapping[str, Any], *, where: str = "entry", actor: str = "") -> bytes:
    """Validate one entry and return its canonical JSON bytes.

    A missing ``actor`` is filled with ``actor`` when that is non-empty.  Raises
    :class:`LedgerError` naming the field for a missing field, a field of the wrong
    type, an unknown field, or a value JSON cannot represent.
    """
    if type(entry) is dict and len(entry) == 5:
        # Fast path for the common, valid case; the checks below explain any failure.
        try:
            typ, dom, t = entry["type"], entry["domain"], entry["time"]
            act, body = entry["actor"], entry["body"]
        except KeyError:
            pass
        else:
            if (
                type(typ) is str
                and typ
                and type(dom) is str
                and dom
                and (type(t) is float or type(t) is int)
                and t - t == 0
                and type(act) is str
                and type(body) is dict
            ):
                try:
                    return _encoder(entry).encode("utf-8")
                except (TypeError, ValueError, RecursionError):
                    pass  # the slow path below reports it
    if not isinstance(entry, Mapping):
        raise LedgerError(f"{where}: must be a JSON object (dict), got {type(entry).__name__}")
    if len(entry) != 5 or entry.keys() != _FIELD_SET:
        if "actor" not in entry and actor:
            entry = {**entry, "actor": actor}
        missing = [f for f in ENTRY_FIELDS if f not in entry]
        if missing:
            raise LedgerError(
                f"{where}: missing field {missing[0]!r}; an entry needs "
                "type, domain, time, actor and body"
            )
        extra = sorted(str(k) for k in entry if k not in _FIELD_SET)
        if extra:
            raise LedgerError(f"{where}: unknown field {extra[0]!r}; put extra data inside 'body'")
    typ = entry["type"]
    if not isinstance(typ, str) or not typ:
        raise LedgerError(f"{where}: field 'type' must be a non-empty string, got {typ!r}")
    dom = entry["domain"]
    if not isinstance(dom, str) or not dom:
        raise LedgerError(f"{where}: field 'domain' must be a non-empty string, got {dom!r}")
    t = entry["time"]
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise LedgerError(f"{where}: field 'time' must be a number of seconds, got {t!r}")
    if not math.isfinite(t):
        raise LedgerError(f"{where}: field 'time' must be finite, got {t!r}")
    act = entry["actor"]
    if not isinstance(act, str):
        raise LedgerError(f"{where}: field 'actor' must be a string, got {act!r}")
    body = entry["body"]
    if not isinstance(body, dict):
        raise LedgerError(
            f"{where}: field 'body' must be a JSON object (dict), got {type(body).__name__}"
        )
    try:
        return _encoder(dict(entry)).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise LedgerError(
            f"{where}: field 'body' is not JSON-encodable ({exc}); use str, int, finite "
            "float, bool, None, lists and string-keyed dicts only"
        ) from exc


_float_repr = float.__repr__
_int_repr = int.__repr__


def encode_entries(
    entries: Iterable[Mapping[str, Any]],
    *,
    domain: str | None = None,
    actor: str = "",
    positions: Sequence[int] | None = None,
) -> list[bytes]:
    """Validate and canonically encode a batch; every entry must be of ``domain`` if given.

    The hot path of appending: a plain valid entry is encoded by writing its five
    top-level keys in their sorted order around the C-encoded body, which gives the
    same bytes as :func:`encode_entry` (a test checks this) at about half the cost.
    Anything unusual falls back to :func:`encode_entry`, whose errors name the entry
    (by ``positions[i]`` if given) and the field.
    """
    out: list[bytes] = []
    append = out.append
    enc, estr = _encoder, encode_basestring
    for i, e in enumerate(entries):
        if type(e) is dict and len(e) == 5:
            try:
                typ, dom, t = e["type"], e["domain"], e["time"]
                act, body = e["actor"], e["body"]
                tt = type(t)
                if (
                    type(typ) is str
                    and typ
                    and type(dom) is str
                    and dom
                    and (domain is None or dom == domain)
                    and type(act) is str
                    and type(body) is dict
                    and ((tt is float and t - t == 0.0) or tt is int)
                ):
                    ts = _float_repr(t) if tt is float else _int_repr(t)
                    append(
                        (
                            f'{{"actor":{estr(act)},"body":{enc(body)},"domain":{estr(dom)},'
                            f'"time":{ts},"type":{estr(typ)}}}'
                        ).encode()
                    )
                    continue
            except (KeyError, TypeError, ValueError, RecursionError):
                pass
        where = f"entry {positions[i] if positions is not None else i}"
        data = encode_entry(e, where=where, actor=actor)
        if domain is not None and e["domain"] != domain:
            raise LedgerError(
                f"{where}: field 'domain' is {e['domain']!r} but this is the log of "
                f"{domain!r}; append it to the log of {e['domain']!r}"
            )
        append(data)
    return out


def decode_entry(data: bytes) -> dict[str, Any]:
    """Parse stored entry bytes; raises :class:`LedgerError` if they are not a JSON object."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LedgerError(f"stored entry is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise LedgerError("stored entry is not a JSON object")
    return obj


def is_canonical(data: bytes) -> bool:
    """True if ``data`` is a valid entry whose canonical re-encoding is ``data`` itself."""
    try:
        obj = json.loads(data)
        return encode_entry(obj) == data
    except (LedgerError, UnicodeDecodeError, ValueError, RecursionError):
        return False
