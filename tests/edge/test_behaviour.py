"""Twin behaviours: the default hooks, DeadReckoning by hand-computed examples, and
resolution by name, import path and function."""

from __future__ import annotations

import pytest

from twinedge.edge.behaviour import (
    DeadReckoning,
    FunctionBehaviour,
    TwinBehaviour,
    TwinView,
    resolve_behaviour,
)
from twinedge.edge.errors import BehaviourError
from twinedge.errors import PolicyError

T = "fleet:car-7"


def view(props: dict | None = None, feature: str = "position") -> TwinView:
    doc: dict = {"thingId": T, "attributes": {}, "features": {}}
    if props is not None:
        doc["features"][feature] = {"properties": props}
    return TwinView(T, 1, 3, doc)


def test_default_hooks_merge_like_the_core() -> None:
    b = TwinBehaviour()
    report = {"battery": {"level": 71, "old": None}, "lights": {}}
    assert b.on_report(view(), report, 0.0) == {
        "features": {
            "battery": {"properties": {"level": 71, "old": None}},
            "lights": {"properties": {}},
        }
    }
    assert b(view(), report, 0.0) == b.on_report(view(), report, 0.0)
    assert b.on_desired(view(), {"lights": {"on": True}}, 0.0) == {
        "features": {"lights": {"desiredProperties": {"on": True}}}
    }
    assert b.on_tick(view(), 0.0) is None
    assert repr(b) == "TwinBehaviour()" and b.get_params() == {}


def test_twin_view_properties() -> None:
    assert view({"x_m": 1}).properties("position") == {"x_m": 1}
    assert view().properties("position") == {}
    assert TwinView(T, 1, 0, {"features": {"f": {"desiredProperties": {}}}}).properties("f") == {}


# --------------------------------------------------------------------------- DeadReckoning
MOVING = {"x_m": 10.0, "y_m": 0.0, "vx_mps": 2.0, "vy_mps": -1.0, "t_s": 100.0}


def predicted(patch: dict | None) -> dict | None:
    return None if patch is None else patch["features"]["position"]["properties"]["predicted"]


def test_tick_extrapolates_by_hand() -> None:
    dr = DeadReckoning()
    # 1.5 s later: x = 10 + 2 * 1.5 = 13, y = 0 - 1 * 1.5 = -1.5
    assert predicted(dr.on_tick(view(MOVING), 101.5)) == {"x_m": 13.0, "y_m": -1.5, "age_s": 1.5}
    # a clock behind the measurement does not extrapolate backwards
    assert predicted(dr.on_tick(view(MOVING), 99.0)) == {"x_m": 10.0, "y_m": 0.0, "age_s": 0.0}
    # no velocity: stays put
    still = {"x_m": 5.0, "y_m": 6.0, "t_s": 0.0}
    assert predicted(dr.on_tick(view(still), 10.0)) == {"x_m": 5.0, "y_m": 6.0, "age_s": 10.0}


def test_tick_horizon_and_min_change() -> None:
    dr = DeadReckoning(horizon_s=2.0, min_change_m=0.5)
    # 10 s old, but extrapolated 2 s at most: (10 + 2 * 2, 0 - 1 * 2)
    assert predicted(dr.on_tick(view(MOVING), 110.0)) == {"x_m": 14.0, "y_m": -2.0, "age_s": 10.0}
    # stored (14.25, -2): 0.25 m from (14, -2), not more than 0.5 m: nothing to write
    near = {**MOVING, "predicted": {"x_m": 14.25, "y_m": -2.0, "age_s": 1.0}}
    assert dr.on_tick(view(near), 110.0) is None
    # stored (14.375, -1.5): hypot(0.375, 0.5) = 0.625 m: written
    far = {**MOVING, "predicted": {"x_m": 14.375, "y_m": -1.5, "age_s": 1.0}}
    assert predicted(dr.on_tick(view(far), 110.0)) == {"x_m": 14.0, "y_m": -2.0, "age_s": 10.0}


def test_tick_writes_only_what_moved() -> None:
    dr = DeadReckoning(min_change_m=0.5)
    # the prediction at 101.5 is (13, -1.5); the stored one is 0.375 m away: kept
    stored = {**MOVING, "predicted": {"x_m": 13.375, "y_m": -1.5, "age_s": 1.0}}
    assert dr.on_tick(view(stored), 101.5) is None
    # hypot(0.375, 0.5) = 0.625 m away: written
    stored = {**MOVING, "predicted": {"x_m": 13.375, "y_m": -1.0, "age_s": 1.0}}
    assert predicted(dr.on_tick(view(stored), 101.5)) == {"x_m": 13.0, "y_m": -1.5, "age_s": 1.5}
    # min_change_m = 0: a parked vehicle whose prediction is stored costs nothing
    parked = {"x_m": 1.0, "y_m": 2.0, "t_s": 0.0, "predicted": {"x_m": 1.0, "y_m": 2.0, "age_s": 0}}
    assert DeadReckoning().on_tick(view(parked), 50.0) is None


