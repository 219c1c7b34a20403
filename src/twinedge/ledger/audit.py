"""Cross-domain audit: find split views, bad signatures and failing inclusion proofs.

The gossip check of Certificate Transparency (RFC 9162 §8.1.4 and §11.3): any two
checkpoints of one log must be reconciled by a consistency proof (RFC 9162 §2.1.4) —
equal sizes need equal roots, and the smaller tree must be a prefix of the larger.
Checkpoints are gathered from every domain's ``checkpoints/`` directory, from every
``witness`` entry in every log (the checkpoints other domains saw), and from
checkpoint files presented to the auditor.  Consistency proofs are generated from any
local copy of the log that is large enough and then *verified* against the two signed
roots, so a copy that disagrees with a checkpoint is itself reported.

Inclusion: every witness entry, plus an evenly spaced sample of entries of every log,
is proved included in the log's latest signed checkpoint (RFC 9162 §2.1.3).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinedge.errors import LedgerError
from twinedge.ledger import merkle
from twinedge.ledger.ledgerdir import LedgerDir
from twinedge.ledger.note import Checkpoint, Verifier, open_checkpoint, parse_note
from twinedge.ledger.store import LedgerLog

__all__ = ["AuditIssue", "AuditReport", "audit"]

SPLIT_VIEW = "split_view"
BAD_SIGNATURE = "bad_signature"
INCLUSION_FAILED = "inclusion_failed"
UNCHECKED = "unchecked"


@dataclass(frozen=True)
class AuditIssue:
    """One finding.  ``kind`` is split_view, bad_signature, inclusion_failed or unchecked."""

    kind: str
    origin: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "origin": self.origin, "detail": self.detail}


@dataclass
class AuditReport:
    """All findings; ``ok`` is False if any finding other than ``unchecked`` exists."""

    issues: list[AuditIssue] = field(default_factory=list)
    checkpoints: int = 0
    consistency_proofs: int = 0
    inclusion_proofs: int = 0
    origins: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(i.kind == UNCHECKED for i in self.issues)

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

    Trusted keys: ``vkeys`` (verifier keys obtained out of band) for their names; for
    any other origin, the ``key.pub`` of a local copy of that log.  Raises
    :class:`LedgerError` only for unusable input (a directory that is not a ledger).
    """
    rep = AuditReport()
    dirs = [LedgerDir.open(p) for p in ledger_dirs]
    trusted: dict[str, list[Verifier]] = {}
    for v in (Verifier.from_vkey(k) for k in vkeys or []):
        trusted.setdefault(v.name, []).append(v)
    explicit = set(trusted)
    copies: dict[str, list[tuple[str, LedgerLog]]] = {}
    notes: list[tuple[str, str]] = []
    witness_refs: list[tuple[str, LedgerLog, int]] = []
    try:
        for ld in dirs:
            for d in ld.domains:
                log = ld.log(d)
                where = f"{ld.path}/{d}"
                copies.setdefault(log.origin, []).append((where, log))
                if log.origin not in explicit:
                    v = ld.verifier(d)
                    if v not in trusted.setdefault(log.origin, []):
                        trusted[log.origin].append(v)
                notes.extend(ld.checkpoint_history(d))
                for i, e in log.find_type("witness"):
                    body = e.get("body")
                    text = body.get("checkpoint") if isinstance(body, dict) else None
                    if isinstance(text, str):
                        notes.append((f"{where} entry {i} (witness)", text))
                        witness_refs.append((where, log, i))
        notes.extend(checkpoints or [])
        seen = _check_signatures(rep, notes, trusted)
        latest = _check_consistency(rep, seen, copies)
        _check_inclusions(rep, copies, latest, witness_refs, sample)
    finally:
        for ld in dirs:
            ld.close()
    rep.origins = sorted(copies)
    return rep


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
                rep.issues.append(
                    AuditIssue(
                        UNCHECKED,
                        origin,
                        f"no local copy of the log reaches size {b[0]} ({lb}); largest copy "
                        f"has {biggest} entries, so its consistency with {la} is unproved",
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
    return latest


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
        proof = log.inclusion_proof(i, cp.size)
        rep.inclusion_proofs += 1
        leaf = merkle.leaf_hash(log.entry_bytes(i))
        if not merkle.verify_inclusion(leaf, i, cp.size, proof, cp.root):
            rep.issues.append(
                AuditIssue(
                    INCLUSION_FAILED,
                    log.origin,
                    f"entry {i} of {where} is not included in the signed checkpoint "
                    f"of size {cp.size}",
                )
            )
