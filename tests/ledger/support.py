"""Shared helpers for the ledger tests: where the reference vectors live, and the RFC's
recursive definitions of proofs, written as directly as the text states them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from batterytrace.ledger import merkle_tree_hash

# The shared folder sits beside the repository folder.
MERKLE_REFERENCE_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "merkle"
TRANSPARENCY_DEV_DIR = MERKLE_REFERENCE_DIR / "transparency-dev-merkle"
PROBE_DIR = TRANSPARENCY_DEV_DIR / "testdata"
REFERENCE_TREE = TRANSPARENCY_DEV_DIR / "reference-tree.json"

MISSING_VECTORS = (
    f"Merkle test vectors not found at {MERKLE_REFERENCE_DIR.resolve()}: the 'shared' folder with "
    "reference/merkle/transparency-dev-merkle must sit beside the repository folder"
)


def require_vectors() -> None:
    """Fail (never skip) when the shared test vectors are absent."""
    if not PROBE_DIR.is_dir() or not REFERENCE_TREE.is_file():
        raise AssertionError(MISSING_VECTORS)


def _split(n: int) -> int:
    """Largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def reference_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1, over leaf hashes."""
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return [*reference_path(m, leaves[:k]), merkle_tree_hash(leaves[k:])]
    return [*reference_path(m - k, leaves[k:]), merkle_tree_hash(leaves[:k])]


def _subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [merkle_tree_hash(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), merkle_tree_hash(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), merkle_tree_hash(leaves[:k])]


def reference_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 §2.1.2, over leaf hashes (0 < m <= n)."""
    return _subproof(m, leaves, True)
