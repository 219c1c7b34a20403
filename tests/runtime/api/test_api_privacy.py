"""Private aggregates over HTTP on a real ``twinedge serve`` with SQLite and PostgreSQL:
the released answers, budgets refused when spent, no overspending under concurrent
requests, the spent budget surviving a restart, and bad input."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.runtime.test_reliability import free_port, start_server

LEVELS = [10.0, 20.0, 30.0, 40.0, 150.0]  # the last is clamped to 100 in a [0, 100] sum


class Server:
    def __init__(self, tmp_path: Path, db: str):
        self.data, self.db = tmp_path / "data", db
        self.port, self.mqtt = free_port(), free_port()
        self.proc = start_server(self.data, self.port, self.mqtt, db=db)
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin = (self.data / "admin.token").read_text().strip()

    def restart(self) -> None:
        self.stop()
        self.proc = start_server(self.data, self.port, self.mqtt, db=self.db)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def key(self, domain: str, role: str) -> dict[str, str]:
        r = httpx.post(
            f"{self.base}/api/2/keys",
            json={"domain": domain, "role": role},
            headers={"Authorization": f"Bearer {self.admin}"},
        )
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
def world(tmp_path, store_url):
    s = Server(tmp_path, store_url)
    try:
        fleet, city = s.key("fleet", "admin"), s.key("city", "read")
        for i, level in enumerate(LEVELS):
            r = httpx.put(
                f"{s.base}/api/2/things/fleet:car-{i}",
                headers=fleet,
                json={
                    "attributes": {"public": i != 1, "kind": "car"},
                    "features": {"battery": {"properties": {"level": level}}},
                },
            )
            assert r.status_code == 201, r.text
        r = httpx.post(
            f"{s.base}/api/2/grants",
            headers=fleet,
            json={"grantee": "city", "filter": "eq(attributes/public,true)", "role": "read"},
        )
        assert r.status_code == 201, r.text
        yield s, fleet, city
    finally:
        s.stop()


def _budget(s: Server, fleet: dict, eps: float, delta: float = 0.0) -> dict:
    r = httpx.put(
        f"{s.base}/api/2/privacy/budgets/city", headers=fleet, json={"epsilon": eps, "delta": delta}
    )
    assert r.status_code == 200, r.text
    return r.json()


def _agg(s: Server, who: dict, **body) -> httpx.Response:
    return httpx.post(  # the first release loads OpenDP: slow on a loaded machine
        f"{s.base}/api/2/privacy/aggregate", headers=who, json={"owner": "fleet", **body},
        timeout=120,
    )  # fmt: skip


def test_releases_spend_the_budget_and_say_their_noise(world):
    s, fleet, city = world
    assert _budget(s, fleet, 1.0)["remainingEpsilon"] == 1.0
    r = _agg(s, city, fn="count", epsilon=0.25)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["mechanism"], doc["epsilon"], doc["delta"]) == ("laplace", 0.25, 0.0)
    assert doc["noise"] == [
        {"part": "count", "sensitivity": 1.0, "scale": 4.0, "epsilon": 0.25, "delta": 0.0}
    ]
    assert isinstance(doc["value"], int) and doc["remainingEpsilon"] == 0.75
    r = _agg(
        s, city, fn="sum", field="features/battery/properties/level", lower=0, upper=100,
        epsilon=0.5,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["noise"][0]["scale"] == 200.0  # 100 / 0.5
    assert (r.json()["lower"], r.json()["upper"], r.json()["remainingEpsilon"]) == (0, 100, 0.25)
    # the Gaussian mechanism needs a δ budget: fleet gave none
    r = _agg(s, city, fn="count", epsilon=0.1, mechanism="gaussian", delta=1e-6)
    assert r.status_code == 403, r.text
    p = r.json()
    assert p["error"] == "twinedge:privacy.budget.exhausted"
    assert (p["remainingEpsilon"], p["remainingDelta"]) == (0.25, 0.0)
    assert "0.25 epsilon" in p["detail"]
    r = _agg(s, city, fn="count", epsilon=0.25)
    assert r.status_code == 200 and r.json()["remainingEpsilon"] == 0.0
    r = _agg(s, city, fn="count", epsilon=1e-6)
    assert r.status_code == 403 and r.json()["remainingEpsilon"] == 0.0
    # the owner sees what was spent
    items = httpx.get(f"{s.base}/api/2/privacy/budgets", headers=fleet).json()["items"]
    assert [(b["consumer"], b["spentEpsilon"], b["remainingEpsilon"]) for b in items] == [
        ("city", 1.0, 0.0)
    ]


def test_gaussian_histogram_and_mean_with_a_delta_budget(world):
    s, fleet, city = world
    _budget(s, fleet, 10.0, 1e-5)
    r = _agg(
        s, city, fn="histogram", field="features/battery/properties/level",
        edges=[0, 25, 50, 200], epsilon=1.0, mechanism="gaussian", delta=1e-6,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["value"]) == 3 and doc["edges"] == [0, 25, 50, 200]
    assert doc["noise"][0]["scale"] == pytest.approx(5.34998, abs=1e-4)
    r = _agg(
        s, city, fn="mean", field="features/battery/properties/level", lower=0, upper=100,
        epsilon=2.0,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert [(n["part"], n["scale"]) for n in r.json()["noise"]] == [("sum", 100.0), ("count", 1.0)]
    assert 0 <= r.json()["value"] <= 100
    mine = httpx.get(f"{s.base}/api/2/privacy/budget", params={"owner": "fleet"}, headers=city)
    assert mine.json()["spentEpsilon"] == 3.0
    assert mine.json()["spentDelta"] == pytest.approx(1e-6)


def test_no_budget_is_refused_and_reads_within_a_domain_stay_exact(world):
    s, fleet, city = world
    r = _agg(s, city, fn="count", epsilon=0.1)
    assert r.status_code == 403 and "no privacy budget" in r.json()["detail"]
    r = _agg(s, fleet, fn="count", epsilon=0.1)
    assert r.status_code == 400 and "exact" in r.json()["detail"]
    r = httpx.put(f"{s.base}/api/2/privacy/budgets/city", headers=city, json={"epsilon": 1})
    assert r.status_code == 403  # a read key of the consumer sets no budget


BAD = [
    ({"fn": "count", "epsilon": 0}, "/epsilon"),
    ({"fn": "count", "epsilon": -1}, "/epsilon"),
    ({"fn": "count", "epsilon": None}, "/epsilon"),
    ({"fn": "count", "epsilon": 1, "mechanism": "exponential"}, "/mechanism"),
    ({"fn": "count", "epsilon": 1, "mechanism": "gaussian"}, "/delta"),
    ({"fn": "sum", "epsilon": 1, "field": "attributes/x", "upper": 10}, "/lower"),
    ({"fn": "mean", "epsilon": 1, "field": "attributes/x", "lower": 0}, "/upper"),
    ({"fn": "histogram", "epsilon": 1, "field": "attributes/x", "edges": [3, 1]}, "/edges"),
    ({"fn": "median", "epsilon": 1}, "/fn"),
    ({"fn": "sum", "epsilon": 1, "lower": 0, "upper": 1}, "/field"),
]


def test_bad_input_is_a_400_problem_and_spends_nothing(world):
    s, fleet, city = world
    _budget(s, fleet, 1.0)
    for body, pointer in BAD:
        r = _agg(s, city, **body)
        assert r.status_code == 400, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["pointer"] == pointer, (body, r.json())
    r = httpx.post(
        f"{s.base}/api/2/privacy/aggregate",
        headers={**city, "Content-Type": "application/json"},
        content=b'{"owner": "fleet", "fn": "count", "epsilon": NaN}',
    )
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    mine = httpx.get(f"{s.base}/api/2/privacy/budget", params={"owner": "fleet"}, headers=city)
    assert mine.json()["spentEpsilon"] == 0.0


def test_concurrent_requests_never_overspend_and_a_restart_keeps_the_spent_budget(world):
    s, fleet, city = world
    _budget(s, fleet, 1.0)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=s.base, headers=city, timeout=60) as c:
            rs = await asyncio.gather(
                *(
                    c.post(
                        "/api/2/privacy/aggregate",
                        json={"owner": "fleet", "fn": "count", "epsilon": 0.1},
                    )
                    for _ in range(30)
                )
            )
        return [r.status_code for r in rs]

    codes = asyncio.run(burst())
    assert sorted(set(codes)) == [200, 403]
    assert codes.count(200) == 10  # 10 × 0.1 = 1.0 exactly (whole nano-ε units)
    s.restart()
    mine = httpx.get(f"{s.base}/api/2/privacy/budget", params={"owner": "fleet"}, headers=city)
    assert mine.status_code == 200, mine.text
    assert (mine.json()["spentEpsilon"], mine.json()["remainingEpsilon"]) == (1.0, 0.0)
    r = _agg(s, city, fn="count", epsilon=0.1)
    assert r.status_code == 403 and r.json()["remainingEpsilon"] == 0.0
    # raising the budget keeps what was spent
    assert _budget(s, fleet, 1.5)["remainingEpsilon"] == 0.5
    assert json.loads(_agg(s, city, fn="count", epsilon=0.5).text)["remainingEpsilon"] == 0.0


def test_a_secure_sum_over_http_decrypts_only_the_total(tmp_path):
    from twinedge.privacy import paillier

    s = Server(tmp_path, f"sqlite:///{tmp_path / 't.db'}")
    try:
        city, fleet, port = s.key("city", "read"), s.key("fleet", "write"), s.key("port", "write")
        other = s.key("other", "write")
        req = paillier.Requester(key_bits=512)
        r = httpx.post(
            f"{s.base}/api/2/privacy/sums",
            headers=city,
            json={"n": str(req.n), "contributors": ["fleet", "port"], "digits": 2},
        )
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        url = f"{s.base}/api/2/privacy/sums/{sid}"
        # a contributor reads the key from the sum, encrypts its own value and sends it
        n = int(httpx.get(url, headers=fleet).json()["n"])
        pk = paillier.public_key_from_n(n)
        share = paillier.encrypt_share(pk, 1234.56, digits=2)
        r = httpx.put(f"{url}/share", headers=fleet, json={"ciphertext": share})
        assert r.status_code == 200 and r.json()["received"] == ["fleet"], r.text
        assert "total" not in r.json()  # a contributor never gets the combined ciphertext
        assert httpx.get(url, headers=city).json()["total"] is None  # not all are in yet
        r = httpx.put(f"{url}/share", headers=fleet, json={"ciphertext": share})
        assert r.status_code == 409, r.text
        for bad in ("0", str(n * n), "x", str(n)):
            r = httpx.put(f"{url}/share", headers=port, json={"ciphertext": bad})
            assert r.status_code == 400 and r.json()["pointer"] == "/ciphertext", r.text
        r = httpx.put(f"{url}/share", headers=other, json={"ciphertext": share})
        assert r.status_code == 404, r.text  # a domain taking no part sees no sum
        r = httpx.put(
            f"{url}/share",
            headers=port,
            json={"ciphertext": paillier.encrypt_share(pk, -34.5, digits=2)},
        )
        assert r.status_code == 200 and r.json()["complete"], r.text
        done = httpx.get(url, headers=city).json()
        assert str(req.decrypt_total(done["total"], digits=2)) == "1200.06"
        r = httpx.post(
            f"{s.base}/api/2/privacy/sums",
            headers=city,
            json={"n": "15", "contributors": ["fleet"]},
        )
        assert r.status_code == 400 and r.json()["pointer"] == "/n", r.text
    finally:
        s.stop()


def test_an_aggregate_grant_shares_private_aggregates_and_no_value(tmp_path, store_url):
    """A grant with role aggregate: the consumer's private aggregates run over the granted
    twins, while every read of a value (the thing, search, count, history, the exact
    aggregate route, a write) sees none of them."""
    s = Server(tmp_path, store_url)
    try:
        fleet, city = s.key("fleet", "admin"), s.key("city", "write")
        for i, level in enumerate(LEVELS):
            r = httpx.put(f"{s.base}/api/2/things/fleet:car-{i}", headers=fleet,
                          json={"attributes": {"public": i != 1},
                                "features": {"battery": {"properties": {"level": level}}}})  # fmt: skip
            assert r.status_code == 201, r.text
        grant = {"grantee": "city", "filter": "eq(attributes/public,true)", "role": "aggregate"}
        r = httpx.post(f"{s.base}/api/2/grants", headers=fleet, json=grant)
        assert r.status_code == 201 and r.json()["role"] == "aggregate", r.text
        bad = httpx.post(f"{s.base}/api/2/grants", headers=fleet, json={**grant, "role": "all"})
        assert bad.status_code == 400, bad.text
        _budget(s, fleet, 1e6)
        # ε = 10⁵: Laplace scale 10⁻⁵ for a count, so the rounded release is the exact 4
        r = _agg(s, city, fn="count", epsilon=1e5)
        assert r.status_code == 200 and r.json()["value"] == 4, r.text
        # the clamped sum of the four public levels: 10 + 30 + 40 + min(150, 100) = 180
        r = _agg(s, city, fn="sum", field="features/battery/properties/level", lower=0,
                 upper=100, epsilon=1e5)  # fmt: skip
        assert r.status_code == 200 and abs(r.json()["value"] - 180) < 0.1, r.text
        # ... and no value of any of them
        base = f"{s.base}/api/2"
        assert httpx.get(f"{base}/things/fleet:car-0", headers=city).status_code == 404
        assert httpx.get(f"{base}/things/fleet:car-0/history", headers=city).status_code == 404
        assert httpx.get(f"{base}/search/things", headers=city).json()["items"] == []
        assert httpx.get(f"{base}/search/things/count", headers=city).json() == 0
        put = httpx.put(f"{base}/things/fleet:car-0/attributes/public", headers=city, json=0)
        assert put.status_code in (403, 404), put.text
        assert httpx.get(f"{base}/things/fleet:car-0", headers=fleet).json()["attributes"] == {
            "public": True
        }
        # taken back, the aggregates see nothing either (the budget is the owner's to keep)
        given = httpx.get(f"{base}/grants", headers=fleet).json()["items"]
        assert given == [{"grantor": "fleet", **grant}]
        assert httpx.get(f"{base}/grants", headers=city).status_code == 403  # not admin
        q = {"grantee": "city", "filter": grant["filter"]}
        r = httpx.delete(f"{base}/grants", headers=fleet, params=q)
        assert r.status_code == 204, r.text
        assert httpx.delete(f"{base}/grants", headers=fleet, params=q).status_code == 404
        assert httpx.get(f"{base}/grants", headers=fleet).json()["items"] == []
        r = _agg(s, city, fn="count", epsilon=1e5)
        assert r.status_code == 200 and r.json()["value"] == 0, r.text
    finally:
        s.stop()
