"""Link emulation: the emulated devices see the scenario's network, as a Mininet/netem
link or ns-3's emulation mode makes a live program see a modelled one.

With ``twinedge devices --emulate-links`` (on by default with ``--compare``) every
report waits, before it is published, for the one-way delay the scenario's network
model gives its path: from the device's position at the report's time over the radio to
its nearest access point, then over the backbone to the host its twin runs on now (the
host of the last redirect the device followed). The delay comes from
:meth:`twinedge.world.World.network_ms`, the function whose two terms a simulation step
adds to every twin's latency, with the report's own size in bytes. The PUBACK waits the
same way on its way back (the backbone, and the radio with the PUBACK's 4 bytes: the
model has no downlink of its own, so the radio is taken as symmetric).

So a report's one-way latency is the modelled network (what the simulation calls its
network latency) plus everything the live system really does from the PUBLISH written
to the PUBACK read (MQTT, the host's durable commit, its queueing, a migration's wait).
The emulator's own time (its timers waking after the delay, building and writing the
packet, waking the report's task) is measured apart and left out
(:mod:`twinedge.devices.client`).

A report made while the device is connected to the core's broker (its twin not on a
host yet: the core redirects it) is published at once, without delay: its path is not
one the model has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twinedge.devices.errors import DevicesError
from twinedge.world import World

#: bytes of an MQTT PUBACK (fixed header 2, packet identifier 2)
PUBACK_BYTES = 4
#: the largest ``--link-delay-scale``: beyond it a delay is not an emulation of the model
MAX_DELAY_SCALE = 100.0


def check_delay_scale(scale: float) -> float:
    """The ``--link-delay-scale`` as a float, or a one-line error.

    Raises:
        DevicesError: not a number in ``(0, MAX_DELAY_SCALE]``.

    Examples:
        >>> check_delay_scale(2)
        2.0
        >>> check_delay_scale(-1.0)
        Traceback (most recent call last):
        ...
        twinedge.devices.errors.DevicesError: --link-delay-scale: got -1.0; expected a factor of the modelled delays, 0 < scale <= 100
    """
    s = float(scale)
    if not (math.isfinite(s) and 0 < s <= MAX_DELAY_SCALE):
        raise DevicesError(
            f"--link-delay-scale: got {scale!r}; expected a factor of the modelled delays, "
            f"0 < scale <= {MAX_DELAY_SCALE:g}"
        )
    return s


@dataclass(frozen=True)
class LinkDelay:
    """The emulated one-way delays of one report, ms (already scaled)."""

    host: str
    uplink_ms: float  # the radio, entity -> access point, with the report's bytes
    backbone_ms: float  # access point -> the twin's host
    return_ms: float  # the PUBACK's way back: backbone + radio with PUBACK_BYTES

    @property
    def up_ms(self) -> float:
        """What the report waits before it is published: radio + backbone."""
        return self.uplink_ms + self.backbone_ms


class LinkModel:
    """The scenario's network, as delays for the devices' reports.

    Parameters:
        world: the scenario's world with its entities (a device's entity index is its
            row: transmit power).
        scale: every delay is multiplied by it (1: the model).

    Raises:
        DevicesError: the world has no access point or no host, or a bad ``scale``.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> w = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> links = LinkModel(w)
        >>> d = links.delay(0, float(w.xy_m[0, 0]), float(w.xy_m[0, 1]), w.host_ids[0], 200)
        >>> d.up_ms > d.backbone_ms > 0
        True
        >>> links.delay(0, 0.0, 0.0, "nowhere", 200) is None   # not a host of the network
        True
    """

    def __init__(self, world: World, scale: float = 1.0):
        if world.access.size == 0 or world.n_hosts == 0:
            raise DevicesError(
                f"--emulate-links: scenario {world.name} has no network to emulate "
                f"({world.access.size} access points, {world.n_hosts} hosts)"
            )
        self.world, self.scale = world, check_delay_scale(scale)
        self.host_index = {h: j for j, h in enumerate(world.host_ids)}

    def delay(
        self, entity: int, x_m: float, y_m: float, host: str | None, nbytes: int
    ) -> LinkDelay | None:
        """The delays of a report of ``nbytes`` from entity ``entity`` at ``(x_m, y_m)``
        to twin host ``host``; ``None`` when ``host`` is not a host of the network
        (``None``: the core's broker)."""
        j = None if host is None else self.host_index.get(host)
        if j is None:
            return None
        w = self.world
        xy = np.array([[x_m, y_m, x_m, y_m]], dtype=float).reshape(2, 2)
        _ap, up, back = w.network_ms(
            xy,
            np.array([j, j]),
            idx=np.array([entity, entity]),
            update_bytes=np.array([float(nbytes), float(PUBACK_BYTES)]),
        )
        k = self.scale
        return LinkDelay(
            host=host or "",
            uplink_ms=float(up[0]) * k,
            backbone_ms=float(back[0]) * k,
            return_ms=(float(back[1]) + float(up[1])) * k,
        )
