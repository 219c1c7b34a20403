"""The carbon scheduler: hand-computed schedules, bad input, and invariants (hypothesis)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinedge.carbon import (
    POLICIES,
    Grid,
    Job,
    Network,
    Region,
    best_block,
    lowest_slots,
    schedule,
    series_from_values,
)
from twinedge.errors import InfeasibleError, PolicyError, ScenarioError

T0 = datetime(2020, 1, 1)
H = timedelta(hours=1)


def grid_of(*series: list[float], pue: float = 1.0, step_min: float = 60) -> Grid:
    regions = [
        Region(name, series_from_values(v, T0, step_min, name), pue)
        for name, v in zip("ABC", series, strict=False)
    ]
    return Grid.build(regions, step_min=step_min)


def test_hand_computed_shift_interrupt_and_baseline():
    # hourly intensities 5, 9, 1, 2, 8, 0; a 2-hour 1-kW job released at 0:00, due by 5:00
    g = grid_of([5, 9, 1, 2, 8, 0])
    job = Job("j", T0, 120, T0 + 5 * H, power_kw=1.0)
    base = schedule([job], g, "baseline").placements[0]
    assert base.slots == (0, 1) and base.emissions_g == 5 + 9  # 1 kWh per hour
    # blocks inside [0, 5): 0-1: 14, 1-2: 10, 2-3: 3, 3-4: 10 -> start at 2:00
    shift = schedule([job], g, "shift").placements[0]
    assert shift.slots == (2, 3) and shift.emissions_g == 3
    assert shift.start == T0 + 2 * H and shift.end == T0 + 4 * H
    # the 0 at 5:00 is outside the window (the job must end by 5:00)
    assert schedule([job], g, "interrupt").placements[0].slots == (2, 3)


def test_hand_computed_interruption_beats_the_best_block():
    # 1, 9, 9, 2, 8: blocks of two: 10, 18, 11, 10 -> the first (0:00); the two lowest
    # hours are 0:00 and 3:00 -> 1 + 2 = 3 g for an interruptible job
    g = grid_of([1, 9, 9, 2, 8])
    job = Job("j", T0, 120, T0 + 5 * H, interruptible=True)
    assert schedule([job], g, "shift").placements[0].emissions_g == 10
    p = schedule([job], g, "interrupt").placements[0]
    assert p.slots == (0, 3) and p.emissions_g == 3
    # a job that may not pause runs as one block even under "interrupt"
    rigid = Job("r", T0, 120, T0 + 5 * H, interruptible=False)
    assert schedule([rigid], g, "interrupt").placements[0].slots == (0, 1)


def test_energy_pue_and_partial_slots():
    # a 90-minute 2-kW job takes 2 hourly slots, 3 kWh in all, 1.5 kWh in each
    g = grid_of([100, 200, 10], pue=1.5)
    job = Job("j", T0, 90, T0 + 3 * H, power_kw=2.0)
    p = schedule([job], g, "baseline").placements[0]
    assert job.energy_kwh == 3.0
    assert p.it_energy_kwh == 3.0 and p.facility_energy_kwh == 4.5
    assert p.emissions_g == pytest.approx(1.5 * 1.5 * (100 + 200))
    s = schedule([job], g, "shift")
    assert s.placements[0].slots == (1, 2)
    assert s.emissions_g == pytest.approx(1.5 * 1.5 * (200 + 10))
    assert Job.from_energy("e", T0, 90, T0 + 3 * H, energy_kwh=3.0).power_kw == 2.0
    summary = s.summary()
    assert summary["energy_kwh"] == 4.5 and summary["jobs"] == 1
    assert summary["mean_intensity_g_per_kwh"] == pytest.approx((200 + 10) / 2)


def test_hand_computed_spatial_shift_with_transfer_and_latency():
    # A is at 10 g/kWh, B at 1; a 1-kW one-hour job submitted to A
    g = grid_of([10, 10, 10], [1, 1, 1])
    net = Network({("A", "B"): 5.0}, transfer_kwh_per_gb=0.5)
    heavy = Job("heavy", T0, 60, T0 + 3 * H, origin="A", data_gb=2.0)
    light = Job("light", T0, 60, T0 + 3 * H, origin="A", data_gb=0.5)
    far = Job("far", T0, 60, T0 + 3 * H, origin="A", data_gb=0.5, max_latency_ms=4.0)
    s = schedule([heavy, light, far], g, "spatial", network=net)
    by_id = {p.job_id: p for p in s.placements}
    # heavy: moving costs 2 GB * 0.5 kWh/GB * 10 g = 10 g + 1 g of running > 10 g at home
    assert by_id["heavy"].region == "A" and by_id["heavy"].emissions_g == 10
    # light: 0.25 kWh * 10 g + 1 g = 3.5 g < 10 g: it moves
    assert by_id["light"].region == "B"
    assert by_id["light"].transfer_energy_kwh == 0.25
    assert by_id["light"].emissions_g == pytest.approx(3.5)
    # far: B is 5 ms away, beyond its 4 ms bound
    assert by_id["far"].region == "A"
    assert s.summary()["moved_jobs"] == 1
    # without a network no job can leave its origin
    assert {p.region for p in schedule([light], g, "spatial").placements} == {"A"}


def test_decisions_use_the_forecast_and_accounting_the_actual_series():
    g = grid_of([1, 5])
    job = Job("j", T0, 60, T0 + 2 * H)
    wrong = schedule([job], g, "shift", forecast={"A": [5.0, 1.0]})
    assert wrong.placements[0].slots == (1,) and wrong.emissions_g == 5  # worse than baseline
    assert schedule([job], g, "shift").emissions_g == 1


def test_bad_input_is_refused_with_the_error_type_and_numbers():
    g = grid_of([1, 2, 3])
    job = Job("j", T0, 60, T0 + 2 * H)
    with pytest.raises(PolicyError, match="got 'greenest'; expected one of baseline"):
        schedule([job], g, "greenest")
    with pytest.raises(InfeasibleError, match=r"job late: .* holds 0 slots .* it needs 1"):
        schedule([Job("late", T0 + 5 * H, 60, T0 + 7 * H)], g, "shift")
    with pytest.raises(ScenarioError, match=r"deadline .* is before release"):
        Job("j", T0, 120, T0 + H)
    with pytest.raises(ScenarioError, match="duration_min: got 0"):
        Job("j", T0, 0, T0 + H)
    with pytest.raises(ScenarioError, match="power_kw: got -1"):
        Job("j", T0, 60, T0 + H, power_kw=-1)
    with pytest.raises(ScenarioError, match="energy_kwh: got -1"):
        Job.from_energy("j", T0, 60, T0 + H, energy_kwh=-1)
    with pytest.raises(ScenarioError, match="data_gb: got nan"):
        Job("j", T0, 60, T0 + H, data_gb=math.nan)
    with pytest.raises(
        ScenarioError, match="forecast A: got 2 values; expected one per slot \\(3\\)"
    ):
        schedule([job], g, "shift", forecast={"A": [1.0, 2.0]})
    with pytest.raises(ScenarioError, match="region: got 'Z'; expected one of A"):
        schedule([Job("z", T0, 60, T0 + H, origin="Z")], g, "shift")
    with pytest.raises(ScenarioError, match="duplicate names"):
        Grid.build([g.regions[0], g.regions[0]])
    with pytest.raises(ScenarioError, match=r"transfer_kwh_per_gb: got -0\.1"):
        Network(transfer_kwh_per_gb=-0.1)
    with pytest.raises(InfeasibleError):
        best_block([1.0], 0, 1, 2)
    with pytest.raises(InfeasibleError):
        lowest_slots([1.0], 0, 1, 2)


# --- invariants ------------------------------------------------------------------------

values = st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=40)


@given(values, st.data())
def test_best_block_and_lowest_slots_are_optimal(vals, data):
    n = data.draw(st.integers(1, len(vals)))
    lo = data.draw(st.integers(0, len(vals) - n))
    hi = data.draw(st.integers(lo + n, len(vals)))
    s = best_block(vals, lo, hi, n)
    assert lo <= s <= hi - n
    brute = min(math.fsum(vals[k : k + n]) for k in range(lo, hi - n + 1))
    assert math.fsum(vals[s : s + n]) <= brute + 1e-9 * (1 + brute)
    picked = lowest_slots(vals, lo, hi, n)
    assert len(set(picked)) == n and all(lo <= k < hi for k in picked)
    assert math.fsum(vals[k] for k in picked) == pytest.approx(
        math.fsum(sorted(vals[lo:hi])[:n]), abs=1e-9
    )


@st.composite
def instances(draw):
    n_slots = draw(st.integers(2, 30))
    regions = draw(st.integers(1, 3))
    series = [
        draw(st.lists(st.floats(0, 800, allow_nan=False), min_size=n_slots, max_size=n_slots))
        for _ in range(regions)
    ]
    pues = [draw(st.floats(1.0, 2.0)) for _ in range(regions)]
    jobs = []
    for i in range(draw(st.integers(1, 6))):
        dur = draw(st.integers(1, n_slots))
        release = draw(st.integers(0, n_slots - dur))
        end = draw(st.integers(release + dur, n_slots))
        jobs.append(
            Job(
                f"j{i}",
                T0 + release * timedelta(minutes=30),
                dur * 30 - draw(st.sampled_from([0, 10])),  # a partial last slot too
                T0 + end * timedelta(minutes=30),
                power_kw=draw(st.floats(0.0, 50.0)),
                interruptible=draw(st.booleans()),
                origin=draw(st.sampled_from("ABC"[:regions])),
                data_gb=draw(st.floats(0.0, 10.0)),
                max_latency_ms=draw(st.sampled_from([0.0, 10.0, math.inf])),
            )
        )
    regs = [
        Region(name, series_from_values(v, T0, 30, name), p)
        for name, v, p in zip("ABC", series, pues, strict=False)
    ]
    net = Network(
        {("A", "B"): 5.0, ("B", "C"): 20.0}, transfer_kwh_per_gb=draw(st.floats(0.0, 1.0))
    )
    return Grid.build(regs, step_min=30), jobs, net


@given(instances())
def test_perfect_forecast_policies_are_ordered_and_every_job_runs_in_full_inside_its_window(inst):
    grid, jobs, net = inst
    runs = {p: schedule(jobs, grid, p, network=net) for p in POLICIES}
    tol = 1e-9
    for i, job in enumerate(jobs):
        g = {p: runs[p].placements[i].emissions_g for p in POLICIES}
        scale = 1 + g["baseline"]
        assert g["shift"] <= g["baseline"] + tol * scale
        assert g["interrupt"] <= g["shift"] + tol * scale
        if not job.interruptible:
            assert runs["interrupt"].placements[i].slots == runs["shift"].placements[i].slots
        for mode in ("baseline", "shift", "interrupt"):
            spatial = "spatial" if mode == "baseline" else f"spatial-{mode}"
            assert g[spatial] <= g[mode] + tol * scale
        n = math.ceil(job.duration_min / 30)
        lo = round((job.release - T0) / timedelta(minutes=30))
        hi = round((job.deadline - T0) / timedelta(minutes=30))
        for p in POLICIES:
            pl = runs[p].placements[i]
            assert len(pl.slots) == n and len(set(pl.slots)) == n
            assert all(lo <= k < hi for k in pl.slots)
            if p in ("baseline", "shift", "spatial", "spatial-shift") or not job.interruptible:
                assert pl.slots == tuple(range(pl.slots[0], pl.slots[0] + n))  # one block
            if pl.region == job.origin:
                assert pl.transfer_energy_kwh == 0
            else:
                assert net.latency(job.origin or "A", pl.region) <= job.max_latency_ms
                assert pl.transfer_energy_kwh == pytest.approx(
                    job.data_gb * net.transfer_kwh_per_gb
                )
    for p in POLICIES:
        # energy is conserved: every policy runs the same IT energy, times the PUE where it runs
        s = runs[p]
        assert s.it_energy_kwh == pytest.approx(math.fsum(j.energy_kwh for j in jobs))
        assert s.facility_energy_kwh == pytest.approx(
            math.fsum(pl.it_energy_kwh * grid.region(pl.region).pue for pl in s.placements)
        )
