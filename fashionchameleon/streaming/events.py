"""Events and the channels that carry them into a streaming session: switch / prompt / stop events apply
between blocks, a stop lands within one denoising step, and every event is logged with the frame at which it
took effect.

Channels:
* ``LocalChannel`` -- in-process, thread-safe (a session's default);
* ``DirChannel`` -- a folder used as a mailbox, for a generator running in another process (the app uses it:
  on ZeroGPU the generating function runs in a forked child process, where an in-process queue would not
  reach it).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Event:
    kind: str                       # "switch" | "prompt" | "stop"
    payload: Any = None             # switch: garment image (H, W, 3) uint8; prompt: str
    label: str = ""
    posted_at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass
class EventRecord:
    id: str
    kind: str
    label: str
    posted_at: float
    status: str = "pending"         # pending | applied | skipped | cancelled (the run stopped before showing it)
    applied_at: float | None = None
    block: int | None = None        # the block that first shows the event's effect
    frame: int | None = None        # the first video frame of that block
    latency_s: float | None = None  # posted -> applied
    blocks_waited: int | None = None  # blocks that started after posting before the one it took effect in

    def to_dict(self) -> dict:
        return asdict(self)


class LocalChannel:
    """Thread-safe in-process event queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._stop = threading.Event()

    def post(self, event: Event) -> None:
        if event.kind == "stop":
            self._stop.set()
        with self._lock:
            self._events.append(event)

    def drain(self) -> list[Event]:
        with self._lock:
            out, self._events = self._events, []
        return out

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self.drain()


class DirChannel:
    """A folder as mailbox: one file per event (written to a temporary name, then renamed)."""

    _counter = itertools.count()

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def post(self, event: Event) -> None:
        name = f"{time.time_ns():020d}_{os.getpid()}_{next(self._counter):06d}_{event.kind}"
        buf = io.BytesIO()
        meta = {"kind": event.kind, "label": event.label, "posted_at": event.posted_at, "id": event.id,
                "prompt": event.payload if event.kind == "prompt" else None}
        arrays = {"image": np.asarray(event.payload)} if event.kind == "switch" else {}
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        tmp = self.path / f".{name}.tmp"
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, self.path / f"{name}.evt")
        if event.kind == "stop":
            (self.path / "STOP").touch()

    def drain(self) -> list[Event]:
        events = []
        for f in sorted(self.path.glob("*.evt")):
            try:
                with np.load(f) as d:
                    meta = json.loads(d["meta"].tobytes().decode())
                    payload = d["image"] if "image" in d else meta.get("prompt")
                events.append(Event(meta["kind"], payload, meta["label"], meta["posted_at"], meta["id"]))
            finally:
                f.unlink(missing_ok=True)
        return events

    def stop_requested(self) -> bool:
        # a mailbox removed under the run (its page closed) means nobody is watching: stop too
        return (self.path / "STOP").exists() or not self.path.is_dir()

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)


class EventLog:
    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self._lock = threading.Lock()

    def add(self, event: Event) -> EventRecord:
        rec = EventRecord(event.id, event.kind, event.label, event.posted_at)
        with self._lock:
            self.records.append(rec)
        return rec

    def as_dicts(self) -> list[dict]:
        with self._lock:
            return [r.to_dict() for r in self.records]
