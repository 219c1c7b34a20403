"""Record every decision of a run in the governance ledger (``twinedge run --ledger``).

Each decision goes to the log of the domain that owns the host it concerns (the
destination host for a migration). Entries are appended once per step in one batch per
log; at the end each host's energy is recorded as a ``usage`` entry, a ``policy`` entry
marks the end of the run, and every domain signs a checkpoint after witnessing the
others' (see :meth:`twinedge.ledger.LedgerDir.checkpoint_all`).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from twinedge.ledger import LedgerDir
from twinedge.orchestrator.view import NetworkState
from twinedge.world import World

_TIER = ("access", "edge", "region", "cloud")


class LedgerRecorder:
    """A :class:`twinedge.engine.simulation.Recorder` that writes a ledger directory.

    Parameters:
        path: the ledger directory (created if missing; an existing one is appended to).
        actor: the ``actor`` of every entry.
        checkpoint_every: also sign checkpoints every this many steps (0: only at the end).
    """

    def __init__(self, path: str | Path, *, actor: str = "twinedge-run", checkpoint_every: int = 0):
        self.path = Path(path)
        self.actor = actor
        self.checkpoint_every = int(checkpoint_every)
        self.ledger: LedgerDir | None = None
        self._pending: list[dict] = []
        self.entries = 0
        self.checkpoints: dict[str, str] = {}

    def _open(self, world: World) -> LedgerDir:
        if self.ledger is None:
            if self.path.is_dir() and any(self.path.iterdir()):
                ld = LedgerDir.open(self.path)
                for d in world.domains:
                    if d not in ld.domains:
                        ld.add_domain(d)
            else:
                ld = LedgerDir.create(self.path, world.domains)
            self.ledger = ld
        return self.ledger

    def _host(self, world: World, h: np.ndarray) -> tuple[list[str], list[str], list[str]]:
        nodes = world.hosts[h]
        return (
            [world.node_ids[n] for n in nodes],
            [_TIER[t] for t in world.node_tier[nodes]],
            [world.domains[d] for d in world.node_domain[nodes]],
        )

    def _add(self, kind: str, domain: str, t_s: float, body: dict) -> None:
        self._pending.append(
            {"type": kind, "domain": domain, "time": float(t_s), "actor": self.actor, "body": body}
        )

    @staticmethod
    def _twin(world: World, i: int) -> dict:
        """The body fields every decision about twin ``i`` carries."""
        return {
            "twin": str(world.entity_ids[i]),
            "owner": world.owners[world.entity_owner[i]],
            "cpu_ghz": float(world.cpu_ghz[i]),
            "mem_gb": float(world.mem_gb[i]),
        }

    def placement(self, t_s: float, world: World, twins: np.ndarray, hosts: np.ndarray) -> None:
        self._open(world)
        ids, tiers, doms = self._host(world, hosts)
        for k, i in enumerate(twins):
            self._add(
                "placement",
                doms[k],
                t_s,
                {**self._twin(world, i), "host": ids[k], "tier": tiers[k]},
            )

    def migration(self, t_s, world, twins, src, dst, bytes_moved, downtime_s) -> None:
        self._open(world)
        s_ids, s_tiers, s_doms = self._host(world, src)
        d_ids, d_tiers, d_doms = self._host(world, dst)
        for k, i in enumerate(twins):
            body = {
                **self._twin(world, i),
                "from_host": s_ids[k],
                "from_tier": s_tiers[k],
                "from_domain": s_doms[k],
                "to_host": d_ids[k],
                "to_tier": d_tiers[k],
                "bytes": int(bytes_moved[k]),
                "downtime_s": float(downtime_s[k]),
            }
            self._add("migration", d_doms[k], t_s, body)

    def handover(self, t_s: float, world: World, body: dict) -> None:
        """Record a live migration as it happened (``handover`` entry, in the target's
        domain): ``body`` has ``twin``, ``from_host``, ``to_host`` and what was measured
        (``downtime_s`` and its parts, ``bytes``, ``epoch``...). The ``migration`` entry
        of the decision, with the modelled downtime, is recorded when it is decided; this
        one says what the move cost. Appended with the next cycle's decisions."""
        self._open(world)
        dst = world.node_ids.index(body["to_host"])
        self._add("handover", world.domains[world.node_domain[dst]], t_s, dict(body))

    def trades(self, t_s: float, world: World, entries: list[dict]) -> None:
        """Record a market period's ``trade`` entries (``MarketPeriod.entries(t_s)`` of
        :mod:`twinedge.market.period`); they are appended with the step's decisions."""
        self._open(world)
        self._pending.extend(entries)

    def _flush(self) -> None:
        if self._pending and self.ledger is not None:
            self.ledger.append_many(self._pending)
            self.entries += len(self._pending)
            self._pending = []

    def step_end(self, k: int, t_s: float, world: World, state: NetworkState) -> None:
        self._flush()
        if self.checkpoint_every and (k + 1) % self.checkpoint_every == 0:
            self.checkpoints = self._open(world).checkpoint_all(witness=True)

    def end(self, t_s: float, world: World, server_energy_j: np.ndarray) -> None:
        ld = self._open(world)
        ids, tiers, doms = self._host(world, np.arange(world.n_hosts))
        for h in range(world.n_hosts):
            body = {
                "host": ids[h],
                "tier": tiers[h],
                "energy_j": float(server_energy_j[h]),
                "from_time": 0.0,
            }
            self._add("usage", doms[h], t_s, body)
        for d in world.domains:
            self._add("policy", d, t_s, {"event": "end"})
        self._flush()
        self.checkpoints = ld.checkpoint_all(witness=True)
        ld.close()

    def heads(self) -> dict[str, tuple[int, str]]:
        """``{domain: (size, base64 root)}`` from the final checkpoints."""
        out = {}
        for d, note in self.checkpoints.items():
            lines = note.splitlines()
            out[d] = (int(lines[1]), lines[2])
        return out


def ledger_report_html(recorders: list[LedgerRecorder]) -> str:
    """The report's ledger section: log sizes, final roots, and how to verify them."""
    parts = []
    for r in recorders:
        rows = "".join(
            f"<tr><td>{html.escape(d)}</td><td>{size:,}</td><td><code>{html.escape(base64.b64decode(root).hex())}</code></td></tr>"
            for d, (size, root) in sorted(r.heads().items())
        )
        parts.append(
            f"<p>Ledger <code>{html.escape(str(r.path))}</code>: {r.entries:,} decisions recorded.</p>"
            f"<table><tr><th>domain</th><th>log size</th><th>final root (SHA-256)</th></tr>{rows}</table>"
            f"<p>Verify every hash and signature with <code>twinedge ledger verify {html.escape(str(r.path))}</code>; "
            f"recompute the bills with <code>twinedge ledger settle {html.escape(str(r.path))} --prices PRICES.yaml</code>.</p>"
        )
    return "\n".join(parts)
