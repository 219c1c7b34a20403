"""Private aggregates across domains (``/api/2/privacy``): the budgets an owner domain
gives its consumers, and differentially private counts, sums, means and histograms.

A release spends (ε, δ) from the budget the owner gives the caller's domain; one it does
not cover is a ``403`` problem (``error`` ``twinedge:privacy.budget.exhausted``) naming
the remaining ε and δ (``remainingEpsilon``, ``remainingDelta``): the budget does not
come back by waiting, so it is no ``429``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from twinedge.runtime.api.common import Caller, Service, parse_model, read_json
from twinedge.runtime.api.models import COMMON_RESPONSES, problem_responses, request_body

router = APIRouter(
    prefix="/api/2/privacy", responses={**COMMON_RESPONSES, **problem_responses(415)}
)


class BudgetIn(BaseModel):
    """The budget a consumer domain gets: ε (0..10⁶) and δ (0..1, default 0)."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(examples=[2.0])
    delta: float = Field(0.0, examples=[1e-6])


class PrivateAggregateIn(BaseModel):
    """A private aggregate over the twins of ``owner`` the caller sees."""

    model_config = ConfigDict(extra="forbid")
    owner: str = Field(examples=["fleet"])
    fn: Literal["count", "sum", "mean", "histogram"] | str = Field(examples=["sum"])
    epsilon: float | None = Field(examples=[0.5])
    mechanism: str = Field("laplace", examples=["laplace", "gaussian"])
    delta: float | None = Field(None, examples=[1e-6])
    field: str | None = Field(None, examples=["features/battery/properties/level"])
    filter: str | None = Field(None, examples=['eq(attributes/kind,"car")'])
    lower: float | None = Field(None, examples=[0])
    upper: float | None = Field(None, examples=[100])
    edges: list[float] | None = Field(None, examples=[[0, 25, 50, 75, 100]])


Consumer = Path(description="the consumer domain", examples=["city"])


@router.put(
    "/budgets/{consumer}", operation_id="putPrivacyBudget", openapi_extra=request_body(BudgetIn)
)
async def put_budget(
    request: Request, p: Caller, service: Service, consumer: str = Consumer
) -> dict[str, Any]:
    """Set the budget the caller's domain gives ``consumer`` (domain admin); what it has
    spent stays."""
    body = parse_model(BudgetIn, await read_json(request))
    return await service.privacy.put_budget(p, consumer, body.epsilon, body.delta)


@router.get("/budgets", operation_id="listPrivacyBudgets")
async def list_budgets(p: Caller, service: Service) -> dict[str, Any]:
    """The budgets the caller's domain gives, with what each consumer spent (domain admin)."""
    return {"items": await service.privacy.list_budgets(p)}


@router.delete("/budgets/{consumer}", operation_id="deletePrivacyBudget", status_code=204)
async def delete_budget(p: Caller, service: Service, consumer: str = Consumer) -> Response:
    """Take the budget back (domain admin)."""
    await service.privacy.delete_budget(p, consumer)
    return Response(status_code=204)


@router.get("/budget", operation_id="getMyPrivacyBudget")
async def my_budget(
    p: Caller,
    service: Service,
    owner: str = Query(description="the owner domain", examples=["fleet"]),
) -> dict[str, Any]:
    """The budget ``owner`` gives the caller's domain, and what remains of it."""
    return await service.privacy.my_budget(p, owner)


@router.post(
    "/aggregate",
    operation_id="privateAggregate",
    openapi_extra=request_body(PrivateAggregateIn),
)
async def private_aggregate(request: Request, p: Caller, service: Service) -> dict[str, Any]:
    """A differentially private count, sum, mean or histogram of another domain's twins;
    spends (ε, δ) from the budget that domain gives the caller's."""
    b = parse_model(PrivateAggregateIn, await read_json(request))
    return await service.privacy.release(
        p,
        owner=b.owner,
        fn=b.fn,
        epsilon=b.epsilon,
        mechanism=b.mechanism,
        delta=b.delta,
        field=b.field,
        filter=b.filter,
        lower=b.lower,
        upper=b.upper,
        edges=b.edges,
    )


class SecureSumIn(BaseModel):
    """A sum under Paillier encryption: the requester's public modulus, the contributor
    domains, the fixed-point digits."""

    model_config = ConfigDict(extra="forbid")
    n: str = Field(description="the public modulus, a decimal string")
    contributors: list[str] = Field(examples=[["fleet", "port"]])
    digits: int = Field(0, examples=[2])


class ShareIn(BaseModel):
    """One domain's encrypted share: a Paillier ciphertext under the sum's key."""

    model_config = ConfigDict(extra="forbid")
    ciphertext: str


SumId = Path(description="the id the sum was opened with")


@router.post(
    "/sums", operation_id="openSecureSum", status_code=201, openapi_extra=request_body(SecureSumIn)
)
async def open_sum(request: Request, p: Caller, service: Service) -> dict[str, Any]:
    """Open a cross-domain sum under the caller domain's Paillier public key."""
    b = parse_model(SecureSumIn, await read_json(request))
    return await service.secure_sums.open(p, n=b.n, contributors=b.contributors, digits=b.digits)


@router.get("/sums/{sumId}", operation_id="getSecureSum")
async def get_sum(p: Caller, service: Service, sumId: str = SumId) -> dict[str, Any]:
    """Who has contributed; for the requester, the combined ciphertext once all have."""
    return await service.secure_sums.get(p, sumId)


@router.put(
    "/sums/{sumId}/share", operation_id="putSecureSumShare", openapi_extra=request_body(ShareIn)
)
async def put_share(
    request: Request, p: Caller, service: Service, sumId: str = SumId
) -> dict[str, Any]:
    """The caller domain's encrypted share (once)."""
    b = parse_model(ShareIn, await read_json(request))
    return await service.secure_sums.contribute(p, sumId, b.ciphertext)
