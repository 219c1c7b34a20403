"""Calibration: what one report costs an edge host on this machine, as scenario values.

The simulator's processing model has two host terms (docs/models.md): a fixed time per
report for the host's durable commit (``commit_ms`` of a host node) and the twin's work
(``work_gcycles``) divided by the host's ``cpu_ghz`` and stretched by its queueing
factor. Their defaults know nothing of a machine. :func:`calibrate` measures them here,
in a step of its own (never from the run being predicted), the way iFogSim users set a
host's MIPS from a benchmark of the machine:

* **commit**: one report's record appended to a real :class:`~twinedge.edge.log.EdgeLog`
  (SQLite WAL, ``synchronous=FULL``: a durable commit), called directly, ``reports``
  times spaced by ``interval_ms`` (a commit right after another finds the disk and
  caches warm and is several times quicker than one at a device's pace). ``commit_ms``
  is their mean: the write itself, nothing of the host around it.
* **host**: the same reports applied to a twin of a real
  :class:`~twinedge.edge.host.EdgeHost` (behaviour hook, JSON merge, batch, the commit
  from its writer, the hops between its event loop and that thread), spaced the same way.
* **mqtt**: the same reports published at QoS 1 by a raw MQTT connection (a few lines
  of asyncio, no client library) to the host's own device endpoint (the embedded MQTT
  server ``twinedge host`` runs, in this process), publish -> PUBACK at the socket: what
  a device sees of a host, but the network.

The three are interleaved report by report (a commit, an apply, a publish, each after
``interval_ms``), so that a busy moment of the machine weighs on all three alike. What a
report takes beyond the commit, ``host_ms = mqtt - commit`` (means, at least 0),
is the host's own time per report (MQTT, behaviour, merge, batch, thread hops);
``work_gcycles = host_ms / 1000 * cpu_ghz`` makes the model's idle service time on a
host of ``cpu_ghz`` equal it. Not in it: the network (the model has its own), a device's
client, and other processes on the same cores (the model's queueing stands for load).

**A curve** (:func:`calibrate_curve`, ``twinedge calibrate --spacings-ms 0,2,5,10,20,50``):
what a report costs depends on how far apart reports come. One that finds the processes
idle pays their wake-up (a commit 20 ms after the previous one costs some machines twice a
back-to-back one); at a few ms apart they stay awake and commit in groups. So the commit
and the MQTT phases are measured at each spacing ``g`` (reports started ``g`` ms apart,
start to start; at ``g = 0`` back to back), each phase on its own (the MQTT phase
against a host, its endpoint and its writer thread in a process of their own, as a live
host is: each report wakes that process and, with its PUBACK, this one), in rounds of
:data:`CHUNK` reports per spacing (the first of each chunk, which follows another
spacing, left out) so a busy moment of the machine weighs on every spacing alike. The
host's own time is taken where the processes are awake, at the shortest spacing:
``host_ms = mqtt(g_min) - commit(g_min)`` (means, at least 0), ``work_gcycles = host_ms /
1000 * cpu_ghz`` as above; the rest of a report's time at each spacing is the curve,
``commit_curve_ms(g) = mqtt(g) - host_ms`` (at least 0): the durable commit and the
wake-ups it brings. The model reads the curve at each host's report spacing in the
simulation, ``1000 / (sum of the update_hz of its twins)`` ms, linear between points
(docs/models.md), so an idle host's processing time at spacing ``g`` is ``mqtt(g)``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twinedge.edge.errors import EdgeError
from twinedge.edge.host import EdgeHost
from twinedge.edge.log import EdgeLog, LogRecord

#: most reports a calibration makes (a few minutes at the default spacing)
MAX_REPORTS = 100_000
#: longest spacing of two reports, ms
MAX_INTERVAL_MS = 10_000.0


class CalibrationError(EdgeError):
    """A calibration cannot run: a bad option or a directory it cannot use."""


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` measured, ms, and the scenario values it gives.

    Attributes:
        reports: reports per phase.
        interval_ms: the spacing of two reports.
        cpu_ghz: the host ``cpu_ghz`` that ``work_gcycles`` is for.
        commit_p50_ms, commit_mean_ms: one durable commit (``EdgeLog.append``).
        apply_p50_ms, apply_mean_ms: one report applied by a host, durable.
        apply_cpu_ms: the process's CPU time per applied report (all its threads).
        mqtt_p50_ms, mqtt_mean_ms: one report published to the host's MQTT endpoint,
            to its PUBACK.
        host_ms: ``mqtt_mean_ms - commit_mean_ms``, at least 0.
        commit_ms: the scenario value of a host node (``commit_mean_ms``).
        work_gcycles: the scenario value of a twin (``host_ms / 1000 * cpu_ghz``).
    """

    reports: int
    interval_ms: float
    cpu_ghz: float
    commit_p50_ms: float
    commit_mean_ms: float
    apply_p50_ms: float
    apply_mean_ms: float
    apply_cpu_ms: float
    mqtt_p50_ms: float
    mqtt_mean_ms: float
    host_ms: float
    commit_ms: float
    work_gcycles: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The result as text: what was measured, then the scenario values."""
        return [
            f"durable commit (EdgeLog.append, synchronous=FULL), {self.reports} "
            f"reports, phases interleaved {self.interval_ms:g} ms apart: p50 {self.commit_p50_ms:.3f} ms, "
            f"mean {self.commit_mean_ms:.3f} ms",
            f"report applied by an EdgeHost (behaviour, merge, commit, thread hops): p50 "
            f"{self.apply_p50_ms:.3f} ms, mean {self.apply_mean_ms:.3f} ms, CPU "
            f"{self.apply_cpu_ms:.3f} ms",
            f"report published to the host's MQTT endpoint -> PUBACK: p50 {self.mqtt_p50_ms:.3f} "
            f"ms, mean {self.mqtt_mean_ms:.3f} ms; beyond the commit {self.host_ms:.3f} ms",
            "scenario values for this machine (the network is the model's own):",
            f"  every host node:  commit_ms: {self.commit_ms:.4g}",
            f"  every twin:       work_gcycles: {self.work_gcycles:.4g}   "
            f"(for hosts of cpu_ghz {self.cpu_ghz:g}: work / cpu = {self.host_ms:.3f} ms)",
        ]


#: reports per spacing in one round of a curve (one more is made and left out)
CHUNK = 10
#: most spacings of a curve
MAX_SPACINGS = 16


@dataclass(frozen=True)
class CurvePoint:
    """One spacing of a curve, ms: the commit and the MQTT phase there, and the curve's
    value (``mqtt_mean_ms - host_ms``, at least 0)."""

    spacing_ms: float
    commit_p50_ms: float
    commit_mean_ms: float
    mqtt_p50_ms: float
    mqtt_mean_ms: float
    commit_curve_ms: float


@dataclass(frozen=True)
class CurveCalibration:
    """What :func:`calibrate_curve` measured and the scenario values it gives.

    Attributes:
        reports: reports per spacing and phase.
        cpu_ghz: the host ``cpu_ghz`` that ``work_gcycles`` is for.
        points: one per spacing, spacings increasing.
        host_ms: the host's own time per report at the shortest spacing,
            ``mqtt - commit`` (means, at least 0).
        work_gcycles: the scenario value of a twin (``host_ms / 1000 * cpu_ghz``).
        commit_curve_ms: the scenario value of a host node, ``[[spacing_ms, ms], ...]``.
    """

    reports: int
    cpu_ghz: float
    points: tuple[CurvePoint, ...]
    host_ms: float
    work_gcycles: float
    commit_curve_ms: tuple[tuple[float, float], ...]

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["commit_curve_ms"] = [list(p) for p in self.commit_curve_ms]
        return doc

    def curve_text(self) -> str:
        """``commit_curve_ms`` as a YAML flow list."""
        return "[" + ", ".join(f"[{g:g}, {c:.4g}]" for g, c in self.commit_curve_ms) + "]"

    def lines(self) -> list[str]:
        """The result as text: a row per spacing, then the scenario values."""
        out = [
            f"{self.reports} reports per spacing and phase (rounds of {CHUNK}); ms, p50 / mean:",
            "  spacing | durable commit    | via MQTT -> PUBACK | curve (mqtt - host_ms)",
        ]
        for p in self.points:
            out.append(
                f"  {p.spacing_ms:7g} | {p.commit_p50_ms:7.3f} / {p.commit_mean_ms:7.3f} | "
                f"{p.mqtt_p50_ms:7.3f} / {p.mqtt_mean_ms:7.3f}  | {p.commit_curve_ms:.4g}"
            )
        out += [
            f"the host's own time at the shortest spacing (mqtt - commit): {self.host_ms:.3f} ms",
            "scenario values for this machine (the network is the model's own):",
            f"  every host node:  commit_curve_ms: {self.curve_text()}",
            f"  every twin:       work_gcycles: {self.work_gcycles:.4g}   "
            f"(for hosts of cpu_ghz {self.cpu_ghz:g}: work / cpu = {self.host_ms:.3f} ms)",
        ]
        return out


def parse_spacings(text: str) -> list[float]:
    """``--spacings-ms``: comma-separated spacings, ms, increasing, 0..:data:`MAX_INTERVAL_MS`.

    Raises:
        CalibrationError: not numbers, out of range, not increasing, or too many.

    Examples:
        >>> parse_spacings("0, 2,5")
        [0.0, 2.0, 5.0]
        >>> parse_spacings("5,2")
        Traceback (most recent call last):
        ...
        twinedge.edge.calibrate.CalibrationError: --spacings-ms: 2 after 5; expected spacings in increasing order, each once
    """
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise CalibrationError(
            f"--spacings-ms: got {text!r}; expected comma-separated milliseconds, e.g. 0,2,5,10,20,50"
        ) from None
    check_spacings(values)
    return values


def check_spacings(spacings: list[float]) -> None:
    """Refuse spacings a curve cannot use (see :func:`parse_spacings`).

    Raises:
        CalibrationError: the first problem, naming ``--spacings-ms``.
    """
    if not 1 <= len(spacings) <= MAX_SPACINGS:
        raise CalibrationError(
            f"--spacings-ms: got {len(spacings)} spacings; expected 1..{MAX_SPACINGS}"
        )
    for v in spacings:
        if not (isinstance(v, int | float) and math.isfinite(v) and 0 <= v <= MAX_INTERVAL_MS):
            raise CalibrationError(
                f"--spacings-ms: got {v!r}; expected spacings of two reports, "
                f"0 <= ms <= {MAX_INTERVAL_MS:g}"
            )
    for a, b in itertools.pairwise(spacings):
        if not b > a:
            raise CalibrationError(
                f"--spacings-ms: {b:g} after {a:g}; expected spacings in increasing order, each once"
            )


def check_options(reports: int, interval_ms: float, cpu_ghz: float) -> None:
    """Refuse options a calibration cannot use, one line naming the option.

    Raises:
        CalibrationError: the first bad option.

    Examples:
        >>> check_options(0, 20.0, 10.0)
        Traceback (most recent call last):
        ...
        twinedge.edge.calibrate.CalibrationError: --reports: got 0; expected 2..100000 reports per phase
    """
    if isinstance(reports, bool) or not isinstance(reports, int) or not 2 <= reports <= MAX_REPORTS:
        raise CalibrationError(
            f"--reports: got {reports!r}; expected 2..{MAX_REPORTS} reports per phase"
        )
    if not (
        isinstance(interval_ms, int | float)
        and math.isfinite(interval_ms)
        and 0 <= interval_ms <= MAX_INTERVAL_MS
    ):
        raise CalibrationError(
            f"--interval-ms: got {interval_ms!r}; expected the spacing of two reports, "
            f"0 <= ms <= {MAX_INTERVAL_MS:g}"
        )
    if not (isinstance(cpu_ghz, int | float) and math.isfinite(cpu_ghz) and cpu_ghz > 0):
        raise CalibrationError(
            f"--cpu-ghz: got {cpu_ghz!r}; expected the cpu_ghz of the scenario's hosts, > 0"
        )


def _report(i: int) -> dict[str, Any]:
    """A report as ``twinedge devices`` makes them (about 130 bytes of JSON)."""
    return {
        "position": {
            "x_m": 812.4 + i % 100,
            "y_m": 90.125,
            "vx_mps": 3.25,
            "vy_mps": -1.0,
            "t_s": round(i * 0.1, 6),
            "seq": i + 1,
        }
    }


async def _pause(interval_ms: float) -> None:
    if interval_ms > 0:
        await asyncio.sleep(interval_ms / 1000.0)


PASSWORD = "calibrate"
THING = "calibrate:twin"


def _packet(kind: int, body: bytes) -> bytes:
    """An MQTT 3.1.1 packet: fixed header ``kind``, remaining length, ``body``."""
    n, length = len(body), bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        length.append(digit | (0x80 if n else 0))
        if not n:
            break
    return bytes([kind]) + bytes(length) + body


def _utf8(text: str) -> bytes:
    b = text.encode()
    return len(b).to_bytes(2, "big") + b


class _Endpoint:
    """A host's device endpoint (the embedded MQTT server over an :class:`EdgeHost`, as
    ``twinedge host`` runs it) with one raw MQTT 3.1.1 connection to it."""

    def __init__(self, host: EdgeHost | None):
        self.host = host
        self.broker: Any = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.topic = _utf8(f"twinedge/{THING}/reported")

    async def start(self) -> None:
        """The endpoint in this process and a connection to it."""
        await self.connect(await self.serve())

    async def serve(self) -> int:
        """Start the endpoint over ``self.host`` on a free loopback port; the port."""
        import socket

        from twinedge.edge.server import DeviceSide
        from twinedge.runtime.mqtt import start_mqtt

        host = self.host

        class Server:  # what the device endpoint asks of a host process
            def __init__(self) -> None:
                self.host = host

            def redirect(self, thing_id: str) -> None:  # pragma: no cover - never moved
                pass

        class Side(DeviceSide):
            async def authenticate_device(self, thing_id: str, password: str | None) -> bool:
                return password == PASSWORD

        with socket.socket() as probe:  # a free port on the loopback
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.broker = await start_mqtt(Side(Server()), None, host="127.0.0.1", port=port)  # type: ignore[arg-type]
        return int(port)

    async def connect(self, port: int) -> None:
        """The raw MQTT connection to the endpoint on ``port``."""
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        flags = 0xC2  # user name, password, clean session
        connect = (
            _utf8("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big")
            + _utf8(THING) + _utf8(THING) + _utf8(PASSWORD)
        )  # fmt: skip
        self.writer.write(_packet(0x10, connect))
        connack = await asyncio.wait_for(self.reader.readexactly(4), 10)
        if connack[0] != 0x20 or connack[3] != 0:
            raise CalibrationError(f"the host's MQTT endpoint refused the connection: {connack!r}")

    async def publish(self, i: int, payload: bytes) -> float:
        """One report at QoS 1: publish -> PUBACK at the socket, ms."""
        assert self.reader is not None and self.writer is not None
        pid = (i % 65535) + 1
        packet = _packet(0x32, self.topic + pid.to_bytes(2, "big") + payload)
        t0 = time.perf_counter()
        self.writer.write(packet)
        ack = await asyncio.wait_for(self.reader.readexactly(4), 30)
        ms = (time.perf_counter() - t0) * 1000.0
        if ack[0] != 0x40 or int.from_bytes(ack[2:4], "big") != pid:
            raise CalibrationError(f"the host's MQTT endpoint answered {ack!r}, not a PUBACK")
        return ms

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.broker is not None:
            await self.broker.stop()


async def _measure(
    folder: Path, reports: int, interval_ms: float
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """The three phases interleaved, report by report, so that each sees the machine as
    the others do (a busy moment hits all three, not one): ``(commit_ms, apply_ms,
    apply_cpu_ms per report, mqtt_ms)``."""
    import json

    log = EdgeLog.open(folder / "commit.sqlite", "calibrate")
    applier: EdgeHost | None = None
    served: EdgeHost | None = None
    endpoint: _Endpoint | None = None
    try:
        applier = EdgeHost.open(folder / "host.sqlite", "calibrate")
        await applier.place(THING, {"features": {}})
        served = EdgeHost.open(folder / "mqtt.sqlite", "calibrate")
        await served.place(THING, {"features": {}})
        endpoint = _Endpoint(served)
        await endpoint.start()
        commit, apply, mqtt = np.empty(reports), np.empty(reports), np.empty(reports)
        cpu_s = 0.0
        for i in range(reports):
            report = _report(i)
            data = json.dumps(report, separators=(",", ":")).encode()
            rec = LogRecord(0, THING, 1, i + 1, "change", data, time.time())
            t0 = time.perf_counter()
            log.append([rec])
            commit[i] = (time.perf_counter() - t0) * 1000.0
            await _pause(interval_ms)
            c0, t0 = time.process_time(), time.perf_counter()
            await applier.apply(THING, report)
            apply[i] = (time.perf_counter() - t0) * 1000.0
            cpu_s += time.process_time() - c0
            await _pause(interval_ms)
            mqtt[i] = await endpoint.publish(i, data)
            await _pause(interval_ms)
        return commit, apply, cpu_s * 1000.0 / reports, mqtt
    finally:
        if endpoint is not None:
            await endpoint.stop()
        for h in (applier, served):
            if h is not None:
                await h.close()
        log.close()


def _scratch(directory: str | Path | None) -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for the calibration's logs, in ``directory`` if given.

    Raises:
        CalibrationError: ``directory`` is not a directory, or no files can be made in it.
    """
    if directory is not None and not Path(directory).is_dir():
        raise CalibrationError(f"--dir: {directory} is not a directory")
    try:
        return tempfile.TemporaryDirectory(prefix="twinedge-calibrate-", dir=directory)
    except OSError as exc:
        raise CalibrationError(f"--dir: cannot create files in {directory}: {exc}") from None


