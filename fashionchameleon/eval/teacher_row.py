"""The teacher as a SwitchBench row (protocol a): at each switch it samples the next clip bidirectionally
from [reference = the last frame before the switch, the new garment] -- what the student's switch imitates,
at 50 steps with CFG."""

from __future__ import annotations

import numpy as np
import torch

from ..training.flow import Conditions, sample_teacher
from .switchbench import case_metrics


@torch.no_grad()
def teacher_frames(teacher, gen, gt, case, guidance: float = 3.0) -> np.ndarray:
    codec, preset = gen.codec, gen.preset
    frames = gt.clip.frames[: case.switch_frames[0]].copy()
    text = teacher.embed_text([gt.prompt]) if teacher.config.prompt_vocab else None
    out = [frames]
    ends = case.switch_frames[1:] + [case.num_frames]
    for k, (start, end) in enumerate(zip(case.switch_frames, ends)):
        last = torch.from_numpy(np.concatenate(out)[-1].copy()).float().div(127.5).sub(1).permute(2, 0, 1)[None]
        garment = torch.from_numpy(gen.garment_image(gt.garment_images[k + 1]).copy()).float().div(127.5).sub(1)
        cond = Conditions(codec.encode_image(last), codec.encode_image(garment.permute(2, 0, 1)[None]), text)
        n_lat = preset.train_latent_frames
        h, w = cond.reference.shape[-2:]
        lat = sample_teacher(teacher, cond, (1, preset.latent_channels, n_lat, h, w), steps=50, guidance=guidance,
                             generator=torch.Generator().manual_seed(k))
        video = ((codec.decode(lat)[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
        need = end - start
        seg = video[1:1 + need]            # teacher frame 0 is the reference's pose (the frame before the switch)
        if len(seg) < need:
            seg = np.concatenate([seg, np.repeat(seg[-1:], need - len(seg), 0)])
        out.append(seg)
    return np.concatenate(out)[: case.num_frames]


def teacher_case_metrics(teacher, gen, gt, case, guidance: float = 3.0) -> dict[str, float]:
    """The teacher row's protocol (a) metrics on one case (without the leakage curve)."""
    m = case_metrics(teacher_frames(teacher, gen, gt, case, guidance=guidance), gt, primed=True)
    m.pop("_leakage_curve", None)
    return m
