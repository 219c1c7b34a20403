"""Reading untrusted input files: the scenario channel's limits on :mod:`twinedge.textinput`.

Every file a user hands to twinedge (a scenario, the ``twinedge serve`` configuration, a
placement instance) is read here, and refused with one :class:`~twinedge.errors.InputError`
line naming the file and, where known, the line or the field, when it is:

- larger than :data:`MAX_FILE_BYTES` (checked before reading);
- not UTF-8 (a lone surrogate written as raw bytes is not UTF-8 either);
- nested deeper than :data:`MAX_DEPTH` levels (checked while parsing, so a 10,000-level
  file never reaches Python's recursion limit);
- a YAML file whose aliases expand it by more than :data:`MAX_ALIAS_NODES` nodes, or refer
  to themselves (the "billion laughs": a 1 kB file that expands to 10^9 nodes);
- holding an integer of more than :data:`MAX_INT_DIGITS` digits, a number that is not finite
  (``.inf``, ``.nan``, ``1.0e400``, JSON ``NaN``/``Infinity``/``1e400``);
- holding a string (or key) with a NUL character or a lone surrogate (``"\\ud800"`` escaped):
  no name, path or URL needs them, and they break file paths, terminals and UTF-8 outputs.

The rules themselves live in :mod:`twinedge.textinput`; this module holds the limits of
this channel (:data:`LIMITS`) and the file name in front of every message. YAML 1.2
exponent numbers (``1e9``, ``5.0e6``: strings in YAML 1.1) are read as numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twinedge import textinput
from twinedge.errors import InputError
from twinedge.textinput import TextInputError

MAX_FILE_BYTES = 64 * 2**20
"""Largest input file read (64 MiB)."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings, aliases expanded."""
MAX_ALIAS_NODES = 100_000
"""Most nodes that YAML aliases may add to a document when expanded."""
MAX_INT_DIGITS = 40
"""Longest integer literal (a 128-bit seed has 39 digits)."""

LIMITS = textinput.Limits(
    max_depth=MAX_DEPTH,
    max_int_digits=MAX_INT_DIGITS,
    max_alias_nodes=MAX_ALIAS_NODES,
    json_only=False,
    yaml12_exponents=True,
)
"""The limits of scenario files, ``serve.yaml`` and placement instances."""


def _error(source: str | Path, e: TextInputError, suffix: str = "") -> InputError:
    where = e.where()
    return InputError(f"{source}: {where + ': ' if e.path else ''}{e.message}{suffix}")


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file of at most :data:`MAX_FILE_BYTES` bytes."""
    try:
        return textinput.read_text(path, MAX_FILE_BYTES)
    except OSError as e:
        raise InputError(f"{path}: cannot read the file ({e.strerror or e})") from None
    except TextInputError as e:
        utf8 = "; expected a UTF-8 text file" if "not UTF-8" in e.message else ""
        raise _error(Path(path), e, utf8) from None


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` (one document) from ``source`` under :data:`LIMITS`."""
    try:
        return textinput.load_yaml(text, LIMITS)
    except TextInputError as e:
        raise _error(source, e) from None


def load_json(text: str, source: str) -> Any:
    """Parse JSON ``text`` from ``source`` under :data:`LIMITS`."""
    try:
        return textinput.loads(text, LIMITS)
    except TextInputError as e:
        suffix = "; expected a JSON object" if "invalid JSON" in e.message else ""
        raise _error(source, e, suffix) from None
