"""The ``batterytrace`` command: a thin layer over the library's use cases."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from batterytrace.domain.codes import identify
from batterytrace.domain.errors import DomainError
from batterytrace.settings import Settings

app = typer.Typer(
    help="batterytrace: the national traction-battery traceability registry.", no_args_is_help=True
)
code_app = typer.Typer(
    help="Check identifiers: battery codes, VINs, credit codes, regions.", no_args_is_help=True
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
log_app = typer.Typer(help="The tamper-evident log: checkpoints, proofs, signing keys.", no_args_is_help=True)
app.add_typer(code_app, name="code")
app.add_typer(db_app, name="db")
app.add_typer(log_app, name="log")

out = Console()
err = Console(stderr=True)


def fail(error: DomainError | Exception, code: int = 1) -> typer.Exit:
    if isinstance(error, DomainError):
        err.print(f"[red]error[/red] [bold]{error.code}[/bold]: {error.message}", highlight=False)
    else:
        err.print(f"[red]error[/red]: {error}", highlight=False)
    return typer.Exit(code)


def settings() -> Settings:
    return Settings()


def registry_for_command(*, migrate: bool = True) -> Any:
    """The registry for one command; its database connections close when the command ends."""
    # Typer carries its own click; its context closes when the command ends, on errors too.
    from typer._click.globals import get_current_context

    from batterytrace.services.factory import build_registry

    registry = build_registry(settings(), migrate=migrate)
    ctx = get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(registry.engine.dispose)
    return registry


# --- code check ---------------------------------------------------------------------------------


@code_app.command("check")
def code_check(
    codes: Annotated[
        list[str] | None, typer.Argument(help="identifiers to check; none: read lines from stdin")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per identifier")] = False,
) -> None:
    """Check GB/T 34014 battery codes (and VINs, credit codes, regions): print each one's fields or
    its error. Exit status 0 only if all are valid."""
    items = list(codes) if codes else [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
    if not items:
        raise fail(ValueError("no identifiers given (pass them as arguments or one per line on stdin)"), 2)
    bad = 0
    for item in items:
        try:
            kind, fields = identify(item)
        except DomainError as exc:
            bad += 1
            if as_json:
                out.print_json(
                    json.dumps(
                        {
                            "input": item,
                            "valid": False,
                            "code": exc.code,
                            "error": exc.message,
                            "position": exc.position,
                        }
                    )
                )
            else:
                out.print(f"[red]✗[/red] {item}: [bold]{exc.code}[/bold] {exc.message}", highlight=False)
            continue
        if as_json:
            out.print_json(json.dumps({"input": item, "valid": True, "kind": kind, "fields": fields}))
        else:
            out.print(f"[green]✓[/green] {item} ({kind})", highlight=False)
            for name, value in fields.items():
                out.print(f"    {name:<22} {value}", highlight=False)
    raise typer.Exit(1 if bad else 0)


# --- database -----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the schema migrations (Alembic) to the configured database."""
    from batterytrace.store.db import make_engine
    from batterytrace.store.migrate import current_revision, upgrade

    engine = make_engine(settings().database_url)
    try:
        upgrade(engine, revision)
        out.print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision and whether it is current."""
    from batterytrace.store.db import make_engine
    from batterytrace.store.migrate import current_revision, head_revision

    engine = make_engine(settings().database_url)
    try:
        cur, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    out.print(f"current {cur}, head {head}: {'up to date' if cur == head else 'run batterytrace db upgrade'}")
    raise typer.Exit(0 if cur == head else 1)


@db_app.command("rebuild-fleet")
def db_rebuild_fleet() -> None:
    """Recount the fleet rollup (batteries by registration year, chemistry and stage, read by the
    dashboard and the forecast) from the batteries table, in one transaction; for when verify
    names a fleet_rollup row. Safe while the server runs: writers wait for it."""
    from batterytrace.store import fleet
    from batterytrace.store.db import make_engine, write_transaction
    from batterytrace.store.migrate import is_current

    engine = make_engine(settings().database_url)
    try:
        if not is_current(engine):
            raise fail(ValueError("the database schema is not current; run batterytrace db upgrade first"))
        with write_transaction(engine) as conn:
            keys = fleet.rebuild(conn)
    finally:
        engine.dispose()
    out.print(f"fleet rollup recounted from the batteries table: {keys:,} keys")


# --- bootstrap and serve -------------------------------------------------------------------------


@app.command()
def bootstrap(
    id: Annotated[str, typer.Option("--id", help="the regulator's unified social credit code")],
    name: Annotated[str, typer.Option("--name", help="the regulator's name")],
    region: Annotated[str, typer.Option(help="6-digit region code")] = "110000",
) -> None:
    """Create the first regulator on an empty registry; its API key is the last line printed."""

    try:
        registry = registry_for_command()
        record, key = registry.bootstrap(id, name, region)
    except DomainError as exc:
        raise fail(exc) from None
    out.print(
        f"regulator {record['id']} ({record['name']}) created; its API key (shown once):", highlight=False
    )
    print(key)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    demo: Annotated[bool, typer.Option(help="load the demo data set into an empty registry")] = True,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
) -> None:
    """Run the registry's web server (API, passport pages, dashboard)."""
    import uvicorn

    from batterytrace.logging_json import configure_logging, logging_config
    from batterytrace.services.factory import build_registry
    from batterytrace.services.log import SigningKeyError

    cfg = settings()
    configure_logging(cfg.log_level)
    try:
        registry = build_registry(cfg)
    except SigningKeyError as exc:
        raise fail(exc) from None
    from batterytrace.store.repo import count_enterprises

    with registry.engine.connect() as conn:
        empty = count_enterprises(conn) == 0
    if demo and empty:
        from batterytrace.simulate.demo import load_demo

        out.print("empty registry: loading the demo data set …")
        result = load_demo(registry)
        table = Table(title=f"Demo enterprises ({result.batteries} batteries, {result.events} events)")
        table.add_column("name")
        table.add_column("id (USCC)")
        table.add_column("roles")
        table.add_column("API key")
        for name, (uid, roles, key) in result.keys.items():
            table.add_row(name, uid, roles, key)
        out.print(table)
        base = f"http://{host}:{port}"
        out.print(f"Open {base}/docs for the API, {base}/dashboard for the dashboard,")
        for story, code in result.samples.items():
            out.print(f"  passport ({story}): {base}/b/{code}", highlight=False)
    from batterytrace.api.app import create_app

    logs = {"log_config": logging_config(cfg.log_level), "access_log": False}
    if workers > 1:
        uvicorn.run("batterytrace.api.asgi:app", host=host, port=port, workers=workers, **logs)
    else:
        uvicorn.run(create_app(registry), host=host, port=port, **logs)


