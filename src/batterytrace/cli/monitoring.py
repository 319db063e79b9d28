"""``batterytrace alerts`` and ``batterytrace report``: the regulator's view from the console.

The console works on the database directly (like ``verify``), so it sees every alert. Acting on
an alert names the regulator who acts (``--by``); the action goes into the log.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from batterytrace.domain.errors import DomainError

TABLE_ALERT_COLUMNS = ("id", "rule", "status", "subject", "enterprise", "province", "since", "deadline")
ALERT_COLUMNS = (
    "id",
    "rule",
    "status",
    "battery",
    "vin",
    "enterprise",
    "province",
    "since",
    "deadline",
    "detail",
)


class Output(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[Output, typer.Option("--format", help="table, csv or json")]


def _main() -> Any:
    from batterytrace.cli import main

    return main


def _registry() -> Any:
    return _main().registry_for_command()


#: A report with more columns than this is shown as a table turned on its side (one column per row).
_WIDE = 12


def _print_rows(title: str, columns: list[str], rows: list[dict[str, Any]], fmt: Output, raw: Any) -> None:
    from batterytrace.services.reports import Report, cell_text

    out = _main().out
    if fmt == Output.json:
        print(json.dumps(raw, ensure_ascii=False, indent=2))
        return
    if fmt == Output.csv:
        print(Report(title, columns, rows).as_csv(), end="")
        return
    table = Table(title=title)
    if len(columns) > _WIDE and rows:
        table.add_column("", style="bold", no_wrap=True)
        for row in rows:
            table.add_column(cell_text(row.get(columns[0])), justify="right")
        for c in columns[1:]:
            table.add_row(c, *(cell_text(row.get(c)) for row in rows))
    else:
        for c in columns:
            table.add_column(c, overflow="fold")
        for row in rows:
            table.add_row(*(cell_text(row.get(c)) for c in columns))
    out.print(table)


def _alert_table_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts shortened for a table: the subject, dates as days (the detail is in csv and json)."""
    return [
        {
            **a,
            "subject": a["battery"] or a["vin"],
            "since": (a["since"] or "")[:10],
            "deadline": (a["deadline"] or "")[:10],
        }
        for a in items
    ]


def _regulator(registry: Any, enterprise_id: str) -> Any:
    from batterytrace.services.registry import Caller
    from batterytrace.store import repo

    with registry.engine.connect() as conn:
        ent = repo.load_enterprise(conn, enterprise_id)
    if ent is None or not ent.is_regulator:
        raise _main().fail(ValueError(f"{enterprise_id} is not a registered regulator"))
    return Caller(enterprise=ent, key_id="console")


