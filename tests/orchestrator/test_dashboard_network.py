"""The dashboard's Network panel in headless Chromium, against a real
``twinedge serve --network``: hosts, their twins and load, the last cycle, and a
migration appearing as it happens."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.orchestrator.serving import serve_two_sites
from tests.orchestrator.test_live import robot
from tests.runtime.api.test_api_dashboard_e2e import browser  # noqa: F401  (fixture)
from tests.runtime.test_reliability import free_port, start_server

pytestmark = pytest.mark.slow


def test_the_network_panel_shows_hosts_and_follows_a_migration(browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    with serve_two_sites(tmp_path, "--cycle-s", "0.2") as served:
        base = str(served.client.base_url).rstrip("/")
        token = (served.data / "admin.token").read_text().strip()
        h = {"Authorization": f"Bearer {token}"}
        r = httpx.put(
            f"{base}/api/2/things/fleet:r1", json={"_domain": "fleet", **robot(10.0)}, headers=h
        )
        assert r.status_code == 201
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/?token={token}")
        expect(page.locator("#network-panel")).to_be_visible(timeout=10_000)
        expect(page.locator("#network-policies")).to_contain_text("two-sites: greedy + threshold")
        expect(page.locator('#hosts tr[data-host="edge-1"] td.twins')).to_have_text(
            "1", timeout=10_000
        )
        expect(page.locator('#hosts tr[data-host="edge-1"]')).to_contain_text("10 % of 10 GHz")
        r = httpx.put(
            f"{base}/api/2/things/fleet:r1/features/position/properties",
            json={"x_m": 2990.0, "y_m": 0.0},
            headers=h,
        )
        assert r.status_code == 204
        expect(page.locator('#hosts tr[data-host="edge-2"] td.twins')).to_have_text(
            "1", timeout=10_000
        )
        expect(page.locator('#hosts tr[data-host="edge-1"] td.twins')).to_have_text("0")
        expect(page.locator("#network-cycle")).to_contain_text(
            "1 migrations in all", timeout=10_000
        )
        assert errors == []


def test_the_network_panel_stays_hidden_without_an_orchestrator(browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    data, port = tmp_path / "data", free_port()
    proc = start_server(data, port, free_port())
    try:
        token = (data / "admin.token").read_text().strip()
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        expect(page.locator("#status")).to_have_text("live", timeout=10_000)
        expect(page.locator("#network-panel")).to_be_hidden()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
