"""Settlement: every domain's bill, re-derived from the logs alone with exact arithmetic.

Bill model (docs/ledger.md has the entry bodies it reads):

* compute — a twin's owner pays the host's domain ``cpu_ghz * seconds`` at the host
  tier's ``per_cpu_ghz_s`` and ``mem_gb * seconds`` at its ``per_mem_gb_s``, for every
  interval the twin ran there: from a ``placement`` (or the ``migration`` that moved
  it in) to the ``migration`` that moved it out, or to the run end (a ``policy``
  entry with ``body.event == "end"``, or ``until``);
* migration — the owner pays the destination domain ``bytes / 1e9`` GB at the
  destination tier's ``per_migrated_gb``;
* market — for every ``trade`` (a cleared market trade, :mod:`twinedge.market`) the
  buyer's domain pays the seller's domain ``units * seller_price``, and, when
  ``buyer_price > seller_price``, the ``operator`` ``units * (buyer_price -
  seller_price)`` (the market's budget surplus); prices come from the entry, not the
  price table, and lines are kept apart per unit price;
* a line whose payer is also its payee (a domain hosting its own twins) is listed
  but counts in neither ``owes`` nor ``earns``;
* energy — a host's domain pays ``energy_j / 3.6e6`` kWh at the host tier's
  ``per_kwh`` to the grid (an operator cost; ``usage`` entries, pro-rated if the
  interval ends after the run end).

All arithmetic is :mod:`decimal` on the numbers exactly as written in the canonical
JSON (parsed with ``parse_float=Decimal``), quantities are summed exactly per
(payer, payee, kind, tier), and each line's amount is rounded once, half-even, to an
integer number of micro-units of the currency.  Anyone holding the same logs and
price table therefore derives the same totals, to the micro-unit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

from twinedge import textinput
from twinedge.errors import LedgerError
from twinedge.ledger.entry import canonical_json
from twinedge.ledger.ledgerdir import LedgerDir
from twinedge.textinput import TextInputError

__all__ = ["Bills", "DomainBill", "LineItem", "PriceTable", "TierPrices", "settle"]

GRID = "(grid)"
#: The default market operator of ``trade`` entries (a party without a log, like GRID).
MARKET = "(market)"
_MICRO = Decimal(1_000_000)
_J_PER_KWH = Decimal(3_600_000)
_BYTES_PER_GB = Decimal(1_000_000_000)
_CTX = Context(prec=80, rounding=ROUND_HALF_EVEN)
_PRICE_FIELDS = ("per_cpu_ghz_s", "per_mem_gb_s", "per_migrated_gb", "per_kwh")
#: Largest price table file read, in bytes.
MAX_PRICE_TABLE_BYTES = 1 << 20
#: Most YAML nodes the aliases of a price table may add to it when expanded.
MAX_YAML_NODES = 10_000
#: What a price table may hold (the rules of :mod:`twinedge.textinput`): integers of at
#: most 19 digits, finite numbers (JSON fractions read exactly, as decimals), valid text
#: without NUL, at most 64 levels deep, aliases adding at most MAX_YAML_NODES nodes.
PRICE_LIMITS = textinput.Limits(
    max_depth=64,
    max_int_digits=19,
    max_alias_nodes=MAX_YAML_NODES,
    json_only=False,
    parse_float=Decimal,
)
#: Prices are below 10**12 currency units and have at most 18 decimal places.
_MAX_PRICE_DIGITS = 12
_MAX_PRICE_PLACES = 18
_MAX_NAME = 64
_UNITS = {
    "cpu": "GHz*s",
    "memory": "GB*s",
    "migration": "GB",
    "energy": "kWh",
    "market": "unit",
    "market_surplus": "unit",
}


def _show(value: Any) -> str:
    """A short, printable description of a value for an error message."""
    if isinstance(value, str):
        text = repr(value[:40]) + ("..." if len(value) > 40 else "")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        text = f"an integer of {len(str(abs(value)))} digits"
    elif isinstance(value, Mapping | list | tuple | set):
        text = f"a {type(value).__name__} of {len(value)} items"
    else:
        text = repr(value)[:60]
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _name(value: Any, where: str) -> str:
    """A currency or tier name: printable text of at most 64 characters."""
    if (
        not isinstance(value, str | int)
        or isinstance(value, bool)
        or not str(value)
        or len(str(value)) > _MAX_NAME
        or not str(value).isprintable()
    ):
        raise LedgerError(
            f"{where} must be printable text of 1 to {_MAX_NAME} characters, got {_show(value)}"
        )
    return str(value)


def _dec(value: Any, where: str) -> Decimal:
    if isinstance(value, bool):
        raise LedgerError(f"{where} must be a number, got {_show(value)}")
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, int | str | Decimal):
        try:
            d = Decimal(value)
        except InvalidOperation:
            d = Decimal("NaN")
        if d.is_finite():
            return d
    raise LedgerError(f"{where} must be a finite number, got {_show(value)}")


@dataclass(frozen=True)
class TierPrices:
    """Prices of one tier, in currency units per unit named in the field."""

    per_cpu_ghz_s: Decimal
    per_mem_gb_s: Decimal
    per_migrated_gb: Decimal
    per_kwh: Decimal


@dataclass(frozen=True)
class PriceTable:
    """A declarative price table: a currency and :class:`TierPrices` per tier."""

    currency: str
    tiers: dict[str, TierPrices]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "price table") -> PriceTable:
        if not isinstance(data, Mapping):
            raise LedgerError(f"{source}: must be a mapping with 'currency' and 'tiers'")
        unknown = sorted(set(data) - {"currency", "tiers"})
        if unknown:
            raise LedgerError(f"{source}: unknown field {unknown[0]!r}; use currency and tiers")
        currency = data.get("currency", "units")
        if not isinstance(currency, str):
            raise LedgerError(f"{source}: field 'currency' must be a non-empty string")
        currency = _name(currency, f"{source}: field 'currency'")
        tiers = data.get("tiers")
        if not isinstance(tiers, Mapping) or not tiers:
            raise LedgerError(
                f"{source}: field 'tiers' must map tier names (edge, region, cloud...) to "
                f"prices with {', '.join(_PRICE_FIELDS)}"
            )
        out: dict[str, TierPrices] = {}
        for tier, p in tiers.items():
            tier = _name(tier, f"{source}: a tier name")
            where = f"{source}: tiers.{tier}"
            if not isinstance(p, Mapping):
                raise LedgerError(f"{where} must be a mapping of {', '.join(_PRICE_FIELDS)}")
            extra = sorted(set(p) - set(_PRICE_FIELDS))
            if extra:
                raise LedgerError(
                    f"{where}: unknown field {extra[0]!r}; use {', '.join(_PRICE_FIELDS)}"
                )
            vals = {}
            for f in _PRICE_FIELDS:
                if f not in p:
                    raise LedgerError(f"{where}: missing field {f!r}")
                v = _dec(p[f], f"{where}.{f}")
                if v < 0:
                    raise LedgerError(f"{where}.{f} must not be negative, got {_show(str(v))}")
                if v and v.adjusted() >= _MAX_PRICE_DIGITS:
                    raise LedgerError(
                        f"{where}.{f} is {_show(str(v))}; a price must be below "
                        f"10^{_MAX_PRICE_DIGITS}"
                    )
                exponent = v.as_tuple().exponent  # an int: _dec returns finite numbers only
                if (
                    isinstance(exponent, int)
                    and exponent < -_MAX_PRICE_PLACES
                    and v != v.quantize(Decimal(1).scaleb(-_MAX_PRICE_PLACES), context=_CTX)
                ):
                    raise LedgerError(
                        f"{where}.{f} has more than {_MAX_PRICE_PLACES} decimal places"
                    )
                vals[f] = v
            out[str(tier)] = TierPrices(**vals)
        return cls(currency, out)

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read a price table from a ``.json`` or ``.yaml``/``.yml`` file."""
        path = Path(path)
        try:
            text = textinput.read_text(path, MAX_PRICE_TABLE_BYTES)
            if path.suffix.lower() == ".json":
                data = textinput.loads(text, replace(PRICE_LIMITS, json_only=True))
            else:
                data = textinput.load_yaml(text, PRICE_LIMITS)
        except OSError as exc:
            raise LedgerError(f"price table {path} cannot be read ({exc.strerror})") from exc
        except TextInputError as exc:
            where = f"{exc.where()}: " if exc.path else ""
            raise LedgerError(f"price table {path}: {where}{exc.message}") from None
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "tiers": {
                t: {f: format(getattr(p, f).normalize(), "f") for f in _PRICE_FIELDS}
                for t, p in sorted(self.tiers.items())
            },
        }

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the table, prices as decimal strings."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    def tier(self, tier: str, where: str) -> TierPrices:
        p = self.tiers.get(tier)
        if p is None:
            raise LedgerError(
                f"{where}: the price table has no tier {tier!r}; add tiers.{tier} to it"
            )
        return p


