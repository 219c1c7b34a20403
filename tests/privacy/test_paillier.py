"""The Paillier cross-domain sum: exact totals, shares that decrypt to nothing without the
private key, bad ciphertexts refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinedge.errors import InvalidInput
from twinedge.privacy import paillier

REQ = paillier.Requester(key_bits=512)  # small keys keep the test quick
OTHER = paillier.Requester(key_bits=512)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=8))
def test_the_total_of_integer_shares_is_exact(values):
    shares = [paillier.encrypt_share(REQ.public_key, v) for v in values]
    assert REQ.decrypt_total(paillier.combine(REQ.public_key, shares)) == sum(values)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=8))
def test_fixed_point_totals_are_exact_in_the_encoding(values):
    shares = [paillier.encrypt_share(REQ.public_key, v, digits=3) for v in values]
    total = REQ.decrypt_total(paillier.combine(REQ.public_key, shares), digits=3)
    assert total == sum(Decimal(paillier.encode(v, 3)) for v in values) / 1000
    # each share is within half a unit of its last digit
    assert abs(float(total) - sum(values)) <= len(values) * 0.0005 + 1e-6


def test_fixed_point_by_hand():
    values = (12.34, Decimal("0.005"), -2)
    shares = [paillier.encrypt_share(REQ.public_key, v, digits=2) for v in values]
    # 1234 + 0 (an exact 0.5 rounds half to even) - 200 = 1034
    assert paillier.encode(0.005, 2) == 1  # the float 0.005 lies just above 0.005
    assert REQ.decrypt_total(paillier.combine(REQ.public_key, shares), digits=2) == Decimal("10.34")


def test_a_share_reveals_nothing_without_the_private_key():
    a = paillier.encrypt_share(REQ.public_key, 42)
    b = paillier.encrypt_share(REQ.public_key, 42)
    assert a != b  # probabilistic: equal values do not give equal ciphertexts
    assert "42" != a and int(a) > REQ.n  # no plaintext in sight: an element of Z*_{n²}
    # another key cannot read it: its ciphertext is out of that key's range, or decrypts
    # to something else
    try:
        got = OTHER.decrypt_total(a)
    except InvalidInput:
        got = None
    assert got != 42


@pytest.mark.parametrize(
    "text",
    ["", "abc", "-5", "0", "1.5", "1" * 4001, "N", "NSQ", "NP"],
)
def test_bad_ciphertexts_are_refused(text):
    n = REQ.n
    text = {"N": str(n), "NSQ": str(n * n), "NP": str(n * 3)}.get(text, text)
    with pytest.raises(InvalidInput) as e:
        paillier.combine(REQ.public_key, [paillier.encrypt_share(REQ.public_key, 1), text])
    assert e.value.pointer == "/ciphertext"


def test_nothing_to_combine_and_bad_values():
    with pytest.raises(InvalidInput, match="no shares"):
        paillier.combine(REQ.public_key, [])
    for bad in (float("nan"), float("inf"), "3", True):
        with pytest.raises(InvalidInput):
            paillier.encrypt_share(REQ.public_key, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        paillier.encode(1, 19)
    with pytest.raises(InvalidInput, match="too large"):
        paillier.encrypt_share(REQ.public_key, REQ.public_key.max_int + 1)


def test_an_overflowing_total_is_refused():
    big = REQ.public_key.max_int
    shares = [paillier.encrypt_share(REQ.public_key, big) for _ in range(2)]
    with pytest.raises(InvalidInput, match="overflow"):
        REQ.decrypt_total(paillier.combine(REQ.public_key, shares))


def test_public_key_from_n():
    pk = paillier.public_key_from_n(REQ.n)
    share = paillier.encrypt_share(pk, 7)
    assert REQ.decrypt_total(paillier.combine(pk, [share])) == 7
    for bad in (0, 2**600, 15, True):
        with pytest.raises(InvalidInput):
            paillier.public_key_from_n(bad)
