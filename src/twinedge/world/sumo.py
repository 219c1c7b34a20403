"""Vehicle traces from Eclipse SUMO: run the simulator, read its floating car data (FCD).

Two parts:

- :func:`read_fcd` streams a SUMO ``--fcd-output`` file (``.xml`` or ``.xml.gz``): every
  ``<timestep time=...>`` holds one ``<vehicle id x y .../>`` (or ``<person .../>``) per
  moving object. An expat parser hands each element to a handler as it is read (no
  element tree is built), so a file of millions of samples never sits in memory; only
  the samples themselves (four numbers each) are kept. :func:`fcd_to_csv` writes the same samples as
  a twinedge trace CSV (``entity_id,t_s,x_m,y_m``), streaming both ways. A trace mobility
  whose file ends in ``.xml`` or ``.xml.gz`` is read by :func:`read_fcd` directly.
- :func:`sumo_trace` makes a trace from nothing: a road network (``netgenerate`` grid or
  spider, or a given ``.net.xml``), random trips for N vehicles (``randomTrips.py``), a
  SUMO run of the given duration and seed, and the FCD converted to a CSV trace. The same
  arguments give the same file (SUMO, netgenerate and randomTrips are deterministic under
  their ``--seed``). ``twinedge trace sumo`` is its command line.

Coordinates: SUMO writes positions in the network's own metre frame. ``netgenerate``
normalises a generated network so that its junctions start at (0, 0); lanes lie beside
the junction lines (a lane's centre is half a lane width, 1.6 m, to the right of its
road's axis), so a trace may reach a few metres below 0. These metres are used as the
scenario's metres unchanged. With ``--fcd-output.geo`` SUMO writes longitude and latitude
in ``x`` and ``y`` instead; such a file (recognised by the configuration SUMO writes at
its top) is read as ``lat``/``lon`` and projected about the scenario's origin.

Vehicles only exist in SUMO between their departure and arrival: a trace holds each
vehicle at its first position before it departs and at its last after it arrives (as
every trace does). :func:`sumo_trace` gives each vehicle a route through enough random
intermediate edges to keep driving for the whole duration, and disables teleporting
(``--time-to-teleport -1``), so a jammed vehicle waits on its road instead of jumping.

The simulator comes from the optional extra ``twinedge[sumo]`` (the ``eclipse-sumo``
wheel, which ships ``sumo``, ``netgenerate``, ``duarouter`` and the ``tools`` folder); a
``SUMO_HOME`` environment variable pointing at another installation is used when the
wheel is absent.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import math
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, NoReturn, cast
from xml.parsers import expat

import numpy as np

from twinedge.errors import ScenarioError, TwinedgeError

EXTRA_HINT = "pip install 'twinedge[sumo]' (the eclipse-sumo wheel ships sumo, netgenerate and randomTrips.py)"
"""What to install when SUMO is missing."""
MOVERS = ("vehicle", "person")
"""FCD elements read as trace entities."""
DEFAULT_SPEED_MPS = 13.89
"""The default speed limit of ``netgenerate`` roads (50 km/h), used to size routes."""
MAX_INTERMEDIATE = 500
"""Most intermediate edges of one random route."""


def is_fcd(path: Path) -> bool:
    """Whether a trace file is SUMO FCD XML (by its name: ``.xml`` or ``.xml.gz``)."""
    name = path.name.lower()
    return name.endswith(".xml") or name.endswith(".xml.gz")


@contextlib.contextmanager
def _open_xml(path: Path) -> Iterator[IO[bytes]]:
    try:
        if path.name.lower().endswith(".gz"):
            f = cast(IO[bytes], gzip.open(path, "rb"))
        else:
            f = open(path, "rb")
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read the file ({exc.strerror or exc})"]) from None
    with f:
        yield f


@dataclass
class FcdSamples:
    """The samples of an FCD file in file order: ``names[code[i]]`` was at ``(a[i], b[i])``
    at ``t_s[i]``; ``(a, b)`` is ``(x_m, y_m)``, or ``(lat, lon)`` when ``is_latlon``."""

    names: list[str]
    code: np.ndarray
    t_s: np.ndarray
    a: np.ndarray
    b: np.ndarray
    is_latlon: bool


Sink = Callable[[str, float, float, float, str, str, str], None]
"""Receives one sample: ``(id, t_s, a, b, time, a_text, b_text)``, ``(a, b)`` being
``(x_m, y_m)``, or ``(lat, lon)`` for geo output; the texts are as SUMO wrote them."""


class _FcdParser:
    """Streams the samples of an FCD file into a sink: an expat parser with a handler
    per element, so no element objects are made and nothing of the file is kept but
    what the sink keeps."""

    def __init__(self, path: Path, sink: Sink):
        self.path, self.sink = path, sink
        self.p = expat.ParserCreate()
        self.p.StartElementHandler = self._start
        self.p.CommentHandler = self._comment
        self.root: str | None = None
        self.time, self.t = "", math.nan
        self.geo = False
        self.n = 0

    def is_geo(self) -> bool:
        """Whether the file is geo output (known before its first sample)."""
        return self.geo

    def _refuse(self, what: str) -> NoReturn:
        raise ScenarioError([f"{self.path}: line {self.p.CurrentLineNumber}: {what}"])

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if name in MOVERS:
            vid, x, y = attrs.get("id"), attrs.get("x"), attrs.get("y")
            if vid is None or x is None or y is None:
                self._refuse(f"<{name}> without id, x or y (got {attrs!r}); expected SUMO FCD")
            try:
                xv, yv = float(x), float(y)
            except ValueError:
                xv = yv = math.nan
            if not (math.isfinite(xv) and math.isfinite(yv) and math.isfinite(self.t)):
                self._refuse(
                    f"{vid!r} at time {self.time!r}: x={x!r}, y={y!r}; "
                    "expected finite numbers for the time and the position"
                )
            self.n += 1
            if self.geo:  # x is the longitude, y the latitude
                if not (abs(yv) <= 90 and abs(xv) <= 180):
                    self._refuse(
                        f"{vid!r}: geo output at lon={x}, lat={y}; expected latitudes within "
                        "±90 and longitudes within ±180"
                    )
                self.sink(vid, self.t, yv, xv, self.time, y, x)
            else:
                self.sink(vid, self.t, xv, yv, self.time, x, y)
        elif name == "timestep":
            self.time = attrs.get("time", "")
            try:
                self.t = float(self.time)
            except ValueError:
                self.t = math.nan
        elif self.root is None:
            self.root = name
            if name != "fcd-export":
                self._refuse(
                    f"root element <{name}>; expected <fcd-export> (a SUMO --fcd-output file)"
                )

    def _comment(self, text: str) -> None:
        # SUMO writes its configuration at the top: geo output is lon/lat in x/y
        if '<fcd-output.geo value="true"/>' in text:
            self.geo = True

    def run(self) -> tuple[int, bool]:
        """Parse the whole file; return ``(samples, is_geo)``."""
        with _open_xml(self.path) as f:
            try:
                self.p.ParseFile(f)
            except expat.ExpatError as exc:
                why = expat.ErrorString(exc.code)
                raise ScenarioError(
                    [
                        f"{self.path}: line {exc.lineno}: not well-formed XML (column "
                        f"{exc.offset}: {why}); expected SUMO FCD"
                    ]
                ) from None
            except (OSError, EOFError) as exc:
                raise ScenarioError([f"{self.path}: cannot read the file ({exc})"]) from None
        if self.n == 0:
            raise ScenarioError(
                [
                    f"{self.path}: no vehicle samples; expected <timestep> elements with "
                    "<vehicle> samples"
                ]
            )
        return self.n, self.geo


def read_fcd(path: Path) -> FcdSamples:
    """Read the vehicle samples of a SUMO FCD file (``.xml`` or gzipped ``.xml.gz``).

    Parameters:
        path: the file written by ``sumo --fcd-output``.

    Returns:
        The samples in file order (time-major), see :class:`FcdSamples`.

    Raises:
        ScenarioError: the file cannot be read, is not well-formed XML, is not FCD, has a
            sample that is not finite numbers (the line is named), or holds no sample.

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "fcd.xml"
        >>> _ = p.write_text('<fcd-export><timestep time="0.00"><vehicle id="v0" x="1.6" y="5.0"/>'
        ...                  '</timestep><timestep time="1.00"><vehicle id="v0" x="1.6" y="18.9"/>'
        ...                  '</timestep></fcd-export>')
        >>> s = read_fcd(p)
        >>> s.names, s.t_s.tolist(), s.b.tolist(), s.is_latlon
        (['v0'], [0.0, 1.0], [5.0, 18.9], False)
    """
    index: dict[str, int] = {}
    code = array("q")
    t, a, b = array("d"), array("d"), array("d")

    def keep(vid: str, ts: float, av: float, bv: float, *_texts: str) -> None:
        code.append(index.setdefault(vid, len(index)))
        t.append(ts)
        a.append(av)
        b.append(bv)

    _, geo = _FcdParser(path, keep).run()
    return FcdSamples(
        list(index),
        np.frombuffer(code, dtype=np.int64),
        np.frombuffer(t),
        np.frombuffer(a),
        np.frombuffer(b),
        geo,
    )


@dataclass(frozen=True)
class TraceSummary:
    """What a written trace holds: ``vehicles``, ``samples``, the time span and the
    bounding box of its positions (``x_m``/``y_m``, or ``lat``/``lon`` when geo)."""

    path: Path
    vehicles: int
    samples: int
    t_min_s: float
    t_max_s: float
    lo: tuple[float, float]
    hi: tuple[float, float]
    is_latlon: bool

    def describe(self) -> str:
        """One line: what was written where."""
        if self.is_latlon:
            box = f"lat {self.lo[0]:.6f}..{self.hi[0]:.6f}, lon {self.lo[1]:.6f}..{self.hi[1]:.6f}"
        else:
            box = f"x {self.lo[0]:.1f}..{self.hi[0]:.1f} m, y {self.lo[1]:.1f}..{self.hi[1]:.1f} m"
        return (
            f"wrote {self.path}: {self.vehicles} vehicles, {self.samples} samples, "
            f"t {self.t_min_s:g}..{self.t_max_s:g} s, {box}"
        )


def fcd_to_csv(fcd: Path, out: Path) -> TraceSummary:
    """Convert a SUMO FCD file to a twinedge trace CSV, streaming.

    The rows are written in the FCD's order (time-major) with the numbers as SUMO wrote
    them: ``entity_id,t_s,x_m,y_m``, or ``entity_id,t_s,lat,lon`` for geo FCD.

    Parameters:
        fcd: the FCD file (``.xml`` or ``.xml.gz``).
        out: the CSV file to write (its folder is created).

    Returns:
        A :class:`TraceSummary` of what was written.

    Raises:
        ScenarioError: as :func:`read_fcd`; nothing is left at ``out`` then.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    ids: set[str] = set()
    box = [math.inf, math.inf, -math.inf, -math.inf, math.inf, -math.inf]  # a, b, t
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")

            def write(vid: str, ts: float, a: float, b: float, *texts: str) -> None:
                if not ids:  # the first sample: geo or not is known (SUMO says so first)
                    w.writerow(["entity_id", "t_s", *(("lat", "lon") if geo() else ("x_m", "y_m"))])
                w.writerow([vid, *texts])
                ids.add(vid)
                box[0], box[1] = min(box[0], a), min(box[1], b)
                box[2], box[3] = max(box[2], a), max(box[3], b)
                box[4], box[5] = min(box[4], ts), max(box[5], ts)

            parser = _FcdParser(fcd, write)
            geo = parser.is_geo
            n, is_geo = parser.run()
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return TraceSummary(
        out, len(ids), n, box[4], box[5], (box[0], box[1]), (box[2], box[3]), is_geo
    )