def format_micro(micro: int) -> str:
    """Micro-units as a decimal string with 6 places, e.g. 1234567 -> '1.234567'."""
    sign = "-" if micro < 0 else ""
    q, r = divmod(abs(micro), 1_000_000)
    return f"{sign}{q}.{r:06d}"


@dataclass(frozen=True)
class LineItem:
    """One aggregated charge: ``payer`` pays ``payee`` for ``quantity`` of ``kind`` at a tier."""

    kind: str
    payer: str
    payee: str
    tier: str
    quantity: Decimal
    unit_price: Decimal
    amount_micro: int

    @property
    def unit(self) -> str:
        return _UNITS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "payer": self.payer,
            "payee": self.payee,
            "tier": self.tier,
            "quantity": format(self.quantity.normalize(), "f"),
            "unit": self.unit,
            "unit_price": format(self.unit_price.normalize(), "f"),
            "amount": format_micro(self.amount_micro),
            "amount_micro": self.amount_micro,
            "internal": self.payer == self.payee,
        }


@dataclass
class DomainBill:
    """What one domain owes and earns, with the line items where it pays or is paid."""

    domain: str
    owes_micro: int = 0
    earns_micro: int = 0
    lines: list[LineItem] = field(default_factory=list)

    @property
    def net_micro(self) -> int:
        return self.earns_micro - self.owes_micro

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "owes": format_micro(self.owes_micro),
            "earns": format_micro(self.earns_micro),
            "net": format_micro(self.net_micro),
            "owes_micro": self.owes_micro,
            "earns_micro": self.earns_micro,
            "lines": [li.to_dict() for li in self.lines],
        }


