"""Secrets: API key tokens and device passwords, stored hashed.

API keys are random 256-bit secrets, so a fast SHA-256 digest is a safe verifier; device
passwords may be chosen by people and are hashed with scrypt (RFC 7914).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
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
