"""The nearest-site grid against brute force: exact index (ties to the lowest index) and
exact distance, on layouts made to contain duplicates, collinear sites and ties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from twinedge.scenario import load_scenario
from twinedge.world import build_world
from twinedge.world.spatial import NearestGrid


def brute_force(sites: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every point against every site: the first (lowest-index) smallest distance."""
    dx = sites[None, :, 0] - xy[:, None, 0]
    dy = sites[None, :, 1] - xy[:, None, 1]
    d2 = dx * dx + dy * dy
    idx = d2.argmin(axis=1)
    return idx, np.sqrt(d2[np.arange(len(xy)), idx])


# small integer coordinates (times a scale) make duplicates, collinear sites and exact
# ties between sites frequent; the points reach well outside the sites' bounds
_coord = st.integers(-6, 6)
_sites = st.lists(st.tuples(_coord, _coord), min_size=1, max_size=25)
_points = st.lists(
    st.tuples(
        st.one_of(st.integers(-12, 12).map(float), st.floats(-40, 40)),
        st.one_of(st.integers(-12, 12).map(float), st.floats(-40, 40)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sites=_sites,
    points=_points,
    scale=st.sampled_from([1.0, 0.5, 37.0, 1e-3, 1e4]),
    shift=st.sampled_from([0.0, 1e5, -3.3e6]),
    bounds=st.sampled_from([None, (-5.0, -5.0, 5.0, 5.0), (0.0, 0.0, 1.0, 20.0)]),
    cells=st.sampled_from([1.0, 4.0, 32.0, 200.0]),
)
def test_grid_matches_brute_force(sites, points, scale, shift, bounds, cells):
    s = np.array(sites, dtype=float) * scale + shift
    xy = np.array(points, dtype=float) * scale + shift
    b = None if bounds is None else np.array(bounds) * scale + shift
    grid = NearestGrid(s, b, cells_per_site=cells)
    idx, dist = grid.query(xy)
    want_idx, want_dist = brute_force(s, xy)
    assert idx.dtype == np.int64 and dist.dtype == np.float64
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(dist, want_dist)


@settings(max_examples=60, deadline=None)
@given(
    n_sites=st.integers(1, 400),
    seed=st.integers(0, 2**32 - 1),
    clustered=st.booleans(),
)
def test_random_layouts_match_brute_force_and_the_kd_tree(n_sites, seed, clustered):
    rng = np.random.default_rng(seed)
    if clustered:  # most sites in one small corner: cells of many candidates
        s = np.concatenate(
            [rng.random((n_sites, 2)) * 50.0, rng.random((max(1, n_sites // 10), 2)) * 5000.0]
        )
    else:
        s = rng.random((n_sites, 2)) * 5000.0
    xy = rng.random((2000, 2)) * 6000.0 - 500.0  # some outside the sites' bounds
    grid = NearestGrid(s, np.array([0.0, 0.0, 5000.0, 5000.0]))
    idx, dist = grid.query(xy)
    want_idx, want_dist = brute_force(s, xy)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(dist, want_dist)
    # the distance is the KD-tree's to the bit (the index may differ only on exact ties)
    kd_dist, _ = cKDTree(s).query(xy)
    np.testing.assert_array_equal(dist, kd_dist)


def test_ties_go_to_the_lowest_index_by_hand():
    sites = np.array([[10.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    grid = NearestGrid(sites)
    # (5, 0) is 5 m from sites 0, 1, 2 and 5 m from site 3: all tie, site 0 wins
    # (0, 0) is on the duplicate sites 1 and 2: site 1 wins
    # (-100, 0) is outside the grid: 100 m from sites 1 and 2, site 1 wins
    idx, dist = grid.query(np.array([[5.0, 0.0], [0.0, 0.0], [-100.0, 0.0]]))
    assert idx.tolist() == [0, 1, 1]
    assert dist.tolist() == [5.0, 0.0, 100.0]


def test_one_site_and_collinear_sites():
    one = NearestGrid(np.array([[3.0, 4.0]]))
    idx, dist = one.query(np.array([[0.0, 0.0], [3.0, 4.0], [1e9, -1e9]]))
    assert idx.tolist() == [0, 0, 0]
    assert dist[:2].tolist() == [5.0, 0.0]
    line = NearestGrid(np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]]))
    idx, dist = line.query(np.array([[4.0, 3.0], [16.0, -8.0], [-1.0, 50.0]]))
    assert idx.tolist() == [0, 2, 0]
    assert dist.tolist() == [5.0, 8.94427190999916, 50.00999900019995]


def test_empty_query_and_bad_sites():
    grid = NearestGrid(np.array([[0.0, 0.0]]))
    idx, dist = grid.query(np.zeros((0, 2)))
    assert idx.shape == (0,) and dist.shape == (0,)
    with pytest.raises(ValueError, match="no sites"):
        NearestGrid(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="finite"):
        NearestGrid(np.array([[0.0, np.nan]]))


def test_world_attach_is_the_nearest_access_point():
    world = build_world(load_scenario("city"), np.random.default_rng(3))
    aps = world.node_xy_m[world.access]
    rng = np.random.default_rng(4)
    lo, hi = world.bounds_m[:2], world.bounds_m[2:]
    xy = np.concatenate([world.xy_m, lo - 200 + rng.random((500, 2)) * (hi - lo + 400)])
    idx, dist = world.attach(xy)
    want_idx, want_dist = brute_force(aps, xy)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(dist, want_dist)
    # a world with other entities keeps the index
    assert world.evolve(name="x")._ap_index is world._ap_index
