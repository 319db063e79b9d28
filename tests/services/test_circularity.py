"""Circularity on a real database (SQLite and PostgreSQL): recyclers' balances drawn in order within
and across batches and given back by retractions, `verify` replaying them and naming an altered
one, migration 0004 filling them from earlier recycling, lineage cut to tiers and bounded, and the
reports' permissions and filters."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, update

from batterytrace.domain.errors import DomainError
from batterytrace.services import circularity
from batterytrace.services.lineage import battery_lineage
from batterytrace.services.registry import Caller, Registry
from batterytrace.services.verify import verify
from batterytrace.store import tables as T
from batterytrace.store.migrate import alembic_config, upgrade
from tests import factories as f
from tests.api.support import BATCH, Story, assert_problem, battery_path
from tests.conftest import Cast


def balance(registry: Registry, recycler: str, material: str = "li") -> tuple[int, int] | None:
    b = T.material_balances
    with registry.engine.connect() as conn:
        row = conn.execute(
            select(b.c.recovered_mg, b.c.declared_mg).where(
                b.c.recycler == recycler, b.c.material == material
            )
        ).first()
    return (row.recovered_mg, row.declared_mg) if row is not None else None


def recycled_at(story: Story, li_kg: float) -> tuple[str, dict[str, Any]]:
    """A pack recycled by the cast's recycler, recovering ``li_kg`` of lithium: (code, stored event)."""
    code = story.retired_at(story.cast.recycler)
    stored = story.do(
        story.cast.recycler, "recycled", code, {"mass_kg": 300.0, "recovered": {"li_kg": li_kg, "co_kg": 1.0}}
    )
    return code, stored


def declaring(story: Story, li_kg: float) -> dict[str, Any]:
    return story.ev(
        "manufactured",
        f.code(),
        {**f.MANUFACTURED, "recycled_content": [{"recycler": story.cast.recycler.id, "li_kg": li_kg}]},
    )


def test_declarations_draw_on_the_balance_in_order_within_and_across_batches(
    cast: Cast, registry: Registry
) -> None:
    story = Story(cast)
    recycled_at(story, 1.0)
    assert balance(registry, cast.recycler.id) == (1_000_000, 0)
    # atomic: one refusal and nothing is drawn
    r = cast.maker.post(BATCH, {"events": [declaring(story, 0.4), declaring(story, 0.7)], "atomic": True})
    assert r.status_code == 200, r.text
    assert [x["error"]["code"] for x in r.json()["results"]] == [
        "batch.aborted",
        "lifecycle.recycled_content_exceeds_recovered",
    ]
    assert balance(registry, cast.recycler.id) == (1_000_000, 0)
    # not atomic: each event sees the draws before it
    r = cast.maker.post(
        BATCH, {"events": [declaring(story, 0.4), declaring(story, 0.7), declaring(story, 0.6)]}
    )
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "rejected", "accepted"]
    assert balance(registry, cast.recycler.id) == (1_000_000, 1_000_000)
    problem = assert_problem(
        cast.maker.event(declaring(story, 0.001)),
        409,
        "lifecycle.recycled_content_exceeds_recovered",
        "data.recycled_content[0].li_kg",
    )
    assert "recovered only 0 kg" in problem["detail"]
    # cobalt is a balance of its own
    event = story.ev(
        "manufactured",
        f.code(),
        {**f.MANUFACTURED, "recycled_content": [{"recycler": cast.recycler.id, "co_kg": 1.0}]},
    )
    assert cast.maker.event(event).status_code == 201
    assert balance(registry, cast.recycler.id, "co") == (1_000_000, 1_000_000)
    assert verify(registry.engine, registry.log).ok


