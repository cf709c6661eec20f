"""One app run: stream a Session as H.264 segments for a browser player, honouring the mailbox's events,
and the display helpers it needs (upscaling, the AI-generated label).

``stream_run`` is a plain generator of ``RunUpdate``s so it can be wrapped by ``spaces.GPU`` (it runs in a
child process on ZeroGPU; events arrive through the run's mailbox folder).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..streaming.events import DirChannel
from ..media import encode_segment, write_mp4


def label_frames(frames: np.ndarray, text: str = "AI-generated") -> np.ndarray:
    """Upscaled display frames get a small visible label in the bottom-left corner."""
    from PIL import Image, ImageDraw, ImageFont

    out = []
    for f in frames:
        im = Image.fromarray(f)
        d = ImageDraw.Draw(im)
        h = im.height
        size = max(10, h // 28)
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # old Pillow without sized default fonts
            font = None
        d.rectangle([4, h - size - 10, 4 + int(size * 0.62 * len(text)) + 8, h - 4], fill=(0, 0, 0))
        d.text((8, h - size - 8), text, fill=(255, 255, 255), font=font)
        out.append(np.asarray(im))
    return np.stack(out)


def display_frames(frames: np.ndarray, height: int) -> np.ndarray:
    """Upscale model frames to ``height`` pixels (aspect kept, Lanczos) and label them as AI-generated."""
    from PIL import Image

    h, w = frames.shape[1:3]
    if h != height:
        size = (max(2, round(w * height / h / 2) * 2), height)
        frames = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.LANCZOS)) for f in frames])
    return label_frames(frames)


@dataclass
class RunUpdate:
    segment: str | None = None          # path of the next .ts segment to play
    frames: int = 0                     # frames generated so far
    garment: str = ""                   # garment in effect
    fps: float = 0.0                    # generation speed so far
    play_fps: float = 0.0               # playback rate of the segments (never above what generation sustains)
    events: list[dict] = field(default_factory=list)
    message: str = ""
    final_video: str | None = None      # the whole run as an mp4, at the end
    done: bool = False


# Playback length of a segment after the first. In the browser test over a 150 ms / 2 Mbit/s link, one block
# (0.75 s) stalled 1-3 times in a 10 s run (three runs) and 1.5 s segments 3 times (two runs): longer ones
# need less bandwidth but leave the player waiting after the short first segment. See BENCHMARKS.md.
SEGMENT_SECONDS = 0.75


def playback_fps(model_fps: int, gen_fps: float) -> float:
    """Play no faster than generation sustains (with a margin), so the player never runs dry."""
    return float(max(4, min(model_fps, int(gen_fps * 0.9))))


def write_segment(frames: np.ndarray, fps: float, path: Path) -> bool:
    """Encode one H.264 segment; False when its folder was removed under the run (the page closed and its
    folder went with it: nobody is watching)."""
    try:
        encode_segment(frames, fps, path)
    except OSError:
        if path.parent.is_dir():
            raise
        return False
    return True


def stream_run(gen, person: np.ndarray, garment: np.ndarray, garment_label: str, prompt: str | None, seed: int,
               max_frames: int, mailbox: str | Path, out_dir: str | Path, display_size: int = 512,
               variant: str = "full", segment_seconds: float = SEGMENT_SECONDS):
    """Stream a session as H.264 segments. The first segment is the first block, so the first frame shows as
    soon as it exists; later segments gather blocks up to ``segment_seconds`` of playback (a keyframe starts
    each segment and is most of its bytes, so longer segments need less bandwidth but arrive later)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    channel = DirChannel(mailbox)
    session = gen.session(person, garment, prompt, seed=seed, variant=variant, num_frames=max_frames,
                          channel=channel, garment_label=garment_label)
    model_fps = gen.preset.fps
    segment_frames = max(1, round(segment_seconds * model_fps))
    frames_all, pending = [], []
    t_start = time.perf_counter()
    play_fps = float(model_fps)
    n = segments = 0
    closed = False

    def emit(garment: str) -> RunUpdate | None:
        nonlocal segments, play_fps, closed
        frames = np.concatenate(pending)
        pending.clear()
        gen_fps = n / max(time.perf_counter() - t_start, 1e-6)
        if segments >= 1:
            play_fps = playback_fps(model_fps, gen_fps)
        seg = out_dir / f"segment_{segments:05d}.ts"
        if not write_segment(display_frames(frames, display_size), play_fps, seg):
            closed = True
            return None
        segments += 1
        return RunUpdate(str(seg), n, garment, gen_fps, play_fps, session.events)

    with session:
        for chunk in session:
            n += len(chunk.frames)
            frames_all.append(chunk.frames)
            pending.append(chunk.frames)
            if segments and sum(len(p) for p in pending) < segment_frames:
                continue
            upd = emit(chunk.garment)
            if upd is None:
                break
            yield upd
        if pending and not closed:
            upd = emit(session.garment_label)
            if upd is not None:
                yield upd
        stopped = session.stopped
    events = session.events    # read after close, which logs the clicks that came too late as pending
    if closed or not out_dir.is_dir():
        return
    video = np.concatenate(frames_all) if frames_all else None
    final = None
    if video is not None:
        final = str(out_dir / "fashionchameleon.mp4")
        write_mp4(display_frames(video, display_size), final, fps=model_fps,
                  metadata={"title": "FashionChameleon (AI-generated)"})
    if stopped:
        msg = f"stopped at frame {n}"
    elif n >= max_frames:
        msg = f"reached the run cap of {max_frames} frames"
    else:
        msg = "done"
    yield RunUpdate(None, n, session.garment_label, n / max(time.perf_counter() - t_start, 1e-6), play_fps, events,
                    msg, final, True)
