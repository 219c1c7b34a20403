"""The core speaks no transport: only the edges (``runtime/api``, ``runtime/mqtt``) know
HTTP problems, read from the import graph of the source (``ast``, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import twinedge.runtime

RUNTIME = Path(twinedge.runtime.__file__).parent
PROBLEMS = "twinedge.runtime.api.problems"
EDGES = ("api", "mqtt")
# wiring: builds the app and the MQTT front end around the core
WIRING = ("app.py",)


def module_name(path: Path, runtime: Path = RUNTIME) -> str:
    parts = path.relative_to(runtime.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, runtime: Path = RUNTIME) -> set[str]:
    """Every module ``path`` imports, relative imports resolved; ``from m import n`` counts
    as importing ``m`` and ``m.n`` (``n`` may be a module)."""
    name = module_name(path, runtime)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def core_modules() -> list[Path]:
    return [
        p
        for p in sorted(RUNTIME.rglob("*.py"))
        if p.relative_to(RUNTIME).parts[0] not in (*EDGES, *WIRING)
    ]


def test_the_module_list_covers_the_core():
    names = {module_name(p) for p in core_modules()}
    assert {
        "twinedge.runtime.service",
        "twinedge.runtime.things",
        "twinedge.runtime.rql",
        "twinedge.runtime.auth",
        "twinedge.runtime.store.sqlite",
        "twinedge.runtime.core.writer",
        "twinedge.runtime.core.access",
    } <= names
    assert not any(n.startswith(("twinedge.runtime.api", "twinedge.runtime.mqtt")) for n in names)


def test_no_module_outside_the_edges_imports_the_http_problems():
    offenders = {
        module_name(p): sorted(m for m in imported(p) if m == PROBLEMS)
        for p in sorted(RUNTIME.rglob("*.py"))
        if p.relative_to(RUNTIME).parts[0] not in EDGES
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_imports_no_edge_and_no_web_framework():
    banned = ("twinedge.runtime.api", "twinedge.runtime.mqtt", "fastapi", "starlette")
    offenders = {
        module_name(p): sorted(
            m for m in imported(p) if m in banned or m.startswith(tuple(b + "." for b in banned))
        )
        for p in core_modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_reader_sees_relative_and_absolute_imports(tmp_path):
    pkg = tmp_path / "twinedge" / "runtime" / "store"
    pkg.mkdir(parents=True)
    src = pkg / "x.py"
    src.write_text(
        "from ..api import problems\nfrom . import base\nimport twinedge.runtime.api.problems\n"
    )
    assert {PROBLEMS, "twinedge.runtime.store.base"} <= imported(src, pkg.parent)


def test_the_planners_of_the_sql_stores_touch_no_database():
    """Query planning and the commit plan are pure: statements and rows, no connection."""
    banned = ("sqlite3", "psycopg", "threading", "twinedge.runtime.store.sql_store")
    for name in ("sql_query.py", "sql_commit.py"):
        found = imported(RUNTIME / "store" / name)
        assert not {m for m in found if m.split(".")[0] in banned or m in banned}, name
