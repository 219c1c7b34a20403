"""Provisioning: one thing per emulated device, over the service's HTTP API.

For each entity the emulator ``PUT``s ``/api/2/things/{namespace}:{entity_id}`` with

* ``attributes``: ``kind``, ``owner``, ``entity`` (the id in the scenario), ``scenario``
  (its name), ``allowed_tiers`` and ``twin``, the demand of its twin as the scenario
  names it (``cpu_ghz``, ``mem_gb``, ``state_bytes``, ``update_bytes``, ``update_hz``,
  ``work_gcycles``, ``latency_req_ms``, ``tx_power_w``);
* ``features.position.properties``: the initial position ``{x_m, y_m, vx_mps: 0,
  vy_mps: 0, t_s: 0, seq: 0}`` (metres in the scenario frame);
* ``_domain``: the owner domain, which only the service admin key needs (a domain key
  always creates things in its own domain);

and then sets the device password with ``PUT .../credentials`` (an admin key of that
domain, or the service admin key, may). A ``PUT`` replaces a thing of the same id, so a
second run starts its twins afresh.

The first thing is made alone, so that a wrong URL or key fails at once with one
message; the others follow with a few requests in flight.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from twinedge.devices.errors import DevicesError
from twinedge.devices.motion import Entity
from twinedge.runtime.things import NAMESPACE_RE, THING_ID_RE

POSITION = "position"  # the feature every device reports (shared with the orchestrator)
MIN_PASSWORD_CHARS = 8  # the service refuses shorter device passwords


@dataclass(frozen=True)
class DeviceSpec:
    """One device to provision: its thing id, password and thing document."""

    thing_id: str
    password: str
    document: dict[str, Any]
    entity: Entity


def thing_id_of(namespace: str, entity: Entity) -> str:
    """``namespace:entity_id``, checked against the service's thing id rules.

    Raises:
        DevicesError: the namespace or the resulting id is not a valid thing id.

    Examples:
        >>> from twinedge.devices.motion import Entity
        >>> e = Entity(0, "car-0-1", "car", "fleet", {}, ("edge",), (0.0, 0.0))
        >>> thing_id_of("fleet", e)
        'fleet:car-0-1'
    """
    if not NAMESPACE_RE.fullmatch(namespace):
        raise DevicesError(
            f"--namespace: got {namespace!r}; expected letters, digits, '_', '.', '-' "
            "(starting with a letter or '_', at most 128 characters)"
        )
    tid = f"{namespace}:{entity.entity_id}"
    if not THING_ID_RE.fullmatch(tid) or len(tid) > 256:
        raise DevicesError(
            f"entity {entity.entity_id!r} cannot be a thing: {tid!r} is not a valid thing id "
            "(after the namespace: letters, digits and _.:@&=,$%!*'()~- ; at most 256 characters)"
        )
    return tid


def thing_document(entity: Entity, scenario: str, domain: str) -> dict[str, Any]:
    """The thing a device is provisioned as (see the module docstring).

    Examples:
        >>> from twinedge.devices.motion import Entity
        >>> e = Entity(0, "s-0-0", "sensor", "city", {"cpu_ghz": 0.1}, ("edge",), (1.0, 2.0))
        >>> doc = thing_document(e, "tiny", "fleet")
        >>> doc["features"]["position"]["properties"]["x_m"], doc["attributes"]["kind"]
        (1.0, 'sensor')
    """
    x_m, y_m = entity.xy_m
    return {
        "_domain": domain,
        "attributes": {
            "kind": entity.kind,
            "owner": entity.owner,
            "entity": entity.entity_id,
            "scenario": scenario,
            "allowed_tiers": list(entity.allowed_tiers),
            "twin": dict(entity.demand),
        },
        "features": {
            POSITION: {
                "properties": {
                    "x_m": x_m,
                    "y_m": y_m,
                    "vx_mps": 0.0,
                    "vy_mps": 0.0,
                    "t_s": 0.0,
                    "seq": 0,
                }
            }
        },
    }


def device_specs(
    entities: list[Entity],
    *,
    namespace: str,
    domain: str | None,
    scenario: str,
    password: str | None = None,
) -> list[DeviceSpec]:
    """The devices of ``entities``: thing ids, documents, and passwords (``password``
    for every device, or a fresh random one each).

    Raises:
        DevicesError: a thing id is invalid, two entities map to one id, or
            ``password`` is shorter than the service accepts.
    """
    if password is not None and len(password) < MIN_PASSWORD_CHARS:
        raise DevicesError(
            f"--device-password: got {len(password)} characters; expected at least "
            f"{MIN_PASSWORD_CHARS} (the service refuses shorter device passwords)"
        )
    specs, seen = [], set()
    for e in entities:
        tid = thing_id_of(namespace, e)
        if tid in seen:
            raise DevicesError(f"two entities have the id {e.entity_id!r}; thing ids must differ")
        seen.add(tid)
        specs.append(
            DeviceSpec(
                thing_id=tid,
                password=password or secrets.token_urlsafe(18),
                document=thing_document(e, scenario, domain or namespace),
                entity=e,
            )
        )
    return specs


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200].strip() or r.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return str(body)[:200]


def _refused(url: str, what: str, r: httpx.Response) -> DevicesError:
    hint = ""
    if r.status_code == 401:
        hint = (
            "; pass the service admin token (DATA_DIR/admin.token of twinedge serve) or a "
            "domain admin key with --api-key or TWINEDGE_API_KEY"
        )
    elif r.status_code == 403:
        hint = "; provisioning needs an admin key (the service admin's or a domain admin's)"
    elif r.status_code == 404 and what.startswith("creating"):
        hint = "; is --url the address of twinedge serve?"
    return DevicesError(
        f"{url}: {what} was refused with {r.status_code} {r.reason_phrase}: {_detail(r)}{hint}"
    )


class Provisioner:
    """Creates the things of devices through the HTTP API of ``twinedge serve``.

    Parameters:
        url: the service's base URL (``http://127.0.0.1:8080``).
        api_key: an admin key: the service admin token or a domain admin key.
        concurrency: requests in flight at once after the first thing.
        timeout_s: per request.

    Examples:
        >>> p = Provisioner("http://127.0.0.1:8080", "te_x_y")
        >>> p.url
        'http://127.0.0.1:8080'
    """

    def __init__(self, url: str, api_key: str, *, concurrency: int = 8, timeout_s: float = 30.0):
        if not url.startswith(("http://", "https://")):
            raise DevicesError(f"--url: got {url!r}; expected http://HOST:PORT of twinedge serve")
        if not api_key:
            raise DevicesError(
                "no API key: pass --api-key or set TWINEDGE_API_KEY (the service admin token "
                "is in DATA_DIR/admin.token of twinedge serve, ./twinedge-data by default)"
            )
        self.url, self.api_key = url.rstrip("/"), api_key
        self.concurrency, self.timeout_s = concurrency, timeout_s

    async def provision(
        self, specs: list[DeviceSpec], progress: Callable[[int], None] | None = None
    ) -> None:
        """Create (or replace) every thing and set its device password.

        Raises:
            DevicesError: the service cannot be reached or refused a request; the
                message names the URL, the thing and the service's reason.
        """
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=self.timeout_s
        ) as client:
            done = 0
            if specs:
                await self._one(client, specs[0])
                done = 1
                if progress:
                    progress(done)
            queue = list(reversed(specs[1:]))

            async def worker() -> None:
                nonlocal done
                while queue:
                    await self._one(client, queue.pop())
                    done += 1
                    if progress:
                        progress(done)

            workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
            try:
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    async def _one(self, client: httpx.AsyncClient, spec: DeviceSpec) -> None:
        path = f"/api/2/things/{quote(spec.thing_id, safe=':@')}"
        r = await self._request(client, "PUT", path, spec.document, f"PUT {path}")
        if r.status_code not in (200, 201, 204):
            raise _refused(self.url, f"creating thing {spec.thing_id}", r)
        r = await self._request(
            client,
            "PUT",
            path + "/credentials",
            {"password": spec.password},
            f"PUT {path}/credentials",
        )
        if r.status_code != 204:
            raise _refused(self.url, f"setting the device password of {spec.thing_id}", r)

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any, what: str
    ) -> httpx.Response:
        try:
            return await client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise DevicesError(
                f"{self.url}: cannot reach the twin service ({what}): "
                f"{exc or type(exc).__name__}; is twinedge serve running there (--url)?"
            ) from None
