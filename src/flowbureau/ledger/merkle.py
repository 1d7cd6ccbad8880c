"""Merkle hash trees exactly as RFC 9162 §2.1 defines them (the RFC 6962 tree, SHA-256).

Rules:
- A leaf hash is ``SHA-256(0x00 || data)``, an interior node ``SHA-256(0x01 || left || right)``;
  the empty tree's hash is ``SHA-256("")``. The prefixes make a leaf and a node unconfusable
  (no second-preimage by presenting a node as a leaf).
- A tree of ``n`` leaves splits at ``k``, the largest power of two below ``n``: left ``D[0:k]``,
  right ``D[k:n]`` (§2.1.1). Inclusion proofs are ``PATH`` (§2.1.3.1), consistency proofs
  ``PROOF``/``SUBPROOF`` (§2.1.4.1), listed from the leaf level up; both are verified with the
  algorithms of §2.1.3.2 and §2.1.4.2, step by step. Proofs from or to the empty tree do not
  exist: the verifier rejects them, as the reference implementation does.
- Large roots are computed through aligned chunks of :data:`ROOT_CHUNK` leaves: the tree's
  splits fall on chunk boundaries (the split of ``n > ROOT_CHUNK`` leaves is a power of two at
  least ``ROOT_CHUNK``), so the root over the chunk roots is the root over the leaves.
  :func:`chunk_roots` remembers the last few results by the SHA-256 of the leaves: the bank, the
  platform's checks, the contract and the store all need the same batch root, and one tree of
  1M leaves is a million hashes.
- :class:`MerkleTree` is append-only and keeps, per level, the hash of every *complete*
  subtree as consecutive 32-byte rows of one ``bytearray`` (about 64 bytes per leaf in all).
  Any past tree size ``m <= size`` is then served from stored nodes: the root of a
  right-edge, incomplete subtree is folded from at most ``log2(n)`` stored nodes, so a proof
  costs ``O(log n)`` hashes whatever the size (microseconds at 10M leaves).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from flowbureau.errors import IntegrityError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ROOT_CHUNK",
    "InvalidProofError",
    "MerkleTree",
    "chunk_roots",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in every hash of the tree (SHA-256)."""

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_NODE_HASHER = _sha256(_NODE_PREFIX)

EMPTY_ROOT = _sha256(b"").digest()
"""Root hash of the empty tree, ``SHA-256("")`` (RFC 9162 §2.1.1)."""


class InvalidProofError(IntegrityError):
    """A Merkle inclusion or consistency proof does not verify (or its parameters are invalid)."""


def leaf_hash(data: bytes) -> bytes:
    """Return ``SHA-256(0x00 || data)``, the hash of one leaf."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``SHA-256(0x01 || left || right)``, the hash of an interior node."""
    return _sha256(_NODE_PREFIX + left + right).digest()


ROOT_CHUNK = 256
"""Leaves per chunk when computing large roots (a power of two)."""

_ROOTS: OrderedDict[bytes, bytes] = OrderedDict()
_ROOTS_LOCK = threading.Lock()


def chunk_roots(leaf_hashes: bytes, chunk: int = ROOT_CHUNK) -> bytes:
    """Concatenated roots of consecutive ``chunk``-leaf slices of the leaves (the last one may
    be shorter); remembered for the last few inputs, keyed by their SHA-256."""
    if len(leaf_hashes) % HASH_SIZE or chunk & (chunk - 1):
        raise ValueError("leaf hashes must be 32-byte rows and the chunk a power of two")
    step = chunk * HASH_SIZE
    key = _sha256(leaf_hashes).digest() + chunk.to_bytes(8, "big")
    with _ROOTS_LOCK:
        cached = _ROOTS.get(key)
        if cached is not None:
            _ROOTS.move_to_end(key)
            return cached
    roots = b"".join(
        MerkleTree.from_leaf_hashes(leaf_hashes[offset : offset + step]).root()
        for offset in range(0, len(leaf_hashes), step)
    )
    with _ROOTS_LOCK:
        _ROOTS[key] = roots
        while len(_ROOTS) > 16:
            _ROOTS.popitem(last=False)
    return roots


