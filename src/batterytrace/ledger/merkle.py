"""RFC 9162 Merkle tree hashing over stored complete subtrees.

The log is a Merkle tree as defined in RFC 9162 §2.1.1 (the same as RFC 6962 §2.1):

* a leaf hashes as ``SHA-256(0x00 ‖ entry)``;
* an interior node hashes as ``SHA-256(0x01 ‖ left ‖ right)``;
* the empty tree hashes as ``SHA-256("")``.

Only *complete* subtrees are stored. Node ``(level, index)`` is the hash of the leaves
``[index·2^level, (index+1)·2^level)``; level 0 holds the leaf hashes. A stored node never
changes once written, so the node table is append-only like the log itself. The right edge of
a tree whose size is not a power of two is never stored: it is folded on the fly from at most
``log2(n)`` complete subtrees.

Every function that needs stored nodes first works out the list of ``(level, index)`` keys it
needs (``O(log n)`` of them), asks the :class:`NodeReader` for all of them in *one* call, and
only then computes. A database-backed reader therefore answers a proof with one query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryNodeStore",
    "MissingNodeError",
    "Node",
    "NodeKey",
    "NodeReader",
    "ProofError",
    "append_leaves",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "merkle_tree_hash",
    "node_hash",
    "nodes_to_store",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256

HASH_SIZE = 32
"""Length in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""Root hash of the empty tree: ``SHA-256("")``."""

NodeKey = tuple[int, int]
"""``(level, index)`` of a complete subtree."""

Node = tuple[int, int, bytes]
"""``(level, index, hash)`` of a complete subtree, as written to storage."""


class ProofError(ValueError):
    """An inclusion or consistency proof does not verify."""


class MissingNodeError(LookupError):
    """The node store lacks a node that a complete tree of the requested size must have."""

    def __init__(self, missing: Sequence[NodeKey]) -> None:
        self.missing: tuple[NodeKey, ...] = tuple(missing)
        shown = ", ".join(f"(level {lv}, index {ix})" for lv, ix in self.missing[:5])
        more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        super().__init__(
            f"node store has no node {shown}{more}: the tree is smaller than requested "
            "or its stored nodes are incomplete"
        )


class NodeReader(Protocol):
    """Batch read access to stored complete-subtree hashes.

    ``get_nodes`` receives every key one computation needs and returns the hashes it has,
    keyed by ``(level, index)``. Keys it does not hold are simply absent from the result.
    """

    def get_nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]: ...


# --- hashing -----------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """Hash of a log entry as a leaf: ``SHA-256(0x00 ‖ entry)``."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: ``SHA-256(0x01 ‖ left ‖ right)``."""
    return _sha256(b"\x01" + left + right).digest()


def merkle_tree_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of RFC 9162 §2.1.1, computed recursively from all leaf hashes.

    This is the textbook definition, linear in the number of leaves. It exists to cross-check
    the stored-node functions; do not use it on a real log.
    """
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two smaller than n
    return node_hash(merkle_tree_hash(leaf_hashes[:k]), merkle_tree_hash(leaf_hashes[k:]))


# --- planning: which stored nodes a computation needs -----------------------------------


def _range_keys(start: int, count: int) -> list[NodeKey]:
    """Complete subtrees that cover leaves ``[start, start+count)``, left to right.

    ``start`` must be a multiple of the smallest power of two not below ``count``, which holds
    for every range the RFC's recursive definitions split a tree into.
    """
    keys: list[NodeKey] = []
    while count:
        level = count.bit_length() - 1
        keys.append((level, start >> level))
        step = 1 << level
        start += step
        count -= step
    return keys


def _read(reader: NodeReader, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
    """Fetch ``keys`` with a single batch read; fail if any is missing."""
    if not keys:
        return {}
    wanted = list(dict.fromkeys(keys))
    nodes = reader.get_nodes(wanted)
    if len(nodes) < len(wanted) or any(k not in nodes for k in wanted):
        raise MissingNodeError([k for k in wanted if k not in nodes])
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a right-edge subtree from its complete subtrees, left to right."""
    h = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        h = _sha256(b"\x01" + hashes[i] + h).digest()
    return h


def _resolve(plan: Sequence[Sequence[NodeKey]], reader: NodeReader) -> list[bytes]:
    """Read every key of ``plan`` in one call; each group of keys folds into one hash."""
    nodes = _read(reader, [key for group in plan for key in group])
    out: list[bytes] = []
    for group in plan:
        if len(group) == 1:
            out.append(nodes[group[0]])
        else:
            out.append(_fold([nodes[key] for key in group]))
    return out


