"""The cycle collector's pauses (twinedge.gcpauses): timed per generation with an injected
clock; settle() freezes what is alive."""

from __future__ import annotations

import gc

from twinedge.gcpauses import PauseMeter, settle


def ticks(*values: float):
    return iter(values).__next__


def test_pauses_are_counted_and_timed_per_generation():
    m = PauseMeter(clock=ticks(10.0, 10.002, 11.0, 11.010, 12.0, 12.001, 20.0, 20.3))
    for gen in (0, 1, 0, 2):
        m.on_gc("start", {"generation": gen})
        m.on_gc("stop", {"generation": gen, "collected": 0})
    snap = m.snapshot()
    assert snap["0"] == {"count": 2, "seconds_total": 0.003, "max_s": 0.002}
    assert snap["1"] == {"count": 1, "seconds_total": 0.01, "max_s": 0.01}
    assert snap["2"]["count"] == 1 and abs(snap["2"]["max_s"] - 0.3) < 1e-9


def test_a_stop_without_its_start_is_not_counted():
    m = PauseMeter(clock=ticks(1.0, 2.0))
    m.on_gc("stop", {"generation": 2})  # installed while a collection ran
    assert m.snapshot()["2"]["count"] == 0
    m.on_gc("start", {"generation": 7})  # an unknown generation counts as the oldest
    m.on_gc("stop", {"generation": 7})
    assert m.snapshot()["2"] == {"count": 1, "seconds_total": 1.0, "max_s": 1.0}


def test_settle_freezes_what_is_alive_and_installs_the_meter_once():
    from twinedge import gcpauses

    before = len(gc.callbacks)
    meter = gcpauses.PAUSES
    was_installed = meter.installed
    try:
        settle()
        assert gc.get_freeze_count() > 10_000  # the interpreter, pytest and twinedge
        settle()
        assert len(gc.callbacks) == before + (0 if was_installed else 1)
        gc.collect(0)
        assert meter.count[0] >= 1  # the real collector reaches the meter
    finally:
        gc.unfreeze()  # the test process goes on as it was
        if not was_installed:
            gc.callbacks.remove(meter.on_gc)
            meter.installed = False
