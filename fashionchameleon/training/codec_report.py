"""Held-out reconstruction report of a codec: PSNR overall, per garment pattern, worst decile, and for the
first vs. last frame of each 4-frame group; a contact sheet of reconstructions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import to_tensor_video, to_uint8
from ..data.world import make_sample, parse_seeds


def _psnr(mse: float) -> float:
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


@torch.no_grad()
def codec_report(codec, seeds: str | list[int], out: Path | None = None, num_frames: int = 33,
                 size: int | tuple[int, int] = 128, version: int = 1) -> str:
    """The report as JSON text (``size`` / ``version``: the world the clips come from, v1 128x128 by default)."""
    seeds = parse_seeds(seeds) if isinstance(seeds, str) else list(seeds)
    per_clip, per_pattern = [], {}
    first_mse, last_mse = [], []
    sheet_rows = []
    for k, seed in enumerate(seeds):
        s = make_sample(seed, num_frames=num_frames, size=size, version=version)
        video = to_tensor_video(s.clip.frames)[None]
        z = codec.encode(video)
        dec = codec.stream_decoder()
        chunks = [dec.decode(z[:, :, i:i + 3]) for i in range(0, z.shape[2], 3)]
        rec = to_uint8(torch.cat(chunks, 2)[0])
        err = (rec.astype(np.float64) - s.clip.frames.astype(np.float64)) ** 2
        frame_mse = err.mean(axis=(1, 2, 3))
        per_clip.append(frame_mse.mean())
        per_pattern.setdefault(s.garment.pattern, []).append(frame_mse.mean())
        first_mse += list(frame_mse[1::4])
        last_mse += list(frame_mse[4::4])
        if k < 8:
            idx = [0, 5, 16, 32]
            sheet_rows.append(np.concatenate([np.concatenate([s.clip.frames[i], rec[i]], 0) for i in idx], 1))
    per_clip = np.array(per_clip)
    worst = np.sort(per_clip)[-max(1, len(per_clip) // 10):]
    h, w = s.clip.frames.shape[1:3]
    ratio = (num_frames * h * w * 3) / (z.shape[1] * z.shape[2] * z.shape[3] * z.shape[4])
    report = {
        "seeds": f"{seeds[0]}-{seeds[-1]}", "clips": len(seeds), "frames_per_clip": num_frames,
        **({"world_version": version, "size": list(size)} if version != 1 else {}),
        "psnr": _psnr(per_clip.mean()),
        "psnr_per_pattern": {p: _psnr(float(np.mean(v))) for p, v in sorted(per_pattern.items())},
        "psnr_worst_decile": _psnr(float(worst.mean())),
        "psnr_group_first_frame": _psnr(float(np.mean(first_mse))),
        "psnr_group_last_frame": _psnr(float(np.mean(last_mse))),
        "compression_ratio": ratio,
        "codec_sha256": codec.sha256, "latent_sha256": codec.latent_sha256,
    }
    if out is not None:
        from PIL import Image

        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(sheet_rows, 0)).save(out / "heldout_reconstructions.png")
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return json.dumps(report, indent=2)
