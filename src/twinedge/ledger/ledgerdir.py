"""A ledger directory: one signed, witnessed log per owner domain.

Layout (one sub-directory per domain)::

    <ledger>/<domain>/log.sqlite            the append-only log (twinedge.ledger.store)
    <ledger>/<domain>/key.ed25519           Ed25519 signing key, PKCS#8 PEM, mode 0600
    <ledger>/<domain>/key.pub               verifier key in signed-note "vkey" format
    <ledger>/<domain>/checkpoints/latest    the latest signed checkpoint
    <ledger>/<domain>/checkpoints/<size>    every checkpoint ever signed, by tree size

Witnessing (the gossip of RFC 9162 §8.1.4 done inside the ledger):
:meth:`LedgerDir.checkpoint_all` signs a checkpoint for every domain, appends each
domain's checkpoint to every *other* domain's log as a ``witness`` entry, and signs
again so the final checkpoints cover those witness entries.  A domain's round-``r``
checkpoint is therefore committed in every other log, and its next checkpoint must
be consistent with it: a domain that shows different histories to different parties
(a split view) is caught by ``twinedge ledger audit``.

A witness entry names the witnessed ``domain`` and ``origin`` and carries the
domain's verifier key (``vkey``).  The key in a domain's *first* witness entry in
another log is *pinned*: :meth:`LedgerDir.verify` and ``audit`` check the domain's
checkpoints against the pinned key rather than the ``key.pub`` on disk, and every
witnessed checkpoint against the domain's current log, so a log that was rolled
back, rewritten, re-keyed or replaced by another domain's directory is caught by
the records the *other* domains hold.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinedge.errors import LedgerError
from twinedge.ledger.note import Checkpoint, Signer, Verifier, open_checkpoint
from twinedge.ledger.store import LedgerLog, Synchronous
from twinedge.ledger.verify import VerifyReport, verify_log

__all__ = ["LedgerDir", "WitnessRecord", "check_domain_name"]

_DOMAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LOG_FILE = "log.sqlite"
KEY_FILE = "key.ed25519"
PUB_FILE = "key.pub"
CKPT_DIR = "checkpoints"


def check_domain_name(domain: str) -> str:
    if not isinstance(domain, str) or not _DOMAIN_RE.fullmatch(domain):
        raise LedgerError(
            f"domain name {domain!r} is invalid; use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return domain


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass(frozen=True)
class WitnessRecord:
    """A ``witness`` entry: the log of ``witness`` recorded a checkpoint of another domain.

    ``domain`` and ``vkey`` are ``None`` in entries written before they were recorded;
    such a record names its domain only through ``origin``.
    """

    witness: str
    index: int
    origin: str
    domain: str | None
    vkey: str | None
    checkpoint: str

    @property
    def label(self) -> str:
        return f"witnessed in domain {self.witness!r} entry {self.index}"


def _no_domains(path: Path) -> str:
    """Why ``path`` is not a ledger directory, and what to open or do instead: a folder
    of ledger directories (``twinedge run --ledger`` writes one per policy combination)
    names them; anything else is told how to make one."""
    inner = sorted(
        p.name
        for p in path.iterdir()
        if p.is_dir() and any((q / LOG_FILE).is_file() for q in p.iterdir() if q.is_dir())
    )
    if inner:
        shown = ", ".join(inner[:6]) + (f" and {len(inner) - 6} more" if len(inner) > 6 else "")
        return (
            f"ledger dir {path} has no domains of its own but holds {len(inner)} ledger "
            f"dir{'s' if len(inner) > 1 else ''} (twinedge run --ledger writes one per "
            f"policy combination): {shown}; name one of them, e.g. {path / inner[0]}"
        )
    return (
        f"ledger dir {path} has no domains (no DOMAIN/{LOG_FILE} inside); create one with: "
        f"twinedge ledger init {path} --domain NAME"
    )


class LedgerDir:
    """A directory of per-domain logs with their keys and checkpoints."""

    def __init__(self, path: Path, *, synchronous: Synchronous = "NORMAL"):
        self.path = Path(path)
        self.synchronous: Synchronous = synchronous
        self._logs: dict[str, LedgerLog] = {}

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        path: str | Path,
        domains: Iterable[str],
        *,
        origin_prefix: str = "twinedge",
        synchronous: Synchronous = "NORMAL",
    ) -> LedgerDir:
        """Create (or extend) a ledger directory with a new log and key per domain.

        Raises :class:`LedgerError` if a domain already exists there.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        ld = cls(path, synchronous=synchronous)
        for d in domains:
            ld.add_domain(d, origin=f"{origin_prefix}/{d}")
        return ld

    @classmethod
    def open(cls, path: str | Path, *, synchronous: Synchronous = "NORMAL") -> LedgerDir:
        """Open an existing ledger directory (one with at least one domain)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise LedgerError(f"ledger dir {path} is a file, not a directory")
        if not path.is_dir():
            raise LedgerError(
                f"ledger dir {path} does not exist; create it with: "
                f"twinedge ledger init {path} --domain NAME"
            )
        ld = cls(path, synchronous=synchronous)
        if not ld.domains:
            raise LedgerError(_no_domains(path))
        return ld

    def close(self) -> None:
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def __enter__(self) -> LedgerDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LedgerDir({str(self.path)!r}, domains={self.domains})"

    # ------------------------------------------------------------------ domains
    @property
    def domains(self) -> list[str]:
        """Sorted names of the domains in this directory."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if (p / LOG_FILE).is_file())

    def domain_dir(self, domain: str) -> Path:
        d = self.path / check_domain_name(domain)
        if not (d / LOG_FILE).is_file():
            raise LedgerError(
                f"ledger dir {self.path} has no domain {domain!r}; create it with: "
                f"twinedge ledger init {self.path} --domain {domain}"
            )
        return d

    def add_domain(self, domain: str, *, origin: str | None = None) -> None:
        """Create the log, signing key, verifier key and first (empty) checkpoint of a domain."""
        check_domain_name(domain)
        d = self.path / domain
        if (d / LOG_FILE).exists():
            raise LedgerError(f"domain {domain!r} already exists in {self.path}")
        origin = origin or f"twinedge/{domain}"
        signer = Signer.generate(origin)  # key name = origin, as in C2SP tlog-checkpoint
        (d / CKPT_DIR).mkdir(parents=True, exist_ok=True)
        signer.save(d / KEY_FILE)
        _write_atomic(d / PUB_FILE, signer.verifier.vkey() + "\n")
        log = LedgerLog.create(d / LOG_FILE, domain, origin, synchronous=self.synchronous)
        self._logs[domain] = log
        self.checkpoint(domain)

    def log(self, domain: str) -> LedgerLog:
        """The (cached, open) log of ``domain``."""
        log = self._logs.get(domain)
        if log is None:
            log = LedgerLog.open(self.domain_dir(domain) / LOG_FILE, synchronous=self.synchronous)
            self._logs[domain] = log
        return log

    def verifier(self, domain: str) -> Verifier:
        """The domain's public verifier key (from ``key.pub``)."""
        p = self.domain_dir(domain) / PUB_FILE
        try:
            return Verifier.from_vkey(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise LedgerError(f"verifier key {p} is missing") from exc

    def signer(self, domain: str) -> Signer:
        return Signer.load(self.domain_dir(domain) / KEY_FILE, self.log(domain).origin)

    # ------------------------------------------------------------------ appending
    def append_many(self, entries: Iterable[Mapping[str, Any]]) -> dict[str, range]:
        """Append entries to the log named by each entry's ``domain`` (one batch per log).

        Every entry is validated before anything is written, so an invalid entry
        leaves all logs unchanged.
        """
        groups: dict[str, tuple[list[Mapping[str, Any]], list[int]]] = {}
        for i, e in enumerate(entries):
            dom = e.get("domain") if isinstance(e, Mapping) else None
            if not isinstance(dom, str):
                raise LedgerError(f"entry {i}: missing field 'domain' (a string)")
            g = groups.setdefault(dom, ([], []))
            g[0].append(e)
            g[1].append(i)
        encoded = {
            dom: self.log(dom).encode_many(es, positions=pos) for dom, (es, pos) in groups.items()
        }
        return {dom: self.log(dom).append_encoded(datas) for dom, datas in encoded.items()}

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, domain: str) -> str:
        """Sign a checkpoint of the domain's log as it is now; returns the signed note."""
        log = self.log(domain)
        signer = self.signer(domain)
        log.sync()  # everything the signature covers is on stable storage first
        size = log.size
        note = Checkpoint(log.origin, size, log.root(size)).sign(signer)
        cdir = self.domain_dir(domain) / CKPT_DIR
        cdir.mkdir(exist_ok=True)
        hist = cdir / str(size)
        if hist.exists():
            old = hist.read_text(encoding="utf-8")
            if old != note:
                raise LedgerError(
                    f"domain {domain!r}: a different checkpoint for size {size} was signed "
                    f"before ({hist}); the log was rewritten — run 'twinedge ledger verify'"
                )
        else:
            _write_atomic(hist, note)
        _write_atomic(cdir / "latest", note)
        return note

    def latest_checkpoint(self, domain: str) -> str | None:
        p = self.domain_dir(domain) / CKPT_DIR / "latest"
        return p.read_text(encoding="utf-8") if p.is_file() else None

    def checkpoint_history(self, domain: str) -> list[tuple[str, str]]:
        """``(label, note)`` of every stored checkpoint, oldest first (``latest`` last)."""
        cdir = self.domain_dir(domain) / CKPT_DIR
        out: list[tuple[int, str, str]] = []
        if cdir.is_dir():
            for p in cdir.iterdir():
                if p.name.isdigit():
                    out.append((int(p.name), str(p), p.read_text(encoding="utf-8")))
        res = [(label, text) for _, label, text in sorted(out)]
        latest = cdir / "latest"
        if latest.is_file():
            res.append((str(latest), latest.read_text(encoding="utf-8")))
        return res

    def checkpoint_all(self, *, witness: bool = True, time: float | None = None) -> dict[str, str]:
        """Sign every domain's checkpoint; with ``witness``, cross-record them first.

        Round 1 signs each domain's head; each domain then appends one ``witness``
        entry per other domain carrying that domain's round-1 checkpoint; round 2 signs
        again so the witness entries are covered.  Returns the final signed notes.
        ``time`` is the ``time`` of the witness entries (default: the time of the
        witnessing log's last entry, so virtual-time logs stay monotone).
        """
        domains = self.domains
        first = {d: self.checkpoint(d) for d in domains}
        if not witness or len(domains) < 2:
            return first
        for d in domains:
            log = self.log(d)
            t = time
            if t is None:
                n = log.size
                t = float(log.entry(n - 1)["time"]) if n else 0.0
            log.append_many(
                [
                    {
                        "type": "witness",
                        "domain": d,
                        "time": t,
                        "actor": f"twinedge-witness/{d}",
                        "body": {
                            "origin": self.log(o).origin,
                            "domain": o,
                            "vkey": self.verifier(o).vkey(),
                            "checkpoint": first[o],
                        },
                    }
                    for o in domains
                    if o != d
                ]
            )
        return {d: self.checkpoint(d) for d in domains}

    def open_latest(self, domain: str) -> Checkpoint:
        """The latest checkpoint of ``domain``, signature checked against its ``key.pub``."""
        note = self.latest_checkpoint(domain)
        if note is None:
            raise LedgerError(
                f"domain {domain!r} has no checkpoint; sign one with: "
                f"twinedge ledger checkpoint {self.path} --domain {domain}"
            )
        return open_checkpoint(note, [self.verifier(domain)])

    # ------------------------------------------------------------------ witnessing records
    def witness_records(self) -> list[WitnessRecord]:
        """Every ``witness`` entry of every readable log here, in log and index order.

        A log that cannot be read is skipped (its own verification reports it).
        """
        out: list[WitnessRecord] = []
        for w in self.domains:
            try:
                found = list(self.log(w).find_type("witness"))
            except (LedgerError, sqlite3.Error):
                continue
            for i, e in found:
                body = e.get("body")
                if not isinstance(body, dict):
                    continue
                origin, note = body.get("origin"), body.get("checkpoint")
                dom, vkey = body.get("domain"), body.get("vkey")
                if isinstance(origin, str) and isinstance(note, str):
                    out.append(
                        WitnessRecord(
                            w,
                            i,
                            origin,
                            dom if isinstance(dom, str) else None,
                            vkey if isinstance(vkey, str) else None,
                            note,
                        )
                    )
        return out

    def witnessed_domain(self, rec: WitnessRecord) -> str | None:
        """The domain of this directory a witness record is about (``None``: not here)."""
        if rec.domain is not None:
            return rec.domain
        for d in self.domains:
            try:
                if self.log(d).origin == rec.origin:
                    return d
            except (LedgerError, sqlite3.Error):
                continue
        return None

    @staticmethod
    def pins(records: Iterable[WitnessRecord]) -> dict[str, tuple[WitnessRecord, Verifier]]:
        """Pinned keys by witnessing domain: the ``vkey`` of its first record of a domain.

        ``records`` are the records of one witnessed domain.  Records without a
        ``vkey`` (or with a malformed one) pin nothing.
        """
        out: dict[str, tuple[WitnessRecord, Verifier]] = {}
        for rec in sorted(records, key=lambda r: (r.witness, r.index)):
            if rec.witness in out or rec.vkey is None:
                continue
            try:
                out[rec.witness] = (rec, Verifier.from_vkey(rec.vkey))
            except LedgerError:
                continue
        return out

    # ------------------------------------------------------------------ verification
    def verify(
        self,
        domains: Sequence[str] | None = None,
        *,
        verifiers: Sequence[Verifier] | None = None,
        check_entries: bool = True,
    ) -> list[VerifyReport]:
        """Verify each domain's log against its signed and its witnessed checkpoints.

        Besides the checks of :func:`.verify.verify_log` on the domain's own
        ``checkpoints/``, every checkpoint of the domain recorded in another domain's
        log here (a ``witness`` entry) must verify too: a log now smaller than a
        witnessed checkpoint was rolled back, one that does not hash to its root was
        rewritten.  Signatures are checked with ``verifiers`` (trusted keys obtained
        out of band) if given, else with the key *pinned* by the domain's first witness
        entry in each other log, else with the domain's ``key.pub``; a ``key.pub`` that
        differs from a pinned key is reported as a substituted key.

        Parameters
        ----------
        domains : the domains to verify (default: all).
        verifiers : trusted verifier keys for every verified domain.
        check_entries : also check that every entry is valid canonical JSON.

        Raises
        ------
        LedgerError
            If a named domain does not exist.  Damage is reported, never raised.

        Examples
        --------
        >>> import tempfile
        >>> ld = LedgerDir.create(Path(tempfile.mkdtemp()), ["a", "b"])
        >>> _ = ld.checkpoint_all()
        >>> [r.ok for r in ld.verify()]
        [True, True]
        >>> ld.close()
        """
        records = self.witness_records()
        reports = []
        for d in domains or self.domains:
            ddir = self.domain_dir(d)
            mine = [r for r in records if r.witness != d and self.witnessed_domain(r) == d]
            pins = self.pins(mine)
            pinned = list(dict.fromkeys(v for _, v in pins.values()))
            try:
                pub: Verifier | None = self.verifier(d)
                pub_problem = None
            except LedgerError as exc:
                pub, pub_problem = None, str(exc)
            if verifiers:
                trusted = list(verifiers)
            elif pinned:
                trusted = pinned
            else:
                trusted = [pub] if pub is not None else []
            if d in self._logs:  # let verification read a quiescent file
                self._logs.pop(d).close()
            rep = verify_log(
                ddir / LOG_FILE,
                self.checkpoint_history(d) + [(r.label, r.checkpoint) for r in mine],
                trusted,
                domain=d,
                latest=str(ddir / CKPT_DIR / "latest"),
                check_entries=check_entries,
            )
            if pub_problem is not None:
                rep.cause(pub_problem)
            elif pub is not None and pinned and pub not in pinned:
                rec = next(r for r, v in pins.values() if v != pub)
                rep.cause(
                    f"{ddir / PUB_FILE} is not the key pinned when domain {rec.witness!r} first "
                    f"witnessed {d!r} (entry {rec.index}): the signing key was substituted"
                )
            reports.append(rep)
        if domains is None:
            reports += self._missing_domains(records)
        return reports

    def _missing_domains(self, records: Sequence[WitnessRecord]) -> list[VerifyReport]:
        """A report for every domain that another log here witnessed and whose log is
        gone: deleting a domain's directory must not make its history vanish unseen."""
        present = set(self.domains)
        first: dict[str, WitnessRecord] = {}
        for rec in records:
            d = rec.domain
            if d is not None and d != rec.witness and d not in present and d not in first:
                first[d] = rec
        reports = []
        for d, rec in sorted(first.items()):
            rep = VerifyReport(domain=d, path=str(self.path / d / LOG_FILE))
            rep.cause(
                f"domain {d!r} is gone from {self.path}, but domain {rec.witness!r} witnessed "
                f"its log (entry {rec.index}): its directory was deleted or moved"
            )
            reports.append(rep)
        return reports
