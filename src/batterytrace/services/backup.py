"""Backing up and restoring the registry's database, consistently while the server writes.

- **SQLite**: the SQLite online backup API copies the whole database in one step, under one read
  transaction: the copy is the database as of one committed transaction, while writers go on
  (WAL mode). The copy is checked (``PRAGMA integrity_check``), fsynced, and moved into place.
- **PostgreSQL**: ``pg_dump`` in its custom format, run on a snapshot exported by a repeatable-read
  transaction of our own, so the manifest below describes exactly the dumped state; ``pg_restore``
  in a single transaction to restore.

Beside each backup a manifest (``<backup>.manifest.json``) records the kind of database, the log's
size and root, and the signed checkpoint of that moment, which is also written on its own
(``<backup>.checkpoint``). A restore checks the restored log against the manifest; the checkpoint
lets anyone prove later that the registry's log still extends the backed-up one
(``batterytrace log consistency --checkpoint``).

The log's signing key is not in the database and not in the backup: keep the key file
(``BATTERYTRACE_SIGNING_KEY``) in the secret store and restore it beside the database.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, make_url

MANIFEST_SUFFIX = ".manifest.json"
CHECKPOINT_SUFFIX = ".checkpoint"
MANIFEST_FORMAT = 1
PG_TOOLS_GLOB = "/usr/lib/postgresql/*/bin"


class BackupError(RuntimeError):
    """A backup or restore that could not be done; the message says why and what to do."""


@dataclass(frozen=True)
class Manifest:
    format: int
    kind: str  # "sqlite" | "postgresql"
    created_at: str
    log_size: int
    log_root: str  # base64
    checkpoint: str | None  # the signed checkpoint of the backed-up log (None for an empty log)
    schema_revision: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"the manifest {path} cannot be read ({exc})") from None


@dataclass(frozen=True)
class Done:
    """What a backup or restore did."""

    path: Path
    manifest: Manifest
    bytes: int
    seconds: float


def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + MANIFEST_SUFFIX)


def checkpoint_path(backup: Path) -> Path:
    """The signed checkpoint of a backup, as a note file for ``batterytrace log consistency``."""
    return backup.with_name(backup.name + CHECKPOINT_SUFFIX)


def kind_of(database_url: str) -> str:
    backend = make_url(database_url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(f"backups are made of SQLite and PostgreSQL databases, not {backend}")
    return backend


# --- what a database holds -------------------------------------------------------------------------


def _head(conn: Any) -> tuple[int, bytes, str | None, str | None]:
    """The log's size and root, its latest checkpoint and the schema revision."""
    tables = set(inspect(conn).get_table_names())
    if "log_head" not in tables:
        return 0, b"", None, None
    head = conn.execute(text("SELECT size, root FROM log_head WHERE id = 1")).first()
    size, root = (int(head[0]), bytes(head[1])) if head is not None else (0, b"")
    note = conn.execute(text("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")).scalar()
    revision = (
        conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if "alembic_version" in tables
        else None
    )
    return size, root, note, revision


def _manifest(kind: str, conn: Any) -> Manifest:
    size, root, note, revision = _head(conn)
    return Manifest(
        format=MANIFEST_FORMAT,
        kind=kind,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        log_size=size,
        log_root=base64.b64encode(root).decode("ascii"),
        checkpoint=note,
        schema_revision=revision,
    )


def holds_data(conn: Any) -> bool:
    """Whether a database holds anything a restore would destroy: any table with a row, apart from
    the bookkeeping of an empty registry (its schema revision and an empty log head)."""
    for table in inspect(conn).get_table_names():
        if table == "alembic_version":
            continue
        quoted = conn.dialect.identifier_preparer.quote(table)
        where = " WHERE size > 0" if table == "log_head" else ""
        if conn.execute(text(f"SELECT 1 FROM {quoted}{where} LIMIT 1")).first() is not None:
            return True
    return False


# --- SQLite -----------------------------------------------------------------------------------------


def _sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError("only a SQLite database in a file can be backed up or restored")
    return Path(database)


@contextlib.contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 60000")
        yield conn
    finally:
        conn.close()


