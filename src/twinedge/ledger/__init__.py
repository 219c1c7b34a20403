"""The governance ledger: signed, witnessed, append-only Merkle logs, one per owner domain.

Every orchestration decision (placement, migration, settlement, policy change) is an
entry in the log of the domain it concerns.  Logs are Certificate-Transparency style
Merkle trees (RFC 9162), their heads are signed checkpoints (C2SP tlog-checkpoint and
signed-note, Ed25519), domains witness each other's checkpoints, and anyone can
verify a log, audit a set of logs for split views, and re-derive every bill.

Modules: :mod:`.merkle` (hashing and proofs), :mod:`.entry` (validation, canonical
JSON), :mod:`.store` (the SQLite log), :mod:`.note` (keys, checkpoints), :mod:`.verify`
(full verification), :mod:`.ledgerdir` (the directory of domains, witnessing),
:mod:`.audit` (split-view detection), :mod:`.settle` (bills), :mod:`.cli` (commands).
Outside itself the ledger uses only :mod:`twinedge.errors` and :mod:`twinedge.textinput`
(the strict reading of the entries and price tables users hand it). See docs/ledger.md.
"""

from twinedge.ledger.audit import AuditIssue, AuditReport, audit
from twinedge.ledger.ledgerdir import LedgerDir, WitnessRecord
from twinedge.ledger.note import Checkpoint, Signer, Verifier, open_checkpoint
from twinedge.ledger.settle import Bills, DomainBill, LineItem, PriceTable, settle
from twinedge.ledger.store import LedgerLog
from twinedge.ledger.verify import VerifyReport

__all__ = [
    "AuditIssue",
    "AuditReport",
    "Bills",
    "Checkpoint",
    "DomainBill",
    "LedgerDir",
    "LedgerLog",
    "LineItem",
    "PriceTable",
    "Signer",
    "Verifier",
    "VerifyReport",
    "WitnessRecord",
    "audit",
    "open_checkpoint",
    "settle",
]