async def calibrate(
    directory: str | Path | None = None,
    *,
    reports: int = 200,
    interval_ms: float = 20.0,
    cpu_ghz: float = 1.0,
) -> Calibration:
    """Measure this machine's durable commit and a host's time per report (see the
    module docstring).

    Parameters:
        directory: where the logs are made (on the disk the hosts will use; default a
            temporary directory). Two files are created and removed.
        reports: reports per phase (2..:data:`MAX_REPORTS`).
        interval_ms: spacing of two reports (0: back to back).
        cpu_ghz: the ``cpu_ghz`` of the scenario's hosts, for ``work_gcycles``.

    Raises:
        CalibrationError: a bad option, or ``directory`` is not a writable directory.
        EdgeLogError: SQLite cannot commit there.

    Examples:
        >>> c = asyncio.run(calibrate(reports=3, interval_ms=0, cpu_ghz=10))
        >>> c.commit_ms > 0 and c.apply_mean_ms > 0, c.commit_ms == c.commit_mean_ms
        (True, True)
    """
    check_options(reports, interval_ms, cpu_ghz)
    with _scratch(directory) as d:
        commit, apply, cpu_ms, mqtt = await _measure(Path(d), reports, interval_ms)
    commit_mean, apply_mean = float(commit.mean()), float(apply.mean())
    host_ms = max(float(mqtt.mean()) - commit_mean, 0.0)
    return Calibration(
        reports=reports,
        interval_ms=float(interval_ms),
        cpu_ghz=float(cpu_ghz),
        commit_p50_ms=round(float(np.median(commit)), 4),
        commit_mean_ms=round(commit_mean, 4),
        apply_p50_ms=round(float(np.median(apply)), 4),
        apply_mean_ms=round(apply_mean, 4),
        apply_cpu_ms=round(cpu_ms, 4),
        mqtt_p50_ms=round(float(np.median(mqtt)), 4),
        mqtt_mean_ms=round(float(mqtt.mean()), 4),
        host_ms=round(host_ms, 4),
        commit_ms=round(commit_mean, 4),
        work_gcycles=float(f"{host_ms / 1000.0 * cpu_ghz:.4g}"),
    )


