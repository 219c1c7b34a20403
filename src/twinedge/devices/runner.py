"""The fleet: provision the devices, run them on one event loop, report on them.

Steps of :func:`run_fleet`:

1. The world of the scenario is built for the seed as ``twinedge run`` builds it
   (:class:`~twinedge.devices.motion.FleetMotion`); its first ``count`` entities get a
   device each.
2. Every device is provisioned over HTTP (:mod:`twinedge.devices.provision`).
3. One device connects to the broker and leaves again, so that a wrong ``--mqtt`` or a
   broker that does not know the device passwords fails at once with one message.
4. The virtual clock starts (``t_s = 0`` now; one virtual second per wall second) and
   every device connects, a few at a time (``connect_concurrency`` connection attempts
   in progress at once: each costs the service a password hash check), and reports at
   its rate (:mod:`twinedge.devices.client`).
5. The run stops when every device has ``reports`` reports acknowledged, after
   ``duration_s``, or on SIGINT/SIGTERM. Then no new reports are made; the ones in
   flight get ``drain_s`` to be acknowledged; a second signal stops at once.

Rates: ``rate_hz`` for every device when given; otherwise each entity's ``update_hz``,
at most :data:`DEFAULT_DEVICE_MAX_HZ`, and all of them scaled down together when their
sum would pass :data:`DEFAULT_FLEET_MAX_HZ` (a few thousand devices at the scenarios'
10-30 Hz would offer more than one service on a small machine takes while it also checks
the passwords of connecting devices; see docs/mqtt.md#throughput).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from twinedge import gcpauses
from twinedge.devices.client import Device, link_summary, parse_broker_url, percentiles_ms
from twinedge.devices.errors import DevicesError
from twinedge.devices.links import LinkDelay, LinkModel, check_delay_scale
from twinedge.devices.motion import Entity, FleetMotion
from twinedge.devices.provision import DeviceSpec, Provisioner, device_specs
from twinedge.scenario.schema import Scenario

DEFAULT_DEVICE_MAX_HZ = 10.0
DEFAULT_FLEET_MAX_HZ = 1000.0
MAX_RATE_HZ = 1000.0


@dataclass(frozen=True)
class FleetOptions:
    """What ``twinedge devices`` is asked to do (the command-line options).

    Parameters:
        count: devices, one per entity, the first ``count`` of the world.
        url: base URL of ``twinedge serve``'s HTTP API.
        mqtt: the broker the devices connect to first.
        api_key: an admin key of the service (provisioning).
        namespace: thing ids are ``namespace:entity_id``.
        domain: owner domain of the things when ``api_key`` is the service admin's
            (default: the namespace); a domain key always uses its own domain.
        rate_hz: reports per second of every device (default: see the module docstring).
        duration_s: stop after this long (default: the scenario's ``steps * step_s``,
            unless ``reports`` is given).
        reports: stop each device after this many acknowledged reports.
        seed: default the scenario's ``run.seed``.
        device_password: one password for every device (default: a random one each).
        progress_s: a progress line every this many seconds (0: none).
        drain_s: how long reports in flight may take to be acknowledged at the end.
        warmup_s: the summary's ``steady`` figures leave out the reports published in
            the first ``warmup_s`` seconds (the devices connecting, being redirected
            and logging in); 0: no ``steady`` figures.
        connect_concurrency: connection attempts in progress at once.
        max_inflight: unacknowledged reports per device at most.
        sync_threshold_m: predictive sync (docs/sync.md): every device samples at its
            rate and sends a report only when its twin's prediction is more than this
            many metres off or ``sync_heartbeat_s`` passed; ``None``: every sample.
        sync_heartbeat_s: the longest time between two reports under predictive sync.
        sync_predictor: the predictor device and twin share: ``constant``,
            ``first-order`` or ``second-order``.
        emulate_links: every report waits the one-way delay the scenario's network
            model gives its path, and its PUBACK likewise (:mod:`twinedge.devices.links`).
        link_delay_scale: a factor of every emulated delay (1: the model).
    """

    count: int
    url: str = "http://127.0.0.1:8080"
    mqtt: str = "mqtt://127.0.0.1:1883"
    api_key: str = ""
    namespace: str = "fleet"
    domain: str | None = None
    rate_hz: float | None = None
    duration_s: float | None = None
    reports: int | None = None
    seed: int | None = None
    device_password: str | None = None
    progress_s: float = 5.0
    drain_s: float = 10.0
    warmup_s: float = 0.0
    connect_concurrency: int = 8
    max_inflight: int = 16
    sync_threshold_m: float | None = None
    sync_heartbeat_s: float = 5.0
    sync_predictor: str = "first-order"
    emulate_links: bool = False
    link_delay_scale: float = 1.0

    def check(self) -> None:
        """Refuse options that cannot work, one line naming the option.

        Raises:
            DevicesError: the first bad option.
        """
        if self.count < 1:
            raise DevicesError(f"--count: got {self.count}; expected at least 1")
        if self.rate_hz is not None and not (
            math.isfinite(self.rate_hz) and 0 < self.rate_hz <= MAX_RATE_HZ
        ):
            raise DevicesError(
                f"--rate-hz: got {self.rate_hz}; expected reports per second, 0 < rate <= {MAX_RATE_HZ:g}"
            )
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise DevicesError(f"--duration-s: got {self.duration_s}; expected seconds > 0")
        if not (math.isfinite(self.warmup_s) and self.warmup_s >= 0):
            raise DevicesError(f"--warmup-s: got {self.warmup_s}; expected seconds >= 0")
        if self.reports is not None and self.reports < 1:
            raise DevicesError(f"--reports: got {self.reports}; expected at least 1")
        check_delay_scale(self.link_delay_scale)
        if self.seed is not None and self.seed < 0:
            raise DevicesError(f"--seed: got {self.seed}; expected an integer >= 0")
        try:
            parse_broker_url(self.mqtt)
        except ValueError as exc:
            raise DevicesError(f"--mqtt: {exc}") from None
        if self.sync_threshold_m is not None:
            from twinedge.sync import SyncError, make_predictor

            if not (math.isfinite(self.sync_threshold_m) and self.sync_threshold_m >= 0):
                raise DevicesError(
                    f"--sync-threshold-m: got {self.sync_threshold_m}; expected metres >= 0"
                )
            if not (math.isfinite(self.sync_heartbeat_s) and self.sync_heartbeat_s > 0):
                raise DevicesError(
                    f"--sync-heartbeat-s: got {self.sync_heartbeat_s}; expected seconds > 0"
                )
            try:
                make_predictor(self.sync_predictor)
            except SyncError as exc:
                raise DevicesError(f"--sync-predictor: {exc}") from None


def device_rates_hz(entities: list[Entity], rate_hz: float | None) -> list[float]:
    """The report rate of every device (see the module docstring).

    Examples:
        >>> from twinedge.devices.motion import Entity
        >>> e = [Entity(i, f"e{i}", "k", "o", {"update_hz": hz}, (), (0.0, 0.0))
        ...      for i, hz in enumerate([1.0, 30.0])]
        >>> device_rates_hz(e, None)
        [1.0, 10.0]
        >>> device_rates_hz(e, 2.5)
        [2.5, 2.5]
    """
    if rate_hz is not None:
        return [float(rate_hz)] * len(entities)
    rates = [
        min(max(float(e.demand.get("update_hz", 1.0)), 1e-3), DEFAULT_DEVICE_MAX_HZ)
        for e in entities
    ]
    total = sum(rates)
    if total > DEFAULT_FLEET_MAX_HZ:
        rates = [r * DEFAULT_FLEET_MAX_HZ / total for r in rates]
    return rates


class Fleet:
    """Devices sharing one event loop, one virtual clock and one :class:`FleetMotion`.

    Parameters:
        motion: where the entities are; device ``k`` reports entity ``specs[k].entity``.
        specs: the provisioned devices.
        options: rates, stop conditions, windows (see :class:`FleetOptions`).

    Create it inside the running event loop; :meth:`run` runs it.
    """

    def __init__(self, motion: FleetMotion, specs: list[DeviceSpec], options: FleetOptions):
        self.motion, self.specs, self.options = motion, specs, options
        self.stopping, self.abort = asyncio.Event(), asyncio.Event()
        self.gate = asyncio.Semaphore(options.connect_concurrency)
        self.t0 = asyncio.get_running_loop().time()
        self.t0_perf_s = time.perf_counter()  # the same instant on the devices' latency clock
        self.stop_reason = "reports"
        broker = parse_broker_url(options.mqtt)
        rates = device_rates_hz([s.entity for s in specs], options.rate_hz)
        self.links = (
            LinkModel(motion.world, options.link_delay_scale) if options.emulate_links else None
        )
        self.devices = [
            Device(
                s.thing_id,
                s.password,
                broker,
                self._reporter(s.entity.index),
                period_s=1.0 / hz,
                max_reports=options.reports,
                stopping=self.stopping,
                abort=self.abort,
                connect_gate=self.gate,
                max_inflight=options.max_inflight,
                link=self._link(s.entity.index),
            )
            for s, hz in zip(specs, rates, strict=True)
        ]
        self.rates_hz = rates

    def _link(
        self, index: int
    ) -> Callable[[float, float, str | None, int], LinkDelay | None] | None:
        """Entity ``index``'s emulated delay (``None``: no link emulation)."""
        return None if self.links is None else functools.partial(self.links.delay, index)

    def now_s(self) -> float:
        """Virtual time: wall seconds since the clock started."""
        return asyncio.get_running_loop().time() - self.t0

    def _reporter(self, index: int) -> Callable[[], dict[str, Any] | None]:
        o = self.options
        if o.sync_threshold_m is None:

            def report() -> dict[str, Any] | None:
                t_s = round(self.now_s(), 6)  # as reported: the position is that of this t_s
                x_m, y_m, vx, vy = self.motion.sample(index, t_s)
                return {"x_m": x_m, "y_m": y_m, "vx_mps": vx, "vy_mps": vy, "t_s": t_s}

            return report
        from twinedge.sync import Sender, make_predictor
        from twinedge.sync.properties import report_properties

        threshold_m = o.sync_threshold_m
        sender = Sender(make_predictor(o.sync_predictor, threshold_m, o.sync_heartbeat_s))

        def sync_report() -> dict[str, Any] | None:
            t_s = round(self.now_s(), 6)
            t_unix_s = round(time.time(), 6)  # the measurement, on the twin's clock
            x_m, y_m, vx, vy = self.motion.sample(index, t_s)
            sent = sender.offer(t_s, [x_m, y_m], velocity=[vx, vy])
            if sent is None:
                return None
            props: dict[str, Any] = {"x_m": x_m, "y_m": y_m, "vx_mps": vx, "vy_mps": vy}
            props.update(
                report_properties(sent, o.sync_predictor, threshold_m, o.sync_heartbeat_s, t_unix_s)
            )
            props["t_s"] = t_s
            return props

        return sync_report

    def stop(self, reason: str) -> None:
        """No new reports; leave once the ones in flight are acknowledged."""
        if not self.stopping.is_set():
            self.stop_reason = reason
            self.stopping.set()

    def totals(self) -> dict[str, Any]:
        ds = self.devices
        lat = [v for d in ds for v in d.stats.latencies_ms]
        return {
            "devices": len(ds),
            "connected": sum(d.connected for d in ds),
            "ever_connected": sum(d.stats.connects > 0 for d in ds),
            "sent": sum(d.stats.sent for d in ds),
            "acked": sum(d.stats.acked for d in ds),
            "unacked": sum(len(d.unacked) for d in ds),
            "resent": sum(d.stats.resent for d in ds),
            "skipped": sum(d.stats.skipped for d in ds),
            "suppressed": sum(d.stats.suppressed for d in ds),
            "latency_ms": percentiles_ms(lat),
            "redirects_followed": sum(d.stats.redirects_followed for d in ds),
            "redirects_ignored": sum(d.stats.redirects_ignored for d in ds),
            "redirects_malformed": sum(d.stats.redirects_malformed for d in ds),
            "errors": sum(d.stats.errors for d in ds),
            "problems": sum(d.stats.problems for d in ds),
            **({"steady": self.steady()} if self.options.warmup_s > 0 else {}),
        } | ({"link": link_summary([d.stats for d in ds])} if self.links is not None else {})

    def steady(self) -> dict[str, Any]:
        """The reports published after the warm-up: how many were acknowledged, per
        second of the window, and their publish -> PUBACK latency."""
        from_s = self.t0_perf_s + self.options.warmup_s
        window_s = max(time.perf_counter() - from_s, 0.0)
        lat = [
            v
            for d in self.devices
            for v, at in zip(d.stats.latencies_ms, d.stats.published_at_s, strict=True)
            if at >= from_s
        ]
        return {
            "from_s": self.options.warmup_s,
            "window_s": round(window_s, 3),
            "acked": len(lat),
            "acked_per_s": round(len(lat) / window_s, 1) if window_s > 0 else None,
            "latency_ms": percentiles_ms(lat),
        }

    def progress_line(self) -> str:
        t = self.totals()
        return (
            f"twinedge devices: t={self.now_s():.1f} s  connected {t['connected']}/{t['devices']}  "
            f"reports sent {t['sent']:,} acked {t['acked']:,} in flight {t['unacked']:,}  "
            f"redirects {t['redirects_followed']:,}  errors {t['errors']:,}"
        )

    async def run(self, duration_s: float | None, progress: Callable[[str], None] | None) -> None:
        """Run every device until they finish, ``duration_s`` passes or :meth:`stop`."""
        tasks = [asyncio.create_task(d.run(), name=d.thing_id) for d in self.devices]
        helpers = []
        if duration_s is not None:
            helpers.append(asyncio.create_task(self._timer(duration_s)))
        if progress is not None and self.options.progress_s > 0:
            helpers.append(asyncio.create_task(self._progress(progress)))
        helpers.append(asyncio.create_task(self._drain_deadline()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in [*tasks, *helpers]:
                t.cancel()
            await asyncio.gather(*tasks, *helpers, return_exceptions=True)

    async def _timer(self, duration_s: float) -> None:
        await asyncio.sleep(duration_s)
        self.stop("duration")

    async def _drain_deadline(self) -> None:
        await self.stopping.wait()
        await asyncio.sleep(self.options.drain_s)
        self.abort.set()

    async def _progress(self, emit: Callable[[str], None]) -> None:
        while True:
            await asyncio.sleep(self.options.progress_s)
            emit(self.progress_line())

    def summary(self, scenario: str, seed: int, wall_s: float) -> dict[str, Any]:
        o = self.options
        return {
            "scenario": scenario,
            "seed": seed,
            "count": o.count,
            "url": o.url,
            "mqtt": o.mqtt,
            "namespace": o.namespace,
            "stopped": self.stop_reason,
            "wall_s": round(wall_s, 3),
            "virtual_t_s": round(self.now_s(), 3),
            "step_s": self.motion.step_s,
            "rate_hz": {
                "min": min(self.rates_hz),
                "max": max(self.rates_hz),
                "total": round(sum(self.rates_hz), 3),
            },
            "options": {
                k: v
                for k, v in asdict(o).items()
                if k not in ("api_key", "device_password", "url", "mqtt", "namespace", "count")
            },
            "total": self.totals(),
            "devices": [d.to_json() for d in self.devices],
        }


async def run_fleet(
    scenario: Scenario,
    options: FleetOptions,
    *,
    source: str | None = None,
    progress: Callable[[str], None] | None = None,
    handle_signals: bool = False,
    settle_heap: bool = False,
) -> dict[str, Any]:
    """Provision and run a fleet of devices; return the summary.

    Parameters:
        scenario: a validated scenario.
        options: see :class:`FleetOptions`.
        source: how to name the scenario in messages (its file).
        progress: receives a progress line every ``options.progress_s`` seconds and
            one line per phase.
        handle_signals: the first SIGINT/SIGTERM stops the run gracefully, the second
            at once (on the main thread only).
        settle_heap: before the devices start, freeze what this process holds so the
            cycle collector's pauses stay short (:func:`twinedge.gcpauses.settle`; for
            a process of its own, as ``twinedge devices`` is).

    Raises:
        DevicesError: a bad option, an unreachable service or broker, a refused key.
        ScenarioError: the world cannot be built, or has fewer entities than ``count``.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> opts = FleetOptions(count=1, url="http://127.0.0.1:1", api_key="te_x_y")
        >>> asyncio.run(run_fleet(load_scenario("city-small"), opts))
        Traceback (most recent call last):
        ...
        twinedge.devices.errors.DevicesError: http://127.0.0.1:1: cannot reach the twin service ...
    """
    options.check()
    name = source or scenario.name
    seed = scenario.run.seed if options.seed is None else options.seed
    motion = FleetMotion.from_scenario(scenario, seed, name)
    entities = motion.entities(options.count, name)
    specs = device_specs(
        entities,
        namespace=options.namespace,
        domain=options.domain,
        scenario=scenario.name,
        password=options.device_password,
    )
    provisioner = Provisioner(options.url, options.api_key)
    say = progress or (lambda line: None)
    started = last_said = time.monotonic()

    def provisioned(done: int) -> None:
        nonlocal last_said
        if options.progress_s > 0 and time.monotonic() - last_said >= options.progress_s:
            last_said = time.monotonic()
            say(f"twinedge devices: provisioned {done:,} of {len(specs):,} things")

    await provisioner.provision(specs, provisioned)
    say(f"twinedge devices: provisioned {len(specs):,} things at {options.url}")
    fleet = Fleet(motion, specs, options)
    await fleet.devices[0].probe()
    duration_s = options.duration_s
    if duration_s is None and options.reports is None:
        duration_s = scenario.run.steps * scenario.run.step_s
    fleet.t0 = asyncio.get_running_loop().time()
    fleet.t0_perf_s = time.perf_counter()
    say(
        f"twinedge devices: {len(specs):,} devices connecting to {options.mqtt}, "
        f"{sum(fleet.rates_hz):,.1f} reports/s in all"
        + (f", for {duration_s:g} s" if duration_s is not None else "")
        + (f", {options.reports} reports each" if options.reports is not None else "")
    )
    if settle_heap:  # the emulator's own pauses would be measured as the platform's
        gcpauses.settle()
    with _signals(fleet, handle_signals):
        await fleet.run(duration_s, progress)
    return fleet.summary(name, seed, time.monotonic() - started)


@contextlib.contextmanager
def _signals(fleet: Fleet, enabled: bool):
    """First SIGINT/SIGTERM: stop gracefully; the second: leave at once."""
    loop = asyncio.get_running_loop()
    installed = []
    if enabled:

        def on_signal() -> None:
            if fleet.stopping.is_set():
                fleet.abort.set()
            else:
                fleet.stop("interrupted")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