def _inclusion_plan(index: int, size: int) -> list[list[NodeKey]]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1 as groups of stored nodes, leaf side first."""
    plan: list[list[NodeKey]] = []
    start, m, n = 0, index, size
    while n > 1:
        level = (n - 1).bit_length() - 1
        k = 1 << level  # largest power of two smaller than n
        if m < k:
            plan.append(_range_keys(start + k, n - k))
            n = k
        else:
            plan.append([(level, start >> level)])
            start += k
            m -= k
            n -= k
    plan.reverse()
    return plan


def _consistency_plan(size1: int, size2: int) -> list[list[NodeKey]]:
    """PROOF(m, D[n]) of RFC 6962 §2.1.2 as groups of stored nodes, deepest first."""
    siblings: list[list[NodeKey]] = []
    start, m, n = 0, size1, size2
    whole = True  # the b flag of SUBPROOF: m is still the whole original tree
    while m != n:
        level = (n - 1).bit_length() - 1
        k = 1 << level
        if m <= k:
            siblings.append(_range_keys(start + k, n - k))
            n = k
        else:
            siblings.append([(level, start >> level)])
            start += k
            m -= k
            n -= k
            whole = False
    siblings.reverse()
    if whole:
        return siblings
    return [_range_keys(start, m), *siblings]


# --- appending ---------------------------------------------------------------------------


def append_leaves(start_index: int, leaf_hashes: Sequence[bytes], reader: NodeReader) -> list[Node]:
    """Nodes to store when ``leaf_hashes`` are appended to a tree of ``start_index`` leaves.

    Returns ``(level, index, hash)`` for every complete subtree the new leaves create,
    including the leaves themselves at level 0, in creation order. Only the existing
    right-edge subtrees that the new leaves complete are read, in one batch call
    (``O(log n)`` keys), so appending ``k`` leaves costs ``O(k + log n)`` hashes.
    """
    if start_index < 0:
        raise ValueError(f"start index must not be negative, got {start_index}")
    count = len(leaf_hashes)
    if count == 0:
        return []
    end = start_index + count
    # The tree of start_index leaves ends with one complete subtree per set bit of
    # start_index. The one at level b is merged during this batch exactly when the batch
    # completes its right sibling; those are always the lowest set bits.
    needed: list[NodeKey] = []
    level = start_index.bit_length() - 1
    while level >= 0:
        if (start_index >> level) & 1 and (end >> (level + 1)) > (start_index >> (level + 1)):
            needed.append((level, (start_index >> level) ^ 1))
        level -= 1
    nodes = _read(reader, needed)
    stack = [nodes[key] for key in needed]  # right edge, highest level first

    out: list[Node] = []
    append = out.append
    pop = stack.pop
    push = stack.append
    sha256 = _sha256
    i = start_index
    for h in leaf_hashes:
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash for index {i} has {len(h)} bytes, expected {HASH_SIZE}")
        append((0, i, h))
        j = i
        lv = 0
        while j & 1:
            h = sha256(b"\x01" + pop() + h).digest()
            j >>= 1
            lv += 1
            append((lv, j, h))
        push(h)
        i += 1
    return out


def nodes_to_store(index: int, leaf_hash: bytes, reader: NodeReader) -> list[Node]:
    """Nodes to store when the leaf with hash ``leaf_hash`` is appended at ``index``.

    The tree must hold exactly ``index`` leaves before the call. Returns the leaf itself at
    level 0 followed by every complete subtree it closes (one per trailing one bit of
    ``index``).
    """
    return append_leaves(index, (leaf_hash,), reader)


# --- reading: roots and proofs -----------------------------------------------------------


def _check_size(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def root_hash(size: int, reader: NodeReader) -> bytes:
    """Root hash (MTH) of the tree of the first ``size`` leaves, from ``popcount(size)`` nodes."""
    _check_size("tree size", size)
    if size == 0:
        return EMPTY_ROOT
    keys = _range_keys(0, size)
    nodes = _read(reader, keys)
    return _fold([nodes[key] for key in keys])


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """Audit path of RFC 9162 §2.1.3.1 for leaf ``index`` in the tree of ``size`` leaves.

    The result is identical to PATH(index, D[size]) of RFC 6962 §2.1.1, leaf side first.
    """
    _check_size("tree size", size)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    return _resolve(_inclusion_plan(index, size), reader)


def consistency_proof(size1: int, size2: int, reader: NodeReader) -> list[bytes]:
    """Consistency proof of RFC 9162 §2.1.4.1 from the tree of ``size1`` leaves to ``size2``.

    The result is identical to PROOF(size1, D[size2]) of RFC 6962 §2.1.2. Proofs are defined
    only for ``0 < size1 <= size2``; equal sizes give an empty proof.
    """
    _check_size("first tree size", size1)
    _check_size("second tree size", size2)
    if size1 == 0:
        raise ValueError("no consistency proof exists from the empty tree (size 0)")
    if size1 > size2:
        raise ValueError(f"first tree size {size1} is larger than second tree size {size2}")
    if size1 == size2:
        return []
    return _resolve(_consistency_plan(size1, size2), reader)


# --- verification ------------------------------------------------------------------------


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} has {len(value)} bytes, expected {HASH_SIZE}")


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for i, element in enumerate(proof):
        _check_hash(f"proof hash {i}", element)


def _inclusion_proof_length(index: int, size: int) -> int:
    # Below the level where the paths to `index` and to the last leaf part, every level
    # contributes one sibling; above it, one per left subtree on the tree's right edge.
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Implements RFC 9162 §2.1.3.2, including the final ``sn == 0`` check that ties the proof
    to the tree size. Raises :class:`ProofError` saying what is wrong; returns ``None`` when
    the proof holds.
    """
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root hash", root)
    _check_proof_hashes(proof)
    if size <= 0:
        raise ProofError(f"tree size must be positive for an inclusion proof, got {size}")
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    expected = _inclusion_proof_length(index, size)
    if len(proof) != expected:
        raise ProofError(
            f"inclusion proof for leaf {index} in a tree of size {size} must have "
            f"{expected} hashes, got {len(proof)}"
        )
    fn = index
    sn = size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path from the leaf to the root")
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
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path from the leaf to the root")
    if r != root:
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the given root of the tree of size {size}"
        )


