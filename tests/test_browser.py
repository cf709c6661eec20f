"""End to end in Debian's Chromium through Playwright: pick an example, Generate, watch the video play,
click another garment, see the switch in the event log, Stop. Keeps a screenshot in test-artifacts/."""

import json
import shutil
import time
from pathlib import Path


from app_server import ROOT, running_app, served_preset

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
        page.wait_for_function("() => { const m = document.querySelector('#status').innerText.match(/frames: (\\d+)/);"
                               " return m && parseInt(m[1]) >= 21; }", timeout=60_000)
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


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


def test_playback_over_a_slow_network_and_the_compare_tab():
    """Chromium's network emulation (150 ms latency, 2 Mbit/s down, through the DevTools protocol): a 10 s run
    is played while the video element's `waiting` events (stalls) are counted; then the compare tab streams
    three labelled panels with the switch reported per panel."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with running_app() as (url, _), sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 150,
                                                      "downloadThroughput": 2_000_000 / 8,
                                                      "uploadThroughput": 2_000_000 / 8})
        page.goto(url)
        page.locator("#person-examples .gallery-item").first.click()
        page.locator("#person img").first.wait_for(timeout=60_000)
        page.locator("#garments .gallery-item").first.click()
        page.locator("#selected-garment img").first.wait_for(timeout=60_000)
        page.evaluate("() => { window.__stalls = 0; window.__playing = false;"
                      " document.addEventListener('playing', () => { window.__playing = true; }, true);"
                      " document.addEventListener('waiting', () => { if (window.__playing) window.__stalls++; }, true); }")
        box = page.locator("#tryon-tab input[type=number]").last          # the length slider's number box
        box.fill("10")
        box.press("Enter")
        t_click = time.time()
        page.locator("#generate").click()
        page.wait_for_function("() => { const v = document.querySelector('#video video');"
                               " return v && v.currentTime > 0; }", timeout=120_000)
        first_visible = time.time() - t_click
        page.wait_for_function("() => document.querySelector('#status').innerText.includes('Done')", timeout=180_000)
        page.wait_for_timeout(3000)            # let the player reach the end of what it has
        stalls = page.evaluate("() => window.__stalls")
        played = page.evaluate("() => document.querySelector('#video video').currentTime")
        (ARTIFACTS / "browser_network.json").write_text(json.dumps(
            {"latency_ms": 150, "down_mbit_s": 2, "run_seconds": 10, "stalls_after_first_frame": stalls,
             "generate_to_first_visible_frame_s": round(first_visible, 2), "played_seconds": round(played, 2)},
            indent=2))

        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                      "uploadThroughput": -1})
        page.locator("button[role=tab]", has_text="Compare switch strategies").click()
        page.locator("#compare-go").click()
        w, h = served_preset().resolution           # three panels side by side: wider than two
        page.wait_for_function("() => { const v = document.querySelector('#compare-video video');"
                               f" return v && v.currentTime > 0 && v.videoWidth > {2.2 * w / h:.3f} * v.videoHeight; }}",
                               timeout=180_000)
        page.wait_for_function("() => document.querySelector('#compare-status').innerText.includes('Done')",
                               timeout=240_000)
        compare_status = page.locator("#compare-status").inner_text()
        page.screenshot(path=str(ARTIFACTS / "browser_compare.png"), full_page=True)
        browser.close()
    assert played > 5, played
    # measured 1-3 with the default one-block segments (3 with 1.5 s ones) here, 5 once in CI (2 shared cores:
    # generation barely keeps ahead of playback); a player that stalls at every segment would count 13
    assert stalls <= 6, f"{stalls} stalls in a 10 s run over a 150 ms / 2 Mbit/s link"
    for v in ("full", "naive", "restart"):
        assert f"({v}): took effect at frame" in compare_status, compare_status
