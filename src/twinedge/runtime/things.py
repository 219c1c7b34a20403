"""The twin document (Eclipse Ditto's layout) and the pure functions on it.

A thing is::

    {"thingId": "fleet:car-7",
     "attributes": {...},                       # static-ish metadata
     "features": {"battery": {"properties": {...},          # reported by the device
                              "desiredProperties": {...}}}, # what the application wants
     "_revision": 3, "_created": "...", "_modified": "...",  # kept by the service
     "_domain": "fleet-op", "_host": "edge-7"}                # owner domain; orchestrated host

and, as in Ditto, optionally ``"policyId": "fleet:car-policy"`` (a namespaced id; stored
and returned, access is decided by domains and grants), ``"definition":
"org.example:car:1.0"`` (a ``namespace:name:version`` identifier, an http(s) URL, or
null) and per feature ``"definition": ["org.example:battery:2.1"]`` (a non-empty list of
such identifiers).

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
import json
import re
from typing import Any

from twinedge import textinput
from twinedge.errors import InvalidInput
from twinedge.jsonmerge import merge_patch as merge_patch  # one of the document's functions
from twinedge.textinput import TextInputError, check_text

# no '+', '#' or '/' in a name: a thing id is also an MQTT topic level (always fullmatch)
THING_ID_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*:[A-Za-z0-9_.:@&=,$%!*'()~-]+")
FEATURE_ID_RE = re.compile(r"[A-Za-z0-9_.:@&=+,$!*'()~-]{1,256}")
NAMESPACE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
DOMAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Ditto's definition identifier: namespace:name:version (or an http(s) URL)
DEFINITION_RE = re.compile(r"[_a-zA-Z0-9.-]+:[_a-zA-Z0-9.-]+:[_a-zA-Z0-9.-]+")
DEFINITION_URL_RE = re.compile(r"https?://[^\s/?#]+[^\s]*")
MAX_DEFINITION_CHARS = 1024
META_FIELDS = ("_revision", "_created", "_modified", "_domain", "_host")
DOCUMENT_FIELDS = ("policyId", "definition", "attributes", "features")
TOP_FIELDS = {"thingId", *DOCUMENT_FIELDS, *META_FIELDS}
FEATURE_FIELDS = ("definition", "properties", "desiredProperties")
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


def check_policy_id(policy_id: Any, pointer: str = "/policyId") -> str:
    """A policy id as Ditto writes it: a namespaced id ``namespace:name`` (the same rule
    as a thing id). twinedge stores it and returns it; it decides nothing (see
    docs/api.md, "Where twinedge and Ditto differ").

    Examples:
        >>> check_policy_id("fleet:car-policy")
        'fleet:car-policy'
    """
    if (
        not isinstance(policy_id, str)
        or not THING_ID_RE.fullmatch(policy_id)
        or len(policy_id) > 256
    ):
        raise InvalidInput(
            f"policyId {_show(policy_id)} is not valid: expected a string 'namespace:name' "
            "(namespace: letters, digits, '_', '.', '-'; at most 256 characters)",
            pointer,
            error="policies:id.invalid",
        )
    return policy_id


def _is_definition(v: Any) -> bool:
    return (
        isinstance(v, str)
        and len(v) <= MAX_DEFINITION_CHARS
        and bool(DEFINITION_RE.fullmatch(v) or DEFINITION_URL_RE.fullmatch(v))
    )


def check_definition(definition: Any, pointer: str = "/definition") -> Any:
    """A thing's definition: ``namespace:name:version`` (e.g. ``org.example:car:1.0``),
    an http(s) URL, or null.

    Examples:
        >>> check_definition("org.example:car:1.0"), check_definition(None)
        ('org.example:car:1.0', None)
        >>> check_definition("car")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        twinedge.errors.InvalidInput: definition "car" is not valid: ...
    """
    if definition is None or _is_definition(definition):
        return definition
    raise InvalidInput(
        f"definition {_show(definition)} is not valid: expected 'namespace:name:version' "
        "(each part letters, digits, '_', '.', '-'), an http(s) URL, or null",
        pointer,
        error="things:definition.identifier.invalid",
    )


def check_feature_definition(definition: Any, pointer: str) -> list[str]:
    """A feature's definition: a non-empty list of identifiers as for
    :func:`check_definition` (never null).

    Examples:
        >>> check_feature_definition(["org.example:battery:2.1"], "/features/b/definition")
        ['org.example:battery:2.1']
    """
    if not isinstance(definition, list) or not definition:
        raise InvalidInput(
            f"a feature definition must be a non-empty JSON array of 'namespace:name:version' "
            f"identifiers, got {_show(definition)}",
            pointer,
            error="things:feature.definition.empty"
            if definition == []
            else "things:feature.definition.identifier.invalid",
        )
    for i, d in enumerate(definition):
        if not _is_definition(d):
            raise InvalidInput(
                f"feature definition identifier {_show(d)} is not valid: expected "
                "'namespace:name:version' (each part letters, digits, '_', '.', '-') or an "
                "http(s) URL",
                f"{pointer}/{i}",
                error="things:feature.definition.identifier.invalid",
            )
    return definition


def _show(v: Any, n: int = 60) -> str:
    """``v`` as JSON, shortened, for a message."""
    try:
        text = json.dumps(v, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= n else text[: n - 3] + "..."


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


# merge_patch (RFC 7396) lives in twinedge.jsonmerge, shared with the orchestrator


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
            if k not in old:
                ops.append({"op": "add", "path": f"{path}/{escape_token(k)}", "value": v})
                continue
            o = old[k]
            if o is v:
                continue  # shared, unchanged
            if isinstance(o, dict) and isinstance(v, dict):  # compared key by key below
                ops.extend(json_patch(o, v, f"{path}/{escape_token(k)}"))
            elif not json_equal(o, v):
                ops.append({"op": "replace", "path": f"{path}/{escape_token(k)}", "value": v})
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


def validate_thing(doc: Any, thing_id: str, *, values_checked: bool = False) -> dict:
    """Check a thing body (as sent by a client) and return it without service fields.

    ``thingId`` in the body, when present, must match the URL. ``values_checked``: every
    value of ``doc`` passed :func:`check_json` already (it is not walked again).
    """
    if not isinstance(doc, dict):
        raise InvalidInput(f"a thing must be a JSON object, got {type(doc).__name__}", "")
    extra = sorted(set(doc) - TOP_FIELDS)
    if extra:
        raise InvalidInput(
            f"unknown top-level field {extra[0]!r}; a thing has thingId, policyId, "
            "definition, attributes and features",
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
    if not values_checked:
        check_json(doc)
    out: dict[str, Any] = {"thingId": thing_id}
    if "policyId" in doc:
        out["policyId"] = check_policy_id(doc["policyId"])
    if "definition" in doc:
        out["definition"] = check_definition(doc["definition"])
    out["attributes"] = attrs
    out["features"] = feats
    return out


def validate_patched(
    doc: dict, patch: dict, thing_id: str, *, values_checked: bool = False
) -> dict:
    """:func:`validate_thing` of ``doc = merge_patch(old, patch)`` where ``old`` is a
    valid thing (its content as :func:`validate_thing` returned it): only what ``patch``
    touches is checked (its top-level members; of ``features``, the features it names), so
    a small patch of a large twin costs what the patch costs.

    The result, and the first error and its pointer, are those of
    ``validate_thing(doc, thing_id)``: every rule is local to the member or feature it is
    about (types, ids, definitions, values, the depth of a subtree at its own depth), the
    members and features the patch does not touch are those of ``old``, which passed,
    and the parts checked keep their order in ``doc``.

    Parameters:
        doc: the patched content (no service fields).
        patch: the JSON merge patch (an object) that made it.
        thing_id: the thing's id.
        values_checked: every value of ``patch`` passed :func:`check_json` already (so
            every value the check would walk did).

    Raises:
        InvalidInput: as :func:`validate_thing`.

    Examples:
        >>> old = {"thingId": "a:b", "attributes": {"n": 1}, "features": {}}
        >>> p = {"features": {"f": {"properties": {"on": True}}}}
        >>> validate_patched(merge_patch(old, p), p, "a:b")["features"]
        {'f': {'properties': {'on': True}}}
        >>> validate_patched(merge_patch(old, {"features": {"f": 1}}), {"features": {"f": 1}}, "a:b")
        Traceback (most recent call last):
        ...
        twinedge.errors.InvalidInput: feature 'f' must be a JSON object
    """
    touched: dict[str, Any] = {}
    for k, v in doc.items():
        if k in patch:
            sub = patch[k]
            if k == "features" and isinstance(v, dict) and isinstance(sub, dict):
                v = {fid: f for fid, f in v.items() if fid in sub}
            touched[k] = v
    validate_thing(touched, thing_id, values_checked=values_checked)
    out: dict[str, Any] = {"thingId": thing_id}
    if "policyId" in doc:
        out["policyId"] = doc["policyId"]
    if "definition" in doc:
        out["definition"] = doc["definition"]
    out["attributes"] = doc.get("attributes", {})
    out["features"] = doc.get("features", {})
    return out


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
    extra = sorted(set(f) - set(FEATURE_FIELDS))
    if extra:
        raise InvalidInput(
            f"feature {fid!r} has unknown field {extra[0]!r}; a feature has definition, "
            "properties and desiredProperties",
            f"/features/{escape_token(fid)}/{escape_token(extra[0])}",
        )
    if "definition" in f:
        check_feature_definition(f["definition"], f"/features/{escape_token(fid)}/definition")
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


# --- field selectors (Ditto's ``fields`` syntax) ---------------------------------------

MAX_FIELDS_CHARS = 4000
WILDCARD = "*"


def parse_fields(text: str, pointer: str = "/fields") -> list[tuple[str, ...]]:
    """A field selector as Ditto writes it -> the paths it selects.

    Comma-separated JSON pointers (``/`` between keys, ``~1`` for a ``/`` in a key); a
    pointer followed by ``(...)`` selects the listed sub-paths below it, at any depth:
    ``attributes(model,location/lat),features/battery(properties/level)``. ``*`` as the
    feature id (``features/*/properties/on``) selects that path in every feature.

    Raises:
        InvalidInput: unbalanced parentheses, an empty path or sub-selector, or a
            selector longer than :data:`MAX_FIELDS_CHARS` (with ``error``
            ``json.fieldselector.invalid`` as Ditto names it).

    Examples:
        >>> parse_fields("thingId,attributes(model,location/lat)")
        [('thingId',), ('attributes', 'model'), ('attributes', 'location', 'lat')]
        >>> parse_fields("features/*/properties(on)")
        [('features', '*', 'properties', 'on')]
    """

    def fail(why: str) -> InvalidInput:
        shown = text if len(text) <= 80 else text[:77] + "..."
        return InvalidInput(
            f"fields {shown!r}: {why}; write comma-separated paths such as "
            "thingId,attributes(model,location),features/battery/properties",
            pointer,
            error="json.fieldselector.invalid",
        )

    if not isinstance(text, str):
        raise fail("not a string")
    if len(text) > MAX_FIELDS_CHARS:
        raise fail(f"longer than {MAX_FIELDS_CHARS} characters")
    pos = 0

    def selector(prefix: tuple[str, ...], depth: int) -> list[tuple[str, ...]]:
        nonlocal pos
        if depth > MAX_DEPTH:
            raise fail(f"parentheses nest deeper than {MAX_DEPTH} levels")
        out: list[tuple[str, ...]] = []
        while True:
            start = pos
            while pos < len(text) and text[pos] not in ",()":
                pos += 1
            raw = text[start:pos].strip()
            body = raw[1:] if raw.startswith("/") else raw
            body = body.rstrip("/")
            if not body:
                raise fail(f"empty path at character {start + 1}")
            tokens = [unescape_token(t) for t in body.split("/")]
            if any(not t for t in tokens):
                raise fail(f"empty key in {raw!r} ('//')")
            path = (*prefix, *tokens)
            if pos < len(text) and text[pos] == "(":
                pos += 1
                out += selector(path, depth + 1)
                if pos >= len(text) or text[pos] != ")":
                    raise fail(f"'(' at character {start + len(raw) + 1} is not closed")
                pos += 1
            else:
                out.append(path)
            if pos >= len(text) or text[pos] == ")":
                return out
            if text[pos] == "(":  # pragma: no cover - consumed above
                raise fail(f"unexpected '(' at character {pos + 1}")
            pos += 1  # ','

    paths = selector((), 0)
    if pos < len(text):
        raise fail(f"unexpected {text[pos]!r} at character {pos + 1} (unbalanced parentheses)")
    for p in paths:
        check_text_tokens(p, fail)
    return paths


def check_text_tokens(path: tuple[str, ...], fail: Any) -> None:
    for t in path:
        try:
            check_text(t, "a field")
        except TextInputError as e:
            raise fail(e.message) from None


def project(doc: Any, paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """Only the parts of ``doc`` at ``paths`` (as :func:`parse_fields` gives them), their
    nesting kept; a path that is missing is left out. ``*`` after ``features`` matches
    every feature.

    Examples:
        >>> doc = {"thingId": "a:b", "attributes": {"x": 1, "y": 2},
        ...        "features": {"f": {"properties": {"on": True, "v": 3}}}}
        >>> project(doc, [("attributes", "x"), ("features", "*", "properties", "on")])
        {'attributes': {'x': 1}, 'features': {'f': {'properties': {'on': True}}}}
    """
    out: dict[str, Any] = {}
    for path in paths:
        if len(path) >= 2 and path[0] == "features" and path[1] == WILDCARD:
            feats = doc.get("features") if isinstance(doc, dict) else None
            for fid in feats if isinstance(feats, dict) else ():
                _copy_path(doc, out, ("features", fid, *path[2:]))
        else:
            _copy_path(doc, out, path)
    return out


def _copy_path(doc: Any, out: dict[str, Any], path: tuple[str, ...]) -> None:
    try:
        value = get_path(doc, list(path))
    except KeyError:
        return
    cur = out
    for t in path[:-1]:
        nxt = cur.get(t)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[t] = nxt
        cur = nxt
    cur[path[-1]] = copy.deepcopy(value)  # a whole value holds every part selected before


def null_pointer(v: Any, at: str = "") -> str | None:
    """The JSON pointer of the first ``null`` in ``v`` (``"/"`` for ``v`` itself), or
    ``None`` when it holds none.

    Examples:
        >>> null_pointer({"a": [1, {"b": None}]})
        '/a/1/b'
        >>> null_pointer({"a": 1}) is None
        True
    """
    if v is None:
        return at or "/"
    if isinstance(v, dict):
        items: Any = ((escape_token(str(k)), x) for k, x in v.items())
    elif isinstance(v, list):
        items = ((str(i), x) for i, x in enumerate(v))
    else:
        return None
    for k, x in items:
        found = null_pointer(x, f"{at}/{k}")
        if found:
            return found
    return None


def missing_error(doc: Any, tokens: list[str]) -> str:
    """Ditto's error code for a read of ``tokens`` that found nothing: that of the first
    level missing (``things:feature.notfound`` when the feature itself is absent,
    ``things:feature.property.notfound`` when only the property is).

    Examples:
        >>> missing_error({"features": {"f": {}}}, ["features", "f", "properties", "x"])
        'things:feature.properties.notfound'
        >>> missing_error({"attributes": {}}, ["attributes", "a", "b"])
        'things:attribute.notfound'
    """
    for n in range(1, len(tokens) + 1):
        try:
            get_path(doc, tokens[:n])
        except KeyError:
            return "things:" + _level_name(tokens[:n]) + ".notfound"
    return "things:thing.notfound"


def _level_name(tokens: list[str]) -> str:
    head, n = tokens[0], len(tokens)
    if head == "features":
        if n == 1:
            return "features"
        if n == 2:
            return "feature"
        kind = tokens[2]
        if kind == "definition":
            return "feature.definition"
        if kind in ("properties", "desiredProperties"):
            return f"feature.{kind}" if n == 3 else f"feature.{kind[:-3]}y"
        return "feature"
    if head == "attributes":
        return "attributes" if n == 1 else "attribute"
    if head in ("policyId", "definition"):
        return head
    return "thing"
