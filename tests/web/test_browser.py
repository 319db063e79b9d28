"""The pages in a real headless Chromium against a real server: scan a label, read the passport,
switch language, find where to hand a battery in, log in, read the dashboard, open one battery's
history with its log proofs, acknowledge an alert, and the enterprise's own view. Every step
must run without a console error; screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re

from tests.web.conftest import LiveSite, Tab
from tests.web.support import decode_svg


def fetch_svg(tab: Tab, url: str) -> str:
    response = tab.context.request.get(url)
    assert response.status == 200, url
    assert response.headers["content-type"].startswith("image/svg+xml")
    return str(response.text())


def log_in(tab: Tab, site: LiveSite, key_name: str, start: str = "/login") -> None:
    tab.page.goto(site.url + start)
    tab.page.fill("#api_key", site.key(key_name))
    tab.page.click("#login-submit")
    tab.page.wait_for_load_state("domcontentloaded")


def test_passport_from_its_qr_code_in_both_languages_with_facilities(live_site: LiveSite, tab: Tab) -> None:
    code = live_site.demo.samples["in_transit_waste"]
    # The label's QR code decodes to the passport URL, and its barcode to the code.
    found = decode_svg(fetch_svg(tab, f"{live_site.url}/b/{code}/label.svg"))
    assert found["qr"] == [f"{live_site.url}/b/{code}"]
    assert found["code128"] == [code]
    (passport_url,) = decode_svg(fetch_svg(tab, f"{live_site.url}/b/{code}/qr.svg"))["qr"]

    page = tab.page
    page.goto(passport_url)
    assert page.locator("#battery-code").inner_text() == code
    assert page.locator(".status-words").inner_text() == "Retired: must go to a licensed facility"
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("#interest-fields").count() == 0
    tab.screenshot("1-passport-en")

    page.click("#lang-switch")
    page.wait_for_load_state("domcontentloaded")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator(".status-words").inner_text() == "已退役：必须交给有资质的企业"
    tab.screenshot("2-passport-zh")

    # The choice of language sticks (cookie) on the next page.
    page.goto(live_site.url + "/")
    assert page.locator("h1").inner_text() == "查询电池"
    page.goto(passport_url)

    # Hubei (42) has the dismantler and a recycler of the demo data set.
    page.select_option("#province", "42")
    page.click(".province-form button")
    page.wait_for_load_state("domcontentloaded")
    assert "province=42" in page.url
    names = page.locator("#facility-list li strong").all_inner_texts()
    assert "Jingmen Materials Recovery" in names
    assert "Hubei End-of-Life Vehicle Recycling" in names
    assert "Roadside Scrap Trading" not in names  # no licence, not an outlet
    tab.screenshot("3-facilities-hubei")

    page.select_option("#province", "65")
    page.click(".province-form button")
    page.wait_for_load_state("domcontentloaded")
    assert page.locator("#facility-list").inner_text().startswith("新疆")


def test_unknown_code_says_it_may_not_be_genuine(live_site: LiveSite, tab: Tab) -> None:
    tab.allowed_statuses.add(404)
    page = tab.page
    response = page.goto(live_site.url + "/")
    assert response is not None
    assert response.status == 200
    page.fill("#code", "0abpe01a1b2c3d4q5k0000999")  # typed in lower case: looked up in upper case
    page.click("form.lookup button")
    page.wait_for_load_state("domcontentloaded")
    assert page.url.endswith("/b/0ABPE01A1B2C3D4Q5K0000999")
    assert page.locator("#not-genuine h1").inner_text() == "This battery may not be genuine"
    assert "12315" in page.locator("#report").inner_text()
    tab.screenshot("unregistered")
    response = page.goto(live_site.url + "/b/NOT-A-CODE")
    assert response is not None
    assert response.status == 404
    assert page.locator(".status-words").inner_text() == "This is not a valid battery code."


def test_regulator_dashboard_drill_down_and_alert(live_site: LiveSite, tab: Tab) -> None:
    page = tab.page
    page.goto(live_site.url + "/dashboard")
    assert "/login?next=" in page.url
    tab.screenshot("1-login")
    page.fill("#api_key", "bt_000000000000_not-a-real-key-at-all-xyz")
    page.click("#login-submit")
    assert page.locator("#login-error").is_visible()
    page.fill("#api_key", live_site.key("regulator"))
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/dashboard$"))
    cookies = {c["name"]: c for c in tab.context.cookies()}
    session = cookies["bt_session"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Lax"
    assert live_site.key("regulator") not in session["value"]

    headline = int(page.locator("#fig-batteries").inner_text().replace(",", ""))
    assert headline == live_site.demo.batteries
    for chart in ("chart-years", "chart-recovery", "chart-producers", "chart-forecast"):
        assert page.locator(f"#{chart} svg").count() == 1, chart
    tab.screenshot("2-dashboard")

    code = live_site.demo.samples["recycled"]
    page.fill("#drill-code", code)
    page.click("#drill-form button")
    page.wait_for_url(re.compile(rf".*/dashboard/battery/{code}$"))
    rows = page.locator("tr.event")
    assert rows.count() >= 6
    assert page.locator(".proof-ok").count() == rows.count()
    assert page.locator(".proof-bad").count() == 0
    tab.screenshot("3-drill-down")

    page.goto(live_site.url + "/dashboard")
    alerts = page.locator("tr.alert-row")
    before = alerts.count()
    assert before >= 1, "the demo data set raises alerts (waste shipped and never received)"
    first = alerts.first
    alert_id = first.get_attribute("id")
    first.locator("input[name=note]").fill("Checked with the recycler by phone")
    first.locator("button").click()
    page.wait_for_url(re.compile(r".*/dashboard#alerts$"))
    assert page.locator(f"#{alert_id}").count() == 0
    assert page.locator("tr.alert-row").count() == before - 1
    tab.screenshot("4-alert-acknowledged")

    page.click("header form button")  # log out
    page.wait_for_load_state("domcontentloaded")
    page.goto(live_site.url + "/dashboard")
    assert "/login" in page.url


def test_enterprise_view_and_access_tiers(live_site: LiveSite, tab: Tab) -> None:
    page = tab.page
    code = live_site.demo.samples["in_service"]
    page.goto(f"{live_site.url}/b/{code}")
    public_text = page.locator("main").inner_text()
    assert page.locator("#interest-fields").count() == 0
    assert page.locator("#authority-fields").count() == 0

    # A licensed recycler has a legitimate interest: it sees the holder and the materials, not the VIN.
    log_in(tab, live_site, "recycler_b")
    assert page.url.endswith("/enterprise")
    waiting = live_site.demo.samples["in_transit_waste"]  # shipped to this recycler, never received
    row = page.locator("#incoming tr", has_text=waiting)
    assert row.count() == 1
    assert "overdue" in row.inner_text()
    tab.screenshot("1-recycler-enterprise")

    page.goto(f"{live_site.url}/b/{code}")
    assert page.locator(".tier").inner_text() == "Legitimate-interest view"
    interest = page.locator("#interest-fields").inner_text()
    assert "Lithium" in interest
    assert "Held by" in interest
    assert "Lithium" not in public_text
    assert page.locator("#authority-fields").count() == 0
    tab.screenshot("2-recycler-passport")
