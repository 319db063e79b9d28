"""Bulk imports report their progress as Prometheus metrics: ``import_file`` after each committed
batch (in this process), and ``batterytrace import --metrics-port`` serves them over HTTP while it
runs, with the events it records counted too."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from batterytrace.services.interop import ImportCounts, Interop, import_file
from tests import factories as f
from tests.interop.conftest import World
from tests.interop.test_cli import env_for, manufactured, run

RUNNING = "batterytrace_import_running"
PROCESSED = "batterytrace_import_processed_records"
RECORDS = "batterytrace_import_records_total"
ACCEPTED_EVENTS = "batterytrace_events_accepted_total"
WAIT = 180.0  # seconds, for the subprocess import on a busy machine


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return samples(prometheus_client.generate_latest().decode())


def value(seen: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return seen.get((name, frozenset(labels.items())), 0.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def file_with_bad_lines(path: Path, good: int) -> tuple[int, int]:
    """``good`` manufactured events, and among them lines that cannot be read or are refused;
    returns (good, bad)."""
    lines = [json.dumps(manufactured(minutes=i % 600)) for i in range(good)]
    bad = [
        "{broken",
        json.dumps({**manufactured(), "type": "painted"}),
        json.dumps(manufactured(f.code(manufacturer="9RP"))),  # another maker's code
        json.dumps({**manufactured(), "time": "yesterday"}),
    ]
    for i, line in enumerate(bad):
        lines.insert(1 + i * (good // len(bad)), line)
    path.write_text("\n".join(lines) + "\n")
    return good, len(bad)


def test_import_file_reports_progress_after_each_batch(world: World, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good, bad = file_with_bad_lines(path, 240)
    caller = world.registry.authenticate(world.cast.maker.key)
    interop = Interop.from_environment(world.registry)
    before = scrape()
    during: list[tuple[float, float]] = []

    def on_progress(position: int, counts: ImportCounts) -> None:
        seen = scrape()
        during.append((value(seen, RUNNING, format="jsonl"), value(seen, PROCESSED, format="jsonl")))

    summary = import_file(interop, caller, path, "jsonl", batch_size=20, on_progress=on_progress)
    assert (summary.counts.accepted, summary.counts.rejected) == (good, bad)
    assert len(during) >= good // 20
    assert all(running >= 1 for running, _ in during)
    processed = [n - value(before, PROCESSED, format="jsonl") for _, n in during]
    assert processed == sorted(processed)
    assert 0 < processed[0] < processed[-1]
    assert processed[-1] == good + bad
    after = scrape()

    def delta(outcome: str) -> float:
        return value(after, RECORDS, format="jsonl", outcome=outcome) - value(
            before, RECORDS, format="jsonl", outcome=outcome
        )

    assert (delta("accepted"), delta("refused")) == (good, bad)
    assert value(after, RUNNING, format="jsonl") == value(before, RUNNING, format="jsonl")
    assert value(after, PROCESSED, format="jsonl") == value(before, PROCESSED, format="jsonl")

    # a second run finds every good line already recorded: still accepted, as the summary says
    before = after
    again = import_file(interop, caller, path, "jsonl", batch_size=20)
    assert (again.counts.replayed, again.counts.rejected) == (good, bad)
    after = scrape()
    assert (delta("accepted"), delta("refused")) == (good, bad)


def test_import_serves_metrics_and_counts_events(world: World, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good, bad = file_with_bad_lines(path, 30)
    before = scrape()
    result = run(world.settings, world.cast.maker.key, "import", str(path), "--metrics-port", "0", "--quiet")
    assert result.exit_code == 1, result.output  # the bad lines
    assert "metrics: http://127.0.0.1:" in result.output
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(RECORDS, format="jsonl", outcome="refused") == bad
    # the registry was instrumented: the events it recorded are counted, by type
    assert delta(ACCEPTED_EVENTS, type="manufactured") == good


def test_a_metrics_port_in_use_is_a_clear_error(world: World, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(manufactured()) + "\n")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(world.settings, world.cast.maker.key, "import", str(path), "--metrics-port", str(port))
    assert result.exit_code == 2, result.output
    assert f"port {port}" in result.output
    assert "already in use" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "events.jsonl.rejects.jsonl").exists()  # nothing was imported


def test_running_import_can_be_scraped(world: World, tmp_path: Path) -> None:
    """``batterytrace import`` as its own process: its /metrics shows the import running while it
    runs, then the import completes."""
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(manufactured(minutes=i % 600)) + "\n" for i in range(3000)))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATTERYTRACE_")}
    env |= env_for(world.settings, world.cast.maker.key)
    command = Path(sys.executable).with_name("batterytrace")
    args = [str(command), "import", str(path), "--metrics-port", str(port), "--batch-size", "50", "--quiet"]
    seen: list[dict[tuple[str, frozenset[tuple[str, str]]], float]] = []
    with subprocess.Popen(
        args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
                except httpx.TransportError:
                    time.sleep(0.1)
                    continue
                scraped = samples(r.text)
                if value(scraped, RUNNING, format="jsonl") >= 1:
                    seen.append(scraped)
                    if value(scraped, PROCESSED, format="jsonl") > 0:
                        break
                time.sleep(0.1)
            out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out + err
    assert f"metrics: http://127.0.0.1:{port}/metrics" in err
    assert seen, "the import finished before its metrics showed it running"
    assert value(seen[-1], PROCESSED, format="jsonl") > 0
    try:  # once the import is over, so is its metrics server
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0)
    except httpx.TransportError:
        return
    raise AssertionError(f"port {port} still answers after the import")
