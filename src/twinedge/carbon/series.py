"""Carbon-intensity time series and regions that carry one.

A :class:`CarbonSeries` holds the grid carbon intensity (gCO2/kWh) of one region at
increasing instants; a value holds from its instant until the next one (step-hold), the
way grid operators and the data of Wiesner et al. (Middleware 2021) report it. Times
are naive local wall-clock datetimes, as in the files: the loader keeps them as they are.

The file format is a CSV with the header ``Time,Carbon Intensity`` and one row per
sample, ``YYYY-MM-DD HH:MM[:SS],<float>``. :func:`load_carbon_csv` reads any such file
and rejects a malformed one with one line that names the file, the line and the value.

References:
    P. Wiesner, I. Behnke, D. Scheinert, K. Gontarska, L. Thamsen. "Let's Wait Awhile:
    How Temporal Workload Shifting Can Reduce Carbon Emissions in the Cloud."
    Middleware 2021, doi:10.1145/3464298.3493399.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from twinedge.errors import InputError, ScenarioError

HEADER = ("Time", "Carbon Intensity")


def scenario_error(message: str) -> ScenarioError:
    """A :class:`ScenarioError` of one problem line."""
    return ScenarioError([message])


@dataclass(frozen=True)
class CarbonSeries:
    """Carbon intensity in gCO2/kWh of one grid at increasing instants (step-hold).

    Parameters:
        times: strictly increasing naive datetimes.
        values_g_per_kwh: one finite, non-negative intensity per time.
        name: a label for messages and reports.

    Raises:
        ScenarioError: lengths differ, the series is empty, times do not increase, or
            a value is negative or not finite.

    Examples:
        >>> s = CarbonSeries((datetime(2020, 1, 1), datetime(2020, 1, 1, 0, 30)), (100.0, 50.0))
        >>> s.at(datetime(2020, 1, 1, 0, 15)), s.at(datetime(2020, 1, 1, 0, 30))
        (100.0, 50.0)
    """

    times: tuple[datetime, ...]
    values_g_per_kwh: tuple[float, ...]
    name: str = "series"
    _ordinals: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        times = tuple(self.times)
        values = tuple(float(v) for v in self.values_g_per_kwh)
        if len(times) != len(values):
            raise scenario_error(
                f"{self.name}: {len(times)} times but {len(values)} values; expected one value per time"
            )
        if not times:
            raise scenario_error(f"{self.name}: the series is empty; expected at least one sample")
        for i, v in enumerate(values):
            if not math.isfinite(v) or v < 0:
                raise scenario_error(
                    f"{self.name}: sample {i} ({times[i]}): got {v!r}; expected a finite intensity >= 0 gCO2/kWh"
                )
        for i in range(1, len(times)):
            if times[i] <= times[i - 1]:
                raise scenario_error(
                    f"{self.name}: sample {i}: time {times[i]} does not come after {times[i - 1]}; expected strictly increasing times"
                )
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "values_g_per_kwh", values)
        object.__setattr__(self, "_ordinals", tuple(_seconds(t) for t in times))

    def __len__(self) -> int:
        return len(self.times)

    @property
    def start(self) -> datetime:
        """The first instant."""
        return self.times[0]

    @property
    def end(self) -> datetime:
        """The last instant."""
        return self.times[-1]

    def at(self, t: datetime) -> float:
        """The intensity in force at ``t`` (the last sample at or before it).

        Raises:
            ScenarioError: ``t`` is before the first sample or after the last one.
        """
        if t < self.times[0] or t > self.times[-1]:
            raise scenario_error(
                f"{self.name}: time {t} is outside the series ({self.times[0]} .. {self.times[-1]})"
            )
        i = bisect.bisect_right(self._ordinals, _seconds(t)) - 1
        return self.values_g_per_kwh[i]

    def on_grid(self, start: datetime, step_min: float, n_slots: int) -> list[float]:
        """The intensity at ``start + k * step_min`` for ``k = 0 .. n_slots - 1``.

        Where the file has a sample on a grid instant this is that sample (the paper's
        half-hourly view of a 15-minute series keeps the samples at :00 and :30).

        Raises:
            ScenarioError: a grid instant falls outside the series, or ``step_min <= 0``.
        """
        if not step_min > 0:
            raise scenario_error(f"{self.name}: step_min: got {step_min!r}; expected > 0")
        step = timedelta(minutes=step_min)
        return [self.at(start + k * step) for k in range(n_slots)]

    def slots_until(self, start: datetime, step_min: float) -> int:
        """How many grid instants ``start + k * step_min`` lie inside the series."""
        if start < self.start or start > self.end:
            return 0
        return int((self.end - start) / timedelta(minutes=step_min)) + 1

    def mean(self, start: datetime, end: datetime, step_min: float | None = None) -> float:
        """The plain mean intensity of the samples with ``start <= time <= end``.

        With ``step_min`` the samples are those of the grid ``start + k * step_min``
        instead (the paper's 2020 means are over the half-hourly grid of
        2020-01-01 00:00 .. 2021-01-01 00:00, 17,569 samples).

        Raises:
            ScenarioError: no sample lies in the interval.
        """
        if step_min is not None:
            n = int((end - start) / timedelta(minutes=step_min)) + 1
            values = self.on_grid(start, step_min, n)
        else:
            lo = bisect.bisect_left(self._ordinals, _seconds(start))
            hi = bisect.bisect_right(self._ordinals, _seconds(end))
            values = list(self.values_g_per_kwh[lo:hi])
        if not values:
            raise scenario_error(f"{self.name}: no sample between {start} and {end}")
        return math.fsum(values) / len(values)


@dataclass(frozen=True)
class Region:
    """A place where jobs can run: its grid's carbon intensity and its data centre's PUE.

    Parameters:
        name: unique region name (``DE``, ``GB``, ``FR``...).
        series: the grid's carbon intensity.
        pue: power usage effectiveness (facility energy / IT energy), >= 1.

    Raises:
        ScenarioError: an empty name or a PUE below 1 or not finite.
    """

    name: str
    series: CarbonSeries
    pue: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise scenario_error("region: name: got ''; expected a non-empty name")
        if not (math.isfinite(self.pue) and self.pue >= 1.0):
            raise scenario_error(
                f"region {self.name}: pue: got {self.pue!r}; expected a finite value >= 1"
            )


def _seconds(t: datetime) -> float:
    return (t - datetime(1970, 1, 1)).total_seconds()


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def load_carbon_csv(path: str | Path, name: str | None = None) -> CarbonSeries:
    """Read a ``Time,Carbon Intensity`` CSV (the format of the Let's Wait Awhile data).

    Parameters:
        path: the file.
        name: the series' label; the file's stem when omitted.

    Returns:
        The series, in file order.

    Raises:
        InputError: the file cannot be read.
        ScenarioError: a bad header, an unparsable time or value, a non-finite or negative
            value, or a time that does not come after the previous one; the message names
            the file and line.

    Examples:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.csv")
        >>> _ = open(p, "w").write("Time,Carbon Intensity\\n2020-01-01 00:00:00,10.5\\n")
        >>> load_carbon_csv(p).values_g_per_kwh
        (10.5,)
    """
    p = Path(path)
    label = name or p.stem
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the carbon-intensity file ({exc})") from exc
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise scenario_error(
            f"{p}: line 1: got header {header!r}; expected 'Time,Carbon Intensity'"
        )
    times: list[datetime] = []
    values: list[float] = []
    for lineno, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != 2:
            raise scenario_error(
                f"{p}: line {lineno}: got {len(row)} columns; expected 2 (time, intensity)"
            )
        try:
            t = _parse_time(row[0])
        except ValueError:
            raise scenario_error(
                f"{p}: line {lineno}: got time {row[0]!r}; expected YYYY-MM-DD HH:MM[:SS]"
            ) from None
        try:
            v = float(row[1])
        except ValueError:
            raise scenario_error(
                f"{p}: line {lineno}: got intensity {row[1]!r}; expected a number in gCO2/kWh"
            ) from None
        if not math.isfinite(v) or v < 0:
            raise scenario_error(
                f"{p}: line {lineno}: got intensity {row[1]!r}; expected a finite value >= 0 gCO2/kWh"
            )
        if times and t <= times[-1]:
            raise scenario_error(
                f"{p}: line {lineno}: time {t} does not come after {times[-1]}; expected increasing times"
            )
        times.append(t)
        values.append(v)
    if not times:
        raise scenario_error(f"{p}: no samples; expected at least one row after the header")
    return CarbonSeries(tuple(times), tuple(values), name=label)


def series_from_values(
    values: Sequence[float], start: datetime, step_min: float, name: str = "series"
) -> CarbonSeries:
    """A regular series ``values[k]`` at ``start + k * step_min`` (for tests and examples).

    Examples:
        >>> series_from_values([3.0, 1.0], datetime(2020, 1, 1), 30).end
        datetime.datetime(2020, 1, 1, 0, 30)
    """
    step = timedelta(minutes=step_min)
    return CarbonSeries(tuple(start + k * step for k in range(len(values))), tuple(values), name)
