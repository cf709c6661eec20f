"""``python -m fashionchameleon train-codec``: train the small codec of `tiny` on the synthetic world.

Clips and single images (garment flat lays, references) from a pre-rendered bank of training seeds; loss
= MSE + 0.5 L1 in [-1, 1] plus a small latent-magnitude penalty; the decoder also sees slightly noisy
latents so it tolerates generated ones. Exact resume from the run folder; at the end latents are
normalised per channel, the codec is saved with its SHA-256, and a loss curve and held-out contact sheet
are written.

``--config`` picks the world (its ``world_version``) and the frame size the bank is rendered at (its
``world_size``): `tiny` (the default) is v1 at 128x128, exactly as before; a v2 preset (e.g. `tiny-v2-a`)
renders world v2 in portrait. The codec is convolutional, so one codec serves every size of its world.

``--tune-decoder FOLDER`` trains only the decoder of a trained codec, with a full-resolution refinement
(``--pixel-width`` channels) that smooths the seams between 8x8 blocks and 16-px tokens. The encoder and
the latent normalisation stay frozen, so the latent space is the same: models and latent banks made with
the original keep working (its ``latent_sha256`` is the original's). The decoder then also sees latents
with noise constant over each token (2x2 latent positions), the error a DiT with 2x2 patches makes, so it
learns to decode them without the grid.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Preset, get_preset
from ..data.datasets import Bank, check_training_seeds, render_bank, to_tensor_image, to_tensor_video
from ..model.codec import TinyCodec
from .runstate import (append_log, default_run_dir, load_run_state, plot_curves, read_log, save_run_state,
                       step_generator, step_rng, truncate_log)

WINDOW = 9  # video frames per training clip (3 latents)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8, help="clips per step (plus as many single images)")
    p.add_argument("--crop", type=int, default=64, help="training crop size (the codec is convolutional)")
    p.add_argument("--lr", type=float, default=None, help="default 1e-3 (3e-4 with --tune-decoder)")
    p.add_argument("--bank-clips", type=int, default=1200, help="training seeds rendered into the bank")
    p.add_argument("--bank-frames", type=int, default=17)
    p.add_argument("--config", default="tiny", help="preset whose world version and frame size the bank is "
                   "rendered at (tiny: world v1, 128x128; tiny-v2-*: world v2, portrait)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="run state (default ~/.cache/fashionchameleon/runs/codec, codec-v2 for world v2)")
    p.add_argument("--out", type=Path, default=None,
                   help="codec folder (default assets/checkpoints/codec; world v2: assets/checkpoints/codec-v2)")
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-seeds", default="500000-500031", help="held-out seeds for the final report")
    p.add_argument("--tune-decoder", type=Path, default=None, metavar="FOLDER",
                   help="train only the decoder of this trained codec (encoder frozen: the same latent space), "
                        "adding a full-resolution refinement that smooths block and token seams")
    p.add_argument("--pixel-width", type=int, default=24, help="channels of that refinement (--tune-decoder)")
    p.add_argument("--token-noise", type=float, default=0.2,
                   help="largest token-constant latent noise, in latent standard deviations (--tune-decoder)")
    p.add_argument("--bank", type=Path, default=None, help="a rendered clip bank (.npz) to use instead of "
                   "rendering one into the run folder (e.g. the one the codec was trained on)")


def batch_at(bank: Bank, step: int, batch: int, seed: int, crop: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 9-frame windows and single images, as aligned random crops (multiples of 8; square crops of
    portrait frames too)."""
    rng = step_rng(seed, step)
    idx = rng.integers(len(bank.seeds), size=batch)
    starts = rng.integers(bank.clips.shape[1] - WINDOW + 1, size=batch)
    clips = np.stack([bank.clips[i, s:s + WINDOW] for i, s in zip(idx, starts)])
    flips = rng.random(batch) < 0.5
    clips[flips] = clips[flips][:, :, :, ::-1]
    kinds = rng.integers(3, size=batch)
    j = rng.integers(len(bank.seeds), size=batch)
    frames = rng.integers(bank.clips.shape[1], size=batch)
    images = np.stack([bank.garments[a] if k == 0 else bank.references[a] if k == 1 else bank.clips[a, f]
                       for k, a, f in zip(kinds, j, frames)])
    h, w = clips.shape[-3:-1]
    if h == w and crop < h:
        # square frames (v1): the original draws, so v1 codec runs resume and reproduce exactly
        cells = (h - crop) // 8 + 1
        ys, xs = rng.integers(cells, size=(2, 2, batch)) * 8
        clips = np.stack([c[:, y:y + crop, x:x + crop] for c, y, x in zip(clips, ys[0], xs[0])])
        images = np.stack([im[y:y + crop, x:x + crop] for im, y, x in zip(images, ys[1], xs[1])])
    elif h != w and crop < max(h, w):
        ch, cw = min(crop, h), min(crop, w)
        ys = rng.integers((h - ch) // 8 + 1, size=(2, batch)) * 8
        xs = rng.integers((w - cw) // 8 + 1, size=(2, batch)) * 8
        clips = np.stack([c[:, y:y + ch, x:x + cw] for c, y, x in zip(clips, ys[0], xs[0])])
        images = np.stack([im[y:y + ch, x:x + cw] for im, y, x in zip(images, ys[1], xs[1])])
    return to_tensor_video(clips), to_tensor_image(images)


@torch.no_grad()
def pca_groups(bank: Bank, clips: int = 200, per_clip: int = 96) -> torch.Tensor:
    """Patch groups (8x8 pixels x 4 frames) of training clips and of still images, for the PCA init."""
    rng = np.random.default_rng(0)
    out = []
    for i in rng.choice(len(bank.seeds), size=min(clips, len(bank.seeds)), replace=False):
        video = to_tensor_video(bank.clips[i, :WINDOW])[None]
        still = to_tensor_image(np.stack([bank.garments[i], bank.references[i]]))[:, :, None]
        for x in (video, still):
            groups = TinyCodec.to_groups(x)
            g = groups.permute(0, 1, 3, 4, 2).reshape(-1, groups.shape[2])
            out.append(g[torch.from_numpy(rng.choice(len(g), size=min(per_clip, len(g)), replace=False))])
    return torch.cat(out)


def token_noise(z: torch.Tensor, scale: float, gen: torch.Generator, token: int = 2) -> torch.Tensor:
    """Noise constant over each ``token`` x ``token`` block of latent positions (aligned to the top-left, as a
    DiT's patches are), each sample at its own strength up to ``scale`` standard deviations of z."""
    b, c, n, h, w = z.shape
    coarse = torch.randn(b, c, n, -(-h // token), -(-w // token), generator=gen)
    blocks = coarse.repeat_interleave(token, -2).repeat_interleave(token, -1)[..., :h, :w]
    strength = scale * torch.rand(b, 1, 1, 1, 1, generator=gen)
    return strength * z.std() * blocks


def codec_loss(codec, video: torch.Tensor, images: torch.Tensor, gen: torch.Generator,
               tune_decoder: bool = False, token_scale: float = 0.0) -> tuple[torch.Tensor, dict]:
    total, logs = 0.0, {}
    for name, x in (("video", video), ("image", images[:, :, None])):
        with torch.set_grad_enabled(torch.is_grad_enabled() and not tune_decoder):   # a frozen encoder
            z = codec.encode_raw(x)
        noisy = z + 0.03 * z.detach().std() * torch.randn(z.shape, generator=gen)
        if tune_decoder:
            noisy = noisy + token_noise(z, token_scale, gen)
        rec = codec.decode_raw(noisy, None, True)[0]
        mse = F.mse_loss(rec, x)
        total = total + mse + 0.5 * F.l1_loss(rec, x) + (0.0 if tune_decoder else 1e-4 * z.pow(2).mean())
        logs[f"mse_{name}"] = mse.item()
    return total, logs


def codec_to_tune(folder: Path, pixel_width: int) -> TinyCodec:
    """A trained codec with a (zero-initialised) pixel refinement added, its encoder frozen."""
    import dataclasses

    base = TinyCodec.load(folder)
    if base.tuned_from:
        raise SystemExit(f"error: {folder} is already a tuned decoder; tune the codec it came from")
    codec = TinyCodec(dataclasses.replace(base.config, pixel_width=pixel_width))
    missing, unexpected = codec.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("dec_pixel.") for k in missing), (missing, unexpected)
    codec.tuned_from = base.latent_sha256
    frozen = codec.encoder_state()
    for name, p in codec.named_parameters():
        p.requires_grad_(name not in frozen)
    return codec


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(-1, 1), b).item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def codec_world(preset: Preset) -> tuple[int, int | tuple[int, int]]:
    """(world version, render size) a codec for ``preset`` trains on; the tiny codec is 8x only."""
    if preset.spatial_compression != 8 or preset.latent_channels != 16:
        raise SystemExit(f"error: the tiny codec has 16 channels at 8x; {preset.name} needs "
                         f"{preset.latent_channels} at {preset.spatial_compression}x")
    try:
        return preset.training_world()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    preset = get_preset(getattr(args, "config", "tiny"))
    version, size = codec_world(preset)
    # v1 keeps its run folder, bank name and output (existing runs resume); v2 gets its own
    suffix = "" if version == 1 else f"-v{version}"
    tune = getattr(args, "tune_decoder", None)
    if tune is not None and not (tune / "config.json").is_file():
        raise SystemExit(f"error: --tune-decoder {tune}: no codec there")
    args.out = args.out or Path(f"assets/checkpoints/codec{suffix}" + ("-decoder" if tune else ""))
    run_dir = args.run_dir or default_run_dir(f"codec{suffix}" + ("-decoder" if tune else ""))
    run_dir.mkdir(parents=True, exist_ok=True)
    tag = "" if version == 1 else f"v{version}_{size[0]}x{size[1]}_"
    bank_path = run_dir / f"bank_{tag}{args.bank_clips}x{args.bank_frames}.npz"
    if getattr(args, "bank", None) is not None:
        if not args.bank.is_file():
            raise SystemExit(f"error: --bank {args.bank}: no such file")
        bank = Bank.load(args.bank)
        check_training_seeds(bank.seeds)      # a bank made elsewhere may hold held-out seeds: refused
    elif bank_path.exists():
        bank = Bank.load(bank_path)
    else:
        bank = render_bank(range(args.bank_clips), args.bank_frames, size=size, workers=2, version=version)
        bank.save(bank_path)

    args.lr = args.lr if args.lr is not None else (3e-4 if tune else 1e-3)
    torch.manual_seed(args.seed)
    codec = codec_to_tune(tune, args.pixel_width) if tune else TinyCodec()
    opt = torch.optim.AdamW([p for p in codec.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    step, _ = load_run_state(run_dir, {"codec": codec, "opt": opt})
    truncate_log(run_dir, step)
    if step:
        print(f"resumed {run_dir} at step {step}", file=sys.stderr)
    elif not tune:
        codec.init_pca(pca_groups(bank))

    def lr_at(s: int) -> float:
        warm = min(1.0, (s + 1) / 100)
        return args.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s / args.steps, 1.0))))

    bar = tqdm(total=args.steps, initial=step, desc="tune-decoder" if tune else "train-codec", unit="step", file=sys.stderr)
    codec.train()
    while step < args.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        video, images = batch_at(bank, step, args.batch, args.seed, args.crop)
        t0 = time.perf_counter()
        loss, logs = codec_loss(codec, video, images, step_generator(args.seed, step), tune_decoder=bool(tune),
                                token_scale=args.token_noise if tune else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        opt.step()
        step += 1
        rec = {"step": step, "loss": loss.item(), **logs, "lr": lr_at(step - 1), "sec": time.perf_counter() - t0}
        append_log(run_dir, rec)
        bar.update(1)
        bar.set_postfix(loss=f"{rec['loss']:.4f}", psnr_v=f"{10 * math.log10(4 / max(logs['mse_video'], 1e-12)):.1f}")
        if step % args.save_every == 0 or step == args.steps:
            save_run_state(run_dir, step, {"codec": codec, "opt": opt})
    bar.close()
    plot_curves(read_log(run_dir), ["loss", "mse_video", "mse_image"], run_dir / "loss.png",
                "tiny codec, decoder tuned" if tune else "tiny codec")
    finalize(codec, bank, args, run_dir, version, size)
    return 0


@torch.no_grad()
def finalize(codec, bank: Bank, args: argparse.Namespace, run_dir: Path, version: int = 1,
             size: int | tuple[int, int] = 128) -> None:
    """Per-channel latent normalisation from training clips, save with hash, report held-out PSNR."""
    codec.eval()
    if codec.tuned_from:   # the encoder did not change: neither does the latent normalisation
        base = json.loads((args.tune_decoder / "config.json").read_text())
        extra = {k: v for k, v in base.items() if k not in ("codec", "config", "sha256")}
        extra.update(decoder_tuned_steps=args.steps, pixel_width=codec.config.pixel_width,
                     token_noise=args.token_noise)
        return _save_and_report(codec, args, run_dir, extra, version, size)
    zs = [codec.encode_raw(to_tensor_video(bank.clips[i:i + 16, :WINDOW])) for i in range(0, min(256, len(bank.seeds)), 16)]
    z = torch.cat(zs).transpose(0, 1).flatten(1)
    codec.latent_mean.copy_(z.mean(1))
    codec.latent_std.copy_(z.std(1).clamp_min(1e-3))
    extra = {"trained_steps": args.steps, "train_seeds": f"0-{args.bank_clips - 1}"}
    if version != 1:    # v1's config.json stays as it was
        extra.update(world_version=version, train_size=list(size))
    _save_and_report(codec, args, run_dir, extra, version, size)


def _save_and_report(codec, args: argparse.Namespace, run_dir: Path, extra: dict, version: int,
                     size: int | tuple[int, int]) -> None:
    import shutil

    folder = codec.save(args.out, extra=extra)
    shutil.copy(run_dir / "loss.png", folder / "loss.png")
    from .codec_report import codec_report

    # the report describes the codec as saved (half-precision weights, the sha256 in config.json)
    report = codec_report(TinyCodec.load(folder).eval(), args.eval_seeds, folder, size=size, version=version)
    print(report, file=sys.stderr)