def _sqlite_manifest(path: Path) -> Manifest:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return _manifest("sqlite", conn)
    finally:
        engine.dispose()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy one SQLite database onto another with the online backup API, in one step (one read
    transaction on the source: a consistent copy however busy the source is)."""
    with _sqlite(source) as src, _sqlite(target) as dst:
        src.backup(dst, pages=-1)
        check = dst.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            raise BackupError(f"the copy of {source} does not pass SQLite's integrity check: {check[:5]}")
    _fsync(target)


def _sqlite_backup(database_url: str, out: Path) -> Manifest:
    source = _sqlite_path(database_url)
    if not source.is_file():
        raise BackupError(f"there is no database at {source}")
    tmp = out.with_name(f".{out.name}.part")
    tmp.unlink(missing_ok=True)
    try:
        _sqlite_copy(source, tmp)
        manifest = _sqlite_manifest(tmp)
        with _sqlite(tmp) as conn:
            conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        _fsync(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


def _sqlite_restore(database_url: str, backup: Path, force: bool) -> Manifest:
    target = _sqlite_path(database_url)
    with _sqlite(backup) as conn:
        check = conn.execute("PRAGMA quick_check").fetchall()
    if check != [("ok",)]:
        raise BackupError(f"{backup} is not an intact SQLite database: {check[:5]}")
    if target.exists() and not force:
        engine = create_engine(f"sqlite:///{target}")
        try:
            with engine.connect() as conn:
                if holds_data(conn):
                    raise BackupError(
                        f"{target} already holds a registry; restoring would replace it. Stop the server, "
                        "back it up if it matters, and run again with --force"
                    )
        finally:
            engine.dispose()
    target.parent.mkdir(parents=True, exist_ok=True)
    _sqlite_copy(backup, target)
    with _sqlite(target) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    return _sqlite_manifest(target)


# --- PostgreSQL -------------------------------------------------------------------------------------


def find_pg_tool(name: str, pg_bin: Path | None = None) -> Path:
    """``pg_dump`` or ``pg_restore``: from ``pg_bin``, else the newest of Debian's
    ``/usr/lib/postgresql/*/bin``, else on the PATH. (A newer pg_dump reads older servers; an
    older one refuses newer servers.)"""
    if pg_bin is not None:
        found = pg_bin / name
        if not found.is_file():
            raise BackupError(f"no {name} in {pg_bin}")
        return found
    versions = sorted(
        Path("/").glob(PG_TOOLS_GLOB.lstrip("/")),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")],
    )
    for directory in reversed(versions):
        if (directory / name).is_file():
            return directory / name
    on_path = shutil.which(name)
    if on_path is None:
        raise BackupError(
            f"{name} was not found: install the PostgreSQL client (Debian: postgresql-client) or pass --pg-bin"
        )
    return Path(on_path)


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """The URL as a libpq connection string without its password, and the environment that carries
    the password (so it never appears on a command line)."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _pg_url(database_url: str) -> URL:
    url = make_url(database_url)
    if url.get_driver_name() in ("", "psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _pg_backup(database_url: str, out: Path, pg_bin: Path | None) -> Manifest:
    url = _pg_url(database_url)
    dsn, env = _libpq(url)
    pg_dump = find_pg_tool("pg_dump", pg_bin)
    tmp = out.with_name(f".{out.name}.part")
    tmp.unlink(missing_ok=True)
    engine = create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as conn:
            # our transaction's snapshot is the dump's: the manifest describes what is dumped
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            manifest = _manifest("postgresql", conn)
            _run(
                [str(pg_dump), "--format=custom", "--no-owner", "--no-privileges",
                 f"--snapshot={snapshot}", f"--file={tmp}", f"--dbname={dsn}"],
                env,
            )  # fmt: skip
            conn.rollback()
        _fsync(tmp)
        os.replace(tmp, out)
    finally:
        engine.dispose()
        tmp.unlink(missing_ok=True)
    return manifest


def _pg_restore(database_url: str, backup: Path, force: bool, pg_bin: Path | None) -> Manifest:
    url = _pg_url(database_url)
    dsn, env = _libpq(url)
    pg_restore = find_pg_tool("pg_restore", pg_bin)
    _run([str(pg_restore), "--list", str(backup)], env)  # a readable dump, before touching anything
    _ensure_pg_database(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            has_tables = bool(inspect(conn).get_table_names())
            if has_tables and holds_data(conn) and not force:
                raise BackupError(
                    f"database {url.database} already holds a registry; restoring would replace it. Stop the "
                    "server, back it up if it matters, and run again with --force"
                )
    finally:
        engine.dispose()
    args = [str(pg_restore), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    if has_tables:
        args += ["--clean", "--if-exists"]
    _run([*args, f"--dbname={dsn}", str(backup)], env)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return _manifest("postgresql", conn)
    finally:
        engine.dispose()


def _ensure_pg_database(url: URL) -> None:
    """Create the target database when it does not exist yet (restoring onto a new server)."""
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).first()
            if exists is None:
                quoted = conn.dialect.identifier_preparer.quote(str(url.database))
                conn.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        admin.dispose()


# --- the use cases ----------------------------------------------------------------------------------


def backup(database_url: str, out: Path, *, overwrite: bool = False, pg_bin: Path | None = None) -> Done:
    """Back up the database at ``database_url`` to ``out`` (and its manifest beside it)."""
    kind = kind_of(database_url)
    if out.exists() and not overwrite:
        raise BackupError(f"{out} exists; choose another name or pass --overwrite")
    if out.is_dir():
        raise BackupError(f"{out} is a directory; name the backup file")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    manifest = (
        _sqlite_backup(database_url, out) if kind == "sqlite" else _pg_backup(database_url, out, pg_bin)
    )
    _write_atomically(manifest_path(out), manifest.to_json())
    if manifest.checkpoint:
        _write_atomically(checkpoint_path(out), manifest.checkpoint)
    _fsync(out.parent)
    return Done(out, manifest, out.stat().st_size, time.monotonic() - started)


def restore(database_url: str, source: Path, *, force: bool = False, pg_bin: Path | None = None) -> Done:
    """Restore the backup ``source`` into the database at ``database_url``. A database that holds
    data is replaced only with ``force``. The restored log is checked against the manifest."""
    kind = kind_of(database_url)
    if not source.is_file():
        raise BackupError(f"there is no backup at {source}")
    expected = Manifest.read(manifest_path(source)) if manifest_path(source).is_file() else None
    if expected is not None and expected.kind != kind:
        raise BackupError(f"{source} is a {expected.kind} backup; the target database is {kind}")
    started = time.monotonic()
    if kind == "sqlite":
        restored = _sqlite_restore(database_url, source, force)
    else:
        restored = _pg_restore(database_url, source, force, pg_bin)
    if expected is not None and (restored.log_size, restored.log_root) != (
        expected.log_size,
        expected.log_root,
    ):
        raise BackupError(
            f"the restored log ({restored.log_size} entries) is not the one the manifest describes "
            f"({expected.log_size} entries): the backup file and its manifest do not belong together"
        )
    return Done(source, restored, source.stat().st_size, time.monotonic() - started)


def _write_atomically(path: Path, content: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
