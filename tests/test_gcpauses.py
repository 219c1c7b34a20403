"""The cycle collector's pauses (twinedge.gcpauses): timed per generation with an injected
clock; settle() freezes what is alive; the refreezer freezes again what survives full
collections and goes deep once per interval."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

from twinedge.gcpauses import PauseMeter, Refreezer, settle


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


def test_settle_freezes_what_is_alive_and_installs_the_meter_and_refreezer_once():
    from twinedge import gcpauses

    before = list(gc.callbacks)
    meter, refreeze = gcpauses.PAUSES, gcpauses.REFREEZE
    installed = (meter.installed, refreeze.installed)
    try:
        settle()
        assert gc.get_freeze_count() > 10_000  # the interpreter, pytest and twinedge
        settle()
        hooks = [meter.on_gc, refreeze.on_gc]
        assert gc.callbacks == before + [
            h for h, was in zip(hooks, installed, strict=True) if not was
        ]
        gc.collect(0)
        assert meter.count[0] >= 1  # the real collector reaches the meter
    finally:
        gc.unfreeze()  # the test process goes on as it was
        if not installed[0]:
            gc.callbacks.remove(meter.on_gc)
            meter.installed = False
        if not installed[1]:
            refreeze.uninstall()


class Steps:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.t_s = 0.0

    def __call__(self) -> float:
        return self.t_s


def test_the_refreezer_freezes_after_full_collections_and_goes_deep_once_per_interval():
    clock, calls = Steps(), []
    r = Refreezer(
        deep_interval_s=600.0,
        clock=clock,
        freeze=lambda: calls.append("freeze"),
        unfreeze=lambda: calls.append("unfreeze"),
    )
    r.on_gc("start", {"generation": 2})  # only a finished full collection counts
    r.on_gc("stop", {"generation": 1, "collected": 5})
    assert calls == []
    for t_s in (10.0, 599.0, 600.0, 601.0, 700.0, 1200.0, 1201.0):
        clock.t_s = t_s
        r.on_gc("stop", {"generation": 2, "collected": 0})
    # 600 s after the start: unfreeze; the next (601 s) walked all, its survivors are
    # frozen and the interval starts again there: 1200 s is 599 s later, 1201 s is 600 s
    assert calls == ["freeze", "freeze", "unfreeze", "freeze", "freeze", "freeze", "unfreeze"]
    assert (r.refreezes, r.deep_collections) == (4, 1)


def test_a_refreezer_needs_a_positive_interval():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="deep_interval_s must be > 0"):
            Refreezer(deep_interval_s=bad)


# the refreezer acts on collections of generation 2: CPython's full collections up to 3.13
FULL_COLLECTIONS = pytest.mark.skipif(
    sys.version_info >= (3, 14), reason="CPython 3.14's collector is incremental"
)

REAL_COLLECTOR = """
import gc, json, weakref
from twinedge.gcpauses import Refreezer

class Clock:
    t_s = 0.0
    def __call__(self):
        return self.t_s

clock = Clock()
gc.collect()
gc.freeze()
r = Refreezer(deep_interval_s=600.0, clock=clock)
r.install()
base = gc.get_freeze_count()

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a reference cycle, alive
freed = []
watch = weakref.ref(a, lambda _: freed.append("cycle"))
kept = [[i] for i in range(5000)]  # created after the freeze (lists: tracked)
gc.collect()
out = {"after_full": gc.get_freeze_count() - base, "refreezes": r.refreezes}
del a, b  # the cycle is garbage now, but frozen: a full collection does not see it
gc.collect()
out["kept_while_frozen"] = not freed
clock.t_s = 600.0
gc.collect()  # the interval is over: this one unfreezes
out["unfrozen"] = gc.get_freeze_count()
gc.collect()  # and this one walks everything
out["freed"] = freed
out["deep"] = r.deep_collections
out["frozen_again"] = gc.get_freeze_count() - base
print(json.dumps(out))
"""


@FULL_COLLECTIONS
def test_the_real_collector_refreezes_and_a_deep_collection_frees_a_frozen_cycle():
    """In a process of its own: the interpreter's collector calls the refreezer."""
    done = subprocess.run(
        [sys.executable, "-c", REAL_COLLECTOR], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["after_full"] >= 5000 and out["refreezes"] == 1  # the new objects frozen
    assert out["kept_while_frozen"]
    assert out["unfrozen"] == 0
    assert out["freed"] == ["cycle"] and out["deep"] == 1
    assert out["frozen_again"] >= 5000  # what is alive is frozen once more


@FULL_COLLECTIONS
def test_the_refreeze_benchmark_compares_both_modes_in_processes_of_their_own():
    """bench_gc_refreeze.py on a small heap (its numbers are for docs/benchmarks.md):
    objects created after start are frozen again only with the refreezer."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gc_refreeze.py"
    args = ["--twins", "2000", "--updates", "20000"]
    done = subprocess.run(
        [sys.executable, str(bench), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["cores"] >= 1 and out["params"] == {"twins": 2000, "features": 40, "updates": 20000}
    once, re = out["results"]["frozen-once"], out["results"]["refreeze"]
    assert once["full_collections"] >= 1 and re["full_collections"] >= 1
    # 2,000 twins of 40 features: over 80,000 containers created after start
    assert re["frozen_objects_at_end"] - once["frozen_objects_at_end"] > 80_000
    assert set(out["ratios"]) == {"full_max_ms", "full_total_ms"}
    bad = subprocess.run(
        [sys.executable, str(bench), "--twins", "0"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "--twins, --features and --updates must be at least 1" in (
        bad.stderr
    )
