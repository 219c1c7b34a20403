"""Property: for random things (created, then edited through RFC 6902 ops so the index is
updated incrementally) and random filters, SQL (SQLite and PostgreSQL) and the Python
evaluation of RQL select exactly the same things."""

from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinedge.runtime import rql
from twinedge.runtime.store import Scope, SearchQuery

KEYS = ["a", "b", "x", "y"]
TEXT = st.text(alphabet="aAbé*?_%\\ ", max_size=3)
NUMS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([-1.5, 0.0, -0.0, 0.5, 2.5, 1e10, 3.0, 2**53 + 1]),
    st.floats(-1e6, 1e6, allow_nan=False),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
        st.lists(inner, max_size=2),
    ),
    max_leaves=8,
)
CONTENT = st.fixed_dictionaries(
    {
        "attributes": st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4),
        "features": st.dictionaries(
            st.sampled_from(["f", "g"]),
            st.fixed_dictionaries(
                {"properties": st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3)}
            ),
            max_size=2,
        ),
        "_host": st.sampled_from([None, "h1", "h2", "absent"]),
    }
)

PATHS = st.one_of(
    st.builds(
        lambda ks: "attributes/" + "/".join(ks),
        st.lists(st.sampled_from(KEYS), min_size=1, max_size=3),
    ),
    st.builds(
        lambda f, ks: f"features/{f}/properties/" + "/".join(ks),
        st.sampled_from(["f", "g"]),
        st.lists(st.sampled_from(KEYS), min_size=1, max_size=2),
    ),
    st.sampled_from(
        [
            "attributes",
            "features/f",
            "features/f/properties",
            "thingId",
            "_revision",
            "_host",
            "_domain",
            "_modified",
            "_created",
            "_host/x",
        ]
    ),
)


def _v(v) -> str:
    return json.dumps(v, ensure_ascii=False)


LEAVES = st.one_of(
    st.builds(lambda op, p, v: f"{op}({p},{_v(v)})", st.sampled_from(["eq", "ne"]), PATHS, SCALARS),
    st.builds(
        lambda op, p, v: f"{op}({p},{_v(v)})",
        st.sampled_from(["gt", "ge", "lt", "le"]),
        PATHS,
        st.one_of(NUMS, TEXT),
    ),
    st.builds(
        lambda p, vs: f"in({p},{','.join(_v(v) for v in vs)})",
        PATHS,
        st.lists(SCALARS, min_size=1, max_size=3),
    ),
    st.builds(lambda p, v: f"like({p},{_v(v)})", PATHS, st.text(alphabet="aAbé*?_%\\", max_size=4)),
    st.builds(
        lambda p, v: f"ilike({p},{_v(v)})", PATHS, st.text(alphabet="aAbÉé*?_%\\", max_size=4)
    ),
    st.builds(lambda p: f"exists({p})", PATHS),
    st.builds(
        lambda p, x, y, r: f"within({p},circle({x},{y},{r}))",
        PATHS,
        st.integers(-3, 3),
        st.integers(-3, 3),
        st.sampled_from([0, 0.5, 1, 2.5, 1e7]),
    ),
)
FILTERS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda cs: f"and({','.join(cs)})", st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: f"or({','.join(cs)})", st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: f"not({c})", inner),
    ),
    max_leaves=5,
)

_examples = itertools.count()


def _body(c: dict) -> dict:
    body = dict(c)
    if body["_host"] == "absent":
        del body["_host"]
    return body


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    things=st.lists(CONTENT, min_size=1, max_size=6),
    edits=st.lists(st.tuples(st.integers(0, 5), CONTENT), max_size=6),
    filters=st.lists(FILTERS, min_size=1, max_size=6),
)
def test_sql_and_python_agree(store, twins, things, edits, filters):
    n = next(_examples)
    dom = f"ex{n}"
    ids = [f"e{n}:t{i}" for i in range(len(things))]
    store.commit([twins.put(tid, _body(c), domain=dom) for tid, c in zip(ids, things, strict=True)])
    batch = []
    for i, c in edits:
        tid = ids[i % len(ids)]
        body = _body(c)

        def replace(d, body=body):
            d.clear()
            d.update(body)

        batch.append(twins.edit(tid, replace))
    store.commit(batch)
    scope = Scope((dom,))
    for flt in filters:
        node = rql.parse(flt)
        expected = sorted(t for t in ids if rql.evaluate(node, twins.docs[t]))
        got = [d["thingId"] for d in store.search(SearchQuery(flt, scope, limit=100)).items]
        assert got == expected, (flt, [twins.docs[t] for t in ids])