@dataclass
class Bills:
    """The settlement of a ledger: per-domain bills and what they were computed from."""

    currency: str
    until: Decimal
    bills: dict[str, DomainBill]
    lines: list[LineItem]
    inputs: dict[str, dict[str, Any]]
    prices_sha256: str
    warnings: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        """SHA-256 over the log heads, price table and end time the bills derive from."""
        doc = {"inputs": self.inputs, "prices_sha256": self.prices_sha256, "until": str(self.until)}
        return hashlib.sha256(canonical_json(doc)).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "until": str(self.until),
            "inputs": self.inputs,
            "prices_sha256": self.prices_sha256,
            "digest": self.digest,
            "bills": {d: b.to_dict() for d, b in sorted(self.bills.items())},
            "warnings": list(self.warnings),
        }

    def settlement_entries(self, *, actor: str = "twinedge-settle") -> list[dict[str, Any]]:
        """One ``settlement`` entry per domain, ready for ``LedgerDir.append_many``."""
        out = []
        for d, b in sorted(self.bills.items()):
            out.append(
                {
                    "type": "settlement",
                    "domain": d,
                    "time": float(self.until),
                    "actor": actor,
                    "body": {
                        "currency": self.currency,
                        "until": str(self.until),
                        "owes": format_micro(b.owes_micro),
                        "earns": format_micro(b.earns_micro),
                        "owes_micro": b.owes_micro,
                        "earns_micro": b.earns_micro,
                        "lines": [li.to_dict() for li in b.lines],
                        "inputs": self.inputs,
                        "prices_sha256": self.prices_sha256,
                        "digest": self.digest,
                    },
                }
            )
        return out


@dataclass
class _Run:
    start: Decimal
    host: str
    tier: str
    host_domain: str
    owner: str
    cpu_ghz: Decimal
    mem_gb: Decimal


