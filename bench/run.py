"""The registry's performance in one table, on SQLite and on PostgreSQL.

    python -m bench.run                                  # both databases, 1,000,000 events
    python -m bench.run --db sqlite --events 30000       # a quick look while developing
    python -m bench.run --events 10000000                # the 10 M run (hours on 2 cores)

A national history from the simulator (``batterytrace simulate``) is written once as an import
file of ``--events`` events. Then, for each database, in a fresh database:

1. the simulated enterprises are registered (not timed);
2. **bulk import**: ``batterytrace import`` code on that file (events/s, peak memory);
3. **raw-insert ceiling**: the rows the import stored in ``events``, inserted into the same table
   of a fresh database of the same kind with the driver alone (sqlite3 ``executemany`` /
   psycopg ``COPY``), in transactions of the same size;
4. **alert re-scan** at today's date; **history lookups** (p50, p99) and **inclusion proofs** of
   random entries; the **reports** and the **dashboard**;
5. **batch API**: ``batterytrace serve`` in its own process on loopback, driven with httpx from
   another process by live traffic (packs sold in the last 20 days), batches of 2,000 events;
6. **single-event API**: the next events of that traffic, one per request over ``--concurrency``
   connections, and the same requests against a bare endpoint of the same framework (FastAPI with
   the same request model, nothing else) started the same way: the ratio is the share of the
   framework's ceiling the registry keeps.

Every measurement runs in its own process; the table gives each one's peak memory (max RSS).
PostgreSQL is a throwaway server started here (as ``scripts/test`` does) unless
``BATTERYTRACE_BENCH_POSTGRES_URL`` names one. The other benchmarks in this folder
(``bench_import``, ``bench_reports``, ``bench_dashboard``) run after it with ``--others``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
console = Console(width=200)


# --- targets ------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: what, its target, and a value per database."""

    name: str
    unit: str
    target: str = ""
    values: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    #: (database) -> met? ; None when the row has no target for that database
    check: Any = None
    memory: dict[str, float | None] = field(default_factory=dict)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("events/s", "rows/s", "requests/s"):
        return f"{value:,.0f} {unit}"
    if unit == "ratio":
        return f"{value:.2f}"
    if unit == "ms":
        return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit == "s":
        return f"{value:,.1f} s"
    return f"{value:,.0f} {unit}"


# --- running stages in their own processes -----------------------------------------------------------------


#: The machine's 1-minute load average, sampled before and after each measurement: the cores are
#: shared, and the table says how busy they were.
LOADS: list[float] = []


