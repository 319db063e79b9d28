"""Access tiers on a battery, after the EU passport: public, legitimate interest, authority."""

from __future__ import annotations

from tests import factories as f
from tests.api.support import assert_problem, battery_path
from tests.conftest import Cast

PUBLIC_FIELDS = {"code", "level", "chemistry", "stage", "parent", "children", "origins"}


def test_battery_fields_are_cut_to_the_callers_tier(cast: Cast) -> None:
    pack, module = f.code(level="P"), f.code(level="M")
    vin = f.vin()
    for actor, events in (
        (
            cast.maker,
            [
                f.event("manufactured", pack, 0, f.MANUFACTURED),
                f.event("manufactured", module, 1, f.MANUFACTURED),
                f.event("assembled", pack, 2, {"children": [module]}),
                f.event("shipped", pack, 3, {"to": cast.automaker.id}),
            ],
        ),
        (cast.automaker, [f.event("received", pack, 4), f.event("installed", pack, 5, {"vin": vin})]),
    ):
        for event in events:
            assert actor.event(event).status_code == 201

    # no key: the public passport
    r = cast.regulator.client.get(battery_path(pack))
    assert r.status_code == 200, r.text
    public = r.json()
    assert public.keys() >= PUBLIC_FIELDS
    assert (public["stage"], public["level"], public["chemistry"]) == ("installed", "pack", "ternary")
    assert public["children"] == [module]
    assert public["access_tier"] == "public"
    for hidden in ("holder", "in_transit_to", "vin", "materials", "producer", "installer"):
        assert hidden not in public

    # the regulator: everything
    authority = cast.regulator.get(battery_path(pack)).json()
    assert authority["access_tier"] == "authority"
    assert (authority["holder"], authority["vin"], authority["in_transit_to"]) == (
        cast.automaker.id,
        vin,
        None,
    )

    # a licensed recycler with no part in this battery: legitimate interest
    interest = cast.recycler.get(battery_path(pack)).json()
    assert interest["access_tier"] == "legitimate_interest"
    assert interest["holder"] == cast.automaker.id
    assert interest["materials"] == f.MANUFACTURED["materials"]
    assert "vin" not in interest
    # ... and for a component, the holder of the pack it is part of
    component = cast.recycler.get(battery_path(module)).json()
    assert (component["holder"], component["parent"]) == (cast.automaker.id, pack)
    assert "vin" not in component

    # an automaker with no part in it sees the public tier; its holder sees all
    outsider = cast.stranger.get(battery_path(pack)).json()
    assert outsider["access_tier"] == "public"
    assert "holder" not in outsider
    assert cast.automaker.get(battery_path(pack)).json()["vin"] == vin

    # the events, cut the same way
    events = cast.regulator.client.get(battery_path(pack) + "/events").json()["events"]
    assert [e["type"] for e in events] == ["manufactured", "assembled", "shipped", "received", "installed"]
    assert all("actor" not in e and "data" not in e for e in events)
    events = cast.recycler.get(battery_path(pack) + "/events").json()["events"]
    assert events[-1]["actor"] == cast.automaker.id
    assert "vin" not in events[-1]["data"]
    events = cast.regulator.get(battery_path(pack) + "/events").json()["events"]
    assert events[-1]["data"] == {"vin": vin}

    # unknown and malformed codes
    client = cast.regulator.client
    assert_problem(client.get(battery_path(f.code())), 404, "battery.unknown", "code")
    problem = assert_problem(
        client.get(battery_path("0ABPE01A1B2C3DG31000000a")), 422, "code.bad_character", "code"
    )
    assert problem["position"] == 24
