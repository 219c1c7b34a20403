"""Merkle tree hashing, proofs and proof verification of a Certificate-Transparency log.

Source: RFC 9162 §2.1 (Certificate Transparency 2.0), which keeps the hashing of
RFC 6962 §2.1: SHA-256, leaf hash ``H(0x00 || entry)``, interior node hash
``H(0x01 || left || right)``, the empty tree's hash ``H("")``, and a tree of ``n``
leaves split at ``k``, the largest power of two smaller than ``n``.

* ``tree_hash`` is MTH (§2.1.1), ``inclusion_proof`` is PATH (§2.1.3.1),
  ``consistency_proof`` is PROOF/SUBPROOF (§2.1.4.1), and the two ``verify_*``
  functions are the verification algorithms of §2.1.3.2 and §2.1.4.2.
* Indices are 0-based.  Verifiers never raise: any malformed input (wrong types,
  hashes that are not 32 bytes, sizes out of range, proofs of the wrong length)
  gives ``False``.

The proof generators are written once against a *range hash* callback
``range_hash(start, end) -> MTH(D[start:end])``.  The public functions here supply
one that hashes an in-memory list; the SQLite store (:mod:`twinedge.ledger.store`)
supplies one that reads stored perfect-subtree hashes, so a proof from a stored
log costs O(log n) reads instead of a rebuild.  Every range the RFC recursion
visits is either a perfect subtree aligned on its size or a suffix ``[a, n)``,
which is why storing perfect subtrees suffices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from twinedge.errors import LedgerError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
#: MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1).
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
#: Longest proof any tree of fewer than 2**64 leaves can need, for both kinds of proof.
_MAX_PROOF_LEN = 128

_sha256 = hashlib.sha256

RangeHash = Callable[[int, int], bytes]


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || entry)``."""
    return _sha256(b"\x00" + bytes(entry)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_leaves(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    leaves = list(leaf_hashes)
    for i, h in enumerate(leaves):
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise LedgerError(
                f"leaf hash {i} is not 32 bytes; pass leaf hashes (leaf_hash(entry)), not entries"
            )
    return [bytes(h) for h in leaves]


def _mth(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) of in-memory leaf hashes, iteratively (no deep recursion)."""
    if end <= start:
        return EMPTY_ROOT
    # Reduce the range level by level; an odd node at the end of a level is carried up,
    # which is exactly the RFC 9162 shape (the right-most subtrees are the smaller ones).
    level = list(leaves[start:end])
    while len(level) > 1:
        nxt = [
            _sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def tree_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash (RFC 9162 §2.1.1) of a list of leaf hashes."""
    leaves = _check_leaves(leaf_hashes)
    return _mth(leaves, 0, len(leaves))


def _memo_range_hash(leaves: Sequence[bytes]) -> RangeHash:
    cache: dict[tuple[int, int], bytes] = {}

    def range_hash(start: int, end: int) -> bytes:
        key = (start, end)
        h = cache.get(key)
        if h is None:
            h = _mth(leaves, start, end)
            cache[key] = h
        return h

    return range_hash


def inclusion_path(index: int, size: int, range_hash: RangeHash) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf-most hash first."""
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(range_hash(start + k, end))
            end = start + k
        else:
            path.append(range_hash(start, start + k))
            start += k
    path.reverse()
    return path


def consistency_path(old_size: int, new_size: int, range_hash: RangeHash) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1, deepest hash first."""
    if old_size == 0 or old_size == new_size:
        return []
    path: list[bytes] = []
    start, end, m, complete = 0, new_size, old_size, True
    while True:
        size = end - start
        if m == size:
            if not complete:
                path.append(range_hash(start, end))
            break
        k = _split(size)
        if m <= k:
            path.append(range_hash(start + k, end))
            end = start + k
        else:
            path.append(range_hash(start, start + k))
            start += k
            m -= k
            complete = False
    path.reverse()
    return path


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the tree of all ``leaf_hashes``.

    Raises :class:`LedgerError` if ``index`` is not in ``[0, len(leaf_hashes))``.
    """
    leaves = _check_leaves(leaf_hashes)
    n = len(leaves)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise LedgerError(f"leaf index {index!r} is outside the tree of {n} leaves; use 0..{n - 1}")
    return inclusion_path(index, n, _memo_range_hash(leaves))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the proof that the first ``old_size`` leaves' tree is a prefix of the whole tree.

    The proof is empty when ``old_size`` is 0 or equals ``len(leaf_hashes)``.
    Raises :class:`LedgerError` if ``old_size`` is not in ``[0, len(leaf_hashes)]``.
    """
    leaves = _check_leaves(leaf_hashes)
    n = len(leaves)
    if isinstance(old_size, bool) or not isinstance(old_size, int) or not 0 <= old_size <= n:
        raise LedgerError(f"old size {old_size!r} is outside 0..{n} (the new tree's size)")
    return consistency_path(old_size, n, _memo_range_hash(leaves))


def _is_hash(h: object) -> bool:
    return isinstance(h, bytes | bytearray) and len(h) == HASH_SIZE


def _is_size(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 64


def _proof_list(proof: object) -> list[bytes] | None:
    if isinstance(proof, str | bytes | bytearray) or not isinstance(proof, Sequence):
        return None
    if len(proof) > _MAX_PROOF_LEN:
        return None
    items = list(proof)
    if not all(_is_hash(p) for p in items):
        return None
    return [bytes(p) for p in items]


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an inclusion proof (RFC 9162 §2.1.3.2); never raises, returns False if bad."""
    try:
        path = _proof_list(proof)
        if path is None or not (_is_hash(leaf_hash) and _is_hash(root)):
            return False
        if not (_is_size(index) and _is_size(tree_size)) or index >= tree_size:
            return False
        fn, sn = index, tree_size - 1
        r = bytes(leaf_hash)
        for p in path:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                r = _sha256(b"\x01" + p + r).digest()
                if not fn & 1:
                    while fn and not fn & 1:
                        fn >>= 1
                        sn >>= 1
            else:
                r = _sha256(b"\x01" + r + p).digest()
            fn >>= 1
            sn >>= 1
        return sn == 0 and r == bytes(root)
    except Exception:  # a verifier must answer, never crash on hostile input
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof (RFC 9162 §2.1.4.2); never raises, returns False if bad.

    Degenerate cases: equal sizes need an empty proof and equal roots; an old size of
    0 needs an empty proof and ``old_root`` equal to the empty tree's hash.
    """
    try:
        path = _proof_list(proof)
        if path is None or not (_is_hash(old_root) and _is_hash(new_root)):
            return False
        if not (_is_size(old_size) and _is_size(new_size)) or old_size > new_size:
            return False
        if old_size == new_size:
            return not path and bytes(old_root) == bytes(new_root)
        if old_size == 0:
            return not path and bytes(old_root) == EMPTY_ROOT
        if not path:
            return False
        if old_size & (old_size - 1) == 0:  # exact power of two: the old root is a node
            path = [bytes(old_root), *path]
        fn, sn = old_size - 1, new_size - 1
        while fn & 1:
            fn >>= 1
            sn >>= 1
        fr = sr = path[0]
        for c in path[1:]:
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                fr = _sha256(b"\x01" + c + fr).digest()
                sr = _sha256(b"\x01" + c + sr).digest()
                if not fn & 1:
                    while fn and not fn & 1:
                        fn >>= 1
                        sn >>= 1
            else:
                sr = _sha256(b"\x01" + sr + c).digest()
            fn >>= 1
            sn >>= 1
        return fr == bytes(old_root) and sr == bytes(new_root) and sn == 0
    except Exception:  # a verifier must answer, never crash on hostile input
        return False