# --- running SUMO ---------------------------------------------------------------------


def sumo_home() -> Path:
    """The SUMO installation: the ``eclipse-sumo`` wheel's, else ``$SUMO_HOME``.

    Raises:
        TwinedgeError: neither is there (the message names the extra to install).
    """
    try:
        import sumo  # the eclipse-sumo wheel

        home = Path(sumo.SUMO_HOME)
    except ImportError:
        env = os.environ.get("SUMO_HOME")
        if not env:
            raise TwinedgeError(f"Eclipse SUMO is not installed: {EXTRA_HINT}") from None
        home = Path(env)
    if not (home / "bin" / _exe("sumo")).is_file():
        raise TwinedgeError(f"no SUMO binaries under {home / 'bin'}: {EXTRA_HINT}")
    return home


def _exe(name: str) -> str:
    return name + (".exe" if sys.platform == "win32" else "")


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) or "no output"


def _run(tool: str, args: list[str], home: Path, cwd: Path) -> None:
    """Run one SUMO tool; a failure becomes one line with the tail of its stderr."""
    env = {**os.environ, "SUMO_HOME": str(home)}
    try:
        p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise TwinedgeError(
            f"{tool} could not start ({exc.strerror or exc}): {EXTRA_HINT}"
        ) from None
    if p.returncode != 0:
        raise TwinedgeError(f"{tool} failed (exit {p.returncode}): {_tail(p.stderr or p.stdout)}")


