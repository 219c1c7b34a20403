"""The shortcuts on a host's per-report path keep the rules they replace: the replication
body written from the stored text parses to what ``record_to`` gives, ``patch_changes``
is ``merge_patch`` + ``json_equal``, a default hook's patch of a checked report passes
``check_patch``, and small batches commit in the event loop, large ones in the thread."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinedge import textinput
from twinedge.edge import EdgeHost, InvalidReportError, LogRecord, wire
from twinedge.edge.document import (
    check_patch,
    check_report,
    desired_patch,
    encode,
    patch_changes,
    report_patch,
)
from twinedge.jsonmerge import merge_patch
from twinedge.runtime.things import JSON_LIMITS, MAX_DEPTH, json_equal

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
RECORDS = st.lists(
    st.builds(
        LogRecord,
        seq=st.integers(1, 2**62),
        twin_id=TEXT,
        epoch=st.integers(0, 2**40),
        revision=st.integers(0, 2**40),
        kind=st.sampled_from(["change", "snapshot"]),
        data=JSON.map(encode),
        time_s=st.floats(allow_nan=False, allow_infinity=False),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(host=TEXT, records=RECORDS)
def test_the_spliced_replication_body_is_what_record_to_would_send(
    host: str, records: list[LogRecord]
) -> None:
    body = wire.replication_body(host, records)
    expected = {"host": host, "records": [wire.record_to(r) for r in records]}
    # the core's reader (strict JSON under the runtime's limits) and plain json agree, and
    # both give exactly the values, with their types (1 is not 1.0), record_to gives
    assert json_equal(textinput.loads(body, JSON_LIMITS), expected)
    assert json_equal(json.loads(body), expected)
    assert json_equal(json.loads(json.dumps(expected)), json.loads(body))


def test_the_replication_body_by_hand() -> None:
    recs = [
        LogRecord(3, "a:b", 2, 9, "snapshot", b'{"features":{},"n":1.0}', 1.5),
        LogRecord(4, 'a:"é"', 2, 10, "change", b'{"attributes":{"k":[true,null]}}', 2.0),
    ]
    assert wire.replication_body("h", recs) == (
        b'{"host":"h","records":['
        b'{"seq":3,"twin":"a:b","epoch":2,"revision":9,"kind":"snapshot",'
        b'"data":{"features":{},"n":1.0},"time_s":1.5},'
        b'{"seq":4,"twin":"a:\\"\\u00e9\\"","epoch":2,"revision":10,"kind":"change",'
        b'"data":{"attributes":{"k":[true,null]}},"time_s":2.0}]}'
    )
    assert wire.replication_body("h", []) == b'{"host":"h","records":[]}'


PATCHES = st.recursive(
    SCALARS,
    lambda inner: st.dictionaries(st.sampled_from("abcd"), inner, max_size=4),
    max_leaves=12,
)
DOCS = st.recursive(
    SCALARS | st.lists(SCALARS, max_size=2),
    lambda inner: st.dictionaries(st.sampled_from("abcd"), inner, max_size=4),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(target=DOCS, patch=st.dictionaries(st.sampled_from("abcd"), PATCHES, max_size=4))
def test_patch_changes_is_merge_then_compare(target: Any, patch: dict[str, Any]) -> None:
    assert patch_changes(target, patch) == (not json_equal(merge_patch(target, patch), target))


def test_patch_changes_by_hand() -> None:
    doc = {"a": {"b": 1, "c": [1, 2]}, "t": True}
    assert not patch_changes(doc, {"a": {"b": 1, "c": [1, 2]}, "x": None})
    assert patch_changes(doc, {"t": 1})  # true is not 1
    assert patch_changes(doc, {"a": {"b": 1.0}})  # 1 is not 1.0
    assert patch_changes(doc, {"a": {"c": [1]}})
    assert patch_changes(doc, {"a": None})
    assert patch_changes(doc, {"x": {}})  # a new (empty) object
    assert patch_changes(doc, {"t": {"y": None}})  # true becomes {}
    assert not patch_changes(doc, {})


FEATURE_IDS = st.sampled_from(["battery", "gps", "a.b", "x:y", "a/b", "", "a b", "ü"])


def nest(levels: int, leaf: Any) -> Any:
    return {"n": nest(levels - 1, leaf)} if levels else leaf


REPORTS = st.dictionaries(
    FEATURE_IDS,
    st.one_of(
        st.dictionaries(TEXT, JSON, max_size=3),
        st.integers(MAX_DEPTH - 6, MAX_DEPTH).map(lambda d: {"deep": nest(d, 1)}),
        st.just({"nan": float("nan")}),
        st.just({"big": 2**64}),
        st.just(7),
    ),
    max_size=3,
)


@settings(max_examples=400, deadline=None)
@given(report=REPORTS)
def test_a_default_hooks_patch_of_a_checked_report_passes_check_patch(report: Any) -> None:
    try:
        check_report(report)
    except InvalidReportError:
        return  # never reaches a hook
    check_patch(report_patch(report))
    check_patch(desired_patch(report))


def test_a_report_the_core_refuses_is_still_refused_by_apply(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            await h.place("fleet:a")
            with pytest.raises(InvalidReportError, match="nests deeper than 29 levels"):
                await h.apply("fleet:a", {"f": nest(MAX_DEPTH - 2, 1)})
            # 29 levels is the most a report may nest: its document patch then has 31
            assert await h.apply("fleet:a", {"f": nest(MAX_DEPTH - 4, 1)}) == 1
            assert await h.apply("fleet:a", {"f": nest(MAX_DEPTH - 4, 1)}) == 1  # no change

    asyncio.run(body())


@pytest.mark.parametrize(
    ("inline_max", "reports", "in_thread"), [(8, 1, False), (8, 20, True), (0, 1, True)]
)
def test_small_batches_commit_in_the_loop_large_ones_in_the_thread(
    tmp_path: Path, inline_max: int, reports: int, in_thread: bool
) -> None:
    async def body() -> None:
        loop_thread = threading.get_ident()
        async with EdgeHost.open(
            tmp_path / "h.sqlite", "edge-1", inline_max_records=inline_max
        ) as h:
            twins = [f"fleet:t{i}" for i in range(reports)]
            await asyncio.gather(*(h.place(t) for t in twins))
            threads: list[tuple[int, int]] = []
            append = h.log.append

            def spy(records: Any, *args: Any, **kw: Any) -> Any:
                threads.append((len(records), threading.get_ident()))
                return append(records, *args, **kw)

            h.log.append = spy  # type: ignore[method-assign]
            revs = await asyncio.gather(*(h.apply(t, {"f": {"x": 1}}) for t in twins))
            assert revs == [1] * reports
            assert threads == [(reports, threads[0][1])]  # one batch
            assert (threads[0][1] != loop_thread) is in_thread
            assert [r.seq for r in h.pending()][-reports:] == list(
                range(reports + 1, 2 * reports + 1)
            )

    asyncio.run(body())


@settings(max_examples=400, deadline=None)
@given(report=REPORTS | JSON)
def test_a_report_read_by_the_strict_reader_is_checked_the_same_without_walking_values(
    report: Any,
) -> None:
    try:
        text = json.dumps(report)
        parsed = textinput.loads(text, JSON_LIMITS)  # what the MQTT gateway does
    except (ValueError, textinput.TextInputError):
        return  # refused before the host sees it
    outcomes = []
    for values_checked in (False, True):
        try:
            outcomes.append(check_report(parsed, values_checked=values_checked))
        except InvalidReportError as e:
            outcomes.append((str(e), e.pointer))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(
    ("report", "values_checked", "message"),
    [
        ({"a/b": {"x": 1}}, True, "feature id 'a/b' is not valid"),
        ({"": {"x": 1}}, True, "feature id '' is not valid"),
        ({"f": 1}, True, "the properties patch must be a JSON object"),
        ({"f": {"x": float("nan")}}, False, "expected a finite number"),
    ],
)
def test_values_checked_keeps_the_shape_checks(
    report: Any, values_checked: bool, message: str
) -> None:
    with pytest.raises(InvalidReportError, match=message):
        check_report(report, values_checked=values_checked)


@pytest.mark.parametrize("kept", [3, 20_000])
def test_the_outbox_from_memory_is_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    """Whatever the replicator asks (any start, any limit, before and after acks, after a
    restart), pending() answers what the log holds."""
    import twinedge.edge.host as host_module

    monkeypatch.setattr(host_module, "MAX_OUTBOX_RECORDS", kept)

    def same(h: EdgeHost) -> None:
        for after in range(-1, h.last_seq + 2):
            for limit in (0, 1, 2, 5, 1000):
                got = h.pending(after, limit)
                assert got == h.log.read(after, limit, h.last_seq), (after, limit)
        assert h.pending() == h.log.read(h.replicated_seq, 1000, h.last_seq)

    async def body() -> None:
        path = tmp_path / "h.sqlite"
        async with EdgeHost.open(path, "edge-1") as h:
            await asyncio.gather(h.place("fleet:a"), h.place("fleet:b"))
            for k in range(4):
                await asyncio.gather(
                    h.apply("fleet:a", {"f": {"k": k}}), h.apply("fleet:b", {"f": {"k": -k}})
                )
            assert h.last_seq == 10
            same(h)
            h.ack_replicated(4)
            same(h)
            assert [r.seq for r in h.pending()] == [5, 6, 7, 8, 9, 10]
            h.ack_replicated(10)
            same(h)
            assert h.pending() == []
            await h.apply("fleet:a", {"f": {"k": 99}})
            same(h)
        async with EdgeHost.open(path) as h:  # nothing in memory after a restart
            assert [r.seq for r in h.pending()] == [11]
            await h.apply("fleet:b", {"f": {"k": 99}})
            same(h)

    asyncio.run(body())


@settings(max_examples=500, deadline=None)
@given(value=JSON, limit=st.integers(-1, 6))
def test_the_depth_check_of_reports_is_the_cores(value: Any, limit: int) -> None:
    from twinedge.edge.document import _too_deep
    from twinedge.runtime.things import too_deep

    assert _too_deep(value, limit) == too_deep(value, limit)
    assert _too_deep(nest(limit + 1, value), limit) == too_deep(nest(limit + 1, value), limit)