def test_retractions_give_back_declarations_and_refuse_to_take_back_recovered_material_in_use(
    cast: Cast, registry: Registry
) -> None:
    story = Story(cast)
    code, recycled = recycled_at(story, 1.0)
    made = declaring(story, 0.75)
    assert cast.maker.event(made).status_code == 201
    problem = assert_problem(
        cast.recycler.event(story.ev("retracted", code, {"event": recycled["id"], "reason": "typo"})),
        409,
        "lifecycle.retraction_refused",
        "data.event",
    )
    assert "declared as recycled content" in problem["detail"]
    assert (
        cast.maker.event(
            story.ev("retracted", made["battery"], {"event": made["id"], "reason": "typo"})
        ).status_code
        == 201
    )
    assert balance(registry, cast.recycler.id) == (1_000_000, 0)
    story.do(cast.recycler, "retracted", code, {"event": recycled["id"], "reason": "typo"})
    assert balance(registry, cast.recycler.id) == (0, 0)
    assert story.state(code)["stage"] == "retired"  # type: ignore[index]
    assert_problem(
        cast.maker.event(declaring(story, 0.1)), 409, "lifecycle.recycled_content_exceeds_recovered"
    )
    report = verify(registry.engine, registry.log)
    assert report.ok, [str(x) for x in report.findings]


def test_verify_names_an_altered_balance(cast: Cast, registry: Registry) -> None:
    story = Story(cast)
    recycled_at(story, 1.0)
    assert verify(registry.engine, registry.log).ok
    b = T.material_balances
    with registry.engine.begin() as conn:
        conn.execute(
            update(b)
            .where(b.c.recycler == cast.recycler.id, b.c.material == "li")
            .values(recovered_mg=9_000_000)
        )
    found = [(x.kind, x.table, x.key) for x in verify(registry.engine, registry.log).findings]
    assert found == [("state", "material_balances", f"{cast.recycler.id}/li")]


def test_migration_0004_fills_balances_from_earlier_recycling(cast: Cast, registry: Registry) -> None:
    story = Story(cast)
    code, recycled = recycled_at(story, 1.0)
    _, withdrawn = recycled_at(story, 2.0)
    story.do(
        cast.recycler, "retracted", withdrawn["battery"], {"event": withdrawn["id"], "reason": "duplicate"}
    )
    e = T.events
    with registry.engine.begin() as conn:
        undo = conn.execute(select(e.c.undo).where(e.c.id == recycled["id"])).scalar_one()
        assert undo["materials"][0]["recovered_mg"] == 1_000_000
        # as the event was stored before this revision: no balance change in its undo record
        conn.execute(
            update(e)
            .where(e.c.id == recycled["id"])
            .values(undo={k: v for k, v in undo.items() if k != "materials"})
        )
    cfg = alembic_config()
    with registry.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
        conn.commit()
    upgrade(registry.engine)
    assert balance(registry, cast.recycler.id) == (1_000_000, 0)
    assert balance(registry, cast.recycler.id, "co") == (1_000_000, 0)
    with registry.engine.connect() as conn:
        assert conn.execute(select(e.c.undo).where(e.c.id == recycled["id"])).scalar_one() == undo
    assert verify(registry.engine, registry.log).ok
    # the restored undo record lets the recycling be retracted, and the balance follows
    story.do(cast.recycler, "retracted", code, {"event": recycled["id"], "reason": "typo"})
    assert balance(registry, cast.recycler.id) == (0, 0)


def test_lineage_is_cut_to_the_callers_tier_and_bounded(cast: Cast, registry: Registry) -> None:
    story = Story(cast)
    cells = [f.code(level="C") for _ in range(5)]
    for cell in cells:
        story.do(cast.maker, "manufactured", cell, f.MANUFACTURED)
    pack = f.code(level="P")
    story.do(cast.maker, "manufactured", pack, f.MANUFACTURED)
    story.do(cast.maker, "assembled", pack, {"children": cells})
    story.move(pack, cast.maker, cast.automaker)
    full = battery_lineage(registry, None, pack)
    assert [n["code"] for n in full["descendants"]] == sorted(cells)
    assert full["truncated"] is False
    cut = battery_lineage(registry, None, pack, limit=3)
    assert len(cut["descendants"]) == 3
    assert cut["truncated"] is True
    assert {e["to"] for e in cut["edges"]} <= {n["code"] for n in cut["descendants"]}
    # a cell is attached: its custody is its pack's, shown from the legitimate-interest tier
    public = battery_lineage(registry, None, cells[0])
    assert "holder" not in public["battery"]
    assert public["ancestors"][0]["code"] == pack
    recycler = Caller(enterprise=registry_enterprise(registry, cast.recycler.id), key_id="-")
    seen = battery_lineage(registry, recycler, cells[0])
    assert seen["access_tier"] == "legitimate_interest"
    assert seen["battery"]["holder"] == cast.automaker.id
    assert seen["ancestors"][0]["holder"] == cast.automaker.id
    # through the API, and its errors
    client = cast.regulator.client
    assert client.get(battery_path(pack) + "/lineage").json() == full
    assert_problem(client.get(battery_path(f.code()) + "/lineage"), 404, "battery.unknown", "code")
    assert_problem(client.get(battery_path("0ABPE01") + "/lineage"), 422, "code.bad_length", "code")


