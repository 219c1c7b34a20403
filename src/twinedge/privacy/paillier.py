"""Cross-domain sums under additively homomorphic (Paillier) encryption, through ``phe``.

The protocol (honest-but-curious parties):

1. The **requester** (the party that wants the total) makes a key pair and publishes the
   public key; it alone holds the private key (:class:`Requester`).
2. Each **domain** computes its contribution (e.g. the sum of a property over its twins
   matching a filter), encodes it in fixed point (:func:`encode`) and encrypts it under
   the requester's public key (:func:`encrypt_share`). It sends the ciphertext to the
   **combiner** (the twin service), never to the requester.
3. The combiner multiplies the ciphertexts — Paillier's homomorphic addition — into one
   (:func:`combine`) and hands only that to the requester, which decrypts the total
   (:meth:`Requester.decrypt_total`).

What leaks: the total, and the number (and names) of the contributing domains. A share
alone is semantically secure (IND-CPA) to the combiner and to the other domains: without
the private key it decrypts to nothing. The protocol assumes the requester and the
combiner do not collude (together they could decrypt a single share), and that each
domain reports its true contribution (a malicious domain can shift the total).

Fixed point: a contribution x is sent as round(x · 10^digits) (half to even), so each
is exact to ±0.5 · 10^-digits and a total of k shares to ±k · 0.5 · 10^-digits;
integers (digits = 0) are exact. The encoded total must stay below n/3 in magnitude
(phe's ``max_int``; n is the public modulus, ~2^2048).

Examples:
    >>> req = Requester(key_bits=512)  # 2048 (the default) or more in earnest
    >>> shares = [encrypt_share(req.public_key, v, digits=2) for v in (1.25, 2.5, -0.75)]
    >>> req.decrypt_total(combine(req.public_key, shares), digits=2)
    Decimal('3.00')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from twinedge.errors import InvalidInput

#: The largest number of fraction digits a share may carry.
MAX_DIGITS = 18
_PREC = 4000  # decimal digits: more than any value of a 8192-bit key


def _phe() -> Any:
    try:
        from phe import paillier
    except ImportError as e:  # pragma: no cover - the extra is installed in tests
        raise InvalidInput("Paillier sums need phe: pip install 'twinedge[privacy]'") from e
    return paillier


def _digits(digits: int) -> int:
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= MAX_DIGITS:
        raise InvalidInput(f"digits must be a whole number in 0..{MAX_DIGITS}", "/digits")
    return digits


def encode(value: int | float | Decimal, digits: int) -> int:
    """``value`` in fixed point: round(value · 10^digits), half to even.

    Raises:
        InvalidInput: ``value`` is not a finite number, or ``digits`` is out of range.

    Examples:
        >>> encode(1.005, 2), encode(-3, 0), encode(Decimal("0.125"), 2)
        (100, -3, 12)
    """
    d = _digits(digits)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidInput(f"a share must be a number, got {value!r}", "/value")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"a share must be finite, got {value!r}", "/value")
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidInput(f"a share must be finite, got {value!r}", "/value")
    if isinstance(value, int):
        return value * 10**d
    with localcontext() as ctx:
        ctx.prec = _PREC
        scaled = (Decimal(value) * (Decimal(10) ** d)).quantize(
            Decimal(1), rounding=ROUND_HALF_EVEN
        )
    return int(scaled)


def decode(total: int, digits: int) -> Decimal:
    """The fixed-point ``total`` as a decimal with ``digits`` fraction digits."""
    with localcontext() as ctx:
        ctx.prec = _PREC
        return Decimal(total).scaleb(-_digits(digits))


class Requester:
    """The party that wants the total: holds the private key.

    Parameters:
        key_bits: the length of the modulus n (2048 or more in earnest).
    """

    def __init__(self, key_bits: int = 2048):
        self.public_key, self._private_key = _phe().generate_paillier_keypair(n_length=key_bits)

    @property
    def n(self) -> int:
        """The public modulus (what a domain needs to encrypt)."""
        return int(self.public_key.n)

    def decrypt_total(self, combined: str, digits: int = 0) -> Decimal:
        """The total inside ``combined`` (from :func:`combine`).

        Raises:
            InvalidInput: ``combined`` is no ciphertext of this key, or its plaintext
                overflowed (the encoded total exceeds n/3 in magnitude).
        """
        enc = parse_ciphertext(self.public_key, combined)
        try:
            total = self._private_key.decrypt(enc)
        except OverflowError:
            raise InvalidInput(
                "the total overflowed the key's range (|total| · 10^digits must stay below n/3)"
            ) from None
        return decode(int(total), digits)


def public_key_from_n(n: int) -> Any:
    """A Paillier public key from its modulus.

    Raises:
        InvalidInput: ``n`` is not an odd whole number of at least 512 bits.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n.bit_length() < 512 or n % 2 == 0:
        raise InvalidInput("the public key n must be an odd whole number of 512 bits or more", "/n")
    return _phe().PaillierPublicKey(n)


def encrypt_share(public_key: Any, value: int | float | Decimal, *, digits: int = 0) -> str:
    """A domain's contribution, encoded (:func:`encode`) and encrypted under
    ``public_key``; the ciphertext as a decimal string.

    Raises:
        InvalidInput: a bad value or digits, or an encoded value beyond n/3.
    """
    m = encode(value, digits)
    if abs(m) > public_key.max_int:
        raise InvalidInput("the share is too large for this key", "/value")
    return str(public_key.encrypt(m).ciphertext())


def parse_ciphertext(public_key: Any, text: Any) -> Any:
    """A ciphertext sent as a decimal string, checked to be an element of Z*_{n²}.

    Raises:
        InvalidInput: not a decimal string, out of [1, n²), or sharing a factor with n.
    """
    paillier = _phe()
    if not (isinstance(text, str) and 0 < len(text) <= 4000 and text.isascii() and text.isdigit()):
        raise InvalidInput("a ciphertext is a decimal string of up to 4000 digits", "/ciphertext")
    c = int(text)
    n = int(public_key.n)
    if not 0 < c < n * n or math.gcd(c, n) != 1:
        raise InvalidInput(
            "the ciphertext is not one of this public key (it must lie in [1, n²) and be "
            "coprime to n)",
            "/ciphertext",
        )
    return paillier.EncryptedNumber(public_key, c, 0)


def combine(public_key: Any, shares: Sequence[str]) -> str:
    """The homomorphic sum of ``shares``: one ciphertext of the total, as a decimal string.
    Needs no private key: this is what the combiner does.

    Raises:
        InvalidInput: no shares, or a share that is no ciphertext of ``public_key``.
    """
    if not shares:
        raise InvalidInput("nothing to combine: no shares", "/shares")
    total = parse_ciphertext(public_key, shares[0])
    for s in shares[1:]:
        total = total + parse_ciphertext(public_key, s)
    return str(total.ciphertext())
