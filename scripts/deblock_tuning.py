"""How the deblocking filter's threshold was chosen (session 25), on world-v2 *training* seeds only.

    python scripts/deblock_tuning.py [--checkpoint DIR] [--out FILE.json]

Two measurements per threshold, both from streams of the checkpoint with the filter off, filtered afterwards
(the filter works frame by frame on decoded pixels, so this equals streaming with it on, up to uint8 rounding):

* world v2, seeds 1000-1007 (SwitchBench cases, protocols a and b, `full`): token and codec grid visibility of
  the frames after the first block, and PSNR against the exact ground truth (whole frame, and outside the
  garment masks);
* the RealBench protocol on synthetic people: world-v2 seeds 1000-1005's reference frames as "photos" (a scene
  photo or texture behind a drawn person) x the garments of seeds 1006-1008: fidelity ratio, SSIM of early and
  late frames against the photo, token grid, and the token grid of each photo's codec round trip through the
  filter. A round trip above 1.0 means the filter leaves a seam-free picture's own lines alone; below 1.0 it has
  started to smooth picture content.

Prints one JSON object per threshold (and writes them all to --out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fashionchameleon.data.datasets import to_tensor_image, to_uint8
from fashionchameleon.eval import realbench as R
from fashionchameleon.eval import switchbench as S
from fashionchameleon.eval.metrics import psnr
from fashionchameleon.model.deblock import deblock
from fashionchameleon.streaming.generator import DEFAULT_CHECKPOINT, StreamingGenerator

THRESHOLDS = (0.0, 0.1, 0.15, 0.2, 0.3, 0.5)
WORLD_SEEDS = range(1000, 1008)
PERSON_SEEDS, GARMENT_SEEDS = range(1000, 1006), range(1006, 1009)


def filtered(frames: np.ndarray, token_px: int, codec_px: int, threshold: float) -> np.ndarray:
    """uint8 frames (T, H, W, 3) through the filter, back to uint8."""
    video = to_tensor_image(frames).transpose(0, 1)[None]          # (1, 3, T, H, W)
    return to_uint8(deblock(video, token_px, codec_px, threshold)[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    gen = StreamingGenerator.from_pretrained(args.checkpoint)
    if gen.preset.stream.deblock:
        raise SystemExit("error: the checkpoint's streaming config already deblocks; tune on its raw frames")
    token_px, codec_px = gen.grid_pixels
    world = S.world_of(gen)

    clips = []          # (frames, truth, garment masks)
    for seed in WORLD_SEEDS:
        case = S.make_case(seed)
        gt = S.ground_truth(seed, case, world)
        for primed in (True, False):
            frames, applied = S.stream_case(gen, gt, case, "full", primed)
            truth = S.ground_truth(seed, case, world, applied).clip
            clips.append((frames, truth.frames, truth.garment_masks))

    cfg = R.RealBenchConfig()
    persons = [S.ground_truth(s, S.make_case(s), world).reference for s in PERSON_SEEDS]
    garments = [S.ground_truth(s, S.make_case(s), world).garment_images[0] for s in GARMENT_SEEDS]
    box = R.torso_box(Path("no-sidecar.png"), persons[0].shape[:2], gen.resolution)
    streams, roundtrips = [], []
    for person in persons:
        with torch.no_grad():
            roundtrips.append(gen.codec.decode(gen.encode_image(person).float()))
        for k, garment in enumerate(garments):
            switch_to = garments[(k + 1) % len(garments)]
            video, switch_frame, first_block = R.stream_case(gen, person, garment, switch_to, cfg)
            streams.append((person, switch_to, video, switch_frame, first_block))

    photo_grid = float(np.mean([R.grid_visibility(p[None], token_px) for p in persons]))
    rows = []
    for threshold in THRESHOLDS:
        world_rows = []
        for frames, truth, masks in clips:
            y = filtered(frames, token_px, codec_px, threshold)
            late = y[9:]
            world_rows.append((R.grid_visibility(late, token_px), R.grid_visibility(late, codec_px),
                               psnr(y, truth), psnr(y, truth, ~masks)))
        real_rows = []
        for person, switch_to, video, switch_frame, first_block in streams:
            m = R.case_metrics(filtered(video, token_px, codec_px, threshold), person, switch_to, box, switch_frame,
                               cfg, (token_px, codec_px), early=first_block)
            real_rows.append((m["fidelity_ratio"], m["ref_ssim_early"], m["ref_ssim_late"], m["grid_visibility"]))
        trip = [R.grid_visibility(to_uint8(deblock(rt, token_px, codec_px, threshold)[0]), token_px) for rt in roundtrips]
        w, r = np.mean(world_rows, 0), np.mean(real_rows, 0)
        row = {"threshold": threshold, "world_grid_token": w[0], "world_grid_codec": w[1], "world_psnr": w[2],
               "world_psnr_outside_garment": w[3], "synthetic_photos_fidelity_ratio": r[0],
               "synthetic_photos_ssim_early": r[1], "synthetic_photos_ssim_late": r[2],
               "synthetic_photos_grid_token": r[3], "roundtrip_grid_token": float(np.mean(trip)),
               "photo_grid_token": photo_grid}
        row = {k: round(float(v), 4) for k, v in row.items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"checkpoint": args.checkpoint, "world_seeds": "1000-1007",
                                        "person_seeds": "1000-1005", "garment_seeds": "1006-1008",
                                        "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
