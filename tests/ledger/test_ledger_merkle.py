"""RFC 6962 / RFC 9162 Merkle hashing and proofs: published vectors, a naive model, properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinedge.errors import LedgerError
from twinedge.ledger import merkle

# The eight standard test leaves of the Certificate Transparency reference code.
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
# Published roots for sizes 0..8.
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# Published inclusion proofs (0-based leaf index, tree size, path).
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# Published consistency proofs (old size, new size, proof).
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        2,
        8,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
]


# ---------------------------------------------------------------- independent naive model
def _h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def naive_mth(d: list[bytes]) -> bytes:
    """MTH straight from the RFC 9162 §2.1.1 definition, over entries (not leaf hashes)."""
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + d[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return _h(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:]))


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


HASHES = [merkle.leaf_hash(x) for x in LEAVES]
N = 100
BIG = [f"entry-{i}".encode() for i in range(N)]
BIG_HASHES = [merkle.leaf_hash(x) for x in BIG]
BIG_ROOTS = [merkle.tree_hash(BIG_HASHES[:n]) for n in range(N + 1)]


# ---------------------------------------------------------------- published vectors
def test_hash_prefixes() -> None:
    assert merkle.leaf_hash(b"") == _h(b"\x00")
    assert merkle.node_hash(b"a" * 32, b"b" * 32) == _h(b"\x01" + b"a" * 32 + b"b" * 32)
    assert merkle.EMPTY_ROOT == _h(b"")


@pytest.mark.parametrize("size", range(9))
def test_reference_roots(size: int) -> None:
    assert merkle.tree_hash(HASHES[:size]).hex() == ROOTS[size]
    assert naive_mth(LEAVES[:size]).hex() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_reference_inclusion(index: int, size: int, path: list[str]) -> None:
    proof = merkle.inclusion_proof(HASHES[:size], index)
    assert [p.hex() for p in proof] == path
    root = bytes.fromhex(ROOTS[size])
    assert merkle.verify_inclusion(HASHES[index], index, size, proof, root)


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_reference_consistency(old: int, new: int, path: list[str]) -> None:
    proof = merkle.consistency_proof(HASHES[:new], old)
    assert [p.hex() for p in proof] == path
    assert merkle.verify_consistency(
        old, new, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]), proof
    )


# ---------------------------------------------------------------- exhaustive, small sizes
def test_roots_match_naive_model() -> None:
    for n in range(N + 1):
        assert BIG_ROOTS[n] == naive_mth(BIG[:n])


def test_every_inclusion_proof_verifies_and_matches_model() -> None:
    for n in range(1, N + 1):
        for i in range(n):
            proof = merkle.inclusion_proof(BIG_HASHES[:n], i)
            assert merkle.verify_inclusion(BIG_HASHES[i], i, n, proof, BIG_ROOTS[n]), (i, n)
            if n <= 33:
                assert proof == naive_path(i, BIG[:n])
            # the proof does not prove the leaf at any other index or size
            if n > 1:
                assert not merkle.verify_inclusion(
                    BIG_HASHES[i], (i + 1) % n, n, proof, BIG_ROOTS[n]
                )


def test_every_consistency_proof_verifies_and_matches_model() -> None:
    for n in range(0, N + 1):
        for m in range(0, n + 1):
            proof = merkle.consistency_proof(BIG_HASHES[:n], m)
            assert merkle.verify_consistency(m, n, BIG_ROOTS[m], BIG_ROOTS[n], proof), (m, n)
            if 0 < m < n and n <= 33:
                assert proof == naive_subproof(m, BIG[:n], True)


def test_degenerate_consistency() -> None:
    r4, r5 = BIG_ROOTS[4], BIG_ROOTS[5]
    assert merkle.verify_consistency(4, 4, r4, r4, [])
    assert not merkle.verify_consistency(4, 4, r4, r5, [])
    assert not merkle.verify_consistency(4, 4, r4, r4, [r4])
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, r5, [])
    assert not merkle.verify_consistency(0, 5, r4, r5, [])
    assert not merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, r5, [r4])
    assert not merkle.verify_consistency(4, 5, r4, r5, [])
    assert not merkle.verify_consistency(5, 4, r5, r4, merkle.consistency_proof(BIG_HASHES[:5], 4))


def test_generators_reject_bad_input() -> None:
    with pytest.raises(LedgerError):
        merkle.inclusion_proof(HASHES, 8)
    with pytest.raises(LedgerError):
        merkle.inclusion_proof(HASHES, -1)
    with pytest.raises(LedgerError):
        merkle.inclusion_proof([], 0)
    with pytest.raises(LedgerError):
        merkle.consistency_proof(HASHES, 9)
    with pytest.raises(LedgerError, match="32 bytes"):
        merkle.tree_hash([b"short"])


# ---------------------------------------------------------------- properties
sizes = st.integers(min_value=1, max_value=N)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=sizes)
def test_flipped_bit_breaks_inclusion(data: st.DataObject, n: int) -> None:
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(BIG_HASHES[:n], i)
    leaf, root = BIG_HASHES[i], BIG_ROOTS[n]
    target = data.draw(st.sampled_from(["leaf", "root", "proof"] if proof else ["leaf", "root"]))
    bit = data.draw(st.integers(0, 255))

    def flip(b: bytes) -> bytes:
        x = bytearray(b)
        x[bit // 8] ^= 1 << (bit % 8)
        return bytes(x)

    if target == "leaf":
        leaf = flip(leaf)
    elif target == "root":
        root = flip(root)
    else:
        j = data.draw(st.integers(0, len(proof) - 1))
        proof = [*proof[:j], flip(proof[j]), *proof[j + 1 :]]
    assert not merkle.verify_inclusion(leaf, i, n, proof, root)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(2, N))
def test_flipped_bit_breaks_consistency(data: st.DataObject, n: int) -> None:
    m = data.draw(st.integers(1, n - 1))
    proof = merkle.consistency_proof(BIG_HASHES[:n], m)
    old, new = BIG_ROOTS[m], BIG_ROOTS[n]
    target = data.draw(st.sampled_from(["old", "new", "proof"]))
    bit = data.draw(st.integers(0, 255))

    def flip(b: bytes) -> bytes:
        x = bytearray(b)
        x[bit // 8] ^= 1 << (bit % 8)
        return bytes(x)

    if target == "old":
        old = flip(old)
    elif target == "new":
        new = flip(new)
    else:
        j = data.draw(st.integers(0, len(proof) - 1))
        proof = [*proof[:j], flip(proof[j]), *proof[j + 1 :]]
    assert not merkle.verify_consistency(m, n, old, new, proof)


junk = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.floats(),
    st.text(max_size=5),
    st.binary(max_size=40),
    st.lists(st.binary(max_size=40), max_size=5),
    st.lists(st.one_of(st.none(), st.integers(), st.text()), max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(a=junk, b=junk, c=junk, d=junk, e=junk)
def test_malformed_input_returns_false_never_raises(a, b, c, d, e) -> None:  # type: ignore[no-untyped-def]
    assert merkle.verify_inclusion(a, b, c, d, e) in (True, False)
    assert merkle.verify_consistency(a, b, c, d, e) in (True, False)
    proof = merkle.inclusion_proof(BIG_HASHES[:7], 3)
    # valid values everywhere except one malformed argument: always False
    assert not merkle.verify_inclusion(BIG_HASHES[3], 3, 7, proof, e if e != BIG_ROOTS[7] else b"")
    assert not merkle.verify_inclusion(BIG_HASHES[3], 3, 7, a, BIG_ROOTS[7]) or a == proof


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(2, N))
def test_truncated_or_extended_proofs_fail(data: st.DataObject, n: int) -> None:
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(BIG_HASHES[:n], i)
    assert not merkle.verify_inclusion(BIG_HASHES[i], i, n, proof[:-1], BIG_ROOTS[n])
    assert not merkle.verify_inclusion(BIG_HASHES[i], i, n, [*proof, b"\0" * 32], BIG_ROOTS[n])
    m = data.draw(st.integers(1, n - 1))
    cproof = merkle.consistency_proof(BIG_HASHES[:n], m)
    assert not merkle.verify_consistency(m, n, BIG_ROOTS[m], BIG_ROOTS[n], cproof[:-1])
    assert not merkle.verify_consistency(m, n, BIG_ROOTS[m], BIG_ROOTS[n], [*cproof, b"\0" * 32])