class _Reader:
    """Typed access to body fields with errors that name the entry and the field."""

    def __init__(self, domain: str, idx: int, entry: Mapping[str, Any]):
        self.where = f"domain {domain!r} entry {idx} ({entry.get('type')})"
        body = entry.get("body")
        if not isinstance(body, Mapping):
            raise LedgerError(f"{self.where}: field 'body' must be an object")
        self.body = body

    def text(self, name: str) -> str:
        v = self.body.get(name)
        if not isinstance(v, str) or not v:
            raise LedgerError(f"{self.where}: body field {name!r} must be a non-empty string")
        return v

    def num(self, name: str) -> Decimal:
        if name not in self.body:
            raise LedgerError(f"{self.where}: body field {name!r} is missing")
        v = _dec(self.body[name], f"{self.where}: body field {name!r}")
        if v < 0:
            raise LedgerError(f"{self.where}: body field {name!r} must not be negative")
        return v


def settle(
    ledger_dir: LedgerDir | str | Path,
    prices: PriceTable | str | Path,
    *,
    until: float | Decimal | str | None = None,
    sizes: Mapping[str, int] | None = None,
) -> Bills:
    """Recompute every domain's bill from the logs of ``ledger_dir``.

    ``until`` ends the run (default: the earliest ``policy`` entry with
    ``body.event == "end"``); ``sizes`` limits each domain's log to its first ``n``
    entries (default: all), e.g. to re-derive a settlement recorded earlier.
    """
    table = prices if isinstance(prices, PriceTable) else PriceTable.load(prices)
    own = not isinstance(ledger_dir, LedgerDir)
    ld = LedgerDir.open(ledger_dir) if not isinstance(ledger_dir, LedgerDir) else ledger_dir
    try:
        with localcontext(_CTX):
            return _settle(ld, table, until, sizes or {})
    finally:
        if own:
            ld.close()


