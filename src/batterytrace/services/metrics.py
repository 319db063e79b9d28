"""Prometheus metrics of the registry.

Counted as things happen, in this process:

- ``batterytrace_events_accepted_total{type}``: events recorded;
- ``batterytrace_events_refused_total{type, reason}``: events refused, ``reason`` being the
  error's stable code (``lifecycle.not_holder`` …);
- ``batterytrace_events_replayed_total{type}``: events sent again with the same id and body,
  answered from what was stored and not counted as accepted a second time;
- ``batterytrace_http_requests_total{method, route, status}`` and
  ``batterytrace_http_request_duration_seconds{method, route}`` (a histogram), ``route`` being
  the route's template, e.g. ``/api/v1/batteries/{code}``;
- ``batterytrace_import_*``: progress of bulk imports (see ``track_import``), reported by
  ``services.interop.import_file`` after each committed batch; ``batterytrace import
  --metrics-port`` serves them while it runs.

Read from the database on each scrape (a handful of indexed rows): the log's size, the age of
the last signed checkpoint, open alerts by rule, and whether the database answered.

Events are counted in one place, around ``Registry.record``, which the API, the importer and the
CLI all call: ``instrument(registry)`` wraps it once.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from batterytrace.domain.model import EventType
from batterytrace.services.registry import EventResult, Registry
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction

#: Label for an event whose ``type`` is missing or not one of the vocabulary (keeps labels bounded).
INVALID_TYPE = "invalid"
_TYPES = frozenset(t.value for t in EventType)

# No ``*_created`` series: they double the output and nobody graphs them.
disable_created_metrics()  # type: ignore[no-untyped-call]

EVENTS_ACCEPTED = Counter(
    "batterytrace_events_accepted", "Events accepted and recorded, by event type.", ["type"]
)
EVENTS_REFUSED = Counter(
    "batterytrace_events_refused",
    "Events refused, by event type and the error's stable code.",
    ["type", "reason"],
)
EVENTS_REPLAYED = Counter(
    "batterytrace_events_replayed",
    "Events sent again with the same id and body: answered with the stored event, not recorded again.",
    ["type"],
)
HTTP_REQUESTS = Counter(
    "batterytrace_http_requests",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "batterytrace_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
IMPORTS_RUNNING = Gauge("batterytrace_import_running", "Bulk imports in progress, by format.", ["format"])
IMPORT_RECORDS = Counter(
    "batterytrace_import_records",
    "Records read by bulk imports, by format and outcome (accepted, refused).",
    ["format", "outcome"],
)
IMPORT_EXPECTED = Gauge(
    "batterytrace_import_expected_records",
    "Records the imports in progress expect to read in all (0 when unknown).",
    ["format"],
)
IMPORT_DONE = Gauge(
    "batterytrace_import_processed_records", "Records the imports in progress have read so far.", ["format"]
)
IMPORT_LAST_PROGRESS = Gauge(
    "batterytrace_import_last_progress_timestamp_seconds",
    "When an import last reported progress (Unix time).",
    ["format"],
)


def type_label(raw: Any) -> str:
    value = raw.get("type") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) and value in _TYPES else INVALID_TYPE


def count_results(raw_events: Sequence[Any], results: Sequence[EventResult]) -> None:
    """Count what ``Registry.record`` decided for each event."""
    if len(raw_events) == len(results):
        labelled = zip((type_label(r) for r in raw_events), results, strict=True)
    else:  # not expected; fall back to what the results say
        labelled = zip((type_label(r.event) for r in results), results, strict=True)
    for kind, res in labelled:
        if res.status == "accepted":
            (EVENTS_REPLAYED if res.replay else EVENTS_ACCEPTED).labels(kind).inc()
        else:
            reason = res.error.code if res.error is not None else "unknown"
            EVENTS_REFUSED.labels(kind, reason).inc()


def instrument(registry: Registry) -> Registry:
    """Count every call of ``registry.record`` (once, however often this is called)."""
    if getattr(registry, "_metrics_instrumented", False):
        return registry
    original: Callable[..., list[EventResult]] = registry.record

    @functools.wraps(original)
    def record(caller: Any, raw_events: Sequence[Any], *args: Any, **kwargs: Any) -> list[EventResult]:
        results = original(caller, raw_events, *args, **kwargs)
        count_results(raw_events, results)
        return results

    registry.record = record  # type: ignore[method-assign]
    registry._metrics_instrumented = True  # type: ignore[attr-defined]
    return registry


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in _METHODS else "other"  # a client's made-up method is not a new series
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_SECONDS.labels(method, route).observe(seconds)


# --- bulk imports ---------------------------------------------------------------------------------


class ImportProgress:
    """Progress of one bulk import, as the importer reports it."""

    def __init__(self, fmt: str, expected: int | None) -> None:
        self.format = fmt
        self.processed = 0
        self.expected = expected or 0

    def advance(self, accepted: int = 0, refused: int = 0) -> None:
        if accepted:
            IMPORT_RECORDS.labels(self.format, "accepted").inc(accepted)
        if refused:
            IMPORT_RECORDS.labels(self.format, "refused").inc(refused)
        self.processed += accepted + refused
        IMPORT_DONE.labels(self.format).inc(accepted + refused)
        IMPORT_LAST_PROGRESS.labels(self.format).set(time.time())


@contextmanager
def track_import(fmt: str, expected: int | None = None) -> Iterator[ImportProgress]:
    """Report a bulk import's progress: ``with track_import("jsonl", n) as p: p.advance(accepted=…)``."""
    progress = ImportProgress(fmt, expected)
    IMPORTS_RUNNING.labels(fmt).inc()
    IMPORT_EXPECTED.labels(fmt).inc(progress.expected)
    IMPORT_LAST_PROGRESS.labels(fmt).set(time.time())
    try:
        yield progress
    finally:
        IMPORTS_RUNNING.labels(fmt).dec()
        IMPORT_EXPECTED.labels(fmt).dec(progress.expected)
        IMPORT_DONE.labels(fmt).dec(progress.processed)


