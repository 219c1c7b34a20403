"""Resolve a policy by registered name, plug-in name, or import path ``package.module:attr``.

One resolver serves every kind of policy (placement, migration, ...): a registered class
or a class found by import path is instantiated with the given parameters; a function is
used as is.

Plug-ins: an installed package adds named policies through an entry point in the group
``twinedge.policies.placement`` or ``twinedge.policies.migration`` (see
:data:`twinedge.scenario.schema.PLUGIN_GROUPS`), e.g. in its ``pyproject.toml``::

    [project.entry-points."twinedge.policies.placement"]
    my-greedy = "mypkg.policies:MyGreedy"

Names (built-in or plug-in) are what a scenario file may use; an import path is accepted
only from the command line and the Python API (the schema refuses it in files), because a
shared file must not run code its reader did not choose to install.

Where the module of an import path is looked for: on ``sys.path``, after the folders given
to :func:`search_first`. The ``twinedge`` command gives it the current folder, so
``mypolicies:fn`` is the ``mypolicies.py`` next to the user, as ``python -m`` would find
it, even when an installed module has the same name; worker processes of a parallel run
get the same folders (:func:`twinedge.engine.parallel.run_jobs`). The folders are in front
only while the policy's module is imported: twinedge's own imports never see the user's
files first.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

from twinedge.errors import PolicyError

# the command line sets this before it resolves anything (and so does a worker process);
# stdlib-only imports above, so that setting it costs the command nothing
_search_first: tuple[str, ...] = ()


def search_first(folders: Iterable[str | os.PathLike[str]]) -> None:
    """Look for the module of an import-path policy in ``folders`` before ``sys.path``.

    ``twinedge`` calls it with the current folder; the Python API leaves it empty, since
    there the script's folder (or the notebook's) is on ``sys.path`` already.

    Parameters:
        folders: absolute folder paths, searched in this order; empty to search
            ``sys.path`` only.

    Examples:
        >>> search_first(["/srv/study"]); searched_first()
        ('/srv/study',)
        >>> search_first([]); searched_first()
        ()
    """
    global _search_first
    _search_first = tuple(os.fspath(f) for f in folders)


def searched_first() -> tuple[str, ...]:
    """The folders :func:`search_first` set (to hand on to worker processes)."""
    return _search_first


def _where(folders: tuple[str, ...]) -> str:
    here = os.getcwd()
    named = [f"the current folder ({f})" if f == here else f for f in folders]
    named[:1] = [f"in {n}" for n in named[:1]]
    where = " or on the Python path (sys.path, PYTHONPATH)"
    if not named:
        where = "on the Python path (sys.path, PYTHONPATH)"
        if sys.flags.safe_path:
            where += "; the current folder is not searched when PYTHONSAFEPATH or -P is set"
    return ", ".join(named) + where


def _import(module_name: str, kind: str, spec: str, registry: Mapping[str, type]) -> ModuleType:
    """Import ``module_name`` with the :func:`search_first` folders in front of sys.path."""
    front = list(_search_first)
    sys.path[:0] = front
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # the module itself (or a package above it) is missing, not something it imports
        if exc.name is None or module_name == exc.name or module_name.startswith(exc.name + "."):
            raise PolicyError(
                f"cannot import module {module_name!r} for {kind} policy {spec!r}: "
                f"no module named {exc.name or module_name!r} {_where(tuple(front))}; "
                f"{_hint(registry, kind)}"
            ) from exc
        raise PolicyError(
            f"cannot import module {module_name!r} for {kind} policy {spec!r}: importing it "
            f"raised {type(exc).__name__}: {exc} (install what it needs)"
        ) from exc
    except Exception as exc:
        raise PolicyError(
            f"cannot import module {module_name!r} for {kind} policy {spec!r}: importing it "
            f"raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for f in front:  # the first occurrence is ours, whatever the module added itself
            if f in sys.path:
                sys.path.remove(f)


def plugins(kind: str) -> dict[str, EntryPoint]:
    """Installed plug-in policies of ``kind`` by name (entry points, not yet loaded)."""
    from twinedge.scenario.schema import PLUGIN_GROUPS

    group = PLUGIN_GROUPS.get(kind)
    return {ep.name: ep for ep in entry_points(group=group)} if group else {}


def _hint(registry: Mapping[str, type], kind: str = "") -> str:
    names = ", ".join(sorted({*registry, *plugins(kind)}))
    return f"use one of {names} or an import path of the form 'package.module:function_or_class'"


def _instantiate(cls: type[Any], params: dict[str, Any], kind: str, label: str) -> Any:
    try:
        return cls(**params)
    except TypeError as exc:
        try:
            accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        except (TypeError, ValueError):
            accepted = []
        raise PolicyError(
            f"{kind} policy {label!r} rejected parameters {sorted(params)}: {exc}; "
            f"it accepts: {', '.join(accepted) or 'no parameters'}"
        ) from exc
    except ValueError as exc:
        raise PolicyError(f"{kind} policy {label!r}: bad parameter: {exc}") from exc


def resolve(spec: str, registry: Mapping[str, type], kind: str, **params: Any) -> Callable:
    """Return a ready policy of ``kind``: a registered name, or ``package.module:attr``
    (dotted attributes allowed). A class is instantiated with ``params``; a function is
    used as is and cannot take parameters. Every failure is a :class:`PolicyError` that
    names the known policies."""
    return _ready(find(spec, registry, kind), params, kind, spec.strip())


def find(spec: str, registry: Mapping[str, type], kind: str) -> Any:
    """The class or function a policy name or import path names, not yet built.

    Raises:
        PolicyError: an empty or malformed name, an unknown name, a module that cannot be
            imported or an attribute it lacks (the message names the known policies).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PolicyError(f"{kind} policy must be a non-empty string; {_hint(registry, kind)}")
    spec = spec.strip()
    if spec in registry:
        return registry[spec]
    if ":" not in spec:
        plugin = plugins(kind).get(spec)
        if plugin is None:
            raise PolicyError(f"unknown {kind} policy {spec!r}; {_hint(registry, kind)}")
        try:
            return plugin.load()
        except Exception as exc:
            raise PolicyError(
                f"cannot load plug-in {kind} policy {spec!r} ({plugin.value}, entry point "
                f"group {plugin.group!r}): {type(exc).__name__}: {exc}"
            ) from exc
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PolicyError(f"malformed {kind} policy {spec!r}; {_hint(registry, kind)}")
    obj: Any = _import(module_name, kind, spec, registry)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PolicyError(
                f"module {module_name!r} has no attribute {attr!r} ({kind} policy {spec!r}); "
                f"{_hint(registry, kind)}"
            )
        obj = getattr(obj, part)
    return obj


def _ready(obj: Any, params: dict[str, Any], kind: str, spec: str) -> Callable:
    if inspect.isclass(obj):
        obj = _instantiate(obj, params, kind, spec)
    elif params:
        raise PolicyError(
            f"{kind} policy {spec!r} is a function, so it cannot take parameters "
            f"{sorted(params)}; make it a class whose __init__ takes them"
        )
    if not callable(obj):
        raise PolicyError(f"{kind} policy {spec!r} is not callable")
    return obj
