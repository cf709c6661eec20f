"""The app's handlers without a browser (AppState over the real streaming runner, on a random micro model:
the model is small and random because these tests check event plumbing, not image quality)."""

import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fashionchameleon.app_support import AppState, examples
from fashionchameleon.streaming.runner import stream_run


class Req(SimpleNamespace):
    """Stands in for gr.Request: only the session hash matters to the handlers."""


def device_fn(gen):
    def fn(*args):
        yield from stream_run(gen, *args, display_size=64)
    return fn


@pytest.fixture
def app(micro_generator):
    return AppState(micro_generator, max_active=1, max_waiting=2)


@pytest.fixture(scope="module")
def ex():
    return examples(32)


def run_all(app, req, ex, seconds=3, garment=None, on_chunk=None):
    updates = []
    for k, (seg, status) in enumerate(app.generate(req, ex.persons[0], garment or ex.garments[0], "walk", 0, seconds,
                                                   30, device_fn(app.gen))):
        updates.append((seg, status))
        if on_chunk:
            on_chunk(k, seg, status)
    return updates


def test_switch_applies_at_the_next_block_and_latest_wins(app, ex):
    req = Req(session_hash="a")

    def clicks(k, seg, status):
        if k == 2:   # the first video segment is out: click three garments quickly
            app.switch(req, ex.garments[1])
            app.switch(req, ex.garments[2])
            app.switch(req, ex.garments[3])

    updates = run_all(app, req, ex, on_chunk=clicks)
    final = updates[-1][1]
    assert "switch to garment_3: took effect at frame 21" in final
    assert final.count("skipped (a later click won)") == 2
    assert "Run ended: reached the run cap of 48 frames." in final
    assert app.download_for(req).endswith(".mp4")


def test_a_click_after_the_last_block_is_reported_not_lost(app, ex):
    req = Req(session_hash="late")

    def late_click(k, seg, status):
        if "Streaming** - frames: 48" in status:   # the last block is out; the run is about to end
            app.switch(req, ex.garments[1])

    final = run_all(app, req, ex, on_chunk=late_click)[-1][1]
    assert "switch to garment_1: came after the last block (the run had ended)" in final
    assert "skipped" not in final and "garment: garment_0" in final


def test_stop_and_stop_twice(app, ex):
    req = Req(session_hash="b")
    assert app.stop(req) == "Nothing is running."

    def stop_early(k, seg, status):
        if k == 1:
            assert app.stop(req) == "Stopping ..."
            app.stop(req)

    updates = run_all(app, req, ex, seconds=20, on_chunk=stop_early)
    assert "Run ended: stopped." in updates[-1][1]
    assert sum(1 for seg, _ in updates if seg) <= 3
    assert app.stop(req) == "Nothing is running."
    assert "frames: 48" in run_all(app, req, ex)[-1][1]   # and a normal run right after


def test_switch_before_generate(app, ex):
    with pytest.raises(Exception, match="Press Generate first"):
        app.switch(Req(session_hash="c"), ex.garments[1])
    assert app.switch(Req(session_hash="c"), ex.garments[1], only_if_running=True).startswith("Garment selected")


