"""The app's handlers without a browser (AppState over the real streaming runner, on a random micro model:
the model is small and random because these tests check event plumbing, not image quality)."""

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fashionchameleon.app.run import stream_run
from fashionchameleon.app.state import AppState, examples


class Req(SimpleNamespace):
    """Stands in for gr.Request: only the session hash matters to the handlers."""


def device_fn(gen):
    def fn(*args):
        yield from stream_run(gen, *args, display_size=64, segment_seconds=0.75)
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
    final = updates[-1][1]
    n = int(final.split("frames: ")[1].split(" ")[0])
    assert f"Run ended: stopped at frame {n}." in final and f"- stop at frame {n}" in final
    assert "came after the last block" not in final
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
    from fashionchameleon.app import line as service

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


def test_a_bomb_is_refused_by_the_project_loader_without_decoding(app, ex, tmp_path):
    """13,000 x 13,000 pixels in a few hundred KB: the upload widget hands over the path undecoded and the
    loader refuses it from the header, in a process whose peak memory stays small."""
    import subprocess
    import sys

    from gradio.data_classes import ImageData

    from fashionchameleon.app.widgets import ImageFile

    bomb = tmp_path / "bomb.png"
    Image.new("1", (13000, 13000)).save(bomb)
    assert bomb.stat().st_size < 1_000_000
    assert ImageFile().preprocess(ImageData(path=str(bomb), orig_name="bomb.png")) == str(bomb)   # not decoded
    with pytest.raises(Exception, match="too large"):
        next(app.generate(Req(session_hash="bomb"), str(bomb), ex.garments[0], "walk", 0, 3, 30, device_fn(app.gen)))
    code = ("import resource, sys; from fashionchameleon.media import load_image, InputImageError\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"try:\n    load_image({str(bomb)!r}, 'person image')\nexcept InputImageError as e:\n    print(e)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.splitlines()
    assert "too large" in out[0] and int(out[1]) < 100, out      # MiB above the interpreter's own peak


def test_inline_data_urls_are_written_undecoded(tmp_path):
    import base64

    from gradio.data_classes import ImageData

    from fashionchameleon.app.widgets import ImageFile

    raw = b"not an image at all"
    path = ImageFile().preprocess(ImageData(url="data:image/png;base64," + base64.b64encode(raw).decode()))
    assert open(path, "rb").read() == raw
    with pytest.raises(Exception, match="base64"):
        ImageFile().preprocess(ImageData(url="data:image/png;base64,@@@"))


@pytest.mark.parametrize("seed,seconds,needle", [
    (1e30, 3, "Seed must be a whole number"), (float("nan"), 3, "Seed"), (-1, 3, "Seed"), (1.5, 3, "Seed"),
    ("abc", 3, "Seed"), (2**63, 3, "Seed"), (0, float("nan"), "Length must be"), (0, float("inf"), "Length"),
    (0, -2, "Length"), (0, "x", "Length"),
])
def test_bad_numbers_get_a_message(app, ex, seed, seconds, needle):
    with pytest.raises(Exception, match=needle):
        next(app.generate(Req(session_hash="n"), ex.persons[0], ex.garments[0], "walk", seed, seconds, 30,
                          device_fn(app.gen)))
    assert app.queue.waiting == 0 and not app.controllers.get("n").live     # nothing entered the line


def test_largest_seed_runs(app, ex):
    from fashionchameleon.app.state import MAX_SEED, parse_seed

    assert parse_seed(MAX_SEED) == MAX_SEED and parse_seed(7.0) == 7
    final = list(app.generate(Req(session_hash="big"), ex.persons[0], ex.garments[0], "walk", MAX_SEED, 1, 30,
                              device_fn(app.gen)))
    assert final[-1][1].startswith("**Done**")


def test_one_session_cannot_fill_the_line(micro_generator, ex):
    app = AppState(micro_generator, max_active=1, max_waiting=3)
    first = app.generate(Req(session_hash="x"), ex.persons[0], ex.garments[0], "walk", 0, 3, 30, device_fn(micro_generator))
    next(first)                                                           # x holds the only slot
    spam = [app.generate(Req(session_hash="y"), ex.persons[0], ex.garments[0], "walk", k, 3, 30,
                         device_fn(micro_generator)) for k in range(5)]
    for g in spam:
        assert next(g)[1].startswith("Waiting in line: position 1")      # each replaces the one before
    assert app.queue.waiting == 1
    for g in spam[:-1]:
        assert list(g)[-1][1] == "Replaced by a newer Generate from this page."
    other = app.generate(Req(session_hash="z"), ex.persons[0], ex.garments[0], "walk", 0, 3, 30, device_fn(micro_generator))
    assert next(other)[1].startswith("Waiting in line: position 2")       # the line still has room for others
    list(first)
    assert list(spam[-1])[-1][1].startswith("**Done**") and list(other)[-1][1].startswith("**Done**")


def test_switch_and_stop_while_waiting(micro_generator, ex):
    app = AppState(micro_generator, max_active=1, max_waiting=3)
    first = app.generate(Req(session_hash="x"), ex.persons[0], ex.garments[0], "walk", 0, 3, 30, device_fn(micro_generator))
    next(first)
    y = Req(session_hash="y")
    waiting = app.generate(y, ex.persons[0], ex.garments[0], "walk", 0, 3, 30, device_fn(micro_generator))
    assert next(waiting)[1].startswith("Waiting in line")
    assert app.switch(y, ex.garments[2]).startswith("Switch to garment_2 kept: your run is waiting in line")
    z = Req(session_hash="z")
    cancelled = app.generate(z, ex.persons[0], ex.garments[0], "walk", 0, 3, 30, device_fn(micro_generator))
    next(cancelled)
    assert app.stop(z) == "Stopping: the waiting run is cancelled."
    list(first)
    final = list(waiting)[-1][1]
    assert "switch to garment_2: took effect from the first frame" in final and "garment: garment_2" in final
    assert list(cancelled)[-1][1] == "Stopped before it started (the run was waiting in line)."


def test_second_generate_in_a_session_keeps_the_running_runs_folder(micro_generator, ex):
    app = AppState(micro_generator, max_active=2, max_waiting=2)
    req = Req(session_hash="twice")
    a = app.generate(req, ex.persons[0], ex.garments[0], "walk", 0, 6, 30, device_fn(micro_generator))
    next(a), next(a)
    run_a = app.controllers.get("twice").run
    b = app.generate(req, ex.persons[0], ex.garments[0], "walk", 1, 3, 30, device_fn(micro_generator))
    next(b)
    assert run_a.mailbox.is_dir()                     # the old run stops on its own mailbox, not deleted under it
    assert "Run ended: stopped at frame" in list(a)[-1][1]
    assert list(b)[-1][1].startswith("**Done**")
    assert app.controllers.get("twice").current() is None     # the old run's end did not clear the new run


def test_expiry_never_drops_a_session_that_is_starting_a_run(tmp_path, monkeypatch):
    """The race: a request looks its (idle, expired) controller up, an expiry drops it, then the request starts
    its run. The run must start in a fresh controller, in a folder nobody removes, and a live run is kept."""
    from fashionchameleon.app import line

    monkeypatch.setattr(line, "WORK_DIR", tmp_path)
    ctls = line.Controllers()
    stale = ctls.get("s")
    first = stale.new_run()
    stale.end_run(first)
    assert ctls.expire(ttl=10.0, now=first.ended_at + 1) == []           # not old enough
    assert ctls.expire(ttl=10.0, now=first.ended_at + 11) == ["s"]
    assert not stale.folder.exists()
    with pytest.raises(line.ControllerClosed):
        stale.new_run()                                                  # the looked-up controller refuses ...
    ctl, run = ctls.new_run("s")                                         # ... so the run starts in a fresh one
    assert ctl is not stale and ctl is ctls.get("s") and run.mailbox.is_dir()
    assert ctls.expire(ttl=0.0, now=time.time() + 1e6) == []             # a live run is never expired
    assert run.mailbox.is_dir()
    ctl.end_run(run)
    assert ctls.expire(ttl=0.0, now=time.time() + 1) == ["s"] and not run.folder.exists()
    assert list(tmp_path.iterdir()) == []                                # nothing left aside either


def test_expired_and_dropped_folders_are_removed_outside_the_registry_lock(tmp_path, monkeypatch):
    """Removing a big session folder is slow: other sessions must not wait on the registry's lock meanwhile."""
    from fashionchameleon.app import line

    monkeypatch.setattr(line, "WORK_DIR", tmp_path)
    ctls = line.Controllers()
    removed, real_rmtree = [], line.shutil.rmtree

    def rmtree(path, *a, **kw):
        removed.append((Path(path).name, ctls._lock.locked()))
        real_rmtree(path, *a, **kw)

    monkeypatch.setattr(line.shutil, "rmtree", rmtree)
    for key in ("idle", "closing"):
        c, r = ctls.new_run(key)
        (r.out / "segment.mp4").parent.mkdir(parents=True)
        (r.out / "segment.mp4").write_bytes(b"x" * 1000)
        c.end_run(r)
    ctls.drop("closing")
    assert ctls.expire(ttl=0.0, now=time.time() + 1) == ["idle"]
    assert [locked for _, locked in removed] == [False, False] and all(".expired-" in n for n, _ in removed)
    assert list(tmp_path.iterdir()) == []


def test_api_sessions_expire_and_a_closing_run_survives_its_folder(micro_generator, ex):
    app = AppState(micro_generator, max_active=2, max_waiting=2, run_ttl_s=0.0)
    rest = Req(session_hash="rest-client")
    assert list(app.generate(rest, ex.persons[0], ex.garments[0], "walk", 0, 2, 30, device_fn(micro_generator)))
    folder = app.controllers.get("rest-client").folder
    assert folder.is_dir() and app.download_for(rest)
    closing = Req(session_hash="closing-tab")
    g = app.generate(closing, ex.persons[0], ex.garments[0], "walk", 0, 6, 30, device_fn(micro_generator))
    next(g), next(g)                                 # the next Generate expires the ended REST session
    assert not folder.exists() and app.download_for(rest) is None
    app.unload(closing)                              # the tab closes: its folder is removed under the run
    rest_of_run = list(g)                            # ... which ends quietly instead of crashing
    assert all(seg is None or not os.path.exists(seg) for seg, _ in rest_of_run)


def compare_fn(gen):
    from fashionchameleon.app.compare import stream_compare

    def fn(*args):
        yield from stream_compare(gen, *args, display_height=64)
    return fn


def test_compare_streams_labelled_panels_side_by_side(app, ex):
    import av

    req = Req(session_hash="cmp")
    updates = list(app.compare(req, ex.persons[0], ex.garments[0], ex.garments[1], "walk", 0, 4, 1.5, 30,
                               compare_fn(app.gen)))
    segs = [seg for seg, _ in updates if seg]
    with av.open(segs[0]) as c:
        frame = next(c.decode(video=0))
    assert frame.width > 2 * frame.height                       # three panels, wider than tall
    final = updates[-1][1]
    assert "frames: 64 per panel" in final
    for v in ("full", "naive", "restart"):
        assert f"switch to garment_1 ({v}): took effect at frame 33" in final   # the first block start >= 24
    with pytest.raises(Exception, match="Switch time must be"):
        next(app.compare(req, ex.persons[0], ex.garments[0], ex.garments[1], "walk", 0, 4, 9, 30, compare_fn(app.gen)))


def test_compare_stops_all_panels(app, ex):
    req = Req(session_hash="cmp-stop")

    def stop_early(k, upd):
        if k == 2:
            app.stop(req)
    updates = []
    for k, upd in enumerate(app.compare(req, ex.persons[0], ex.garments[0], ex.garments[1], "walk", 0, 20, 10, 30,
                                        compare_fn(app.gen))):
        updates.append(upd)
        stop_early(k, upd)
    assert "Run ended: stopped at frame" in updates[-1][1] and len(updates) < 8


def test_first_segment_is_one_block_later_ones_longer(micro_generator, ex, tmp_path):
    import av

    from fashionchameleon.media import load_image

    updates = list(stream_run(micro_generator, load_image(ex.persons[0]), load_image(ex.garments[0]), "g", "walk", 0,
                              80, tmp_path / "box", tmp_path / "out", display_size=64, segment_seconds=1.5))
    counts = []
    for upd in updates[:-1]:
        with av.open(upd.segment) as c:
            counts.append(sum(1 for _ in c.decode(video=0)))
    assert counts == [9, 24, 24, 23] and updates[-1].frames == 80     # 9 | 12+12 | 12+12 | 12+11 frames


def test_examples_follow_the_models_world_and_framing(micro_assets):
    """A world-v2 (portrait) model gets world-v2 examples at its own size, recognised as examples (no warning)."""
    from fashionchameleon.model.codec import load_codec
    from fashionchameleon.streaming.generator import StreamingGenerator

    gen = StreamingGenerator.random("micro-v2", load_codec(micro_assets[1]))
    ex2 = examples(gen.preset.world_size, persons=2, garments=2, version=gen.preset.world_version)
    assert ex2.root.name == "v2-32x48" and ex2.root != examples(32).root
    for path in ex2.persons + ex2.garments:
        assert np.asarray(Image.open(path)).shape == (48, 32, 3)
    from fashionchameleon.app.state import _digest

    assert all(_digest(gen.person_image(np.asarray(Image.open(p).convert("RGB")))) in ex2.hashes for p in ex2.persons)
