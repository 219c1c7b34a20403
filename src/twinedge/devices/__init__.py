"""Device emulator (``twinedge devices``): the entities of a scenario as live devices.

Each emulated device is a thing of ``twinedge serve``, provisioned over HTTP, that moves
as the simulator moves its entity and reports its position over MQTT, and follows
redirects to other brokers. Modules: :mod:`.motion` (the scenario's mobility, sampled
in real time), :mod:`.provision` (things and device passwords over HTTP),
:mod:`.client` (one device: MQTT, reports, redirects), :mod:`.runner` (the fleet on one
event loop, progress and summary), :mod:`.cli` (the command). See docs/devices.md.
"""

from twinedge.devices.errors import DevicesError

__all__ = ["DevicesError"]
