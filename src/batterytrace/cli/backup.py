"""``batterytrace backup`` and ``batterytrace restore``: a consistent copy of the registry's database
while the server runs (SQLite online backup; PostgreSQL ``pg_dump``), and its restore, checked
against the backup's manifest and, by default, replayed by ``verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn

# soft wrap: messages and paths stay on one line, whole, for people and for scripts that grep them
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

PgBinOption = Annotated[
    Path | None,
    typer.Option(
        "--pg-bin",
        help="directory of pg_dump and pg_restore (default: the newest /usr/lib/postgresql/*/bin, else the PATH)",
    ),
]


def _spinner(what: str) -> Progress:
    return Progress(SpinnerColumn(), TextColumn(what), console=err, transient=True)


def backup_command(
    file: Annotated[Path, typer.Argument(help="the backup file to write")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing backup file")] = False,
    pg_bin: PgBinOption = None,
) -> None:
    """Back up the registry's database while it runs: a consistent copy as of one committed
    transaction, with a manifest (FILE.manifest.json) and the signed checkpoint of that moment
    (FILE.checkpoint). The log's signing key is not included: keep its file safe separately."""
    from batterytrace.cli.main import settings
    from batterytrace.services.backup import BackupError, backup, checkpoint_path, manifest_path

    cfg = settings()
    try:
        with _spinner(f"backing up to {file} …"):
            done = backup(cfg.database_url, file, overwrite=overwrite, pg_bin=pg_bin)
    except BackupError as exc:
        err.print(f"[red]error[/red]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    m = done.manifest
    out.print(
        f"backed up {m.kind} database: log of {m.log_size:,} entries, {done.bytes:,} bytes in "
        f"{done.seconds:.1f} s",
        highlight=False,
    )
    out.print(f"  backup     {file}", highlight=False)
    out.print(f"  manifest   {manifest_path(file)}", highlight=False)
    if m.checkpoint:
        out.print(f"  checkpoint {checkpoint_path(file)}", highlight=False)
    out.print(f"  signing key (not in the backup): {cfg.signing_key_path()}", highlight=False)


def restore_command(
    file: Annotated[Path, typer.Argument(help="a backup written by 'batterytrace backup'")],
    force: Annotated[bool, typer.Option(help="replace a database that already holds a registry")] = False,
    check: Annotated[
        bool, typer.Option("--verify/--no-verify", help="run verify on the restored registry")
    ] = True,
    pg_bin: PgBinOption = None,
) -> None:
    """Restore a backup into the configured database (BATTERYTRACE_DATABASE_URL), with the server
    stopped. A database that already holds a registry is replaced only with --force. The restored
    log must match the backup's manifest, and (unless --no-verify) pass verify. Exit 0 only then."""
    from batterytrace.cli.main import settings
    from batterytrace.services.backup import BackupError, restore

    cfg = settings()
    try:
        with _spinner(f"restoring {file} …"):
            done = restore(cfg.database_url, file, force=force, pg_bin=pg_bin)
    except BackupError as exc:
        err.print(f"[red]error[/red]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    m = done.manifest
    out.print(
        f"restored {m.kind} database from {file}: log of {m.log_size:,} entries, schema {m.schema_revision}, "
        f"in {done.seconds:.1f} s",
        highlight=False,
    )
    if not check:
        return
    if not _verified(cfg):
        raise typer.Exit(1)


def _verified(cfg: object) -> bool:
    """Replay the restored registry against its log; say whether the signing key is one of its keys."""
    from sqlalchemy import select

    from batterytrace.ledger.checkpoint import Signer, generate_signer_key
    from batterytrace.services.log import Log, load_signer
    from batterytrace.services.verify import verify
    from batterytrace.settings import Settings
    from batterytrace.store import tables as T
    from batterytrace.store.db import make_engine

    assert isinstance(cfg, Settings)
    key_file = cfg.signing_key_path()
    # without the key file, the checkpoints are still checked against the keys the log lists
    signer = load_signer(cfg) if key_file.exists() else Signer.from_key(generate_signer_key(cfg.log_origin))
    log = Log(cfg.log_origin, signer)
    engine = make_engine(cfg.database_url)
    try:
        with _spinner("verifying the restored registry …"):
            report = verify(engine, log)
        with engine.connect() as conn:
            listed = signer.verifier_key in {r[0] for r in conn.execute(select(T.log_keys.c.verifier_key))}
    finally:
        engine.dispose()
    for finding in report.findings[:50]:
        out.print(str(finding), highlight=False)
    if not report.ok:
        out.print(f"[red]verify: {len(report.findings)} finding(s)[/red]")
        return False
    out.print(
        f"verify: log entries {report.log_size:,}, rows {report.rows_checked:,}: [green]everything checks[/green]"
    )
    if not key_file.exists():
        err.print(
            f"[yellow]warning[/yellow]: no signing key at {key_file}: restore the key file that signed this log "
            "before starting the server"
        )
    elif report.log_size and not listed:
        err.print(
            f"[yellow]warning[/yellow]: the signing key at {key_file} is not one of this log's keys: the server "
            "will not be ready; point BATTERYTRACE_SIGNING_KEY at the key file that signed this log"
        )
    return True


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
