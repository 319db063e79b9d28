"""The web pages in process (TestClient), on SQLite and PostgreSQL: the passport at every stage of
life, what each access tier sees, labels whose symbols decode, logging in with signed sessions and
checked forms, the dashboard and the enterprise view, and the headers every page carries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from batterytrace.api.app import create_app
from batterytrace.services.registry import Registry
from tests import factories as f
from tests.api.support import Story
from tests.conftest import Cast
from tests.web.support import csrf_token, decode_svg, log_in

EN = {"Accept-Language": "en-GB,en;q=0.9"}
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
RECOVERED = {"li_kg": 5.5, "co_kg": 4.9, "ni_kg": 38.9, "mn_kg": 4.5, "cu_kg": 21.0}


@pytest.fixture
def story(cast: Cast) -> Story:
    return Story(cast)


@pytest.fixture
def browser_like(registry: Registry) -> Iterator[TestClient]:
    """A second client with its own cookie jar (a person at another computer)."""
    with TestClient(create_app(registry), raise_server_exceptions=False) as c:
        yield c


def status_words(html: str) -> str:
    match = re.search(r'class="status-words">([^<]*)<', html)
    assert match, "no status on the page"
    return match.group(1)


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}"[^>]*>(.*?)</section>', html, re.S)
    return match.group(1) if match else ""


# --- the passport at every stage of life -------------------------------------------------------------


def stage_batteries(story: Story, cast: Cast) -> dict[str, str]:
    """One battery at each stage of life, made through the API."""
    out = {"new": story.manufactured()}
    out["installed"], _ = story.installed()
    out["removed"] = story.removed()
    out["retired"] = story.retired()

    out["recycled"] = story.retired_at(cast.recycler)
    story.do(cast.recycler, "recycled", out["recycled"], {"mass_kg": 300.0, "recovered": RECOVERED})

    out["repurposed"] = story.retired_at(cast.repurposer)
    product = f.second_life_code()
    story.do(cast.repurposer, "graded", out["repurposed"], {"soh_percent": 75, "decision": "repurpose"})
    story.do(cast.repurposer, "repurposed", out["repurposed"], {"into": product})
    out["product"] = product

    pack = story.manufactured("P")
    modules = [story.manufactured("M") for _ in range(2)]
    story.do(cast.maker, "assembled", pack, {"children": modules})
    story.move(pack, cast.maker, cast.automaker)
    story.do(cast.automaker, "installed", pack, {"vin": f.vin()})
    story.do(cast.outlet, "removed", pack, {"reason": "retirement"})
    story.do(cast.outlet, "retired", pack)
    story.move(pack, cast.outlet, cast.dismantler)
    story.do(cast.dismantler, "dismantled", pack)
    out["dismantled"], out["module"] = pack, modules[0]

    out["missing"], _ = story.installed()
    story.do(cast.automaker, "reported_missing", out["missing"])
    out["exported"] = story.at_automaker()
    story.do(cast.automaker, "exported", out["exported"], {"country": "DE"})
    return out


EXPECTED_EN = {
    "new": "Registered, not yet in service",
    "installed": "In service",
    "removed": "Removed from service",
    "retired": "Retired: must go to a licensed facility",
    "recycled": "Recycled on {date}",
    "repurposed": "Repurposed on {date}: its life goes on as a second-life product",
    "dismantled": "Dismantled at a licensed facility on {date}",
    "missing": "Reported missing: do not buy",
    "exported": "Exported on {date}",
}
EXPECTED_ZH = {
    "new": "已登记，尚未投入使用",
    "installed": "在用",
    "removed": "已从车辆拆下",
    "retired": "已退役：必须交给有资质的企业",
    "recycled": "已于 {date} 再生利用",
    "repurposed": "已于 {date} 梯次利用：作为梯次产品继续使用",
    "dismantled": "已于 {date} 在有资质的企业拆解",
    "missing": "已报失：请勿购买",
    "exported": "已于 {date} 出口",
}


def test_a_page_for_every_stage_of_life_in_both_languages(
    client: TestClient, story: Story, cast: Cast
) -> None:
    codes = stage_batteries(story, cast)
    for stage, words in EXPECTED_EN.items():
        # the day of the battery's latest event, in the event's own offset
        events = cast.regulator.get(f"/api/v1/batteries/{codes[stage]}/events").json()["events"]
        day = events[-1]["time"][:10]
        r = client.get(f"/b/{codes[stage]}", headers=EN)
        assert r.status_code == 200, (stage, r.text[:300])
        assert status_words(r.text) == words.format(date=day), stage
        assert f'data-stage="{stage}"' in r.text
        r = client.get(f"/b/{codes[stage]}", headers=ZH)
        assert status_words(r.text) == EXPECTED_ZH[stage].format(date=day), stage
    retired = client.get(f"/b/{codes['retired']}", headers=EN).text
    assert "Only a licensed collection, second-life or recycling facility may take it" in retired
    missing = client.get(f"/b/{codes['missing']}", headers=EN).text
    assert "do not buy it" in missing
    assert "12315" in missing


def test_second_life_lineage_links_both_ways(client: TestClient, story: Story, cast: Cast) -> None:
    origin = story.retired_at(cast.repurposer)
    product = f.second_life_code()
    story.do(cast.repurposer, "graded", origin, {"soh_percent": 75, "decision": "repurpose"})
    story.do(cast.repurposer, "repurposed", origin, {"into": product})
    story.do(cast.repurposer, "installed", product, {"system": "ESS-9", "application": "stationary"})

    page = client.get(f"/b/{product}", headers=EN).text
    assert status_words(page) == "In service"
    assert "This is a second-life product made from retired traction batteries." in page
    lineage = section(page, "lineage")
    assert "Made from (retired batteries)" in lineage
    assert f'href="/b/{origin}"' in lineage
    back = section(client.get(f"/b/{origin}", headers=EN).text, "lineage")
    assert "Continued as (second-life products)" in back
    assert f'href="/b/{product}"' in back


def test_pack_and_module_link_to_each_other(client: TestClient, story: Story, cast: Cast) -> None:
    pack = story.manufactured("P")
    modules = [story.manufactured("M") for _ in range(2)]
    story.do(cast.maker, "assembled", pack, {"children": modules})
    lineage = section(client.get(f"/b/{pack}", headers=EN).text, "lineage")
    assert all(f'href="/b/{m}"' in lineage for m in modules)
    module_page = client.get(f"/b/{modules[0]}", headers=EN).text
    assert f'href="/b/{pack}"' in section(module_page, "lineage")
    assert "Module" in section(module_page, "public-fields")


# --- unknown and malformed codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (f.code(serial=9_999_999), "No battery with this code is registered."),
        ("0ABPE01A1B2C3D6AB00000", "This is not a valid battery code."),  # too short
        ("0ABPX01A1B2C3D6AB0000001", "This is not a valid battery code."),  # X is no battery type
        ("<img src=x onerror=alert(1)>", "This is not a valid battery code."),
    ],
)
def test_unknown_codes_may_not_be_genuine(client: TestClient, regulator: Any, code: str, words: str) -> None:
    r = client.get(f"/b/{code}", headers=EN)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert status_words(r.text) == words
    assert "This battery may not be genuine" in r.text
    assert "12315" in r.text
    assert "<img src=x" not in r.text
    zh = client.get(f"/b/{code}", headers=ZH)
    assert zh.status_code == 404
    assert "这块电池可能不是正品" in zh.text


def test_a_bad_character_is_named_by_its_position(client: TestClient, regulator: Any) -> None:
    r = client.get("/b/0ABPX01A1B2C3D6AB0000001", headers=EN)
    assert "Character 5 of the code is wrong." in r.text


def test_the_lookup_form_cleans_what_was_typed(client: TestClient, regulator: Any) -> None:
    r = client.get("/b", params={"code": " 0abpe01a1b2c3d 6ab0000001 "}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/b/0ABPE01A1B2C3D6AB0000001"
    assert client.get("/b", params={"code": ""}, follow_redirects=False).headers["location"] == "/"


# --- access tiers -------------------------------------------------------------------------------------------


def test_the_same_page_shows_each_tier_what_it_may_see(
    client: TestClient, browser_like: TestClient, registry: Registry, story: Story, cast: Cast
) -> None:
    code, vin = story.installed()
    materials = ("39.5", "22.2")  # ni_kg, cu_kg of f.MANUFACTURED, shown to legitimate interest only

    public = client.get(f"/b/{code}", headers=EN).text
    assert "Public view" in public
    for hidden in (cast.automaker.id, cast.maker.id, vin, *materials, "Held by", "Materials contained"):
        assert hidden not in public, hidden
    assert 'id="interest-fields"' not in public
    assert 'id="authority-fields"' not in public

    assert log_in(browser_like, cast.recycler.key).status_code == 303
    recycler = browser_like.get(f"/b/{code}", headers=EN).text
    assert "Legitimate-interest view" in recycler
    interest = section(recycler, "interest-fields")
    assert cast.automaker.id in interest  # the holder
    assert all(m in interest for m in materials)
    assert vin not in recycler
    assert 'id="authority-fields"' not in recycler

    # The holder itself sees its own battery at the authority tier, with the VIN.
    with TestClient(create_app(registry)) as holder:
        log_in(holder, cast.automaker.key)
        own = holder.get(f"/b/{code}", headers=EN).text
    assert "Authority view" in own
    assert vin in section(own, "authority-fields")

    # A stranger (an automaker with no part in this battery) has no legitimate interest.
    with TestClient(create_app(registry)) as stranger:
        log_in(stranger, cast.stranger.key)
        theirs = stranger.get(f"/b/{code}", headers=EN).text
    assert "Public view" in theirs
    assert cast.automaker.id not in theirs


def test_public_history_shows_no_actor_data_or_vin(client: TestClient, story: Story, cast: Cast) -> None:
    code, vin = story.installed()
    history = section(client.get(f"/b/{code}", headers=EN).text, "history")
    assert "Installed" in history
    assert "Shanghai" in history  # the province of the site, which is public
    assert cast.automaker.id not in history
    assert vin not in history
    assert "310115" not in history  # the site's full region code is not public


# --- QR codes and labels ---------------------------------------------------------------------------------------


def test_qr_code_decodes_back_to_the_passport_url(
    client: TestClient, registry: Registry, story: Story
) -> None:
    code = story.manufactured()
    r = client.get(f"/b/{code}/qr.svg")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert decode_svg(r.text)["qr"] == [f"{registry.settings.base_url}/b/{code}"]


def test_label_carries_the_qr_code_and_a_barcode_of_the_code(
    client: TestClient, registry: Registry, story: Story
) -> None:
    code = story.manufactured()
    r = client.get(f"/b/{code}/label.svg")
    assert r.status_code == 200
    found = decode_svg(r.text)
    assert found["qr"] == [f"{registry.settings.base_url}/b/{code}"]
    assert found["code128"] == [code]
    assert f">{code}</text>" in r.text
    assert "60 kWh" in r.text


def test_no_label_for_an_unregistered_or_malformed_code(client: TestClient, regulator: Any) -> None:
    for path in (f"/b/{f.code(serial=9_999_998)}/label.svg", "/b/NOPE/qr.svg"):
        r = client.get(path)
        assert r.status_code in (404, 422), path
        assert r.headers["content-type"].startswith("application/problem+json")


def test_label_sheet_for_a_maker(client: TestClient, cast: Cast, story: Story) -> None:
    registered = story.manufactured()
    unregistered = f.code(serial=8_888_888)  # printed before it is registered
    assert client.get("/labels", follow_redirects=False).headers["location"] == "/login?next=%2Flabels"
    log_in(client, cast.maker.key)
    form = client.get("/labels", headers=EN)
    assert form.status_code == 200
    r = client.post(
        "/labels",
        data={
            "codes": f"{registered}\n\n{unregistered.lower()}\n",
            "page_size": "A4",
            "csrf_token": csrf_token(form.text),
        },
        headers=EN,
    )
    assert r.status_code == 200, r.text[:500]
    sheets = re.findall(r'<div class="sheet">(.*?)</div>', r.text, re.S)
    assert len(sheets) == 1
    found = decode_svg(sheets[0], dpi=300)
    assert sorted(found["code128"]) == sorted([registered, unregistered])
    assert "2 labels on 1 pages" in r.text

    # Codes under another maker's manufacturer code, or malformed, are refused by line.
    other = f.code(manufacturer="9ZZ")
    r = client.post(
        "/labels",
        data={"codes": f"{registered}\n{other}\nNOT-A-CODE", "csrf_token": csrf_token(form.text)},
        headers=EN,
    )
    assert r.status_code == 422
    assert f"Line 2: {other} is under manufacturer code 9ZZ" in r.text
    assert "Line 3: NOT-A-CODE is not a battery code" in r.text
    assert '<div class="sheet">' not in r.text


# --- logging in, sessions and forms ------------------------------------------------------------------------------


def test_login_sets_a_signed_http_only_session_that_never_holds_the_key(
    client: TestClient, cast: Cast
) -> None:
    r = log_in(client, cast.regulator.key)
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("bt_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert cast.regulator.key not in value
    assert cast.regulator.key.split("_", 2)[2] not in value  # not even the secret part
    assert client.get("/dashboard").status_code == 200

    # A forged or altered session is no session.
    client.cookies.clear()
    client.cookies.set("bt_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_login_goes_back_to_the_page_asked_for_but_never_off_site(client: TestClient, cast: Cast) -> None:
    for target, expected in [
        ("/labels?x=1", "/labels?x=1"),
        ("https://evil.example/", "/enterprise"),
        ("//evil.example/x", "/enterprise"),
        ("/\\evil.example", "/enterprise"),
    ]:
        client.cookies.clear()
        token = csrf_token(client.get("/login", params={"next": target}).text)
        r = client.post(
            "/login",
            data={"api_key": cast.maker.key, "next": target, "csrf_token": token},
            follow_redirects=False,
        )
        assert r.status_code == 303, target
        assert r.headers["location"] == expected, target


def test_a_wrong_key_is_refused_and_kept_as_a_security_event(client: TestClient, cast: Cast) -> None:
    token = csrf_token(client.get("/login").text)
    r = client.post(
        "/login", data={"api_key": "bt_0123456789ab_" + "x" * 30, "csrf_token": token}, headers=EN
    )
    assert r.status_code == 200
    assert "This API key is not valid" in r.text
    assert "bt_session" not in r.cookies
    events = cast.regulator.get("/api/v1/security-events").json()["items"]
    assert any(e["code"] == "auth.invalid_key" and e["key_id"] == "0123456789ab" for e in events)


def test_forms_without_a_valid_token_do_nothing(
    client: TestClient, browser_like: TestClient, cast: Cast
) -> None:
    r = client.post("/login", data={"api_key": cast.regulator.key}, headers=EN)
    assert r.status_code == 403
    assert "Form expired" in r.text
    # A token made for one visitor's cookies is no good with another's.
    stolen = csrf_token(browser_like.get("/login").text)
    client.get("/login")
    r = client.post(
        "/login", data={"api_key": cast.regulator.key, "csrf_token": stolen}, follow_redirects=False
    )
    assert r.status_code == 403
    # Logging out needs the token too.
    log_in(client, cast.regulator.key)
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/dashboard").status_code == 200
    token = csrf_token(client.get("/dashboard").text)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(client: TestClient, cast: Cast, registry: Registry) -> None:
    key = cast.regulator.post(f"/api/v1/enterprises/{cast.recycler.id}/keys", {}).json()
    log_in(client, key["key"])
    assert client.get("/enterprise").status_code == 200
    assert (
        cast.regulator.client.delete(
            f"/api/v1/enterprises/{cast.recycler.id}/keys/{key['id']}", headers=cast.regulator.headers
        ).status_code
        == 200
    )
    r = client.get("/enterprise", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")


def test_pages_need_the_right_permission(client: TestClient, cast: Cast) -> None:
    for path in ("/dashboard", "/enterprise", "/labels", f"/dashboard/battery/{f.code()}"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next="), path
    log_in(client, cast.maker.key)
    for path in ("/dashboard", f"/dashboard/battery/{f.code()}"):
        r = client.get(path, headers=EN)
        assert r.status_code == 403, path
        assert "report:read" in r.text
    token = csrf_token(client.get("/enterprise").text)
    r = client.post("/dashboard/alerts/1/acknowledge", data={"csrf_token": token})
    assert r.status_code == 403


# --- language ------------------------------------------------------------------------------------------------------


def test_language_from_accept_language_query_and_cookie(client: TestClient, regulator: Any) -> None:
    assert '<html lang="zh-CN">' in client.get("/", headers=ZH).text
    assert '<html lang="en">' in client.get("/", headers=EN).text
    assert '<html lang="zh-CN">' in client.get("/").text  # nothing asked: Chinese
    r = client.get("/", params={"lang": "en"}, headers=ZH)
    assert '<html lang="en">' in r.text
    assert r.cookies.get("bt_lang") == "en"
    assert '<html lang="en">' in client.get("/", headers=ZH).text  # the cookie wins now
    assert '<html lang="zh-CN">' in client.get("/", params={"lang": "zh"}).text
    assert '<html lang="zh-CN">' in client.get("/", params={"lang": "fr"}).text  # unknown: the cookie


def test_every_page_has_the_language_switch_keeping_its_query(
    client: TestClient, story: Story, cast: Cast
) -> None:
    code = story.manufactured()
    pages = [f"/b/{code}?province=31", "/", "/login", f"/b/{f.code(serial=7_777_777)}"]
    for path in pages:
        html = client.get(path, headers=EN).text
        match = re.search(r'id="lang-switch" hreflang="zh"[^>]*href="([^"]+)"', html)
        assert match, path
        assert "lang=zh" in match.group(1)
    html = client.get(pages[0], headers=EN).text
    assert 'href="/b/' + code + "?province=31&amp;lang=zh" in html


# --- facilities -------------------------------------------------------------------------------------------------------


def test_facilities_in_a_chosen_province(
    client: TestClient, regulator: Any, story: Story, cast: Cast
) -> None:
    from tests.conftest import make_enterprise

    hubei = make_enterprise(regulator, ["recycler"], licences=["recycling"], region="420800")
    make_enterprise(regulator, ["recycler"], region="420100")  # not licensed: not listed
    code = story.retired()
    page = client.get(f"/b/{code}", params={"province": "42"}, headers=EN).text
    listed = section(page, "facilities")
    assert f"Enterprise {hubei.id[-6:]}" in listed
    assert "Recycling" in listed
    assert listed.count("<li>") == 1
    assert '<option value="42" selected>' in page
    shanghai = section(client.get(f"/b/{code}", params={"province": "31"}, headers=EN).text, "facilities")
    assert f"Enterprise {cast.outlet.id[-6:]}" in shanghai  # the collection outlet
    assert f"Enterprise {cast.maker.id[-6:]}" not in shanghai
    empty = section(client.get(f"/b/{code}", params={"province": "65"}, headers=EN).text, "facilities")
    assert "No licensed facility or collection point is registered in Xinjiang" in empty
    ignored = client.get(f"/b/{code}", params={"province": "99"}, headers=EN)
    assert ignored.status_code == 200
    assert 'id="facility-list"' not in ignored.text


# --- dashboard and enterprise view ---------------------------------------------------------------------------------


def test_dashboard_figures_and_charts(client: TestClient, story: Story, cast: Cast) -> None:
    codes = stage_batteries(story, cast)
    log_in(client, cast.regulator.key)
    html = client.get("/dashboard", headers=EN).text
    registered = cast.regulator.get("/api/v1/batteries", limit=1).json()["total"]
    assert registered == len(codes) + 1  # and the dismantled pack's second module
    figure = re.search(r'id="fig-batteries">([\d,]+)<', html)
    assert figure
    assert int(figure.group(1).replace(",", "")) == registered
    stages = section(html, "stages")
    assert "Recycled" in stages
    assert "Missing" in stages
    for chart in ("chart-years", "chart-recovery", "chart-forecast", "chart-producers"):
        assert f'<section id="{chart}"' in html, chart
    recovery = section(html, "chart-recovery")
    assert "CN-2026" in recovery
    assert "EU-2031" in recovery


def test_drill_down_proves_every_event_against_the_signed_checkpoint(
    client: TestClient, story: Story, cast: Cast
) -> None:
    code = story.retired_at(cast.recycler)
    log_in(client, cast.regulator.key)
    r = client.get(f"/dashboard/battery/{code}", headers=EN)
    assert r.status_code == 200
    rows = re.findall(r'<tr class="event', r.text)
    assert len(rows) == len(cast.regulator.get(f"/api/v1/batteries/{code}/events").json()["events"]) == 8
    assert r.text.count("proof-ok") == len(rows)
    assert "proof-bad" not in r.text
    assert "test.batterytrace/log" in r.text  # the signed note's origin line
    unknown = client.get(f"/dashboard/battery/{f.code(serial=6_666_666)}", headers=EN)
    assert unknown.status_code == 404


def test_drill_down_flags_an_event_row_altered_in_the_database(
    client: TestClient, registry: Registry, story: Story, cast: Cast
) -> None:
    from sqlalchemy import update

    from batterytrace.store import tables as T
    from batterytrace.store.db import write_transaction

    code = story.manufactured()
    with write_transaction(registry.engine) as conn:
        conn.execute(
            update(T.events).where(T.events.c.battery == code).values(data={**f.MANUFACTURED, "mass_kg": 1.0})
        )
    log_in(client, cast.regulator.key)
    r = client.get(f"/dashboard/battery/{code}", headers=EN)
    assert r.text.count("proof-bad") == 1


def test_enterprise_view_lists_its_batteries_and_what_waits_for_it(
    client: TestClient, story: Story, cast: Cast
) -> None:
    held = story.at_automaker()
    waiting = story.manufactured()
    story.do(cast.maker, "shipped", waiting, {"to": cast.automaker.id})
    log_in(client, cast.automaker.key)
    html = client.get("/enterprise", headers=EN).text
    assert held in section(html, "batteries")
    incoming = section(html, "incoming")
    assert waiting in incoming
    assert held not in incoming
    # shipped on 2026-03-02: ten working days later is 2026-03-16, long past on the test clock
    assert "2026-03-16" in incoming
    assert "overdue" in incoming
    assert 'id="waste"' in html  # the automaker holds no licence, so its waste is listed
    assert "We hold no retired battery." in section(html, "waste")
    assert 'id="alerts"' in html


# --- headers, static files, routes ---------------------------------------------------------------------------------


def test_pages_carry_a_strict_content_security_policy(client: TestClient, cast: Cast) -> None:
    for path in ("/", "/login", f"/b/{f.code(serial=5_555_555)}"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp  # no script at all: default-src 'none' covers it
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "<script" not in r.text
        assert "http://" not in r.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in r.text
    log_in(client, cast.regulator.key)
    assert client.get("/dashboard").headers["cache-control"] == "no-store"


def test_static_files_are_served_from_the_package_and_nothing_else(
    client: TestClient, regulator: Any
) -> None:
    css = client.get("/static/style.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "@import" not in css.text
    assert "url(" not in css.text
    assert client.get("/static/favicon.svg").headers["content-type"].startswith("image/svg+xml")
    for bad in ("/static/../pages.py", "/static/pages.py", "/static/%2e%2e%2fpages.py"):
        assert client.get(bad).status_code == 404, bad


def test_every_web_route_declares_its_permission(registry: Registry) -> None:
    from fastapi.routing import APIRoute

    from batterytrace.domain.permissions import Permission
    from batterytrace.web.pages import router

    def walk(routes: list[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):  # an included router
                yield from walk(route.original_router.routes)

    known = {p.value for p in Permission}
    routes = list(walk(router.routes))
    assert len(routes) >= 15
    for route in routes:
        assert (route.openapi_extra or {}).get("x-permission") in known, route.path
    paths = {r.path for r in walk(create_app(registry).routes)}
    assert {"/b/{code}", "/b/{code}/qr.svg", "/b/{code}/label.svg", "/dashboard", "/labels"} <= paths
