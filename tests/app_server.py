"""Start app.py on a free loopback port for a test, and stop it afterwards."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def served_preset():
    """The preset of the checkpoint app.py serves by default (its resolution and world set the examples)."""
    from fashionchameleon.config import Preset
    from fashionchameleon.model.loading import read_checkpoint_config
    from fashionchameleon.streaming.generator import DEFAULT_CHECKPOINT

    return Preset.from_dict(read_checkpoint_config(DEFAULT_CHECKPOINT)["preset"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(env: dict | None = None, timeout: float = 300):
    port = free_port()
    full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": os.environ.get("FC_TEST_THREADS", "2"),
                **(env or {})}
    log = open(ROOT / ".pytest_cache" / f"app_{port}.log", "w") if (ROOT / ".pytest_cache").exists() else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except Exception:
                if time.time() > deadline:
                    raise TimeoutError("app.py did not come up")
                time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def client_run(url: str, ex, switch_to: int | None = None, seed: int = 0, seconds: int = 3, person: int = 0,
               client=None) -> tuple[list[str], str | None]:
    """One generation of example ``person`` in example garment 0 over the API, switching to example garment
    ``switch_to`` once the first block is out; returns the status texts and the HLS playlist URL."""
    from gradio_client import Client, handle_file

    c = client or Client(url, verbose=False, download_files=False)
    job = c.submit(handle_file(ex.persons[person]), handle_file(ex.garments[0]), "walk", seed, seconds,
                   api_name="/generate")
    statuses, playlist, switched = [], None, False
    for video, status in job:
        statuses.append(status)
        if video:
            playlist = video["url"]
        if switch_to is not None and not switched and "frames: 9 " in status:
            ack = c.predict(handle_file(ex.garments[switch_to]), api_name="/switch")
            assert "queued" in ack, ack
            switched = True
    return statuses, playlist
