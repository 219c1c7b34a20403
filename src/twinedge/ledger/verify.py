"""Full verification of one stored log against its signed checkpoints.

Nothing stored in the SQLite file is trusted: every leaf hash is re-derived from the
entry bytes (RFC 6962 ``H(0x00 || entry)``), every perfect subtree from those leaves,
and the tree hash at each checkpoint's size (RFC 9162 §2.1.1) is compared with the
root the checkpoint *signs*.  The stored hashes are compared too, which is how a
damaged entry (a changed byte, a deleted or a moved row) is pinned to its exact
index; a rewrite that keeps the stored hashes consistent is still caught by the
signed roots, and then the first bad index is narrowed to the range between the
last checkpoint that matches and the first that does not.

The checkpoints checked are the ones the caller gathers (the domain's own
``checkpoints/`` and, from :meth:`.LedgerDir.verify`, the ones other domains
witnessed).  A checkpoint larger than the log means the log was truncated or rolled
back; ``latest`` older than another checkpoint means an old checkpoint is presented
as the newest (a replay); a log whose recorded domain is not the one asked for was
copied from another domain.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinedge.errors import LedgerError
from twinedge.ledger import merkle
from twinedge.ledger.entry import is_canonical
from twinedge.ledger.note import Checkpoint, Verifier, open_checkpoint
from twinedge.ledger.store import TRIGGER_NAMES

__all__ = ["VerifyReport", "root_from_levels", "verify_log"]

_sha256 = hashlib.sha256


@dataclass
class VerifyReport:
    """What :func:`verify_log` found.  ``ok`` is False if there is any problem."""

    domain: str
    path: str
    size: int = 0
    checkpoint_size: int | None = None
    root: str | None = None
    first_bad_index: int | None = None
    bad_range: tuple[int, int] | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _first_message: str | None = field(default=None, repr=False)
    _cause: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad(self, index: int | None, message: str) -> None:
        """Record a problem; ``index`` is an entry index known to be bad, if any."""
        self.problems.append(message)
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index
            self._first_message = message

    def cause(self, message: str) -> None:
        """Record the problem that explains the others (replaced log, substituted key)."""
        if self._cause is None:
            self._cause = message
            self.problems.insert(0, message)
        else:
            self.problems.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "path": self.path,
            "ok": self.ok,
            "size": self.size,
            "checkpoint_size": self.checkpoint_size,
            "root": self.root,
            "first_bad_index": self.first_bad_index,
            "bad_range": list(self.bad_range) if self.bad_range else None,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        if self.ok:
            covered = (
                "no checkpoint"
                if self.checkpoint_size is None
                else (f"checkpoint at size {self.checkpoint_size} verified")
            )
            return f"ok: {self.domain}: {self.size} entries, {covered}"
        if self._cause is not None:
            return f"FAILED: {self.domain}: {self._cause}"
        where = ""
        if self.first_bad_index is not None:
            where = f" first bad index {self.first_bad_index}:"
        elif self.bad_range is not None:
            where = f" first bad index in [{self.bad_range[0]}, {self.bad_range[1]}):"
        msg = self._first_message or self.problems[0]
        return f"FAILED: {self.domain}:{where} {msg}"


def root_from_levels(levels: list[list[bytes]], size: int) -> bytes:
    """Tree hash of the first ``size`` leaves from complete per-level perfect-subtree hashes."""
    if size == 0:
        return merkle.EMPTY_ROOT
    r: bytes | None = None
    level = 0
    while size >> level:
        if (size >> level) & 1:
            h = levels[level][(size >> level) - 1]
            r = h if r is None else _sha256(b"\x01" + h + r).digest()
        level += 1
    assert r is not None
    return r


def _first_diff(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    lo, step = 0, 1 << 16
    while lo < n and a[lo : lo + step] == b[lo : lo + step]:
        lo += step
    while lo < n and a[lo] == b[lo]:
        lo += 1
    return lo


def _stored_level(con: sqlite3.Connection, level: int, rep: VerifyReport) -> bytes | None:
    """Concatenated stored hashes of one level, or None if the rows are not contiguous."""
    parts: list[bytes] = []
    end = 0
    base = level << 48  # row id = level << 48 | start (see twinedge.ledger.store)
    rows = con.execute(
        "SELECT start, hashes FROM nodes WHERE id >= ? AND id < ? ORDER BY id",
        (base, base + (1 << 48)),
    )
    for start, blob in rows:
        if start != end or len(blob) % 32:
            rep.bad(
                end << level,
                f"stored hashes of level {level} have a gap or overlap at node {end} "
                "(hash rows were deleted or altered)",
            )
            return None
        parts.append(blob)
        end += len(blob) // 32
    return b"".join(parts)


def verify_log(
    db_path: str | Path,
    checkpoints: list[tuple[str, str]],
    verifiers: list[Verifier],
    *,
    domain: str = "",
    latest: str | None = None,
    check_entries: bool = True,
) -> VerifyReport:
    """Re-derive every hash of the log at ``db_path`` and check the signed checkpoints.

    ``checkpoints`` is a list of ``(label, signed note text)``; ``latest`` is the label
    of the one the log claims as latest.  ``check_entries`` also checks each entry is a
    valid, canonically encoded entry.  Never raises for a damaged log; problems are in
    the report.
    """
    rep = VerifyReport(domain=domain, path=str(db_path))
    # 1. signatures
    signed: list[tuple[str, Checkpoint]] = []
    for label, text in checkpoints:
        try:
            signed.append((label, open_checkpoint(text, verifiers)))
        except LedgerError as exc:
            rep.bad(None, f"checkpoint {label}: {exc}")
    if not checkpoints:
        rep.bad(None, "no signed checkpoint found; sign one with 'twinedge ledger checkpoint'")
    latest_cp = next((cp for label, cp in signed if label == latest), None)
    if latest_cp is None and signed:
        latest_cp = max((cp for _, cp in signed), key=lambda c: c.size)
    if latest_cp is not None:
        rep.checkpoint_size = latest_cp.size
    max_signed = max((cp.size for _, cp in signed), default=0)
    newest = max(signed, key=lambda x: x[1].size, default=None)
    if latest_cp is not None and newest is not None and newest[1].size > latest_cp.size:
        rep.bad(
            None,
            f"checkpoint {latest} (size {latest_cp.size}) is older than checkpoint "
            f"{newest[0]} (size {newest[1].size}): an old checkpoint is presented as the "
            "newest (replay or rollback)",
        )

    # 2. open read-only-in-spirit: no pragma, no write, nothing read from the store class
    path = Path(db_path)
    if not path.is_file():
        rep.bad(0 if max_signed else None, f"log {path} does not exist")
        return rep
    con = sqlite3.connect(path)
    try:
        _verify_open_log(con, rep, signed, check_entries)
    except sqlite3.DatabaseError as exc:
        # the first entry that could not be read and checked
        rep.bad(rep.size, f"log file {path} is damaged or truncated (sqlite: {exc})")
    finally:
        con.close()
    return rep


def _verify_open_log(
    con: sqlite3.Connection,
    rep: VerifyReport,
    signed: list[tuple[str, Checkpoint]],
    check_entries: bool,
) -> None:
    triggers = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    missing = TRIGGER_NAMES - triggers
    if missing:
        rep.bad(None, f"append-only triggers were removed from the file: {sorted(missing)}")
    try:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        meta = {}
    origin = meta.get("origin")
    if not rep.domain:
        rep.domain = str(meta.get("domain", ""))
    elif meta.get("domain") is not None and meta.get("domain") != rep.domain:
        rep.cause(
            f"the log at {rep.path} belongs to domain {meta.get('domain')!r} (origin "
            f"{origin!r}), not {rep.domain!r}: the directory was replaced by another "
            "domain's or copied"
        )
    for label, cp in signed:
        if origin is not None and cp.origin != origin:
            rep.bad(None, f"checkpoint {label} is for origin {cp.origin!r}, not {origin!r}")

    # 3. entries -> leaf hashes, stopping at the first gap or unreadable row
    leaves: list[bytes] = []
    append = leaves.append
    expected = 0
    first_noncanonical: int | None = None
    try:
        for idx, data in con.execute("SELECT idx, data FROM entries ORDER BY idx"):
            if idx != expected:
                rep.bad(
                    expected,
                    f"entry {expected} is missing (the next stored entry is {idx}); "
                    "rows were deleted or renumbered",
                )
                break
            if not isinstance(data, bytes):
                # a row rewritten by hand may hold TEXT or a number instead of a BLOB
                data = data.encode() if isinstance(data, str) else repr(data).encode()
            append(_sha256(b"\x00" + data).digest())
            if check_entries and first_noncanonical is None and not is_canonical(data):
                first_noncanonical = idx
            expected += 1
    except sqlite3.DatabaseError as exc:
        rep.bad(expected, f"entry {expected} is unreadable: the log file is damaged ({exc})")
    rep.size = n = len(leaves)
    if first_noncanonical is not None:
        rep.bad(
            first_noncanonical,
            f"entry {first_noncanonical} is not a valid canonical JSON entry (altered bytes)",
        )

    # 4. leaf hashes vs stored level 0, then every complete level above
    levels: list[list[bytes]] = [leaves]
    structural_ok = True
    stored = _stored_level(con, 0, rep)
    if stored is None:
        structural_ok = False
    else:
        mine = b"".join(leaves)
        if stored[: len(mine)] != mine:
            i = _first_diff(stored, mine) // 32
            rep.bad(i, f"entry {i} does not match its stored leaf hash (entry altered or moved)")
            structural_ok = False
        elif len(stored) > len(mine) and rep.first_bad_index is None:
            rep.bad(n, f"stored leaf hashes go beyond the last entry {n - 1}; entries were removed")
    level = 0
    while len(levels[level]) > 1:
        cur = levels[level]
        nxt = [_sha256(b"\x01" + cur[i] + cur[i + 1]).digest() for i in range(0, len(cur) - 1, 2)]
        levels.append(nxt)
        level += 1
        if structural_ok:
            stored = _stored_level(con, level, rep)
            mine = b"".join(nxt)
            if stored is None:
                structural_ok = False
            elif stored[: len(mine)] != mine:
                k = _first_diff(stored, mine) // 32
                rep.bad(
                    k << level,
                    f"stored hash of node (level {level}, index {k}) covering entries "
                    f"{k << level}..{((k + 1) << level) - 1} does not match them",
                )
                structural_ok = False
    rep.root = root_from_levels(levels, n).hex()

    # 5. the signed roots
    good_below = 0
    for label, cp in sorted(signed, key=lambda x: x[1].size):
        if cp.size > n:
            rep.bad(
                n,
                f"checkpoint {label} signs {cp.size} entries but only {n} are readable; "
                f"entries from index {n} were removed: the log was truncated or rolled back",
            )
            continue
        if root_from_levels(levels, cp.size) != cp.root:
            msg = (
                f"the entries do not hash to the root signed by checkpoint {label} "
                f"(size {cp.size}); an entry in [{good_below}, {cp.size}) was altered"
            )
            if rep.first_bad_index is None and rep.bad_range is None:
                rep.bad_range = (good_below, cp.size)
                rep._first_message = msg
            rep.bad(None, msg)
        else:
            good_below = max(good_below, cp.size)
    if rep.checkpoint_size is not None and n > rep.checkpoint_size and rep.ok:
        rep.warnings.append(
            f"entries {rep.checkpoint_size}..{n - 1} are not covered by a signed checkpoint yet"
        )
