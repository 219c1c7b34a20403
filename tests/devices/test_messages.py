"""What a redirect message and a broker URL may look like; every refusal says why."""

from __future__ import annotations

import pytest

from twinedge.devices.client import BrokerUrl, Redirect, parse_broker_url, parse_redirect
from twinedge.devices.motion import Entity
from twinedge.devices.runner import DEFAULT_FLEET_MAX_HZ, device_rates_hz

GOOD = [
    (
        b'{"host": "edge-7", "url": "mqtt://10.0.0.7:1884", "epoch": 4}',
        Redirect("edge-7", BrokerUrl("10.0.0.7", 1884), 4),
    ),
    (  # credentials in the URL are ignored; default port; extra keys ignored
        '{"host": "h", "url": "mqtt://u:p@broker", "epoch": 0, "why": "moved"}',
        Redirect("h", BrokerUrl("broker", 1883), 0),
    ),
    (
        b'{"host": "h", "url": "mqtts://[::1]", "epoch": 9223372036854775807}',
        Redirect("h", BrokerUrl("::1", 8883, tls=True), 2**63 - 1),
    ),
]

BAD = [
    (b"", "not UTF-8 JSON"),
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "got list; expected a JSON object"),
    (b'"mqtt://x"', "got str; expected a JSON object"),
    (b'{"url": "mqtt://x", "epoch": 1}', "host: got None"),
    (b'{"host": "", "url": "mqtt://x", "epoch": 1}', "host: got ''"),
    (b'{"host": 7, "url": "mqtt://x", "epoch": 1}', "host: got 7"),
    (b'{"host": "h", "url": "mqtt://x"}', "epoch: got None"),
    (b'{"host": "h", "url": "mqtt://x", "epoch": -1}', "epoch: got -1"),
    (b'{"host": "h", "url": "mqtt://x", "epoch": 1.5}', "epoch: got 1.5"),
    (b'{"host": "h", "url": "mqtt://x", "epoch": "3"}', "epoch: got '3'"),
    (b'{"host": "h", "url": "mqtt://x", "epoch": false}', "epoch: got False"),
    (b'{"host": "h", "url": "mqtt://x", "epoch": 9223372036854775808}', "epoch: got 9223"),
    (b'{"host": "h", "epoch": 1}', "url: got NoneType"),
    (b'{"host": "h", "url": "http://x:1", "epoch": 1}', "expected mqtt://HOST:PORT"),
    (b'{"host": "h", "url": "mqtt://", "epoch": 1}', "expected mqtt://HOST:PORT"),
    (b'{"host": "h", "url": "mqtt://x:99999", "epoch": 1}', "url: got 'mqtt://x:99999'"),
    (b'{"host": "h", "url": "mqtt://x:1/path", "epoch": 1}', "no path, query or fragment"),
]


@pytest.mark.parametrize(("payload", "expected"), GOOD)
def test_redirects_read(payload, expected):
    assert parse_redirect(payload) == expected


@pytest.mark.parametrize(("payload", "why"), BAD)
def test_malformed_redirects_say_why(payload, why):
    with pytest.raises(ValueError) as e:
        parse_redirect(payload)
    assert why in str(e.value)


def test_broker_url_round_trip():
    for url in ("mqtt://127.0.0.1:1883", "mqtts://broker.example:8883", "mqtt://[::1]:1884"):
        assert str(parse_broker_url(url)) == url


def entity(i: int, update_hz: float) -> Entity:
    return Entity(i, f"e-{i}", "k", "o", {"update_hz": update_hz}, (), (0.0, 0.0))


def test_default_rates_follow_update_hz_capped_per_device_and_in_all():
    assert device_rates_hz([entity(0, 0.5), entity(1, 30)], None) == [0.5, 10.0]
    many = [entity(i, 10) for i in range(1000)]
    rates = device_rates_hz(many, None)
    assert sum(rates) == pytest.approx(DEFAULT_FLEET_MAX_HZ) and len(set(rates)) == 1
    assert device_rates_hz(many, 25.0) == [25.0] * 1000