def test_two_sessions_do_not_cross_talk(micro_generator, ex):
    app = AppState(micro_generator, max_active=2, max_waiting=2)
    a, b = Req(session_hash="A"), Req(session_hash="B")
    out = {}

    def run(req, name, switch):
        def cb(k, seg, status):
            if switch and k == 2:
                app.switch(req, ex.garments[2])
        out[name] = run_all(app, req, ex, on_chunk=cb)[-1][1]

    threads = [threading.Thread(target=run, args=(a, "a", True)), threading.Thread(target=run, args=(b, "b", False))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert "switch to garment_2" in out["a"] and "switch" not in out["b"]
    assert "garment: garment_0" in out["b"]


def test_waiting_line_reports_position(micro_generator, ex):
    app = AppState(micro_generator, max_active=1, max_waiting=1)
    first = app.generate(Req(session_hash="x"), ex.persons[0], ex.garments[0], "walk", 0, 3, 30, device_fn(micro_generator))
    next(first)                                   # x holds the only slot
    second = app.generate(Req(session_hash="y"), ex.persons[0], ex.garments[0], "walk", 0, 3, 30,
                          device_fn(micro_generator))
    seg, status = next(second)
    assert seg is None and status.startswith("Waiting in line: position 1")
    third = app.generate(Req(session_hash="z"), ex.persons[0], ex.garments[0], "walk", 0, 3, 30,
                         device_fn(micro_generator))
    with pytest.raises(Exception, match="waiting line is full"):
        next(third)
    list(first)                                   # x finishes, y gets the slot
    assert list(second)[-1][1].startswith("**Done**")


@pytest.mark.parametrize("case,needle", [
    ("no_person", "person photo"), ("no_garment", "Pick a garment"), ("not_image", "not an image"),
    ("corrupt", "truncated"), ("bomb", "too large"), ("tiny", "too small"), ("motion", "Unknown motion"),
])
def test_bad_inputs_get_a_clear_message(app, ex, tmp_path, case, needle):
    person, garment, motion = ex.persons[0], ex.garments[0], "walk"
    if case == "no_person":
        person = None
    elif case == "no_garment":
        garment = None
    elif case == "not_image":
        (tmp_path / "x.png").write_text("hello")
        person = str(tmp_path / "x.png")
    elif case == "corrupt":
        data = open(ex.garments[0], "rb").read()
        (tmp_path / "c.png").write_bytes(data[: len(data) // 2])
        garment = str(tmp_path / "c.png")
    elif case == "bomb":
        Image.new("1", (9000, 9000)).save(tmp_path / "bomb.png")
        person = str(tmp_path / "bomb.png")
    elif case == "tiny":
        Image.new("RGB", (4, 4)).save(tmp_path / "t.png")
        person = str(tmp_path / "t.png")
    elif case == "motion":
        motion = "moonwalk"
    with pytest.raises(Exception, match=needle):
        next(app.generate(Req(session_hash="bad"), person, garment, motion, 0, 3, 30, device_fn(app.gen)))
    assert "frames: 48" in run_all(app, Req(session_hash="bad"), ex)[-1][1]   # the app keeps serving


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16"])
def test_unusual_image_modes_run(app, ex, tmp_path, mode):
    img = Image.open(ex.persons[1]).convert("RGB")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)   # 16-bit grayscale
        assert img.mode.startswith("I;16")
    else:
        img = img.convert(mode)
    img.save(tmp_path / "p.png")
    final = list(app.generate(Req(session_hash="m"), str(tmp_path / "p.png"), ex.garments[0], "walk", 0, 2, 30,
                              device_fn(app.gen)))
    assert final[-1][1].startswith("**Done**")


def test_many_switch_clicks_and_unload(app, ex):
    req = Req(session_hash="spam")

    def spam(k, seg, status):
        if k == 2:
            t0 = time.time()
            for i in range(200):
                app.switch(req, ex.garments[i % 4])
            assert time.time() - t0 < 10

    final = run_all(app, req, ex, on_chunk=spam)[-1][1]
    assert final.count("took effect") == 1 and final.count("skipped") == 199
    app.unload(req)
    assert app.download_for(req) is None


@pytest.mark.parametrize("attack", ["relative", "absolute", "odd"])
def test_path_like_session_ids_leave_a_victim_folder_untouched(app, ex, tmp_path, attack):
    from fashionchameleon.streaming import service

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    work = service.WORK_DIR.resolve()
    key = {"relative": os.path.relpath(victim, work), "absolute": str(victim), "odd": "\x00/" + "x" * 5000}[attack]
    req = Req(session_hash=key)
    assert "frames: 48" in run_all(app, req, ex)[-1][1]
    app.unload(req)
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert (victim / "precious.txt").read_text() == "keep me"
    folder = service.session_dir(key)
    assert folder.parent == work and ".." not in folder.name and "/" not in folder.name
