"""Which policy a comparison may call best on a metric, and which metrics cannot tell
policies apart.

A value is marked best only when one policy alone reaches it at the precision shown: a
tie is no winner. Some metrics do not depend on the policies at all (the same seed gives
every policy the same movements), so the table and the report say so instead of
comparing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# metrics the policies cannot change, with the reason the report gives
POLICY_INDEPENDENT: dict[str, str] = {
    "device_energy_j": (
        "the same for every policy: devices spend their radio energy on the uplink to "
        "their access point, wherever their twins run"
    ),
}


def unique_best(
    values: Sequence[float], shown: Callable[[float], str], pick: Callable = min
) -> int | None:
    """The index of the one value that is best (``pick``: ``min`` or ``max``) at the
    precision ``shown`` displays, or ``None`` when two or more share it (or there are
    fewer than two values to compare).

    Examples:
        >>> unique_best([1.2, 1.0, 1.04], "{:.1f}".format)
        >>> unique_best([1.2, 1.0, 1.06], "{:.1f}".format)
        1
        >>> unique_best([3.0], str) is None
        True
    """
    if len(values) < 2:
        return None
    rounded = [float(shown(v).replace(",", "")) for v in values]
    best = pick(rounded)
    winners = [i for i, v in enumerate(rounded) if v == best]
    return winners[0] if len(winners) == 1 else None


def all_equal(values: Sequence[float], shown: Callable[[float], str]) -> bool:
    """Whether every value reads the same at the precision ``shown`` displays (and
    there are at least two).

    Examples:
        >>> all_equal([0.2, 0.2001], "{:.2f}".format), all_equal([0.2, 0.3], "{:.2f}".format)
        (True, False)
    """
    return len(values) > 1 and len({shown(v) for v in values}) == 1