def _settle(
    ld: LedgerDir,
    table: PriceTable,
    until: float | Decimal | str | None,
    sizes: Mapping[str, int],
) -> Bills:
    events: list[tuple[Decimal, int, str, int, dict[str, Any]]] = []
    usages: list[tuple[str, int, dict[str, Any]]] = []
    trades: list[tuple[str, int, dict[str, Any]]] = []
    ends: list[Decimal] = []
    inputs: dict[str, dict[str, Any]] = {}
    unknown = sorted(set(sizes) - set(ld.domains))
    if unknown:
        raise LedgerError(f"ledger dir {ld.path} has no domain {unknown[0]!r}")
    for d in ld.domains:
        log = ld.log(d)
        n = sizes.get(d, log.size)
        if not 0 <= n <= log.size:
            raise LedgerError(f"domain {d!r}: size {n} is outside 0..{log.size}")
        inputs[d] = {"origin": log.origin, "size": n, "root": log.root(n).hex()}
        for idx, data in log.iter_raw(0, n):
            e = json.loads(data, parse_float=Decimal)
            t = e.get("type")
            if t == "placement":
                events.append((_dec(e["time"], "time"), 0, d, idx, e))
            elif t == "migration":
                events.append((_dec(e["time"], "time"), 1, d, idx, e))
            elif t == "usage":
                usages.append((d, idx, e))
            elif t == "trade":
                trades.append((d, idx, e))
            elif t == "policy" and isinstance(e.get("body"), dict):
                if e["body"].get("event") == "end":
                    ends.append(_dec(e["time"], "time"))
    if until is not None:
        end = _dec(until, "until")
    elif ends:
        end = min(ends)
    else:
        raise LedgerError(
            "the logs have no run end (a policy entry with body.event 'end'); "
            "pass an end time with --until SECONDS"
        )

    qty: dict[tuple[str, str, str, str], Decimal] = {}
    warnings: list[str] = []

    def add(kind: str, payer: str, payee: str, tier: str, q: Decimal) -> None:
        if q:
            key = (kind, payer, payee, tier)
            qty[key] = qty.get(key, Decimal(0)) + q

    def close(run: _Run, t: Decimal) -> None:
        dt = t - run.start
        if dt > 0:
            add("cpu", run.owner, run.host_domain, run.tier, run.cpu_ghz * dt)
            add("memory", run.owner, run.host_domain, run.tier, run.mem_gb * dt)

    running: dict[str, _Run] = {}
    events.sort(key=lambda ev: ev[:4])
    for t, order, d, idx, e in events:
        if t > end:
            continue
        r = _Reader(d, idx, e)
        twin = r.text("twin")
        prev = running.pop(twin, None)
        if order == 0:
            if prev is not None:
                close(prev, t)
            host, tier = r.text("host"), r.text("tier")
        else:
            host, tier = r.text("to_host"), r.text("to_tier")
            if prev is None:
                warnings.append(f"{r.where}: twin {twin!r} migrates but was never placed")
            else:
                if prev.host != r.text("from_host"):
                    warnings.append(
                        f"{r.where}: twin {twin!r} migrates from {r.text('from_host')!r} but "
                        f"ran on {prev.host!r}"
                    )
                close(prev, t)
            table.tier(tier, r.where)
            add("migration", r.text("owner"), d, tier, r.num("bytes") / _BYTES_PER_GB)
        table.tier(tier, r.where)
        running[twin] = _Run(t, host, tier, d, r.text("owner"), r.num("cpu_ghz"), r.num("mem_gb"))
    for run in running.values():
        close(run, end)

    # market trades: priced by the entry, one line per (kind, payer, payee, tier, price)
    priced: dict[tuple[str, str, str, str, Decimal], Decimal] = {}

    def add_priced(kind: str, payer: str, payee: str, tier: str, q: Decimal, p: Decimal) -> None:
        if q:
            key = (kind, payer, payee, tier, p)
            priced[key] = priced.get(key, Decimal(0)) + q

    for d, idx, e in trades:
        if _dec(e["time"], "time") > end:
            continue
        r = _Reader(d, idx, e)
        units, pb, ps = r.num("units"), r.num("buyer_price"), r.num("seller_price")
        if ps > pb:
            raise LedgerError(
                f"{r.where}: seller_price {ps} exceeds buyer_price {pb}; a trade's buyer pays "
                "at least what its seller receives"
            )
        buyer, tier = r.text("buyer_domain"), r.text("tier")
        add_priced("market", buyer, r.text("seller_domain"), tier, units, ps)
        if pb > ps:
            operator = r.text("operator") if "operator" in r.body else MARKET
            add_priced("market_surplus", buyer, operator, tier, units, pb - ps)

    for d, idx, e in usages:
        r = _Reader(d, idx, e)
        t1 = _dec(e["time"], "time")
        t0 = r.num("from_time") if "from_time" in r.body else t1
        energy = r.num("energy_j")
        if t0 >= end:
            continue
        if t1 > end:
            energy = energy * (end - t0) / (t1 - t0)
        tier = r.text("tier")
        table.tier(tier, r.where)
        add("energy", d, GRID, tier, energy / _J_PER_KWH)

    bills = {d: DomainBill(d) for d in ld.domains}
    lines: list[LineItem] = []
    items: list[tuple[str, str, str, str, Decimal, Decimal]] = []
    for (kind, payer, payee, tier), q in qty.items():
        p = table.tiers[tier]
        price = {
            "cpu": p.per_cpu_ghz_s,
            "memory": p.per_mem_gb_s,
            "migration": p.per_migrated_gb,
            "energy": p.per_kwh,
        }[kind]
        items.append((kind, payer, payee, tier, price, q))
    items.extend((*key, q) for key, q in priced.items())
    for kind, payer, payee, tier, price, q in sorted(items):
        amount = int((q * price * _MICRO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        li = LineItem(kind, payer, payee, tier, q, price, amount)
        lines.append(li)
        for party in sorted({payer, payee}):
            if party not in bills and party not in (GRID, MARKET):
                bills[party] = DomainBill(party)
                warnings.append(f"domain {party!r} appears in entries but has no log here")
        if payer == payee:  # a domain hosting its own twins: listed, not owed or earned
            bills[payer].lines.append(li)
            continue
        if payer in bills:
            bills[payer].owes_micro += amount
            bills[payer].lines.append(li)
        if payee in bills:
            bills[payee].earns_micro += amount
            bills[payee].lines.append(li)
    return Bills(table.currency, end, bills, lines, inputs, table.digest(), warnings)
