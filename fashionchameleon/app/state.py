"""The Gradio app's state and handlers, kept out of ``app.py`` (which only wires widgets) and testable
without a browser: per-session controllers, the waiting line, input validation, status text, clean-up.

Everything a client sends is checked here before use: images are decoded by the project's loader from a
file path (pixel limit before decode), seeds and lengths must be finite numbers in range, labels shown in
the status are file names cut to a safe alphabet.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..media import InputImageError, load_image
from .line import Controllers, QueueFull, RunQueue

MAX_SEED = 2**63 - 1
RUN_TTL_S = 900.0          # sessions whose last run ended this long ago are dropped (REST clients never unload)


class UserError(Exception):
    """A problem with the user's input or timing; the app shows the message and keeps serving."""


def _raise(msg: str):
    try:
        import gradio as gr
    except ImportError:  # pragma: no cover
        raise UserError(msg) from None
    raise gr.Error(msg, print_exception=False)   # a user's mistake is not a server error: no traceback


def parse_seed(value) -> int:
    """An integer seed in [0, 2**63); floats must be whole numbers. Anything else: one clear message."""
    msg = f"Seed must be a whole number from 0 to {MAX_SEED}, got {str(value)[:40]}."
    if isinstance(value, bool):
        _raise(msg)
    if isinstance(value, int):
        x = value                # exact: a float cannot hold every seed up to 2**63
    else:
        try:
            f = float(value if value is not None else 0)
        except (TypeError, ValueError):
            _raise(msg)
        if not math.isfinite(f) or f != int(f):
            _raise(msg)
        x = int(f)
    if not 0 <= x <= MAX_SEED:
        _raise(msg)
    return x


def parse_seconds(value, max_seconds: float) -> tuple[float, list[str]]:
    """A length in seconds: finite and positive; capped to [1, max_seconds] with a note."""
    try:
        x = float(value if value is not None else 0)
    except (TypeError, ValueError):
        _raise(f"Length must be a number of seconds (1 to {max_seconds}), got {str(value)[:40]!r}.")
    if not math.isfinite(x) or x <= 0:
        _raise(f"Length must be a number of seconds (1 to {max_seconds}), got {str(value)[:40]}.")
    notes = [f"Length capped at {max_seconds} s."] if x > max_seconds else []
    return min(max(x, 1.0), float(max_seconds)), notes


def safe_label(src, default: str = "garment") -> str:
    """A garment's name for the status: the file's stem, cut to letters, digits and ``-_ .`` (the name comes
    from the client)."""
    if not isinstance(src, (str, Path)):
        return default
    label = re.sub(r"[^A-Za-z0-9_. -]+", "_", Path(str(src)).stem)[:40].strip(" ._")
    return label or default


@dataclass
class Examples:
    root: Path
    persons: list[str]
    garments: list[str]
    hashes: set[str]


