"""The classes of the core's error tree, for the tests of the edges' tables."""

from __future__ import annotations

from twinedge import errors
from twinedge.errors import ServiceError


def service_errors() -> list[type[ServiceError]]:
    """Every subclass of :class:`ServiceError` defined in :mod:`twinedge.errors`."""
    out, todo = [], [ServiceError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__ == errors.__name__:
                out.append(sub)
                todo.append(sub)
    return sorted(out, key=lambda c: c.__name__)
