"""The registry's append-only Merkle log: appending entries in the caller's transaction,
signing one checkpoint per committed batch, serving entries and proofs, and the signing key."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError
from batterytrace.ledger.checkpoint import (
    Checkpoint,
    Signer,
    Verifier,
    generate_signer_key,
    open_checkpoint,
    sign_checkpoint,
)
from batterytrace.ledger.entries import canonical_entry
from batterytrace.ledger.merkle import (
    append_leaves,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
)
from batterytrace.settings import Settings
from batterytrace.store import bulk, repo
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction


class DbNodeReader:
    """Reads stored complete-subtree hashes in one query per call."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get_nodes(self, keys: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        return repo.log_nodes(self.conn, keys)


@dataclass(frozen=True)
class Appended:
    first_index: int
    size: int
    root: bytes


class SigningKeyError(RuntimeError):
    pass


def load_signer(settings: Settings) -> Signer:
    """The log's signing key: read from its file; in development (and tests) a missing file is
    created, readable by its owner only; in production a missing key stops the start."""
    path = settings.signing_key_path()
    if path.exists():
        text = path.read_text(encoding="ascii").strip()
        try:
            return Signer.from_key(text)
        except Exception as exc:
            raise SigningKeyError(f"signing key file {path} is not a valid note signing key: {exc}") from exc
    if settings.env == "production":
        raise SigningKeyError(
            f"no signing key at {path}: in production the log's key must be provided "
            "(create one with 'batterytrace log keygen --out PATH' and set BATTERYTRACE_SIGNING_KEY)"
        )
    write_new_key(path, settings.log_origin)
    return Signer.from_key(path.read_text(encoding="ascii").strip())


