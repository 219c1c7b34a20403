"""Carbon inside a run: grams of the engine's energy, jobs shifted during the run, the
``carbon:`` section's errors, the built-in profiles; hand-computed and with hypothesis."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.test_cli import twinedge
from tests.conftest import ROOT, tiny_scenario
from twinedge.carbon.paper import FILES, PUBLISHED_MEAN_G_PER_KWH
from twinedge.carbon.profiles import PROFILES_G_PER_KWH
from twinedge.carbon.run import CARBON_KEYS, CarbonRun, grams, region_series
from twinedge.carbon.scheduler import POLICIES
from twinedge.carbon.series import load_carbon_csv
from twinedge.engine import simulate
from twinedge.errors import InfeasibleError, ScenarioError
from twinedge.scenario.loader import parse_scenario
from twinedge.scenario.schema import CARBON_POLICIES, Carbon, CarbonRegion
from twinedge.world import build_world

T0 = datetime(2020, 6, 1)
DE_HOURLY = [400, 380, 150, 120, 300, 420]
FR_HOURLY = [60, 55, 50, 50, 58, 62]


def carbon_scenario(carbon: dict, **run) -> dict:
    """The tiny world (an edge host at 200 W with its twin, an idle region hub at
    1,000 W) with a carbon section; 20-minute steps."""
    return tiny_scenario(carbon=carbon, run={"steps": 3, "step_s": 1200.0, "seed": 1, **run})


def test_grams_by_hand():
    # 1 kWh at 300 g/kWh in a data centre of PUE 1.5
    assert grams(3.6e6, 300.0, 1.5) == pytest.approx(450.0)
    assert grams(np.array([3.6e6, 7.2e6]), np.array([100.0, 50.0])).tolist() == [100.0, 100.0]


def test_server_grams_by_hand_with_pue_per_region_and_tier(tmp_path):
    sc = parse_scenario(
        carbon_scenario(
            {
                "start": "2020-06-01 00:00:00",
                "regions": [
                    {"name": "A", "values_g_per_kwh": [300, 600], "step_min": 20, "pue": 1.5},
                    {"name": "B", "values_g_per_kwh": [100], "pue": 1.1},
                ],
                "tier_regions": {"region": "B"},
                "tier_pue": {"region": 1.2},  # overrides B's 1.1
            }
        )
    )
    s = simulate(sc).summary
    # the edge host: 100 W idle + 200 W x utilisation 0.5 = 200 W, 240 kJ (1/15 kWh) a
    # step; the region hub idles at 1,000 W: 1.2 MJ (1/3 kWh) a step
    assert s["server_energy_j"] == pytest.approx(3 * (200 + 1000) * 1200)
    # A (the first region) holds 300, 600, then 300 again (values repeat) at PUE 1.5:
    # 1/15 * 1.5 * 1200 = 120 g; B: 1/3 kWh * 1.2 * 100 g/kWh * 3 steps = 120 g
    assert s["carbon_server_g"] == pytest.approx(240.0)
    assert s["carbon_server_facility_j"] == pytest.approx(3 * (200 * 1.5 + 1000 * 1.2) * 1200)
    kwh = s["carbon_server_facility_j"] / 3.6e6
    assert s["carbon_server_g_per_kwh"] == pytest.approx(240.0 / kwh)
    # devices charge in the first region, without facility overhead, step by step
    # (the radio energy is the same every step: a static device)
    per_step_j = s["device_energy_j"] / 3
    assert s["carbon_device_g"] == pytest.approx(per_step_j / 3.6e6 * (300 + 600 + 300))
    assert s["carbon_jobs"] == 0 and s["carbon_jobs_g"] == 0.0
    assert s["carbon_total_g"] == pytest.approx(240.0 + s["carbon_device_g"])
    assert set(CARBON_KEYS) <= set(s)


def test_node_regions_override_tier_regions():
    sc = parse_scenario(
        carbon_scenario(
            {
                "regions": [
                    {"name": "A", "values_g_per_kwh": [300]},
                    {"name": "B", "values_g_per_kwh": [0]},
                ],
                "tier_regions": {"edge": "B", "region": "B"},
                "node_regions": {"edge": "A"},
            }
        )
    )
    # only the edge host (200 W, 1/15 kWh a step) emits: 3 * 1/15 * 300 = 60 g
    assert simulate(sc).summary["carbon_server_g"] == pytest.approx(60.0)


def jobs_section(**over) -> dict:
    return {
        "start": "2020-01-01 00:00:00",
        "regions": [
            {"name": "DE", "values_g_per_kwh": DE_HOURLY, "pue": 1.2},
            {"name": "FR", "values_g_per_kwh": FR_HOURLY, "pue": 1.3},
        ],
        "tier_regions": {"edge": "DE", "region": "FR"},
        "slot_min": 60,
        "transfer_kwh_per_gb": 0.06,
        "jobs": [
            {
                "name": "big",
                "duration_min": 120,
                "window_min": 300,
                "power_kw": 2.0,
                "origin": "DE",
                "data_gb": 50,
                "max_latency_ms": 10,
            },
            {
                "name": "small",
                "release_s": 600,
                "duration_min": 120,
                "window_min": 300,
                "power_kw": 2.0,
                "origin": "DE",
                "data_gb": 5,
                "max_latency_ms": 10,
            },
        ],
        **over,
    }


def test_jobs_shifted_in_time_and_space_by_hand():
    s = simulate(parse_scenario(carbon_scenario(jobs_section()))).summary
    # DE hosts the edge, FR the region hub, 2 ms apart (the edge-region link). Each job
    # draws 2 kWh an hour for two hours. At release in DE: 1.2 * 2 * (400 + 380) = 1872 g
    # each (the small one, released at 0:10, starts at the next slot, 1:00:
    # 1.2 * 2 * (380 + 150) = 1272 g). Best: DE 2:00-4:00, 1.2 * 2 * (150 + 120) = 648 g;
    # FR then: 1.3 * 2 * (50 + 50) = 260 g plus the data at DE's intensity at release:
    # 50 GB * 0.06 kWh/GB * 400 = 1200 g (stays), 5 GB: 0.3 kWh * 380 = 114 g (moves).
    assert s["carbon_jobs"] == 2 and s["carbon_jobs_moved"] == 1
    assert s["carbon_jobs_baseline_g"] == pytest.approx(1872 + 1272)
    assert s["carbon_jobs_g"] == pytest.approx(648 + 260 + 114)
    assert s["carbon_jobs_saving_ratio"] == pytest.approx(1 - 1022 / 3144)
    # facility energy 2 * 2 * 1.2 = 4.8 kWh and 2 * 2 * 1.3 = 5.2 kWh + 0.3 kWh moved
    assert s["carbon_jobs_energy_kwh"] == pytest.approx(4.8 + 5.5)
    # baseline: nothing moves, nothing saved
    b = simulate(parse_scenario(carbon_scenario(jobs_section(policy="baseline")))).summary
    assert b["carbon_jobs_g"] == b["carbon_jobs_baseline_g"] == pytest.approx(3144)
    assert b["carbon_jobs_saving_ratio"] == 0.0 and b["carbon_jobs_moved"] == 0
    # a latency bound below the 2 ms between the regions keeps both jobs home
    tight = jobs_section()
    for j in tight["jobs"]:
        j["max_latency_ms"] = 1.0
    t = simulate(parse_scenario(carbon_scenario(tight))).summary
    assert t["carbon_jobs_moved"] == 0
    assert t["carbon_jobs_g"] == pytest.approx(648 + 648)


def test_jobs_released_after_a_shorter_run_are_not_run():
    sc = parse_scenario(carbon_scenario(jobs_section(), steps=1))  # the run ends at 0:20
    s = simulate(sc, steps=1).summary
    assert s["carbon_jobs"] == 2  # both released before 0:20 (0:00, 0:10)
    late = jobs_section()
    late["jobs"][1]["release_s"] = 1500  # 0:25, after the one-step run
    s = simulate(parse_scenario(carbon_scenario(late, steps=1)), steps=1).summary
    assert s["carbon_jobs"] == 1 and s["carbon_jobs_baseline_g"] == pytest.approx(1872)


def test_the_policy_is_the_schedulers():
    assert CARBON_POLICIES == POLICIES


def test_profiles_keep_the_2020_means():
    for country, values in PROFILES_G_PER_KWH.items():
        assert len(values) == 24
        assert sum(values) / 24 == pytest.approx(PUBLISHED_MEAN_G_PER_KWH[country], abs=0.1)
    # the profile repeats daily from the hour of the start
    s = region_series(
        CarbonRegion(name="DE", profile="DE"),
        datetime(2020, 1, 1, 22, 30),
        datetime(2020, 1, 2, 1),
        "r",
    )
    assert s.values_g_per_kwh == PROFILES_G_PER_KWH["DE"][22:24] + PROFILES_G_PER_KWH["DE"][0:2]
    assert s.start == datetime(2020, 1, 1, 22)


def test_profiles_are_the_datas_hourly_means(carbon_dir):
    for country, file in FILES.items():
        series = load_carbon_csv(carbon_dir / file)
        v = series.on_grid(datetime(2020, 1, 1), 30, 366 * 48)
        for h in range(24):
            mean = sum(v[d * 48 + 2 * h] + v[d * 48 + 2 * h + 1] for d in range(366)) / 732
            assert PROFILES_G_PER_KWH[country][h] == pytest.approx(mean, abs=0.05), (country, h)


def test_a_csv_region_in_a_run(carbon_dir, tmp_path):
    data = carbon_scenario(
        {
            "start": "2020-06-01 00:00:00",
            "regions": [{"name": "DE", "csv": str(carbon_dir / "ger_ci.csv"), "pue": 1.0}],
        },
        step_s=900.0,
    )
    s = simulate(parse_scenario(data)).summary
    series = load_carbon_csv(carbon_dir / "ger_ci.csv")
    # 15-minute samples, 15-minute steps: one sample per step
    c = [series.at(datetime(2020, 6, 1, 0, 15 * k)) for k in range(3)]
    assert s["carbon_server_g"] == pytest.approx(sum(1200 * 900 / 3.6e6 * ci for ci in c))
    # a start outside the file is refused before the run, naming the field
    data["carbon"]["start"] = "2021-06-01 00:00:00"
    with pytest.raises(ScenarioError, match=r"carbon\.regions\[0\]\.csv: the series covers"):
        simulate(parse_scenario(data))


def test_relative_csv_paths_are_the_scenario_files(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text(
        "Time,Carbon Intensity\n2020-01-01 00:00,100\n2020-01-02 00:00,200\n"
    )
    data = carbon_scenario({"regions": [{"name": "X", "csv": "data/x.csv"}]})
    sc = parse_scenario(data, base=tmp_path)
    assert sc.carbon is not None and sc.carbon.regions[0].csv == tmp_path / "data" / "x.csv"
    assert simulate(sc).summary["carbon_server_g"] == pytest.approx(3 * 1200 * 1200 / 3.6e6 * 100)
    with pytest.raises(
        ScenarioError, match=r"carbon\.regions\[0\]\.csv: got .*expected an existing file"
    ):
        parse_scenario(data, "s.yaml", base=tmp_path / "data")


@pytest.mark.parametrize(
    ("carbon", "message"),
    [
        ({"regions": [{"name": "A"}]}, "exactly one of csv, profile or values_g_per_kwh"),
        (
            {"regions": [{"name": "A", "profile": "DE", "values_g_per_kwh": [1]}]},
            r"exactly one of csv, profile or values_g_per_kwh \(got profile, values_g_per_kwh\)",
        ),
        ({"regions": [{"name": "A", "profile": "XX"}]}, "profile"),
        ({"regions": [{"name": "A", "values_g_per_kwh": [-1]}]}, "values_g_per_kwh"),
        ({"regions": [{"name": "A", "profile": "DE", "pue": 0.9}]}, "pue"),
        ({"regions": [{"name": "A", "profile": "DE"}] * 2}, "duplicate region names: A"),
        ({"tier_regions": {"cloud": "XX"}}, r"tier_regions\.cloud: got 'XX'; expected a region name: DE"),
        ({"device_region": "XX"}, "device_region: got 'XX'"),
        ({"policy": "greenest"}, "policy"),
        ({"start": "2020-06-01T00:00:00+02:00"}, "without a zone"),
        ({"jobs": [{"duration_min": 60, "window_min": 30}]}, r"window_min \(30.0\) must be >= duration_min"),
        ({"jobs": [{"duration_min": 60, "window_min": 60, "origin": "XX"}]}, r"jobs\[0\]\.origin"),
        ({"jobs": [{"duration_min": 60, "window_min": 90, "release_s": [10, 5]}]}, "min > max"),
    ],
)  # fmt: skip
def test_bad_sections_are_refused_naming_the_field(carbon, message):
    with pytest.raises(ScenarioError, match=message) as e:
        parse_scenario(carbon_scenario(carbon), "s.yaml")
    assert "s.yaml: carbon" in str(e.value)


def test_bad_worlds_and_windows_are_refused_before_the_run():
    with pytest.raises(
        ScenarioError, match=r"carbon\.node_regions: got node 'ap'; expected a host id"
    ):
        simulate(parse_scenario(carbon_scenario({"node_regions": {"ap": "DE"}})))
    # released at 0:10 with a 30-minute window on 30-minute slots: no whole slot fits
    bad = {"jobs": [{"name": "j", "release_s": 600, "duration_min": 30, "window_min": 30}]}
    with pytest.raises(InfeasibleError, match=r"carbon\.jobs: job j: its window"):
        simulate(parse_scenario(carbon_scenario(bad)))


def test_validate_refuses_what_run_refuses(tmp_path):
    bad = carbon_scenario(
        {"jobs": [{"name": "j", "release_s": 600, "duration_min": 30, "window_min": 30}]}
    )
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(bad))
    for cmd in (("scenario", "validate", f), ("run", f, "--out", tmp_path / "o", "-q")):
        p = twinedge(*cmd, check=False)
        assert p.returncode != 0 and "carbon.jobs: job j" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


@pytest.fixture(scope="module")
def two_region_world():
    sc = parse_scenario(carbon_scenario(jobs_section()))
    return build_world(sc, np.random.default_rng(0))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    de=st.lists(st.floats(0, 1000), min_size=6, max_size=6),
    fr=st.lists(st.floats(0, 1000), min_size=6, max_size=6),
    energy_j=st.lists(st.floats(0, 1e9), min_size=2, max_size=2),
    pue=st.floats(1, 3),
    policy=st.sampled_from(POLICIES),
    data_gb=st.floats(0, 100),
    interruptible=st.booleans(),
)
def test_invariants(two_region_world, de, fr, energy_j, pue, policy, data_gb, interruptible):
    spec = Carbon(
        start=datetime(2020, 1, 1),
        regions=[
            CarbonRegion(name="DE", values_g_per_kwh=de, pue=pue),
            CarbonRegion(name="FR", values_g_per_kwh=fr),
        ],
        tier_regions={"region": "FR"},
        slot_min=60,
        policy=policy,
        transfer_kwh_per_gb=0.06,
        jobs=[
            {
                "name": "j",
                "count": 3,
                "release_s": [0, 3000],
                "duration_min": 90,
                "window_min": 240,
                "interruptible": interruptible,
                "data_gb": data_gb,
            }
        ],
    )
    run = CarbonRun(spec, two_region_world, 1200.0, 3, np.random.default_rng(0))
    assert list(two_region_world.host_ids) == ["edge", "region"]
    e = np.array(energy_j)  # (edge, region)
    for k in range(3):
        run.record(k, e, 0.0)
    s = run.summary()
    # grams are linear in energy: the step's intensity x PUE per host
    c_de = [de[0]] * 3  # steps at 0:00, 0:20, 0:40: all in the first hour
    c_fr = [fr[0]] * 3
    expect = sum(e[0] / 3.6e6 * pue * a + e[1] / 3.6e6 * b for a, b in zip(c_de, c_fr, strict=True))
    assert s["carbon_server_g"] == pytest.approx(expect, rel=1e-9, abs=1e-9)
    # with a perfect forecast a carbon-aware policy never emits more than the baseline
    assert s["carbon_jobs"] == 3
    assert s["carbon_jobs_g"] <= s["carbon_jobs_baseline_g"] * (1 + 1e-12) + 1e-9
    assert 0.0 <= s["carbon_jobs_saving_ratio"] <= 1.0
    assert s["carbon_jobs_moved"] == 0 or policy.startswith("spatial")
    assert all(math.isfinite(v) and v >= 0 for v in s.values())


def test_the_example_runs_with_grams_in_table_summary_and_report(tmp_path):
    p = twinedge("run", "examples/carbon-city.yaml", "--steps", 4, "--out", tmp_path, cwd=ROOT)
    assert "gCO2" in p.stdout and "saved" in p.stdout  # headers wrap in a narrow table
    s = json.loads((tmp_path / "summary.json").read_text())
    for row in s["policies"].values():
        assert set(CARBON_KEYS) <= set(row)
        assert row["carbon_server_g"] > 0
    html = (tmp_path / "report.html").read_text()
    assert "server CO2 (g)" in html and "job CO2 saved (ratio)" in html


def test_the_documented_section_and_numbers():
    """docs/carbon.md's `carbon:` block is a valid section, and its numbers of
    examples/carbon-city.yaml are those of a full run."""
    import re

    from twinedge.engine.sweep import apply_overrides
    from twinedge.scenario import load_scenario

    text = (ROOT / "docs" / "carbon.md").read_text()
    block = next(
        b for b in re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M) if b.startswith("carbon:")
    )
    spec = Carbon.model_validate(yaml.safe_load(block)["carbon"])
    assert [r.name for r in spec.regions] == ["DE", "FR", "X"] and spec.tier_pue == {"edge": 1.6}
    sc = load_scenario(ROOT / "examples" / "carbon-city.yaml")
    s = simulate(sc).summary
    assert f"{s['carbon_server_g']:,.0f} g for" in text
    assert f"({s['carbon_server_facility_j'] / 3.6e6:.0f} kWh with PUE" in text
    assert f"{s['carbon_server_g_per_kwh']:.1f} g/kWh on average" in text
    for policy in ("baseline", "shift", "spatial", "spatial-shift"):
        r = simulate(apply_overrides(sc, {"carbon.policy": policy})).summary
        row = (
            f"| `{policy}` | {r['carbon_jobs_g']:,.0f} | "
            f"{100 * r['carbon_jobs_saving_ratio']:.1f} % | {r['carbon_jobs_moved']} |"
        ).replace("| 0.0 % |", "| 0 % |")
        assert row in text, row
