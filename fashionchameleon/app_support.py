"""The Gradio app's state and handlers, kept out of ``app.py`` (which only wires widgets) and testable
without a browser: per-session controllers, the waiting line, input validation, status text, clean-up."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .streaming.preprocess import InputImageError, load_image
from .streaming.service import WORK_DIR, Controllers, QueueFull, RunQueue


class UserError(Exception):
    """A problem with the user's input or timing; the app shows the message and keeps serving."""


def _raise(msg: str):
    try:
        import gradio as gr

        raise gr.Error(msg)
    except ImportError:  # pragma: no cover
        raise UserError(msg) from None


@dataclass
class Examples:
    root: Path
    persons: list[str]
    garments: list[str]
    hashes: set[str]


def _digest(img: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()


def examples(size: int = 128, persons: int = 6, garments: int = 8) -> Examples:
    """Example people and garments rendered from held-out seeds of the synthetic world (cached on disk)."""
    from PIL import Image

    from .data.world import make_sample, render_flatlay, spec_for_seed

    root = Path(tempfile.gettempdir()) / "fashionchameleon-examples" / str(size)
    root.mkdir(parents=True, exist_ok=True)
    person_paths, garment_paths, hashes = [], [], set()
    for k in range(persons):
        path = root / f"person_{k}.png"
        if not path.exists():
            Image.fromarray(make_sample(900_000 + k, num_frames=1, size=size).reference).save(path)
        person_paths.append(str(path))
        hashes.add(_digest(np.asarray(Image.open(path).convert("RGB"))))
    for k in range(garments):
        path = root / f"garment_{k}.png"
        if not path.exists():
            Image.fromarray(render_flatlay(spec_for_seed(910_000 + k).garments[0], size)).save(path)
        garment_paths.append(str(path))
    return Examples(root, person_paths, garment_paths, hashes)


def load_generator(checkpoint=None, codec=None):
    """The embedded model (or a given checkpoint) on the best device; random weights, with a warning, when
    no trained checkpoint exists yet."""
    import torch

    from .streaming.generator import DEFAULT_CHECKPOINT, DEFAULT_CODEC, StreamingGenerator

    device = "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = Path(checkpoint or DEFAULT_CHECKPOINT)
    if ckpt.exists():
        return StreamingGenerator.from_pretrained(ckpt, codec, device=device), ""
    from .model.codec import load_codec

    gen = StreamingGenerator.random("tiny", load_codec(codec or DEFAULT_CODEC, device=device), device=device)
    return gen, (f"No trained checkpoint at `{ckpt}` yet: this demo runs the model with RANDOM weights, so the "
                 "video is noise. The streaming, switching and stopping machinery is real.")


class AppState:
    def __init__(self, gen, max_active: int = 1, max_waiting: int = 8, examples_hashes: set[str] | None = None):
        self.gen = gen
        self.controllers = Controllers()
        self.queue = RunQueue(max_active, max_waiting)
        self.finals: dict[str, str] = {}
        self.example_hashes = examples_hashes or set()

    @staticmethod
    def key(request) -> str:
        return getattr(request, "session_hash", None) or "local"

    # -- handlers -------------------------------------------------------------------------------------------------
    def generate(self, request, person, garment, motion, seed, seconds, max_seconds, device_fn):
        """Generator of (segment path | None, status markdown) for the app's /generate."""
        if person is None:
            _raise("Upload a person photo (or pick an example) first.")
        if garment is None:
            _raise("Pick a garment first (click one in the gallery, or upload your own).")
        try:
            person_img = load_image(person, "person image")
            garment_img = load_image(garment, "garment image")
        except InputImageError as e:
            _raise(str(e))
        vocab = self.gen.model.config.prompt_vocab
        if vocab and motion not in vocab:
            _raise(f"Unknown motion {motion!r}: this model knows {', '.join(vocab)}.")
        try:
            seed = int(seed or 0)
            seconds = float(seconds or 0)
        except (TypeError, ValueError):
            _raise("Seed and length must be numbers.")
        notes = []
        if seconds > max_seconds:
            notes.append(f"Length capped at {max_seconds} s.")
        seconds = min(max(seconds, 1.0), max_seconds)
        if self.example_hashes and _digest(self.gen.person_image(person_img)) not in self.example_hashes:
            notes.append("This photo is not from the synthetic world the embedded model was trained on: it runs, "
                         "but expect a synthetic-looking person (see the note below the video).")
        key = self.key(request)
        ctl = self.controllers.get(key)
        if ctl.running:
            ctl.stop()      # a new Generate replaces this session's previous run
        try:
            ticket = self.queue.enter()
        except QueueFull as e:
            _raise(str(e))
        try:
            pos = self.queue.wait(ticket, 0.0)
            while pos > 0:
                yield None, f"Waiting in line: position {pos} of {self.queue.waiting} (one video is generated at a time)."
                pos = self.queue.wait(ticket, 1.0)
            self.finals.pop(key, None)      # the previous run's files go with its folder
            mailbox = ctl.start_run()
            label = Path(garment).stem if isinstance(garment, (str, Path)) else "garment"
            ctl.current_garment = label
            frames = int(round(seconds * self.gen.preset.fps))
            yield None, "Starting ..." + ("\n\n" + " ".join(notes) if notes else "")
            for upd in device_fn(person_img, garment_img, label, motion, seed, frames, str(mailbox),
                                 str(mailbox.parent / "out")):
                ctl.current_garment = upd.garment
                if upd.final_video:
                    self.finals[key] = upd.final_video
                yield upd.segment, self.status(upd, notes)
        finally:
            self.queue.leave(ticket)
            ctl.end_run()

    def switch(self, request, garment, only_if_running: bool = False) -> str:
        ctl = self.controllers.get(self.key(request))
        if not ctl.running:
            if only_if_running:
                return "Garment selected for the next run."
            _raise("Press Generate first: there is no running video to switch.")
        if garment is None:
            _raise("No garment image given.")
        try:
            img = self.gen.garment_image(load_image(garment, "garment image"))
        except InputImageError as e:
            _raise(str(e))
        label = Path(garment).stem if isinstance(garment, (str, Path)) else "garment"
        try:
            ctl.post_switch(img, label)
        except RuntimeError as e:
            _raise(str(e))
        return f"Switch to {label} queued: it applies at the next block."

    def stop(self, request) -> str:
        return "Stopping ..." if self.controllers.get(self.key(request)).stop() else "Nothing is running."

    def download_for(self, request):
        return self.finals.get(self.key(request))

    def unload(self, request) -> None:
        key = self.key(request)
        self.controllers.drop(key)
        self.finals.pop(key, None)

    # -- text -------------------------------------------------------------------------------------------------
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
                else:
                    where = "skipped (a later click won)" if e["status"] == "skipped" else late
                lines.append(f"- switch to {e['label']}: {where}")
            elif e["kind"] == "stop":
                lines.append(f"- stop at frame {e['frame']}" if e["status"] == "applied" else f"- stop: {late}")
        lines += notes
        return "\n".join(lines)
