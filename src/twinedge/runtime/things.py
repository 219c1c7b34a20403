"""The twin document (Eclipse Ditto's layout) and the pure functions on it.

A thing is::

    {"thingId": "fleet:car-7",
     "attributes": {...},                       # static-ish metadata
     "features": {"battery": {"properties": {...},          # reported by the device
                              "desiredProperties": {...}}}, # what the application wants
     "_revision": 3, "_created": "...", "_modified": "...",  # kept by the service
     "_domain": "fleet-op", "_host": "edge-7"}                # owner domain; orchestrated host

Everything here is pure and synchronous: merge patch (RFC 7396), JSON Patch generation
(RFC 6902), JSON Pointer paths (RFC 6901), the desired-vs-reported delta and validation.

What a twin may hold is the same on every channel (HTTP bodies, MQTT payloads, the Python
API): JSON read and checked by :mod:`twinedge.textinput` under :data:`JSON_LIMITS` (valid
Unicode text without NUL, which PostgreSQL ``jsonb`` cannot hold; finite numbers; integers
in the signed 64-bit range the stores index exactly), nested at most :data:`MAX_DEPTH`
levels (:func:`too_deep`). Change detection compares values with :func:`json_equal`,
which tells ``true`` from ``1`` and ``1`` from ``1.0``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from twinedge import textinput
from twinedge.errors import InvalidInput
from twinedge.textinput import TextInputError, check_text

# no '+', '#' or '/' in a name: a thing id is also an MQTT topic level (always fullmatch)
THING_ID_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*:[A-Za-z0-9_.:@&=,$%!*'()~-]+")
FEATURE_ID_RE = re.compile(r"[A-Za-z0-9_.:@&=+,$!*'()~-]{1,256}")
NAMESPACE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
DOMAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
META_FIELDS = ("_revision", "_created", "_modified", "_domain", "_host")
TOP_FIELDS = {"thingId", "attributes", "features", *META_FIELDS}
MAX_DEPTH = 32
JSON_LIMITS = textinput.Limits(max_depth=None, int_range=textinput.INT64)
"""What the runtime reads and stores: JSON values, integers in the signed 64-bit range;
depth is bounded by :func:`too_deep` (a message in the runtime's terms)."""


def check_thing_id(thing_id: str) -> str:
    if not isinstance(thing_id, str) or not THING_ID_RE.fullmatch(thing_id) or len(thing_id) > 256:
        raise InvalidInput(
            f"thingId {thing_id!r} is not valid: expected 'namespace:name' (namespace: letters, digits, '_', '.', '-'; at most 256 characters)",
            "/thingId",
        )
    return thing_id


def check_domain(domain: Any, pointer: str = "/domain") -> str:
    """A domain name: 1-128 letters, digits, '_', '.', '-' (starting with a letter or digit)."""
    if not isinstance(domain, str) or not DOMAIN_RE.fullmatch(domain):
        raise InvalidInput(
            f"domain {domain!r} is not valid: 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            pointer,
        )
    return domain


# --- JSON Pointer (RFC 6901) ---------------------------------------------------------


def escape_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def split_path(path: str) -> list[str]:
    """A JSON Pointer ``"/a/b~1c"`` (RFC 6901: ``"/"`` is the key ``""``) or a URL-style
    path ``"a/b~1c"`` (no leading slash, trailing slash ignored) -> ``["a", "b/c"]``;
    ``""`` -> ``[]``."""
    if path.startswith("/"):
        return [unescape_token(t) for t in path[1:].split("/")]
    path = path.rstrip("/")
    return [unescape_token(t) for t in path.split("/")] if path else []


def get_path(doc: Any, tokens: list[str]) -> Any:
    """The value at ``tokens`` or raise ``KeyError``."""
    cur = doc
    for t in tokens:
        if not isinstance(cur, dict) or t not in cur:
            raise KeyError("/" + "/".join(escape_token(x) for x in tokens))
        cur = cur[t]
    return cur


def set_path(doc: dict, tokens: list[str], value: Any) -> None:
    """Set ``value`` at ``tokens``, creating objects on the way."""
    cur = doc
    for t in tokens[:-1]:
        nxt = cur.get(t)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[t] = nxt
        cur = nxt
    cur[tokens[-1]] = value


def delete_path(doc: dict, tokens: list[str]) -> None:
    """Delete the value at ``tokens`` (``KeyError`` if absent)."""
    parent = get_path(doc, tokens[:-1]) if len(tokens) > 1 else doc
    if not isinstance(parent, dict) or tokens[-1] not in parent:
        raise KeyError("/" + "/".join(escape_token(x) for x in tokens))
    del parent[tokens[-1]]


# --- merge patch (RFC 7396) and JSON Patch generation (RFC 6902) ---------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch) if isinstance(patch, list) else patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def json_patch(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """RFC 6902 operations (add / remove / replace) that turn ``old`` into ``new``.

    Objects are diffed key by key; arrays and scalars are replaced whole.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for k in old:
            if k not in new:
                ops.append({"op": "remove", "path": f"{path}/{escape_token(k)}"})
        for k, v in new.items():
            if k in old and old[k] is v:
                continue  # shared, unchanged
            p = f"{path}/{escape_token(k)}"
            if k not in old:
                ops.append({"op": "add", "path": p, "value": v})
            elif not json_equal(old[k], v):
                ops.extend(json_patch(old[k], v, p))
        return ops
    if json_equal(old, new):
        return []
    return [{"op": "replace", "path": path or "", "value": new}]


def apply_json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply add/remove/replace operations (enough to replay :func:`json_patch`)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        tokens = split_path(op["path"])
        if not tokens:
            doc = copy.deepcopy(op.get("value"))
            continue
        if op["op"] == "remove":
            delete_path(doc, tokens)
        else:
            set_path(doc, tokens, copy.deepcopy(op["value"]))
    return doc


# --- the desired / reported delta ------------------------------------------------------


def _delta(desired: Any, reported: Any) -> Any:
    """What of ``desired`` is not yet in ``reported`` (``None`` when nothing)."""
    if isinstance(desired, dict):
        out = {}
        for k, v in desired.items():
            r = reported.get(k) if isinstance(reported, dict) else None
            d = _delta(v, r)
            if d is not None:
                out[k] = d
        return out or None
    return None if json_equal(desired, reported) else desired


def delta(thing: dict) -> dict[str, Any]:
    """Per feature, the desired properties the device has not reported yet."""
    out = {}
    for fid, f in (thing.get("features") or {}).items():
        if not isinstance(f, dict):
            continue
        d = _delta(f.get("desiredProperties") or {}, f.get("properties") or {})
        if d:
            out[fid] = d
    return out


def in_sync(thing: dict) -> bool:
    """True when every desired property has been reported back by the device."""
    return not delta(thing)


# --- validation -----------------------------------------------------------------------


def too_deep(v: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``v`` nests objects/arrays more than ``limit`` levels deep (stops early)."""
    if limit < 0:
        return True
    if isinstance(v, dict):
        return (
            any(isinstance(x, dict | list) and too_deep(x, limit - 1) for x in v.values())
            or limit == 0
        )
    if isinstance(v, list):
        return any(isinstance(x, dict | list) and too_deep(x, limit - 1) for x in v) or limit == 0
    return False


def validate_thing(doc: Any, thing_id: str) -> dict:
    """Check a thing body (as sent by a client) and return it without service fields.

    ``thingId`` in the body, when present, must match the URL.
    """
    if not isinstance(doc, dict):
        raise InvalidInput(f"a thing must be a JSON object, got {type(doc).__name__}", "")
    extra = sorted(set(doc) - TOP_FIELDS)
    if extra:
        raise InvalidInput(
            f"unknown top-level field {extra[0]!r}; a thing has thingId, attributes and features",
            f"/{escape_token(extra[0])}",
        )
    if "thingId" in doc and doc["thingId"] != thing_id:
        raise InvalidInput(
            f"thingId {doc['thingId']!r} in the body does not match {thing_id!r} in the URL",
            "/thingId",
        )
    attrs = doc.get("attributes", {})
    if not isinstance(attrs, dict):
        raise InvalidInput("attributes must be a JSON object", "/attributes")
    feats = doc.get("features", {})
    if not isinstance(feats, dict):
        raise InvalidInput("features must be a JSON object", "/features")
    for fid, f in feats.items():
        validate_feature(fid, f)
    if too_deep(doc):
        raise InvalidInput(f"the document nests deeper than {MAX_DEPTH} levels", "")
    check_json(doc)
    return {"thingId": thing_id, "attributes": attrs, "features": feats}


def check_json(value: Any, pointer: str = "") -> Any:
    """Refuse what JSON or the stores cannot hold (see :data:`JSON_LIMITS`) with an
    :class:`~twinedge.errors.InvalidInput` locating it; returns ``value``."""
    try:
        textinput.check_value(value, JSON_LIMITS, pointer)
    except TextInputError as e:
        raise InvalidInput(e.message, e.pointer) from None
    return value


def check_name(s: str, what: str, pointer: str | None = None) -> str:
    """Refuse a name (group, grantee, cursor, password...) that is not a string of
    valid text without control characters."""
    if not isinstance(s, str):
        raise InvalidInput(f"{what} must be a string", pointer)
    try:
        check_text(s, what)
    except TextInputError as e:
        raise InvalidInput(e.message, pointer) from None
    bad = next((c for c in s if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise InvalidInput(f"{what} holds a control character ({bad!r})", pointer)
    return s


def validate_feature(fid: str, f: Any) -> None:
    if not isinstance(fid, str) or not FEATURE_ID_RE.fullmatch(fid):
        raise InvalidInput(
            f"feature id {fid!r} is not valid (1-256 characters, no '/', '?' or '#')",
            f"/features/{escape_token(fid)}",
        )
    if not isinstance(f, dict):
        raise InvalidInput(
            f"feature {fid!r} must be a JSON object", f"/features/{escape_token(fid)}"
        )
    extra = sorted(set(f) - {"properties", "desiredProperties"})
    if extra:
        raise InvalidInput(
            f"feature {fid!r} has unknown field {extra[0]!r}; a feature has properties and desiredProperties",
            f"/features/{escape_token(fid)}/{escape_token(extra[0])}",
        )
    for k in ("properties", "desiredProperties"):
        if k in f and not isinstance(f[k], dict):
            raise InvalidInput(
                f"features/{fid}/{k} must be a JSON object", f"/features/{escape_token(fid)}/{k}"
            )


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values that respects their types.

    ``true`` and ``1`` differ, as do ``1`` and ``1.0`` (a client that writes one and
    reads the other back has lost something, and a write that only changes a value's
    type would otherwise be acknowledged and lost); object key order does not matter.

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