def _digest(img: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()


def examples(size: int | tuple[int, int] = 128, persons: int = 6, garments: int = 8, version: int = 1) -> Examples:
    """Example people and garments rendered from held-out seeds of the synthetic world ``version`` at ``size``
    (the model's: ``preset.world_size``), cached on disk."""
    from PIL import Image

    from ..data.world import make_sample, render_flatlay, spec_for_seed

    tag = f"{size[0]}x{size[1]}" if isinstance(size, (tuple, list)) else str(size)
    root = Path(tempfile.gettempdir()) / "fashionchameleon-examples" / (tag if version == 1 else f"v{version}-{tag}")
    root.mkdir(parents=True, exist_ok=True)
    person_paths, garment_paths, hashes = [], [], set()
    for k in range(persons):
        path = root / f"person_{k}.png"
        if not path.exists():
            ref = make_sample(900_000 + k, num_frames=1, size=size, version=version).reference
            Image.fromarray(ref).save(path)
        person_paths.append(str(path))
        hashes.add(_digest(np.asarray(Image.open(path).convert("RGB"))))
    for k in range(garments):
        path = root / f"garment_{k}.png"
        if not path.exists():
            Image.fromarray(render_flatlay(spec_for_seed(910_000 + k, version=version).garments[0], size)).save(path)
        garment_paths.append(str(path))
    return Examples(root, person_paths, garment_paths, hashes)


def load_generator(checkpoint=None, codec=None):
    """The embedded model (or a given checkpoint) on the best device; random weights, with a warning, when
    no trained checkpoint exists yet."""
    import torch

    from ..streaming.generator import DEFAULT_CHECKPOINT, DEFAULT_CODEC, DEFAULT_PRESET, StreamingGenerator

    device = "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = Path(checkpoint or DEFAULT_CHECKPOINT)
    if ckpt.exists():
        return StreamingGenerator.from_pretrained(ckpt, codec, device=device), ""
    from ..model.codec import load_codec

    gen = StreamingGenerator.random(DEFAULT_PRESET, load_codec(codec or DEFAULT_CODEC, device=device), device=device)
    return gen, (f"No trained checkpoint at `{ckpt}` yet: this demo runs the model with RANDOM weights, so the "
                 "video is noise. The streaming, switching and stopping machinery is real.")


class AppState:
    def __init__(self, gen, max_active: int = 1, max_waiting: int = 8, examples_hashes: set[str] | None = None,
                 run_ttl_s: float = RUN_TTL_S):
        self.gen = gen
        self.controllers = Controllers()
        self.queue = RunQueue(max_active, max_waiting)
        self.finals: dict[str, str] = {}
        self.example_hashes = examples_hashes or set()
        self.run_ttl_s = run_ttl_s

    @staticmethod
    def key(request) -> str:
        return str(getattr(request, "session_hash", None) or "local")

    def _image(self, src, what: str, missing: str) -> np.ndarray:
        if src is None:
            _raise(missing)
        try:
            return load_image(src, what)
        except InputImageError as e:
            _raise(str(e))

    def _run_args(self, motion, seed, seconds, max_seconds) -> tuple[int, float, list[str]]:
        vocab = self.gen.model.config.prompt_vocab
        if vocab and motion not in vocab:
            _raise(f"Unknown motion {str(motion)[:40]!r}: this model knows {', '.join(vocab)}.")
        return (parse_seed(seed), *parse_seconds(seconds, max_seconds))

    def expire(self) -> None:
        """Free the folders of sessions nobody came back to (API clients, closed tabs that never unloaded)."""
        for key in self.controllers.expire(self.run_ttl_s):
            self.finals.pop(key, None)

    # -- handlers -------------------------------------------------------------------------------------------------
    def generate(self, request, person, garment, motion, seed, seconds, max_seconds, device_fn):
        """Generator of (segment path | None, status markdown) for the app's /generate."""
        self.expire()
        person_img = self._image(person, "person image", "Upload a person photo (or pick an example) first.")
        garment_img = self._image(garment, "garment image",
                                  "Pick a garment first (click one in the gallery, or upload your own).")
        seed, seconds, notes = self._run_args(motion, seed, seconds, max_seconds)
        if self.example_hashes and _digest(self.gen.person_image(person_img)) not in self.example_hashes:
            notes.append("This photo is not from the synthetic world the embedded model was trained on: it runs, "
                         "but expect a synthetic-looking person (see the note below the video).")
        frames = int(round(seconds * self.gen.preset.fps))
        label = safe_label(garment)
        yield from self._run_in_line(request, notes, lambda run: device_fn(
            person_img, garment_img, label, motion, seed, frames, str(run.mailbox), str(run.out)))

    def compare(self, request, person, garment, switch_garment, motion, seed, seconds, switch_at, max_seconds,
                device_fn):
        """Generator of (segment | None, status) for /compare: panels side by side, one per switch strategy,
        the switch to ``switch_garment`` at ``switch_at`` seconds in every panel."""
        self.expire()
        person_img = self._image(person, "person image", "Upload a person photo (or pick an example) first.")
        garment_img = self._image(garment, "garment image", "Pick the garment to start with first.")
        switch_img = self._image(switch_garment, "garment to switch to", "Pick the garment to switch to.")
        seed, seconds, notes = self._run_args(motion, seed, seconds, max_seconds)
        try:
            at = float(switch_at)
        except (TypeError, ValueError):
            at = float("nan")
        if not math.isfinite(at) or not 0 <= at < seconds:
            _raise(f"Switch time must be a number of seconds from 0 to below the length ({seconds:g} s).")
        fps = self.gen.preset.fps
        labels = (safe_label(garment), safe_label(switch_garment, "switch garment"))
        yield from self._run_in_line(request, notes, lambda run: device_fn(
            person_img, garment_img, switch_img, labels, motion, seed, int(round(seconds * fps)), int(round(at * fps)),
            str(run.mailbox), str(run.out)), status=self.compare_status)

    def _run_in_line(self, request, notes: list[str], start, status=None):
        """Wait for a slot in the shared line, then stream ``start(run)``'s updates as (segment, status)."""
        status = status or self.status
        key = self.key(request)
        ctl = self.controllers.get(key)
        previous = ctl.current()
        if previous is not None and previous.started:
            ctl.stop(previous)      # a new Generate replaces this session's running run ...
        try:
            ticket = self.queue.enter(key)   # ... and its waiting one (the line keeps one per session)
        except QueueFull as e:
            _raise(str(e))
        ctl, run = self.controllers.new_run(key)
        try:
            pos = self.queue.wait(ticket, 0.0)
            while True:
                if ctl.stop_requested(run):
                    yield None, "Stopped before it started (the run was waiting in line)."
                    return
                if pos <= 0:
                    break
                yield None, (f"Waiting in line: position {pos} of {self.queue.waiting} "
                             "(one video is generated at a time).")
                pos = self.queue.wait(ticket, 1.0)
            if pos < 0:
                yield None, "Replaced by a newer Generate from this page."
                return
            run.started = True
            self.finals.pop(key, None)      # the previous run's files go with its folder
            yield None, "Starting ..." + ("\n\n" + " ".join(notes) if notes else "")
            for upd in start(run):
                if upd.final_video:
                    self.finals[key] = upd.final_video
                yield upd.segment, status(upd, notes)
        finally:
            self.queue.leave(ticket)
            ctl.end_run(run)

    def switch(self, request, garment, only_if_running: bool = False) -> str:
        ctl = self.controllers.get(self.key(request))
        if ctl.current() is None:
            if only_if_running:
                return "Garment selected for the next run."
            _raise("Press Generate first: there is no running video to switch.")
        img = self.gen.garment_image(self._image(garment, "garment image", "No garment image given."))
        label = safe_label(garment)
        try:
            run = ctl.post_switch(img, label)
        except RuntimeError as e:
            _raise(str(e))
        if not run.started:
            return f"Switch to {label} kept: your run is waiting in line and starts in this garment."
        return f"Switch to {label} queued: it applies at the next block."

    def stop(self, request) -> str:
        ctl = self.controllers.get(self.key(request))
        run = ctl.current()
        if not ctl.stop(run):
            return "Nothing is running."
        return "Stopping ..." if run.started else "Stopping: the waiting run is cancelled."

    def download_for(self, request):
        return self.finals.get(self.key(request))

    def unload(self, request) -> None:
        key = self.key(request)
        self.controllers.drop(key)
        self.finals.pop(key, None)

    # -- text -------------------------------------------------------------------------------------------------
    @staticmethod
    def compare_status(upd, notes: list[str]) -> str:
        lines = [f"**{'Done' if upd.done else 'Streaming'}** - frames: {upd.frames} per panel - generation "
                 f"{upd.fps:.1f} frames/s per panel - playback {upd.play_fps:.0f} frames/s"]
        if upd.message:
            lines.append(f"Run ended: {upd.message}.")
        for e in upd.events:
            where = (f"took effect at frame {e['frame']}" if e["status"] == "applied" else
                     "never shown (the run stopped first)" if e["status"] == "cancelled" else "not applied")
            lines.append(f"- switch to {e['label']}: {where}")
        lines += notes
        return "\n".join(lines)

    @staticmethod
    def status(upd, notes: list[str]) -> str:
        lines = [f"**{'Done' if upd.done else 'Streaming'}** - frames: {upd.frames} - garment: {upd.garment} - "
                 f"generation {upd.fps:.1f} frames/s - playback {upd.play_fps:.0f} frames/s"]
        if upd.message:
            lines.append(f"Run ended: {upd.message}.")
        late = "came after the last block (the run had ended)"
        for e in upd.events:
            if e["kind"] == "switch":
                if e["status"] == "applied":
                    where = f"took effect at frame {e['frame']} ({e['latency_s']:.2f} s after the click)"
                    if e["frame"] == 0:
                        where = "took effect from the first frame (clicked while the run waited in line)"
                elif e["status"] == "skipped":
                    where = "skipped (a later click won)"
                elif e["status"] == "cancelled":
                    where = "never shown (the run stopped first)"
                else:
                    where = late
                lines.append(f"- switch to {e['label']}: {where}")
            elif e["kind"] == "stop":
                lines.append(f"- stop at frame {e['frame']}" if e["status"] == "applied" else f"- stop: {late}")
        lines += notes
        return "\n".join(lines)
