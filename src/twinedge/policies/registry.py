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
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from twinedge.errors import PolicyError
from twinedge.scenario.schema import PLUGIN_GROUPS


def plugins(kind: str) -> dict[str, EntryPoint]:
    """Installed plug-in policies of ``kind`` by name (entry points, not yet loaded)."""
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
    if not isinstance(spec, str) or not spec.strip():
        raise PolicyError(f"{kind} policy must be a non-empty string; {_hint(registry, kind)}")
    spec = spec.strip()
    if spec in registry:
        return _instantiate(registry[spec], params, kind, spec)
    if ":" not in spec:
        plugin = plugins(kind).get(spec)
        if plugin is None:
            raise PolicyError(f"unknown {kind} policy {spec!r}; {_hint(registry, kind)}")
        try:
            loaded = plugin.load()
        except Exception as exc:
            raise PolicyError(
                f"cannot load plug-in {kind} policy {spec!r} ({plugin.value}, entry point "
                f"group {plugin.group!r}): {type(exc).__name__}: {exc}"
            ) from exc
        return _ready(loaded, params, kind, spec)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PolicyError(f"malformed {kind} policy {spec!r}; {_hint(registry, kind)}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PolicyError(
            f"cannot import module {module_name!r} for {kind} policy {spec!r} "
            f"({type(exc).__name__}: {exc}); check that it is on PYTHONPATH; {_hint(registry, kind)}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PolicyError(
                f"module {module_name!r} has no attribute {attr!r} ({kind} policy {spec!r}); "
                f"{_hint(registry, kind)}"
            )
        obj = getattr(obj, part)
    return _ready(obj, params, kind, spec)


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