async def _paced(n: int, spacing_ms: float, op: Any) -> np.ndarray:
    """``n`` calls of ``await op(i)`` started ``spacing_ms`` apart (start to start; back
    to back at 0), the time of each, ms."""
    out = np.empty(n)
    loop = asyncio.get_running_loop()
    for i in range(n):
        t0 = loop.time()
        out[i] = await op(i)
        if spacing_ms > 0:
            left = t0 + spacing_ms / 1000.0 - loop.time()
            if left > 0:
                await asyncio.sleep(left)
    return out


def _endpoint_process(folder: str, conn: Any) -> None:  # pragma: no cover - a child process
    """The body of the curve's host process: an :class:`EdgeHost` with its MQTT endpoint
    on a free port (sent on ``conn``), served until ``conn`` says stop."""

    async def main() -> None:
        host = EdgeHost.open(Path(folder) / "mqtt.sqlite", "calibrate")
        endpoint = _Endpoint(host)
        try:
            await host.place(THING, {"features": {}})
            conn.send(await endpoint.serve())
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        finally:
            if endpoint.broker is not None:
                await endpoint.broker.stop()
            await host.close()

    try:
        asyncio.run(main())
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")


class _HostProcess:
    """:func:`_endpoint_process` in a process of its own (as a live host is), and a raw
    MQTT connection to its endpoint from this one."""

    def __init__(self, folder: Path):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_endpoint_process, args=(str(folder), child), daemon=True)
        self.client = _Endpoint(None)

    async def start(self) -> None:
        self.proc.start()
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self.conn.poll, 120)
        answer = self.conn.recv() if ready else "no answer in 120 s"
        if not isinstance(answer, int):
            raise CalibrationError(f"the calibration's host process did not start: {answer}")
        await self.client.connect(answer)

    async def publish(self, i: int, payload: bytes) -> float:
        return await self.client.publish(i, payload)

    async def stop(self) -> None:
        await self.client.stop()
        if self.proc.is_alive():
            self.conn.send("stop")
            await asyncio.get_running_loop().run_in_executor(None, self.proc.join, 30)
        if self.proc.is_alive():  # pragma: no cover - a host that does not stop
            self.proc.kill()
            self.proc.join()


