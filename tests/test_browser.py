"""End to end in Debian's Chromium through Playwright: pick an example, Generate, watch the video play,
click another garment, see the switch in the event log, Stop. Keeps a screenshot in test-artifacts/."""

import json
import shutil
import time
from pathlib import Path

import pytest

from app_server import ROOT, running_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = ROOT / "test-artifacts"


def test_generate_switch_stop_in_a_real_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is installed by scripts/setup.sh --dev"
    ARTIFACTS.mkdir(exist_ok=True)
    with running_app() as (url, _), sync_playwright() as p:              # the app's defaults: the shipped model
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.locator("#person-examples .gallery-item").first.click()
        page.locator("#person img").first.wait_for(timeout=30_000)
        page.locator("#garments .gallery-item").first.click()
        page.locator("#selected-garment img").first.wait_for(timeout=30_000)
        page.wait_for_timeout(500)
        t_click = time.time()
        page.locator("#generate").click()
        page.wait_for_function("() => { const v = document.querySelector('#video video');"
                               " return v && v.currentTime > 0; }", timeout=90_000)
        first_visible = time.time() - t_click
        page.wait_for_function("() => document.querySelector('#status').innerText.includes('frames: 2')",
                               timeout=60_000)
        t_switch = time.time()
        page.locator("#garments .gallery-item").nth(3).click()
        page.wait_for_function("() => document.querySelector('#status').innerText.includes('took effect at frame')",
                               timeout=60_000)
        switch_logged = time.time() - t_switch
        page.screenshot(path=str(ARTIFACTS / "browser_switch.png"), full_page=True)
        played = page.evaluate("() => document.querySelector('#video video').currentTime")
        page.locator("#stop").click()
        page.wait_for_function("() => { const s = document.querySelector('#status').innerText;"
                               " return s.includes('stopped') || s.includes('Done'); }", timeout=60_000)
        status = page.locator("#status").inner_text()
        browser.close()
    assert "switch to garment_3" in status
    assert played > 0
    (ARTIFACTS / "browser_timings.json").write_text(json.dumps(
        {"generate_to_first_visible_frame_s": first_visible, "switch_click_to_logged_s": switch_logged,
         "played_seconds_at_switch": played}, indent=2))