def write_new_key(path: Path, name: str) -> str:
    """Create a new signing key file, readable and writable by its owner only."""
    key = generate_signer_key(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return key


class Log:
    def __init__(self, origin: str, signer: Signer) -> None:
        self.origin = origin
        self.signer = signer

    # --- writing (inside the caller's transaction) ----------------------------------------

    def register_key(self, conn: Connection, now: datetime) -> None:
        """Record the current verifier key, so checkpoints stay verifiable after a rotation."""
        vk = self.signer.verifier_key
        found = conn.execute(select(T.log_keys.c.verifier_key).where(T.log_keys.c.verifier_key == vk)).first()
        if found is None:
            conn.execute(
                insert(T.log_keys).values(verifier_key=vk, key_name=self.signer.name, created_at=now)
            )

    def append(
        self, conn: Connection, entries: Sequence[tuple[str, str, Mapping[str, Any]]], now: datetime
    ) -> Appended:
        """Append ``(kind, ref, entry)`` leaves; sign and store the new checkpoint."""
        head = conn.execute(select(T.log_head).where(T.log_head.c.id == 1)).one()
        start = int(head.size)
        if not entries:
            return Appended(start, start, bytes(head.root))
        texts = [canonical_entry(obj) for _, _, obj in entries]
        hashes = [leaf_hash(t) for t in texts]
        reader = DbNodeReader(conn)
        nodes = append_leaves(start, hashes, reader)
        bulk.insert_rows(
            conn,
            T.log_entries,
            [
                {"idx": start + i, "kind": kind, "ref": ref, "entry": texts[i].decode("utf-8")}
                for i, (kind, ref, _) in enumerate(entries)
            ],
        )
        bulk.insert_rows(conn, T.log_nodes, [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes])
        size = start + len(entries)
        root = root_hash(size, reader)
        conn.execute(update(T.log_head).where(T.log_head.c.id == 1).values(size=size, root=root))
        note = sign_checkpoint(Checkpoint(origin=self.origin, size=size, root_hash=root), [self.signer])
        self.register_key(conn, now)
        conn.execute(
            insert(T.checkpoints).values(
                size=size, root=root, note=note, key_name=self.signer.name, created_at=now
            )
        )
        return Appended(start, size, root)

    # --- reading ------------------------------------------------------------------------------

    @staticmethod
    def size(conn: Connection) -> int:
        return int(conn.execute(select(T.log_head.c.size).where(T.log_head.c.id == 1)).scalar_one())

    def verifiers(self, conn: Connection) -> list[Verifier]:
        keys = [r.verifier_key for r in conn.execute(select(T.log_keys.c.verifier_key))]
        if self.signer.verifier_key not in keys:
            keys.append(self.signer.verifier_key)
        return [Verifier.from_key(k) for k in keys]


def latest_checkpoint(engine: Engine) -> str | None:
    with read_transaction(engine) as conn:
        row = conn.execute(
            select(T.checkpoints.c.note).order_by(T.checkpoints.c.size.desc()).limit(1)
        ).first()
        return row.note if row else None


def entry(engine: Engine, index: int) -> dict[str, Any]:
    with read_transaction(engine) as conn:
        size = Log.size(conn)
        # an index beyond the log is refused before the query: the database cannot bind every int
        in_range = 0 <= index < size
        row = (
            conn.execute(select(T.log_entries).where(T.log_entries.c.idx == index)).first()
            if in_range
            else None
        )
    if row is None:
        raise DomainError(
            E.LOG_INDEX, f"no log entry {index}: the log holds entries 0 to {size - 1}", field="index"
        )
    return {"index": index, "kind": row.kind, "ref": row.ref, "entry": json.loads(row.entry)}


def entry_text(engine: Engine, index: int) -> str:
    with read_transaction(engine) as conn:
        in_range = 0 <= index < Log.size(conn)
        stmt = select(T.log_entries.c.entry).where(T.log_entries.c.idx == index)
        row = conn.execute(stmt).first() if in_range else None
    if row is None:
        raise DomainError(E.LOG_INDEX, f"no log entry {index}", field="index")
    return str(row.entry)


def prove_inclusion(engine: Engine, index: int, size: int | None) -> dict[str, Any]:
    with read_transaction(engine) as conn:
        current = Log.size(conn)
        n = current if size is None else size
        if not 0 < n <= current:
            raise DomainError(
                E.LOG_INDEX, f"size must be between 1 and the log's size {current}", field="size"
            )
        if not 0 <= index < n:
            raise DomainError(E.LOG_INDEX, f"index must be between 0 and {n - 1} for size {n}", field="index")
        reader = DbNodeReader(conn)
        proof = inclusion_proof(index, n, reader)
        leaf = repo.log_nodes(conn, [(0, index)])[(0, index)]
        root = root_hash(n, reader)
    return {"index": index, "size": n, "leaf_hash": leaf, "root": root, "hashes": proof}


def prove_consistency(engine: Engine, first: int, second: int | None) -> dict[str, Any]:
    with read_transaction(engine) as conn:
        current = Log.size(conn)
        n = current if second is None else second
        if not 0 < n <= current:
            raise DomainError(
                E.LOG_INDEX, f"second must be between 1 and the log's size {current}", field="second"
            )
        if not 0 < first <= n:
            raise DomainError(E.LOG_INDEX, f"first must be between 1 and second ({n})", field="first")
        reader = DbNodeReader(conn)
        proof = consistency_proof(first, n, reader)
        r1 = root_hash(first, reader)
        r2 = root_hash(n, reader)
    return {"first": first, "second": n, "first_root": r1, "second_root": r2, "hashes": proof}


def open_saved_checkpoint(text: str, verifiers: Sequence[Verifier]) -> Checkpoint:
    return open_checkpoint(text, verifiers)


def rotate_key(registry: Any, out_path: Path) -> str:
    """Create a new signing key, list it beside the old one, and co-sign the latest checkpoint
    with both keys, so a verifier holding either key can check today's tree."""
    from batterytrace.store.db import write_transaction

    old: Signer = registry.log.signer
    write_new_key(out_path, old.name)
    new = Signer.from_key(out_path.read_text(encoding="ascii").strip())
    now = registry.clock()
    with write_transaction(registry.engine) as conn:
        conn.execute(
            update(T.log_keys).where(T.log_keys.c.verifier_key == old.verifier_key).values(retired_at=now)
        )
        registry.log.register_key(conn, now)
        registry.log.signer = new
        registry.log.register_key(conn, now)
        head = conn.execute(select(T.log_head).where(T.log_head.c.id == 1)).one()
        if int(head.size) > 0:
            cp = Checkpoint(origin=registry.log.origin, size=int(head.size), root_hash=bytes(head.root))
            note = sign_checkpoint(cp, [new, old])
            conn.execute(
                update(T.checkpoints)
                .where(T.checkpoints.c.size == int(head.size))
                .values(note=note, key_name=new.name)
            )
    return new.verifier_key