# --- read from the database on each scrape --------------------------------------------------------


def open_alert_counts(conn: Connection) -> dict[str, int] | None:
    """Open (and acknowledged, not yet closed) alerts by rule, every rule listed, from the
    monitoring service's table; ``None`` when monitoring is not part of this build."""
    alerts = getattr(T, "alerts", None)
    try:
        rules = importlib.import_module("batterytrace.services.monitoring.rules")
    except ImportError:
        return None
    if alerts is None:
        return None
    counts = {str(name): 0 for name in rules.RULES}
    stmt = (
        select(alerts.c.rule, func.count())
        .where(alerts.c.status.in_(rules.OPEN_STATUSES))
        .group_by(alerts.c.rule)
    )
    for rule, n in conn.execute(stmt):
        counts[str(rule)] = int(n)
    return counts


class RegistryCollector:
    """Gauges read from the registry's database when Prometheus scrapes."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("batterytrace_database_up", "1 if the database answered this scrape.")
        size = GaugeMetricFamily("batterytrace_log_entries", "Entries in the tamper-evident log.")
        cp_size = GaugeMetricFamily(
            "batterytrace_log_checkpoint_entries", "Log size covered by the latest signed checkpoint."
        )
        cp_time = GaugeMetricFamily(
            "batterytrace_log_checkpoint_timestamp_seconds",
            "When the latest checkpoint was signed (Unix time).",
        )
        cp_age = GaugeMetricFamily(
            "batterytrace_log_checkpoint_age_seconds", "Seconds since the latest checkpoint was signed."
        )
        alerts = GaugeMetricFamily(
            "batterytrace_alerts_open",
            "Alerts open or acknowledged, not yet closed, by rule.",
            labels=["rule"],
        )
        try:
            with read_transaction(self.registry.engine) as conn:
                head = conn.execute(select(T.log_head.c.size).where(T.log_head.c.id == 1)).scalar()
                latest = conn.execute(
                    select(T.checkpoints.c.size, T.checkpoints.c.created_at)
                    .order_by(T.checkpoints.c.size.desc())
                    .limit(1)
                ).first()
                open_alerts = open_alert_counts(conn)
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        size.add_metric([], float(head or 0))
        yield size
        if latest is not None:
            signed: datetime = latest.created_at
            if signed.tzinfo is None:
                signed = signed.replace(tzinfo=UTC)
            cp_size.add_metric([], float(latest.size))
            cp_time.add_metric([], signed.timestamp())
            cp_age.add_metric([], max(0.0, (self.registry.clock() - signed).total_seconds()))
            yield from (cp_size, cp_time, cp_age)
        for rule, n in sorted((open_alerts or {}).items()):
            alerts.add_metric([rule], float(n))
        yield alerts


def exposition(registry: Registry) -> bytes:
    """The text exposition for a scrape: this process's counters and the database's gauges."""
    return generate_latest(REGISTRY) + generate_latest(RegistryCollector(registry))
