"""``batterytrace backup`` while the server writes, and ``batterytrace restore`` into another
database: the copy is one committed moment (no batch half in it, every batch acknowledged before
the backup began in it), the restored registry passes ``verify``, the backup's checkpoint proves
the live log extends it, and a restore never overwrites a registry without ``--force``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.reliability import support as s
from tests.reliability.conftest import fresh_database

BATCH = 100


@dataclass
class Writer:
    """Sends batches of new batteries, one after another, until stopped."""

    url: str
    key: str
    limit: int = 60  # batches at most, however slow the backup
    sent: list[tuple[list[str], float, float | None]] = field(default_factory=list)  # ids, sent at, acked at
    stop: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None

    def run(self) -> None:
        api = s.Api(self.url, self.key)
        try:
            n = 0
            while not self.stop.is_set() and n < self.limit:
                batch = s.manufactured_batch(BATCH, minutes=n)
                n += 1
                entry: tuple[list[str], float, float | None] = (
                    [e["id"] for e in batch],
                    time.monotonic(),
                    None,
                )
                self.sent.append(entry)
                r = api.batch(batch)
                assert r.status_code == 200, r.text
                assert r.json()["accepted"] == BATCH, r.text[:500]
                self.sent[-1] = (entry[0], entry[1], time.monotonic())
        except (AssertionError, httpx.HTTPError) as exc:  # reported by the test
            self.error = exc
        finally:
            api.close()


@pytest.fixture
def running(database_url: str, workdir: Path) -> Iterator[tuple[s.Server, dict[str, str], str]]:
    env = s.env_for(workdir, database_url)
    _, regulator_key = s.bootstrap(env, workdir)
    with s.Server(workdir, env) as server:
        regulator = s.Api(server.url, regulator_key)
        _, maker_key = s.make_enterprise(regulator, ["battery_maker"], codes=["0AB"])
        regulator.close()
        yield server, env, maker_key


def test_backup_while_writing_and_restore_into_another_database(
    running: tuple[s.Server, dict[str, str], str], db_kind: str, workdir: Path
) -> None:
    server, env, maker_key = running
    writer = Writer(server.url, maker_key)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while sum(1 for _, _, acked in writer.sent if acked) < 3:  # a few batches in before the backup
            assert writer.error is None, writer.error
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.05)
        began = time.monotonic()
        backup = workdir / "backups" / f"registry.{'sqlite' if db_kind == 'sqlite' else 'dump'}"
        done = s.run(["backup", str(backup)], env, workdir)
        ended = time.monotonic()
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(0.5)  # and some after it
    finally:
        writer.stop.set()
        thread.join(timeout=120)
    assert writer.error is None, writer.error
    during = [
        sent for _, sent, acked in writer.sent if began < sent < ended or (acked and began < acked < ended)
    ]
    assert during, "no batch was written while the backup ran"
    manifest = json.loads((backup.parent / (backup.name + ".manifest.json")).read_text())
    assert manifest["kind"] == db_kind
    assert manifest["log_size"] > 0
    note = (backup.parent / (backup.name + ".checkpoint")).read_text()
    assert note == manifest["checkpoint"]
    assert int(note.splitlines()[1]) == manifest["log_size"]
    # refuses to overwrite a backup
    again = s.run(["backup", str(backup)], env, workdir)
    assert again.returncode != 0
    assert "exists" in again.stderr

    with fresh_database(db_kind, workdir, create=False) as target_url:
        target_env = {**env, "BATTERYTRACE_DATABASE_URL": target_url}
        restored = s.run(["restore", str(backup)], target_env, workdir)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "everything checks" in restored.stdout  # restore ran verify on the copy
        engine = s.engine_for(target_url)
        try:
            counts = s.counts(engine)
            assert counts["head"] == manifest["log_size"]
            for ids, sent_at, acked_at in writer.sent:
                present = len(s.stored_ids(engine, ids))
                assert present in (0, len(ids)), f"a batch is half in the backup ({present} of {len(ids)})"
                if acked_at is not None and acked_at < began:
                    assert present == len(ids), "a batch acknowledged before the backup is not in it"
                if sent_at > ended:
                    assert present == 0, "a batch sent after the backup is in it"
        finally:
            engine.dispose()

        # the live registry's log extends the backed-up one
        proof = s.run(["log", "consistency", "--checkpoint", str(backup) + ".checkpoint"], env, workdir)
        assert proof.returncode == 0, proof.stdout + proof.stderr

        # a registry is not overwritten without --force ...
        before = s.counts(s.engine_for(env["BATTERYTRACE_DATABASE_URL"]))
        refused = s.run(["restore", str(backup)], env, workdir)
        assert refused.returncode == 1
        assert "--force" in refused.stderr
        assert s.counts(s.engine_for(env["BATTERYTRACE_DATABASE_URL"])) == before
        # ... and the restored one can be restored over with it
        forced = s.run(["restore", "--force", "--no-verify", str(backup)], target_env, workdir)
        assert forced.returncode == 0, forced.stdout + forced.stderr


def test_restore_checks_the_backup_before_and_after(
    running: tuple[s.Server, dict[str, str], str], db_kind: str, workdir: Path
) -> None:
    server, env, maker_key = running
    api = s.Api(server.url, maker_key)
    assert api.batch(s.manufactured_batch(20)).status_code == 200
    backup = workdir / "one.backup"
    assert s.run(["backup", str(backup)], env, workdir).returncode == 0
    assert api.batch(s.manufactured_batch(20, minutes=5)).status_code == 200
    other = workdir / "two.backup"
    assert s.run(["backup", str(other)], env, workdir).returncode == 0
    api.close()
    with fresh_database(db_kind, workdir) as target_url:
        target_env = {**env, "BATTERYTRACE_DATABASE_URL": target_url}
        # a backup with another backup's manifest is refused after the restore, and says why
        mixed = workdir / "mixed.backup"
        mixed.write_bytes(other.read_bytes())
        (workdir / "mixed.backup.manifest.json").write_text(
            (workdir / "one.backup.manifest.json").read_text()
        )
        r = s.run(["restore", str(mixed)], target_env, workdir)
        assert r.returncode == 1
        assert "do not belong together" in r.stderr
        # a file that is no backup at all is refused before the target is touched
        junk = workdir / "junk.backup"
        junk.write_bytes(b"not a database" * 100)
        r = s.run(["restore", "--force", str(junk)], target_env, workdir)
        assert r.returncode == 1
        # without the signing key file a restore still verifies (with the keys the log lists), and warns
        keyless = {**target_env, "BATTERYTRACE_SIGNING_KEY": str(workdir / "missing.key")}
        r = s.run(["restore", "--force", str(backup)], keyless, workdir)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "everything checks" in r.stdout
        assert "no signing key" in r.stderr
        assert not (workdir / "missing.key").exists()
        engine = s.engine_for(target_url)
        try:
            assert s.counts(engine)["events"] == 20
        finally:
            engine.dispose()
