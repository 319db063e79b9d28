"""Merkle hashing, stored-node roots and proofs, argument checks and read costs."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import pytest

from batterytrace.ledger import (
    EMPTY_ROOT,
    MemoryNodeStore,
    MissingNodeError,
    NodeKey,
    ProofError,
    append_leaves,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_tree_hash,
    node_hash,
    nodes_to_store,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

from .support import reference_path, reference_proof


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(8, "big")) for i in range(n)]


class CountingReader:
    """Wraps a reader and records every batch read."""

    def __init__(self, inner: MemoryNodeStore) -> None:
        self.inner = inner
        self.calls: list[list[NodeKey]] = []

    def get_nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        self.calls.append(list(keys))
        return self.inner.get_nodes(keys)


class SyntheticTree:
    """A reader for a huge tree that is never built.

    Every leaf has the same hash, so every complete subtree at one level has the same hash
    too, and a node can be derived from its level alone while staying consistent with its
    children. Reads of nodes outside the tree of ``size`` leaves come back missing.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.level_hash = [leaf_hash(b"battery")]
        while len(self.level_hash) < 64:
            self.level_hash.append(node_hash(self.level_hash[-1], self.level_hash[-1]))
        self.calls: list[list[NodeKey]] = []

    def get_nodes(self, keys: Sequence[NodeKey]) -> Mapping[NodeKey, bytes]:
        self.calls.append(list(keys))
        return {(lv, ix): self.level_hash[lv] for lv, ix in keys if (ix + 1) << lv <= self.size}


# --- hashing -----------------------------------------------------------------------------


def test_hash_definitions() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = leaf_hash(b"l"), leaf_hash(b"r")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert merkle_tree_hash([]) == EMPTY_ROOT
    assert merkle_tree_hash([left]) == left
    assert merkle_tree_hash([left, right, left]) == node_hash(node_hash(left, right), left)


def test_rfc_example_tree_of_seven_leaves() -> None:
    """RFC 9162 §2.1.5: the seven-leaf tree and its named proofs."""
    d = _leaves(7)
    b, j = d[1], d[6]
    g, h, i = node_hash(d[0], d[1]), node_hash(d[2], d[3]), node_hash(d[4], d[5])
    k, l_ = node_hash(g, h), node_hash(i, j)
    store = MemoryNodeStore()
    store.append(d)
    assert root_hash(7, store) == node_hash(k, l_)
    assert inclusion_proof(0, 7, store) == [b, h, l_]  # audit path for d0
    assert inclusion_proof(3, 7, store) == [d[2], g, l_]  # for d3
    assert inclusion_proof(4, 7, store) == [d[5], j, k]  # for d4
    assert inclusion_proof(6, 7, store) == [i, k]  # for d6
    assert consistency_proof(3, 7, store) == [d[2], d[3], g, l_]
    assert consistency_proof(4, 7, store) == [l_]
    assert consistency_proof(6, 7, store) == [i, j, k]


# --- appends -----------------------------------------------------------------------------


def test_single_appends_create_the_complete_subtrees() -> None:
    store = MemoryNodeStore()
    leaves = _leaves(8)
    created = []
    for index, h in enumerate(leaves):
        nodes = nodes_to_store(index, h, store)
        store.put(nodes)
        created.append([(lv, ix) for lv, ix, _ in nodes])
    assert created == [
        [(0, 0)],
        [(0, 1), (1, 0)],
        [(0, 2)],
        [(0, 3), (1, 1), (2, 0)],
        [(0, 4)],
        [(0, 5), (1, 2)],
        [(0, 6)],
        [(0, 7), (1, 3), (2, 1), (3, 0)],
    ]
    assert store.size == 8
    assert len(store) == 15


def test_batch_append_equals_single_appends_for_every_split() -> None:
    leaves = _leaves(40)
    single = MemoryNodeStore()
    for h in leaves:
        single.put(nodes_to_store(single.size, h, single))
    for first in range(41):
        batched = MemoryNodeStore()
        batched.append(leaves[:first])
        batched.append(leaves[first:])
        assert batched.snapshot() == single.snapshot(), first


