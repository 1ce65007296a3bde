"""The dashboard in a real browser: headless Chromium driven by Playwright.

Loads /ui against the session stack, waits for live workers, submits a
chat in the playground and sees the streamed answer, sees a job reach its
final state in the job list; the screenshot lands in
test-artifacts/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.stackutil import REPO

pytestmark = pytest.mark.stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = REPO / "test-artifacts" / "dashboard.png"


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        if os.environ.get("HEARTH_SKIP_BROWSER") == "1":
            pytest.skip("HEARTH_SKIP_BROWSER=1: no browser on this machine")
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install chromium "
            "(or set HEARTH_SKIP_BROWSER=1 to skip the browser test)"
        )
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def test_playground_streams_and_jobs_finish(
    page, hearth_url, api_key, chat_model, embedding_model
):
    page.goto(f"{hearth_url}/ui")

    page.locator("#workers tbody tr", has_text=chat_model).first.wait_for()
    page.locator("#queues tbody tr", has_text=chat_model).first.wait_for()
    page.select_option("#chat-model", chat_model)
    page.fill("#prompt", "Say hello to the lighthouse keeper.")
    page.fill("#max-tokens", "24")
    page.click("#send")

    state = page.locator("#answer-state")
    state.filter(has_text="done").wait_for(timeout=120_000)
    assert page.locator("#answer").inner_text().strip()
    assert "chunks" in state.inner_text()
    # The finished request shows in the recent requests on the next refresh.
    page.locator("#requests tbody tr", has_text="/v1/chat/completions").first.wait_for()

    # A job shows up in the job list and reaches its final state there.
    job = httpx.post(
        f"{hearth_url}/v1/jobs",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"request": {"model": embedding_model, "input": ["a lighthouse"]}},
    ).json()
    row = page.locator("#jobs tbody tr", has_text=job["id"])
    row.filter(has_text="succeeded").wait_for(timeout=120_000)
    row.click()
    page.locator("#job-detail", has_text=job["id"]).wait_for()

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 0
