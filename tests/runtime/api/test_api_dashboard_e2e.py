"""End to end in headless Chromium: the dashboard lists a twin created through the API,
shows its events, its group and its position, and reports a bad filter.

Uses Debian's chromium (``apt-get install chromium``), never a downloaded browser.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from .conftest import bearer, live_server

CHROMIUM = os.environ.get("TWINEDGE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_dashboard_shows_twins_events_groups_and_map(browser, tmp_path: Path):
    from playwright.sync_api import expect

    with live_server(tmp_path) as live:
        http = httpx.Client(base_url=live.base_url, timeout=10)
        r = http.post(
            "/api/2/keys", json={"domain": "fleet", "role": "admin"}, headers=bearer(live.admin)
        )
        token = r.json()["token"]
        h = bearer(token)
        assert (
            http.put(
                "/api/2/groups/cars", json={"filter": 'eq(attributes/kind,"car")'}, headers=h
            ).status_code
            == 201
        )
        assert (
            http.put(
                "/api/2/things/fleet:old-1", json={"attributes": {"kind": "bus"}}, headers=h
            ).status_code
            == 201
        )

        page = browser.new_page()
        errors: list[str] = []
        foreign: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on(
            "request",
            lambda req: (
                None if req.url.startswith((live.base_url, "data:")) else foreign.append(req.url)
            ),
        )
        page.goto(f"{live.base_url}/?token={token}")
        expect(page.locator("#status")).to_have_text("live", timeout=10_000)
        expect(page.locator('#things tr[data-thing-id="fleet:old-1"]')).to_be_visible()
        assert "token=" not in page.url
        assert page.evaluate("localStorage.getItem('twinedge.token')") == token
        expect(page.locator('#groups li[data-group="fleet/cars"] .size')).to_have_text("0")

        # a twin created through the API appears in the list, the feed, the group and the map
        body = {
            "attributes": {"kind": "car"},
            "features": {"location": {"properties": {"x": 120.5, "y": -40.0}}},
        }
        assert http.put("/api/2/things/fleet:e2e-1", json=body, headers=h).status_code == 201
        expect(page.locator('#things tr[data-thing-id="fleet:e2e-1"]')).to_be_visible(
            timeout=10_000
        )
        expect(
            page.locator(
                '#events li[data-subject="fleet:e2e-1"][data-type="dev.twinedge.thing.created"]'
            )
        ).to_have_count(1)
        expect(page.locator('#events li[data-type="dev.twinedge.group.joined"]')).to_have_count(1)
        expect(page.locator('#groups li[data-group="fleet/cars"] .size')).to_have_text("1")
        expect(page.locator('#map circle[data-thing-id="fleet:e2e-1"]')).to_have_count(1)

        # a modification shows up as an event with its patch
        http.patch(
            "/api/2/things/fleet:e2e-1/features/location/properties", json={"x": 0}, headers=h
        )
        expect(page.locator('#events li[data-type="dev.twinedge.thing.modified"]')).to_contain_text(
            "replace /features/location/properties/x"
        )

        # search: a filter narrows the list; a bad one says where it is wrong
        page.fill("#filter", 'eq(attributes/kind,"bus")')
        page.press("#filter", "Enter")
        expect(page.locator('#things tr[data-thing-id="fleet:e2e-1"]')).to_have_count(0)
        expect(page.locator('#things tr[data-thing-id="fleet:old-1"]')).to_be_visible()
        page.fill("#filter", "eq(attributes/kind")
        page.press("#filter", "Enter")
        expect(page.locator("#search-error")).to_contain_text("column")

        # clicking a row shows the document
        page.fill("#filter", "")
        page.press("#filter", "Enter")
        page.click('#things tr[data-thing-id="fleet:e2e-1"]')
        expect(page.locator("#detail-json")).to_contain_text('"thingId": "fleet:e2e-1"')

        page.close()
        http.close()
    # the bad filter's 400 responses are logged by the browser; nothing else may be
    errors = [e for e in errors if "status of 400" not in e]
    assert not errors, errors
    assert not foreign, f"the dashboard loaded assets from elsewhere: {foreign}"
