"""Who may do what: principals, credentials, grants, visibility and namespaces.

* A caller is a :class:`~twinedge.runtime.auth.Principal`: an API key of a domain (or of
  the whole service, domain ``None``), a device, or the service itself. API keys are
  stored hashed; a device authenticates with the password its owner domain set.
* A domain sees its own things, plus the things other domains *grant* it: a grant is an
  RQL filter over the grantor's things, with role read or write. Credentials and the like
  are the owner domain's business only. A thing that is not visible is indistinguishable
  from a missing one (:class:`~twinedge.errors.NotFound`).
* The namespace of a thing id (``fleet`` in ``fleet:car-7``) belongs to one domain: the
  first thing created there claims it (in the writer, with the commit), and only the
  service admin gives it to another domain. A domain creates things in its own
  namespaces only.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable

from twinedge.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceError,
    Unauthenticated,
)
from twinedge.runtime import rql, things
from twinedge.runtime.auth import (
    Principal,
    Role,
    VerifiedPasswords,
    check_password,
    check_token_secret,
    hash_password,
    new_token,
    split_token,
)
from twinedge.runtime.core.pools import StorePools
from twinedge.runtime.core.writer import WriteQueue
from twinedge.runtime.store.base import ApiKey, Grant, GrantRole, Scope, Store

log = logging.getLogger("twinedge.service")


class Access:
    """Principals, credentials, grants and namespaces of the service.

    Parameters:
        store: where keys, credentials, grants and namespaces are kept.
        pools: the store threads.
        things: the twins in memory (read only; the writer changes them).
        queue: the writer's queue (credentials and namespaces change in exclusive steps).
        clock: unix time source.
        metrics: the service's counters.
    """

    def __init__(
        self,
        store: Store,
        pools: StorePools,
        things: dict[str, dict],
        queue: WriteQueue,
        *,
        clock: Callable[[], float],
        metrics: Counter[str],
    ):
        self.store = store
        self.pools = pools
        self.things = things
        self.queue = queue
        self.clock = clock
        self.metrics = metrics
        self.namespaces: dict[str, str] = {}  # namespace -> owner domain
        self._grants_cache: dict[str, list[tuple[Grant, rql.Node]]] = {}
        self.verified = VerifiedPasswords()  # device logins scrypt accepted

    async def load(self) -> None:
        """Read the namespaces from the store; a namespace of things stored before
        namespaces were claimed is claimed for its things' domain (the first one met)."""
        stored = await self.queue.on_writer(self.store.namespaces)
        self.namespaces.clear()
        self.namespaces.update(stored)
        for tid, d in self.things.items():  # things stored before namespaces were claimed
            ns = tid.split(":", 1)[0]
            owner = self.namespaces.setdefault(ns, d["_domain"])
            if owner != d["_domain"]:
                log.warning(
                    "thing %s of domain %s lies in namespace %s of domain %s; "
                    "it stays, but new things there belong to %s",
                    tid, d["_domain"], ns, owner, owner,
                )  # fmt: skip
        now = self.clock()
        claims = [(ns, d, now) for ns, d in self.namespaces.items() if ns not in stored]
        if claims:
            await self.queue.on_writer(self.store.commit, [], claims)

    # ------------------------------------------------------------------ principals
    async def authenticate(self, token: str | None) -> Principal:
        """The principal of an API token.

        Raises:
            Unauthenticated: the token is missing, unknown or revoked.
        """
        if not token:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <token>'")
        parts = split_token(token)
        key = await self.pools.read(self.store.get_api_key, parts[0]) if parts else None
        if parts is None or key is None or not check_token_secret(parts[1], key.secret_hash):
            raise Unauthenticated("unknown or revoked API key")
        return Principal(key.key_id, key.domain or None, key.role, "key")

    async def create_api_key(
        self, principal: Principal, domain: str | None, role: Role, key_id: str | None = None
    ) -> str:
        """Create an API key; returns the token (shown once, stored hashed). A domain admin
        creates keys of its own domain; the service admin of any domain.

        Raises:
            Forbidden: the caller is no admin, or a domain admin asks for another domain.
            InvalidInput: the role, domain or key id is not valid.
        """
        self.require(principal, "admin")
        if principal.domain is not None and domain != principal.domain:
            raise Forbidden(
                f"a domain admin of {principal.domain!r} can only create keys for that domain"
            )
        if role not in ("read", "write", "admin"):
            raise InvalidInput(f"role must be read, write or admin, got {role!r}", "/role")
        if domain:
            things.check_domain(domain)
        if key_id is not None:
            things.check_name(key_id, "a key id", "/keyId")
        key_id = key_id or uuid.uuid4().hex[:12]
        token, digest = new_token(key_id)
        await self.pools.read(
            self.store.put_api_key, ApiKey(key_id, digest, domain or "", role, self.clock())
        )
        return token

    async def ensure_admin_key(self) -> str | None:
        """Create the service admin key on first start; returns its token, or None if it
        exists already."""
        if await self.pools.read(self.store.get_api_key, "admin") is not None:
            return None
        token, digest = new_token("admin")
        await self.pools.read(
            self.store.put_api_key, ApiKey("admin", digest, "", "admin", self.clock())
        )
        return token

    def require(self, p: Principal, role: Role) -> None:
        """Refuse a principal whose role is below ``role``.

        Raises:
            Forbidden: ``p`` lacks ``role``.
        """
        if not p.can(role):
            raise Forbidden(f"this needs role {role!r}; the key {p.id!r} has role {p.role!r}")

    # ------------------------------------------------------------------ devices
    async def set_device_secret(self, principal: Principal, thing_id: str, password: str) -> None:
        """Give the device of ``thing_id`` its MQTT password (username = thing id).

        Raises:
            NotFound: the thing does not exist or is not the caller's domain's.
            InvalidInput: the password is shorter than 8 characters or not valid text.
        """
        await self.get_visible(principal, thing_id, "admin")
        if not isinstance(password, str) or len(password) < 8:
            raise InvalidInput("a device password must have at least 8 characters", "/password")
        things.check_name(password, "the password", "/password")
        digest = await self.pools.read(hash_password, password)

        async def run() -> None:
            # alone in the writer, on the current incarnation: a thing deleted meanwhile
            # takes no credentials into its next life
            doc = self.things.get(thing_id)
            if doc is None or not self.visible(principal, doc, "admin"):
                raise NotFound(
                    f"thing {thing_id} does not exist or is not visible to key {principal.id!r}"
                )
            await self.queue.on_writer(self.store.put_device_secret, thing_id, digest)

        await self.queue.exclusive(principal, thing_id, run)

    async def authenticate_device(self, thing_id: str, password: str | None) -> bool:
        """Whether ``password`` is the device password of the existing thing ``thing_id``."""
        if not password or thing_id not in self.things:
            return False
        stored = await self.pools.read(self.store.get_device_secret, thing_id)
        if stored is None:
            return False
        if self.verified.known(password, stored):  # accepted before: an HMAC, not a scrypt
            return True
        if not await self.pools.read(check_password, password, stored):
            return False
        self.verified.remember(password, stored)
        return True

    # ------------------------------------------------------------------ grants
    async def grant(
        self, principal: Principal, grantee: str, filter: str, role: GrantRole
    ) -> Grant:
        """Let domain ``grantee`` read (or write, or only take private aggregates over) the
        caller's things that match ``filter``.

        Raises:
            Forbidden: the caller is no admin.
            InvalidInput: the grantee, the filter or the role is not valid, or the caller
                is the service admin (which has no domain to grant from).
        """
        self.require(principal, "admin")
        things.check_domain(grantee, "/grantee")
        if principal.domain is None:
            raise InvalidInput(
                "the service admin has no domain to grant from; use a domain admin key"
            )
        rql.parse(filter)
        g = Grant(principal.domain, grantee, filter, role)
        await self.pools.read(self.store.put_grant, g)
        # reload now, so open event streams of the grantee see the granted things at once
        self._grants_cache.pop(grantee, None)
        await self.grants(grantee)
        return g

    async def list_grants(self, principal: Principal) -> list[Grant]:
        """The grants the caller's domain gives (every grant, for the service admin).

        Raises:
            Forbidden: the caller is no admin.
        """
        self.require(principal, "admin")
        return await self.pools.read(self.store.grants_from, principal.domain)

    async def revoke(self, principal: Principal, grantee: str, filter: str) -> Grant:
        """Take back the grant the caller's domain gave ``grantee`` with ``filter``; the
        grantee's reads, streams and aggregates stop seeing those things at once.

        Raises:
            Forbidden: the caller is no admin.
            InvalidInput: the caller is the service admin (it gives no grants).
            NotFound: the caller's domain gives no such grant.
        """
        self.require(principal, "admin")
        if principal.domain is None:
            raise InvalidInput("the service admin gives no grants; use a domain admin key")
        given = await self.pools.read(self.store.grants_from, principal.domain)
        g = next((g for g in given if (g.grantee, g.filter) == (grantee, filter)), None)
        if g is None:
            raise NotFound(f"domain {principal.domain!r} gives {grantee!r} no grant {filter!r}")
        await self.pools.read(self.store.delete_grant, g)
        self._grants_cache.pop(grantee, None)
        await self.grants(grantee)
        return g

    async def grants(self, domain: str) -> list[tuple[Grant, rql.Node]]:
        """The grants to ``domain`` with their parsed filters (cached)."""
        if domain not in self._grants_cache:
            gs = await self.pools.read(self.store.grants_for, domain)
            self._grants_cache[domain] = [(g, rql.parse(g.filter)) for g in gs]
        return self._grants_cache[domain]

    def visible(self, p: Principal, doc: dict, role: Role = "read") -> bool:
        """Whether ``p`` may use ``doc`` with ``role``, judged on the grants cached for its
        domain (call :meth:`grants` first where they may not be loaded yet)."""
        if p.domain is None or doc.get("_domain") == p.domain:
            return True
        if role == "admin":  # credentials and the like: the owner domain's business only
            return False
        return any(
            g.grantor == doc.get("_domain")
            and g.role != "aggregate"  # private aggregates only, never a value
            and (role == "read" or g.role == "write")
            and rql.evaluate(node, doc)
            for g, node in self._grants_cache.get(p.domain, ())
        )

    async def scope(self, p: Principal, *, aggregates: bool = False) -> Scope:
        """What ``p`` may see, for the store's queries; with ``aggregates``, also what its
        domain may only take private aggregates over (grants with role aggregate)."""
        if p.domain is None:
            return Scope(None)
        gs = await self.grants(p.domain)
        return Scope((p.domain,), tuple(g for g, _ in gs if aggregates or g.role != "aggregate"))

    async def get_visible(self, p: Principal, thing_id: str, role: Role = "read") -> dict:
        """The current document of ``thing_id`` if ``p`` may use it with ``role``.

        Raises:
            Forbidden: ``p`` lacks ``role``.
            InvalidInput: the thing id is not valid.
            NotFound: the thing does not exist or is not visible to ``p``.
        """
        self.require(p, role)
        things.check_thing_id(thing_id)
        if p.domain is not None:
            await self.grants(p.domain)
        doc = self.things.get(thing_id)
        if doc is None or not self.visible(p, doc, role):
            if doc is not None:
                self.metrics["access_denied_total"] += 1
                log.warning(
                    "refused %s access to %s (domain %s) for key %s of domain %s",
                    role,
                    thing_id,
                    doc.get("_domain"),
                    p.id,
                    p.domain,
                )
            # a thing of another domain is indistinguishable from a missing one
            raise NotFound(f"thing {thing_id} does not exist or is not visible to key {p.id!r}")
        return doc

    # ------------------------------------------------------------------ namespaces
    def namespace_owner(
        self, thing_id: str, claims: dict[str, str] | None = None
    ) -> tuple[str, str | None]:
        """``(namespace, owner domain or None)`` of ``thing_id``, counting the ``claims`` of
        the batch being applied."""
        ns = thing_id.split(":", 1)[0]
        return ns, (claims or {}).get(ns) or self.namespaces.get(ns)

    def foreign_namespace(self, p: Principal, ns: str, owner: str) -> ServiceError:
        """The refusal of a creation by ``p`` in namespace ``ns`` of domain ``owner``."""
        if p.domain is None:
            return Conflict(
                f"namespace {ns!r} belongs to domain {owner!r}; create the thing there, or "
                f"assign the namespace with PUT /api/2/namespaces/{ns}",
                pointer="/_domain",
            )
        return Forbidden(
            f"namespace {ns!r} belongs to another domain; a domain creates things only in "
            f"its own namespaces (the service admin assigns them)",
            pointer="/thingId",
        )

    async def list_namespaces(self, p: Principal) -> list[dict[str, str]]:
        """The namespaces of the caller's domain (every one, for the service admin).

        Raises:
            Forbidden: ``p`` cannot read.
        """
        self.require(p, "read")
        return [
            {"namespace": ns, "domain": d}
            for ns, d in sorted(self.namespaces.items())
            if p.domain is None or d == p.domain
        ]

    async def assign_namespace(self, p: Principal, ns: str, domain: str) -> dict[str, str]:
        """The service admin gives namespace ``ns`` to ``domain`` (things already in it
        keep their owner; new ones belong to ``domain``).

        Raises:
            Forbidden: the caller is not the service admin.
            InvalidInput: the namespace or the domain is not valid.
        """
        self.require(p, "admin")
        if p.domain is not None:
            raise Forbidden("only the service admin assigns namespaces to domains")
        if not things.NAMESPACE_RE.fullmatch(ns or ""):
            raise InvalidInput(f"namespace {ns!r} is not valid", "/namespace")
        things.check_domain(domain)

        async def run() -> dict[str, str]:
            await self.queue.on_writer(self.store.put_namespace, ns, domain, self.clock())
            self.namespaces[ns] = domain
            return {"namespace": ns, "domain": domain}

        return await self.queue.exclusive(p, ns, run)
