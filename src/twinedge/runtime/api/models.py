"""Typed shapes of the API, for OpenAPI (and so for clients and fuzzers).

Thing bodies are validated by :func:`twinedge.runtime.things.validate_thing` (one rule
for HTTP and MQTT); the models here document them. The small control bodies (groups,
keys, grants, credentials) are validated with these models directly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

THING_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*:[A-Za-z0-9_.:@&=+,$%!*'()~-]+$"

# Models used only inside ``openapi_extra`` request bodies; ``create_app`` adds their
# schemas to ``components/schemas`` (FastAPI only collects models it validates itself).
REQUEST_MODELS: dict[str, type[BaseModel]] = {}


def request_body(
    model: type[BaseModel] | None,
    media_types: tuple[str, ...] = ("application/json",),
    *,
    required: bool = True,
    description: str | None = None,
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``openapi_extra`` fragment declaring a JSON request body."""
    if model is not None:
        REQUEST_MODELS[model.__name__] = model
        schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    body: dict[str, Any] = {
        "required": required,
        "content": {mt: {"schema": schema or {}} for mt in media_types},
    }
    if description:
        body["description"] = description
    return {"requestBody": body}


class Problem(BaseModel):
    """An RFC 7807 problem document (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(examples=["https://twinedge.dev/problems/bad-request"])
    title: str = Field(examples=["Bad Request"])
    status: int = Field(examples=[400])
    detail: str = Field(examples=["attributes must be a JSON object"])
    instance: str | None = None
    pointer: str | None = Field(None, description="JSON pointer into the request body")


DEFINITION_PATTERN = r"^([_a-zA-Z0-9\-.]+):([_a-zA-Z0-9\-.]+):([_a-zA-Z0-9\-.]+)$|^https?://"
DEFINITION_SCHEMA: dict[str, Any] = {
    "type": ["string", "null"],
    "description": "'namespace:name:version' or an http(s) URL (Ditto's definition)",
    "pattern": DEFINITION_PATTERN,
    "examples": ["org.example:car:1.0"],
}
FEATURE_DEFINITION_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "pattern": DEFINITION_PATTERN},
    "examples": [["org.example:battery:2.1"]],
}
POLICY_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": THING_ID_PATTERN,
    "description": "stored and returned; access is decided by domains and grants",
    "examples": ["fleet:car-policy"],
}


class Feature(BaseModel):
    """A feature: its definition, what the device reports and what the application wants."""

    model_config = ConfigDict(extra="forbid")
    definition: list[str] | None = Field(
        None, json_schema_extra={"minItems": 1}, description="'namespace:name:version' identifiers"
    )
    properties: dict[str, Any] = Field(default_factory=dict, description="reported by the device")
    desiredProperties: dict[str, Any] = Field(
        default_factory=dict, description="wanted by the application; sent to the device"
    )


class ThingIn(BaseModel):
    """A thing as a client writes it. Service fields (``_revision`` …) are ignored;
    ``_domain`` names the owner domain when the service admin creates a thing."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    thingId: str | None = Field(None, description="must equal the id in the URL if given")
    policyId: str | None = Field(
        None, description="stored and returned (access is decided by domains and grants)"
    )
    definition: str | None = Field(None, description="'namespace:name:version' or null")
    attributes: dict[str, Any] = Field(default_factory=dict)
    features: dict[str, Feature] = Field(default_factory=dict)
    domain: str | None = Field(None, alias="_domain")


class Thing(BaseModel):
    """A thing as the API returns it."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    thingId: str = Field(examples=["fleet:car-7"])
    policyId: str | None = None
    definition: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    features: dict[str, Feature] = Field(default_factory=dict)
    revision: int = Field(alias="_revision")
    created: str = Field(alias="_created", description="RFC 3339")
    modified: str = Field(alias="_modified", description="RFC 3339")
    domain: str = Field(alias="_domain")
    host: str | None = Field(None, alias="_host", description="edge host running the twin")
    inSync: bool = Field(alias="_inSync", description="every desired property was reported")


class Delta(BaseModel):
    thingId: str
    revision: int
    inSync: bool
    delta: dict[str, Any] = Field(description="feature id -> desired values not yet reported")


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    revision: int
    time: float | str
    source: str
    actor: str | None = None
    ops: list[dict[str, Any]] = Field(description="RFC 6902 patch from the previous revision")


class NamespaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: str = Field(description="the domain that will own the namespace", examples=["fleet-op"])


class NamespaceOut(BaseModel):
    namespace: str
    domain: str


class History(BaseModel):
    thingId: str
    items: list[HistoryEntry]
    cursor: str | None = Field(
        None, description="pass as ?cursor= for the next page; null after the last page"
    )


class SearchResult(BaseModel):
    items: list[dict[str, Any]]
    cursor: str | None = Field(
        None,
        description="pass back (option=cursor(...) or ?cursor=) for the next page; null at the "
        "end (absent in the answer to option=limit(offset,count))",
    )
    nextPageOffset: int | None = Field(
        None,
        description="only in the answer to option=limit(offset,count): the offset of the next "
        "page, -1 on the last",
    )


class AggregateRow(BaseModel):
    key: Any
    value: Any


class AggregateResult(BaseModel):
    groupBy: str
    fn: str
    field: str | None
    items: list[AggregateRow]


class GroupIn(BaseModel):
    """Exactly one of ``filter`` (RQL; membership follows the twins) or ``members``."""

    model_config = ConfigDict(extra="forbid")
    filter: str | None = Field(None, examples=['eq(attributes/kind,"robot")'])
    members: list[str] | None = Field(None, examples=[["fleet:car-7", "fleet:car-8"]])


class GroupSummary(BaseModel):
    name: str
    domain: str
    filter: str | None
    size: int


class GroupList(BaseModel):
    items: list[GroupSummary]


class GroupPage(GroupSummary):
    members: list[str]
    cursor: str | None


class KeyIn(BaseModel):
    """Omit ``domain`` for a key of your own domain; the service admin names one (or
    ``null`` for another service admin key)."""

    model_config = ConfigDict(extra="forbid")
    domain: str | None = Field(None, examples=["fleet-op"])
    role: Literal["read", "write", "admin"] = "read"


class KeyOut(BaseModel):
    token: str = Field(description="shown once; store it now")
    keyId: str
    domain: str | None
    role: str


class CredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=8, description="the device's MQTT password (user = thingId)")


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grantee: str = Field(description="the domain that may see your things")
    filter: str = Field(description="RQL: which of your things", examples=["exists(attributes)"])
    role: Literal["read", "write", "aggregate"] = Field(
        "read",
        description="read or write the things, or (aggregate) only take differentially "
        "private aggregates over them",
    )


class GrantOut(BaseModel):
    grantor: str
    grantee: str
    filter: str
    role: str


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "unavailable"]
    writer: bool
    store: bool


REQUEST_MODELS["Problem"] = Problem
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses (problem documents)."""
    return {
        code: {
            "description": _PROBLEM_DESCRIPTIONS.get(code, "A problem document"),
            "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
        }
        for code in codes
    }


_PROBLEM_DESCRIPTIONS = {
    400: "Bad request (the problem document says what and where)",
    401: "Missing or unknown API key",
    403: "The key's role does not allow this",
    404: "Not found (or not visible to this key's domain)",
    408: "The device did not answer in time",
    412: "A precondition (If-Match / If-None-Match) failed",
    413: "The body is too large",
    415: "The body has the wrong media type",
    503: "Not available now (no device connection, store down, shutting down)",
}
COMMON_RESPONSES = problem_responses(400, 401, 403, 404)
