"""Alert rules: for every rule a scenario where it fires, one where it must not, and one where it
clears; working-day deadlines across the 2026 Spring Festival and National Day holidays, typed in
by hand from the State Council's notice (not computed with the calendar under test).

The tests of a module share one registry (building the cast of enterprises per test would cost
more than the tests); each test tells the life of its own batteries and looks only at their
alerts, so the tests stay independent.
"""

from __future__ import annotations

import itertools
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from batterytrace.api.app import create_app
from batterytrace.services.factory import build_registry
from batterytrace.services.monitoring import monitoring_for
from batterytrace.services.registry import Caller, EventResult, Registry
from batterytrace.settings import Settings
from batterytrace.store import tables as T
from tests import factories as f
from tests.conftest import PG_URL, Actor, Cast, Clock, make_enterprise

CST = timezone(timedelta(hours=8))
_maker_codes = (f"M{a}{b}" for a, b in itertools.product("0123456789", repeat=2))


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    """A moment in China Standard Time."""
    return datetime(y, m, d, hh, mm, tzinfo=CST)


def end_of(y: int, m: int, d: int) -> datetime:
    """The last instant of a day in China Standard Time: when a working-day deadline ends."""
    return datetime.combine(datetime(y, m, d).date(), time.max, tzinfo=CST)


def new_maker_code() -> str:
    return next(_maker_codes)


@dataclass
class World:
    registry: Registry
    clock: Clock
    client: TestClient
    cast: Cast


