"""The dashboard in a real browser: headless Chromium driven by Playwright.

Loads /ui against the session stack, waits for live workers, submits a
chat in the playground and sees the streamed answer, then runs the same
chat as a job and watches it go queued, running (with its token count) and
succeeded, in the followed job's timeline and in the job list. The
screenshot lands in test-artifacts/dashboard.png, also when the test fails,
and its path is printed and recorded as the test's ``screenshot`` property.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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


# A prompt that keeps a small model writing, so the job runs for a while.
STORY = "Write a long story about a lighthouse keeper and the sea."


def test_playground_streams_and_jobs_move_through_states(
    page, hearth_url, chat_model, request, capsys
):
    try:
        _stream_and_follow_a_job(page, hearth_url, chat_model)
    finally:
        # Also on failure: the page as it was is the best clue.
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        request.node.user_properties.append(("screenshot", str(SCREENSHOT)))
        with capsys.disabled():
            print(f"\ndashboard screenshot: {SCREENSHOT}")
    assert SCREENSHOT.stat().st_size > 0


def _stream_and_follow_a_job(page, hearth_url, chat_model):
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

    # The same chat as a durable job: the page follows its events, and each
    # state shows while the job is in it.
    page.fill("#prompt", STORY)
    page.fill("#max-tokens", "48")
    page.click("#send-job")
    following = page.locator("#job-follow-state")
    following.filter(has_text="running").wait_for(timeout=120_000)
    job_id = page.locator("#job-follow-id").inner_text()
    assert job_id.startswith("job_")
    page.locator("#job-follow-progress", has_text="tokens").wait_for(timeout=120_000)
    following.filter(has_text="succeeded").wait_for(timeout=120_000)

    timeline = page.locator("#job-timeline li").evaluate_all(
        "items => items.map((item) => item.dataset.state)"
    )
    assert timeline == ["queued", "running", "succeeded"]
    # The job list and the detail view agree.
    row = page.locator("#jobs tbody tr", has_text=job_id)
    row.filter(has_text="succeeded").wait_for(timeout=30_000)
    page.locator("#job-detail", has_text='"state": "succeeded"').wait_for()
