"""The rule form's newer parts in a real headless Chromium: several conditions (rows added, removed,
all/any), the all-clear and the reminder; saved through the API and shown again when edited."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from playwright.sync_api import expect, sync_playwright

from events.db import upgrade
from events.settings import Settings
from tests.web.conftest import confirm_in_browser, make_app
from tests.web.test_browser import CHROMIUM_ARGS


def test_a_rule_of_two_conditions_with_all_clear_and_reminder(base_settings: Settings, tmp_path: Any,
                                                                live_server_factory: Any) -> None:
    url = f"sqlite:///{tmp_path / 'form.db'}"
    upgrade(url)
    server = live_server_factory(make_app(replace(base_settings, database_url=url)))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/register")
        page.fill("#email", "former@example.com")
        page.fill("#password", "correct horse battery")
        page.click("button[type=submit]")
        confirm_in_browser(page, server, "former@example.com")

        page.goto(f"{server.url}/rules/new?symbol=AAPL")
        page.select_option("#preset", "price_below")
        page.fill("#value", "150")
        page.click("#add-condition")
        page.click("#add-condition")
        expect(page.locator("#more-rows .more-row")).to_have_count(2)
        page.locator("#more-rows .more-row").nth(1).get_by_role("button", name="Remove").click()
        row = page.locator("#more-rows .more-row").first
        row.locator('[data-part="series"]').select_option("day_change_pct")
        row.locator('[data-part="value"]').fill("")
        page.select_option("#match", "any")
        page.check("#notify_on_resolve")
        page.fill("#repeat_every", "2")
        page.select_option("#repeat-unit", "3600")
        page.click("#save")  # the row's level is missing: the server's message lands on that field
        expect(page.locator('.field.invalid [data-field="condition.more.0.value"]')).to_have_count(1)
        row.locator('[data-part="value"]').fill("-5")
        page.click("#save")
        expect(page).to_have_url(re.compile(r"/rules/\d+\?saved=1$"))
        rule_id = int(re.search(r"/rules/(\d+)", page.url).group(1))  # type: ignore[union-attr]
        saved = page.evaluate(f"fetch('/api/rules/{rule_id}').then((r) => r.json())")
        assert saved["condition"] == {"series": "price", "op": "less_than", "value": 150.0, "match": "any",
                                      "more": [{"series": "day_change_pct", "op": "less_than", "value": -5.0}]}
        assert saved["description"] == "price below 150 or day change below -5 %"
        assert saved["notify_on_resolve"] is True and saved["repeat_interval_s"] == 7200
        # the edit page shows what was saved
        expect(page.locator("#more-rows .more-row")).to_have_count(1)
        expect(page.locator('#more-rows [data-part="series"]')).to_have_value("day_change_pct")
        expect(page.locator("#match")).to_have_value("any")
        expect(page.locator("#notify_on_resolve")).to_be_checked()
        expect(page.locator("#repeat_every")).to_have_value("2")
        browser.close()
    assert errors == []
