"""One market period over a network view: twins buy compute from hosts.

Buyers are the twins: twin ``i`` bids for ``ceil(cpu_ghz_i / unit_cpu_ghz)`` units at a
private value per unit, by default higher for a tighter latency requirement::

    value_i = value_at_ref * latency_ref_ms / latency_req_ms_i * U(1 - value_spread, 1 + value_spread)

(or drawn from ``value_per_unit``: a fixed value or ``[min, max]`` uniform). Sellers are
the hosts: host ``h`` offers ``floor(cpu_ghz_h / unit_cpu_ghz)`` units at a private cost
per unit from its tier's price and its marginal energy::

    unit_ghz_s = unit_cpu_ghz * period_s
    cost_h = unit_ghz_s * (per_cpu_ghz_s[tier_h] + (max_w_h - idle_w_h) / cpu_ghz_h / 3.6e6 * per_kwh)
             * U(1 - cost_spread, 1 + cost_spread)

(or drawn from ``cost_per_unit``). ``(max_w - idle_w) / cpu_ghz`` is the host's power
per GHz of load in W, i.e. J per GHz*s, under the linear power model of
:func:`twinedge.world.models.server_power_w`. Every trader bids its private value (the
simulated traders are truthful); the market prices compute as one homogeneous good, it
does not decide where a twin runs (placement does).

A driver calls :func:`clear_period` once per period; ``MarketPeriod.entries`` gives the
``trade`` entries for the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from twinedge.market.bids import Bids, Clearing
from twinedge.market.ledger import trade_entries
from twinedge.market.mechanisms import Mechanism, resolve_mechanism
from twinedge.scenario.schema import TIERS, Market

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView

__all__ = ["MarketPeriod", "clear_period", "mechanism_of", "period_bids"]

_J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class MarketPeriod:
    """The bids and clearing of one period, with who owns each bid.

    Attributes:
        bids: buyers are the twins with units to buy, sellers the hosts with units to sell.
        clearing: the mechanism's outcome (``None`` when a side had no bids).
        buyer_domains, seller_domains, seller_tiers: per bid, for the ledger.
    """

    bids: Bids | None
    clearing: Clearing | None
    buyer_domains: list[str]
    seller_domains: list[str]
    seller_tiers: list[str]

    def entries(self, time_s: float, *, actor: str = "twinedge-market") -> list[dict[str, Any]]:
        """The period's ``trade`` entries (none when nothing traded)."""
        if self.bids is None or self.clearing is None:
            return []
        return trade_entries(
            self.clearing,
            self.bids,
            time_s=time_s,
            buyer_domains=self.buyer_domains,
            seller_domains=self.seller_domains,
            seller_tiers=self.seller_tiers,
            actor=actor,
        )


def _draw(spec: float | tuple[float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(spec, tuple):
        return rng.uniform(spec[0], spec[1], size=n)
    return np.full(n, float(spec))


def mechanism_of(spec: Market) -> Mechanism:
    """The mechanism a scenario's ``market:`` section names."""
    if spec.mechanism == "posted":
        return resolve_mechanism("posted", price=spec.posted_price)
    return resolve_mechanism(spec.mechanism)


def period_bids(
    view: NetworkView, rng: np.random.Generator, spec: Market | None = None
) -> MarketPeriod:
    """The bids of one period (see the module docstring), not yet cleared."""
    spec = spec or Market()
    w = view.world
    n = w.n_entities
    b_units = np.ceil(np.round(w.cpu_ghz / spec.unit_cpu_ghz, 9)).astype(np.int64)
    if spec.value_per_unit is not None:
        values = _draw(spec.value_per_unit, n, rng)
    else:
        noise = rng.uniform(1 - spec.value_spread, 1 + spec.value_spread, size=n)
        values = spec.value_at_ref * spec.latency_ref_ms / w.latency_req_ms * noise
    hosts = w.hosts
    cpu = w.node_cpu_ghz[hosts]
    s_units = np.floor(np.round(cpu / spec.unit_cpu_ghz, 9)).astype(np.int64)
    tiers = [TIERS[t] for t in w.node_tier[hosts]]
    if spec.cost_per_unit is not None:
        costs = _draw(spec.cost_per_unit, hosts.size, rng)
    else:
        unit_ghz_s = spec.unit_cpu_ghz * spec.period_s
        tier_price = np.array([spec.per_cpu_ghz_s.get(t, 0.0) for t in tiers])
        j_per_ghz_s = (w.node_max_w[hosts] - w.node_idle_w[hosts]) / np.maximum(cpu, 1e-12)
        noise = rng.uniform(1 - spec.cost_spread, 1 + spec.cost_spread, size=hosts.size)
        costs = unit_ghz_s * (tier_price + j_per_ghz_s / _J_PER_KWH * spec.per_kwh) * noise
    bsel = np.flatnonzero(b_units > 0)
    ssel = np.flatnonzero(s_units > 0)
    bdom = [w.owners[o] for o in w.entity_owner[bsel]]
    sdom = [w.domains[d] for d in w.node_domain[hosts[ssel]]]
    stier = [tiers[j] for j in ssel]
    if bsel.size == 0 or ssel.size == 0:
        return MarketPeriod(None, None, bdom, sdom, stier)
    bids = Bids(
        values[bsel],
        costs[ssel],
        buyer_units=b_units[bsel],
        seller_units=s_units[ssel],
        buyer_ids=np.asarray(w.entity_ids)[bsel].astype(str),
        seller_ids=np.asarray(w.host_ids)[ssel],
    )
    return MarketPeriod(bids, None, bdom, sdom, stier)


def clear_period(
    view: NetworkView,
    rng: np.random.Generator,
    spec: Market | None = None,
    mechanism: Mechanism | str | None = None,
) -> MarketPeriod:
    """Draw one period's bids from ``view`` and clear them.

    Parameters:
        view: the network view (twins' demands and latency requirements, hosts).
        rng: the one random stream (private values and costs, posted-price rationing).
        spec: the scenario's ``market:`` section (defaults: :class:`Market`).
        mechanism: overrides ``spec.mechanism`` (a name or an instance).

    Returns:
        The period's bids and clearing; ``clearing`` is ``None`` when there were no
        twins with units to buy or no hosts with units to sell.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> from twinedge.orchestrator import NetworkState, NetworkView
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> view = NetworkView(world, NetworkState.at(world, world.xy_m), step_s=1.0)
        >>> p = clear_period(view, np.random.default_rng(1))
        >>> p.clearing.mechanism, p.clearing.surplus >= 0
        ('mcafee', True)
    """
    spec = spec or Market()
    period = period_bids(view, rng, spec)
    if period.bids is None:
        return period
    mech = mechanism_of(spec) if mechanism is None else resolve_mechanism(mechanism)
    clearing = mech.clear(period.bids, rng)
    return MarketPeriod(
        period.bids, clearing, period.buyer_domains, period.seller_domains, period.seller_tiers
    )
