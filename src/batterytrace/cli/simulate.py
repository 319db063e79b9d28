"""``batterytrace simulate``: a national data set, written as an import file or recorded into the
configured database through the registry's rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

out = Console()
err = Console(stderr=True)


def _until(value: str | None) -> datetime:
    """The simulation's end: a date (its end of day, China Standard Time, but never after now) or an
    RFC 3339 date-time; default now."""
    now = datetime.now(UTC).replace(microsecond=0)
    if value is None:
        return now
    try:
        if len(value) == 10:
            from batterytrace.simulate.national import CST

            day = date.fromisoformat(value)
            return min(now, datetime.combine(day, time(23, 59, 59), CST).astimezone(UTC))
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("use a date (2026-11-20) or a date-time with its offset") from None
    if moment.tzinfo is None:
        raise typer.BadParameter("a date-time needs its UTC offset, e.g. 2026-11-20T12:00:00+08:00")
    return moment


def simulate_command(
    batteries: Annotated[
        int, typer.Option(min=0, help="vehicle packs (modules, cells, products on top)")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="the same seed gives the same data set")] = 2026,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="write a JSON Lines import file (one event a line)")
    ] = None,
    load: Annotated[bool, typer.Option("--load", help="record into the configured (empty) database")] = False,
    setup: Annotated[
        bool,
        typer.Option(
            "--setup",
            help="only register the enterprises in the configured (empty) database and print the "
            "regulator's API key (to import a file written with --out)",
        ),
    ] = False,
    leak_share: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="share of end-of-life packs that leak to unlicensed channels"),
    ] = 0.05,
    cells: Annotated[bool, typer.Option("--cells", help="register every pack's cells too")] = False,
    until: Annotated[
        str | None, typer.Option(help="last day (or RFC 3339 moment) of the data set; default: now")
    ] = None,
    window_days: Annotated[
        float, typer.Option(min=0.5, max=60.0, help="days of events recorded as one step")
    ] = 14.0,
    below_threshold_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of recyclers below the recovery thresholds")
    ] = 0.25,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Make a national data set: makers, automakers, service outlets, dismantlers, repurposers and
    recyclers across the provinces; packs sold year by year as the public figures grow, with
    modules (and cells with --cells), maintenance, repairs, retirements, second life, recycling,
    and leaks to unlicensed channels so that alerts fire. Exactly one of --out, --load, --setup."""
    from batterytrace.simulate.national import SimConfig

    if sum((out_file is not None, load, setup)) != 1:
        err.print("[red]error[/red]: choose exactly one of --out FILE, --load and --setup")
        raise typer.Exit(2)
    config = SimConfig(
        batteries=batteries,
        seed=seed,
        end=_until(until),
        leak_share=leak_share,
        cells=cells,
        window_days=window_days,
        below_threshold_share=below_threshold_share,
    )
    if out_file is not None:
        _write(config, out_file, quiet)
    elif setup:
        _setup(config)
    else:
        _load(config, quiet)


def _bar(quiet: bool) -> Any:
    from contextlib import nullcontext

    if quiet:
        return nullcontext(None)
    return Progress(
        TextColumn("[bold]{task.description}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _progress(bar: Any) -> Any:
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if bar is None:
            return
        if phase not in tasks:
            label = {"generating": "packs", "recording": "events recorded", "writing": "events written"}
            tasks[phase] = bar.add_task(f"{phase} ({label.get(phase, '')})", total=max(total, 1))
        bar.update(tasks[phase], completed=done, total=max(total, 1))

    return update


def _write(config: Any, path: Path, quiet: bool) -> None:
    from batterytrace.simulate.national import write_jsonl

    with _bar(quiet) as bar:
        result = write_jsonl(config, path, progress=_progress(bar), workdir=path.parent)
    table = Table(title=f"simulated data set → {path}", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("vehicle packs", f"{result.packs:,}")
    table.add_row("battery codes", f"{result.batteries:,}")
    table.add_row("events (lines)", f"{result.events:,}")
    table.add_row("refused on purpose (offered to unlicensed parties)", f"{result.refused:,}")
    table.add_row("time", f"{result.seconds:,.1f} s")
    out.print(table)
    share = (
        ""
        if config.below_threshold_share == 0.25
        else f" --below-threshold-share {config.below_threshold_share}"
    )
    out.print(
        "To import it: register the same enterprises, then import with the regulator's key:\n"
        f"  batterytrace simulate --batteries {config.batteries} --seed {config.seed}{share} --setup\n"
        f"  batterytrace import {path} --key <the key printed last>",
        highlight=False,
    )


def _setup(config: Any) -> None:
    from batterytrace.cli.main import registry_for_command
    from batterytrace.simulate.national import NationalSimulation, setup

    registry = registry_for_command()
    sim = NationalSimulation(config)
    try:
        keys = setup(registry, sim)
    except ValueError as exc:
        err.print(f"[red]error[/red]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    except Exception as exc:
        from batterytrace.domain.errors import DomainError

        if isinstance(exc, DomainError):
            err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
            raise typer.Exit(1) from None
        raise
    out.print(f"{len(sim.cast.parties):,} enterprises registered; the regulator's API key (shown once):")
    print(keys["regulator"][2])


def _load(config: Any, quiet: bool) -> None:
    from batterytrace.cli.main import registry_for_command
    from batterytrace.simulate.national import load, open_alerts_by_rule

    registry = registry_for_command()
    try:
        with _bar(quiet) as bar:
            result = load(registry, config, progress=_progress(bar))
    except ValueError as exc:
        err.print(f"[red]error[/red]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    table = Table(title="simulated data set recorded", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("vehicle packs", f"{result.packs:,}")
    table.add_row("battery codes registered", f"{result.batteries:,}")
    table.add_row("events recorded", f"{result.events:,}")
    table.add_row("refused on purpose (offered to unlicensed parties)", f"{result.refused_leaks:,}")
    table.add_row("refused otherwise", f"{result.unexpected_count:,}")
    table.add_row("time", f"{result.seconds:,.1f} s")
    table.add_row("rate", f"{result.events / max(result.seconds, 1e-9):,.0f} events/s")
    for rule, n in sorted(open_alerts_by_rule(registry.engine).items()):
        table.add_row(f"open alerts: {rule}", f"{n:,}")
    out.print(table)
    keys = Table(title="API keys of the named enterprises")
    keys.add_column("name")
    keys.add_column("id (USCC)")
    keys.add_column("roles")
    keys.add_column("API key")
    for name, (uid, roles, key) in result.keys.items():
        keys.add_row(name, uid, roles, key)
    out.print(keys)
    for story, code in result.samples.items():
        out.print(f"  sample ({story}): {code}", highlight=False)
    for item in result.unexpected[:10]:
        err.print(f"[red]refused[/red] {item['type']} {item['battery']}: {item['code']} {item['message']}")
    raise typer.Exit(1 if result.unexpected_count else 0)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