async def _measure_curve(
    folder: Path, reports: int, spacings: list[float]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per spacing, ``(commit_ms, mqtt_ms)`` of ``reports`` reports each, measured in
    rounds (see the module docstring)."""
    import json

    log = EdgeLog.open(folder / "commit.sqlite", "calibrate")
    endpoint: _HostProcess | None = None
    commit: list[list[np.ndarray]] = [[] for _ in spacings]
    mqtt: list[list[np.ndarray]] = [[] for _ in spacings]
    seq = 0
    try:
        endpoint = _HostProcess(folder)
        await endpoint.start()
        ep = endpoint

        async def one_commit(i: int) -> float:
            nonlocal seq
            seq += 1
            data = json.dumps(_report(seq), separators=(",", ":")).encode()
            rec = LogRecord(0, THING, 1, seq, "change", data, time.time())
            t0 = time.perf_counter()
            log.append([rec])
            return (time.perf_counter() - t0) * 1000.0

        async def one_publish(i: int) -> float:
            nonlocal seq
            seq += 1
            return await ep.publish(seq, json.dumps(_report(seq), separators=(",", ":")).encode())

        made = 0
        while made < reports:
            n = min(CHUNK, reports - made)
            for k, g in enumerate(spacings):
                commit[k].append((await _paced(n + 1, g, one_commit))[1:])
                mqtt[k].append((await _paced(n + 1, g, one_publish))[1:])
            made += n
        return [(np.concatenate(c), np.concatenate(m)) for c, m in zip(commit, mqtt, strict=True)]
    finally:
        if endpoint is not None:
            await endpoint.stop()
        log.close()


def curve_values(
    spacings: list[float], commit: list[np.ndarray], mqtt: list[np.ndarray], cpu_ghz: float
) -> tuple[float, float, list[float]]:
    """The scenario values from what a curve measured: ``(host_ms, work_gcycles,
    commit_curve_ms per spacing)`` by the module's formulas (means; ``host_ms`` at the
    shortest spacing; every value at least 0).

    Examples:
        >>> c = [np.array([1.0, 3.0]), np.array([4.0, 4.0])]      # commit: means 2, 4
        >>> m = [np.array([5.0, 5.0]), np.array([9.0, 11.0])]     # mqtt: means 5, 10
        >>> curve_values([0.0, 20.0], c, m, cpu_ghz=10.0)          # host 5 - 2 = 3 ms
        (3.0, 0.03, [2.0, 7.0])
    """
    host_ms = max(float(mqtt[0].mean()) - float(commit[0].mean()), 0.0)
    curve = [max(float(x.mean()) - host_ms, 0.0) for x in mqtt]
    return host_ms, float(f"{host_ms / 1000.0 * cpu_ghz:.4g}"), curve


async def calibrate_curve(
    directory: str | Path | None = None,
    *,
    reports: int = 100,
    spacings_ms: list[float] | None = None,
    cpu_ghz: float = 1.0,
) -> CurveCalibration:
    """Measure a commit curve: the commit and a report through a host's MQTT endpoint
    at each of ``spacings_ms`` (see the module docstring).

    Parameters:
        directory: where the logs are made (default a temporary directory).
        reports: reports per spacing and phase (2..:data:`MAX_REPORTS`).
        spacings_ms: the spacings, increasing (default 0, 2, 5, 10, 20, 50).
        cpu_ghz: the ``cpu_ghz`` of the scenario's hosts, for ``work_gcycles``.

    Raises:
        CalibrationError: a bad option, or ``directory`` is not a writable directory.
        EdgeLogError: SQLite cannot commit there.

    Examples:
        >>> c = asyncio.run(calibrate_curve(reports=2, spacings_ms=[0, 1], cpu_ghz=10))
        >>> [g for g, _ in c.commit_curve_ms], all(v >= 0 for _, v in c.commit_curve_ms)
        ([0.0, 1.0], True)
    """
    spacings = [float(g) for g in (DEFAULT_SPACINGS_MS if spacings_ms is None else spacings_ms)]
    check_options(reports, 0.0, cpu_ghz)
    check_spacings(spacings)
    with _scratch(directory) as d:
        measured = await _measure_curve(Path(d), reports, spacings)
    commit = [c for c, _ in measured]
    mqtt = [m for _, m in measured]
    host_ms, work, curve = curve_values(spacings, commit, mqtt, cpu_ghz)
    points = tuple(
        CurvePoint(
            spacing_ms=g,
            commit_p50_ms=round(float(np.median(c)), 4),
            commit_mean_ms=round(float(c.mean()), 4),
            mqtt_p50_ms=round(float(np.median(m)), 4),
            mqtt_mean_ms=round(float(m.mean()), 4),
            commit_curve_ms=round(v, 4),
        )
        for g, c, m, v in zip(spacings, commit, mqtt, curve, strict=True)
    )
    return CurveCalibration(
        reports=reports,
        cpu_ghz=float(cpu_ghz),
        points=points,
        host_ms=round(host_ms, 4),
        work_gcycles=work,
        commit_curve_ms=tuple((g, float(f"{v:.4g}")) for g, v in zip(spacings, curve, strict=True)),
    )


#: the spacings a curve measures by default, ms
DEFAULT_SPACINGS_MS = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0)


def scenario_cpu_ghz(source: str) -> float:
    """The ``cpu_ghz`` of the hosts of scenario ``source`` (a file or built-in name).

    Raises:
        CalibrationError: its hosts differ in ``cpu_ghz`` (give ``--cpu-ghz``).
        ScenarioError: the scenario cannot be loaded or built.
    """
    from twinedge.scenario import load_scenario
    from twinedge.world import build_world

    w = build_world(load_scenario(source), np.random.default_rng(0), network_only=True)
    cpus = sorted({float(c) for c in w.host_cpu_ghz})
    if len(cpus) != 1:
        raise CalibrationError(
            f"--scenario: the hosts of {source} have {len(cpus)} different cpu_ghz "
            f"({', '.join(f'{c:g}' for c in cpus[:5])}{', ...' if len(cpus) > 5 else ''}); "
            "give the one to calibrate for with --cpu-ghz"
        )
    return cpus[0]


def command(
    reports: int = 200,
    interval_ms: float = 20.0,
    cpu_ghz: float | None = None,
    scenario: str | None = None,
    directory: str | None = None,
    json_out: bool = False,
    spacings_ms: str | None = None,
) -> None:
    """``twinedge calibrate`` (mounted by :mod:`twinedge.cli`): measure, print; with
    ``spacings_ms`` (``"0,2,5"``) a curve (:func:`calibrate_curve`).

    Raises:
        CalibrationError: a bad option.
    """
    import json

    spacings = None if spacings_ms is None else parse_spacings(spacings_ms)
    if cpu_ghz is None:
        cpu_ghz = 1.0 if scenario is None else scenario_cpu_ghz(scenario)
    check_options(reports, interval_ms, cpu_ghz)
    c: Calibration | CurveCalibration
    if spacings is not None:
        c = asyncio.run(
            calibrate_curve(directory, reports=reports, spacings_ms=spacings, cpu_ghz=cpu_ghz)
        )
    else:
        c = asyncio.run(
            calibrate(directory, reports=reports, interval_ms=interval_ms, cpu_ghz=cpu_ghz)
        )
    if json_out:
        print(json.dumps(c.to_json(), indent=1))
    else:
        print("\n".join(c.lines()))
