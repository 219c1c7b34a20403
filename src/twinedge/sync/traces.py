"""The sender rule replayed on recorded traces: uplink bytes against the receiver's error.

A trace is the positions of entities over time, as every trace mobility reads them
(:func:`twinedge.world.mobility.read_trace`: CSV traces, iFogSim2 user paths, SUMO
floating car data); latitude and longitude become metres about the trace's mean point
(:func:`twinedge.world.geo.latlon_to_xy_m`). :func:`simulate` runs a
:class:`~twinedge.sync.sender.SenderArray` over every sample, in time order, and counts:

* the reports sent and their bytes, against sending every sample (the same rate, a
  plain sample's bytes): ``bytes_saved = 1 − report_bytes / full_bytes``;
* the receiver's error at each sample time (0 where a report was sent), its mean, 95th
  percentile and maximum, and the largest age of a report at a sample;
* the same per sample time (the series of bytes and error over time).

:func:`resample` samples each entity at a fixed interval by linear interpolation
between its points, as a trace mobility replays them in ``twinedge run``.

Examples:
    >>> ids = ["a"]
    >>> t = np.arange(6.0)
    >>> xy = np.column_stack([10.0 * t, np.zeros(6)])
    >>> tr = Trace("line", ids, np.array([0, 6]), t, xy)
    >>> r = simulate(tr, "first-order", threshold_m=1.0, heartbeat_s=None)
    >>> r.samples, r.reports, round(r.bytes_saved, 3)
    (6, 2, 0.571)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twinedge.sync.errors import SyncError
from twinedge.sync.predict import PREDICTORS
from twinedge.sync.sender import ByteModel, SenderArray

__all__ = ["SyncResult", "Trace", "load_traces", "resample", "simulate"]


@dataclass(frozen=True)
class Trace:
    """Positions of entities over time, grouped by entity then time.

    Attributes:
        name: what the trace is called in tables.
        ids: the entities; the samples of ``ids[k]`` are rows
            ``offsets[k]:offsets[k + 1]``.
        offsets: ``(len(ids) + 1,)`` row offsets.
        t_s: ``(m,)`` sample times (seconds).
        xy_m: ``(m, 2)`` positions (metres).
    """

    name: str
    ids: list[str]
    offsets: np.ndarray
    t_s: np.ndarray
    xy_m: np.ndarray

    @property
    def samples(self) -> int:
        """The number of samples."""
        return int(self.t_s.size)


def load_traces(paths: Sequence[Path], name: str | None = None, path_step_s: float = 10.0) -> Trace:
    """Read trace files into one trace (entities of all files; ids must differ).

    Parameters:
        paths: trace files in any format :func:`twinedge.world.mobility.read_trace`
            reads (a path file's entity is named after the file).
        name: the trace's name (default: the first file's name without extension).
        path_step_s: seconds between the points of a path file.

    Raises:
        ScenarioError: a file that cannot be read (the file and line are named).
        SyncError: no file, files that mix metres and latitude/longitude, or an entity
            id in two files.
    """
    from twinedge.world.geo import latlon_to_xy_m
    from twinedge.world.mobility import read_trace

    if not paths:
        raise SyncError("no trace file given")
    ids: list[str] = []
    ts: list[np.ndarray] = []
    pts: list[np.ndarray] = []
    lls: set[bool] = set()
    for p in paths:
        pid, off, t, xy, is_ll = read_trace(Path(p), path_step_s)
        lls.add(is_ll)
        for k, i in enumerate(pid):
            ids.append(i)
            ts.append(t[off[k] : off[k + 1]])
            pts.append(xy[off[k] : off[k + 1]])
    if len(lls) > 1:
        raise SyncError("the trace files mix metres and latitude/longitude; give one kind")
    if len(set(ids)) < len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise SyncError(f"entity ids in more than one trace file: {', '.join(dup[:5])}")
    t_all = np.concatenate(ts)
    xy_all = np.concatenate(pts)
    if lls.pop():
        lat, lon = xy_all[:, 0], xy_all[:, 1]
        xy_all = latlon_to_xy_m(lat, lon, float(lat.mean()), float(lon.mean()))
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in ts])])
    label = name or Path(paths[0]).name.split(".")[0]
    return Trace(label, ids, offsets, t_all, xy_all)


def resample(trace: Trace, step_s: float) -> Trace:
    """Each entity sampled every ``step_s`` seconds from its first time to its last, by
    linear interpolation between its points.

    Raises:
        SyncError: a step that is not a positive number.

    Examples:
        >>> tr = Trace("a", ["u"], np.array([0, 2]), np.array([0.0, 10.0]),
        ...            np.array([[0.0, 0.0], [100.0, 0.0]]))
        >>> resample(tr, 2.5).xy_m[:, 0].tolist()
        [0.0, 25.0, 50.0, 75.0, 100.0]
    """
    if not (isinstance(step_s, int | float) and np.isfinite(step_s) and step_s > 0):
        raise SyncError(f"the resampling step must be a number of seconds > 0, got {step_s!r}")
    ts: list[np.ndarray] = []
    pts: list[np.ndarray] = []
    for k in range(len(trace.ids)):
        t = trace.t_s[trace.offsets[k] : trace.offsets[k + 1]]
        xy = trace.xy_m[trace.offsets[k] : trace.offsets[k + 1]]
        count = int(np.floor((t[-1] - t[0]) / step_s + 1e-9)) + 1
        tn = t[0] + step_s * np.arange(count)
        ts.append(tn)
        pts.append(np.column_stack([np.interp(tn, t, xy[:, 0]), np.interp(tn, t, xy[:, 1])]))
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in ts])])
    return Trace(trace.name, trace.ids, offsets, np.concatenate(ts), np.concatenate(pts))


@dataclass(frozen=True)
class SyncResult:
    """What :func:`simulate` measured for one predictor and threshold on one trace.

    Attributes:
        trace, predictor, threshold_m, heartbeat_s: what was run.
        samples: samples in the trace (what sending every sample sends).
        reports: reports the rule sent.
        report_bytes, full_bytes: uplink bytes of the reports and of every sample.
        bytes_saved: ``1 - report_bytes / full_bytes``.
        reports_saved: ``1 - reports / samples``.
        mean_error_m, p95_error_m, max_error_m: the receiver's error over all samples.
        max_age_s: the oldest report at a sample time (after the rule).
        t_s, reports_at, bytes_at, mean_error_at_m, max_error_at_m: per sample time.
    """

    trace: str
    predictor: str
    threshold_m: float
    heartbeat_s: float | None
    samples: int
    reports: int
    report_bytes: int
    full_bytes: int
    mean_error_m: float
    p95_error_m: float
    max_error_m: float
    max_age_s: float
    t_s: np.ndarray = field(repr=False)
    reports_at: np.ndarray = field(repr=False)
    bytes_at: np.ndarray = field(repr=False)
    mean_error_at_m: np.ndarray = field(repr=False)
    max_error_at_m: np.ndarray = field(repr=False)

    @property
    def bytes_saved(self) -> float:
        """The share of bytes saved against sending every sample."""
        return 1.0 - self.report_bytes / self.full_bytes

    @property
    def reports_saved(self) -> float:
        """The share of messages saved against sending every sample."""
        return 1.0 - self.reports / self.samples

    def row(self) -> dict[str, Any]:
        """The numbers as a flat JSON-ready dict (no series)."""
        return {
            "trace": self.trace,
            "predictor": self.predictor,
            "threshold_m": self.threshold_m,
            "heartbeat_s": self.heartbeat_s,
            "samples": self.samples,
            "reports": self.reports,
            "report_bytes": self.report_bytes,
            "full_bytes": self.full_bytes,
            "bytes_saved": round(self.bytes_saved, 6),
            "reports_saved": round(self.reports_saved, 6),
            "mean_error_m": round(self.mean_error_m, 6),
            "p95_error_m": round(self.p95_error_m, 6),
            "max_error_m": round(self.max_error_m, 6),
            "max_age_s": round(self.max_age_s, 6),
        }


def simulate(
    trace: Trace,
    predictor: str,
    threshold_m: float,
    heartbeat_s: float | None = 5.0,
    byte_model: ByteModel | None = None,
) -> SyncResult:
    """Replay the sender rule over a trace (velocities and accelerations estimated from
    the samples by backward differences, as a device without a speedometer would).

    Parameters:
        trace: the positions.
        predictor: a name of :data:`twinedge.sync.predict.PREDICTORS`.
        threshold_m: the sender's threshold (metres).
        heartbeat_s: the heartbeat (seconds), or ``None``.
        byte_model: the size of samples and reports (default :class:`ByteModel()`).

    Raises:
        SyncError: an unknown predictor, a bad threshold or heartbeat, an empty trace,
            or an entity with two samples at one time.
    """
    cls = PREDICTORS.get(predictor)
    if cls is None:
        raise SyncError(f"unknown predictor {predictor!r}; use one of {', '.join(PREDICTORS)}")
    if trace.samples == 0:
        raise SyncError(f"trace {trace.name!r} has no samples")
    bm = byte_model or ByteModel()
    n = len(trace.ids)
    sender = SenderArray(n, 2, cls.order, threshold_m, heartbeat_s)
    ent = np.repeat(np.arange(n), np.diff(trace.offsets))
    order = np.argsort(trace.t_s, kind="stable")
    t_sorted = trace.t_s[order]
    times, starts = np.unique(t_sorted, return_index=True)
    ends = np.append(starts[1:], t_sorted.size)
    value = np.zeros((n, 2))
    present = np.zeros(n, dtype=bool)
    rep_bytes = bm.report_bytes(cls.order, 2)
    reports_at = np.zeros(times.size, dtype=np.int64)
    mean_at = np.zeros(times.size)
    max_at = np.zeros(times.size)
    errors = np.empty(trace.samples)
    max_age = 0.0
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        rows = order[a:b]
        e = ent[rows]
        if np.unique(e).size < e.size:
            raise SyncError(
                f"trace {trace.name!r}: an entity has two samples at t_s={times[k]}; "
                "give one sample per entity and time"
            )
        present[:] = False
        present[e] = True
        value[e] = trace.xy_m[rows]
        sent = sender.step(times[k], value, present)
        err = sender.receiver_error[e]
        errors[a:b] = err
        reports_at[k] = int(sent.sum())
        mean_at[k] = float(err.mean())
        max_at[k] = float(err.max())
        max_age = max(max_age, float(sender.age_s[e].max()))
    reports = int(reports_at.sum())
    return SyncResult(
        trace=trace.name,
        predictor=predictor,
        threshold_m=float(threshold_m),
        heartbeat_s=heartbeat_s,
        samples=trace.samples,
        reports=reports,
        report_bytes=reports * rep_bytes,
        full_bytes=trace.samples * bm.sample_bytes(2),
        mean_error_m=float(errors.mean()),
        p95_error_m=float(np.percentile(errors, 95)),
        max_error_m=float(errors.max()),
        max_age_s=max_age,
        t_s=times,
        reports_at=reports_at,
        bytes_at=reports_at * rep_bytes,
        mean_error_at_m=mean_at,
        max_error_at_m=max_at,
    )
