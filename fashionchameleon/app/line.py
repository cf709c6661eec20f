"""The app's waiting line and its per-session controllers: a fair line with at most one waiting run per
session, one controller per browser (or API) session, each run in its own folder, and clean-up.

Events reach a run through a folder mailbox (``DirChannel``): on ZeroGPU the generating function runs in
a forked child process, where an in-process queue would never see a click. A mailbox exists from the
moment a run enters the line, so a switch clicked while the run waits is kept and applies at its first block.
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

from ..streaming.events import DirChannel, Event

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


class ControllerClosed(RuntimeError):
    """The controller was dropped (expired or unloaded) after a caller looked it up: look the key up again."""


class RunQueue:
    """At most ``max_active`` runs at once; the others wait in FIFO order and can see their place. A session
    has at most one waiting run: entering again replaces its waiting ticket (the old one is cancelled)."""

    def __init__(self, max_active: int = 1, max_waiting: int = 8):
        self.max_active, self.max_waiting = max_active, max_waiting
        self._cond = threading.Condition()
        self._active: set[str] = set()
        self._waiting: list[str] = []
        self._owner: dict[str, str] = {}      # waiting ticket -> session key

    def enter(self, owner: str) -> str:
        with self._cond:
            for t in [t for t in self._waiting if self._owner.get(t) == owner]:
                self._waiting.remove(t)       # replaced: its waiter sees position -1 and ends
                self._owner.pop(t, None)
            if len(self._waiting) >= self.max_waiting:
                self._cond.notify_all()
                raise QueueFull(f"the waiting line is full ({self.max_waiting} runs); please try again in a minute")
            ticket = uuid.uuid4().hex
            self._waiting.append(ticket)
            self._owner[ticket] = owner
            self._cond.notify_all()
            return ticket

    def wait(self, ticket: str, timeout: float) -> int:
        """Wait up to ``timeout`` s for a slot; returns the place in line (0 = running now, -1 = replaced)."""
        with self._cond:
            deadline = time.monotonic() + timeout
            while True:
                if ticket in self._active:
                    return 0
                if ticket not in self._waiting:
                    return -1
                if self._waiting[0] == ticket and len(self._active) < self.max_active:
                    self._waiting.pop(0)
                    self._owner.pop(ticket, None)
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
            self._owner.pop(ticket, None)
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        return len(self._waiting)


@dataclass
class Run:
    """One Generate: its folder (mailbox for events, out for segments) and whether it has started."""

    id: str
    folder: Path
    started: bool = False
    ended_at: float | None = None

    @property
    def mailbox(self) -> Path:
        return self.folder / "mailbox"

    @property
    def out(self) -> Path:
        return self.folder / "out"


@dataclass
class Controller:
    """One browser (or API) session: its current run and what the UI shows about it."""

    key: str
    run: Run | None = None                  # the newest run (waiting, running, or ended and kept for download)
    live: set[str] = field(default_factory=set)   # ids of runs still using their folders
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False                    # dropped: starts no more runs (its folder is gone or going)

    @property
    def folder(self) -> Path:
        return session_dir(self.key)

    def new_run(self) -> Run:
        """A new run (waiting in line until ``start``); the folders of ended runs are removed, never a live one's."""
        with self.lock:
            if self.closed:
                raise ControllerClosed(self.key)
            if self.folder.exists():
                for old in self.folder.iterdir():
                    if old.name not in self.live:
                        shutil.rmtree(old, ignore_errors=True)
            rid = uuid.uuid4().hex[:10]
            run = Run(rid, self.folder / rid)
            run.mailbox.mkdir(parents=True, exist_ok=True)
            self.run = run
            self.live.add(run.id)
            return run

    def end_run(self, run: Run) -> None:
        with self.lock:
            self.live.discard(run.id)
            run.ended_at = time.time()

    def current(self) -> Run | None:
        """The run that clicks act on: the newest one while it waits or runs."""
        with self.lock:
            return self.run if self.run is not None and self.run.ended_at is None else None

    def post_switch(self, garment: np.ndarray, label: str) -> Run:
        run = self.current()
        if run is None:
            raise RuntimeError("press Generate first: there is no video to switch the garment of")
        DirChannel(run.mailbox).post(Event("switch", garment, label))
        return run

    def stop(self, run: Run | None = None) -> bool:
        run = run or self.current()
        if run is None or run.ended_at is not None:
            return False
        DirChannel(run.mailbox).post(Event("stop"))
        return True

    def stop_requested(self, run: Run) -> bool:
        return DirChannel(run.mailbox).stop_requested()

    def retire_folder(self) -> Path | None:
        """Move the folder aside under a name no session has (a rename: instant, so it can happen under the
        registry's lock); returns where it went, for removal after the lock is released."""
        aside = self.folder.with_name(f"{self.folder.name}.expired-{uuid.uuid4().hex[:8]}")
        try:
            self.folder.rename(aside)
        except FileNotFoundError:
            return None
        except OSError:       # cannot move it (another filesystem error): remove it in place, as before
            shutil.rmtree(self.folder, ignore_errors=True)
            return None
        return aside


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

    def new_run(self, key: str) -> tuple[Controller, Run]:
        """A new run in ``key``'s controller. Looking the controller up and starting the run are not one step, so
        an expiry may drop the controller in between; then the run starts in the key's fresh controller."""
        while True:
            ctl = self.get(key)
            try:
                return ctl, ctl.new_run()
            except ControllerClosed:
                continue

    def drop(self, key: str) -> None:
        # closed and its folder moved aside under the registry's lock: a new controller for the same key (the
        # same folder) cannot create its run folder before the old one is gone from that name; the slow removal
        # happens after the lock is released
        with self._lock:
            c = self._by_key.pop(key, None)
            if c is None:
                return
            with c.lock:
                c.closed = True
            c.stop()
            aside = c.retire_folder()
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def expire(self, ttl: float, now: float | None = None) -> list[str]:
        """Drop the sessions whose last run ended more than ``ttl`` seconds ago (REST clients never close a
        page, so nothing else would free their folders). Returns the keys dropped. Whether a session is idle
        and its closing are decided together under its lock, so a run starting at the same moment is either
        seen (the session is kept) or refused (it starts in a fresh controller)."""
        now = time.time() if now is None else now
        dropped, aside = [], []
        with self._lock:
            for k, c in list(self._by_key.items()):
                with c.lock:
                    ended = None if c.live else (c.run.ended_at if c.run is not None else 0.0)
                    if ended is None or now - ended <= ttl:
                        continue
                    c.closed = True
                del self._by_key[k]
                aside.append(c.retire_folder())               # idle: no run uses it
                dropped.append(k)
        for folder in aside:                                  # removed outside the lock: other sessions go on
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        return dropped

    def __len__(self) -> int:
        return len(self._by_key)