def stage(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a child process and return its result."""
    cmd = [sys.executable, "-m", "bench.run", "--stage", name, "--params", json.dumps(params)]
    LOADS.append(os.getloadavg()[0])
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    LOADS.append(os.getloadavg()[0])
    if proc.returncode != 0:
        console.print(f"[red]stage {name} failed[/red] (exit {proc.returncode}); see the output above")
        return {"error": f"exit {proc.returncode}"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_stage_here(name: str, params: str) -> None:
    from bench.stages import STAGES

    where = os.environ.get("BATTERYTRACE_BENCH_PROFILE")
    values = json.loads(params)
    if where:  # a directory: each stage's cProfile statistics go there, for "where the time goes"
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(STAGES[name], values)
        url = str(values.get("url") or values.get("target") or "")
        kind = "postgresql" if url.startswith("postgresql") else "sqlite"
        Path(where).mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(Path(where) / f"{name}-{kind}.prof")
    else:
        result = STAGES[name](values)
    sys.stdout.write(json.dumps(result) + "\n")


class Server:
    """A web server in its own process on loopback; its peak memory is read before it stops."""

    def __init__(self, cmd: list[str], env: dict[str, str], port: int, log: Path) -> None:
        import httpx

        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = log.open("w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {' '.join(cmd)} exited early; see {log}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server {' '.join(cmd)} did not start; see {log}")
            time.sleep(0.2)

    def peak_mb(self) -> float | None:
        """The largest peak resident memory among the server's processes (its workers too)."""
        pids = [self.proc.pid]
        for children in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            pids += [int(x) for x in children.read_text().split()]
        peaks = []
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            peaks += [
                int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")
            ]
        return max(peaks) if peaks else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


# --- the data --------------------------------------------------------------------------------------------


def make_history(events: int, seed: int, end: datetime, workdir: Path) -> dict[str, Any]:
    """The import file: a prefix of ``events`` events of a national history sized to hold them."""
    from batterytrace.simulate.national import NationalSimulation, SimConfig, write_jsonl

    pilot = NationalSimulation(SimConfig(batteries=2_000, seed=seed, end=end))
    per_pack = sum(1 for _ in pilot.iter_events()) / 2_000
    packs = max(50, math.ceil(events / per_pack * 1.03) + 20)
    path = workdir / f"history-{events}.jsonl"
    console.print(f"[bold]simulating[/bold] {packs:,} vehicle packs for {events:,} events → {path}")
    started = time.perf_counter()
    result = write_jsonl(SimConfig(batteries=packs, seed=seed, end=end), path, workdir=workdir, limit=events)
    return {
        "file": str(path),
        "packs": packs,
        "events": result.events,
        "seconds": time.perf_counter() - started,
        "size_mb": path.stat().st_size / 1e6,
    }


def live_packs(api_events: int, requests: int) -> int:
    """Vehicle packs of live traffic (about 9 events each without a history) for the API runs."""
    return max(100, math.ceil((api_events + requests) / 7.5))


# --- one database ----------------------------------------------------------------------------------------


def run_database(
    kind: str, args: argparse.Namespace, history: dict[str, Any], admin: str | None, workdir: Path
) -> dict[str, Any]:
    from bench.postgres import create_database, drop_database, free_port

    out: dict[str, Any] = {}
    here = workdir / kind
    here.mkdir(exist_ok=True)
    made: list[str] = []

    def database(label: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{here / (label + '.sqlite')}"
        assert admin is not None
        url = create_database(admin, label)
        made.append(url)
        return url

    try:
        url = database("registry")
        base = {
            "url": url,
            "signing_key": str(here / "log.key"),
            "keys": str(here / "keys.json"),
            "packs": history["packs"],
            "seed": args.seed,
            "end": args.end.isoformat(),
            "now": args.now.isoformat(),
        }
        console.print(f"[bold]{kind}[/bold]: registering the enterprises")
        out["setup"] = stage("setup", base)
        console.print(f"[bold]{kind}[/bold]: bulk import of {history['events']:,} events")
        from batterytrace.simulate.national import SETUP_LEAD, NationalSimulation, SimConfig

        start = NationalSimulation(SimConfig(batteries=1, seed=args.seed, end=args.end)).start - SETUP_LEAD
        out["import"] = stage(
            "import",
            {
                **base,
                "file": history["file"],
                "rejects": str(here / "rejects.jsonl"),
                "start": start.isoformat(),
            },
        )
        console.print(f"[bold]{kind}[/bold]: raw-insert ceiling")
        raw_target = database("raw")
        out["raw"] = stage("raw", {"source": url, "target": raw_target})
        if kind != "sqlite" and admin is not None:
            drop_database(admin, raw_target)
            made.remove(raw_target)
        console.print(f"[bold]{kind}[/bold]: alert re-scan, lookups, proofs, reports, dashboard")
        out["rescan"] = stage("rescan", base)
        out["reads"] = stage("reads", {**base, "lookups": args.lookups})
        if args.api:
            out.update(run_api(kind, args, base, here, free_port))
    finally:
        if admin is not None:
            for leftover in made:
                drop_database(admin, leftover)
    return out


def run_api(
    kind: str, args: argparse.Namespace, base: dict[str, Any], here: Path, free_port: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    env = {
        **os.environ,
        "BATTERYTRACE_DATABASE_URL": base["url"],
        "BATTERYTRACE_SIGNING_KEY": base["signing_key"],
        "BATTERYTRACE_LOG_ORIGIN": "bench.batterytrace/log",
        "BATTERYTRACE_ENV": "development",
    }
    client = {
        **base,
        "live_packs": live_packs(args.api_events, args.requests),
        "live_end": (args.now - timedelta(minutes=1)).isoformat(),
        "batch_events": args.api_events,
        "requests": args.requests,
        "concurrency": args.concurrency,
    }
    for n, workers in enumerate(args.api_workers):
        suffix = "" if workers == 1 else f"_w{workers}"
        traffic = {**client, "series": "LMNPRSTU"[n % 8]}
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        port = free_port()
        serve = [
            str(Path(sys.executable).parent / "batterytrace"),
            "serve",
            "--no-demo",
            "--workers",
            str(workers),
        ]
        try:
            server = Server(
                [*serve, "--host", "127.0.0.1", "--port", str(port)], env, port, here / f"serve{suffix}.log"
            )
        except RuntimeError as exc:
            console.print(f"[red]{exc}[/red]")
            continue
        try:
            console.print(f"[bold]{kind}[/bold]: batch API ({label}), {args.api_events:,} events")
            out["batch_api" + suffix] = stage("client", {**traffic, "base": server.base, "mode": "batch"})
            console.print(f"[bold]{kind}[/bold]: single-event API ({label}), {args.requests:,} requests")
            out["single_api" + suffix] = stage("client", {**traffic, "base": server.base, "mode": "single"})
            out["server_peak_mb" + suffix] = server.peak_mb()
        finally:
            server.stop()
        port = free_port()
        bare_cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        bare_cmd += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        try:
            bare = Server(bare_cmd, env, port, here / f"bare{suffix}.log")
        except RuntimeError as exc:
            console.print(f"[red]{exc}[/red]")
            continue
        try:
            console.print(f"[bold]{kind}[/bold]: bare endpoint ({label}), {args.requests:,} requests")
            out["bare_api" + suffix] = stage("client", {**traffic, "base": bare.base, "mode": "single"})
            out["bare_peak_mb" + suffix] = bare.peak_mb()
        finally:
            bare.stop()
    return out


# --- the table -------------------------------------------------------------------------------------------


def rows_for(results: dict[str, dict[str, Any]], events: int) -> list[Row]:
    big = events >= 10_000_000
    scale = "" if big else " (target at 10 M events)"

    def get(kind: str, *path: str) -> float | None:
        value: Any = results.get(kind)
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(value) if isinstance(value, int | float) else None

    kinds = list(results)
    rows: list[Row] = []

    def row(
        name: str,
        unit: str,
        target: str,
        path: tuple[str, ...],
        check: Any = None,
        memory: tuple[str, ...] | None = None,
    ) -> Row:
        r = Row(name, unit, target, {k: get(k, *path) for k in kinds}, check=check)
        if memory is not None:
            r.memory = {k: get(k, *memory) for k in kinds}
        rows.append(r)
        return r

    def at_least(sqlite: float | None, postgresql: float | None) -> Any:
        def check(kind: str, value: float | None) -> bool | None:
            limit = sqlite if kind == "sqlite" else postgresql
            return None if value is None or limit is None else value >= limit

        return check

    row(
        "bulk import",
        "events/s",
        "≥ 30,000 (SQLite), ≥ 20,000 (PostgreSQL)",
        ("import", "rate"),
        at_least(30_000, 20_000),
        ("import", "peak_mb"),
    )
    row("raw insert of the same rows (ceiling)", "rows/s", "", ("raw", "rate"), memory=("raw", "peak_mb"))
    per_event = Row("database size per event imported", "bytes")
    for k in kinds:
        size, n = get(k, "import", "db_bytes"), get(k, "import", "accepted")
        per_event.values[k] = size / n if size and n else None
    rows.append(per_event)
    ratio = Row("bulk import ÷ ceiling", "ratio", "≥ 0.3 (SQLite)")
    for k in kinds:
        imp, raw = get(k, "import", "rate"), get(k, "raw", "rate")
        ratio.values[k] = imp / raw if imp and raw else None
    ratio.check = lambda kind, v: (v >= 0.3) if kind == "sqlite" and v is not None else None
    rows.append(ratio)
    memory = Row("bulk import peak memory", "MB", "< 300 MB" + scale)
    memory.values = {k: get(k, "import", "peak_mb") for k in kinds}
    memory.check = lambda kind, v: (v < 300) if v is not None else None
    rows.append(memory)
    row(
        "batch API",
        "events/s",
        "≥ 10,000",
        ("batch_api", "rate"),
        at_least(10_000, 10_000),
        ("server_peak_mb",),
    )
    row("single-event API", "requests/s", "", ("single_api", "rate"), memory=("server_peak_mb",))
    row("bare endpoint, same framework", "requests/s", "", ("bare_api", "rate"), memory=("bare_peak_mb",))
    single = Row("single-event API ÷ bare endpoint", "ratio", "≥ 0.3")
    for k in kinds:
        s, b = get(k, "single_api", "rate"), get(k, "bare_api", "rate")
        single.values[k] = s / b if s and b else None
    single.check = lambda kind, v: (v >= 0.3) if v is not None else None
    rows.append(single)
    row("single-event API latency p99", "ms", "", ("single_api", "p99_ms"))
    for workers in sorted({int(k.split("_w")[1]) for r in results.values() for k in r if "_api_w" in k}):
        w = f"_w{workers}"
        row(
            f"batch API, {workers} workers",
            "events/s",
            "",
            ("batch_api" + w, "rate"),
            memory=("server_peak_mb" + w,),
        )
        row(f"single-event API, {workers} workers", "requests/s", "", ("single_api" + w, "rate"))
        row(
            f"bare endpoint, {workers} workers",
            "requests/s",
            "",
            ("bare_api" + w, "rate"),
            memory=("bare_peak_mb" + w,),
        )
        ratio_w = Row(f"single-event API ÷ bare endpoint, {workers} workers", "ratio", "")
        for k in kinds:
            s_, b_ = get(k, "single_api" + w, "rate"), get(k, "bare_api" + w, "rate")
            ratio_w.values[k] = s_ / b_ if s_ and b_ else None
        rows.append(ratio_w)
    row("history lookup p50", "ms", "", ("reads", "history_p50_ms"), memory=("reads", "peak_mb"))
    hist = row("history lookup p99", "ms", "< 10 ms" + scale, ("reads", "history_p99_ms"))
    hist.check = lambda kind, v: (v < 10) if v is not None else None
    row("inclusion proof p99", "ms", "", ("reads", "proof_p99_ms"))
    row("statistics report (by year)", "ms", "", ("reads", "statistics_ms"))
    row("statistics by province and chemistry", "ms", "", ("reads", "statistics_grouped_ms"))
    row("producer responsibility report", "ms", "", ("reads", "producers_ms"))
    row("recovery report (every profile)", "ms", "", ("reads", "recovery_ms"))
    row("retirement forecast from the fleet", "ms", "", ("reads", "forecast_ms"))
    row("alerts, first page", "ms", "", ("reads", "alerts_page_ms"))
    row("dashboard, first load", "ms", "", ("reads", "dashboard_first_ms"))
    row("dashboard, cached", "ms", "", ("reads", "dashboard_cached_ms"))
    row(
        "alert re-scan of every running deadline",
        "s",
        "",
        ("rescan", "seconds"),
        memory=("rescan", "peak_mb"),
    )
    return rows


def print_table(rows: list[Row], kinds: list[str], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("measurement")
    table.add_column("target")
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    for k in kinds:
        table.add_column(names[k], justify="right")
        table.add_column("", justify="left")
        table.add_column("peak MB", justify="right")
    for r in rows:
        cells = [r.name, r.target]
        for k in kinds:
            value = r.values.get(k)
            cells.append(_fmt(value, r.unit))
            verdict = r.check(k, value) if r.check else None
            cells.append("" if verdict is None else ("met" if verdict else "[red]missed[/red]"))
            mem = r.memory.get(k)
            cells.append(f"{mem:,.0f}" if mem is not None else "")
        table.add_row(*cells)
    console.print(table)
    return table


def markdown(rows: list[Row], kinds: list[str]) -> str:
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    head = "| measurement | target | " + " | ".join(f"{names[k]} | | peak MB" for k in kinds) + " |"
    sep = "| --- | --- | " + " | ".join("---: | --- | ---:" for _ in kinds) + " |"
    lines = [head, sep]
    for r in rows:
        cells = [r.name, r.target or ""]
        for k in kinds:
            value = r.values.get(k)
            verdict = r.check(k, value) if r.check else None
            mem = r.memory.get(k)
            cells += [
                _fmt(value, r.unit),
                "" if verdict is None else ("met" if verdict else "**missed**"),
                f"{mem:,.0f}" if mem is not None else "",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the imported history")
    parser.add_argument(
        "--api-events",
        type=int,
        default=None,
        help="events posted in batches (default: events / 10, at most 100,000)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="single-event requests (default: events / 200, at most 5,000)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="connections of the API client")
    parser.add_argument(
        "--api-workers", default="1", help="server worker processes for the API runs, e.g. 1,3 (one run each)"
    )
    parser.add_argument("--lookups", type=int, default=2_000, help="history lookups and proofs timed")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workdir", type=Path, default=None, help="where files and SQLite databases go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-api", dest="api", action="store_false", help="skip the API runs")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    parser.add_argument(
        "--others", action="store_true", help="then run bench_import, bench_reports, bench_dashboard"
    )
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--params", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage_here(args.stage, args.params)
        return
    args.api_events = (
        args.api_events if args.api_events is not None else min(100_000, max(2_000, args.events // 10))
    )
    args.requests = args.requests if args.requests is not None else min(5_000, max(200, args.events // 200))
    args.api_workers = [int(x) for x in str(args.api_workers).split(",") if x.strip()]
    args.now = datetime.now(UTC).replace(microsecond=0)
    args.end = args.now - timedelta(days=1)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    workdir = Path(tempfile.mkdtemp(prefix="batterytrace-bench-", dir=args.workdir))
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    try:
        history = make_history(args.events, args.seed, args.end, workdir)
        console.print(
            f"{history['events']:,} events ({history['size_mb']:,.0f} MB) from {history['packs']:,} packs "
            f"in {history['seconds']:,.0f} s"
        )
        from bench import postgres

        for kind in kinds:
            if kind == "postgresql":
                with postgres.server() as admin:
                    results[kind] = run_database(kind, args, history, admin, workdir)
            else:
                results[kind] = run_database(kind, args, history, None, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = rows_for(results, args.events)
    cpus = os.cpu_count()
    title = (
        f"batterytrace on {cpus} cores ({platform.python_implementation()} {platform.python_version()}), "
        f"{history['events']:,} simulated events from {history['packs']:,} packs, "
        f"{time.perf_counter() - started:,.0f} s in all; load average {min(LOADS, default=0):.1f}–"
        f"{max(LOADS, default=0):.1f} (median {statistics.median(LOADS or [0]):.1f})"
    )
    print_table(rows, kinds, title)
    console.print(markdown(rows, kinds), highlight=False, soft_wrap=True)
    for kind in kinds:
        r = results[kind]
        imp = r.get("import", {})
        console.print(
            f"{kind}: imported {imp.get('accepted', 0):,} events, {imp.get('rejected', 0):,} refused on purpose "
            f"(offers to unlicensed parties); re-scan raised {r.get('rescan', {}).get('raised', 0):,} alerts; "
            f"single-event statuses {r.get('single_api', {}).get('statuses')}",
            highlight=False,
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "history": history, "results": results},
                indent=2,
            )
        )
    if args.others:
        run_others(args)


def run_others(args: argparse.Namespace) -> None:
    """The other benchmarks of this folder, each printing its own table."""
    packs = max(1_000, args.events // 10)
    commands = {
        "bench_import.py": ["--events", str(min(args.events, 300_000))],
        "bench_reports.py": ["--batteries", str(packs)],
        "bench_dashboard.py": ["--batteries", str(packs)],
    }
    for name, extra in commands.items():
        if (ROOT / "bench" / name).exists():
            console.print(f"[bold]{name}[/bold]")
            subprocess.run([sys.executable, "-m", f"bench.{name[:-3]}", *extra], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
