"""Sample videos during training: the model's clip beside the ground truth of a fixed training item."""

from __future__ import annotations

import numpy as np
import torch

from ..data.datasets import to_uint8


@torch.no_grad()
def generate_clip(model, preset, cond, frames: int, stage: str, generator: torch.Generator) -> torch.Tensor:
    """Latents of one clip: the teacher samples bidirectionally (20 steps, CFG 3), students stream."""
    from ..model import causal
    from ..model.kv_cache import WindowPolicy
    from .flow import sample_teacher
    from ..model.schedule import stream_sigmas

    shape = (1, preset.latent_channels, frames, *cond.reference.shape[-2:])
    if stage == "teacher":
        return sample_teacher(model, cond, shape, steps=20, guidance=3.0, generator=generator)
    s = preset.stream
    cache = causal.new_cache(model, shape[-2:], WindowPolicy(s.sink_frames, s.window_frames))
    causal.prefill(model, cache, cond.prefix, cond.text)
    sigmas, blocks = stream_sigmas(preset.stream), []
    for _ in range(-(-frames // s.block_frames)):
        noise = torch.randn((*shape[:2], s.block_frames, *shape[3:]), generator=generator).to(cond.reference.device)
        x0 = causal.denoise_block(model, cache, noise, sigmas, cond.text, generator=generator)
        causal.commit(model, cache, x0, cond.text)
        blocks.append(x0)
    return torch.cat(blocks, 2)[:, :, :frames]


@torch.no_grad()
def write_sample(trainer, codec, step: int) -> None:
    from ..media import write_mp4
    from .objectives import conditions_of

    model = trainer.ema
    batch = {k: (v.to(trainer.device) if torch.is_tensor(v) else v)
             for k, v in trainer.bank.batch(0, 1, seed=12345).items()}
    cond = conditions_of(model, batch)
    frames = batch["video"].shape[2]
    gen = torch.Generator().manual_seed(0)
    lat = generate_clip(model, trainer.preset, cond, frames, trainer.args.stage, gen)
    fake = to_uint8(codec.decode(lat.float().cpu())[0])
    real = to_uint8(codec.decode(batch["video"].float().cpu())[0])
    out = trainer.run_dir / "samples"
    out.mkdir(exist_ok=True)
    write_mp4(np.concatenate([real, fake], 2), out / f"step_{step:06d}.mp4", fps=trainer.preset.fps)