def register(app: typer.Typer) -> None:
    alerts_app = typer.Typer(
        help="Alerts: list them, re-scan running deadlines, acknowledge or resolve one.",
        invoke_without_command=True,
    )
    report_app = typer.Typer(
        help="Reports: statistics, producer responsibility, recovery, retirement forecast.",
        no_args_is_help=True,
    )

    @alerts_app.callback()
    def alerts(
        ctx: typer.Context,
        rule: Annotated[str | None, typer.Option(help="an alert rule, e.g. collection_overdue")] = None,
        province: Annotated[str | None, typer.Option(help="2-digit province code")] = None,
        enterprise: Annotated[str | None, typer.Option(help="responsible party or counterparty")] = None,
        battery: Annotated[str | None, typer.Option(help="battery code")] = None,
        status: Annotated[str, typer.Option(help="open, closed or all")] = "open",
        limit: Annotated[int, typer.Option(help="alerts to show at most")] = 100,
        refresh: Annotated[bool, typer.Option("--refresh", help="re-scan running deadlines first")] = False,
        fmt: FormatOption = Output.table,
    ) -> None:
        """List alerts, newest first (open ones unless --status says otherwise)."""
        if ctx.invoked_subcommand is not None:
            return
        from batterytrace.services.monitoring import monitoring_for

        registry = _registry()
        try:
            page = monitoring_for(registry).list_alerts(
                None,
                operator=True,
                rule=rule,
                province=province,
                enterprise=enterprise,
                battery=battery,
                status=status,
                limit=limit,
                refresh=refresh,
            )
        except DomainError as exc:
            raise _main().fail(exc) from None
        title = f"Alerts ({page['total']} {status})"
        if fmt == Output.table:
            _print_rows(title, list(TABLE_ALERT_COLUMNS), _alert_table_rows(page["items"]), fmt, page)
        else:
            _print_rows(title, list(ALERT_COLUMNS), page["items"], fmt, page)

    @alerts_app.command("rescan")
    def alerts_rescan() -> None:
        """Raise the alerts of every running deadline that has passed."""
        from batterytrace.services.monitoring import monitoring_for

        result = monitoring_for(_registry()).rescan()
        _main().out.print(
            f"{result['overdue']} deadline(s) passed, {result['raised']} alert(s) raised; "
            f"{result['running_deadlines']} deadline(s) running",
            highlight=False,
        )

    @alerts_app.command("acknowledge")
    def alerts_acknowledge(
        alert_id: Annotated[int, typer.Argument(help="the alert's id")],
        by: Annotated[str, typer.Option("--by", help="the acting regulator's credit code")],
        reason: Annotated[str | None, typer.Option(help="a note")] = None,
    ) -> None:
        """Acknowledge an alert (kept in the log)."""
        from batterytrace.services.monitoring import monitoring_for

        registry = _registry()
        try:
            alert = monitoring_for(registry).acknowledge(_regulator(registry, by), alert_id, reason)
        except DomainError as exc:
            raise _main().fail(exc) from None
        _main().out.print(f"alert {alert['id']} acknowledged (log index {alert['log_index']})")

    @alerts_app.command("resolve")
    def alerts_resolve(
        alert_id: Annotated[int, typer.Argument(help="the alert's id")],
        by: Annotated[str, typer.Option("--by", help="the acting regulator's credit code")],
        reason: Annotated[str, typer.Option(help="why the alert is resolved")],
    ) -> None:
        """Resolve an alert with a reason (kept in the log)."""
        from batterytrace.services.monitoring import monitoring_for

        registry = _registry()
        try:
            alert = monitoring_for(registry).resolve(_regulator(registry, by), alert_id, reason)
        except DomainError as exc:
            raise _main().fail(exc) from None
        _main().out.print(f"alert {alert['id']} resolved (log index {alert['log_index']})")

    def show(report: Any, fmt: Output) -> None:
        _print_rows(report.name, report.columns, report.rows, fmt, report.as_json())

    @report_app.command("statistics")
    def report_statistics(
        year: Annotated[
            int | None, typer.Option(help="one year (with the change on the year before)")
        ] = None,
        province: Annotated[str | None, typer.Option(help="2-digit province code")] = None,
        chemistry: Annotated[str | None, typer.Option(help="lfp, ternary, ...")] = None,
        producer: Annotated[str | None, typer.Option(help="producer's credit code")] = None,
        level: Annotated[str, typer.Option(help="pack, module, cell or all")] = "pack",
        group_by: Annotated[
            str | None,
            typer.Option("--group-by", help="comma-separated: province, chemistry, producer, level"),
        ] = None,
        fmt: FormatOption = Output.table,
    ) -> None:
        """Registered, installed, retired, collected, repurposed, dismantled, recycled: counts and tonnes."""
        from batterytrace.services import reports

        groups = [g.strip() for g in (group_by or "").split(",") if g.strip()]
        try:
            report = reports.statistics(
                _registry().engine,
                year=year,
                province=province,
                chemistry=chemistry,
                producer=producer,
                level=level,
                group_by=groups,
            )
        except DomainError as exc:
            raise _main().fail(exc) from None
        show(report, fmt)

    @report_app.command("producers")
    def report_producers(
        year: Annotated[int | None, typer.Option(help="year of retirement")] = None,
        enterprise: Annotated[str | None, typer.Option(help="one enterprise")] = None,
        responsibility: Annotated[str | None, typer.Option(help="producer or automaker")] = None,
        fmt: FormatOption = Output.table,
    ) -> None:
        """Producer responsibility: retired batteries collected in time, outstanding, collection points."""
        from batterytrace.services import reports

        registry = _registry()
        try:
            report = reports.producers(
                registry.engine,
                registry.clock(),
                year=year,
                enterprise=enterprise,
                responsibility=responsibility,
            )
        except DomainError as exc:
            raise _main().fail(exc) from None
        show(report, fmt)

    @report_app.command("recovery")
    def report_recovery(
        profile: Annotated[list[str] | None, typer.Option(help="policy profile(s); default: all")] = None,
        year: Annotated[int | None, typer.Option(help="one year")] = None,
        recycler: Annotated[str | None, typer.Option(help="one recycler")] = None,
        fmt: FormatOption = Output.table,
    ) -> None:
        """Metals recovered against contained, per recycler and nationally, against each profile."""
        from batterytrace.services import reports

        try:
            report = reports.recovery(_registry().engine, profiles=profile, year=year, recycler=recycler)
        except DomainError as exc:
            raise _main().fail(exc) from None
        show(report, fmt)

    @report_app.command("forecast")
    def report_forecast(
        profile: Annotated[str, typer.Option(help="policy profile")] = "CN-2026",
        until: Annotated[int, typer.Option(help="last year")] = 2035,
        sales: Annotated[
            Path | None,
            typer.Option(help="CSV of annual sales (year, vehicles or tonnes, ...) instead of the fleet"),
        ] = None,
        fmt: FormatOption = Output.table,
    ) -> None:
        """Retirements in tonnes a year, from the registered fleet or a CSV of annual sales."""
        from batterytrace.domain.policy import get_profile
        from batterytrace.services import forecast

        try:
            chosen = get_profile(profile)
            if sales is not None:
                from datetime import UTC, datetime

                text = sales.read_text(encoding="utf-8")
                report = forecast.from_sales(text, chosen, datetime.now(UTC), until)
            else:
                registry = _registry()
                report = forecast.from_fleet(registry.engine, chosen, registry.clock(), until)
        except (DomainError, OSError) as exc:
            raise _main().fail(exc) from None
        show(report, fmt)
        if fmt == Output.table:
            _main().err.print(f"inputs: {report.meta['inputs']['source']}", highlight=False)

    app.add_typer(alerts_app, name="alerts")
    app.add_typer(report_app, name="report")
