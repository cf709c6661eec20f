"""``python -m fashionchameleon world``: render a sample and a switch sample of the synthetic world."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, required=True, help="any seed 0-999,999 (held-out ones included here)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--switches", type=int, default=1, help="garment switches in the switch sample")
    p.add_argument("--frames", type=int, default=48, help="frames per clip (>= 32: at least 2 s at 16 fps)")
    p.add_argument("--version", type=int, choices=(1, 2), default=2,
                   help="the world: 2 (portrait, the embedded default model's) or 1 (square, the first model's)")
    p.add_argument("--size", default=None, help="WxH (default: 112x192 for world 2, 128x128 for world 1); world 1 "
                                                "draws squares and crops a portrait from the centre")
    p.add_argument("--fps", type=int, default=16)


def parse_size(text: str | None, version: int) -> int | tuple[int, int] | None:
    """``--size`` as the world's renderers take it: world 1 an int for a square, (w, h) otherwise; None keeps
    the world's own default."""
    if text is None:
        return None
    w, _, h = text.lower().partition("x")
    try:
        width, height = int(w), int(h or w)
    except ValueError:
        raise ValueError(f"--size must be WxH (e.g. 112x192), got {text!r}") from None
    if width % 2 or height % 2 or min(width, height) < 32 or max(width, height) > 1024:
        raise ValueError(f"--size must be even and within 32-1024 on both sides, got {text!r}")
    return width if version == 1 and width == height else (width, height)


def contact_sheet(rows: list[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.concatenate(r, 1) for r in rows], 0)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..media import write_mp4
    from .world import make_sample, make_switch_sample

    if not 0 <= args.seed < 1_000_000:
        print(f"error: seed {args.seed} is outside 0-999,999", file=sys.stderr)
        return 2
    if args.frames < 2 * args.fps:
        print(f"error: --frames must cover at least 2 s ({2 * args.fps} frames at {args.fps} fps)", file=sys.stderr)
        return 2
    try:
        size = parse_size(args.size, args.version)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    s = make_sample(args.seed, num_frames=args.frames, size=size, fps=args.fps, version=args.version)
    write_mp4(s.clip.frames, args.out / f"world_{args.seed}.mp4", fps=args.fps)
    idx = np.linspace(0, args.frames - 1, 6).astype(int)
    mask_rgb = [np.repeat((s.clip.garment_masks[i] * 255).astype(np.uint8)[..., None], 3, -1) for i in idx]
    Image.fromarray(contact_sheet([[s.reference, s.garment_image] + [s.clip.frames[i] for i in idx],
                                   [np.full_like(s.reference, 255)] * 2 + mask_rgb])).save(args.out / f"world_{args.seed}.png")

    sw = make_switch_sample(args.seed, switches=args.switches, num_frames=max(args.frames, 16 * (args.switches + 2)),
                            size=size, fps=args.fps, version=args.version)
    write_mp4(sw.clip.frames, args.out / f"world_{args.seed}_switch.mp4", fps=args.fps)
    rows = []
    for f in sw.switch_frames:
        rows.append([sw.clip.frames[max(0, f + d)] for d in (-2, -1, 0, 1, 2, 8)])
    Image.fromarray(contact_sheet([sw.garment_images])).save(args.out / f"world_{args.seed}_garments.png")
    # inputs for trying `render` right away: the person (in another garment) and two garments
    Image.fromarray(s.reference).save(args.out / "person.png")
    Image.fromarray(sw.garment_images[0]).save(args.out / "garment_a.png")
    Image.fromarray(sw.garment_images[1]).save(args.out / "garment_b.png")
    Image.fromarray(contact_sheet(rows)).save(args.out / f"world_{args.seed}_switch.png")
    info = {"seed": args.seed, "world": args.version, "prompt": s.prompt, "garment": s.garment.to_dict(),
            "reference_garment": s.reference_garment.to_dict(), "switch_frames": sw.switch_frames,
            "switch_garments": [g.to_dict() for g in sw.garments]}
    (args.out / f"world_{args.seed}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.out}/world_{args.seed}[.mp4|.png|_switch.mp4|_switch.png|.json]", file=sys.stderr)
    return 0
