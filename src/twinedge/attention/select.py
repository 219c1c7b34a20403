"""Score the pending updates of one subscriber and choose what to send within its budget.

Score (one subscriber, pending updates ``j``; docs/attention.md has the derivation)::

    e_j = ( - w_d * d_j / falloff_m                 relevance by distance (ln rho)
            + w_f * ln phi_j                        filter match (1 or miss_factor)
            + w_c * ln(1 + change_j / change_scale) change magnitude
            + w_s * ln(1 + stale_j / staleness_scale_s) ) / temperature
    a_j = exp(e_j) / sum_k exp(e_k)                 the softmax of seed 004

The attention weight of seed 004 is ``a_ij = exp(e_ij) / sum_k exp(e_ik)`` with a score
``e_ij`` of query ``i`` (here the subscriber) and key ``j`` (here a pending update); its
score is a bilinear form of learned embeddings, ours a linear form of four interest
features with the subscriber's weights as the query. The features are logarithms, so
``a_j`` is proportional to ``rho^w_d * phi^w_f * (1 + change)^w_c * (1 + stale)^w_s``: with
unit weights, value times (one plus) age, the index that keeps value-weighted age low
(Kadota et al., 2018).

Choice (:func:`choose`): updates whose subscriber copy has been out of date for at least
``max_staleness_s`` go first, oldest first, in strict order (if one does not fit, nothing
else is sent now); then the others by attention weight per bit, each that still fits.
:class:`WindowBudget` keeps every window of ``window_s`` seconds within
``budget_bps * window_s`` bits. :class:`AttentionQueue` is the per-subscriber object the
live service uses: it coalesces updates by key (a newer one replaces a pending one: the
subscriber wants the latest state) and hands out what is due.

References:
    Seed 004, "注意力共享:元宇宙中的信息共享" (attention-based information sharing in the
    metaverse), section 4.2: ``a_ij = exp(e_ij) / sum_k exp(e_ik)``.
    A. Bharambe et al., "Donnybrook: Enabling Large-Scale, High-Speed, Peer-to-Peer Games",
    SIGCOMM 2008 (interest sets: the baseline, :mod:`twinedge.attention.sim`).
    I. Kadota et al., "Scheduling Policies for Minimizing Age of Information in Broadcast
    Wireless Networks", IEEE/ACM ToN 26(6), 2018 (max-weight on weighted age).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinedge.attention.errors import AttentionError
from twinedge.attention.interest import Interest

__all__ = ["AttentionQueue", "Pending", "WindowBudget", "choose", "scores"]


def scores(
    interest: Interest,
    distance_m: np.ndarray,
    staleness_s: np.ndarray,
    *,
    matches: np.ndarray | None = None,
    change: np.ndarray | None = None,
) -> np.ndarray:
    """The attention weights (softmax, summing to 1) of ``n`` pending updates.

    Parameters:
        interest: the subscriber's interest (weights, scales, temperature).
        distance_m: each update's distance to the region, m (0 inside).
        staleness_s: how long the subscriber's copy has been out of date, s.
        matches: whether each update matches the subscriber's filter (all: ``None``).
        change: each update's change magnitude since the copy the subscriber holds
            (metres for positions; ``None``: no change term).

    Returns:
        ``(n,)`` weights in (0, 1] summing to 1 (empty for no updates).

    Raises:
        AttentionError: an input is negative or not finite, or the shapes differ.

    Examples:
        Two updates in the region, one a second stale and one fresh; unit weights and
        scales, so the weights are proportional to 1 + staleness: 2 to 1.

        >>> i = Interest(staleness_scale_s=1.0)
        >>> scores(i, np.zeros(2), np.array([1.0, 0.0])).round(4)
        array([0.6667, 0.3333])

    References:
        Seed 004, section 4.2 (the softmax of scores).
    """
    d = np.asarray(distance_m, dtype=float)
    st = np.asarray(staleness_s, dtype=float)
    n = d.shape[0]
    for name, arr in (("distance_m", d), ("staleness_s", st)) + (
        (("change", np.asarray(change, dtype=float)),) if change is not None else ()
    ):
        if arr.shape != (n,):
            raise AttentionError(name, f"{name}: shape {arr.shape}, expected ({n},)")
        if n and (not np.isfinite(arr).all() or (arr < 0).any()):
            raise AttentionError(name, f"{name}: every value must be finite and >= 0")
    if n == 0:
        return np.zeros(0)
    w = interest.weights
    e = -w.distance * d / interest.falloff
    if matches is not None and w.filter:
        e = e + np.where(
            np.asarray(matches, dtype=bool), 0.0, w.filter * math.log(interest.miss_factor)
        )
    if change is not None and w.change:
        e = e + w.change * np.log1p(np.asarray(change, dtype=float) / interest.change_scale)
    if w.staleness:
        e = e + w.staleness * np.log1p(st / interest.staleness_scale_s)
    e = e / interest.temperature
    a = np.exp(e - e.max())
    return a / a.sum()


def choose(
    weights: np.ndarray,
    bits: np.ndarray,
    staleness_s: np.ndarray,
    available_bits: float,
    max_staleness_s: float = math.inf,
) -> np.ndarray:
    """Which pending updates to send now, in sending order.

    Overdue updates (``staleness_s >= max_staleness_s``) go first, oldest first, in strict
    order: one that does not fit stops the choice (so that no later send delays it).
    Then the rest by ``weights / bits``, highest first (ties: lower index), each that still
    fits. Nothing chosen ever adds up to more than ``available_bits``.

    Parameters:
        weights: attention weights (:func:`scores`).
        bits: each update's size in bits (> 0).
        staleness_s: how long each subscriber copy has been out of date.
        available_bits: what the budget allows now.
        max_staleness_s: the staleness bound.

    Returns:
        Indices into the inputs (int64).

    Examples:
        Budget for two of three 100-bit updates; the third is overdue, so it goes first:

        >>> choose(np.array([0.5, 0.3, 0.2]), np.full(3, 100.0), np.array([0.0, 1.0, 9.0]),
        ...        200.0, max_staleness_s=5.0).tolist()
        [2, 0]
    """
    b = np.asarray(bits, dtype=float)
    st = np.asarray(staleness_s, dtype=float)
    left = float(available_bits)
    overdue = np.flatnonzero(st >= max_staleness_s)
    order = overdue[np.argsort(-st[overdue], kind="stable")]
    fits = np.cumsum(b[order]) <= left
    first = order[: int(np.argmin(fits)) if not fits.all() else order.size]
    if first.size < order.size:  # an overdue update waits: nothing may overtake it
        return first.astype(np.int64)
    left -= float(b[first].sum())
    rest = np.flatnonzero(st < max_staleness_s)
    density = np.asarray(weights, dtype=float)[rest] / b[rest]
    ranked = rest[np.argsort(-density, kind="stable")]
    fits = np.cumsum(b[ranked]) <= left
    cut = int(np.argmin(fits)) if not fits.all() else ranked.size
    out = [first, ranked[:cut]]
    left -= float(b[ranked[:cut]].sum())
    later = ranked[cut + 1 :]
    for j in later[b[later] <= left]:  # smaller updates further down may still fit
        if b[j] <= left:
            out.append(np.array([j]))
            left -= float(b[j])
    return np.concatenate(out).astype(np.int64)


class WindowBudget:
    """At most ``budget_bps * window_s`` bits in every window ``(t - window_s, t]``.

    Parameters:
        budget_bps: bits per second (``inf``: unlimited).
        window_s: the window (> 0).

    Raises:
        AttentionError: a non-positive budget or window; a time that goes backwards.

    Examples:
        >>> b = WindowBudget(1000.0, 1.0)
        >>> b.spend(0.0, 600.0); b.available_bits(0.5)
        400.0
        >>> b.available_bits(1.0)   # the send at 0.0 has left the window (0.0, 1.0]
        1000.0
    """

    def __init__(self, budget_bps: float, window_s: float = 1.0):
        if not budget_bps > 0 or not window_s > 0 or not math.isfinite(window_s):
            raise AttentionError(
                "budget_bps", f"budget {budget_bps!r} bit/s over {window_s!r} s: both must be > 0"
            )
        self.budget_bps, self.window_s = float(budget_bps), float(window_s)
        self.capacity_bits = self.budget_bps * self.window_s
        self._sent: deque[tuple[float, float]] = deque()
        self._in_window = 0.0
        self._last_s = -math.inf
        self.sent_bits_total = 0.0

    def _advance(self, now_s: float) -> None:
        if now_s < self._last_s:
            raise AttentionError("now_s", f"time went backwards: {now_s} after {self._last_s}")
        self._last_s = now_s
        while self._sent and self._sent[0][0] <= now_s - self.window_s:
            self._in_window -= self._sent.popleft()[1]
        if not self._sent:
            self._in_window = 0.0  # no rounding drift once the window is empty

    def carry(self, other: WindowBudget) -> None:
        """Take over the sends of ``other`` (a budget this one replaces): they keep
        counting while they are in this one's window."""
        self._sent = deque(other._sent)
        self._in_window = other._in_window
        self._last_s = other._last_s
        self.sent_bits_total = other.sent_bits_total
        if self.capacity_bits == math.inf:
            self._sent.clear()
            self._in_window = 0.0

    def available_bits(self, now_s: float) -> float:
        """The bits that may still be sent at ``now_s``."""
        if self.capacity_bits == math.inf:
            return math.inf
        self._advance(now_s)
        return max(self.capacity_bits - self._in_window, 0.0)

    def spend(self, now_s: float, bits: float) -> None:
        """Record ``bits`` sent at ``now_s`` (the caller checked :meth:`available_bits`)."""
        self.sent_bits_total += bits
        if self.capacity_bits == math.inf:
            return
        self._advance(now_s)
        self._sent.append((now_s, bits))
        self._in_window += bits


