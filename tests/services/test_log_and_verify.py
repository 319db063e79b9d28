"""The log as users audit it: leaf indices on events, signed checkpoints, proofs from the API,
and `verify` naming every row altered, deleted or inserted behind the registry's back."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import date

import pytest
from sqlalchemy import delete, insert, select, update
from typer.testing import CliRunner

from batterytrace.cli.main import app as cli
from batterytrace.ledger.checkpoint import Checkpoint, Verifier, open_checkpoint, sign_checkpoint
from batterytrace.ledger.entries import canonical_entry
from batterytrace.ledger.merkle import (
    MemoryNodeStore,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from batterytrace.services.log import SigningKeyError, load_signer
from batterytrace.services.verify import verify
from batterytrace.settings import Settings
from batterytrace.store import tables as T
from tests import factories as f


def b64(s: str) -> bytes:
    return base64.b64decode(s)


def make_history(cast) -> list[str]:
    """A few batteries with some history; returns their codes."""
    codes = []
    for i in range(3):
        code = f.code()
        codes.append(code)
        assert cast.maker.event(f.event("manufactured", code, i, f.MANUFACTURED)).status_code == 201
        assert (
            cast.maker.event(f.event("shipped", code, 10 + i, {"to": cast.automaker.id})).status_code == 201
        )
        assert cast.automaker.event(f.event("received", code, 20 + i)).status_code == 201
    return codes


def test_each_event_gets_a_leaf_whose_entry_is_the_event(client, cast):
    code = f.code()
    body = f.event("manufactured", code, 0, f.MANUFACTURED)
    r = cast.maker.event(body)
    stored = r.json()
    entry = client.get(f"/api/v1/log/entries/{stored['log_index']}").json()
    assert entry["kind"] == "event"
    assert entry["entry"]["event"]["id"] == body["id"]
    assert entry["entry"]["event"]["battery"] == code
    assert entry["entry"]["event"]["data"]["capacity_kwh"] == 60.0
    assert b64(entry["leaf_hash"]) == leaf_hash(canonical_entry(entry["entry"]))


def test_checkpoint_is_a_signed_note_anyone_can_check(client, cast):
    make_history(cast)
    note = client.get("/api/v1/log/checkpoint").text
    vkey = client.get("/api/v1/log/key").text.strip()
    name, _keyhash, _ = vkey.split("+", 2)
    lines = note.split("\n")
    assert lines[0] == "test.batterytrace/log"
    size = int(lines[1])
    assert len(b64(lines[2])) == 32
    assert lines[3] == ""
    assert lines[4].startswith(f"— {name} ")
    cp = open_checkpoint(note, [Verifier.from_key(vkey)])
    assert cp.size == size
    # every event's inclusion proof checks against the signed root
    for index in (0, size // 2, size - 1):
        proof = client.get("/api/v1/log/proof/inclusion", params={"index": index, "size": size}).json()
        entry = client.get(f"/api/v1/log/entries/{index}").json()
        leaf = leaf_hash(canonical_entry(entry["entry"]))
        verify_inclusion(leaf, index, size, [b64(h) for h in proof["hashes"]], cp.root_hash)


def test_old_checkpoint_proves_append_only(client, cast):
    make_history(cast)
    old_note = client.get("/api/v1/log/checkpoint").text
    make_history(cast)
    new_note = client.get("/api/v1/log/checkpoint").text
    vkey = Verifier.from_key(client.get("/api/v1/log/key").text.strip())
    old, new = open_checkpoint(old_note, [vkey]), open_checkpoint(new_note, [vkey])
    assert new.size > old.size
    proof = client.get("/api/v1/log/proof/consistency", params={"first": old.size, "second": new.size}).json()
    verify_consistency(old.size, new.size, old.root_hash, new.root_hash, [b64(h) for h in proof["hashes"]])


def test_proof_parameters_out_of_range_are_clear_errors(client, cast):
    make_history(cast)
    r = client.get("/api/v1/log/proof/inclusion", params={"index": 10_000})
    assert r.status_code == 422
    assert r.json()["code"] == "log.bad_index"
    r = client.get("/api/v1/log/proof/consistency", params={"first": 5, "second": 10_000})
    assert r.status_code == 422
    assert r.json()["field"] == "second"
    assert client.get("/api/v1/log/entries/999999").json()["code"] == "log.bad_index"


def test_verify_passes_on_an_honest_registry(registry, cast):
    make_history(cast)
    report = verify(registry.engine, registry.log)
    assert report.ok, [str(x) for x in report.findings]
    assert report.rows_checked > 9
    assert report.checkpoints > 0


def _findings(registry) -> list[tuple[str, str, str]]:
    return [(x.kind, x.table, x.key) for x in verify(registry.engine, registry.log).findings]


def test_verify_names_an_altered_event(registry, cast):
    codes = make_history(cast)
    with registry.engine.begin() as conn:
        row = conn.execute(
            select(T.events).where(T.events.c.battery == codes[0], T.events.c.type == "shipped")
        ).one()
        conn.execute(update(T.events).where(T.events.c.id == row.id).values(data={"to": cast.stranger.id}))
    assert ("altered", "events", row.id) in _findings(registry)


def test_verify_names_a_deleted_and_an_inserted_event(registry, cast):
    codes = make_history(cast)
    with registry.engine.begin() as conn:
        row = dict(
            conn.execute(
                select(T.events).where(T.events.c.battery == codes[1], T.events.c.type == "received")
            )
            .one()
            ._mapping
        )
        conn.execute(delete(T.events).where(T.events.c.id == row["id"]))
        forged = dict(row, id=f.eid(), log_index=None, type="maintained", data={"soh_percent": 99})
        conn.execute(insert(T.events).values(**forged))
    found = _findings(registry)
    assert ("missing", "events", row["id"]) in found
    assert ("extra", "events", forged["id"]) in found


def test_verify_names_altered_state_enterprise_and_licence(registry, cast):
    codes = make_history(cast)
    with registry.engine.begin() as conn:
        conn.execute(
            update(T.batteries).where(T.batteries.c.code == codes[2]).values(holder=cast.stranger.id)
        )
        conn.execute(
            update(T.enterprises).where(T.enterprises.c.id == cast.unlicensed.id).values(name="Forged")
        )
        lic = conn.execute(select(T.licences).where(T.licences.c.enterprise_id == cast.recycler.id)).first()
        conn.execute(update(T.licences).where(T.licences.c.id == lic.id).values(valid_to=date(2099, 12, 31)))
    found = _findings(registry)
    assert ("state", "batteries", codes[2]) in found
    assert ("altered", "enterprises", cast.unlicensed.id) in found
    assert ("altered", "licences", str(lic.id)) in found


def test_verify_cli_exit_status(registry, cast, settings, monkeypatch):
    make_history(cast)
    monkeypatch.setenv("BATTERYTRACE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BATTERYTRACE_SIGNING_KEY", str(settings.signing_key))
    monkeypatch.setenv("BATTERYTRACE_LOG_ORIGIN", settings.log_origin)
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify"])
    assert ok.exit_code == 0, ok.output
    assert "everything checks" in ok.output
    with registry.engine.begin() as conn:
        conn.execute(update(T.batteries).where(T.batteries.c.stage == "new").values(stage="recycled"))
    bad = runner.invoke(cli, ["verify"])
    assert bad.exit_code == 1
    assert "batteries:" in bad.output


def test_rewritten_and_resigned_history_fails_consistency(registry, cast, settings, tmp_path, monkeypatch):
    """An operator who rewrites an entry, rebuilds the tree and signs again cannot hide it from
    anyone holding an old checkpoint."""
    make_history(cast)
    saved = tmp_path / "old-checkpoint.txt"
    with registry.engine.connect() as conn:
        saved.write_text(
            conn.execute(select(T.checkpoints.c.note).order_by(T.checkpoints.c.size.desc())).first().note
        )
    make_history(cast)
    # rewrite entry 3 and rebuild the whole tree, then sign the forged root with the real key
    with registry.engine.begin() as conn:
        entries = [r.entry for r in conn.execute(select(T.log_entries).order_by(T.log_entries.c.idx))]
        forged = json.loads(entries[3])
        forged["forged"] = True
        entries[3] = canonical_entry(forged).decode()
        store = MemoryNodeStore()
        store.append([leaf_hash(e.encode()) for e in entries])
        size = len(entries)
        root = root_hash(size, store)
        conn.execute(update(T.log_entries).where(T.log_entries.c.idx == 3).values(entry=entries[3]))
        conn.execute(delete(T.log_nodes))
        conn.execute(
            insert(T.log_nodes),
            [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in store.snapshot().items()],
        )
        conn.execute(update(T.log_head).values(root=root))
        note = sign_checkpoint(Checkpoint(registry.log.origin, size, root), [registry.log.signer])
        conn.execute(update(T.checkpoints).where(T.checkpoints.c.size == size).values(root=root, note=note))
    monkeypatch.setenv("BATTERYTRACE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BATTERYTRACE_SIGNING_KEY", str(settings.signing_key))
    monkeypatch.setenv("BATTERYTRACE_LOG_ORIGIN", settings.log_origin)
    result = CliRunner().invoke(cli, ["log", "consistency", "--checkpoint", str(saved)])
    assert result.exit_code == 1
    assert "NOT CONSISTENT" in result.output


def test_signing_key_created_private_in_development_refused_in_production(tmp_path):
    path = tmp_path / "keys" / "log.key"
    with pytest.raises(SigningKeyError, match="production"):
        load_signer(Settings(signing_key=path, env="production"))
    assert not path.exists()
    signer = load_signer(Settings(signing_key=path, env="development"))
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600
    assert load_signer(Settings(signing_key=path, env="production")).verifier_key == signer.verifier_key


def test_key_rotation_keeps_old_checkpoints_verifiable(
    registry, cast, settings, tmp_path, monkeypatch, client
):
    make_history(cast)
    old_note = client.get("/api/v1/log/checkpoint").text
    old_key = client.get("/api/v1/log/key").text.strip()
    monkeypatch.setenv("BATTERYTRACE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BATTERYTRACE_SIGNING_KEY", str(settings.signing_key))
    monkeypatch.setenv("BATTERYTRACE_LOG_ORIGIN", settings.log_origin)
    new_path = tmp_path / "new.key"
    result = CliRunner().invoke(cli, ["log", "rotate-key", "--out", str(new_path)])
    assert result.exit_code == 0, result.output
    new_key = result.output.strip().splitlines()[-1]
    assert new_key != old_key
    monkeypatch.setenv("BATTERYTRACE_SIGNING_KEY", str(new_path))
    from batterytrace.services.factory import build_registry

    rotated = build_registry(
        Settings(
            database_url=settings.database_url,
            signing_key=new_path,
            env="test",
            log_origin=settings.log_origin,
        )
    )
    with rotated.engine.connect() as conn:
        verifiers = rotated.log.verifiers(conn)
    assert {v.key for v in verifiers} >= {old_key, new_key}
    assert open_checkpoint(old_note, verifiers).size > 0
    with pytest.raises(ValueError):
        open_checkpoint(old_note, [Verifier.from_key(new_key)])
    report = verify(rotated.engine, rotated.log)
    assert report.ok, [str(x) for x in report.findings]
    rotated.engine.dispose()
