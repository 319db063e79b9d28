"""Signed checkpoints: C2SP tlog-checkpoint bodies in the C2SP signed-note format.

The formats follow https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint, with
Ed25519 keys encoded as golang.org/x/mod/sumdb/note encodes them, so checkpoints written here
open with that package (and with every verifier built on it), and its keys load here.

A signed note::

    <text, ending in a newline>
    <blank line>
    — <key name> <base64(4-byte key hash ‖ 64-byte Ed25519 signature)>
    ...

The signature covers the text up to and including its final newline, not the blank line.
The key hash is the first four bytes of ``SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key)``.

Key strings:

* verifier key: ``<name>+<8 hex digits of key hash>+<base64(0x01 ‖ 32-byte public key)>``;
* signer key: ``PRIVATE+KEY+<name>+<8 hex digits>+<base64(0x01 ‖ 32-byte seed)>``.

A checkpoint body is ``<origin>\\n<tree size>\\n<base64 root hash>\\n`` followed by optional
non-empty extension lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from batterytrace.ledger.merkle import HASH_SIZE

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "CheckpointError",
    "NoteError",
    "Signer",
    "Verifier",
    "generate_signer_key",
    "note_key_hash",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
]

ALG_ED25519 = 0x01
"""Signature type byte of Ed25519 in signed notes."""

MAX_SIGNATURES = 100
"""Notes with more signature lines than this are refused unread (the spec asks for at least 16)."""

_SIG_PREFIX = "— "  # U+2014 EM DASH, then a space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = (1 << 64) - 1


class NoteError(ValueError):
    """A signed note, a note key or a checkpoint is malformed or does not verify."""


class CheckpointError(NoteError):
    """A note's text is not a well-formed checkpoint."""


