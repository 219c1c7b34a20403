"""Built-in mean-day carbon-intensity profiles, so a scenario's ``carbon:`` section works
without the data files.

Each profile is the mean intensity (gCO2/kWh) of one hour of the day over 2020, hour
``h`` covering ``h:00`` to ``h:59``: the mean of the samples at ``h:00`` and ``h:30`` of
every day from 2020-01-01 to 2020-12-31 of the series of Wiesner et al. (Middleware 2021;
computed by the authors from ENTSO-E generation data with IPCC life-cycle factors),
rounded to 0.1 g/kWh. The mean of the 24 values is the paper's 2020 mean within
0.1 g/kWh (DE 313.4, GB 212.9, FR 56.3). A profile keeps the daily cycle and loses the
weekly and seasonal ones and the weather: for those, give the series file itself
(``csv:``).

Examples:
    >>> round(sum(PROFILES_G_PER_KWH["DE"]) / 24, 1)
    313.4
"""

from __future__ import annotations

__all__ = ["PROFILES_G_PER_KWH"]

#: Hourly mean intensity of 2020, hours 0..23 (local wall time), in gCO2/kWh.
PROFILES_G_PER_KWH: dict[str, tuple[float, ...]] = {
    "DE": (
        308.7, 304.9, 305.5, 311.9, 321.8, 328.5, 326.5, 315.9, 301.1, 288.1, 279.3, 274.9,
        275.8, 282.7, 295.5, 313.0, 331.3, 345.3, 349.6, 346.8, 340.6, 334.8, 324.4, 314.7,
    ),
    "GB": (
        183.3, 183.2, 180.1, 179.3, 181.0, 189.9, 207.6, 220.5, 222.1, 218.9, 214.0, 212.3,
        212.6, 212.8, 216.0, 223.0, 237.0, 247.7, 252.4, 250.3, 243.1, 228.7, 206.2, 188.5,
    ),
    "FR": (
        52.9, 51.9, 51.3, 52.2, 54.2, 56.2, 57.6, 58.3, 58.6, 58.9, 59.3, 58.6,
        58.0, 57.4, 56.9, 56.9, 57.6, 57.8, 57.3, 56.5, 56.9, 57.4, 55.5, 53.7,
    ),
}  # fmt: skip
