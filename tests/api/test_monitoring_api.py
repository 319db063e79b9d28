"""Monitoring through the API: alerts with filters, pagination and visibility, acknowledging and
resolving them into the log, re-scans, and every report as JSON (and CSV), guarded by permissions."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories as f
from tests.api.support import assert_problem
from tests.conftest import Actor
from tests.services.test_alerts import Life, World, at, world

__all__ = ["world"]  # the module-scoped registry, client and cast

ALERTS = "/api/v1/alerts"


@pytest.fixture
def life(world: World) -> Life:
    return Life(world)


def scrapped_without_battery(life: Life, dismantler: Actor, n: int, region: str = "440304") -> list[str]:
    vins = [f.vin() for _ in range(n)]
    for vin in vins:
        life.ok(dismantler, "vehicle_scrapped", None, vin=vin, region=region)
    return vins


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [a["id"] for a in response.json()["items"]]


def test_alerts_filter_by_rule_enterprise_province_and_status_and_page_newest_first(life: Life) -> None:
    dismantler = life.new_enterprise(["dismantler"], licences=["dismantling"], region="440304")
    scrapped_without_battery(life, dismantler, 3)
    reg = life.cast.regulator
    query = {"rule": "scrapped_vehicle_battery", "enterprise": dismantler.id}
    first = reg.get(ALERTS, **query, limit=2)
    body = first.json()
    assert body["total"] == 3
    assert len(body["items"]) == 2
    assert body["items"][0]["id"] > body["items"][1]["id"]
    assert body["next_cursor"] == body["items"][1]["id"]
    rest = reg.get(ALERTS, **query, limit=2, after=body["next_cursor"]).json()
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    assert rest["total"] is None
    assert ids(reg.get(ALERTS, **query, province="44")) == [a["id"] for a in body["items"] + rest["items"]]
    assert ids(reg.get(ALERTS, **query, province="31")) == []
    assert ids(reg.get(ALERTS, **query, status="closed")) == []
    assert len(ids(reg.get(ALERTS, **query, status="all"))) == 3
    item = body["items"][0]
    for key in ("rule", "title", "battery", "vin", "enterprise", "province", "since", "deadline", "evidence"):
        assert key in item
    assert_problem(reg.get(ALERTS, rule="no_such_rule"), 422, "request.invalid", "rule")
    assert_problem(reg.get(ALERTS, province="4"), 422, "request.invalid", "province")
    assert reg.get(ALERTS, status="maybe").status_code == 422
    assert reg.get(ALERTS, after=2**40).status_code == 422
    assert_problem(reg.get(ALERTS, battery="A\x00B"), 422, "request.invalid", "battery")
    assert reg.get(f"{ALERTS}/{2**40}").status_code == 422
    assert reg.get("/api/v1/reports/statistics", year=10**12).status_code == 422
    assert_problem(
        reg.get("/api/v1/reports/statistics", producer="x\x00"), 422, "request.invalid", "producer"
    )


def test_an_enterprise_sees_only_alerts_about_itself(life: Life) -> None:
    dismantler = life.new_enterprise(["dismantler"], licences=["dismantling"])
    other = life.new_enterprise(["dismantler"], licences=["dismantling"])
    (vin,) = scrapped_without_battery(life, dismantler, 1)
    (alert_id,) = ids(life.cast.regulator.get(ALERTS, vin=vin))
    assert ids(dismantler.get(ALERTS, vin=vin)) == [alert_id]
    assert dismantler.get(f"{ALERTS}/{alert_id}").json()["vin"] == vin
    assert ids(other.get(ALERTS, vin=vin)) == []
    assert_problem(other.get(f"{ALERTS}/{alert_id}"), 404, "request.not_found")
    assert_problem(life.world.client.get(ALERTS), 401, "auth.required")
    assert_problem(life.cast.regulator.get(f"{ALERTS}/999999999"), 404, "request.not_found")


def test_acknowledge_and_resolve_go_into_the_log_and_a_resolved_condition_is_not_raised_again(
    life: Life,
) -> None:
    code = life.made(when=at(2026, 3, 2))
    life.ok(life.cast.maker, "shipped", code, {"to": life.cast.automaker.id}, when=at(2026, 3, 3))
    life.rescan(at(2026, 5, 1))
    reg = life.cast.regulator
    (alert_id,) = ids(reg.get(ALERTS, battery=code, rule="shipment_overdue"))

    assert_problem(life.cast.maker.post(f"{ALERTS}/{alert_id}/acknowledge", {}), 403, "permission.denied")
    r = reg.post(f"{ALERTS}/{alert_id}/acknowledge", {"reason": "calling the carrier"})
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["status"] == "acknowledged"
    assert acked["open"] is True
    assert acked["acknowledged_by"] == reg.id
    entry = reg.get(f"/api/v1/log/entries/{acked['log_index']}").json()
    assert entry["kind"] == "alert"
    assert entry["entry"]["kind"] == "alert_action"
    assert entry["entry"]["alert"]["action"] == "acknowledge"
    assert entry["entry"]["alert"]["reason"] == "calling the carrier"
    assert_problem(reg.post(f"{ALERTS}/{alert_id}/acknowledge", {}), 422, "request.invalid")

    assert_problem(reg.post(f"{ALERTS}/{alert_id}/resolve", {}), 422, "request.invalid", "reason")
    r = reg.post(f"{ALERTS}/{alert_id}/resolve", {"reason": "lost in a warehouse fire, see report 12"})
    assert r.status_code == 200, r.text
    resolved = r.json()
    assert resolved["status"] == "resolved"
    assert resolved["open"] is False
    assert resolved["resolution"] == "lost in a warehouse fire, see report 12"
    assert resolved["log_index"] > acked["log_index"]
    assert (
        reg.get(f"/api/v1/log/entries/{resolved['log_index']}").json()["entry"]["alert"]["action"]
        == "resolve"
    )

    life.rescan(at(2026, 6, 1))  # the shipment is still not received: the same condition, no new alert
    assert ids(reg.get(ALERTS, battery=code, status="all")) == [alert_id]
    life.ok(life.cast.automaker, "received", code, when=at(2026, 6, 2))
    after = reg.get(f"{ALERTS}/{alert_id}").json()
    assert after["status"] == "resolved"  # the resolution stands when the condition clears
    assert after["closed_at"] is not None


def test_rescan_is_for_regulators(life: Life) -> None:
    r = life.cast.regulator.post(f"{ALERTS}/rescan", {})
    assert r.status_code == 200, r.text
    assert {"at", "overdue", "raised", "running_deadlines"} <= set(r.json())
    assert_problem(life.cast.maker.post(f"{ALERTS}/rescan", {}), 403, "permission.denied")


def test_listing_alerts_rescans_lazily_when_the_last_scan_is_old(life: Life) -> None:
    code = life.made(when=at(2026, 3, 2))
    life.ok(life.cast.maker, "shipped", code, {"to": life.cast.automaker.id}, when=at(2026, 3, 3))
    life.rescan(at(2026, 3, 4))
    life.clock.now = at(2026, 5, 1).astimezone(life.clock.now.tzinfo)
    assert len(ids(life.cast.regulator.get(ALERTS, battery=code))) == 1


# --- reports ----------------------------------------------------------------------------------


def test_reports_as_json_and_csv_for_regulators_only(life: Life) -> None:
    mine = life.own_cast()
    code = mine.retired_at_recycler()
    mine.ok(
        mine.cast.recycler, "recycled", code, {"mass_kg": 300, "recovered": {"li_kg": 5.5, "co_kg": 4.95}}
    )
    reg = life.cast.regulator

    stats = reg.get("/api/v1/reports/statistics", producer=mine.cast.maker.id, group_by="province,chemistry")
    assert stats.status_code == 200, stats.text
    body = stats.json()
    assert body["report"] == "statistics"
    assert body["group_by"] == ["province", "chemistry"]
    assert body["rows"][0]["registered"] == 1
    assert set(body["columns"]) >= {"year", "province", "chemistry", "recycled_tonnes"}
    csv_r = reg.get("/api/v1/reports/statistics", producer=mine.cast.maker.id, format="csv")
    assert csv_r.headers["content-type"].startswith("text/csv")
    assert csv_r.text.splitlines()[0].startswith("year,registered")

    producers = reg.get("/api/v1/reports/producers", enterprise=mine.cast.automaker.id).json()
    assert producers["rows"][0]["retired"] == 1
    assert producers["rows"][0]["collected_in_time"] == 1

    recovery = reg.get("/api/v1/reports/recovery", recycler=mine.cast.recycler.id, profile="EU-2027").json()
    (row,) = recovery["rows"]
    assert row["li_rate"] == pytest.approx(5.5 / 6.0, abs=1e-6)
    assert recovery["profiles"] == {"EU-2027": {"li": 0.5, "co": 0.9, "ni": 0.9, "cu": 0.9}}

    fleet = reg.get("/api/v1/reports/forecast", until=2030).json()
    assert fleet["inputs"]["source"] == "registered_fleet"
    assert [r["year"] for r in fleet["rows"]] == [2026, 2027, 2028, 2029, 2030]
    sales = reg.client.post(
        "/api/v1/reports/forecast?until=2035",
        content=b"year,vehicles,pack_kg\n2024,12866000,290\n2025,16490000,290\n",
        headers={**reg.headers, "content-type": "text/csv"},
    )
    assert sales.status_code == 200, sales.text
    assert sales.json()["inputs"]["source"] == "sales_csv"
    assert sales.json()["rows"][0]["year"] == 2024
    bad = reg.client.post(
        "/api/v1/reports/forecast",
        content=b"nothing useful\n",
        headers={**reg.headers, "content-type": "text/csv"},
    )
    assert_problem(bad, 422, "request.invalid", "sales")
    assert_problem(reg.get("/api/v1/reports/forecast", profile="XX-1"), 422, "policy.unknown_profile")

    for path in ("statistics", "producers", "recovery", "forecast"):
        assert_problem(life.cast.maker.get(f"/api/v1/reports/{path}"), 403, "permission.denied")
        assert_problem(life.world.client.get(f"/api/v1/reports/{path}"), 401, "auth.required")


def test_every_monitoring_route_declares_its_permission(life: Life) -> None:
    spec = life.world.client.get("/openapi.json").json()
    mine = {
        "/api/v1/alerts",
        "/api/v1/alerts/rescan",
        "/api/v1/alerts/{alert_id}",
        "/api/v1/alerts/{alert_id}/acknowledge",
        "/api/v1/alerts/{alert_id}/resolve",
        "/api/v1/reports/statistics",
        "/api/v1/reports/producers",
        "/api/v1/reports/recovery",
        "/api/v1/reports/forecast",
    }
    ours = {p: ops for p, ops in spec["paths"].items() if p in mine}
    assert set(ours) == mine
    for path, ops in ours.items():
        for method, op in ops.items():
            assert op.get("x-permission") in {"alert:read", "alert:manage", "report:read"}, (path, method)
