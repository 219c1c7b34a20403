"""JSON merge patch (RFC 7396), the one rule every tier applies a partial write by: the
core's twin documents (:mod:`twinedge.runtime.things`), the edge hosts and the live
orchestrator. Pure, and it imports nothing of the package, so any layer may use it."""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge recursively, ``null`` deletes, anything else replaces.

    ``target`` is not changed; lists in ``patch`` are copied into the result.

    Examples:
        >>> merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [5]})
        {'a': 1, 'b': {'d': 3, 'e': 4}, 'f': [5]}
        >>> merge_patch({"a": 1}, "text")
        'text'
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch) if isinstance(patch, list) else patch
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result
