"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes, Ed25519 keys.

Sources: C2SP ``tlog-checkpoint`` (origin line, decimal tree size, base64 root hash,
optional extension lines) and C2SP ``signed-note`` (text ending in a newline, a blank
line, then signature lines ``— <name> <base64(key hash || signature)>``; the Ed25519
key hash is the first 4 bytes of ``SHA-256(name || 0x0A || 0x01 || public key)``; a
verifier key ("vkey") is ``<name>+<hex key hash>+<base64(0x01 || public key)>``).
Keys and signatures come from ``cryptography`` (RFC 8032 Ed25519).

Private keys are PKCS#8 PEM files created with ``O_CREAT | O_EXCL`` and mode 0600,
so they are never readable by others, not even for an instant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from twinedge.errors import LedgerError

__all__ = [
    "Checkpoint",
    "NoteSignature",
    "Signer",
    "Verifier",
    "open_checkpoint",
    "parse_note",
]

_ALG_ED25519 = b"\x01"
_SIG_PREFIX = "— "
_MAX_SIGNATURES = 100
_MAX_NOTE_BYTES = 1 << 20


def _check_name(name: str) -> None:
    if (
        not isinstance(name, str)
        or not name
        or "+" in name
        or any(c.isspace() for c in name)
        or any(ord(c) < 0x20 for c in name)
    ):
        raise LedgerError(
            f"key name {name!r} is invalid; use a non-empty name without spaces or '+' "
            "(e.g. 'twinedge/edge-a')"
        )


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte C2SP signed-note key hash of an Ed25519 key."""
    return hashlib.sha256(name.encode() + b"\n" + _ALG_ED25519 + public_key).digest()[:4]


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise LedgerError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class Verifier:
    """A named Ed25519 public key that checks note signatures."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise LedgerError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_hash(self.name, self.public_key)

    def vkey(self) -> str:
        """The verifier key in note format: ``name+hash+base64(0x01||pubkey)``."""
        enc = base64.b64encode(_ALG_ED25519 + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{enc}"

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse a verifier key; raises :class:`LedgerError` if it is malformed."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise LedgerError(
                f"verifier key {vkey.strip()[:60]!r} is malformed; expected name+hash+base64key "
                "(the content of a domain's key.pub)"
            )
        name, hexid, enc = parts
        raw = _b64decode(enc, "verifier key")
        if len(raw) != 33 or raw[:1] != _ALG_ED25519:
            raise LedgerError(f"verifier key for {name!r} is not an Ed25519 key (type 0x01)")
        v = cls(name, raw[1:])
        if hexid.lower() != v.key_id.hex():
            raise LedgerError(f"verifier key for {name!r} has a key hash that does not match it")
        return v

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A named Ed25519 private key that signs notes."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def verifier(self) -> Verifier:
        pub = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return Verifier(self.name, pub)

    def sign_line(self, text: bytes) -> str:
        """Return the signature line for note text ``text`` (which ends in a newline)."""
        sig = self.private_key.sign(text)
        enc = base64.b64encode(self.verifier.key_id + sig).decode()
        return f"{_SIG_PREFIX}{self.name} {enc}\n"

    def save(self, path: Path) -> None:
        """Write the key as PKCS#8 PEM to a new file created with mode 0600."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise LedgerError(
                f"key file {path} already exists; refusing to overwrite a signing key"
            ) from exc
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path, name: str) -> Signer:
        """Read a PEM key written by :meth:`save`; refuses keys readable by others."""
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise LedgerError(f"signing key {path} is missing; this domain cannot sign") from exc
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise LedgerError(
                f"signing key {path} is accessible by other users (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); fix it with: chmod 600 {path}"
            )
        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise LedgerError(f"signing key {path} is not a PEM Ed25519 private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise LedgerError(f"signing key {path} is not an Ed25519 key")
        return cls(name, key)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: which log (origin), how many entries, and their root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> bytes:
        """The note text that signatures cover (UTF-8, ends in a newline)."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        lines.extend(self.extensions)
        return ("\n".join(lines) + "\n").encode("utf-8")

    def sign(self, signers: list[Signer] | Signer) -> str:
        """Return the signed note text of this checkpoint."""
        if isinstance(signers, Signer):
            signers = [signers]
        text = self.body()
        return (text + b"\n").decode() + "".join(s.sign_line(text) for s in signers)

    @classmethod
    def parse_body(cls, text: bytes) -> Checkpoint:
        try:
            s = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LedgerError("checkpoint is not UTF-8") from exc
        lines = s.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise LedgerError(
                "checkpoint body needs an origin line, a size line and a root hash line"
            )
        origin, size_s, root_s, *ext = lines[:-1]
        if not origin:
            raise LedgerError("checkpoint origin line is empty")
        if not size_s.isdigit() or not size_s.isascii() or (len(size_s) > 1 and size_s[0] == "0"):
            raise LedgerError(f"checkpoint tree size {size_s!r} is not a decimal number")
        root = _b64decode(root_s, "checkpoint root hash")
        if len(root) != 32:
            raise LedgerError("checkpoint root hash is not 32 bytes")
        if any(not e for e in ext):
            raise LedgerError("checkpoint has an empty extension line")
        return cls(origin, int(size_s), root, tuple(ext))


