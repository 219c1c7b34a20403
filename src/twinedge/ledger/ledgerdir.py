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
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from twinedge.errors import LedgerError
from twinedge.ledger.note import Checkpoint, Signer, Verifier, open_checkpoint
from twinedge.ledger.store import LedgerLog, Synchronous
from twinedge.ledger.verify import VerifyReport, verify_log

__all__ = ["LedgerDir", "check_domain_name"]

_DOMAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LOG_FILE = "log.sqlite"
KEY_FILE = "key.ed25519"
PUB_FILE = "key.pub"
CKPT_DIR = "checkpoints"


def check_domain_name(domain: str) -> str:
    if not isinstance(domain, str) or not _DOMAIN_RE.match(domain):
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
        if not path.is_dir():
            raise LedgerError(
                f"ledger dir {path} does not exist; create it with: "
                f"twinedge ledger init {path} --domain NAME"
            )
        ld = cls(path, synchronous=synchronous)
        if not ld.domains:
            raise LedgerError(
                f"ledger dir {path} has no domains; create one with: "
                f"twinedge ledger init {path} --domain NAME"
            )
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
                        "body": {"origin": self.log(o).origin, "checkpoint": first[o]},
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

    # ------------------------------------------------------------------ verification
    def verify(
        self,
        domains: Sequence[str] | None = None,
        *,
        verifiers: Sequence[Verifier] | None = None,
        check_entries: bool = True,
    ) -> list[VerifyReport]:
        """Verify each domain's log against its signed checkpoints (see :mod:`.verify`).

        ``verifiers`` are trusted keys obtained out of band; by default each domain's own
        ``key.pub`` is trusted (which proves integrity against later edits of the log,
        not against someone who replaced the key too).
        """
        reports = []
        for d in domains or self.domains:
            ddir = self.domain_dir(d)
            if d in self._logs:  # let verification read a quiescent file
                self._logs.pop(d).close()
            trusted = list(verifiers) if verifiers else [self.verifier(d)]
            reports.append(
                verify_log(
                    ddir / LOG_FILE,
                    self.checkpoint_history(d),
                    trusted,
                    domain=d,
                    latest=str(ddir / CKPT_DIR / "latest"),
                    check_entries=check_entries,
                )
            )
        return reports