def merkle_root(leaf_hashes: Iterable[bytes] | bytes) -> bytes:
    """Root hash of the tree with these leaf hashes (32-byte items or one concatenation)."""
    joined = leaf_hashes if isinstance(leaf_hashes, bytes) else b"".join(leaf_hashes)
    if len(joined) > ROOT_CHUNK * HASH_SIZE:
        return MerkleTree.from_leaf_hashes(chunk_roots(bytes(joined))).root()
    tree = MerkleTree()
    tree.extend_leaf_hashes(joined)
    return tree.root()


def _largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162 §2.1.1: the largest power of two strictly smaller than ``n > 1``."""
    return 1 << ((n - 1).bit_length() - 1)


def _hash_pairs(level: bytes) -> bytes:
    """Parents of consecutive pairs of 32-byte rows (``level`` holds an even number of rows)."""
    view = memoryview(level)
    out: list[bytes] = []
    append = out.append
    copy = _NODE_HASHER.copy
    for offset in range(0, len(level), 2 * HASH_SIZE):
        hasher = copy()
        hasher.update(view[offset : offset + 2 * HASH_SIZE])
        append(hasher.digest())
    view.release()
    return b"".join(out)


class MerkleTree:
    """An append-only RFC 9162 tree that serves roots and proofs for any past size.

    ``append``/``extend`` take leaf *data* and hash it; ``extend_leaf_hashes`` takes hashes
    already computed (rebuilding a tree from storage). Indices are 0-based.
    """

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]

    @classmethod
    def from_leaf_hashes(cls, hashes: Iterable[bytes] | bytes) -> MerkleTree:
        """Build a tree from leaf hashes, given as 32-byte items or as one concatenation."""
        tree = cls()
        tree.extend_leaf_hashes(hashes)
        return tree

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0]) // HASH_SIZE

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes) -> int:
        """Hash ``data`` as a new leaf; return its index."""
        index = self.size
        self._levels[0] += leaf_hash(data)
        self._complete_levels(index)
        return index

    def extend(self, items: Iterable[bytes]) -> int:
        """Hash every item of ``items`` as a new leaf, in order; return the new size."""
        old_size = self.size
        self._levels[0] += b"".join([_sha256(_LEAF_PREFIX + item).digest() for item in items])
        self._complete_levels(old_size)
        return self.size

    def extend_leaf_hashes(self, hashes: Iterable[bytes] | bytes) -> int:
        """Append leaves given by their hashes (32-byte items or one concatenation)."""
        joined = hashes if isinstance(hashes, bytes | bytearray) else b"".join(hashes)
        if len(joined) % HASH_SIZE:
            raise ValueError(f"leaf hashes must be {HASH_SIZE}-byte rows, got {len(joined)} bytes")
        old_size = self.size
        self._levels[0] += joined
        self._complete_levels(old_size)
        return self.size

    def _complete_levels(self, old_size: int) -> None:
        """Hash the parents that leaves appended after ``old_size`` completed, level by level."""
        if self.size == old_size:
            return
        level = 0
        while True:
            rows = self._levels[level]
            if level + 1 == len(self._levels):
                self._levels.append(bytearray())
            parents = self._levels[level + 1]
            have = len(parents) // HASH_SIZE
            want = len(rows) // (2 * HASH_SIZE)
            if want == have:
                if not parents:
                    self._levels.pop()
                return
            parents += _hash_pairs(bytes(rows[2 * have * HASH_SIZE : 2 * want * HASH_SIZE]))
            level += 1

    def leaf_hash(self, index: int) -> bytes:
        """The stored hash of leaf ``index``."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} out of range for a tree of {self.size}")
        return self._node(0, index)

    def leaf_hashes(self) -> bytes:
        """All leaf hashes, concatenated (32 bytes each)."""
        return bytes(self._levels[0])

    def _node(self, level: int, index: int) -> bytes:
        offset = index * HASH_SIZE
        return bytes(self._levels[level][offset : offset + HASH_SIZE])

    def _subtree_root(self, start: int, end: int) -> bytes:
        """``MTH(D[start:end])`` for a subtree the RFC recursion produces (start aligned).

        The subtree splits into perfect, stored subtrees by the binary digits of its width,
        largest first; its root folds them from the right.
        """
        parts: list[bytes] = []
        position, width = start, end - start
        while width:
            span = 1 << (width.bit_length() - 1)
            level = span.bit_length() - 1
            parts.append(self._node(level, position >> level))
            position += span
            width -= span
        result = parts.pop()
        while parts:
            result = node_hash(parts.pop(), result)
        return result

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the tree of the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} out of range for a tree of {self.size}")
        return EMPTY_ROOT if size == 0 else self._subtree_root(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """``PATH(index, D[0:size])`` of RFC 9162 §2.1.3.1, leaf level first."""
        size = self.size if size is None else size
        if not 0 < size <= self.size:
            raise ValueError(f"size {size} out of range for a tree of {self.size}")
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} out of range for size {size}")
        path: list[bytes] = []
        start, end, m = 0, size, index
        while end - start > 1:
            k = _largest_power_of_two_below(end - start)
            if m < k:  # PATH(m, D[0:k]) : MTH(D[k:n])
                path.append(self._subtree_root(start + k, end))
                end = start + k
            else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
                path.append(self._subtree_root(start, start + k))
                start += k
                m -= k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """``PROOF(old_size, D[0:new_size])`` of RFC 9162 §2.1.4.1, deepest node first."""
        new_size = self.size if new_size is None else new_size
        if not 0 < old_size <= new_size <= self.size:
            raise ValueError(
                f"need 0 < old size ({old_size}) <= new size ({new_size}) <= {self.size}"
            )
        path: list[bytes] = []
        start, end, m, whole = 0, new_size, old_size, True
        while m != end - start:
            k = _largest_power_of_two_below(end - start)
            if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
                path.append(self._subtree_root(start + k, end))
                end = start + k
            else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
                path.append(self._subtree_root(start, start + k))
                start += k
                m -= k
                whole = False
        if not whole:  # SUBPROOF(m, D[0:m], false) = {MTH(D[0:m])}
            path.append(self._subtree_root(start, end))
        path.reverse()
        return path


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Run RFC 9162 §2.1.3.2 steps 1-4 and return the root the proof leads to.

    Raises :class:`InvalidProofError` when the proof is malformed for ``index``/``size``.
    """
    if not 0 <= index < size:
        raise InvalidProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        _check_hash(p, "proof node")
        if sn == 0:
            raise InvalidProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root``; else raise."""
    _check_hash(root, "root hash")
    if root_from_inclusion_proof(leaf, index, size, proof) != root:
        raise InvalidProofError(f"inclusion proof of leaf {index} does not lead to the root")


