"""Devices over MQTT: an embedded broker (default) or a bridge to an external one.

Both front the same :class:`~twinedge.runtime.service.TwinService`: device reports
become durable twin updates, and desired state, commands and errors go back to devices.
The topic layout, payloads, ACL and acknowledgement semantics are in docs/mqtt.md.
"""

from __future__ import annotations

from typing import Any

from twinedge.runtime.mqtt.core import REASONS, Gateway, Rejection
from twinedge.runtime.mqtt.embedded import EmbeddedBroker
from twinedge.runtime.mqtt.external import ExternalBridge

__all__ = ["REASONS", "EmbeddedBroker", "ExternalBridge", "Gateway", "Rejection", "start_mqtt"]


async def start_mqtt(
    service: Any,
    url: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    **options: Any,
) -> EmbeddedBroker | ExternalBridge:
    """Start MQTT for ``service`` and return the started front end (``await x.stop()``).

    ``url`` ``None`` or ``"embedded"``: the embedded broker on ``host:port``;
    ``mqtt://user:pass@host:port`` (or ``mqtts://``): a bridge to that broker (``host``
    and ``port`` are then ignored). ``options`` go to the chosen class.
    """
    front: EmbeddedBroker | ExternalBridge
    if url is None or url == "embedded":
        front = EmbeddedBroker(service, host, port, **options)
    elif url.startswith(("mqtt://", "mqtts://")):
        front = ExternalBridge(service, url, **options)
    else:
        raise ValueError(f"mqtt: got {url!r}; expected embedded or mqtt://user:pass@host:port")
    await front.start()
    return front