def parse_note(note: str | bytes) -> tuple[bytes, list[NoteSignature]]:
    """Split a signed note into its text and signature lines (syntax only, no crypto)."""
    raw = note.encode("utf-8") if isinstance(note, str) else bytes(note)
    if len(raw) > _MAX_NOTE_BYTES:
        raise LedgerError("signed note is larger than 1 MiB")
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LedgerError("signed note is not UTF-8") from exc
    if any(ord(c) < 0x20 and c != "\n" for c in s):
        raise LedgerError("signed note contains control characters other than newline")
    cut = s.rfind("\n\n")
    if cut < 0 or not s.endswith("\n"):
        raise LedgerError(
            "signed note has no signature block; expected text, a blank line, signature lines"
        )
    text, sig_block = s[: cut + 1], s[cut + 2 :]
    sigs: list[NoteSignature] = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(_SIG_PREFIX):
            raise LedgerError(f"signature line {line[:40]!r} does not start with '— '")
        parts = line[len(_SIG_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise LedgerError(f"signature line {line[:40]!r} is not '— <name> <base64>'")
        name, enc = parts
        _check_name(name)
        blob = _b64decode(enc, f"signature of {name!r}")
        if len(blob) < 5:
            raise LedgerError(f"signature of {name!r} is too short")
        sigs.append(NoteSignature(name, blob[:4], blob[4:]))
    if not sigs:
        raise LedgerError("signed note has no signatures")
    if len(sigs) > _MAX_SIGNATURES:
        raise LedgerError("signed note has more than 100 signatures")
    return text.encode("utf-8"), sigs


def open_checkpoint(note: str | bytes, verifiers: list[Verifier]) -> Checkpoint:
    """Parse a signed checkpoint and check it is signed by one of ``verifiers``.

    Signatures by unknown keys are ignored (as signed-note requires); a signature that
    claims a known key but does not verify rejects the note.  Raises
    :class:`LedgerError` saying what failed.
    """
    text, sigs = parse_note(note)
    cp = Checkpoint.parse_body(text)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified = False
    for sig in sigs:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            continue
        if not v.verify(text, sig.signature):
            raise LedgerError(
                f"checkpoint of {cp.origin!r} at size {cp.size}: signature by {sig.name!r} "
                "does not verify (forged or altered checkpoint)"
            )
        verified = True
    if not verified:
        names = ", ".join(sorted({s.name for s in sigs}))
        raise LedgerError(
            f"checkpoint of {cp.origin!r} at size {cp.size} is not signed by a trusted key "
            f"(signed by: {names}); pass the log's key.pub as a verifier key"
        )
    return cp
