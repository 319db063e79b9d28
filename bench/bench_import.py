"""Import throughput and peak memory of ``batterytrace import`` for each file format.

For each format a fresh registry (a SQLite file by default, or the PostgreSQL server named by
``--database-url``) gets one file of N events, imported in a child process so that its peak
memory is its own: a regulator-run migration in blocks of 1,000 batteries, each block the makers'
``manufactured`` and ``shipped`` events and then the automaker's ``received`` events (the ``actor``
of each record names the recording enterprise). Then the same file is imported again (every event
a replay). Prints one table:

    python bench/bench_import.py                 # 1,000,000 events per format
    python bench/bench_import.py --events 30000  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

BLOCK = 1_000
FORMATS = ("jsonl", "csv", "epcis")
SUFFIX = {"jsonl": "jsonl", "csv": "csv", "epcis": "json"}
DATA = {
    "capacity_kwh": 60.0,
    "voltage_v": 400.0,
    "mass_kg": 300.0,
    "materials": {"li_kg": 6.0, "ni_kg": 39.5, "co_kg": 5.0, "mn_kg": 4.6, "cu_kg": 22.2},
}


def events(n: int, maker: str, automaker: str) -> Iterator[dict[str, Any]]:
    """N events (a multiple of 3), in blocks of 1,000 batteries."""
    from batterytrace.domain.codes import make_battery_code

    start = datetime(2026, 1, 1, tzinfo=UTC)
    batteries = n // 3
    for first in range(0, batteries, BLOCK):
        block = range(first, min(first + BLOCK, batteries))
        codes = {
            i: make_battery_code("0AB", "P", "E", "01", "A1B2C3D", date(2025, 12, 1), i + 1) for i in block
        }

        def at(i: int, step: int) -> str:
            return (start + timedelta(seconds=3 * i + step)).astimezone().isoformat()

        for kind, actor, data, step in (
            ("manufactured", maker, DATA, 0),
            ("shipped", maker, {"to": automaker}, 1),
            ("received", automaker, {}, 2),
        ):
            for i in block:
                yield {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{kind}:{i}")),
                    "type": kind,
                    "battery": codes[i],
                    "time": at(i, step),
                    "region": "320500",
                    "actor": actor,
                    "data": data,
                }


def write_file(path: Path, fmt: str, n: int, maker: str, automaker: str) -> None:
    from batterytrace.interop import bulk, epcis

    with path.open("w", encoding="utf-8", newline="") as fh:
        if fmt == "jsonl":
            for event in events(n, maker, automaker):
                fh.write(bulk.jsonl_line(event) + "\n")
        elif fmt == "csv":
            writer = bulk.write_csv_header(fh)
            for event in events(n, maker, automaker):
                writer.writerow(bulk.csv_row(event))
        else:
            epcis.write_document(
                fh, (epcis.to_epcis(e) for e in events(n, maker, automaker)), created=datetime.now(UTC)
            )


def child(
    fmt: str, n: int, workdir: Path, database_url: str | None, batch: int, rerun: bool
) -> dict[str, Any]:
    """Set up a registry, write the file, import it twice; report times and peak memory."""
    from batterytrace.domain.codes import make_uscc
    from batterytrace.services.factory import build_registry
    from batterytrace.services.interop import Interop, import_file
    from batterytrace.settings import Settings

    url = database_url or f"sqlite:///{workdir / f'bench-{fmt}.sqlite'}"
    settings = Settings(
        database_url=url, signing_key=workdir / "bench.key", env="test", log_origin="bench/log"
    )
    registry = build_registry(settings)
    regulator_id, maker_id, automaker_id = (make_uscc(f"9111000000000{k:04d}") for k in (1, 2, 3))
    _, key = registry.bootstrap(regulator_id, "Bench regulator")
    regulator = registry.authenticate(key)
    registry.create_enterprise(regulator, {"id": maker_id, "name": "Maker", "roles": ["battery_maker"],
                                           "region": "320500", "manufacturer_codes": ["0AB"]})  # fmt: skip
    registry.create_enterprise(regulator, {"id": automaker_id, "name": "Automaker", "roles": ["automaker"],
                                           "region": "310115"})  # fmt: skip
    path = workdir / f"events.{SUFFIX[fmt]}"
    t0 = time.perf_counter()
    write_file(path, fmt, n, maker_id, automaker_id)
    written = time.perf_counter() - t0
    interop = Interop(registry)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    first = import_file(interop, regulator, path, fmt, batch_size=batch, resume=False)
    first_s = time.perf_counter() - t0
    print(f"  {fmt}: {n:,} events imported in {first_s:,.1f} s", file=sys.stderr, flush=True)
    second_s, replayed = float("nan"), 0
    if rerun:
        t0 = time.perf_counter()
        second = import_file(interop, regulator, path, fmt, batch_size=batch, resume=False)
        second_s = time.perf_counter() - t0
        replayed = second.counts.replayed
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    registry.engine.dispose()
    return {
        "format": fmt,
        "events": n,
        "file_mb": path.stat().st_size / 1e6,
        "write_s": written,
        "import_s": first_s,
        "accepted": first.counts.accepted,
        "rejected": first.counts.rejected,
        "rerun_s": second_s,
        "replayed": replayed,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": peak / 1024,
        "database": "postgresql" if database_url else "sqlite",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL URL (one database per format run)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-rerun", action="store_true", help="skip the second import (all replays)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = max(3, args.events - args.events % 3)
    if args.child:
        print(
            json.dumps(child(args.child, n, args.workdir, args.database_url, args.batch, not args.no_rerun))
        )
        return
    rows = []
    for fmt in args.formats.split(","):
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            cmd = [sys.executable, __file__, "--child", fmt, "--events", str(n), "--batch", str(args.batch),
                   "--workdir", tmp]  # fmt: skip
            if args.database_url:
                cmd += ["--database-url", args.database_url]
            if args.no_rerun:
                cmd.append("--no-rerun")
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=os.environ)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\nimport of {n:,} events per format ({rows[0]['database']}, batches of {args.batch:,})\n")
    head = (
        f"{'format':<7} {'file MB':>8} {'import s':>9} {'events/s':>9} {'re-run s':>9} {'replays/s':>10} "
        f"{'peak RSS MB':>12} {'rejected':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rerun = r["rerun_s"] == r["rerun_s"]  # not NaN
        print(
            f"{r['format']:<7} {r['file_mb']:>8.1f} {r['import_s']:>9.1f} {r['events'] / r['import_s']:>9,.0f} "
            + (
                f"{r['rerun_s']:>9.1f} {r['events'] / r['rerun_s']:>10,.0f} "
                if rerun
                else f"{'-':>9} {'-':>10} "
            )
            + f"{r['peak_rss_mb']:>12.0f} {r['rejected']:>9,}"
        )


if __name__ == "__main__":
    main()