def _consistency_proof_length(size1: int, size2: int) -> int:
    length = 0
    m, n = size1, size2
    whole = True
    while m != n:
        k = 1 << ((n - 1).bit_length() - 1)
        length += 1
        if m <= k:
            n = k
        else:
            m -= k
            n -= k
            whole = False
    return length if whole else length + 1


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``size2`` leaves with ``root2`` extends the one of ``size1``.

    Implements RFC 9162 §2.1.4.2, including the final ``sn == 0`` check. A proof from the
    empty tree is refused (RFC 6962 §2.1.2 defines consistency only for ``0 < size1``);
    equal sizes need an empty proof and equal roots. Raises :class:`ProofError`.
    """
    _check_hash("first root hash", root1)
    _check_hash("second root hash", root2)
    _check_proof_hashes(proof)
    if size1 < 0 or size2 < 0:
        raise ProofError(f"tree sizes must not be negative, got {size1} and {size2}")
    if size1 == 0:
        raise ProofError("consistency with the empty tree (size 0) proves nothing and is not accepted")
    if size1 > size2:
        raise ProofError(f"first tree size {size1} is larger than second tree size {size2}")
    if size1 == size2:
        if proof:
            raise ProofError(f"consistency proof between equal sizes must be empty, got {len(proof)} hashes")
        if root1 != root2:
            raise ProofError(f"two different root hashes for the same tree size {size1}")
        return
    if not proof:
        raise ProofError(f"consistency proof from size {size1} to {size2} is empty")
    expected = _consistency_proof_length(size1, size2)
    if len(proof) != expected:
        raise ProofError(
            f"consistency proof from size {size1} to {size2} must have {expected} hashes, got {len(proof)}"
        )

    path: Sequence[bytes] = proof
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: the old root is a node of the new tree
        path = [root1, *proof]
    fn = size1 - 1
    sn = size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the second root")
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
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the second root")
    if fr != root1:
        raise ProofError(f"consistency proof does not lead to the given root of the tree of size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not lead to the given root of the tree of size {size2}")


# --- in-memory storage -------------------------------------------------------------------


class MemoryNodeStore:
    """Dictionary-backed node store, for tests and small in-memory logs.

    Implements :class:`NodeReader`; ``put`` stores nodes as returned by
    :func:`append_leaves`, and ``append`` does both steps for a batch of leaf hashes.
    """

    __slots__ = ("_nodes", "_size")

    def __init__(self) -> None:
        self._nodes: dict[NodeKey, bytes] = {}
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves stored (the leaves must have been stored in order)."""
        return self._size

    def __len__(self) -> int:
        """Number of stored nodes, leaves included."""
        return len(self._nodes)

    def get_nodes(self, keys: Sequence[NodeKey]) -> dict[NodeKey, bytes]:
        nodes = self._nodes
        return {key: nodes[key] for key in keys if key in nodes}

    def put(self, nodes: Iterable[Node]) -> None:
        """Store nodes; a node already present must keep its hash (the log is append-only)."""
        stored = self._nodes
        size = self._size
        for level, index, value in nodes:
            key = (level, index)
            old = stored.get(key)
            if old is None:
                stored[key] = value
            elif old != value:
                raise ValueError(f"node (level {level}, index {index}) already stored with another hash")
            if level == 0 and index >= size:
                size = index + 1
        self._size = size

    def append(self, leaf_hashes: Sequence[bytes]) -> int:
        """Append leaf hashes after the stored leaves; return the new tree size."""
        self.put(append_leaves(self._size, leaf_hashes, self))
        return self._size

    def snapshot(self) -> dict[NodeKey, bytes]:
        """A copy of every stored node."""
        return dict(self._nodes)
