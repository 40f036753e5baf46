"""Time a fresh `make run` to the demo AAPL chart with history, SMA 20 and a forecast band.

    make down && make clean && rm -rf var/models var/secret_key    # as from a fresh clone
    make run > /tmp/make-run.log 2>&1 &
    .venv/bin/python scripts/check_make_run.py /tmp/make-run.log [SCREENSHOT_DIR]

The clock starts when honcho prints its first process line. The check logs in as the demo user
(the password `make run` prints once), then reloads ``/symbols/AAPL`` every few seconds until the
chart holds at least 100 bars, 80 SMA 20 values and a forecast band. It prints the seconds that
took (the README's aim: 90) and saves a screenshot. Loopback only: the app on 127.0.0.1:5000.
"""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

APP = "http://127.0.0.1:5000"
PROCESS_LINE = re.compile(r"^\d\d:\d\d:\d\d \S+\s+\| ", re.M)


def wait_until(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {timeout_s:.0f} s")
        time.sleep(0.5)


def healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{APP}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def chart_state(page) -> tuple[int, int, bool]:  # type: ignore[no-untyped-def]
    bars = int(page.locator("#chart").get_attribute("data-bars") or 0)
    traces = page.evaluate("""() => (document.getElementById('chart').data || []).map(
        t => [t.name, Array.from(t.y || []).filter(v => v !== null && v !== undefined).length])""")
    sma = next((n for name, n in traces if name == "SMA 20"), 0)
    band = any(name.startswith("Forecast interval") for name, _ in traces)
    return bars, sma, band


def main(argv: list[str]) -> int:
    log = Path(argv[0])
    shots = Path(argv[1]) if len(argv) > 1 else Path("var/screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    read = lambda: log.read_text(errors="replace") if log.exists() else ""  # noqa: E731
    wait_until(lambda: PROCESS_LINE.search(read()), 900, "honcho to start the processes")
    started = time.monotonic()
    demo = wait_until(lambda: re.search(r"demo account(?:: (\S+) / (\S+)| \S+ exists)", read()), 10,
                      "the demo account line")
    if demo.group(1) is None:
        raise SystemExit("the demo account existed already: time a `make run` from a clean var/ (see above)")
    email, password = demo.groups()
    wait_until(healthy, 300, "the web app")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{APP}/login")
        page.fill("#email", email)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/dashboard"))
        while True:
            page.goto(f"{APP}/symbols/AAPL")
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(1500)  # Plotly draws after the data arrives
            bars, sma, band = chart_state(page)
            elapsed = time.monotonic() - started
            print(f"{elapsed:6.1f} s  bars={bars} sma20={sma} forecast band={band}", flush=True)
            if bars >= 100 and sma >= 80 and band:
                break
            if elapsed > 600:
                raise SystemExit("the chart never filled in")
            time.sleep(3)
        page.screenshot(path=str(shots / "make-run-aapl.png"), full_page=True)
        browser.close()
    print(f"history, SMA 20 and a forecast band on the demo AAPL chart {elapsed:.1f} s after the processes started "
          f"(aim: 90 s)")
    return 0 if elapsed <= 90 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