@pytest.fixture(scope="module")
def world(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One registry, API client and cast of enterprises for a whole test module."""
    tmp = tmp_path_factory.mktemp("monitoring")
    pg_name = None
    if db_kind == "sqlite":
        url = f"sqlite:///{tmp / 'registry.sqlite'}"
    else:
        if not PG_URL:
            pytest.fail(
                "PostgreSQL tests need BATTERYTRACE_TEST_POSTGRES_URL (the test script starts a server)"
            )
        pg_name = "bt_" + uuid.uuid4().hex[:12]
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = f"{PG_URL.rpartition('/')[0]}/{pg_name}"
    settings = Settings(
        database_url=url, signing_key=Path(tmp) / "log.key", env="test", log_origin="test/log"
    )
    clock = Clock()
    registry = build_registry(settings)
    registry.clock = clock
    try:
        with TestClient(create_app(registry), raise_server_exceptions=False) as client:
            uid = f.uscc()
            _, key = registry.bootstrap(uid, "National Battery Traceability Office")
            reg = Actor(uid, key, client)
            automaker = make_enterprise(reg, ["automaker"])
            cast = Cast(
                regulator=reg,
                maker=make_enterprise(reg, ["battery_maker"], codes=["0AB"]),
                automaker=automaker,
                outlet=make_enterprise(
                    reg, ["service_outlet"], network_of=automaker.id, licences=["collection"]
                ),
                dismantler=make_enterprise(reg, ["dismantler"], licences=["dismantling"]),
                repurposer=make_enterprise(reg, ["repurposer"], codes=["9RP"], licences=["second_life"]),
                recycler=make_enterprise(reg, ["recycler"], licences=["recycling"]),
                stranger=make_enterprise(reg, ["automaker"]),
                unlicensed=make_enterprise(reg, ["recycler"]),
            )
            yield World(registry, clock, client, cast)
    finally:
        registry.engine.dispose()
        if pg_name is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            admin.dispose()


class Life:
    """Events told through ``Registry.record`` at chosen times; by default each is recorded one
    minute after it happened (so nothing is reported late unless a test says so)."""

    def __init__(self, world: World, cast: Cast | None = None, manufacturer: str = "0AB") -> None:
        self.world = world
        self.registry = world.registry
        self.cast = cast or world.cast
        self.clock = world.clock
        self.manufacturer = manufacturer
        self.t = at(2026, 3, 2, 9)
        self._callers: dict[str, Caller] = {}

    def caller(self, actor: Actor) -> Caller:
        if actor.id not in self._callers:
            self._callers[actor.id] = self.registry.authenticate(actor.key)
        return self._callers[actor.id]

    def send(
        self,
        actor: Actor,
        type_: str,
        battery: str | None,
        data: dict[str, Any] | None = None,
        *,
        when: datetime | None = None,
        recorded: datetime | None = None,
        vin: str | None = None,
        region: str = "310115",
    ) -> EventResult:
        when = when or self.t + timedelta(minutes=10)
        self.t = max(self.t, when)
        body: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "type": type_,
            "time": when.isoformat(),
            "region": region,
            "data": data or {},
        }
        if battery is not None:
            body["battery"] = battery
        if vin is not None:
            body["vin"] = vin
        self.clock.now = (recorded or when + timedelta(minutes=1)).astimezone(UTC)
        (result,) = self.registry.record(self.caller(actor), [body])
        return result

    def ok(
        self, actor: Actor, type_: str, battery: str | None, data: dict[str, Any] | None = None, **kw: Any
    ) -> str:
        res = self.send(actor, type_, battery, data, **kw)
        assert res.status == "accepted", res.error
        assert res.id is not None
        return res.id

    def refused(
        self,
        actor: Actor,
        type_: str,
        battery: str | None,
        code: str,
        data: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        res = self.send(actor, type_, battery, data, **kw)
        assert res.status == "rejected"
        assert res.error is not None
        assert res.error.code == code, res.error

    # --- ready-made batteries -----------------------------------------------------------------

    def made(self, materials: dict[str, float] | None = None, chemistry: str = "E", **kw: Any) -> str:
        code = f.code(manufacturer=self.manufacturer, chemistry=chemistry)
        data = dict(f.MANUFACTURED)
        if materials is not None:
            data["materials"] = materials
        self.ok(self.cast.maker, "manufactured", code, data, **kw)
        return code

    def move(self, code: str, sender: Actor, receiver: Actor, **kw: Any) -> None:
        self.ok(sender, "shipped", code, {"to": receiver.id}, **kw)
        self.ok(receiver, "received", code)

    def installed(self, chemistry: str = "E") -> tuple[str, str]:
        code = self.made(chemistry=chemistry)
        self.move(code, self.cast.maker, self.cast.automaker)
        vin = f.vin()
        self.ok(self.cast.automaker, "installed", code, {"vin": vin})
        return code, vin

    def removed_at_automaker(self) -> str:
        code, _ = self.installed()
        self.ok(self.cast.automaker, "removed", code, {"reason": "retirement"})
        return code

    def retired_at_recycler(
        self, recycler: Actor | None = None, materials: dict[str, float] | None = None
    ) -> str:
        code = self.made(materials)
        self.move(code, self.cast.maker, self.cast.automaker)
        self.ok(self.cast.automaker, "installed", code, {"vin": f.vin()})
        self.ok(self.cast.automaker, "removed", code, {"reason": "retirement"})
        self.ok(self.cast.automaker, "retired", code)
        self.move(code, self.cast.automaker, recycler or self.cast.recycler)
        return code

    def new_enterprise(self, roles: list[str], **kw: Any) -> Actor:
        return make_enterprise(self.cast.regulator, roles, **kw)

    def own_cast(self) -> Life:
        """A Life with a maker, automaker (with an outlet of its own) and recycler of its own, so
        reports filtered by them count only this test's batteries."""
        code = new_maker_code()
        automaker = self.new_enterprise(["automaker"])
        cast = replace(
            self.cast,
            maker=self.new_enterprise(["battery_maker"], codes=[code]),
            automaker=automaker,
            outlet=self.new_enterprise(["service_outlet"], network_of=automaker.id, licences=["collection"]),
            recycler=self.new_enterprise(["recycler"], licences=["recycling"]),
        )
        return Life(self.world, cast, code)

    # --- alerts -----------------------------------------------------------------------------

    def alerts(self, rule: str | None = None, status: str = "all", **kw: Any) -> list[dict[str, Any]]:
        """Alerts of one battery, vehicle or enterprise (say which: the registry is shared)."""
        assert kw, "filter by battery, vin or enterprise"
        page = monitoring_for(self.registry).list_alerts(
            None, operator=True, rule=rule, status=status, limit=1000, **kw
        )
        return page["items"]

    def rescan(self, now: datetime) -> dict[str, Any]:
        self.clock.now = now.astimezone(UTC)
        return monitoring_for(self.registry).rescan()


@pytest.fixture
def life(world: World) -> Life:
    return Life(world)


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def cst(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(CST)


# --- shipment not received in time (transfer_deadline_wd = 10) ------------------------------------


def test_shipment_overdue_fires_after_ten_working_days_across_the_spring_festival(life: Life) -> None:
    code = life.made(when=at(2026, 2, 12))
    life.ok(life.cast.maker, "shipped", code, {"to": life.cast.automaker.id}, when=at(2026, 2, 13, 16))
    # Fri 13 Feb; worked: Sat 14 Feb (1); 15-23 Feb off; 24, 25, 26, 27 Feb (2-5); Sat 28 Feb worked (6);
    # Mon 2 to Thu 5 Mar (7-10): the deadline ends with Thursday 5 March.
    assert life.rescan(at(2026, 3, 5, 23, 59))["raised"] == 0
    assert life.alerts("shipment_overdue", battery=code) == []
    assert life.rescan(end_of(2026, 3, 5) + timedelta(seconds=1))["raised"] == 1  # the re-scan says what it raised
    alert = only(life.alerts("shipment_overdue", battery=code))
    assert cst(alert["deadline"]) == end_of(2026, 3, 5)
    assert cst(alert["since"]) == at(2026, 2, 13, 16)
    assert alert["deadline_basis"] == "official"
    assert alert["enterprise"] == life.cast.maker.id
    assert alert["counterparty"] == life.cast.automaker.id
    assert alert["province"] == "31"
    assert alert["status"] == "open"
    assert alert["title"] == "Shipment not received in time"
    assert alert["detail"] == (
        f"battery {code} was shipped by {life.cast.maker.id} to {life.cast.automaker.id} and not received "
        "within 10 working days"
    )
    assert [e["type"] for e in alert["evidence"]] == ["shipped"]


def test_shipment_received_in_time_raises_nothing(life: Life) -> None:
    code = life.made()
    life.move(code, life.cast.maker, life.cast.automaker)
    life.rescan(at(2026, 9, 1))
    assert life.alerts("shipment_overdue", battery=code) == []


def test_shipment_overdue_clears_when_the_battery_is_received(life: Life) -> None:
    code = life.made(when=at(2026, 9, 23))
    life.ok(life.cast.maker, "shipped", code, {"to": life.cast.automaker.id}, when=at(2026, 9, 24, 11))
    # Thu 24 Sep; 25-27 Sep off (Mid-Autumn); 28, 29, 30 Sep (1-3); 1-7 Oct off (National Day);
    # 8, 9 Oct, Sat 10 Oct worked, 12-15 Oct (4-10): the deadline ends with Thursday 15 October.
    life.rescan(at(2026, 10, 15, 22))
    assert life.alerts("shipment_overdue", battery=code) == []
    life.rescan(at(2026, 10, 16, 0, 1))
    alert = only(life.alerts("shipment_overdue", status="open", battery=code))
    assert cst(alert["deadline"]) == end_of(2026, 10, 15)
    life.ok(life.cast.automaker, "received", code, when=at(2026, 10, 16, 9))
    assert life.alerts("shipment_overdue", status="open", battery=code) == []
    closed = only(life.alerts("shipment_overdue", status="closed", battery=code))
    assert closed["id"] == alert["id"]
    assert closed["status"] == "closed"
    assert "received by" in closed["close_reason"]
    assert closed["evidence"][-1]["relation"] == "cleared"
    assert closed["evidence"][-1]["type"] == "received"


def test_a_shipment_recorded_after_its_deadline_raises_at_once(life: Life) -> None:
    code = life.made(when=at(2026, 3, 2))
    life.ok(
        life.cast.maker,
        "shipped",
        code,
        {"to": life.cast.automaker.id},
        when=at(2026, 3, 3),
        recorded=at(2026, 4, 30),
    )
    alert = only(life.alerts("shipment_overdue", battery=code))
    assert alert["status"] == "open"
    # raised on the write path: the same text as a re-scan writes in SQL
    assert alert["detail"] == (
        f"battery {code} was shipped by {life.cast.maker.id} to {life.cast.automaker.id} and not received "
        "within 10 working days"
    )


# --- retired battery not with a licensed facility in time (collection_deadline_wd = 30) -------------


def test_collection_overdue_fires_thirty_working_days_after_retirement_over_national_day(life: Life) -> None:
    code = life.removed_at_automaker()
    life.ok(life.cast.automaker, "retired", code, when=at(2026, 9, 30, 15))
    # Wed 30 Sep; 1-7 Oct off; Oct 8, 9, Sat 10 (1-3), 12-16 (4-8), 19-23 (9-13), 26-30 (14-18),
    # Nov 2-6 (19-23), 9-13 (24-28), 16, 17 (29, 30): the deadline ends with Tuesday 17 November.
    life.rescan(at(2026, 11, 17, 23, 30))
    assert life.alerts("collection_overdue", battery=code) == []
    life.rescan(at(2026, 11, 18, 0, 1))
    alert = only(life.alerts("collection_overdue", battery=code))
    assert cst(alert["deadline"]) == end_of(2026, 11, 17)
    assert cst(alert["since"]) == at(2026, 9, 30, 15)
    assert alert["enterprise"] == life.cast.automaker.id
    assert [e["type"] for e in alert["evidence"]] == ["retired"]
    assert alert["detail"].endswith(
        f"within 30 working days of its retirement; it is held by {life.cast.automaker.id}"
    )


def test_retirement_at_a_licensed_outlet_or_collection_in_time_raises_nothing(life: Life) -> None:
    first, _ = life.installed()
    life.ok(life.cast.outlet, "removed", first, {"reason": "retirement"})
    life.ok(life.cast.outlet, "retired", first)  # the outlet holds a collection licence
    second = life.removed_at_automaker()
    life.ok(life.cast.automaker, "retired", second)
    life.move(second, life.cast.automaker, life.cast.recycler)
    life.rescan(at(2026, 11, 20))
    assert life.alerts("collection_overdue", battery=first) == []
    assert life.alerts("collection_overdue", battery=second) == []


def test_collection_overdue_clears_when_a_licensed_facility_receives_the_battery(life: Life) -> None:
    code = life.removed_at_automaker()
    life.ok(life.cast.automaker, "retired", code, when=at(2026, 3, 10))
    life.rescan(at(2026, 6, 1))
    alert = only(life.alerts("collection_overdue", status="open", battery=code))
    life.ok(life.cast.automaker, "shipped", code, {"to": life.cast.recycler.id}, when=at(2026, 6, 2))
    assert only(life.alerts("collection_overdue", status="open", battery=code))["id"] == alert["id"]
    life.ok(life.cast.recycler, "received", code, when=at(2026, 6, 3))
    closed = only(life.alerts("collection_overdue", status="closed", battery=code))
    assert closed["id"] == alert["id"]
    assert life.cast.recycler.id in closed["close_reason"]


def test_a_deadline_in_a_year_without_holiday_data_is_marked_and_does_not_warn(life: Life) -> None:
    code = life.removed_at_automaker()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # 30 working days after Fri 20 Nov 2026 reach into 2027, which chinese-calendar does not know yet
        life.ok(life.cast.automaker, "retired", code, when=at(2026, 11, 20, 10))
        life.rescan(at(2026, 11, 20, 19))
    with life.registry.engine.connect() as conn:
        watch = conn.execute(select(T.alert_watches).where(T.alert_watches.c.battery == code)).one()
    assert watch.rule == "collection_overdue"
    assert watch.deadline_basis == "weekends_only"
    assert watch.deadline.astimezone(CST).year == 2027


# --- late report (reporting_deadlines) ---------------------------------------------------------


def scrapping(life: Life, recorded: datetime) -> str:
    vin = f.vin()
    life.ok(
        life.cast.dismantler, "vehicle_scrapped", None, vin=vin, when=at(2026, 9, 30, 14), recorded=recorded
    )
    return vin


def test_late_report_fires_after_fifteen_working_days_for_a_dismantler(life: Life) -> None:
    # Wed 30 Sep; Oct 8, 9, Sat 10 (1-3), 12-16 (4-8), 19-23 (9-13), 26, 27 (14, 15): ends Tue 27 Oct.
    vin = scrapping(life, recorded=at(2026, 10, 28, 0, 30))
    alert = only(life.alerts("late_report", vin=vin))
    assert alert["enterprise"] == life.cast.dismantler.id
    assert cst(alert["deadline"]) == end_of(2026, 10, 27)
    assert alert["evidence"][0]["type"] == "vehicle_scrapped"


def test_a_report_on_the_last_day_or_without_a_deadline_is_not_late(life: Life) -> None:
    vin = scrapping(life, recorded=at(2026, 10, 27, 23, 0))
    code = life.made(when=at(2026, 3, 2), recorded=at(2026, 11, 20))  # manufacture has no reporting deadline
    assert life.alerts("late_report", vin=vin) == []
    assert life.alerts("late_report", battery=code) == []


def test_late_report_clears_when_the_event_is_retracted(life: Life) -> None:
    code = life.removed_at_automaker()
    late = life.ok(life.cast.automaker, "retired", code, when=at(2026, 4, 1), recorded=at(2026, 6, 1))
    alert = only(life.alerts("late_report", status="open", battery=code))
    assert alert["evidence"][0]["event"] == late
    life.ok(
        life.cast.automaker,
        "retracted",
        code,
        {"event": late, "reason": "wrong battery"},
        when=at(2026, 6, 1, 11),
    )
    closed = only(life.alerts("late_report", status="closed", battery=code))
    assert closed["id"] == alert["id"]
    assert "retracted" in closed["close_reason"]


# --- scrapped vehicle: battery missing or not collected in time (15 working days) -----------------


def test_scrapped_vehicle_battery_fires_when_the_battery_stays_in_the_vehicle(life: Life) -> None:
    code, vin = life.installed()
    life.ok(life.cast.dismantler, "vehicle_scrapped", None, vin=vin, when=at(2026, 9, 30, 14))
    life.rescan(at(2026, 10, 27, 23))
    assert life.alerts("scrapped_vehicle_battery", battery=code) == []
    life.rescan(at(2026, 10, 28, 0, 1))
    alert = only(life.alerts("scrapped_vehicle_battery", battery=code))
    assert alert["vin"] == vin
    assert alert["enterprise"] == life.cast.dismantler.id
    assert alert["detail"] == (
        f"vehicle {vin} was scrapped and its battery {code} was not removed and collected by a licensed "
        "facility within 15 working days"
    )
    assert cst(alert["deadline"]) == end_of(2026, 10, 27)


def test_a_vehicle_scrapped_with_no_battery_in_it_raises_at_once(life: Life) -> None:
    vin = f.vin()
    life.ok(life.cast.dismantler, "vehicle_scrapped", None, vin=vin)
    alert = only(life.alerts("scrapped_vehicle_battery", vin=vin))
    assert alert["battery"] is None
    assert "missing" in alert["detail"]


def test_battery_removed_by_the_dismantler_in_time_raises_nothing(life: Life) -> None:
    code, vin = life.installed()
    life.ok(life.cast.dismantler, "vehicle_scrapped", None, vin=vin)
    life.ok(life.cast.dismantler, "removed", code, {"reason": "vehicle_scrapped"})
    life.rescan(at(2026, 11, 20))
    assert life.alerts("scrapped_vehicle_battery", vin=vin) == []


def test_scrapped_vehicle_battery_clears_when_the_dismantler_removes_it(life: Life) -> None:
    code, vin = life.installed()
    life.ok(life.cast.dismantler, "vehicle_scrapped", None, vin=vin, when=at(2026, 4, 1))
    life.rescan(at(2026, 6, 1))
    alert = only(life.alerts("scrapped_vehicle_battery", status="open", battery=code))
    life.ok(life.cast.dismantler, "removed", code, {"reason": "vehicle_scrapped"}, when=at(2026, 6, 2))
    closed = only(life.alerts("scrapped_vehicle_battery", status="closed", battery=code))
    assert closed["id"] == alert["id"]
    assert life.cast.dismantler.id in closed["close_reason"]


def test_a_battery_reported_missing_from_a_scrapped_vehicle_raises_and_clears_when_found(life: Life) -> None:
    code, vin = life.installed()
    life.ok(life.cast.automaker, "reported_missing", code)
    life.ok(life.cast.dismantler, "vehicle_scrapped", None, vin=vin)
    assert (
        "reported missing"
        in only(life.alerts("scrapped_vehicle_battery", status="open", battery=code))["detail"]
    )
    life.ok(life.cast.regulator, "found", code)
    assert only(life.alerts("scrapped_vehicle_battery", status="closed", battery=code))
    assert only(life.alerts("scrapped_vehicle_battery", status="all", battery=code))["status"] == "closed"


# --- waste offered to an unlicensed party -------------------------------------------------------


def retired_at_automaker(life: Life) -> str:
    code = life.removed_at_automaker()
    life.ok(life.cast.automaker, "retired", code)
    return code


def test_unlicensed_receiver_fires_from_the_refused_shipment(life: Life) -> None:
    code = retired_at_automaker(life)
    to_unlicensed = {"to": life.cast.unlicensed.id}
    life.refused(life.cast.automaker, "shipped", code, "lifecycle.unlicensed_receiver", to_unlicensed)
    alert = only(life.alerts("unlicensed_receiver", battery=code))
    assert alert["enterprise"] == life.cast.automaker.id
    assert alert["counterparty"] == life.cast.unlicensed.id
    assert alert["evidence"][0]["relation"] == "attempt"
    assert alert["evidence"][0]["code"] == "lifecycle.unlicensed_receiver"
    # a second attempt adds its evidence to the same alert
    life.refused(life.cast.automaker, "shipped", code, "lifecycle.unlicensed_receiver", to_unlicensed)
    assert len(only(life.alerts("unlicensed_receiver", battery=code))["evidence"]) == 2


def test_waste_to_a_licensed_facility_or_new_batteries_to_anyone_raise_nothing(life: Life) -> None:
    code = retired_at_automaker(life)
    life.move(code, life.cast.automaker, life.cast.recycler)
    fresh = life.made()
    life.ok(life.cast.maker, "shipped", fresh, {"to": life.cast.unlicensed.id})
    assert life.alerts("unlicensed_receiver", battery=code) == []
    assert life.alerts("unlicensed_receiver", battery=fresh) == []


def test_unlicensed_receiver_clears_when_the_battery_reaches_a_licensed_facility(life: Life) -> None:
    code = retired_at_automaker(life)
    life.refused(
        life.cast.automaker, "shipped", code, "lifecycle.unlicensed_receiver", {"to": life.cast.unlicensed.id}
    )
    life.ok(life.cast.automaker, "shipped", code, {"to": life.cast.recycler.id})
    assert only(life.alerts("unlicensed_receiver", status="open", battery=code))
    life.ok(life.cast.recycler, "received", code)
    closed = only(life.alerts("unlicensed_receiver", status="closed", battery=code))
    assert life.cast.recycler.id in closed["close_reason"]


# --- events from a party that does not hold the battery (cloned or forged code) -------------------


def test_suspected_clone_fires_for_events_by_a_party_not_holding_the_battery(life: Life) -> None:
    code, _ = life.installed()
    life.refused(life.cast.stranger, "removed", code, "lifecycle.not_holder", {"reason": "repair"})
    alert = only(life.alerts("suspected_clone", battery=code))
    assert alert["enterprise"] == life.cast.stranger.id
    assert alert["counterparty"] == life.cast.automaker.id
    assert alert["evidence"][0]["code"] == "lifecycle.not_holder"


def test_suspected_clone_fires_for_a_forged_or_duplicated_registration(life: Life) -> None:
    other = life.new_enterprise(["battery_maker"], codes=[new_maker_code()])
    code = life.made()
    life.refused(other, "manufactured", code, "battery.exists", dict(f.MANUFACTURED))  # a copied label
    alert = only(life.alerts("suspected_clone", battery=code))
    assert alert["enterprise"] == other.id
    assert alert["counterparty"] == life.cast.maker.id
    assert "already registered by" in alert["detail"]
    forged = f.code(manufacturer="0AB")  # a code made up under another maker's manufacturer code
    life.refused(other, "manufactured", forged, "lifecycle.not_code_owner", dict(f.MANUFACTURED))
    alert = only(life.alerts("suspected_clone", battery=forged))
    assert alert["counterparty"] == life.cast.maker.id  # the holder of manufacturer code 0AB
    assert {a["battery"] for a in life.alerts("suspected_clone", enterprise=other.id)} == {code, forged}


def test_no_clone_alert_for_a_producer_resending_its_registration_or_a_holder_at_the_wrong_stage(
    life: Life,
) -> None:
    code = life.made()
    life.refused(life.cast.maker, "manufactured", code, "battery.exists", dict(f.MANUFACTURED))
    life.refused(life.cast.maker, "retired", code, "lifecycle.wrong_stage")
    assert life.alerts("suspected_clone", battery=code) == []
    vin = f.vin()
    life.ok(life.cast.automaker, "vehicle_sold", None, vin=vin)
    life.refused(life.cast.stranger, "vehicle_sold", None, "lifecycle.not_holder", vin=vin)
    assert life.alerts("suspected_clone", enterprise=life.cast.stranger.id, battery=vin) == []


def test_suspected_clone_clears_when_the_party_receives_the_battery(life: Life) -> None:
    code = life.made()
    life.ok(life.cast.maker, "shipped", code, {"to": life.cast.automaker.id})
    life.refused(life.cast.automaker, "installed", code, "lifecycle.not_holder", {"vin": f.vin()})
    alert = only(life.alerts("suspected_clone", status="open", battery=code))
    life.ok(life.cast.automaker, "received", code)
    closed = only(life.alerts("suspected_clone", status="closed", battery=code))
    assert closed["id"] == alert["id"]


# --- mass balance -------------------------------------------------------------------------------

RECOVERED_OK = {"li_kg": 5.5, "ni_kg": 39.0, "co_kg": 4.95, "mn_kg": 4.55, "cu_kg": 21.0}


def test_mass_balance_fires_when_more_metal_is_recovered_than_contained(life: Life) -> None:
    code = life.retired_at_recycler()
    rid = life.ok(
        life.cast.recycler, "recycled", code, {"mass_kg": 300, "recovered": {**RECOVERED_OK, "co_kg": 5.2}}
    )
    alert = only(life.alerts("mass_balance", battery=code))
    assert alert["enterprise"] == life.cast.recycler.id
    assert "co 5.2 kg recovered of 5 kg contained" in alert["detail"]
    assert [e["relation"] for e in alert["evidence"]] == ["declared_content", "cause"]
    assert alert["evidence"][1]["event"] == rid


def test_mass_balance_holds_when_recovery_is_within_the_content(life: Life) -> None:
    code = life.retired_at_recycler()
    life.ok(
        life.cast.recycler, "recycled", code, {"mass_kg": 300, "recovered": {**RECOVERED_OK, "co_kg": 5.0}}
    )
    assert life.alerts("mass_balance", battery=code) == []


def test_mass_balance_clears_when_the_recycling_report_is_retracted(life: Life) -> None:
    code = life.retired_at_recycler()
    rid = life.ok(
        life.cast.recycler, "recycled", code, {"mass_kg": 300, "recovered": {**RECOVERED_OK, "li_kg": 9}}
    )
    assert only(life.alerts("mass_balance", status="open", battery=code))
    life.ok(life.cast.recycler, "retracted", code, {"event": rid, "reason": "typing error"})
    assert only(life.alerts("mass_balance", status="closed", battery=code))


# --- recycler below the recovery thresholds (CN-2026: Li 90 %, Ni, Co, Mn 98 %) -------------------


def test_recovery_below_threshold_fires_for_a_recycler_under_the_lithium_threshold(life: Life) -> None:
    recycler = life.new_enterprise(["recycler"], licences=["recycling"])
    code = life.retired_at_recycler(recycler)
    life.ok(recycler, "recycled", code, {"mass_kg": 300, "recovered": {**RECOVERED_OK, "li_kg": 5.0}})
    alert = only(life.alerts("recovery_below_threshold", enterprise=recycler.id))
    assert alert["enterprise"] == recycler.id
    assert "li 83.3% (threshold 90%)" in alert["detail"]
    figures = alert["evidence"][0]
    assert figures["relation"] == "figures"
    assert figures["rates"]["li"] == pytest.approx(5.0 / 6.0, abs=1e-6)


def test_recovery_at_the_thresholds_raises_nothing(life: Life) -> None:
    recycler = life.new_enterprise(["recycler"], licences=["recycling"])
    code = life.retired_at_recycler(recycler)
    life.ok(recycler, "recycled", code, {"mass_kg": 300, "recovered": RECOVERED_OK})
    assert life.alerts("recovery_below_threshold", enterprise=recycler.id) == []


def test_recovery_below_threshold_clears_when_the_years_rates_come_back(life: Life) -> None:
    recycler = life.new_enterprise(["recycler"], licences=["recycling"])
    first = life.retired_at_recycler(recycler)
    second = life.retired_at_recycler(recycler)
    life.ok(recycler, "recycled", first, {"mass_kg": 300, "recovered": {**RECOVERED_OK, "li_kg": 5.3}})
    assert only(life.alerts("recovery_below_threshold", status="open", enterprise=recycler.id))
    # Li over the year: (5.3 + 6.0) / 12 = 94.2 %
    life.ok(recycler, "recycled", second, {"mass_kg": 300, "recovered": {**RECOVERED_OK, "li_kg": 6.0}})
    assert only(life.alerts("recovery_below_threshold", status="closed", enterprise=recycler.id))


# --- batches, retractions, the log ----------------------------------------------------------------


def ev(type_: str, battery: str, when: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """An event body for ``Registry.record``."""
    return {
        "id": str(uuid.uuid4()),
        "type": type_,
        "battery": battery,
        "time": when.isoformat(),
        "region": "310115",
        "data": data,
    }


def test_a_late_recorded_shipment_closes_on_receipt_and_one_batch_may_hold_several_steps(life: Life) -> None:
    code = life.made(when=at(2026, 3, 2))
    maker = life.caller(life.cast.maker)
    automaker = life.caller(life.cast.automaker)
    life.clock.now = at(2026, 8, 1).astimezone(UTC)
    shipped = ev("shipped", code, at(2026, 3, 3), {"to": automaker.id})
    assert life.registry.record(maker, [shipped])[0].status == "accepted"
    assert only(life.alerts("shipment_overdue", battery=code))["status"] == "open"
    received = ev("received", code, at(2026, 3, 4), {})
    assert life.registry.record(automaker, [received])[0].status == "accepted"
    assert only(life.alerts("shipment_overdue", battery=code))["status"] == "closed"
    # retired and shipped in one batch by an enterprise holding both roles, received in time
    code_of_both = new_maker_code()
    both = life.new_enterprise(["battery_maker", "automaker"], codes=[code_of_both])
    other = Life(life.world, replace(life.cast, maker=both), manufacturer=code_of_both)
    made = other.made(when=at(2026, 3, 2))
    caller = other.caller(both)
    batch = [
        ev("installed", made, at(2026, 3, 3), {"vin": f.vin()}),
        ev("removed", made, at(2026, 3, 4), {"reason": "retirement"}),
        ev("retired", made, at(2026, 3, 5), {}),
        ev("shipped", made, at(2026, 3, 6), {"to": life.cast.recycler.id}),
    ]
    life.clock.now = at(2026, 3, 7).astimezone(UTC)
    assert [r.status for r in life.registry.record(caller, batch)] == ["accepted"] * 4
    life.ok(life.cast.recycler, "received", made, when=at(2026, 3, 8))
    life.rescan(at(2026, 11, 20))
    assert life.alerts("shipment_overdue", battery=made) == []
    assert life.alerts("collection_overdue", battery=made) == []


def test_retracting_a_receipt_starts_the_shipment_deadline_again(life: Life) -> None:
    code = life.made(when=at(2026, 3, 2))
    life.ok(life.cast.maker, "shipped", code, {"to": life.cast.automaker.id}, when=at(2026, 3, 3))
    rid = life.ok(life.cast.automaker, "received", code, when=at(2026, 3, 4))
    life.ok(
        life.cast.automaker,
        "retracted",
        code,
        {"event": rid, "reason": "scanned the wrong pallet"},
        when=at(2026, 5, 4),
    )
    assert life.registry.battery_state(code).in_transit_to == life.cast.automaker.id
    alert = only(life.alerts("shipment_overdue", battery=code))  # its deadline passed in March
    assert alert["status"] == "open"
    assert cst(alert["since"]) == at(2026, 3, 3)


def test_a_refused_atomic_batch_changes_no_rollup_or_alert(life: Life) -> None:
    code = life.removed_at_automaker()
    caller = life.caller(life.cast.automaker)
    life.clock.now = at(2026, 11, 20).astimezone(UTC)
    batch = [
        ev("retired", code, at(2026, 4, 1), {}),
        ev("exported", code, at(2026, 4, 2), {"country": "DE"}),
    ]
    results = life.registry.record(caller, batch, atomic=True)
    assert [r.status for r in results] == ["rejected", "rejected"]
    with life.registry.engine.connect() as conn:
        assert conn.execute(select(T.alert_watches).where(T.alert_watches.c.battery == code)).first() is None
    assert life.alerts(battery=code) == []


def test_alert_actions_in_the_log_leave_verify_clean(life: Life) -> None:
    from batterytrace.services.verify import verify

    vin = f.vin()
    life.ok(life.cast.dismantler, "vehicle_scrapped", None, vin=vin)
    alert = only(life.alerts("scrapped_vehicle_battery", vin=vin))
    regulator = life.caller(life.cast.regulator)
    monitoring = monitoring_for(life.registry)
    monitoring.acknowledge(regulator, alert["id"], "on it")
    monitoring.resolve(regulator, alert["id"], "vehicle predates the registry")
    report = verify(life.registry.engine, life.registry.log)
    assert report.ok, [str(x) for x in report.findings[:5]]