# --- the log ---------------------------------------------------------------------------------------


@log_app.command("checkpoint")
def log_checkpoint() -> None:
    """Print the latest signed checkpoint (a C2SP signed note)."""
    from batterytrace.services.log import latest_checkpoint

    note = latest_checkpoint(registry_for_command().engine)
    if note is None:
        raise fail(ValueError("the log is empty"))
    sys.stdout.write(note)


@log_app.command("key")
def log_key() -> None:
    """Print the log's verifier key (note format)."""

    print(registry_for_command().log.signer.verifier_key)


@log_app.command("keygen")
def log_keygen(
    out_path: Annotated[Path, typer.Option("--out", help="file to create (readable by its owner only)")],
    name: Annotated[str | None, typer.Option(help="key name; default: the log origin")] = None,
) -> None:
    """Create a new Ed25519 signing key file for the log."""
    from batterytrace.ledger.checkpoint import Signer
    from batterytrace.services.log import write_new_key

    if out_path.exists():
        raise fail(ValueError(f"{out_path} exists; refusing to overwrite a signing key"))
    key = write_new_key(out_path, name or settings().log_origin)
    print(Signer.from_key(key).verifier_key)


@app.command()
def verify(
    show: Annotated[int, typer.Option(help="findings to print at most")] = 200,
) -> None:
    """Replay the database against the log and the signed checkpoints; name every row that was
    altered, deleted or inserted. Exit status 0 only when everything checks."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from batterytrace.services.verify import verify as run_verify

    registry = registry_for_command(migrate=False)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True) as bar:
        task = bar.add_task("verifying …")
        report = run_verify(
            registry.engine,
            registry.log,
            progress=lambda stage, n: bar.update(task, description=f"{stage}: {n:,}"),
        )
    for finding in report.findings[:show]:
        out.print(str(finding), highlight=False)
    if len(report.findings) > show:
        out.print(f"… and {len(report.findings) - show} more findings")
    summary = (
        f"log entries {report.log_size:,}, checkpoints {report.checkpoints:,}, rows {report.rows_checked:,}, "
        f"batteries {report.batteries_checked:,}: "
    )
    if report.ok:
        out.print(summary + "[green]everything checks[/green]")
        raise typer.Exit(0)
    out.print(summary + f"[red]{len(report.findings)} finding(s)[/red]")
    raise typer.Exit(1)


@log_app.command("inclusion")
def log_inclusion(
    index: Annotated[int, typer.Argument(help="log index of the entry")],
    size: Annotated[int | None, typer.Option(help="tree size (default: the current log)")] = None,
    url: Annotated[
        str | None, typer.Option(help="ask a registry at this base URL instead of the local database")
    ] = None,
) -> None:
    """Prove that entry INDEX is in the log: print the proof and check it."""
    from batterytrace.ledger.merkle import ProofError, leaf_hash, verify_inclusion

    proof = _fetch_inclusion(index, size, url)
    try:
        text = proof.pop("entry_text")
        if leaf_hash(text.encode("utf-8")) != proof["leaf_hash"]:
            raise ProofError("the entry does not hash to the proven leaf")
        verify_inclusion(proof["leaf_hash"], index, proof["size"], proof["hashes"], proof["root"])
    except ProofError as exc:
        raise fail(exc) from None
    import base64

    out.print_json(
        json.dumps(
            {
                "index": index,
                "size": proof["size"],
                "root": base64.b64encode(proof["root"]).decode(),
                "hashes": [base64.b64encode(h).decode() for h in proof["hashes"]],
                "entry": json.loads(text),
                "verified": True,
            }
        )
    )


def _fetch_inclusion(index: int, size: int | None, url: str | None) -> dict[str, object]:
    import base64

    if url:
        import httpx

        base = url.rstrip("/")
        params = {"index": index} | ({"size": size} if size else {})
        p = httpx.get(f"{base}/api/v1/log/proof/inclusion", params=params, timeout=30).json()
        e = httpx.get(f"{base}/api/v1/log/entries/{index}", timeout=30).json()
        from batterytrace.ledger.entries import canonical_entry

        return {
            "size": p["size"],
            "root": base64.b64decode(p["root"]),
            "leaf_hash": base64.b64decode(p["leaf_hash"]),
            "hashes": [base64.b64decode(h) for h in p["hashes"]],
            "entry_text": canonical_entry(e["entry"]).decode("utf-8"),
        }
    from batterytrace.services import log as logsvc

    engine = registry_for_command(migrate=False).engine
    try:
        p = logsvc.prove_inclusion(engine, index, size)
        text = logsvc.entry_text(engine, index)
    except DomainError as exc:
        raise fail(exc) from None
    return {
        "size": p["size"],
        "root": p["root"],
        "leaf_hash": p["leaf_hash"],
        "hashes": p["hashes"],
        "entry_text": text,
    }


@log_app.command("consistency")
def log_consistency(
    checkpoint: Annotated[Path, typer.Option(help="a saved signed checkpoint (the old one)")],
    key: Annotated[
        list[str] | None, typer.Option(help="verifier key(s); default: the registry's keys")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="ask a registry at this base URL instead of the local database")
    ] = None,
) -> None:
    """Prove that today's log extends a saved checkpoint: nothing in it was changed or removed."""
    import base64

    from batterytrace.ledger.checkpoint import NoteError, Verifier, open_checkpoint
    from batterytrace.ledger.merkle import ProofError, verify_consistency

    note = checkpoint.read_text(encoding="utf-8")
    if url:
        import httpx

        base = url.rstrip("/")
        verifiers = [
            Verifier.from_key(k)
            for k in (key or [httpx.get(f"{base}/api/v1/log/key", timeout=30).text.strip()])
        ]
        current_note = httpx.get(f"{base}/api/v1/log/checkpoint", timeout=30).text
    else:
        from batterytrace.services.log import latest_checkpoint

        registry = registry_for_command(migrate=False)
        with registry.engine.connect() as conn:
            verifiers = [Verifier.from_key(k) for k in key] if key else registry.log.verifiers(conn)
        current_note = latest_checkpoint(registry.engine) or ""
    try:
        old = open_checkpoint(note, verifiers)
        new = open_checkpoint(current_note, verifiers)
    except NoteError as exc:
        raise fail(exc) from None
    if old.size == 0 or old.size > new.size:
        raise fail(ValueError(f"the saved checkpoint is for {old.size} entries; today's log has {new.size}"))
    if url:
        import httpx

        p = httpx.get(
            f"{base}/api/v1/log/proof/consistency", params={"first": old.size, "second": new.size}, timeout=30
        ).json()
        hashes = [base64.b64decode(h) for h in p["hashes"]]
    else:
        from batterytrace.services import log as logsvc

        hashes = logsvc.prove_consistency(registry.engine, old.size, new.size)["hashes"]
    try:
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, hashes)
    except ProofError as exc:
        err.print(
            f"[red]NOT CONSISTENT[/red]: the log of {new.size} entries does not extend the saved checkpoint of "
            f"{old.size}: {exc}"
        )
        raise typer.Exit(1) from None
    out.print(
        f"consistent: the log of {new.size:,} entries extends the saved checkpoint of {old.size:,} entries "
        f"({len(hashes)} proof hashes checked)"
    )


@log_app.command("rotate-key")
def log_rotate_key(
    out_path: Annotated[Path, typer.Option("--out", help="file for the new signing key")],
) -> None:
    """Make a new signing key and sign the current tree with it; the old key stays listed so old
    checkpoints still verify. Then point BATTERYTRACE_SIGNING_KEY at the new file."""
    from batterytrace.services.log import rotate_key

    registry = registry_for_command(migrate=False)
    if out_path.exists():
        raise fail(ValueError(f"{out_path} exists; refusing to overwrite a signing key"))
    verifier = rotate_key(registry, out_path)
    out.print(f"new signing key written to {out_path}; verifier key:")
    print(verifier)


#: Modules that add commands: each has ``register(app: typer.Typer) -> None``.
CLI_MODULES: list[str] = [
    "batterytrace.cli.ops",
    "batterytrace.cli.monitoring",
    "batterytrace.cli.interop",
    "batterytrace.cli.simulate",
    "batterytrace.cli.backup",
]


def _register_modules() -> None:
    import importlib

    for name in CLI_MODULES:
        importlib.import_module(name).register(app)


_register_modules()


def main() -> None:  # pragma: no cover - console entry point
    app()
