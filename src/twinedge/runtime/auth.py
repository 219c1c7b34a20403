"""Secrets: API key tokens and device passwords, stored hashed.

API keys are random 256-bit secrets, so a fast SHA-256 digest is a safe verifier; device
passwords may be chosen by people and are hashed with scrypt (RFC 7914). A device that
logs in again with the password scrypt accepted before (redirected to its edge host,
following a migration, reconnecting) is recognised by :class:`VerifiedPasswords` with an
HMAC instead of another scrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

Role = Literal["read", "write", "admin"]
ROLE_RANK = {"read": 0, "write": 1, "admin": 2}
TOKEN_PREFIX = "te"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key of a domain (``domain=None``: the service admin), a
    device (its thing id), or the service itself."""

    id: str
    domain: str | None
    role: Role
    kind: Literal["key", "device", "system"] = "key"

    def can(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


SYSTEM = Principal("system", None, "admin", "system")


def new_token(key_id: str) -> tuple[str, str]:
    """A fresh token ``te_<key_id>_<secret>`` and the hash to store."""
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}_{key_id}_{secret}", hash_token_secret(secret)


def split_token(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def hash_token_secret(secret: str) -> str:
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def check_token_secret(secret: str, stored: str) -> bool:
    return hmac.compare_digest(hash_token_secret(secret), stored)


def hash_password(password: str, *, n: int = 2**14) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=8, p=1, dklen=32)
    return f"scrypt${n}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=8, p=1, dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


class VerifiedPasswords:
    """The (stored digest, password) pairs scrypt accepted, remembered as HMAC-SHA256
    tags under a key made at random for this process, at most ``max_entries`` of them
    (least recently used first out).

    A scrypt check of a device password costs tens of milliseconds of CPU on purpose;
    devices of a live network log in again and again (at the core, then at their edge
    host, then at every host they migrate to), each time with the password that was
    just checked. :meth:`known` answers those in microseconds. Only accepted passwords
    are remembered, so guessing still costs a scrypt per guess; the stored digest is part
    of the tag, so a changed password (a new digest, with a new salt) is checked afresh
    and the old one no longer matches; nothing of the password is kept but the tag.

    Parameters:
        max_entries: how many accepted pairs to remember.

    Examples:
        >>> v = VerifiedPasswords()
        >>> stored = hash_password("correct horse", n=2**4)
        >>> v.known("correct horse", stored)
        False
        >>> check_password("correct horse", stored)
        True
        >>> v.remember("correct horse", stored)
        >>> v.known("correct horse", stored), v.known("wrong horse", stored)
        (True, False)
        >>> v.known("correct horse", hash_password("correct horse", n=2**4))  # a new digest
        False
    """

    def __init__(self, max_entries: int = 100_000):
        if max_entries < 1:
            raise ValueError(f"max_entries: got {max_entries}; expected at least 1")
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._tags: OrderedDict[bytes, None] = OrderedDict()

    def _tag(self, password: str, stored: str) -> bytes:
        msg = stored.encode() + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def known(self, password: str, stored: str) -> bool:
        """Whether scrypt accepted ``password`` for ``stored`` before (and it is still
        remembered)."""
        tag = self._tag(password, stored)
        if tag in self._tags:
            self._tags.move_to_end(tag)
            return True
        return False

    def remember(self, password: str, stored: str) -> None:
        """Note that :func:`check_password` accepted ``password`` for ``stored``."""
        tag = self._tag(password, stored)
        self._tags[tag] = None
        self._tags.move_to_end(tag)
        while len(self._tags) > self.max_entries:
            self._tags.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tags)
