"""Signed notes and checkpoints in the C2SP formats, and their Go-compatible keys."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from batterytrace.ledger import (
    Checkpoint,
    CheckpointError,
    NoteError,
    Signer,
    Verifier,
    generate_signer_key,
    note_key_hash,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)

EM_DASH = "\u2014"

# The example key and note in the documentation of golang.org/x/mod/sumdb/note, used as data:
# Ed25519 is deterministic, so signing the same text with the same key must give this note.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_SIGNATURE = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
GO_NOTE = GO_TEXT + "\n" + "— PeterNeumann " + GO_SIGNATURE + "\n"

ROOT = hashlib.sha256(b"root").digest()


def _fail_if_accepted(parse: Callable[[str], object], text: str, why: str) -> None:
    parse(text)
    pytest.fail(f"accepted input with {why}: {text!r}")


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_key(generate_signer_key("registry.example/log"))


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    return Checkpoint("registry.example/log", 20852163, ROOT)


# --- key format --------------------------------------------------------------------------


def test_go_documentation_vector() -> None:
    signer = Signer.from_key(GO_SIGNER_KEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_hash.hex() == "c74f20a3"
    assert signer.verifier_key == GO_VERIFIER_KEY
    assert signer.private_key == GO_SIGNER_KEY
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE
    assert open_note(GO_NOTE, [Verifier.from_key(GO_VERIFIER_KEY)]) == (GO_TEXT, ["PeterNeumann"])
    assert open_note(GO_NOTE.encode("utf-8"), [Verifier.from_key(GO_VERIFIER_KEY)])[0] == GO_TEXT


def test_key_hash_and_key_strings_from_a_fixed_seed() -> None:
    """Derive every byte of the formats by hand for name "example.com" and seed 00 01 .. 1f."""
    seed = bytes(range(32))
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    digest = hashlib.sha256(b"example.com" + b"\x0a" + b"\x01" + public).digest()
    key_hash = digest[:4]

    signer = Signer("example.com", seed)
    assert note_key_hash("example.com", public) == key_hash
    assert signer.key_hash == key_hash
    assert int.from_bytes(signer.key_hash, "big") == int.from_bytes(digest[:4], "big")

    vkey = signer.verifier_key
    name, hex_hash, key64 = vkey.split("+", 2)
    assert name == "example.com"
    assert hex_hash == key_hash.hex()
    assert len(hex_hash) == 8
    assert hex_hash == hex_hash.lower()
    assert base64.b64decode(key64) == b"\x01" + public
    assert Verifier.from_key(vkey).public_key == public

    skey = signer.private_key
    assert skey.startswith("PRIVATE+KEY+example.com+" + key_hash.hex() + "+")
    assert base64.b64decode(skey.split("+", 4)[4]) == b"\x01" + seed
    assert Signer.from_key(skey).public_key == public

    body = "example.com\n1\n" + base64.b64encode(ROOT).decode() + "\n"
    note = sign_note(body, [signer]).encode("utf-8")
    head, sep, tail = note.partition(b"\n\n")
    assert sep == b"\n\n"
    assert head + b"\n" == body.encode()
    assert tail.startswith(b"\xe2\x80\x94 example.com ")  # U+2014 in UTF-8, then a space
    assert tail.endswith(b"\n")
    assert tail.count(b"\n") == 1
    blob = base64.b64decode(tail[len(b"\xe2\x80\x94 example.com ") : -1], validate=True)
    assert len(blob) == 4 + 64
    assert blob[:4] == key_hash
    # the signature covers the body including its final newline, not the blank line
    Ed25519PrivateKey.from_private_bytes(seed).public_key().verify(blob[4:], body.encode())
    assert blob[4:] == Ed25519PrivateKey.from_private_bytes(seed).sign(body.encode())


def test_generated_keys_round_trip() -> None:
    skey = generate_signer_key("registry.example/log")
    signer = Signer.from_key(skey + "\n")  # a key file's final newline is fine
    assert signer.name == "registry.example/log"
    assert skey.startswith("PRIVATE+KEY+registry.example/log+")
    verifier = Verifier.from_key(signer.verifier_key)
    assert verifier == signer.verifier
    assert verifier.key == signer.verifier_key
    assert generate_signer_key("registry.example/log") != skey
    assert "PRIVATE" not in repr(signer)
    assert skey.split("+", 4)[4] not in repr(signer)


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\there", "nbsp\u00a0here", "nl\nhere"])
def test_invalid_key_names(name: str) -> None:
    with pytest.raises(NoteError, match="key name"):
        generate_signer_key(name)


def test_malformed_verifier_keys() -> None:
    good = Verifier.from_key(GO_VERIFIER_KEY)
    assert good.name == "PeterNeumann"
    name, hex_hash, key64 = GO_VERIFIER_KEY.split("+", 2)
    bad = {
        "no parts": "PeterNeumann",
        "short hash": f"{name}+c74f20a+{key64}",
        "non-hex hash": f"{name}+c74f20ag+{key64}",
        "hash prefix": f"{name}+0xc74f20+{key64}",
        "wrong hash": f"{name}+c74f20a4+{key64}",
        "other name": f"Peter+{hex_hash}+{key64}",
        "bad base64": f"{name}+{hex_hash}+{key64[:-1]}",
        "unpadded": f"{name}+{hex_hash}+{key64}=",
        "empty key": f"{name}+{hex_hash}+",
        "other algorithm": f"{name}+{hex_hash}+" + base64.b64encode(b"\x02" + bytes(32)).decode(),
        "short key": f"{name}+{hex_hash}+" + base64.b64encode(b"\x01" + bytes(31)).decode(),
    }
    for why, vkey in bad.items():
        with pytest.raises(NoteError):
            _fail_if_accepted(Verifier.from_key, vkey, why)
    assert Verifier.from_key(f"{name}+{hex_hash.upper()}+{key64}") == good


def test_malformed_signer_keys_do_not_leak_the_secret() -> None:
    secret = GO_SIGNER_KEY.split("+", 4)[4]
    bad = [
        GO_SIGNER_KEY.replace("PRIVATE+KEY+", "PRIVATE+"),
        GO_SIGNER_KEY.replace("c74f20a3", "c74f20a4"),
        GO_SIGNER_KEY.replace("PeterNeumann", "Peter"),
        GO_SIGNER_KEY[:-1],
        GO_VERIFIER_KEY,
    ]
    for skey in bad:
        with pytest.raises(NoteError) as info:
            Signer.from_key(skey)
        assert secret not in str(info.value)
        assert secret[:-1] not in str(info.value)


# --- notes -------------------------------------------------------------------------------


def test_unknown_key_is_refused(signer: Signer) -> None:
    note = sign_note("hello\n", [signer])
    other = Signer.from_key(generate_signer_key("registry.example/log"))  # same name, other key
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(note, [other.verifier])
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(note, [])


def test_unknown_signatures_are_ignored_when_a_known_key_verifies(signer: Signer) -> None:
    witness = Signer.from_key(generate_signer_key("witness.example"))
    note = sign_note("hello\n", [witness, signer])
    assert open_note(note, [signer.verifier]) == ("hello\n", ["registry.example/log"])
    assert open_note(note, [signer.verifier, witness.verifier])[1] == [
        "witness.example",
        "registry.example/log",
    ]


def test_a_bad_signature_from_a_known_key_rejects_the_note(signer: Signer) -> None:
    other = Signer.from_key(generate_signer_key("other.example"))
    good = sign_note("hello\n", [signer])
    forged_line = sign_note("goodbye\n", [other]).split("\n\n", 1)[1]
    note = good + forged_line
    assert open_note(note, [signer.verifier])[1] == ["registry.example/log"]
    with pytest.raises(NoteError, match=r"signature by key other\.example\+[0-9a-f]{8} does not verify"):
        open_note(note, [signer.verifier, other.verifier])


def test_tampered_body_fails(signer: Signer, checkpoint: Checkpoint) -> None:
    note = sign_checkpoint(checkpoint, [signer])
    tampered = note.replace("20852163", "20852164", 1)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(tampered, [signer.verifier])
    with pytest.raises(NoteError, match="does not verify"):
        open_checkpoint(tampered, [signer.verifier])


def test_tampered_signature_fails(signer: Signer) -> None:
    note = sign_note("hello\n", [signer])
    body, line = note.split("\n\n")
    prefix, b64 = line.rstrip("\n").rsplit(" ", 1)
    blob = bytearray(base64.b64decode(b64))
    for position in (4, 30, len(blob) - 1):  # inside the Ed25519 signature
        flipped = bytearray(blob)
        flipped[position] ^= 0x01
        tampered = f"{body}\n\n{prefix} {base64.b64encode(bytes(flipped)).decode()}\n"
        with pytest.raises(NoteError, match="does not verify"):
            open_note(tampered, [signer.verifier])
    flipped = bytearray(blob)
    flipped[0] ^= 0x01  # in the key hash: the signature is now from an unknown key
    tampered = f"{body}\n\n{prefix} {base64.b64encode(bytes(flipped)).decode()}\n"
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(tampered, [signer.verifier])
    truncated = f"{body}\n\n{prefix} {base64.b64encode(bytes(blob[:-1])).decode()}\n"
    with pytest.raises(NoteError, match="does not verify"):
        open_note(truncated, [signer.verifier])


def test_malformed_notes(signer: Signer) -> None:
    note = sign_note("origin\n5\nline\n", [signer])
    body, sigs = note.split("\n\n")
    line = sigs.rstrip("\n")
    malformed = {
        "no blank line": note.replace("\n\n", "\n"),
        "two blank lines": body + "\n\n\n" + sigs,
        "blank line after signatures": note + "\n",
        "no final newline": note.rstrip("\n"),
        "nothing after the blank line": body + "\n\n",
        "trailing space": body + "\n\n" + line + " \n",
        "double space": body + "\n\n" + line.replace(" ", "  ", 2).replace("  ", " ", 1) + "\n",
        "space before dash": body + "\n\n " + line + "\n",
        "hyphen instead of em dash": body + "\n\n" + line.replace(EM_DASH, "-") + "\n",
        "en dash": body + "\n\n" + line.replace(EM_DASH, "\u2013") + "\n",
        "no space after dash": body + "\n\n" + line.replace(EM_DASH + " ", EM_DASH) + "\n",
        "tab separator": body + "\n\n" + line.replace(" ", "\t") + "\n",
        "carriage returns": note.replace("\n", "\r\n"),
        "trailing space in body": body.replace("5\n", "5 \n") + "\n\n" + sigs,
        "control character": body.replace("5", "5\x07") + "\n\n" + sigs,
        "missing signature": body + "\n\n" + EM_DASH + " registry.example/log\n",
        "empty signature": body + "\n\n" + EM_DASH + " registry.example/log \n",
        "short signature": body + "\n\n" + EM_DASH + " registry.example/log AAAAAA==\n",
        "unpadded signature": body + "\n\n" + line.rstrip("=") + "\n",
        "name with plus": body + "\n\n" + line.replace("registry.example/log", "a+b") + "\n",
        "empty": "",
    }
    for why, text in malformed.items():
        with pytest.raises(NoteError):
            _fail_if_accepted(lambda t: open_note(t, [signer.verifier]), text, why)
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(note.encode("utf-8").replace(b"origin", b"orig\xffin"), [signer.verifier])
    with pytest.raises(NoteError, match="more than the 100"):
        open_note(body + "\n\n" + (line + "\n") * 101, [signer.verifier])
    many = Signer.from_key(generate_signer_key("many.example"))
    repeated = body + "\n\n" + (line + "\n") * 20 + sign_note(body + "\n", [many]).split("\n\n")[1]
    assert open_note(repeated, [signer.verifier, many.verifier])[1] == [
        "registry.example/log",
        "many.example",
    ]


def test_note_text_may_hold_blank_lines(signer: Signer) -> None:
    text = "first\n\nsecond\n\n"
    assert open_note(sign_note(text, [signer]), [signer.verifier]) == (text, ["registry.example/log"])


def test_sign_note_refuses_bad_text(signer: Signer) -> None:
    with pytest.raises(NoteError, match="newline"):
        sign_note("no newline", [signer])
    with pytest.raises(NoteError, match="empty"):
        sign_note("", [signer])
    with pytest.raises(NoteError, match="control character U\\+000D"):
        sign_note("dos\r\n", [signer])
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note("alone\n", [])
    twice = sign_note("twice\n", [signer, signer])
    assert twice.count(EM_DASH) == 1


def test_key_rotation(checkpoint: Checkpoint) -> None:
    old = Signer.from_key(generate_signer_key("registry.example/log"))
    new = Signer.from_key(generate_signer_key("registry.example/log"))
    assert old.key_hash != new.key_hash
    before = sign_checkpoint(checkpoint, [old])
    after = sign_checkpoint(Checkpoint(checkpoint.origin, checkpoint.size + 1, ROOT), [new])
    assert open_checkpoint(before, [old.verifier, new.verifier]) == checkpoint
    assert open_checkpoint(after, [old.verifier, new.verifier]).size == checkpoint.size + 1
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_checkpoint(before, [new.verifier])
    both = sign_checkpoint(checkpoint, [old, new])  # signed by both during the changeover
    assert open_note(both, [new.verifier])[1] == ["registry.example/log"]


def test_ambiguous_verifiers_are_refused(signer: Signer) -> None:
    note = sign_note("hello\n", [signer])
    impostor = Verifier.__new__(Verifier)
    fake = Verifier(signer.name, Signer.from_key(generate_signer_key(signer.name)).public_key)
    # same name and key hash, different key: only possible by a hash collision or a bad list
    for slot, value in (("name", fake.name), ("key_hash", signer.key_hash), ("public_key", fake.public_key)):
        object.__setattr__(impostor, slot, value)
    object.__setattr__(impostor, "_key", fake._key)
    with pytest.raises(NoteError, match="several verifier keys"):
        open_note(note, [signer.verifier, impostor])
    assert open_note(note, [signer.verifier, signer.verifier])[1] == ["registry.example/log"]


# --- checkpoints -------------------------------------------------------------------------


def test_checkpoint_round_trip(signer: Signer) -> None:
    checkpoint = Checkpoint("registry.example/log", 20852163, ROOT, ("ext one", "ext: two"))
    body = checkpoint.to_body()
    assert body == (
        "registry.example/log\n20852163\n" + base64.b64encode(ROOT).decode() + "\next one\next: two\n"
    )
    assert Checkpoint.parse(body) == checkpoint
    note = sign_checkpoint(checkpoint, [signer])
    assert note.startswith(body + "\n" + EM_DASH + " registry.example/log ")
    assert open_checkpoint(note, [signer.verifier]) == checkpoint
    assert open_checkpoint(note, [signer.verifier], origin="registry.example/log") == checkpoint
    with pytest.raises(CheckpointError, match=r"expected 'other\.example/log'"):
        open_checkpoint(note, [signer.verifier], origin="other.example/log")
    empty = Checkpoint("registry.example/log", 0, hashlib.sha256(b"").digest())
    assert empty.to_body().split("\n")[1] == "0"
    assert Checkpoint.parse(empty.to_body()) == empty


def test_checkpoint_extensions_become_a_tuple() -> None:
    checkpoint = Checkpoint("o", 1, ROOT, ["x"])  # type: ignore[arg-type]
    assert checkpoint.extensions == ("x",)


def test_malformed_checkpoint_bodies() -> None:
    root64 = base64.b64encode(ROOT).decode()
    bad = {
        "no final newline": f"o\n1\n{root64}",
        "two lines": "o\n1\n",
        "empty origin": f"\n1\n{root64}\n",
        "leading zero": f"o\n01\n{root64}\n",
        "sign": f"o\n+1\n{root64}\n",
        "negative": f"o\n-1\n{root64}\n",
        "space in size": f"o\n1 \n{root64}\n",
        "non-ascii digit": f"o\n\u0661\n{root64}\n",
        "too large": f"o\n{2**64}\n{root64}\n",
        "short root": "o\n1\n" + base64.b64encode(ROOT[:31]).decode() + "\n",
        "bad base64 root": f"o\n1\n{root64[:-1]}\n",
        "urlsafe root": "o\n1\n" + base64.urlsafe_b64encode(b"\xff" * 32).decode() + "\n",
        "empty extension": f"o\n1\n{root64}\n\next\n",
        "trailing blank line": f"o\n1\n{root64}\n\n",
    }
    for why, body in bad.items():
        with pytest.raises(CheckpointError):
            _fail_if_accepted(Checkpoint.parse, body, why)
    assert Checkpoint.parse(f"o\n{2**64 - 1}\n{root64}\n").size == 2**64 - 1


def test_invalid_checkpoints_cannot_be_built() -> None:
    with pytest.raises(CheckpointError):
        Checkpoint("", 1, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint("o\nx", 1, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint("o", -1, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint("o", 2**64, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint("o", 1, ROOT[:31])
    with pytest.raises(CheckpointError):
        Checkpoint("o", 1, ROOT, ("",))
    with pytest.raises(CheckpointError):
        Checkpoint("o", True, ROOT)


_line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
).filter(lambda s: "\n" not in s)


@settings(max_examples=60, deadline=None)
@given(
    origin=_line_text,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_line_text, max_size=3),
)
def test_checkpoint_round_trip_property(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    signer = Signer("registry.example/log", hashlib.sha256(b"fixed test seed").digest())
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert open_checkpoint(sign_checkpoint(checkpoint, [signer]), [signer.verifier]) == checkpoint