def test_tick_without_a_usable_position() -> None:
    dr = DeadReckoning()
    assert dr.on_tick(view(), 1.0) is None
    assert dr.on_tick(view({"x_m": 1.0, "y_m": 2.0}), 1.0) is None  # no t_s
    assert dr.on_tick(view({**MOVING, "x_m": "north"}), 101.0) is None
    assert dr.on_tick(view({**MOVING, "vx_mps": True}), 101.0) is None  # a bool is no speed


def test_report_is_a_measurement_made_now() -> None:
    dr = DeadReckoning()
    patch = dr.on_report(view(), {"position": {"x_m": 1.0, "y_m": 2.0, "vx_mps": 3.0}}, 50.0)
    assert patch == {
        "features": {
            "position": {
                "properties": {
                    "x_m": 1.0,
                    "y_m": 2.0,
                    "vx_mps": 3.0,
                    "t_s": 50.0,
                    "predicted": {"x_m": 1.0, "y_m": 2.0, "age_s": 0.0},
                }
            }
        }
    }
    # a measurement with its own time, reported 0.5 s later: predicted for now
    patch = dr.on_report(
        view(), {"position": {"x_m": 1.0, "y_m": 2.0, "vy_mps": 4.0, "t_s": 49.5}}, 50.0
    )
    assert predicted(patch) == {"x_m": 1.0, "y_m": 4.0, "age_s": 0.5}


def test_report_of_velocity_only_rebases_the_track() -> None:
    dr = DeadReckoning()
    # at 101.5 the old track is at (13, -1.5); from there on vx = 0
    patch = dr.on_report(view(MOVING), {"position": {"vx_mps": 0.0}}, 101.5)
    assert patch["features"]["position"]["properties"] == {
        "vx_mps": 0.0,
        "x_m": 13.0,
        "y_m": -1.5,
        "t_s": 101.5,
        "predicted": {"x_m": 13.0, "y_m": -1.5, "age_s": 0.0},
    }


def test_report_of_one_coordinate_and_other_features() -> None:
    dr = DeadReckoning()
    patch = dr.on_report(view(MOVING), {"position": {"x_m": 20.0}, "battery": {"level": 9}}, 102.0)
    props = patch["features"]["position"]["properties"]
    assert props["x_m"] == 20.0 and props["y_m"] == -2.0 and props["t_s"] == 102.0
    assert patch["features"]["battery"] == {"properties": {"level": 9}}
    # a report without position is merged as usual
    assert dr.on_report(view(MOVING), {"battery": {"level": 9}}, 102.0) == {
        "features": {"battery": {"properties": {"level": 9}}}
    }
    # a position that is not numeric removes a stale prediction
    patch = dr.on_report(view(MOVING), {"position": {"x_m": "?", "t_s": 1.0}}, 102.0)
    assert predicted(patch) is None and "predicted" in patch["features"]["position"]["properties"]


def test_dead_reckoning_parameters() -> None:
    assert repr(DeadReckoning(min_change_m=0.5)) == (
        "DeadReckoning(feature='position', min_change_m=0.5, horizon_s=60.0)"
    )
    with pytest.raises(ValueError, match="min_change_m"):
        DeadReckoning(min_change_m=-1)
    with pytest.raises(ValueError, match="horizon_s"):
        DeadReckoning(horizon_s=0)


# --------------------------------------------------------------------------- resolution


def test_resolve_by_name_and_import_path() -> None:
    assert type(resolve_behaviour("default")) is TwinBehaviour
    dr = resolve_behaviour("dead-reckoning", feature="pose", horizon_s=5.0)
    assert isinstance(dr, DeadReckoning) and dr.feature == "pose" and dr.horizon_s == 5.0
    assert type(resolve_behaviour("twinedge.edge.behaviour:DeadReckoning")) is DeadReckoning
    b = resolve_behaviour("tests.edge.helpers:AppendLog")
    assert type(b).__name__ == "AppendLog"
    f = resolve_behaviour("tests.edge.helpers:stamp")
    assert isinstance(f, FunctionBehaviour)
    assert f.on_report(view(), {"x": {}}, 7.0) == {"attributes": {"last_report_s": 7.0}}


@pytest.mark.parametrize(
    ("spec", "params", "message"),
    [
        ("teleport", {}, "unknown behaviour policy 'teleport'; use one of dead-reckoning, default"),
        ("no_such_module_xyz:B", {}, "cannot import module 'no_such_module_xyz'"),
        ("tests.edge.helpers:Nope", {}, "has no attribute 'Nope'"),
        ("dead-reckoning", {"speed": 1}, "rejected parameters ['speed']"),
        ("dead-reckoning", {"horizon_s": -1}, "bad parameter: horizon_s must be a number > 0"),
        ("tests.edge.helpers:stamp", {"a": 1}, "is a function, so it cannot take parameters"),
        ("", {}, "must be a non-empty string"),
    ],
)
def test_resolve_errors(spec: str, params: dict, message: str) -> None:
    with pytest.raises(BehaviourError) as e:
        resolve_behaviour(spec, **params)
    assert message in str(e.value)
    assert isinstance(e.value, PolicyError)  # one error family with policies
