"""What the app needs around a Session: a fair waiting line, one controller per browser session, runs that
stream H.264 segments, and clean-up. Kept out of ``app.py`` so the app only wires widgets and so this part
is tested without a browser.

Events reach a run through a folder mailbox (``DirChannel``): on ZeroGPU the generating function runs in
a forked child process, where an in-process queue would never see a click.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .session import DirChannel, Event

WORK_DIR = Path(tempfile.gettempdir()) / "fashionchameleon-app"


def session_dir(key: str, root: Path | None = None) -> Path:
    """A session's work folder. The session id comes from the client, so it never becomes a path itself: the
    folder is named by a hash of it, and the resolved result must sit directly under the app's folder."""
    base = Path(root or WORK_DIR).resolve()
    name = hashlib.sha256(str(key).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    path = (base / name).resolve()
    if path.parent != base:
        raise ValueError(f"session folder {path} escapes {base}")
    return path


class QueueFull(RuntimeError):
    pass


class RunQueue:
    """At most ``max_active`` runs at once; the others wait in FIFO order and can see their place."""

    def __init__(self, max_active: int = 1, max_waiting: int = 8):
        self.max_active, self.max_waiting = max_active, max_waiting
        self._cond = threading.Condition()
        self._active: set[str] = set()
        self._waiting: list[str] = []

    def enter(self) -> str:
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"the waiting line is full ({self.max_waiting} runs); please try again in a minute")
            ticket = uuid.uuid4().hex
            self._waiting.append(ticket)
            return ticket

    def position(self, ticket: str) -> int:
        """0 once the run may start, else its place in line (1 = next)."""
        with self._cond:
            if ticket in self._active:
                return 0
            return self._waiting.index(ticket) + 1 if ticket in self._waiting else -1

    def wait(self, ticket: str, timeout: float) -> int:
        """Wait up to ``timeout`` s for a slot; returns the place in line (0 = running now)."""
        with self._cond:
            deadline = time.monotonic() + timeout
            while True:
                if self._waiting and self._waiting[0] == ticket and len(self._active) < self.max_active:
                    self._waiting.pop(0)
                    self._active.add(ticket)
                    self._cond.notify_all()
                    return 0
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._waiting.index(ticket) + 1
                self._cond.wait(left)

    def leave(self, ticket: str) -> None:
        with self._cond:
            self._active.discard(ticket)
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            self._cond.notify_all()

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)


@dataclass
class Controller:
    """One browser session: its current run's mailbox and what the UI shows about it."""

    key: str
    run_id: str | None = None
    mailbox: Path | None = None
    current_garment: str = ""
    log: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def folder(self) -> Path:
        return session_dir(self.key)

    def start_run(self) -> Path:
        with self.lock:
            # earlier runs' segments are no longer needed (Gradio copied what it serves into its cache)
            shutil.rmtree(self.folder, ignore_errors=True)
            self.run_id = uuid.uuid4().hex[:10]
            self.mailbox = self.folder / self.run_id / "mailbox"
            self.mailbox.mkdir(parents=True, exist_ok=True)
            return self.mailbox

    def end_run(self) -> None:
        with self.lock:
            self.run_id = None

    @property
    def running(self) -> bool:
        return self.run_id is not None

    def post_switch(self, garment: np.ndarray, label: str) -> str:
        with self.lock:
            if not self.running or self.mailbox is None:
                raise RuntimeError("press Generate first: there is no video to switch the garment of")
            ev = Event("switch", garment, label)
            DirChannel(self.mailbox).post(ev)
            return ev.id

    def stop(self) -> bool:
        with self.lock:
            if not self.running or self.mailbox is None:
                return False
            DirChannel(self.mailbox).post(Event("stop"))
            return True

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Controllers:
    """Controllers by session key (never a global 'current garment')."""

    def __init__(self) -> None:
        self._by_key: dict[str, Controller] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Controller:
        with self._lock:
            if key not in self._by_key:
                self._by_key[key] = Controller(key)
            return self._by_key[key]

    def drop(self, key: str) -> None:
        with self._lock:
            c = self._by_key.pop(key, None)
        if c is not None:
            c.cleanup()

    def __len__(self) -> int:
        return len(self._by_key)


def label_frames(frames: np.ndarray, text: str = "AI-generated") -> np.ndarray:
    """Upscaled display frames get a small visible label in the bottom-left corner."""
    from PIL import Image, ImageDraw

    out = []
    for f in frames:
        im = Image.fromarray(f)
        d = ImageDraw.Draw(im)
        h = im.height
        size = max(10, h // 28)
        try:
            from PIL import ImageFont

            font = ImageFont.load_default(size=size)
        except Exception:  # old Pillow without sized default fonts
            font = None
        d.rectangle([4, h - size - 10, 4 + int(size * 0.62 * len(text)) + 8, h - 4], fill=(0, 0, 0))
        d.text((8, h - size - 8), text, fill=(255, 255, 255), font=font)
        out.append(np.asarray(im))
    return np.stack(out)


def display_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Upscale model frames for display (Lanczos) and label them as AI-generated."""
    from PIL import Image

    if frames.shape[1] != size:
        frames = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.LANCZOS)) for f in frames])
    return label_frames(frames)
