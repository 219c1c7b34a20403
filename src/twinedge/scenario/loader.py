"""Load and validate scenario files; turn pydantic errors into one line per problem."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from twinedge.errors import InputError, Problem, ScenarioError
from twinedge.scenario.inputs import load_yaml, read_text
from twinedge.scenario.schema import EntityGroup, Scenario, Trace

BUILTIN = ("city", "city-small")


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_UNION_TAGS = {
    "static",
    "random_waypoint",
    "gauss_markov",
    "trace",
    "float",
    "int",
    "str",
    "bool",
    "list",
    "dict",
    "none",
}


def _is_tag(part: Any) -> bool:
    """Union-member segments pydantic adds to an error location (not field names)."""
    return isinstance(part, str) and (
        part in _UNION_TAGS or "[" in part or part.startswith("function-")
    )


def validation_problems(err: ValidationError, source: str) -> list[Problem]:
    """One :class:`Problem` per problem (file, field, value, expected), its line
    ``source: field.path: got VALUE; expected WHAT``.

    Errors of the members of a union (a number or a ``[min, max]`` range, say) at one
    location are merged into one problem.
    """
    merged: dict[str, tuple[Any, str, list[str]]] = {}
    for e in err.errors():
        loc = _loc(tuple(p for p in e["loc"] if not _is_tag(p)))
        missing = e["type"] == "missing"
        got = "missing" if missing else _short(e.get("input"))
        msg = e["msg"].removeprefix("Value error, ")
        if loc in merged:
            if msg not in merged[loc][2]:
                merged[loc][2].append(msg)
        else:
            merged[loc] = (None if missing else e.get("input"), got, [msg])
    return [
        Problem(
            source,
            loc,
            value,
            " or ".join(msgs),
            f"{source}: {loc}: got {got}; expected {' or '.join(msgs)}",
        )
        for loc, (value, got, msgs) in merged.items()
    ]


def format_validation_error(err: ValidationError, source: str) -> list[str]:
    """One line per problem: ``source: field.path: got VALUE; expected WHAT`` (the
    messages of :func:`validation_problems`)."""
    return [p.message for p in validation_problems(err, source)]


def _resolve_paths(sc: Scenario, base: Path) -> Scenario:
    """Make every relative file path in the scenario relative to the scenario's folder."""

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    infra = sc.infrastructure
    if infra.eua is not None:
        infra = infra.model_copy(
            update={"eua": infra.eua.model_copy(update={"sites_csv": fix(infra.eua.sites_csv)})}
        )
    if infra.ifogsim is not None:
        fixed = infra.ifogsim.model_copy(update={"resources_csv": fix(infra.ifogsim.resources_csv)})
        infra = infra.model_copy(update={"ifogsim": fixed})
    groups: list[EntityGroup] = []
    for g in sc.entities:
        upd: dict[str, Any] = {}
        if g.positions_csv is not None:
            upd["positions_csv"] = fix(g.positions_csv)
        if isinstance(g.mobility, Trace):
            upd["mobility"] = g.mobility.model_copy(update={"file": fix(g.mobility.file)})
        groups.append(g.model_copy(update=upd))
    upd_sc: dict[str, Any] = {"infrastructure": infra, "entities": groups}
    if sc.carbon is not None:
        regions = [
            r if r.csv is None else r.model_copy(update={"csv": fix(r.csv)})
            for r in sc.carbon.regions
        ]
        upd_sc["carbon"] = sc.carbon.model_copy(update={"regions": regions})
    return sc.model_copy(update=upd_sc)


def parse_scenario(data: Any, source: str = "<scenario>", base: Path | None = None) -> Scenario:
    """Validate a scenario given as a mapping (parsed YAML/JSON)."""
    if not isinstance(data, dict):
        raise ScenarioError([f"{source}: (top level): got {_short(data)}; expected a mapping"])
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(validation_problems(err, source)) from None
    sc = _resolve_paths(sc, base or Path.cwd())
    missing = []
    if sc.infrastructure.eua is not None and not sc.infrastructure.eua.sites_csv.is_file():
        missing.append(("infrastructure.eua.sites_csv", sc.infrastructure.eua.sites_csv))
    ifog = sc.infrastructure.ifogsim
    if ifog is not None and not ifog.resources_csv.is_file():
        missing.append(("infrastructure.ifogsim.resources_csv", ifog.resources_csv))
    for i, g in enumerate(sc.entities):
        if g.positions_csv is not None and not g.positions_csv.is_file():
            missing.append((f"entities[{i}].positions_csv", g.positions_csv))
        if isinstance(g.mobility, Trace) and not g.mobility.file.is_file():
            missing.append((f"entities[{i}].mobility.file", g.mobility.file))
    for i, r in enumerate(sc.carbon.regions if sc.carbon is not None else ()):
        if r.csv is not None and not r.csv.is_file():
            missing.append((f"carbon.regions[{i}].csv", r.csv))
    if missing:
        raise ScenarioError(
            [f"{source}: {f}: got {str(p)!r}; expected an existing file" for f, p in missing]
        )
    return sc


def load_scenario(path: str | Path, *, scale: float = 1.0) -> Scenario:
    """Load a scenario from a YAML file, or a built-in one by name (``city``, ``city-small``).

    The file is read under the limits of :mod:`twinedge.scenario.inputs` (size, UTF-8,
    nesting, aliases, number length, finite numbers, no NUL or lone surrogates).
    ``scale`` multiplies its entities and the capacity that serves them
    (:func:`~twinedge.scenario.scale.scale_scenario`).
    """
    sc = _load(path)
    if scale != 1:
        from twinedge.scenario.scale import scale_scenario

        sc = scale_scenario(sc, scale)
    return sc


def _load(path: str | Path) -> Scenario:
    try:
        if str(path) in BUILTIN:
            text = resources.files("twinedge.scenario.builtin").joinpath(f"{path}.yaml").read_text()
            return parse_scenario(load_yaml(text, f"builtin:{path}"), f"builtin:{path}", Path.cwd())
        p = Path(path)
        if not p.is_file():
            names = ", ".join(BUILTIN)
            raise ScenarioError(
                [
                    Problem(
                        str(p),
                        None,
                        None,
                        f"a scenario file, or a built-in scenario: {names}",
                        f"{p}: no such file (built-in scenarios: {names})",
                    )
                ]
            )
        data = load_yaml(read_text(p), str(p))
    except InputError as exc:
        raise ScenarioError([str(exc)]) from None
    return parse_scenario(data, str(p), p.parent)
