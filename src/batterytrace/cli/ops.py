"""``batterytrace push``: send a file of events to a registry through the client and its outbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from batterytrace.client import Client, FlushReport, ProblemError

out = Console()
err = Console(stderr=True)

#: Namespace of the ids given to events of a pushed file that carry none: the id is derived from the
#: event's content, so pushing the same file twice never records an event twice.
PUSH_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "batterytrace:push")
EXIT_REJECTED = 1
EXIT_BAD_FILE = 2
EXIT_WAITING = 3
SHOW_REJECTED = 50


def content_id(event: dict[str, Any]) -> str:
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(uuid.uuid5(PUSH_NAMESPACE, canonical))


def read_events(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Events of a JSON Lines file with their line numbers; blank lines are skipped."""
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}, line {n}: not JSON ({exc})") from None
            if not isinstance(event, dict):
                raise ValueError(f"{path}, line {n}: an event is a JSON object")
            if "id" in event and (not isinstance(event["id"], str) or not event["id"]):
                raise ValueError(f"{path}, line {n}: 'id' must be a non-empty string")
            yield n, event


def push(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="JSON Lines file, one event a line; without it, deliver what waits in the outbox",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    url: Annotated[str, typer.Option(envvar="BATTERYTRACE_URL", help="the registry's base URL")] = (
        "http://127.0.0.1:8000"
    ),
    key: Annotated[
        str,
        typer.Option(
            envvar="BATTERYTRACE_API_KEY",
            help="the enterprise's API key (prefer the environment variable: options show in ps)",
            show_default=False,
        ),
    ] = "",
    outbox: Annotated[
        Path,
        typer.Option(envvar="BATTERYTRACE_OUTBOX", help="outbox directory: events wait here until answered"),
    ] = Path(".batterytrace-outbox"),
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="events per request")] = 500,
    retries: Annotated[int, typer.Option(min=0, help="retries of a request that got no answer")] = 5,
    backoff: Annotated[float, typer.Option(min=0, help="seconds before the first retry (doubling)")] = 0.5,
) -> None:
    """Send events to a registry: each is first kept in the outbox (on disk), then sent in batches,
    retried with the same ids, and removed once the registry has answered for it. Events without
    an id get one derived from their content, so pushing a file again records nothing twice.

    Exit status: 0 all accepted; 1 some refused (listed, and kept in OUTBOX/rejected.jsonl);
    2 the file is not valid; 3 the registry is unreachable: the events wait in the outbox for the
    next 'batterytrace push'."""
    if not key:
        err.print("[red]error[/red]: no API key: set BATTERYTRACE_API_KEY (or pass --key)")
        raise typer.Exit(EXIT_BAD_FILE)
    client = Client(url, key, outbox_dir=outbox, batch_size=batch_size, retries=retries, backoff=backoff)
    assert client.outbox is not None
    try:
        if file is not None:
            try:
                for _ in read_events(file):  # check the whole file before queueing any of it
                    pass
                chunk: list[dict[str, Any]] = []
                for _, event in read_events(file):
                    chunk.append(event if "id" in event else {**event, "id": content_id(event)})
                    if len(chunk) >= batch_size * 10:
                        client.outbox.add(chunk)
                        chunk = []
                client.outbox.add(chunk)
            except (OSError, ValueError) as exc:
                err.print(f"[red]error[/red]: {exc}", highlight=False)
                raise typer.Exit(EXIT_BAD_FILE) from None
        report = _deliver(client)
    finally:
        client.close()
    for outcome in report.rejected[:SHOW_REJECTED]:
        problem = outcome.problem
        assert problem is not None
        where = f" ({problem.field})" if problem.field else ""
        out.print(
            f"[red]✗[/red] {outcome.id}: [bold]{problem.code}[/bold]{where} {problem.detail}", highlight=False
        )
    if len(report.rejected) > SHOW_REJECTED:
        out.print(f"… and {len(report.rejected) - SHOW_REJECTED} more, all in {client.outbox.rejected_path}")
    out.print(
        f"accepted {report.accepted:,}, refused {len(report.rejected):,}, waiting in the outbox {report.pending:,}",
        highlight=False,
    )
    if isinstance(report.error, ProblemError):
        err.print(
            f"[red]error[/red] [bold]{report.error.code}[/bold]: {report.error.detail}", highlight=False
        )
        raise typer.Exit(EXIT_REJECTED)
    if report.pending:
        err.print(
            f"[yellow]the registry is unreachable[/yellow] ({report.error}); {report.pending:,} events wait in "
            f"{outbox}: run 'batterytrace push' again later",
            highlight=False,
        )
        raise typer.Exit(EXIT_WAITING)
    raise typer.Exit(EXIT_REJECTED if report.rejected else 0)


def _deliver(client: Client) -> FlushReport:
    assert client.outbox is not None
    total = client.outbox.count()
    with Progress(
        TextColumn("delivering"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("events", total=total)
        return client.flush(on_batch=lambda r: bar.update(task, completed=r.delivered))


def register(app: typer.Typer) -> None:
    app.command("push")(push)