def registry_enterprise(registry: Registry, enterprise_id: str) -> Any:
    from batterytrace.store import repo

    with registry.engine.connect() as conn:
        return repo.load_enterprise(conn, enterprise_id)


@pytest.mark.parametrize("report", ["second-life", "circularity", "recycled-content", "ghg"])
def test_reports_are_for_the_regulator_and_check_their_filters(cast: Cast, report: str) -> None:
    path = f"/api/v1/reports/{report}"
    assert_problem(cast.regulator.client.get(path), 401, "auth.required")
    assert_problem(cast.recycler.get(path), 403, "permission.denied")
    empty = cast.regulator.get(path, year=2026)
    assert empty.status_code == 200, empty.text
    assert empty.json()["period"]["year"] == 2026
    assert_problem(cast.regulator.get(path, year=1999), 422, "request.invalid")
    if report != "recycled-content":
        assert_problem(cast.regulator.get(path, province="3X"), 422, "request.invalid")


def test_report_filters_are_checked_by_the_service_too(cast: Cast, registry: Registry) -> None:
    regulator = Caller(enterprise=registry_enterprise(registry, cast.regulator.id), key_id="-")
    with pytest.raises(DomainError) as caught:
        circularity.second_life_report(registry, regulator, year=1999)
    assert (caught.value.code, caught.value.field) == ("request.invalid", "year")
    with pytest.raises(DomainError) as caught:
        circularity.circularity_report(registry, regulator, province="99")
    assert (caught.value.code, caught.value.field) == ("region.invalid", "province")
    with pytest.raises(DomainError) as caught:
        circularity.ghg_report(registry, regulator, profile="XX-1999")
    assert caught.value.code == "policy.unknown_profile"
    with pytest.raises(DomainError) as caught:
        circularity.second_life_report(registry, None)
    assert caught.value.code == "auth.required"
    assert_problem(
        cast.regulator.get("/api/v1/reports/ghg", profile="XX-1999"), 422, "policy.unknown_profile"
    )


def test_reports_count_by_china_standard_time_year_and_site_province(cast: Cast, registry: Registry) -> None:
    story = Story(cast)
    code = story.retired_at(cast.recycler)
    # 23:30 on 2026-12-31 at UTC+06:00 is 01:30 on 2027-01-01 in China Standard Time
    event = f.event("recycled", code, 0, {"mass_kg": 300.0, "recovered": {"li_kg": 1.0}}, region="650102")
    event["time"] = "2026-12-31T23:30:00+06:00"
    registry.clock.now = registry.clock.now.replace(year=2027, month=1, day=2)  # type: ignore[attr-defined]
    assert cast.recycler.event(event).status_code == 201
    get = cast.regulator.get
    assert get("/api/v1/reports/circularity", year=2026).json()["totals"].get("recycled", 0) == 0
    (row,) = get("/api/v1/reports/circularity", year=2027).json()["rows"]
    assert (row["year"], row["province"], row["recycled"], row["recycled_mass_kg"]) == (2027, "65", 1, 300.0)
    assert get("/api/v1/reports/circularity", year=2027, province="31").json()["rows"] == []
    ghg = get("/api/v1/reports/ghg", year=2027, province="65").json()
    assert ghg["recycling"]["recovered_kg"] == {"li_kg": 1.0}
    assert ghg["avoided_kgco2e"] == 57.0
