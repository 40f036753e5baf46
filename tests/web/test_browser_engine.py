"""A rule made in the form fires in the real engine, and its alert reaches the page live.

In a real Chromium (Debian's, driven by Playwright): register, watch AAPL, create a
"price above" rule in the rule form. The rule then travels the production path: the web
app writes it to the outbox, the relay (``python -m events relay``, its Procfile process)
publishes it to the ``rules`` topic, and the rule engine (``python -m alerts engine``, its
Procfile process) loads it. The test produces ticks only, below and then above the
rule's level; the engine raises the alert in its transaction, and the bridge (in a thread,
as in the other browser tests) delivers it over Socket.IO to the dashboard, which is
not reloaded. The alert's id is the engine's deterministic one
(``alert_id(rule, version, trigger tick, "firing")``) and the only message on the
``alerts`` topic.

The engine starts once the rule is on the ``rules`` topic: it reads that topic to its end
before it consumes any tick, so the rule is known to it before the first tick, whatever the
timing (a running engine picks up a new rule on its next poll, a moment not observable from
outside, which would make the trigger tick a matter of luck).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import Message
from playwright.sync_api import expect, sync_playwright

from alerts.engine import changelog_topic
from events.contract import Alert, Event, Rule, Tick, decode
from events.contract_ids import alert_id
from events.db import upgrade
from events.kafka import EventProducer, ShutdownFlag, admin_client
from events.pipeline_read import read_to_end
from events.settings import Settings
from tests.e2e.stack import Stack
from tests.support import read_topic, wait_for
from tests.web.conftest import confirm_in_browser, make_app
from tests.web.events_factory import tick
from tests.web.read_side import start_read_side
from tests.web.test_browser import CHROMIUM_ARGS

LEVEL = 190.0
WAIT_MS = 30_000  # for each expectation: the machine is shared (a whole pass takes ~30 s)


def committed(settings: Settings, name: str, cls: type[Any]) -> list[Any]:
    """Every committed message of a topic, decoded (read_committed, from the start to the end)."""
    out: list[Any] = []

    def keep(msg: Message) -> None:
        value = msg.value()
        if value is not None:
            out.append(decode(value, cls))

    read_to_end(settings, settings.topic(name), keep)
    return out


def test_a_rule_made_in_the_form_fires_in_the_engine_and_its_alert_reaches_the_page(
        kafka_settings: Settings, tmp_path: Path, live_server_factory: Any) -> None:
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    upgrade(url)
    settings = replace(kafka_settings, database_url=url)
    app = make_app(settings)
    server = live_server_factory(app)
    stack = Stack.create(tmp_path / "stack", settings.kafka_topic_prefix, DATABASE_URL=url,
                         ALERTS_ENGINE_GROUP=f"g-{uuid.uuid4().hex[:12]}",
                         ALERTS_TRANSACTIONAL_ID=f"tx-{uuid.uuid4().hex[:12]}", ALERTS_STALE_AFTER_S="0")
    produced: list[Event] = []  # everything this test writes to Kafka
    producer = EventProducer(settings)

    def produce_tick(t: Tick) -> None:
        produced.append(t)
        producer.produce(t)
        producer.flush()

    shutdown = ShutdownFlag()
    threads: list[threading.Thread] = []
    started = time.monotonic()

    def phase(what: str) -> None:  # shown with the output of a failed run: where the time went
        print(f"{time.monotonic() - started:6.1f} s  {what}")

    try:
        stack.start("relay")  # the Procfile's command; starts while the browser signs up
        threads = start_read_side(app, settings, shutdown)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            page.goto(f"{server.url}/register")
            page.fill("#email", "engine@example.com")
            page.fill("#password", "correct horse battery")
            page.click("button[type=submit]")
            confirm_in_browser(page, server, "engine@example.com")
            expect(page).to_have_url(re.compile(r"/dashboard$"), timeout=WAIT_MS)
            user_id = int(page.evaluate("Number(document.body.dataset.user)"))
            page.fill("#add-symbol input[name=symbol]", "AAPL")
            page.click("#add-symbol button[type=submit]")
            expect(page.locator('#watchlist-table tr[data-symbol="AAPL"]')).to_be_visible(timeout=WAIT_MS)

            # the rule, in the form
            name = f"AAPL above {LEVEL:g}"
            page.goto(f"{server.url}/rules/new?symbol=AAPL")
            page.select_option("#preset", "price_above")
            page.fill("#value", f"{LEVEL:g}")
            page.fill("#name", name)
            page.click("#save")
            expect(page).to_have_url(re.compile(r"/rules/\d+\?saved=1$"), timeout=WAIT_MS)
            found = re.search(r"/rules/(\d+)", page.url)
            assert found is not None
            rule_id = int(found.group(1))
            phase(f"rule {rule_id} saved in the form")

            # the relay publishes it from the outbox; then the engine starts and loads it
            published = [decode(m.value(), Rule) for m in
                         read_topic(settings, settings.topic("rules"), expect=1, timeout_s=60)]
            assert [(r.rule_id, r.user_id, r.symbols) for r in published] == [(rule_id, user_id, ["AAPL"])], published
            version = published[0].version
            assert committed(settings, "alerts", Alert) == []
            phase("the relay published it")
            engine = stack.start("alerts")
            wait_for(lambda: "engine started: 1 rules" in engine.tail(200) or not engine.alive(), timeout_s=90,
                     what="the engine to load the rules topic")
            assert engine.alive(), engine.tail()
            phase("the engine loaded it")

            # the dashboard, loaded once: its alert list is empty and its socket connected
            page.goto(f"{server.url}/dashboard")
            expect(page.locator("#recent-alerts .empty-row")).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#live-dot.on")).to_have_count(1, timeout=WAIT_MS)
            page.evaluate("window.__notReloaded = true")

            now_ms = int(time.time() * 1000)
            below, above = tick("AAPL", 1, LEVEL - 1.25, now_ms), tick("AAPL", 2, LEVEL + 0.75, now_ms + 500)
            produce_tick(below)
            produce_tick(above)
            expected_id = alert_id(rule_id, version, above.id, "firing")
            phase("ticks produced")

            row = page.locator(f'#recent-alerts tr[data-alert="{expected_id}"]')
            expect(row).to_be_visible(timeout=60_000)
            phase("the engine's alert is on the page")
            expect(page.locator(".toast")).to_contain_text("AAPL", timeout=WAIT_MS)  # shown for 8 s
            expect(row).to_contain_text(name, timeout=WAIT_MS)
            assert page.evaluate("window.__notReloaded === true"), "the page reloaded: the alert did not come live"
            expect(page.locator("#recent-alerts tr[data-alert]")).to_have_count(1, timeout=WAIT_MS)
            assert errors == [], errors
            browser.close()

        # what the engine wrote: one alert, for the form's rule and the tick that crossed the level
        alerts = committed(settings, "alerts", Alert)
        assert [(a.id, a.rule_id, a.rule_version, a.user_id, a.state, a.trigger_event_id) for a in alerts] == \
            [(expected_id, rule_id, version, user_id, "firing", above.id)], alerts
        assert alerts[0].value == above.price and alerts[0].threshold == LEVEL
        assert all(isinstance(e, Tick) for e in produced) and len(produced) == 2  # the test wrote no alert
    finally:
        shutdown.set()
        for t in threads:
            t.join(30)
        stack.stop_all()
        admin_client(settings).delete_topics([changelog_topic(settings)], operation_timeout=10)
