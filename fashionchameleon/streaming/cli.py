"""``python -m fashionchameleon render``: an offline render with a garment timeline.

    python -m fashionchameleon render --person me.png --garment a.png --switch 48:b.png --prompt wave -o out.mp4

A switch at FRAME takes effect at the first block that starts at or after FRAME (blocks are 12 frames
after the first 9); the frames where switches took effect are printed. Bad input gives one line on stderr
naming the problem, exit code 2, and no output file.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from ..config import TINY_V2_PROMPTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--person", required=True, help="person image (any size, RGBA / grayscale / 16-bit ok)")
    p.add_argument("--garment", required=True, help="garment image (a product photo)")
    p.add_argument("--switch", action="append", default=[], metavar="FRAME:IMAGE",
                   help="switch to IMAGE at video frame FRAME (from 0, inside the video); repeatable")
    p.add_argument("--prompt", default=None, help="motion, one of the model's prompts (the embedded default's: "
                   f"{', '.join(TINY_V2_PROMPTS)}; default: its first)")
    p.add_argument("--frames", type=int, default=96, help="video frames to render")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", default="full", help="switch variant: full, paper, no_refresh, no_withdraw, "
                                                     "no_disentangle, naive, restart")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the embedded default model)")
    p.add_argument("--codec", default=None, help="codec folder (default: the shipped codec the checkpoint was trained on)")
    p.add_argument("--upscale", type=int, default=1, help="nearest-neighbour upscaling of the written video")
    p.add_argument("--deblock", type=float, default=None,
                   help="override the checkpoint's deblocking filter (the largest seam step smoothed on the "
                        "token and codec grids, a fraction of the pixel range; 0: off, the raw decoded frames)")
    p.add_argument("-o", "--output", required=True, type=Path)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def parse_switches(specs: list[str], frames: int) -> list[tuple[int, str]]:
    out = []
    for spec in specs:
        frame, sep, image = spec.partition(":")
        if not sep or not frame.strip().lstrip("-").isdigit() or not image:
            raise ValueError(f"--switch {spec!r}: expected FRAME:IMAGE")
        f = int(frame)
        if not 0 <= f < frames:
            raise ValueError(f"--switch {spec!r}: frame {f} lies outside the video (0..{frames - 1})")
        out.append((f, image))
    return sorted(out)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..model.loading import CheckpointError
    from .generator import DEFAULT_CHECKPOINT, StreamingGenerator
    from ..media import InputImageError, load_image
    from .rescheduler import VARIANTS
    from ..media import upscale, write_mp4

    if args.frames < 1:
        return _fail(f"--frames must be at least 1, got {args.frames}")
    if args.variant not in VARIANTS:
        return _fail(f"unknown --variant {args.variant!r} (choose from {', '.join(VARIANTS)})")
    if args.deblock is not None and not 0 <= args.deblock < float("inf"):
        return _fail(f"--deblock must be a finite number >= 0, got {args.deblock}")
    if args.output.suffix.lower() != ".mp4":
        return _fail(f"{args.output}: the output must be an .mp4 file")
    if not args.output.parent.exists():
        return _fail(f"{args.output.parent}: no such folder")
    try:
        switches = parse_switches(args.switch, args.frames)
        person = load_image(args.person, args.person)
        garment = load_image(args.garment, args.garment)
        switch_images = [(f, load_image(p, p), p) for f, p in switches]
        gen = StreamingGenerator.from_pretrained(args.checkpoint or DEFAULT_CHECKPOINT, args.codec)
        if args.deblock is not None:
            gen = gen.with_config(stream=replace(gen.preset.stream, deblock=args.deblock))
        session = gen.session(person, garment, args.prompt, seed=args.seed, variant=args.variant,
                              num_frames=args.frames, garment_label=Path(args.garment).name)
    except (InputImageError, CheckpointError, ValueError, FileNotFoundError) as e:
        return _fail(str(e))

    frames = []
    pending = list(switch_images)

    def post_due(next_start: int) -> None:
        # a switch at frame F applies at the first block starting at or after F
        while pending and pending[0][0] <= next_start:
            _, img, label = pending.pop(0)
            session.post_switch(img, Path(label).name)

    with session, tqdm(total=args.frames, desc="render", unit="frame", file=sys.stderr) as bar:
        post_due(0)
        for chunk in session:
            frames.append(chunk.frames)
            bar.update(len(chunk.frames))
            post_due(chunk.first_frame + len(chunk.frames))
        events = session.events
    video = np.concatenate(frames)
    write_mp4(upscale(video, args.upscale), args.output, fps=gen.preset.fps,
              metadata={"title": "FashionChameleon render", "fashionchameleon_events": json.dumps(events)})
    for e in events:
        if e["kind"] == "switch":
            print(f"switch to {e['label']}: {e['status']} at frame {e['frame']}", file=sys.stderr)
    for f, _, label in pending:
        print(f"warning: switch to {label} at frame {f} comes after the last block started; not applied",
              file=sys.stderr)
    print(f"wrote {args.output} ({len(video)} frames, {video.shape[2]}x{video.shape[1]})", file=sys.stderr)
    return 0