@dataclass
class Pending:
    """An update waiting for one subscriber: the newest ``payload`` of ``key``, its size,
    where it is (``xy_m``, ``None`` for no position), whether it matches the subscriber's
    filter, and since when the subscriber's copy of ``key`` has been out of date."""

    key: Hashable
    payload: Any
    bits: float
    since_s: float
    xy_m: tuple[float, float] | None = None
    matches: bool = True
    change: float | None = None


@dataclass
class AttentionQueue:
    """The pending updates of one subscriber, coalesced by key, and its budget.

    Parameters:
        interest: the subscriber's interest and budget.

    Examples:
        A budget of 2,000 bits per second; three 1,000-bit updates, the one far outside
        the region goes last:

        >>> from twinedge.attention.interest import Circle
        >>> q = AttentionQueue(Interest(Circle((0.0, 0.0), 10.0), budget_bps=2000.0))
        >>> for key, x in (("a", 0.0), ("far", 500.0), ("b", 5.0)):
        ...     q.offer(key, key, bits=1000, now_s=0.0, xy_m=(x, 0.0))
        >>> [p.payload for p in q.due(0.0)], len(q)
        (['a', 'b'], 1)
        >>> [p.payload for p in q.due(1.0)]
        ['far']
    """

    interest: Interest
    pending: dict[Hashable, Pending] = field(default_factory=dict)
    sent_xy_m: dict[Hashable, tuple[float, float]] = field(default_factory=dict)
    oversize_skipped: int = 0

    def __post_init__(self) -> None:
        i = self.interest
        self.budget = WindowBudget(i.budget_bps, i.window_s)

    def __len__(self) -> int:
        return len(self.pending)

    def offer(
        self,
        key: Hashable,
        payload: Any,
        *,
        bits: float,
        now_s: float,
        xy_m: tuple[float, float] | None = None,
        matches: bool = True,
        change: float | None = None,
    ) -> None:
        """Queue the newest update of ``key`` (replacing a pending one; the subscriber's
        copy stays out of date since the first). An update larger than the window can
        ever carry is counted in :attr:`oversize_skipped` and never queued.

        Raises:
            AttentionError: ``bits`` is not a positive finite number.
        """
        if not (math.isfinite(bits) and bits > 0):
            raise AttentionError("bits", f"bits: {bits!r}: expected a finite number > 0")
        if bits > self.budget.capacity_bits:
            self.oversize_skipped += 1
            self.pending.pop(key, None)
            return
        old = self.pending.get(key)
        since = old.since_s if old is not None else now_s
        self.pending[key] = Pending(key, payload, float(bits), since, xy_m, matches, change)

    def due(self, now_s: float) -> list[Pending]:
        """The updates to send at ``now_s``, most valuable first, within the budget (they
        leave the queue; their bits are charged to the budget)."""
        if not self.pending:
            return []
        available = self.budget.available_bits(now_s)
        if available <= 0.0:  # the window is full: nothing can go (the common case)
            return []
        items = list(self.pending.values())
        n = len(items)
        xy = np.array(
            [p.xy_m if p.xy_m is not None else (np.nan, np.nan) for p in items], dtype=float
        )
        d = self.interest.distance_m(xy, n)
        st = np.maximum(now_s - np.array([p.since_s for p in items]), 0.0)
        ch = np.array([self._change(p) for p in items])
        matches = np.array([p.matches for p in items])
        bits = np.array([p.bits for p in items])
        a = scores(self.interest, d, st, matches=matches, change=ch)
        chosen = choose(a, bits, st, available, self.interest.max_staleness_s)
        out = []
        for j in chosen:
            p = items[int(j)]
            self.budget.spend(now_s, p.bits)
            del self.pending[p.key]
            if p.xy_m is not None:
                self.sent_xy_m[p.key] = p.xy_m
            out.append(p)
        return out

    def _change(self, p: Pending) -> float:
        if p.change is not None:
            return max(float(p.change), 0.0)
        last = self.sent_xy_m.get(p.key)
        if p.xy_m is None or last is None:
            return self.interest.change_scale  # nothing to compare with: a unit change
        return float(math.hypot(p.xy_m[0] - last[0], p.xy_m[1] - last[1]))
