"""The gateway's debate page in a real browser: Debian's Chromium driven by Playwright.

Screenshots go to ``.agon-test/artifacts/`` (AGON_TEST_ARTIFACTS), kept after the run.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from helpers import gateway_fleet

pytestmark = pytest.mark.integration

KEY = f"agon_browser-{uuid.uuid4().hex}"
ROUNDS = 3
ARTIFACTS = Path(
    os.environ.get("AGON_TEST_ARTIFACTS", Path(__file__).parents[2] / ".agon-test" / "artifacts")
)
# the flags this machine's closed network needs (no background connections to Google)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    for path in (
        "/usr/lib/chromium/chromium",
        shutil.which("chromium") or "",
        shutil.which("chromium-browser") or "",
    ):
        if path and os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture(scope="module")
def site(kafka_bootstrap, tmp_path_factory):
    with gateway_fleet(
        kafka_bootstrap,
        tmp_path_factory.mktemp("pages"),
        {KEY: "browser"},
        AGON_LLM_OFFLINE_LATENCY_S="0.4",  # slow enough to reload in the middle
    ) as (_, url):
        yield url


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium in CI: .ci/run installs Debian's chromium as root")
        pytest.skip("no Chromium: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        yield browser
        browser.close()


def open_page(browser, site, **context):
    page = browser.new_context(**context).new_page()
    page.goto(site)
    page.evaluate("key => localStorage.setItem('agon-key', key)", KEY)
    page.reload()
    return page


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def turns(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#turns .turn",
        "els => els.map(e => ({id: e.dataset.turn, side: e.classList.contains('for') ? 'for' : 'against'}))",
    )


def test_a_debate_started_from_the_form_by_keyboard_shows_every_turn_and_its_end(browser, site):
    page = open_page(browser, site)
    assert page.eval_on_selector_all("input", "els => els.every(e => e.labels.length > 0)"), (
        "every field is labelled"
    )
    page.focus("#motion")
    page.keyboard.type("Cats beat dogs")
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type(str(ROUNDS))
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_selector("#ending:not([hidden])", timeout=60_000)
    got = turns(page)
    assert len(got) == 2 * ROUNDS and len({t["id"] for t in got}) == len(got)
    assert [t["side"] for t in got] == ["for", "against"] * ROUNDS, "Team A and Team B apart"
    assert "rounds" in page.inner_text("#ending-title") and page.inner_text("#ending-summary")
    assert "?debate=" in page.url, "the URL names the debate"
    shot(page, "debate-ended")


def test_a_reload_in_the_middle_loses_and_doubles_nothing(browser, site):
    page = open_page(browser, site)
    page.fill("#motion", "Tea beats coffee")
    page.fill("#rounds", str(ROUNDS))
    page.click("#go")
    page.wait_for_function("document.querySelectorAll('#turns .turn').length >= 2", timeout=60_000)
    shot(page, "debate-before-reload")
    page.reload()
    page.wait_for_selector("#ending:not([hidden])", timeout=60_000)
    got = turns(page)
    ids = [t["id"] for t in got]
    assert len(ids) == 2 * ROUNDS and len(set(ids)) == len(ids), ids
    assert ids == sorted(ids, key=lambda i: (int(i.split(":")[1]), i.split(":")[2])), "in order"
    shot(page, "debate-after-reload")


def test_the_page_fits_a_phone(browser, site):
    page = open_page(browser, site, viewport={"width": 375, "height": 740}, is_mobile=True)
    page.fill("#motion", "Small screens deserve care")
    page.fill("#rounds", "1")
    page.click("#go")
    page.wait_for_selector("#ending:not([hidden])", timeout=60_000)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow} px of horizontal scrolling"
    shot(page, "debate-phone")


def test_a_wrong_key_is_said_plainly(browser, site):
    page = browser.new_context().new_page()
    page.goto(site)
    page.fill("#key", "agon_wrong")
    page.fill("#motion", "Nobody will hear this")
    page.click("#go")
    page.wait_for_function("document.querySelector('#status').classList.contains('error')", timeout=10_000)
    assert "API key" in page.inner_text("#status")


def test_the_operations_page_lists_every_agent_and_refreshes(browser, site):
    page = open_page(browser, site)
    page.goto(f"{site}/ops")
    page.wait_for_function("document.querySelectorAll('#agents tbody tr').length === 3", timeout=30_000)
    page.wait_for_function(
        "document.querySelector('#status').textContent.startsWith('Read at')", timeout=60_000
    )
    first = page.inner_text("#status")
    page.wait_for_function(
        f"document.querySelector('#status').textContent !== {json.dumps(first)}", timeout=30_000
    )
    rows = page.eval_on_selector_all("#agents tbody tr", "rs => rs.map(r => r.cells[0].textContent)")
    assert rows == ["moderator", "team-a", "team-b"]
    shot(page, "operations")
