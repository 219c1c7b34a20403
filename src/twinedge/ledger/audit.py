"""Cross-domain audit: split views, rollbacks, replaced logs, substituted keys, replays.

The gossip check of Certificate Transparency (RFC 9162 §8.1.4 and §11.3): any two
checkpoints of one log must be reconciled by a consistency proof (RFC 9162 §2.1.4) —
equal sizes need equal roots, and the smaller tree must be a prefix of the larger.
Checkpoints are gathered from every domain's ``checkpoints/`` directory, from every
``witness`` entry in every log (the checkpoints other domains saw), and from
checkpoint files presented to the auditor.  Consistency proofs are generated from any
local copy of the log that is large enough and then *verified* against the two signed
roots, so a copy that disagrees with a checkpoint is itself reported.

Witnessed checkpoints are held to the witnessed domain's *current* log in the same
ledger directory: its log must still be at least as large (else ``rollback``), a
consistency proof from the witnessed size to the current size must verify against the
witnessed root (else ``split_view``), the log must be the one of the witnessed domain
and origin (else ``replaced``), its ``key.pub`` must be the key pinned by the first
witness entry (else ``key_mismatch``) and its ``checkpoints/latest`` must not be older
than what was witnessed (else ``replay``).  Signatures are checked against keys
given out of band (``vkeys``), else against the pinned keys, and only for a log that
was never witnessed against its ``key.pub``.

Every local copy is also fully verified (:meth:`.LedgerDir.verify`: every hash
re-derived from the entries); a failure is ``verify_failed``, a log that cannot be
opened is ``unreadable`` and one that fails while being read is ``log_damaged``.
Inclusion: every witness entry, plus an evenly spaced sample of entries of every log,
is proved included in the log's latest signed checkpoint (RFC 9162 §2.1.3).  Any finding — ``unchecked`` included — fails the audit.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinedge.errors import LedgerError
from twinedge.ledger import merkle
from twinedge.ledger.ledgerdir import LedgerDir, WitnessRecord
from twinedge.ledger.note import Checkpoint, Verifier, open_checkpoint, parse_note
from twinedge.ledger.store import LedgerLog

__all__ = ["AuditIssue", "AuditReport", "audit"]

SPLIT_VIEW = "split_view"
BAD_SIGNATURE = "bad_signature"
INCLUSION_FAILED = "inclusion_failed"
UNCHECKED = "unchecked"
ROLLBACK = "rollback"
REPLACED = "replaced"
KEY_MISMATCH = "key_mismatch"
REPLAY = "replay"
LOG_DAMAGED = "log_damaged"
VERIFY_FAILED = "verify_failed"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class AuditIssue:
    """One finding.

    ``kind`` is one of split_view, bad_signature, inclusion_failed, rollback, replaced,
    key_mismatch, replay, verify_failed, log_damaged, unreadable or unchecked (module
    docstring).
    """

    kind: str
    origin: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "origin": self.origin, "detail": self.detail}


@dataclass
class AuditReport:
    """All findings; ``ok`` is False if there is any finding (``unchecked`` is no pass)."""

    issues: list[AuditIssue] = field(default_factory=list)
    checkpoints: int = 0
    consistency_proofs: int = 0
    inclusion_proofs: int = 0
    origins: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "origins": self.origins,
            "checkpoints": self.checkpoints,
            "consistency_proofs": self.consistency_proofs,
            "inclusion_proofs": self.inclusion_proofs,
            "issues": [i.to_dict() for i in self.issues],
        }


@dataclass
class _Seen:
    label: str
    cp: Checkpoint


def _origin_of(text: str) -> str:
    try:
        body, _ = parse_note(text)
        return body.decode("utf-8").split("\n", 1)[0]
    except (LedgerError, UnicodeDecodeError):
        return "?"


def audit(
    ledger_dirs: list[str | Path],
    *,
    checkpoints: list[tuple[str, str]] | None = None,
    vkeys: list[str] | None = None,
    sample: int = 32,
) -> AuditReport:
    """Audit ledger directories and presented checkpoints ``(label, signed note)``.

    Parameters
    ----------
    ledger_dirs : ledger directories (yours and copies of other parties').
    checkpoints : presented signed checkpoints, ``(label, note text)``.
    vkeys : verifier keys obtained out of band; they are the only trusted keys for
        their names.  Other origins are trusted with the key pinned by their first
        witness entry, or, for a log never witnessed, its ``key.pub``.
    sample : about how many entries of each log get an inclusion proof (besides every
        witness entry).

    Raises
    ------
    LedgerError
        Only for unusable input (a directory that is not a ledger).  Everything wrong
        with the logs is a finding in the report.

    Examples
    --------
    >>> import tempfile
    >>> ld = LedgerDir.create(Path(tempfile.mkdtemp()), ["a", "b"])
    >>> _ = ld.checkpoint_all()
    >>> ld.close()
    >>> audit([ld.path]).ok
    True
    """
    rep = AuditReport()
    dirs = [LedgerDir.open(p) for p in ledger_dirs]
    explicit: dict[str, list[Verifier]] = {}
    for v in (Verifier.from_vkey(k) for k in vkeys or []):
        explicit.setdefault(v.name, []).append(v)
    pinned: dict[str, list[Verifier]] = {}
    on_disk: dict[str, list[Verifier]] = {}
    copies: dict[str, list[tuple[str, LedgerLog]]] = {}
    notes: list[tuple[str, str]] = []
    witness_refs: list[tuple[str, LedgerLog, int]] = []
    records: list[tuple[LedgerDir, WitnessRecord]] = []
    try:
        for ld in dirs:
            recs = ld.witness_records()
            records.extend((ld, r) for r in recs)
            for r in recs:
                for _, v in LedgerDir.pins([r]).values():
                    if v not in pinned.setdefault(r.origin, []):
                        pinned[r.origin].append(v)
                notes.append((f"{ld.path}/{r.witness} entry {r.index} (witness)", r.checkpoint))
            for d in ld.domains:
                where = f"{ld.path}/{d}"
                try:
                    log = ld.log(d)
                    log.size  # noqa: B018  (reads the file: a damaged one fails here)
                except (LedgerError, sqlite3.Error) as exc:
                    origin = _expected_origin(ld, d, recs) or _origin_of(
                        ld.latest_checkpoint(d) or ""
                    )
                    rep.issues.append(AuditIssue(UNREADABLE, origin, f"{where}: {exc}"))
                    continue
                copies.setdefault(log.origin, []).append((where, log))
                try:
                    v = ld.verifier(d)
                except LedgerError as exc:
                    rep.issues.append(AuditIssue(KEY_MISMATCH, log.origin, f"{where}: {exc}"))
                else:
                    if v not in on_disk.setdefault(log.origin, []):
                        on_disk[log.origin].append(v)
                notes.extend(ld.checkpoint_history(d))
                witness_refs.extend((where, log, r.index) for r in recs if r.witness == d)
        trusted = {o: list(vs) for o, vs in on_disk.items()}
        trusted.update(pinned)
        trusted.update(explicit)
        notes.extend(checkpoints or [])
        seen = _check_signatures(rep, notes, trusted)
        for ld in dirs:
            _check_domains(rep, ld, [r for x, r in records if x is ld], trusted)
        latest = _check_consistency(rep, seen, copies)
        _check_inclusions(rep, copies, latest, witness_refs, sample)
        for ld in dirs:
            _check_full(rep, ld, explicit)
    finally:
        for ld in dirs:
            ld.close()
    rep.origins = sorted(copies)
    return rep


def _guard(rep: AuditReport, origin: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one check; a log that cannot be read mid-check becomes a finding, not a crash."""
    try:
        return fn(*args)
    except (LedgerError, sqlite3.Error) as exc:
        rep.issues.append(AuditIssue(LOG_DAMAGED, origin, f"a log could not be read: {exc}"))
        return None


def _expected_origin(ld: LedgerDir, domain: str, recs: list[WitnessRecord]) -> str | None:
    """The origin other domains recorded for ``domain`` (``None`` if never witnessed)."""
    for r in recs:
        if r.domain == domain:
            return r.origin
    return None


def _check_domains(
    rep: AuditReport,
    ld: LedgerDir,
    recs: list[WitnessRecord],
    trusted: dict[str, list[Verifier]],
) -> None:
    """Hold every witnessed checkpoint to the witnessed domain's current log in ``ld``."""
    readable: dict[str, LedgerLog] = {}
    for d in ld.domains:
        try:
            readable[d] = ld.log(d)
            readable[d].size  # noqa: B018
        except (LedgerError, sqlite3.Error):
            readable.pop(d, None)
    # a log that is not the one of the domain whose name it is under
    for d, log in readable.items():
        _check_latest(rep, ld, d, log.origin, trusted)
        if log.domain != d:
            origin = _expected_origin(ld, d, recs) or log.origin
            rep.issues.append(
                AuditIssue(
                    REPLACED,
                    origin,
                    f"{ld.path}/{d} holds the log of domain {log.domain!r} (origin "
                    f"{log.origin!r}), not of {d!r}: the directory was replaced or copied",
                )
            )
    key_reported: set[str] = set()
    # a log never witnesses itself: such a record is in a copy of another domain's log
    recs = [r for r in recs if ld.witnessed_domain(r) != r.witness]
    for r in recs:
        wd = ld.witnessed_domain(r)
        where = f"{ld.path}/{wd}"
        label = f"{ld.path}/{r.witness} entry {r.index}"
        if wd is None or wd not in ld.domains:
            rep.issues.append(
                AuditIssue(
                    REPLACED,
                    r.origin,
                    f"{label} witnessed {r.origin!r} (domain {r.domain!r}), but {ld.path} "
                    "has no log of it: the domain was removed or replaced",
                )
            )
            continue
        wlog = readable.get(wd)
        if wlog is None:
            continue  # reported as unreadable
        if wlog.domain == wd and wlog.origin != r.origin:
            rep.issues.append(
                AuditIssue(
                    REPLACED,
                    r.origin,
                    f"{where} has origin {wlog.origin!r}, but {label} witnessed it as "
                    f"{r.origin!r}: the log was replaced",
                )
            )
        if wd not in key_reported:
            key_reported.add(wd)  # one comparison per domain
            pins = LedgerDir.pins([x for x in recs if ld.witnessed_domain(x) == wd])
            try:
                pub: Verifier | None = ld.verifier(wd)
            except LedgerError:
                pub = None  # reported while gathering
            for first, v in pins.values():
                if pub is not None and v != pub:
                    rep.issues.append(
                        AuditIssue(
                            KEY_MISMATCH,
                            r.origin,
                            f"{where}/key.pub is not the key pinned when {first.witness!r} "
                            f"first witnessed {wd!r} (entry {first.index}): the signing key "
                            "was substituted",
                        )
                    )
                    break
        try:
            cp = open_checkpoint(r.checkpoint, trusted.get(r.origin, []))
        except LedgerError:
            continue  # reported by the signature check
        if wlog.domain != wd or wlog.origin != cp.origin:
            continue  # reported as replaced; a proof against another log means nothing
        _guard(rep, cp.origin, _check_witnessed, rep, ld, wd, wlog, cp, label, trusted)


def _check_latest(
    rep: AuditReport, ld: LedgerDir, d: str, origin: str, trusted: dict[str, list[Verifier]]
) -> None:
    """``checkpoints/latest`` must be the largest checkpoint the domain ever signed."""
    history = ld.checkpoint_history(d)
    sizes: list[tuple[int, str]] = []
    for label, text in history:
        try:
            sizes.append((open_checkpoint(text, trusted.get(origin, [])).size, label))
        except LedgerError:
            continue  # reported by the signature check
    latest = next((sz for sz, label in sizes if label.endswith("/latest")), None)
    if latest is not None and sizes and max(sizes)[0] > latest:
        size, label = max(sizes)
        rep.issues.append(
            AuditIssue(
                REPLAY,
                origin,
                f"{ld.path}/{d}/checkpoints/latest (size {latest}) is older than {label} "
                f"(size {size}): an old checkpoint is presented as the newest",
            )
        )


def _check_witnessed(
    rep: AuditReport,
    ld: LedgerDir,
    d: str,
    log: LedgerLog,
    cp: Checkpoint,
    label: str,
    trusted: dict[str, list[Verifier]],
) -> None:
    where = f"{ld.path}/{d}"
    n = log.size
    if cp.size > n:
        rep.issues.append(
            AuditIssue(
                ROLLBACK,
                cp.origin,
                f"{label} witnessed a checkpoint of size {cp.size}, but the log at {where} "
                f"now has {n} entries: it was rolled back or truncated",
            )
        )
    else:
        proof = log.consistency_proof(cp.size, n)
        rep.consistency_proofs += 1
        if not merkle.verify_consistency(cp.size, n, cp.root, log.root(n), proof):
            rep.issues.append(
                AuditIssue(
                    SPLIT_VIEW,
                    cp.origin,
                    f"the log at {where} ({n} entries) does not extend the checkpoint "
                    f"{label} witnessed at size {cp.size}: its history was rewritten (fork)",
                )
            )
    note = ld.latest_checkpoint(d)
    try:
        latest = open_checkpoint(note, trusted.get(cp.origin, [])) if note else None
    except LedgerError:
        return  # reported by the signature check
    if latest is None or latest.size < cp.size:
        shown = "missing" if latest is None else f"size {latest.size}"
        rep.issues.append(
            AuditIssue(
                REPLAY,
                cp.origin,
                f"{where}/checkpoints/latest ({shown}) is older than the checkpoint {label} "
                f"witnessed at size {cp.size}: an old checkpoint is presented as the newest",
            )
        )


def _check_full(rep: AuditReport, ld: LedgerDir, explicit: dict[str, list[Verifier]]) -> None:
    """Re-derive every hash of every readable log (with the pinned or out-of-band keys)."""
    origins: dict[str, str] = {}
    for d in ld.domains:
        try:
            origins[d] = ld.log(d).origin
        except (LedgerError, sqlite3.Error):
            continue  # reported as unreadable
    plain = [d for d, o in origins.items() if o not in explicit]
    reports = ld.verify(plain) if plain else []
    for d, o in origins.items():
        if o in explicit:
            reports.extend(ld.verify([d], verifiers=explicit[o]))
    for r in reports:
        if not r.ok:
            rep.issues.append(
                AuditIssue(VERIFY_FAILED, origins[r.domain], r.summary().removeprefix("FAILED: "))
            )


def _check_signatures(
    rep: AuditReport, notes: list[tuple[str, str]], trusted: dict[str, list[Verifier]]
) -> dict[str, list[_Seen]]:
    seen: dict[str, list[_Seen]] = {}
    for label, text in notes:
        rep.checkpoints += 1
        origin = _origin_of(text)
        keys = trusted.get(origin)
        if not keys:
            rep.issues.append(
                AuditIssue(UNCHECKED, origin, f"{label}: no trusted key for this origin")
            )
            continue
        try:
            cp = open_checkpoint(text, keys)
        except LedgerError as exc:
            rep.issues.append(AuditIssue(BAD_SIGNATURE, origin, f"{label}: {exc}"))
            continue
        seen.setdefault(cp.origin, []).append(_Seen(label, cp))
    return seen


def _check_consistency(
    rep: AuditReport,
    seen: dict[str, list[_Seen]],
    copies: dict[str, list[tuple[str, LedgerLog]]],
) -> dict[str, Checkpoint]:
    """Check every origin's checkpoints pairwise-consistent; return the largest of each."""
    latest: dict[str, Checkpoint] = {}
    for origin, items in sorted(seen.items()):
        _guard(rep, origin, _consistency_of, rep, origin, items, copies, latest)
    return latest


def _consistency_of(
    rep: AuditReport,
    origin: str,
    items: list[_Seen],
    copies: dict[str, list[tuple[str, LedgerLog]]],
    latest: dict[str, Checkpoint],
) -> None:
    # distinct (size, root) heads, each with the first label that showed it
    heads: dict[tuple[int, bytes], str] = {}
    for s in items:
        heads.setdefault((s.cp.size, s.cp.root), s.label)
    by_size: dict[int, list[tuple[bytes, str]]] = {}
    for (size, root), label in heads.items():
        by_size.setdefault(size, []).append((root, label))
    for size, roots in sorted(by_size.items()):
        if len(roots) > 1:
            labels = " and ".join(lbl for _, lbl in roots[:2])
            rep.issues.append(
                AuditIssue(
                    SPLIT_VIEW,
                    origin,
                    f"two checkpoints of size {size} with different roots: {labels}",
                )
            )
    ordered = sorted(heads.items())
    latest[origin] = Checkpoint(origin, ordered[-1][0][0], ordered[-1][0][1])
    logs = copies.get(origin, [])
    biggest = max((log.size for _, log in logs), default=-1)
    # consecutive pairs, each proved with a copy big enough to cover the larger one
    for (a, la), (b, lb) in itertools.pairwise(ordered):
        if a[0] == b[0]:
            continue  # same size, already reported above
        provers = [(w, log) for w, log in logs if log.size >= b[0]]
        if not provers:
            have = f"the largest has {biggest} entries" if logs else "there is no readable copy"
            rep.issues.append(
                AuditIssue(
                    UNCHECKED,
                    origin,
                    f"no local copy of the log reaches size {b[0]} ({lb}); {have}, so "
                    f"its consistency with {la} is unproved",
                )
            )
            continue
        for where, log in provers:
            proof = log.consistency_proof(a[0], b[0])
            rep.consistency_proofs += 1
            if not merkle.verify_consistency(a[0], b[0], a[1], b[1], proof):
                rep.issues.append(
                    AuditIssue(
                        SPLIT_VIEW,
                        origin,
                        f"no consistency proof reconciles {la} (size {a[0]}) with {lb} "
                        f"(size {b[0]}); the copy at {where} matches " + _which(log, a, b),
                    )
                )
    # a single head (or the smallest) must also agree with every copy that covers it
    if ordered:
        (s0, r0), l0 = ordered[0]
        for where, log in logs:
            if log.size >= s0 and log.root(s0) != r0:
                rep.issues.append(
                    AuditIssue(
                        SPLIT_VIEW,
                        origin,
                        f"the copy at {where} does not match {l0} (size {s0})",
                    )
                )


def _which(log: LedgerLog, a: tuple[int, bytes], b: tuple[int, bytes]) -> str:
    ra, rb = log.root(a[0]) == a[1], log.root(b[0]) == b[1]
    if ra and not rb:
        return "the smaller one only"
    if rb and not ra:
        return "the larger one only"
    return "neither" if not ra else "both"


def _check_inclusions(
    rep: AuditReport,
    copies: dict[str, list[tuple[str, LedgerLog]]],
    latest: dict[str, Checkpoint],
    witness_refs: list[tuple[str, LedgerLog, int]],
    sample: int,
) -> None:
    targets: list[tuple[str, LedgerLog, int]] = list(witness_refs)
    for _origin, logs in copies.items():
        for where, log in logs:
            n = log.size
            step = max(1, n // max(1, sample))
            targets.extend((where, log, i) for i in range(0, n, step))
    done: set[tuple[int, int]] = set()
    for where, log, i in targets:
        if (id(log), i) in done:
            continue
        done.add((id(log), i))
        cp = latest.get(log.origin)
        if cp is None or i >= cp.size or cp.size > log.size:
            continue
        try:
            proof = log.inclusion_proof(i, cp.size)
            leaf = merkle.leaf_hash(log.entry_bytes(i))
        except (LedgerError, sqlite3.Error) as exc:
            rep.issues.append(
                AuditIssue(INCLUSION_FAILED, log.origin, f"entry {i} of {where}: {exc}")
            )
            continue
        rep.inclusion_proofs += 1
        if not merkle.verify_inclusion(leaf, i, cp.size, proof, cp.root):
            rep.issues.append(
                AuditIssue(
                    INCLUSION_FAILED,
                    log.origin,
                    f"entry {i} of {where} is not included in the signed checkpoint "
                    f"of size {cp.size}",
                )
            )
