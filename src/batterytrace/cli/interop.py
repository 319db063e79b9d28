"""``batterytrace import`` and ``batterytrace export``: JSON Lines, CSV and EPCIS files, streamed
against the local database."""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from batterytrace.domain.errors import DomainError

out = Console()
err = Console(stderr=True)

EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

KeyOption = Annotated[
    str | None,
    typer.Option("--key", envvar="BATTERYTRACE_API_KEY", help="API key of the enterprise doing this"),
]


class RateColumn(ProgressColumn):
    """Events per second so far."""

    def render(self, task: Task) -> Text:
        events = int(task.fields.get("events", 0))
        elapsed = task.elapsed or 0.0
        rate = events / elapsed if elapsed > 0 else 0.0
        return Text(f"{events:,} events  {rate:,.0f}/s", style="progress.data.speed")


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    err.print(f"[red]error[/red]: {message}", highlight=False)
    return typer.Exit(code)


def _caller(registry: Any, key: str | None) -> Any:
    if not key:
        raise _fail("an API key is needed: pass --key or set BATTERYTRACE_API_KEY")
    try:
        return registry.authenticate(key)
    except DomainError as exc:
        raise _fail(f"{exc.code}: {exc.message}") from None


@contextmanager
def _metrics_server(registry: Any, address: str, port: int | None) -> Iterator[None]:
    """Serve ``/metrics`` on ``address:port`` while the block runs (nothing when ``port`` is None),
    with the registry's events counted."""
    if port is None:
        yield
        return
    from prometheus_client import start_http_server

    from batterytrace.services import metrics

    metrics.instrument(registry)
    try:
        server, thread = start_http_server(port, addr=address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise _fail(
                f"--metrics-port {port}: port {port} on {address} is already in use; choose another"
            ) from None
        raise _fail(f"cannot serve metrics on {address} port {port}: {exc.strerror or exc}") from None
    host = f"[{address}]" if ":" in address else address
    err.print(f"metrics: http://{host}:{server.server_port}/metrics", highlight=False)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _registry() -> Any:
    from batterytrace.cli.main import settings
    from batterytrace.services.factory import build_registry

    return build_registry(settings())


def import_command(
    file: Annotated[
        Path, typer.Argument(help="JSON Lines (.jsonl), CSV (.csv) or EPCIS document (.json, .jsonld)")
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, csv or epcis; default: from the file name")
    ] = "auto",
    key: KeyOption = None,
    rejects: Annotated[
        Path | None, typer.Option(help="reject file (JSON Lines); default: FILE.rejects.jsonl")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="events per transaction")] = 2000,
    resume: Annotated[
        bool, typer.Option(help="continue an interrupted import from its saved position")
    ] = True,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="serve Prometheus metrics on this port while importing (0: any free port)"
        ),
    ] = None,
    metrics_address: Annotated[
        str, typer.Option(help="address to serve the metrics on (with --metrics-port)")
    ] = "127.0.0.1",
) -> None:
    """Import events from a file, streaming: a progress bar with rate and time left, every refused
    record in the reject file with its line and reason, a summary at the end. With --metrics-port,
    the import's progress and the events it records are served as Prometheus metrics at /metrics
    while it runs. Exit status 0 when everything was recorded (or was already), 1 when records were
    rejected, 2 for a file, key or metrics port that cannot be used, 130 when interrupted (run the
    same command again to continue; nothing is recorded twice)."""
    from batterytrace.interop.bulk import FORMATS, detect_format
    from batterytrace.services.interop import Interop, import_file

    if not file.is_file():
        raise _fail(f"{file} is not a file")
    chosen = detect_format(file.name) if fmt == "auto" else fmt
    if chosen not in FORMATS:
        raise _fail(
            f"cannot tell the format of {file.name}; pass --format jsonl, csv or epcis"
            if fmt == "auto"
            else f"--format must be one of {', '.join(FORMATS)}"
        )
    registry = _registry()
    try:
        caller = _caller(registry, key)
        interop = Interop.from_environment(registry)
        size = file.stat().st_size
        started = time.monotonic()
        bar = (
            nullcontext()
            if quiet
            else Progress(
                TextColumn("[bold]importing[/bold] {task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                RateColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err,
            )
        )
        with _metrics_server(registry, metrics_address, metrics_port), bar as progress:
            task = progress.add_task(file.name, total=size or 1, events=0) if progress else None

            def on_progress(position: int, counts: Any) -> None:
                if progress is not None and task is not None:
                    progress.update(task, completed=position, events=counts.read)

            try:
                summary = import_file(
                    interop,
                    caller,
                    file,
                    chosen,
                    rejects_path=rejects,
                    batch_size=batch_size,
                    resume=resume,
                    on_progress=on_progress,
                )
            except KeyboardInterrupt:
                err.print(
                    "[yellow]interrupted[/yellow]: the batches committed so far are recorded; run the same "
                    "command again to continue (nothing is recorded twice)"
                )
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except DomainError as exc:
                raise _fail(f"{exc.code}: {exc.message}") from None
            if progress is not None and task is not None:
                progress.update(task, completed=size or 1, events=summary.counts.read)
        elapsed = time.monotonic() - started
    finally:
        registry.engine.dispose()
    _print_summary(summary, elapsed)
    raise typer.Exit(0 if summary.clean else EXIT_REJECTED)


def _print_summary(summary: Any, elapsed: float) -> None:
    c = summary.counts
    table = Table(title=f"import of {summary.path} ({summary.format})", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    if summary.resumed_at_line is not None:
        table.add_row("resumed after line", f"{summary.resumed_at_line:,}")
    table.add_row("records read", f"{c.read:,}")
    table.add_row("recorded", f"{c.accepted:,}")
    table.add_row("already recorded", f"{c.replayed:,}")
    table.add_row("rejected", f"{c.rejected:,}")
    table.add_row("time", f"{elapsed:,.1f} s")
    table.add_row("rate", f"{(c.read / elapsed if elapsed > 0 else 0):,.0f} records/s")
    out.print(table)
    if summary.fatal:
        out.print(f"[red]stopped[/red]: {summary.fatal}", highlight=False)
    if summary.envelope_errors:
        out.print(
            f"[red]the document's envelope breaks the EPCIS schema[/red] ({len(summary.envelope_errors)})"
        )
    if not summary.clean:
        out.print(f"rejected records, with line numbers and reasons: {summary.rejects_path}", highlight=False)


def export_command(
    battery: Annotated[str | None, typer.Option(help="a battery code: its whole life")] = None,
    enterprise: Annotated[str | None, typer.Option(help="events recorded by this enterprise (USCC)")] = None,
    since: Annotated[str | None, typer.Option("--from", help="event time at or after (RFC 3339)")] = None,
    until: Annotated[str | None, typer.Option("--to", help="event time before (RFC 3339)")] = None,
    biz_step: Annotated[
        str | None, typer.Option("--bizstep", help="an EPCIS business step or registry event type")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, csv or epcis; default: from --output, else jsonl")
    ] = "auto",
    output: Annotated[Path | None, typer.Option(help="file to write; default: standard output")] = None,
    key: KeyOption = None,
) -> None:
    """Export events by battery, enterprise, business step or time range, as JSON Lines, CSV or an
    EPCIS 2.0 document, streaming. Fields are cut to the access tier of the key's enterprise (a
    regulator sees everything; another enterprise its own events, or one battery's)."""
    from batterytrace.interop import bulk, epcis
    from batterytrace.services.interop import EventQuery, Interop, export_events, parse_query_time, step_types

    chosen = fmt
    if fmt == "auto":
        chosen = (bulk.detect_format(output.name) if output else None) or "jsonl"
    if chosen not in bulk.FORMATS:
        raise _fail(f"--format must be one of {', '.join(bulk.FORMATS)}")
    registry = _registry()
    try:
        caller = _caller(registry, key)
        interop = Interop.from_environment(registry)
        try:
            query = EventQuery(
                battery=battery,
                types=step_types(biz_step),
                since=parse_query_time(since, "from"),
                until=parse_query_time(until, "to"),
                enterprise=enterprise,
            )
            events = export_events(interop, caller, query)
            sink: Any = output.open("w", encoding="utf-8", newline="") if output else nullcontext(sys.stdout)
            with sink as fh:
                n = _write(fh, chosen, events, registry, epcis, bulk)
        except DomainError as exc:
            raise _fail(f"{exc.code}: {exc.message}") from None
    finally:
        registry.engine.dispose()
    if output:
        err.print(f"{n:,} events written to {output} ({chosen})", highlight=False)


def _write(fh: TextIO, fmt: str, events: Any, registry: Any, epcis: Any, bulk: Any) -> int:
    if fmt == "epcis":
        return int(
            epcis.write_document(fh, (epcis.to_epcis(v, **c) for v, c in events), created=registry.clock())
        )
    n = 0
    if fmt == "csv":
        writer = bulk.write_csv_header(fh)
        for view, _ in events:
            writer.writerow(bulk.csv_row(view))
            n += 1
        return n
    for view, _ in events:
        fh.write(bulk.jsonl_line(view) + "\n")
        n += 1
    return n


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
    app.command("export")(export_command)
