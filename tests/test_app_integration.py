"""The app served on 127.0.0.1 with its default (embedded) checkpoint, driven by two gradio_client clients at
once; the streamed HLS segments are fetched and decoded with PyAV, and the garment region's colour is read
with the world's record of the example person."""

import io
from pathlib import Path
import threading
import urllib.request

import av
import numpy as np
import pytest
from gradio_client import Client, handle_file

from app_server import client_run, running_app, served_preset
from fashionchameleon.app.state import examples
from fashionchameleon.data.world import spec_for_seed
from fashionchameleon.eval.switchbench import free_running_leakage

PRESET = served_preset()                                          # what the app serves
EX = examples(PRESET.world_size, version=PRESET.world_version)  # the app's own examples


@pytest.fixture(scope="module")
def server():
    with running_app({"FC_MAX_ACTIVE": "2"}) as (url, proc):      # the app's defaults: the shipped model
        yield url


def leakage_curve(frames: list[np.ndarray], new: int, old: int) -> np.ndarray:
    """Per frame: how much the garment region of example person 0 looks like example garment ``old`` rather
    than ``new`` (0 = fully the new garment, 1 = the old one), read at model resolution."""
    from PIL import Image

    v = PRESET.world_version
    small = np.stack([np.asarray(Image.fromarray(f).resize(PRESET.resolution, Image.BILINEAR)) for f in frames])
    # example person 0 and example garments k (see fashionchameleon.app.state.examples)
    new_g, old_g = (spec_for_seed(910_000 + k, version=v).garments[0] for k in (new, old))
    return free_running_leakage(small, spec_for_seed(900_000, version=v), new_g, old_g)


def fetch_frames(playlist_url: str) -> list[np.ndarray]:
    text = urllib.request.urlopen(playlist_url, timeout=30).read().decode()
    base = playlist_url.rsplit("/", 1)[0]
    frames = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            data = urllib.request.urlopen(f"{base}/{line}", timeout=30).read()
            with av.open(io.BytesIO(data)) as c:
                frames += [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return frames


def test_two_clients_stream_and_switch_without_cross_talk(server):
    ex = EX
    results = {}
    # the clients live until their videos are fetched: gradio drops a session's streams when its client's
    # heartbeat ends (a client dropped at the end of its thread made the playlist 404 now and then)
    clients = {name: Client(server, verbose=False, download_files=False) for name in ("a", "b")}

    def run(name, switch_to, seed):
        results[name] = client_run(server, ex, switch_to, seed, client=clients[name])

    threads = [threading.Thread(target=run, args=("a", 1, 0)), threading.Thread(target=run, args=("b", None, 5))]
    [t.start() for t in threads]
    [t.join(300) for t in threads]
    (status_a, playlist_a), (status_b, playlist_b) = results["a"], results["b"]
    assert "switch to garment_1: took effect at frame" in status_a[-1]
    assert "switch" not in status_b[-1] and "garment: garment_0" in status_b[-1]
    frames_a, frames_b = fetch_frames(playlist_a), fetch_frames(playlist_b)
    assert len(frames_a) == 48 and len(frames_b) == 48           # 3 s at 16 fps, every segment decodable
    w, h = PRESET.resolution
    assert frames_a[0].shape == (512, round(w * 512 / h / 2) * 2, 3)  # upscaled for display, aspect kept
    # after the logged switch frame A's garment region moves to garment 1; B keeps wearing garment 0
    switch = int(status_a[-1].split("took effect at frame ")[1].split()[0])
    leak_a = leakage_curve(frames_a, new=1, old=0)
    leak_b = leakage_curve(frames_b, new=1, old=0)
    before, after = np.nanmean(leak_a[:switch]), np.nanmean(leak_a[switch + 8:])
    after_b = np.nanmean(leak_b[switch + 8:])
    print(f"leakage A before {before:.3f} after {after:.3f}; B over the same frames {after_b:.3f}")
    assert before > 0.5 and after_b > 0.5                         # both start in garment 0; B stays in it
    assert after < before - 0.05 and after < after_b - 0.05, (before, after, after_b)
    # B's video is B's alone: the same request again (same seed, no switch) gives the same picture
    clients["b2"] = Client(server, verbose=False, download_files=False)
    status_b2, playlist_b2 = client_run(server, ex, None, 5, client=clients["b2"])
    again = fetch_frames(playlist_b2)
    assert np.abs(np.stack(again).astype(int) - np.stack(frames_b).astype(int)).mean() < 2.0


def test_stop_and_bad_input_over_the_api(server):
    ex = EX
    c = Client(server, verbose=False, download_files=False)
    assert "Nothing is running" in c.predict(api_name="/stop")
    with pytest.raises(Exception, match="Press Generate first"):
        c.predict(handle_file(ex.garments[1]), api_name="/switch")
    job = c.submit(handle_file(ex.persons[0]), handle_file(ex.garments[0]), "walk", 0, 20, api_name="/generate")
    stopped = False
    for _, status in job:
        if "frames: 9 " in status and not stopped:
            assert "Stopping" in c.predict(api_name="/stop")
            c.predict(api_name="/stop")                            # twice is harmless
            stopped = True
    assert "Run ended: stopped at frame" in job.outputs()[-1][1]
    with pytest.raises(Exception):
        c.predict(None, handle_file(ex.garments[0]), "walk", 0, 3, api_name="/generate")
    # and the app keeps serving
    assert "Done" in c.predict(handle_file(ex.persons[0]), handle_file(ex.garments[0]), "walk", 0, 2,
                               api_name="/generate")[1]


def test_compare_over_the_api_streams_panels_side_by_side(server):
    ex = EX
    c = Client(server, verbose=False, download_files=False)
    job = c.submit(handle_file(ex.persons[0]), handle_file(ex.garments[0]), handle_file(ex.garments[1]), "walk", 0,
                   2, 1, api_name="/compare")
    playlist = None
    for video, status in job:
        if video:
            playlist = video["url"]
    final = job.outputs()[-1][1]
    for v in ("full", "naive", "restart"):
        assert f"switch to garment_1 ({v}): took effect at frame 21" in final, final   # 1 s = frame 16 -> 21
    frames = fetch_frames(playlist)
    w, h = PRESET.resolution
    height, width = frames[0].shape[:2]
    assert len(frames) == 32 and width > 2.2 * w / h * height      # three panels: wider than two (titles add height)


def test_files_outside_the_app_folders_cannot_be_read(server):
    import urllib.error

    for path in ("/etc/passwd", str(Path(__file__).resolve()), "../../etc/passwd"):
        try:
            body = urllib.request.urlopen(f"{server}gradio_api/file={path}", timeout=10).read()
        except urllib.error.HTTPError as e:
            assert e.code in (400, 403, 404)
            continue
        assert b"root:" not in body and b"import" not in body