def _net_bounds(net: Path) -> tuple[float, float, float, float]:
    """The ``convBoundary`` of a ``.net.xml`` (its junctions' box, in the net's metres)."""
    with _open_xml(net) as f:
        try:
            for _event, el in ET.iterparse(f, events=("start",)):
                if el.tag == "location":
                    vals = [float(v) for v in el.get("convBoundary", "").split(",")]
                    if len(vals) == 4 and all(math.isfinite(v) for v in vals):
                        return vals[0], vals[1], vals[2], vals[3]
                    break
                if el.tag not in ("net",):
                    break
        except (ET.ParseError, ValueError):
            pass
    raise TwinedgeError(
        f"{net}: not a SUMO network (no <net><location convBoundary=...>); "
        "expected a .net.xml written by netconvert or netgenerate"
    )


Network = Literal["grid", "spider"]


def sumo_trace(
    out: Path,
    *,
    net: Path | None = None,
    network: Network = "grid",
    size: int = 5,
    length_m: float = 200.0,
    vehicles: int = 50,
    duration_s: float = 600.0,
    step_s: float = 1.0,
    seed: int = 0,
    work_dir: Path | None = None,
) -> TraceSummary:
    """Generate vehicle traces with SUMO and write them as a twinedge trace CSV.

    Parameters:
        out: the CSV trace to write.
        net: a SUMO network (``.net.xml``) to drive on; without it one is generated.
        network: the generated network: ``grid`` (``size`` × ``size`` junctions,
            ``length_m`` apart) or ``spider`` (``size`` arms, ``size`` circles
            ``length_m`` apart).
        size: junctions per side of the grid, or arms and circles of the spider (≥ 2).
        length_m: street length of the grid, circle spacing of the spider.
        vehicles: how many vehicles (≥ 1); they depart evenly spaced over the first
            tenth of the run, each on a random route long enough to drive to the end.
        duration_s: simulated seconds.
        step_s: SUMO's time step, and so the trace's sampling interval.
        seed: seeds ``netgenerate``, ``randomTrips.py`` and ``sumo``: the same arguments
            write the same file.
        work_dir: keep SUMO's files there (network, trips, routes, FCD); default a
            temporary folder, removed afterwards.

    Returns:
        A :class:`TraceSummary` of the written trace.

    Raises:
        TwinedgeError: SUMO is not installed; a bad argument; the network file is missing
            or not a SUMO network; a SUMO tool failed (with the tail of its stderr); no
            vehicle could depart.

    Examples:
        >>> s = sumo_trace(Path("trace.csv"), size=3, vehicles=20, duration_s=60)  # doctest: +SKIP
        >>> s.vehicles  # doctest: +SKIP
        20
    """
    if vehicles < 1:
        raise TwinedgeError(f"--vehicles: got {vehicles}; expected at least 1 vehicle")
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise TwinedgeError(f"--duration-s: got {duration_s}; expected a positive duration")
    if not (0 < step_s <= duration_s):
        raise TwinedgeError(
            f"--step-s: got {step_s}; expected a positive step no longer than the duration"
        )
    if size < 2:
        raise TwinedgeError(f"--size: got {size}; expected at least 2")
    if not (length_m > 0 and math.isfinite(length_m)):
        raise TwinedgeError(f"--length-m: got {length_m}; expected a positive length")
    if net is not None and not net.is_file():
        raise TwinedgeError(f"--net: got {str(net)!r}; expected an existing .net.xml file")
    home = sumo_home()
    bin_dir = home / "bin"
    random_trips = home / "tools" / "randomTrips.py"
    if not random_trips.is_file():
        raise TwinedgeError(f"no randomTrips.py under {home / 'tools'}: {EXTRA_HINT}")
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="twinedge-sumo-")))
        else:
            work = work_dir.resolve()
            work.mkdir(parents=True, exist_ok=True)
        net_file = work / "net.net.xml"
        if net is None:
            if network == "grid":
                shape = ["--grid", "--grid.number", str(size), "--grid.length", f"{length_m:g}"]
            elif network == "spider":
                shape = [
                    "--spider",
                    "--spider.arm-number",
                    str(max(size, 3)),
                    "--spider.circle-number",
                    str(size),
                    "--spider.space-radius",
                    f"{length_m:g}",
                ]
            else:  # pragma: no cover - the command line offers only these
                raise TwinedgeError(f"--network: got {network!r}; expected grid or spider")
            _run(
                "netgenerate",
                [
                    str(bin_dir / _exe("netgenerate")),
                    *shape,
                    "--seed",
                    str(seed),
                    "-o",
                    str(net_file),
                ],
                home,
                work,
            )
        else:
            _net_bounds(net)  # a readable SUMO network, named as the user gave it
            shutil.copyfile(net, net_file)
        x0, y0, x1, y1 = _net_bounds(net_file)
        # routes long enough to drive for the whole run: one leg is about half the net's
        # width plus height; at the default speed limit the run covers duration * v metres
        leg_m = max((x1 - x0 + y1 - y0) / 2, 1.0)
        intermediate = min(math.ceil(duration_s * DEFAULT_SPEED_MPS / leg_m), MAX_INTERMEDIATE)
        window = duration_s / 10
        period = window / vehicles
        trips = work / "trips.trips.xml"
        _run(
            "randomTrips.py",
            [
                sys.executable,
                str(random_trips),
                "-n",
                str(net_file),
                "-o",
                str(trips),
                "-b",
                "0",
                # departures at 0, p, ..., (N - 1) p: the end lies half a period after the last
                "-e",
                repr((vehicles - 0.5) * period),
                "--period",
                repr(period),
                "--intermediate",
                str(intermediate),
                "--seed",
                str(seed),
                "--prefix",
                "veh",
                "--validate",
            ],
            home,
            work,
        )
        fcd = work / "fcd.xml"
        _run(
            "sumo",
            [
                str(bin_dir / _exe("sumo")),
                "-n",
                str(net_file),
                "-r",
                str(trips),
                "--begin",
                "0",
                "--end",
                repr(float(duration_s)),
                "--step-length",
                repr(float(step_s)),
                "--seed",
                str(seed),
                "--time-to-teleport",
                "-1",
                "--collision.action",
                "warn",
                "--no-step-log",
                "--no-warnings",
                "--fcd-output",
                str(fcd),
            ],
            home,
            work,
        )
        try:
            return fcd_to_csv(fcd, out)
        except ScenarioError:
            raise TwinedgeError(
                f"sumo ran but no vehicle departed within {duration_s:g} s "
                "(the network may have no route between its edges); expected vehicle samples"
            ) from None