def test_append_reads_only_the_subtrees_it_completes() -> None:
    store = MemoryNodeStore()
    store.append(_leaves(0b1011))
    reader = CountingReader(store)
    nodes = nodes_to_store(0b1011, leaf_hash(b"x"), reader)
    # leaf 11 closes (1, 5) and (2, 2): it needs leaf 10 and node (1, 4), nothing else
    assert reader.calls == [[(1, 4), (0, 10)]]
    assert [(lv, ix) for lv, ix, _ in nodes] == [(0, 11), (1, 5), (2, 2)]

    reader.calls.clear()
    assert nodes_to_store(0b1010, leaf_hash(b"y"), reader)[0][:2] == (0, 10)
    assert nodes_to_store(0b1100, leaf_hash(b"y"), reader)[0][:2] == (0, 12)
    assert reader.calls == []  # an even index completes nothing: no read at all


def test_batch_append_on_a_huge_tree_reads_log_n_nodes_once() -> None:
    size = (1 << 20) + 12345
    tree = SyntheticTree(size)
    nodes = append_leaves(size, [tree.level_hash[0]] * 5000, tree)
    assert len(tree.calls) == 1
    assert len(tree.calls[0]) <= size.bit_length()
    assert sum(1 for lv, _, _ in nodes if lv == 0) == 5000
    for level, index, value in nodes:
        assert value == tree.level_hash[level], (level, index)
        assert (index + 1) << level <= size + 5000


def test_append_refuses_bad_input() -> None:
    store = MemoryNodeStore()
    with pytest.raises(ValueError, match="32"):
        append_leaves(0, [b"short"], store)
    with pytest.raises(ValueError, match="negative"):
        append_leaves(-1, _leaves(1), store)
    assert append_leaves(0, [], store) == []
    store.append(_leaves(3))
    with pytest.raises(MissingNodeError, match=r"level 0, index 4"):
        nodes_to_store(5, leaf_hash(b"gap"), store)  # the tree has 3 leaves, not 5


def test_store_is_append_only() -> None:
    store = MemoryNodeStore()
    store.append(_leaves(2))
    store.put([(0, 0, _leaves(1)[0])])  # the same node again is harmless
    with pytest.raises(ValueError, match="already stored"):
        store.put([(0, 0, leaf_hash(b"other"))])


# --- roots and proofs --------------------------------------------------------------------


def test_stored_nodes_agree_with_the_rfc_definitions_exhaustively() -> None:
    leaves = _leaves(70, b"exhaustive")
    store = MemoryNodeStore()
    store.append(leaves)
    for size in range(0, 71):
        assert root_hash(size, store) == merkle_tree_hash(leaves[:size]), size
    for size in range(1, 71):
        root = root_hash(size, store)
        for index in range(size):
            proof = inclusion_proof(index, size, store)
            assert proof == reference_path(index, leaves[:size]), (index, size)
            verify_inclusion(leaves[index], index, size, proof, root)
        for size1 in range(1, size + 1):
            proof = consistency_proof(size1, size, store)
            assert proof == reference_proof(size1, leaves[:size]), (size1, size)
            verify_consistency(size1, size, root_hash(size1, store), root, proof)


def test_proofs_refuse_impossible_arguments() -> None:
    store = MemoryNodeStore()
    store.append(_leaves(5))
    with pytest.raises(ValueError, match="not in a tree of size 5"):
        inclusion_proof(5, 5, store)
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(-1, 5, store)
    with pytest.raises(ValueError, match="not in a tree of size 0"):
        inclusion_proof(0, 0, store)
    with pytest.raises(ValueError, match="empty tree"):
        consistency_proof(0, 5, store)
    with pytest.raises(ValueError, match="larger"):
        consistency_proof(5, 4, store)
    with pytest.raises(ValueError, match="negative"):
        root_hash(-1, store)
    assert consistency_proof(5, 5, store) == []
    assert root_hash(0, store) == EMPTY_ROOT


def test_proofs_beyond_the_stored_tree_name_the_missing_nodes() -> None:
    store = MemoryNodeStore()
    store.append(_leaves(5))
    with pytest.raises(MissingNodeError, match=r"level 1, index 2") as info:
        inclusion_proof(0, 6, store)  # needs leaves [4, 6) as one node; only leaf 4 exists
    assert info.value.missing == ((1, 2),)
    with pytest.raises(MissingNodeError):
        consistency_proof(3, 9, store)
    with pytest.raises(MissingNodeError):
        root_hash(8, store)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300])
