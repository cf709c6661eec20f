"""The compare view: the same person, garment, motion and seed streamed by several switch strategies side by
side, the switch posted to all of them for the same frame. It shows what the paper shows only in figures.

One session per panel, advanced in lockstep. Panels can produce blocks of different lengths (``restart``
restarts its decoder, so its first block after the switch is shorter), so frames are buffered per panel and
a segment holds what every panel has produced.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..streaming.events import DirChannel
from .run import RunUpdate, display_frames, playback_fps, write_segment

DEFAULT_PANELS = ("full", "naive", "restart")


def title_bar(frames: np.ndarray, text: str, height: int = 26) -> np.ndarray:
    """Frames with a black bar on top that names the panel."""
    from PIL import Image, ImageDraw, ImageFont

    bar = Image.new("RGB", (frames.shape[2], height))
    try:
        font = ImageFont.load_default(size=height - 8)
    except TypeError:  # old Pillow without sized default fonts
        font = None
    ImageDraw.Draw(bar).text((6, 3), text, fill=(255, 255, 255), font=font)
    bar = np.broadcast_to(np.asarray(bar), (len(frames), height, frames.shape[2], 3))
    return np.concatenate([bar, frames], 1)


def side_by_side(panels: list[np.ndarray], names: list[str], height: int) -> np.ndarray:
    """(T, H', sum W', 3): each panel upscaled to ``height``, labelled AI-generated and titled."""
    shown = [title_bar(display_frames(p, height), n) for p, n in zip(panels, names)]
    gap = np.full((len(panels[0]), shown[0].shape[1], 4, 3), 40, np.uint8)
    out = [shown[0]]
    for s in shown[1:]:
        out += [gap, s]
    return np.concatenate(out, 2)


def stream_compare(gen, person: np.ndarray, garment: np.ndarray, switch_to: np.ndarray, labels: tuple[str, str],
                   prompt: str | None, seed: int, max_frames: int, switch_frame: int, mailbox: str | Path,
                   out_dir: str | Path, variants: tuple[str, ...] = DEFAULT_PANELS, display_height: int = 256):
    """Generator of ``RunUpdate``s whose segments show one panel per variant. The switch to ``switch_to`` is
    posted to every panel for the first block that starts at or after ``switch_frame``; a stop in the
    mailbox ends all panels. ``events`` lists, per panel, when the switch took effect."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    channel = DirChannel(mailbox)
    sessions = [gen.session(person, garment, prompt, seed=seed, variant=v, num_frames=max_frames,
                            garment_label=labels[0]) for v in variants]
    iters = [iter(s) for s in sessions]
    pending = [np.zeros((0, *sessions[0].person.shape), np.uint8) for _ in sessions]
    posted = [False] * len(sessions)
    play_fps = float(gen.preset.fps)
    t0 = time.perf_counter()
    n, k, stopped, finished = 0, 0, False, [False] * len(sessions)

    def events() -> list[dict]:
        out = []
        for v, s in zip(variants, sessions):
            out += [{**e, "label": f"{e['label']} ({v})"} for e in s.events if e["kind"] == "switch"]
        return out

    try:
        while not all(finished):
            if channel.stop_requested():
                stopped = True
                break
            for i, (s, it) in enumerate(zip(sessions, iters)):
                if finished[i] or len(pending[i]) > 0 and len(pending[i]) >= max(len(p) for p in pending):
                    continue      # this panel is ahead: let the others catch up first
                if not posted[i] and s.frame >= switch_frame:
                    s.post_switch(switch_to, labels[1])
                    posted[i] = True
                chunk = next(it, None)
                if chunk is None:
                    finished[i] = True
                else:
                    pending[i] = np.concatenate([pending[i], chunk.frames])
            ready = min(len(p) for p in pending)
            if ready == 0 and not all(finished):
                continue
            if all(finished):
                ready = max(len(p) for p in pending)    # flush: a shorter panel holds its last frame
                pending = [p if len(p) >= ready or not len(p) else
                           np.concatenate([p, np.repeat(p[-1:], ready - len(p), 0)]) for p in pending]
            if ready == 0:
                break
            frames = side_by_side([p[:ready] for p in pending], list(variants), display_height)
            pending = [p[ready:] for p in pending]
            n += ready
            gen_fps = n / max(time.perf_counter() - t0, 1e-6)
            if k >= 1:
                play_fps = playback_fps(gen.preset.fps, gen_fps)
            seg = out_dir / f"compare_{k:05d}.ts"
            if not write_segment(frames, play_fps, seg):
                return        # the page closed: nobody is watching
            k += 1
            yield RunUpdate(str(seg), n, labels[1] if all(posted) else labels[0], gen_fps, play_fps, events())
    finally:
        for s in sessions:
            s.close()
    msg = f"stopped at frame {n}" if stopped else "done"
    yield RunUpdate(None, n, labels[1], n / max(time.perf_counter() - t0, 1e-6), play_fps, events(), msg, None, True)
