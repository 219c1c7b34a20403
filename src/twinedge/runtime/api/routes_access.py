"""Access: API keys (``/api/2/keys``), grants between domains (``/api/2/grants``) and
the namespaces each domain owns (``/api/2/namespaces``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from twinedge.runtime.api.common import Caller, Service, parse_model, read_json
from twinedge.runtime.api.models import (
    COMMON_RESPONSES,
    GrantIn,
    GrantOut,
    KeyIn,
    KeyOut,
    NamespaceIn,
    NamespaceOut,
    problem_responses,
    request_body,
)
from twinedge.runtime.api.problems import problem
from twinedge.runtime.auth import split_token
from twinedge.runtime.store.base import Grant

router = APIRouter(prefix="/api/2", responses={**COMMON_RESPONSES, **problem_responses(415)})


@router.post(
    "/keys",
    operation_id="createKey",
    status_code=201,
    response_model=KeyOut,
    openapi_extra=request_body(KeyIn),
)
async def create_key(request: Request, p: Caller, service: Service) -> JSONResponse:
    """Create an API key (needs role admin). The token is shown once; only its hash is
    kept."""
    body = parse_model(KeyIn, await read_json(request))
    if "domain" in body.model_fields_set:
        domain = body.domain or None
    elif p.domain is not None:
        domain = p.domain
    else:
        raise problem(
            400,
            "name the domain of the new key (field domain); null makes another service admin key",
            pointer="/domain",
        )
    token = await service.create_api_key(p, domain, body.role)
    parts = split_token(token)
    doc: dict[str, Any] = {
        "token": token,
        "keyId": parts[0] if parts else None,
        "domain": domain,
        "role": body.role,
    }
    return JSONResponse(doc, status_code=201, headers={"Cache-Control": "no-store"})


@router.post(
    "/grants",
    operation_id="createGrant",
    status_code=201,
    response_model=GrantOut,
    openapi_extra=request_body(GrantIn),
)
async def create_grant(request: Request, p: Caller, service: Service) -> JSONResponse:
    """Let another domain read (or write, or only take private aggregates over) those of
    your things that match a filter (needs a domain key with role admin)."""
    body = parse_model(GrantIn, await read_json(request))
    g = await service.grant(p, body.grantee, body.filter, body.role)
    return JSONResponse(_grant_json(g), status_code=201)


def _grant_json(g: Grant) -> dict[str, str]:
    return {"grantor": g.grantor, "grantee": g.grantee, "filter": g.filter, "role": g.role}


@router.get("/grants", operation_id="listGrants")
async def list_grants(p: Caller, service: Service) -> dict[str, Any]:
    """The grants your domain gives (every grant, for the service admin; needs role
    admin)."""
    return {"items": [_grant_json(g) for g in await service.list_grants(p)]}


@router.delete("/grants", operation_id="revokeGrant", status_code=204)
async def revoke_grant(
    p: Caller,
    service: Service,
    grantee: str = Query(description="the domain the grant is to", examples=["city"]),
    filter: str = Query(
        description="the grant's filter, as given", examples=["exists(attributes)"]
    ),
) -> Response:
    """Take back a grant your domain gave (needs a domain key with role admin): the
    grantee's reads, event streams and private aggregates stop seeing those things at
    once; 404 when your domain gives no such grant."""
    await service.revoke(p, grantee, filter)
    return Response(status_code=204)


@router.get("/namespaces", operation_id="listNamespaces", response_model=list[NamespaceOut])
async def list_namespaces(p: Caller, service: Service) -> list[dict[str, str]]:
    """The namespaces of your domain (all of them for the service admin). A thing id
    ``ns:name`` can only be created by the domain that owns ``ns``; a domain claims a
    free namespace by creating the first thing in it."""
    return await service.list_namespaces(p)


@router.put(
    "/namespaces/{namespace}",
    operation_id="assignNamespace",
    response_model=NamespaceOut,
    openapi_extra=request_body(NamespaceIn),
)
async def assign_namespace(
    namespace: str, request: Request, p: Caller, service: Service
) -> dict[str, str]:
    """Give a namespace to a domain (the service admin only). Things already in it keep
    their owner; things created from now on belong to the new owner."""
    body = parse_model(NamespaceIn, await read_json(request))
    return await service.assign_namespace(p, namespace, body.domain)
