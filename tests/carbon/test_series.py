"""The carbon-intensity loader and series: hand-made files, bad input, the real data."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from twinedge.carbon import CarbonSeries, Region, load_carbon_csv, series_from_values
from twinedge.errors import InputError, ScenarioError

T0 = datetime(2020, 1, 1)


def write(tmp_path, text: str):
    p = tmp_path / "ci.csv"
    p.write_text(text)
    return p


def test_loads_times_and_values_and_holds_each_value_until_the_next(tmp_path):
    p = write(
        tmp_path,
        "Time,Carbon Intensity\n2020-01-01 00:00:00,100\n2020-01-01 00:15:00,40.5\n2020-01-01 01:00:00,10\n",
    )
    s = load_carbon_csv(p)
    assert s.name == "ci"
    assert s.times == (T0, T0 + timedelta(minutes=15), T0 + timedelta(hours=1))
    assert s.values_g_per_kwh == (100.0, 40.5, 10.0)
    assert s.at(T0 + timedelta(minutes=14)) == 100.0
    assert s.at(T0 + timedelta(minutes=45)) == 40.5
    assert s.at(T0 + timedelta(hours=1)) == 10.0
    # on a half-hourly grid: 00:00 -> 100, 00:30 -> 40.5 (held), 01:00 -> 10
    assert s.on_grid(T0, 30, 3) == [100.0, 40.5, 10.0]
    assert s.slots_until(T0, 30) == 3
    # plain mean of the samples vs the mean on the 30-minute grid
    assert s.mean(T0, T0 + timedelta(hours=1)) == pytest.approx((100 + 40.5 + 10) / 3)
    assert s.mean(T0, T0 + timedelta(hours=1), step_min=30) == pytest.approx((100 + 40.5 + 10) / 3)
    assert s.mean(T0, T0 + timedelta(minutes=30), step_min=30) == pytest.approx((100 + 40.5) / 2)
    assert s.mean(T0 + timedelta(minutes=10), T0 + timedelta(minutes=59)) == 40.5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("Time,CI\n2020-01-01 00:00,1\n", "line 1: got header ['Time', 'CI']"),
        ("", "line 1: got header None"),
        ("Time,Carbon Intensity\n2020-13-01 00:00,1\n", "line 2: got time '2020-13-01 00:00'"),
        ("Time,Carbon Intensity\nyesterday,1\n", "line 2: got time 'yesterday'"),
        ("Time,Carbon Intensity\n2020-01-01 00:00,abc\n", "line 2: got intensity 'abc'"),
        (
            "Time,Carbon Intensity\n2020-01-01 00:00,nan\n",
            "line 2: got intensity 'nan'; expected a finite",
        ),
        ("Time,Carbon Intensity\n2020-01-01 00:00,inf\n", "line 2: got intensity 'inf'"),
        ("Time,Carbon Intensity\n2020-01-01 00:00,-3\n", "line 2: got intensity '-3'"),
        ("Time,Carbon Intensity\n2020-01-01 00:00,1,2\n", "line 2: got 3 columns"),
        (
            "Time,Carbon Intensity\n2020-01-01 00:30,1\n2020-01-01 00:00,2\n",
            "line 3: time 2020-01-01 00:00:00 does not come after 2020-01-01 00:30:00",
        ),
        (
            "Time,Carbon Intensity\n2020-01-01 00:30,1\n2020-01-01 00:30,2\n",
            "line 3: time 2020-01-01 00:30:00 does not come after",
        ),
        ("Time,Carbon Intensity\n", "no samples"),
    ],
)
def test_a_malformed_file_is_refused_with_one_line_naming_file_and_line(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ScenarioError) as e:
        load_carbon_csv(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(str(p)), msg
    assert needle in msg, msg


def test_a_missing_or_binary_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read the carbon-intensity file"):
        load_carbon_csv(tmp_path / "nope.csv")
    p = tmp_path / "bin.csv"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError):
        load_carbon_csv(p)


def test_series_and_regions_check_their_values():
    with pytest.raises(ScenarioError, match="2 times but 1 values"):
        CarbonSeries((T0, T0 + timedelta(hours=1)), (1.0,))
    with pytest.raises(ScenarioError, match="empty"):
        CarbonSeries((), ())
    with pytest.raises(ScenarioError, match=r"sample 1 .*got nan"):
        series_from_values([1.0, float("nan")], T0, 30)
    with pytest.raises(ScenarioError, match="does not come after"):
        CarbonSeries((T0, T0), (1.0, 2.0))
    s = series_from_values([1.0, 2.0], T0, 30)
    with pytest.raises(ScenarioError, match="outside the series"):
        s.at(T0 - timedelta(minutes=1))
    with pytest.raises(ScenarioError, match="outside the series"):
        s.at(T0 + timedelta(minutes=31))
    with pytest.raises(ScenarioError, match="step_min: got 0"):
        s.on_grid(T0, 0, 2)
    with pytest.raises(ScenarioError, match="no sample between"):
        s.mean(T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    with pytest.raises(ScenarioError, match=r"pue: got 0\.9"):
        Region("DE", s, pue=0.9)
    with pytest.raises(ScenarioError, match="non-empty name"):
        Region("", s)


# the 2020 means of "Let's Wait Awhile" (gCO2/kWh, its analysis notebook)
PUBLISHED = {"ger_ci.csv": 313.4, "gb_ci.csv": 212.9, "fr_ci.csv": 56.3}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_2020_means_of_the_real_series_match_the_paper(carbon_dir, name):
    s = load_carbon_csv(carbon_dir / name)
    start, end = datetime(2020, 1, 1), datetime(2021, 1, 1)
    # the paper's mean: the half-hourly grid over 2020-01-01 00:00 .. 2021-01-01 00:00
    assert round(s.mean(start, end, step_min=30), 1) == PUBLISHED[name]
    assert len(s.on_grid(start, 30, 17_569)) == 17_569
    # every grid instant has a sample of its own (no value is held over a gap)
    grid_times = {start + timedelta(minutes=30 * k) for k in range(17_569)}
    assert grid_times <= set(s.times)


def test_gb_plain_mean_differs_because_part_of_its_year_is_quarter_hourly(carbon_dir):
    """Why the averaging is stated: GB switches between 15- and 30-minute samples, so the
    plain mean of all 2020 samples (214.8) is not the paper's 212.9."""
    s = load_carbon_csv(carbon_dir / "gb_ci.csv")
    plain = s.mean(datetime(2020, 1, 1), datetime(2020, 12, 31, 23, 59))
    assert round(plain, 1) == 214.8
