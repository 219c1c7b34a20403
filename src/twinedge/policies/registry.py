"""Resolve a policy by registered name or by import path ``module.path:attribute``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from twinedge.errors import PolicyError


def resolve(spec: str, registry: Mapping[str, type], kind: str, **params: Any) -> Callable:
    """Return a ready policy: a built-in class instantiated with ``params``, or the object
    at ``module:attribute`` (a class is instantiated with ``params``; a function is used
    as is and takes no parameters)."""
    if not isinstance(spec, str) or not spec:
        raise PolicyError(f"{kind} policy: expected a name or module:attribute, got {spec!r}")
    if spec in registry:
        target: Any = registry[spec]
    elif ":" in spec:
        mod_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as err:
            raise PolicyError(
                f"{kind} policy {spec!r}: cannot import module {mod_name!r} ({err})"
            ) from None
        try:
            target = getattr(module, attr)
        except AttributeError:
            raise PolicyError(
                f"{kind} policy {spec!r}: module {mod_name!r} has no attribute {attr!r}"
            ) from None
    else:
        known = ", ".join(sorted(registry))
        raise PolicyError(
            f"unknown {kind} policy {spec!r}; use one of {known} or module.path:function"
        )
    if isinstance(target, type):
        try:
            return target(**params)
        except TypeError as err:
            raise PolicyError(f"{kind} policy {spec!r}: bad parameters {params} ({err})") from None
    if params:
        raise PolicyError(
            f"{kind} policy {spec!r} is a function and takes no parameters; got {params}"
        )
    if not callable(target):
        raise PolicyError(f"{kind} policy {spec!r} is not callable")
    return target