def root_from_consistency_proof(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes
) -> bytes:
    """Run RFC 9162 §2.1.4.2 and return the new root the proof leads to.

    Also checks that the proof reproduces ``old_root``. Equal sizes need an empty proof and
    return ``old_root``; a proof from the empty tree is meaningless and refused.
    """
    _check_hash(old_root, "old root hash")
    if old_size > new_size:
        raise InvalidProofError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == 0:
        raise InvalidProofError("a consistency proof from the empty tree is meaningless")
    if old_size == new_size:
        if proof:
            raise InvalidProofError("equal sizes need an empty consistency proof")
        return old_root
    if not proof:  # step 1
        raise InvalidProofError("empty consistency proof")
    for node in proof:
        _check_hash(node, "proof node")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: first is an exact power of 2
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise InvalidProofError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 7
        raise InvalidProofError("consistency proof is shorter than needed")
    if fr != old_root:
        raise InvalidProofError(
            f"consistency proof does not lead to the old root (size {old_size})"
        )
    return sr


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new_size`` with ``new_root`` extends the one of ``old_size``."""
    _check_hash(new_root, "new root hash")
    if root_from_consistency_proof(old_size, new_size, proof, old_root) != new_root:
        raise InvalidProofError(
            f"consistency proof {old_size} -> {new_size} does not lead to the new root"
        )
