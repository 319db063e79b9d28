"""Prometheus metrics move as events are accepted and refused, requests are answered, the log grows
and checkpoints age."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from batterytrace.services import metrics
from batterytrace.store import tables as T
from tests import factories as f
from tests.api.support import BATCH, tree_size


def scrape(client) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


ACCEPTED = "batterytrace_events_accepted_total"
REFUSED = "batterytrace_events_refused_total"
REPLAYED = "batterytrace_events_replayed_total"


def test_events_accepted_refused_and_replayed_are_counted_once(client, cast):
    before = scrape(client)
    code = f.code()
    first = f.event("manufactured", code, 0, f.MANUFACTURED)
    assert cast.maker.event(first).status_code == 201
    # the same code again: refused with a stable reason
    again = f.event("manufactured", code, 1, f.MANUFACTURED)
    assert cast.maker.event(again).status_code == 409
    # the first event re-sent (a client retry): answered, but not a second acceptance
    assert cast.maker.event(first).status_code == 201
    # a batch: one shipped accepted, one of an unknown type, one by a party that does not hold it
    r = cast.maker.post(
        BATCH,
        {
            "events": [
                f.event("shipped", code, 2, {"to": cast.automaker.id}),
                {**f.event("manufactured", f.code(), 3, f.MANUFACTURED), "type": "teleported"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    stolen = cast.stranger.event(f.event("received", code, 4))
    assert stolen.status_code == 403
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(ACCEPTED, type="manufactured") == 1
    assert delta(ACCEPTED, type="shipped") == 1
    assert delta(REPLAYED, type="manufactured") == 1
    assert delta(REFUSED, type="manufactured", reason="battery.exists") == 1
    assert delta(REFUSED, type="invalid", reason="event.unknown_type") == 1
    assert delta(REFUSED, type="received", reason=stolen.json()["code"]) == 1


def test_request_latency_histogram_by_route_template(client, cast):
    before = scrape(client)
    code = f.code()
    cast.maker.event(f.event("manufactured", code, 0, f.MANUFACTURED))
    for _ in range(3):
        assert client.get(f"/api/v1/batteries/{code}").status_code == 200
    assert client.get(f"/api/v1/batteries/{f.code()}").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)
    route = "/api/v1/batteries/{code}"
    count = "batterytrace_http_request_duration_seconds_count"
    assert (
        value(after, count, method="GET", route=route) - value(before, count, method="GET", route=route) == 4
    )
    total = "batterytrace_http_requests_total"
    assert (
        value(after, total, method="GET", route=route, status="200")
        - value(before, total, method="GET", route=route, status="200")
        == 3
    )
    assert (
        value(after, total, method="GET", route=route, status="404")
        - value(before, total, method="GET", route=route, status="404")
        == 1
    )
    # paths that match no route share one label: no battery code or stray path becomes a series
    assert value(after, total, method="GET", route="unmatched", status="404") >= 1
    client.request("BREW", "/healthz")
    assert value(scrape(client), total, method="other", route="/healthz", status="405") >= 1
    assert not any(code in name or code in str(labels) for name, labels in after)


def test_log_size_and_checkpoint_age_are_read_from_the_database(client, cast, clock):
    cast.maker.event(f.event("manufactured", f.code(), 0, f.MANUFACTURED))
    samples = scrape(client)
    assert value(samples, "batterytrace_database_up") == 1
    assert value(samples, "batterytrace_log_entries") == tree_size(client)
    assert value(samples, "batterytrace_log_checkpoint_entries") == tree_size(client)
    assert value(samples, "batterytrace_log_checkpoint_age_seconds") == 0
    signed_at = value(samples, "batterytrace_log_checkpoint_timestamp_seconds")
    assert signed_at == clock.now.timestamp()
    clock.now += timedelta(minutes=5)
    assert value(scrape(client), "batterytrace_log_checkpoint_age_seconds") == 300
    cast.maker.event(f.event("manufactured", f.code(), 1, f.MANUFACTURED))
    samples = scrape(client)
    assert value(samples, "batterytrace_log_checkpoint_age_seconds") == 0
    assert value(samples, "batterytrace_log_entries") == tree_size(client)


def test_open_alerts_by_rule(client, registry, clock):
    alerts_table = getattr(T, "alerts", None)
    samples = scrape(client)
    open_alerts = {
        dict(labels)["rule"]: v for (name, labels), v in samples.items() if name == "batterytrace_alerts_open"
    }
    if alerts_table is None:
        # monitoring is not part of this build: the gauge is there, empty
        assert open_alerts == {}
        return
    assert open_alerts, "every rule is listed, at zero"
    assert set(open_alerts.values()) == {0}
    rule = sorted(open_alerts)[0]
    with registry.engine.begin() as conn:
        for status in ("open", "acknowledged", "closed"):
            conn.execute(
                insert(alerts_table).values(
                    rule=rule,
                    status=status,
                    since=clock.now,
                    detail="test",
                    evidence={},
                    opened_at=clock.now,
                    updated_at=clock.now,
                )
            )
    assert value(scrape(client), "batterytrace_alerts_open", rule=rule) == 2


def test_database_down_is_a_gauge_not_a_failed_scrape(client, database_url):
    from tests.ops.test_health import database_away

    if not database_url.startswith("sqlite"):
        # PostgreSQL: cut the database off; the scrape still answers with the process metrics
        with database_away(database_url):
            samples = scrape(client)
    else:
        # SQLite keeps reading a moved file through open connections; make the engine fail instead
        registry = client.app.state.registry
        engine = registry.engine
        from batterytrace.store.db import make_engine

        registry.engine = make_engine("sqlite:////nonexistent-dir/registry.sqlite")
        try:
            samples = scrape(client)
        finally:
            registry.engine.dispose()
            registry.engine = engine
    assert value(samples, "batterytrace_database_up") == 0
    assert ("batterytrace_log_entries", frozenset()) not in samples
    assert value(scrape(client), "batterytrace_database_up") == 1


def test_import_progress(client):
    before = scrape(client)
    with metrics.track_import("jsonl", expected=10) as progress:
        progress.advance(accepted=4, refused=1)
        during = scrape(client)
        assert (
            value(during, "batterytrace_import_running", format="jsonl")
            - value(before, "batterytrace_import_running", format="jsonl")
            == 1
        )
        assert value(during, "batterytrace_import_expected_records", format="jsonl") >= 10
        assert value(during, "batterytrace_import_processed_records", format="jsonl") >= 5
    after = scrape(client)
    assert value(after, "batterytrace_import_running", format="jsonl") == value(
        before, "batterytrace_import_running", format="jsonl"
    )
    assert (
        value(after, "batterytrace_import_records_total", format="jsonl", outcome="accepted")
        - value(before, "batterytrace_import_records_total", format="jsonl", outcome="accepted")
        == 4
    )


def test_instrument_is_idempotent(registry):
    metrics.instrument(registry)
    wrapped = registry.record
    metrics.instrument(registry)
    assert registry.record is wrapped