def test_every_proof_is_one_batch_read_of_log_n_nodes(size: int) -> None:
    store = MemoryNodeStore()
    store.append(_leaves(size))
    reader = CountingReader(store)
    bound = 2 * math.log2(size) + 2
    for index in range(size):
        reader.calls.clear()
        inclusion_proof(index, size, reader)
        assert len(reader.calls) <= 1
        assert sum(map(len, reader.calls)) <= bound
    for size1 in range(1, size + 1):
        reader.calls.clear()
        consistency_proof(size1, size, reader)
        assert len(reader.calls) <= 1
        assert sum(map(len, reader.calls)) <= bound
    reader.calls.clear()
    root_hash(size, reader)
    assert len(reader.calls) == 1
    assert len(reader.calls[0]) == size.bit_count()


def test_proofs_on_a_huge_tree_touch_o_log_n_nodes() -> None:
    size = (1 << 20) + 12345
    bound = 2 * math.log2(size) + 2
    tree = SyntheticTree(size)
    root = root_hash(size, tree)
    assert tree.calls == [
        [(20, 0), (13, 128), (12, 258), (5, 33152), (4, 66306), (3, 132614), (0, 1060920)]
    ]  # one node per set bit of size = 2^20 + 2^13 + 2^12 + 2^5 + 2^4 + 2^3 + 2^0

    for index in [0, 1, 12344, (1 << 20) - 1, 1 << 20, size - 2, size - 1, 777_777]:
        tree.calls.clear()
        proof = inclusion_proof(index, size, tree)
        assert len(tree.calls) == 1
        assert len(tree.calls[0]) <= bound, index
        verify_inclusion(tree.level_hash[0], index, size, proof, root)

    for size1 in [1, 2, 3, 12345, 1 << 19, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, size - 1, 999_999]:
        tree.calls.clear()
        proof = consistency_proof(size1, size, tree)
        assert len(tree.calls) == 1
        assert len(tree.calls[0]) <= bound, size1
        old_root = root_hash(size1, tree)
        verify_consistency(size1, size, old_root, root, proof)


# --- verification errors -----------------------------------------------------------------


def test_verification_messages_say_what_is_wrong() -> None:
    store = MemoryNodeStore()
    leaves = _leaves(6)
    store.append(leaves)
    root6 = root_hash(6, store)
    root3 = root_hash(3, store)
    proof = inclusion_proof(2, 6, store)
    with pytest.raises(ProofError, match="must have 3 hashes, got 2"):
        verify_inclusion(leaves[2], 2, 6, proof[:-1], root6)
    with pytest.raises(ProofError, match="does not lead to the given root"):
        verify_inclusion(leaves[3], 2, 6, proof, root6)
    with pytest.raises(ProofError, match="leaf hash has 31 bytes"):
        verify_inclusion(leaves[2][:31], 2, 6, proof, root6)
    with pytest.raises(ProofError, match="proof hash 1 has 33 bytes"):
        verify_inclusion(leaves[2], 2, 6, [proof[0], proof[1] + b"!", proof[2]], root6)
    with pytest.raises(ProofError, match="not in a tree of size 6"):
        verify_inclusion(leaves[2], 6, 6, proof, root6)
    with pytest.raises(ProofError, match="must be positive"):
        verify_inclusion(leaves[2], 0, 0, [], root6)

    cproof = consistency_proof(3, 6, store)
    verify_consistency(3, 6, root3, root6, cproof)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 6, EMPTY_ROOT, root6, [])
    with pytest.raises(ProofError, match="larger"):
        verify_consistency(6, 3, root6, root3, cproof)
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(6, 6, root6, root6, cproof)
    with pytest.raises(ProofError, match="two different root hashes"):
        verify_consistency(6, 6, root6, root3, [])
    with pytest.raises(ProofError, match="is empty"):
        verify_consistency(3, 6, root3, root6, [])
    with pytest.raises(ProofError, match="tree of size 3"):
        verify_consistency(3, 6, root6, root6, cproof)
    with pytest.raises(ProofError, match="tree of size 6"):
        verify_consistency(3, 6, root3, root3, cproof)
    verify_consistency(6, 6, root6, root6, [])
