"""One app run: stream a Session as H.264 segments for a browser player, honouring the mailbox's events.

``stream_run`` is a plain generator of ``RunUpdate``s so it can be wrapped by ``spaces.GPU`` (it runs in a
child process on ZeroGPU; events arrive through the run's mailbox folder).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .session import DirChannel
from .service import display_frames
from .video import encode_segment, write_mp4


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


def stream_run(gen, person: np.ndarray, garment: np.ndarray, garment_label: str, prompt: str | None, seed: int,
               max_frames: int, mailbox: str | Path, out_dir: str | Path, display_size: int = 512,
               variant: str = "full"):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    channel = DirChannel(mailbox)
    session = gen.session(person, garment, prompt, seed=seed, variant=variant, num_frames=max_frames,
                          channel=channel, garment_label=garment_label)
    model_fps = gen.preset.fps
    frames_all = []
    t_start = time.perf_counter()
    play_fps = float(model_fps)
    n = 0
    with session:
        for chunk in session:
            n += len(chunk.frames)
            frames_all.append(chunk.frames)
            elapsed = time.perf_counter() - t_start
            gen_fps = n / max(elapsed, 1e-6)
            if chunk.index >= 1:
                # play no faster than generation sustains (with a margin), so the player never runs dry
                play_fps = float(max(4, min(model_fps, int(gen_fps * 0.9))))
            seg = out_dir / f"segment_{chunk.index:05d}.ts"
            encode_segment(display_frames(chunk.frames, display_size), play_fps, seg)
            yield RunUpdate(str(seg), n, chunk.garment, gen_fps, play_fps, session.events)
        stopped = session.stopped
    events = session.events    # read after close, which logs the clicks that came too late as pending
    video = np.concatenate(frames_all) if frames_all else None
    final = None
    if video is not None:
        final = str(out_dir / "fashionchameleon.mp4")
        write_mp4(display_frames(video, display_size), final, fps=model_fps,
                  metadata={"title": "FashionChameleon (AI-generated)"})
    msg = "stopped" if stopped else (f"reached the run cap of {max_frames} frames" if n >= max_frames else "done")
    yield RunUpdate(None, n, session.garment_label, n / max(time.perf_counter() - t_start, 1e-6), play_fps, events,
                    msg, final, True)
