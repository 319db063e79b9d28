"""Property tests: random trees, built leaf by leaf and in random batches, and tampered proofs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batterytrace.ledger import (
    MemoryNodeStore,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_tree_hash,
    nodes_to_store,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 300


def _leaves(n: int, seed: int) -> list[bytes]:
    prefix = seed.to_bytes(8, "big")
    return [leaf_hash(prefix + i.to_bytes(4, "big")) for i in range(n)]


@st.composite
def trees(draw: st.DrawFn, min_size: int = 1) -> tuple[list[bytes], MemoryNodeStore]:
    """A tree of random size, built in random batch sizes, with its leaves."""
    size = draw(st.integers(min_size, MAX_SIZE))
    leaves = _leaves(size, draw(st.integers(0, 2**32)))
    store = MemoryNodeStore()
    done = 0
    while done < size:
        chunk = draw(st.integers(1, max(1, size - done)) | st.integers(1, 8))
        store.append(leaves[done : done + chunk])
        done = min(size, done + chunk)
    return leaves, store


_settings = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(trees())
def test_batch_and_single_appends_store_identical_nodes(tree: tuple[list[bytes], MemoryNodeStore]) -> None:
    leaves, batched = tree
    single = MemoryNodeStore()
    for index, h in enumerate(leaves):
        single.put(nodes_to_store(index, h, single))
    assert single.snapshot() == batched.snapshot()
    assert batched.size == len(leaves)
    # one node per complete subtree: 2n - popcount(n)
    assert len(batched) == 2 * len(leaves) - len(leaves).bit_count()
    assert root_hash(len(leaves), batched) == merkle_tree_hash(leaves)


@_settings
@given(trees(), st.data())
def test_every_proof_verifies(tree: tuple[list[bytes], MemoryNodeStore], data: st.DataObject) -> None:
    leaves, store = tree
    n = len(leaves)
    size = data.draw(st.integers(1, n) | st.just(n), label="size")
    root = root_hash(size, store)
    assert root == merkle_tree_hash(leaves[:size])
    for index in range(size):
        verify_inclusion(leaves[index], index, size, inclusion_proof(index, size, store), root)
    for size1 in range(1, size + 1):
        proof = consistency_proof(size1, size, store)
        verify_consistency(size1, size, root_hash(size1, store), root, proof)


def _flip(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@_settings
@given(trees(), st.data())
def test_tampered_inclusion_proofs_fail(
    tree: tuple[list[bytes], MemoryNodeStore], data: st.DataObject
) -> None:
    leaves, store = tree
    n = len(leaves)
    size = data.draw(st.integers(1, n), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(index, size, store)
    root = root_hash(size, store)
    leaf = leaves[index]
    verify_inclusion(leaf, index, size, proof, root)

    for position, element in enumerate(proof):  # a flipped bit anywhere in any element
        bit = data.draw(st.integers(0, 255), label=f"bit in element {position}")
        tampered = [*proof[:position], _flip(element, bit), *proof[position + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, tampered, root)

    with pytest.raises(ProofError):  # the leaf itself, or the root
        verify_inclusion(_flip(leaf, data.draw(st.integers(0, 255))), index, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, _flip(root, data.draw(st.integers(0, 255))))

    for wrong in {index - 1, index + 1, index ^ 1, data.draw(st.integers(0, size - 1))}:
        if wrong == index or not 0 <= wrong < size:
            continue
        with pytest.raises(ProofError):
            verify_inclusion(leaf, wrong, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[wrong], wrong, size, proof, root)

    # A wrong size is checked against that size's own root, as a client holding a checkpoint
    # of that size would. (With the original root, another size of the same tree shape can
    # legitimately accept the same path: the size only fixes the shape.)
    for wrong in {size - 1, size + 1, size * 2, size // 2, data.draw(st.integers(1, n))}:
        if wrong == size or not index < wrong <= n:
            continue
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, wrong, proof, root_hash(wrong, store))

    extra = data.draw(st.binary(min_size=32, max_size=32) | st.sampled_from([leaf, root]), label="extra")
    for longer in ([*proof, extra], [extra, *proof], [*proof, *proof[-1:]]):
        if longer == proof:
            continue
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, longer, root)
    if proof:
        for shorter in (proof[:-1], proof[1:]):
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, shorter, root)


@_settings
@given(trees(), st.data())
def test_tampered_consistency_proofs_fail(
    tree: tuple[list[bytes], MemoryNodeStore], data: st.DataObject
) -> None:
    leaves, store = tree
    n = len(leaves)
    size2 = data.draw(st.integers(1, n), label="size2")
    size1 = data.draw(st.integers(1, size2), label="size1")
    proof = consistency_proof(size1, size2, store)
    root1, root2 = root_hash(size1, store), root_hash(size2, store)
    verify_consistency(size1, size2, root1, root2, proof)

    for position, element in enumerate(proof):
        bit = data.draw(st.integers(0, 255), label=f"bit in element {position}")
        tampered = [*proof[:position], _flip(element, bit), *proof[position + 1 :]]
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, root1, root2, tampered)

    with pytest.raises(ProofError):
        verify_consistency(size1, size2, _flip(root1, data.draw(st.integers(0, 255))), root2, proof)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, root1, _flip(root2, data.draw(st.integers(0, 255))), proof)
    if size1 != size2:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, root2, root1, proof)  # swapped roots

    for wrong in {size1 - 1, size1 + 1, size1 * 2, size1 // 2, data.draw(st.integers(1, size2))}:
        if wrong == size1 or not 0 < wrong <= size2:
            continue
        with pytest.raises(ProofError):
            verify_consistency(wrong, size2, root_hash(wrong, store), root2, proof)
        with pytest.raises(ProofError):
            verify_consistency(wrong, size2, root1, root2, proof)
    for wrong in {size2 - 1, size2 + 1, size2 * 2, data.draw(st.integers(1, n))}:
        if wrong == size2 or not size1 <= wrong <= n:
            continue
        with pytest.raises(ProofError):
            verify_consistency(size1, wrong, root1, root_hash(wrong, store), proof)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2 * 2 + 1, root1, root2, proof)
    with pytest.raises(ProofError):
        verify_consistency(0, size2, root1, root2, proof)

    extra = data.draw(st.binary(min_size=32, max_size=32) | st.sampled_from([root1, root2]), label="extra")
    for longer in ([*proof, extra], [extra, *proof], [*proof, *proof[-1:]]):
        if longer == proof:
            continue
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, root1, root2, longer)
    if proof:
        for shorter in (proof[:-1], proof[1:]):
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, root1, root2, shorter)