# --- helpers -----------------------------------------------------------------------------


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: padded, no stray characters, canonical."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_key_name(name: str) -> None:
    if not name:
        raise NoteError("key name must not be empty")
    if "+" in name:
        raise NoteError(f"key name {name!r} must not contain '+'")
    if any(c.isspace() for c in name):
        raise NoteError(f"key name {name!r} must not contain spaces")
    if _CONTROL.search(name):
        raise NoteError(f"key name {name!r} must not contain control characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"key name {name!r} is not valid Unicode text") from None


def note_key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key hash of an Ed25519 key: ``SHA-256(name ‖ "\\n" ‖ 0x01 ‖ key)[:4]``."""
    if len(public_key) != 32:
        raise NoteError(f"Ed25519 public key has {len(public_key)} bytes, expected 32")
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes((ALG_ED25519,)) + public_key).digest()[:4]


def _split_key(rest: str, kind: str) -> tuple[str, bytes, bytes]:
    """Parse ``<name>+<hex hash>+<base64 key>`` into name, hash and decoded key bytes."""
    name, sep1, rest = rest.partition("+")
    hash16, sep2, key64 = rest.partition("+")
    if not sep1 or not sep2:
        raise NoteError(f"{kind} key must look like <name>+<8 hex digits>+<base64 key>")
    _check_key_name(name)
    if not _HEX8.fullmatch(hash16):
        raise NoteError(f"{kind} key for {name!r} must have a key hash of exactly 8 hex digits")
    key = _b64decode(key64, f"{kind} key for {name!r}")
    if not key:
        raise NoteError(f"{kind} key for {name!r} is empty")
    if key[0] != ALG_ED25519:
        raise NoteError(
            f"{kind} key for {name!r} uses algorithm {key[0]}; only Ed25519 ({ALG_ED25519}) is supported"
        )
    if len(key) != 33:
        raise NoteError(f"{kind} key for {name!r} must hold 0x01 and 32 key bytes, got {len(key)} bytes")
    return name, bytes.fromhex(hash16), key[1:]


# --- keys --------------------------------------------------------------------------------


class Verifier:
    """A public note key: checks signatures made by one named Ed25519 key."""

    __slots__ = ("_key", "key_hash", "name", "public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        _check_key_name(name)
        self.name = name
        self.key_hash = note_key_hash(name, public_key)
        self.public_key = bytes(public_key)
        self._key = Ed25519PublicKey.from_public_bytes(self.public_key)

    @classmethod
    def from_key(cls, vkey: str) -> Verifier:
        """Load a verifier key string ``<name>+<hash>+<base64(0x01 ‖ public key)>``."""
        name, claimed, public_key = _split_key(vkey.strip(), "verifier")
        verifier = cls(name, public_key)
        if verifier.key_hash != claimed:
            raise NoteError(
                f"verifier key for {name!r} claims key hash {claimed.hex()}, "
                f"but its name and key hash to {verifier.key_hash.hex()}"
            )
        return verifier

    @property
    def key(self) -> str:
        """The verifier key string, as published for clients."""
        return f"{self.name}+{self.key_hash.hex()}+{_b64encode(bytes((ALG_ED25519,)) + self.public_key)}"

    @property
    def key_id(self) -> str:
        """``<name>+<hex hash>``: how the key is named in messages."""
        return f"{self.name}+{self.key_hash.hex()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != 64:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return self.name == other.name and self.public_key == other.public_key

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.key!r})"


class Signer:
    """A private note key: signs notes as one named Ed25519 key."""

    __slots__ = ("_key", "key_hash", "name", "public_key")

    def __init__(self, name: str, seed: bytes) -> None:
        _check_key_name(name)
        if len(seed) != 32:
            raise NoteError(f"Ed25519 seed must have 32 bytes, got {len(seed)}")
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(seed))
        self.public_key = self._key.public_key().public_bytes_raw()
        self.key_hash = note_key_hash(name, self.public_key)

    @classmethod
    def from_key(cls, skey: str) -> Signer:
        """Load a signer key string ``PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>``.

        Surrounding whitespace (such as a file's final newline) is ignored. Error messages
        never repeat the secret part of the key.
        """
        skey = skey.strip()
        if not skey.startswith(_PRIVATE_PREFIX):
            raise NoteError("signer key must start with 'PRIVATE+KEY+'")
        name, claimed, seed = _split_key(skey[len(_PRIVATE_PREFIX) :], "signer")
        signer = cls(name, seed)
        if signer.key_hash != claimed:
            raise NoteError(
                f"signer key for {name!r} claims key hash {claimed.hex()}, "
                f"but its name and public key hash to {signer.key_hash.hex()}"
            )
        return signer

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random Ed25519 key with the given name."""
        _check_key_name(name)
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @property
    def private_key(self) -> str:
        """The signer key string. Secret: store it like a password."""
        seed = self._key.private_bytes_raw()
        return (
            f"{_PRIVATE_PREFIX}{self.name}+{self.key_hash.hex()}+{_b64encode(bytes((ALG_ED25519,)) + seed)}"
        )

    @property
    def verifier_key(self) -> str:
        """The matching verifier key string, safe to publish."""
        return f"{self.name}+{self.key_hash.hex()}+{_b64encode(bytes((ALG_ED25519,)) + self.public_key)}"

    @property
    def verifier(self) -> Verifier:
        """The matching :class:`Verifier`."""
        return Verifier(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature of ``message`` (64 bytes)."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_hash={self.key_hash.hex()!r})"


def generate_signer_key(name: str) -> str:
    """A new random signer key string for ``name`` (``PRIVATE+KEY+...``)."""
    return Signer.generate(name).private_key


# --- notes -------------------------------------------------------------------------------


def _check_note_text(text: str, what: str) -> bytes:
    match = _CONTROL.search(text)
    if match:
        raise NoteError(
            f"{what} contains control character U+{ord(match.group()):04X} at offset {match.start()}"
        )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"{what} is not valid Unicode text") from None


def sign_note(body: str, signers: Sequence[Signer]) -> str:
    """Sign ``body`` with every signer and return the signed note.

    ``body`` must be non-empty and end in a newline. A signer listed twice signs once.
    """
    if not body:
        raise NoteError("note text must not be empty")
    if not body.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if not signers:
        raise NoteError("a note needs at least one signer")
    message = _check_note_text(body, "note text")
    lines: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for signer in signers:
        ident = (signer.name, signer.key_hash)
        if ident in seen:
            continue
        seen.add(ident)
        blob = signer.key_hash + signer.sign(message)
        lines.append(f"{_SIG_PREFIX}{signer.name} {_b64encode(blob)}\n")
    return body + "\n" + "".join(lines)


def _verifier_index(verifiers: Iterable[Verifier]) -> dict[tuple[str, bytes], list[Verifier]]:
    index: dict[tuple[str, bytes], list[Verifier]] = {}
    for verifier in verifiers:
        same = index.setdefault((verifier.name, verifier.key_hash), [])
        if verifier not in same:
            same.append(verifier)
    return index


def open_note(text: str | bytes, verifiers: Iterable[Verifier]) -> tuple[str, list[str]]:
    """Check a signed note and return its text and the names of the keys that verified it.

    Signatures by keys not in ``verifiers`` are ignored (that is how keys are rotated and
    how cosigners add their signatures), but a signature by a known key must verify, and at
    least one known key must have signed. The names are listed in signature order, once per
    verified key. Raises :class:`NoteError` naming the problem.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("note is not valid UTF-8") from None
    _check_note_text(text, "note")
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line between its text and its signatures")
    body = text[: split + 1]
    block = text[split + 2 :]
    if not block:
        raise NoteError("note has no signature lines after the blank line")
    if not block.endswith("\n"):
        raise NoteError("note's last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signature lines, more than the {MAX_SIGNATURES} accepted")
    message = body.encode("utf-8")
    known = _verifier_index(verifiers)

    verified: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    unknown: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(f"signature line {number} does not start with an em dash (U+2014) and a space")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not b64:
            raise NoteError(f"signature line {number} must be '— <key name> <base64 signature>'")
        try:
            _check_key_name(name)
        except NoteError as exc:
            raise NoteError(f"signature line {number}: {exc}") from None
        blob = _b64decode(b64, f"signature on line {number}")
        if len(blob) < 5:
            raise NoteError(f"signature on line {number} is too short to hold a key hash and a signature")
        key_hash, signature = blob[:4], blob[4:]
        ident = (name, key_hash)
        candidates = known.get(ident)
        if not candidates:
            unknown.append(f"{name}+{key_hash.hex()}")
            continue
        if len(candidates) > 1:
            raise NoteError(f"several verifier keys share the name and key hash {name}+{key_hash.hex()}")
        if ident in seen:
            continue
        seen.add(ident)
        if not candidates[0].verify(message, signature):
            raise NoteError(f"signature by key {name}+{key_hash.hex()} does not verify")
        verified.append(name)
    if not verified:
        signed_by = ", ".join(unknown) if unknown else "nobody"
        raise NoteError(f"note has no signature from a known key (signed by {signed_by})")
    return body, verified


# --- checkpoints -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, its size, its root hash, and optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extensions", tuple(self.extensions))
        if not self.origin:
            raise CheckpointError("checkpoint origin must not be empty")
        for what, line in [("origin", self.origin), *(("extension line", e) for e in self.extensions)]:
            if not line:
                raise CheckpointError(f"checkpoint {what} must not be empty")
            if "\n" in line or _CONTROL.search(line):
                raise CheckpointError(
                    f"checkpoint {what} {line!r} must not contain newlines or control characters"
                )
        if (
            isinstance(self.size, bool)
            or not isinstance(self.size, int)
            or not 0 <= self.size <= _MAX_TREE_SIZE
        ):
            raise CheckpointError(
                f"checkpoint tree size must be an integer from 0 to 2^64-1, got {self.size!r}"
            )
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash must be {HASH_SIZE} bytes")

    def to_body(self) -> str:
        """The note text of this checkpoint."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Parse a checkpoint note text (as returned by :func:`open_note`)."""
        if not body.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                f"checkpoint text needs origin, tree size and root hash lines, got {len(lines)} line(s)"
            )
        origin, size_text, root_text, *extensions = lines
        if not _DECIMAL.fullmatch(size_text):
            raise CheckpointError(
                f"checkpoint tree size {size_text!r} is not a decimal number without leading zeros"
            )
        size = int(size_text)
        if size > _MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {size_text} does not fit in 64 bits")
        try:
            root = _b64decode(root_text, "checkpoint root hash")
        except NoteError as exc:
            raise CheckpointError(str(exc)) from None
        if len(root) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash has {len(root)} bytes, expected {HASH_SIZE}")
        return cls(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> str:
    """The signed note of ``checkpoint``."""
    return sign_note(checkpoint.to_body(), signers)


def open_checkpoint(
    text: str | bytes, verifiers: Iterable[Verifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint with :func:`open_note` and parse it.

    With ``origin``, the checkpoint must also name that log.
    """
    body, _ = open_note(text, verifiers)
    checkpoint = Checkpoint.parse(body)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for log {checkpoint.origin!r}, expected {origin!r}")
    return checkpoint
