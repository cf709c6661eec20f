"""``bash scripts/gpu_check.sh`` (``python -m fashionchameleon.gpu_check``): the GPU measurements in one go.

Real shapes (``wan2.2-ti2v-5b``: portrait 704x1280, 880 tokens a latent frame), random weights, bf16:

1. ``stream``: the streaming DiT exactly as a session runs it (prefill, then per block 4 denoising steps and
   a t=0 commit): video frames/s, first-chunk latency, late/early block time, peak memory; with PyTorch's
   SDPA and with flash-attn (when installed), without and with ``torch.compile``.
2. ``vae``: the Wan2.2 VAE (diffusers ``AutoencoderKLWan``, published config, random weights) decoding the
   stream block by block through its feature cache: frames/s and peak memory.
3. ``train``: one FSDP2 training step of the DiT (1 GPU, bf16 compute, fp32 masters and Adam, activation
   checkpointing per block, no EMA copy): seconds a step and peak memory.

Every section writes its figures as soon as it ends (``gpu_check.json`` under ``$OUT`` or ``./gpu_check/``), so
a run cut short keeps what it measured; a section that fails records its error and the next one runs.
``--dry`` runs the same code on the CPU at micro shapes (a few seconds; the tests run it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

# Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json (architecture only; the latent statistics do not change the
# cost, so random weights get mean 0 / std 1).
WAN22_VAE = dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 attn_scales=[], temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                 out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4)
# The same code path at micro shapes (16 channels, 8x spatial like `micro`) for --dry.
DRY_VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
               temperal_downsample=[False, True, True], is_residual=False, in_channels=3, out_channels=3)


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Clock:
    """Wall time with the device synchronised (CUDA kernels run asynchronously)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None


def dry_preset():
    """`micro` taking text-encoder embeddings instead of prompt names: the real shapes' text path."""
    from .config import get_preset

    micro = get_preset("micro")
    return dataclasses.replace(micro, name="micro-text", model=dataclasses.replace(micro.model, prompt_vocab=()))


def random_dit(preset, device: torch.device, dtype: torch.dtype):
    from .model.dit import WanDiT

    with torch.device(device):      # initialised where it runs: a 5B model never passes through host memory
        model = WanDiT(preset.model)
    return model.to(dtype).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------------
# 1. streaming DiT
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def stream_dit(model, preset, device: torch.device, dtype: torch.dtype, blocks: int, clock: Clock) -> dict:
    """Prefill, then ``blocks`` blocks of 4 denoising steps + commit, as a streaming session runs them."""
    from .model import causal
    from .model.kv_cache import WindowPolicy
    from .model.schedule import stream_sigmas

    s = preset.stream
    hw = preset.latent_size
    c = preset.latent_channels
    text = model.embed_text(torch.randn(1, 512 if preset.model.text_dim > 64 else 4, preset.model.text_dim,
                                        device=device, dtype=dtype))
    sigmas = stream_sigmas(preset.stream)
    clock.reset_peak()
    t_start = clock()
    cache = causal.new_cache(model, hw, WindowPolicy(s.sink_frames, s.window_frames))
    causal.prefill(model, cache, torch.randn(1, c, 2, *hw, device=device, dtype=dtype), text)
    gen = torch.Generator(device=device).manual_seed(0)
    times, first = [], None
    for _ in range(blocks):
        t0 = clock()
        noise = torch.randn(1, c, s.block_frames, *hw, device=device, dtype=dtype, generator=gen)
        renoise = [torch.randn(noise.shape, device=device, dtype=dtype, generator=gen) for _ in sigmas[1:]]
        x0 = causal.denoise_block(model, cache, noise, sigmas, text, renoise=renoise)
        causal.commit(model, cache, x0, text)
        t1 = clock()
        times.append(t1 - t0)
        first = first if first is not None else t1 - t_start
    frames = s.block_frames * preset.temporal_compression      # video frames a block adds (after the first)
    steady = statistics.median(times[2:]) if len(times) > 3 else statistics.median(times)
    early = statistics.median(times[1:4]) if len(times) >= 4 else times[-1]
    late = statistics.median(times[-3:])
    return {"blocks": blocks, "fps": frames / steady, "block_s": steady, "first_chunk_s": first,
            "late_early_ratio": late / early, "block_times_s": [round(t, 5) for t in times],
            "visible_frames_at_end": cache.visible_frames, "peak_memory_gb": clock.peak_gb()}


def stream_variants(preset, device: torch.device, dtype: torch.dtype, blocks: int, clock: Clock, dry: bool,
                    compile_: bool = True) -> dict:
    from .model import attention as attn

    model = random_dit(preset, device, dtype)
    has_flash = attn._HAS_FLASH
    out: dict = {"flash_attn_installed": has_flash}
    kernels = ["sdpa"] + (["flash"] if has_flash else [])
    try:
        for kernel in kernels:
            attn._HAS_FLASH = kernel == "flash"     # the model's attention picks flash-attn only when allowed
            log(f"stream: {kernel}, eager")
            out[f"{kernel}_eager"] = stream_dit(model, preset, device, dtype, blocks, clock)
        if compile_:
            best = kernels[-1]
            attn._HAS_FLASH = best == "flash"
            # The feed-forward of every block (one graph shared by all 30: token counts vary, hence dynamic).
            # Whole blocks take the KV cache as an argument and store keys per layer index, which would make
            # dynamo compile each of the 30 layers separately (minutes). The CPU dry run only traces
            # (backend "eager"), no code generation.
            for block in model.blocks:
                block.ffn.compile(dynamic=True, backend="eager" if dry else "inductor")
            out["compiled"] = "feed-forward of every block"
            log(f"stream: {best}, torch.compile (first call compiles)")
            t0 = clock()
            stream_dit(model, preset, device, dtype, 2, clock)
            out["compile_warmup_s"] = clock() - t0
            log(f"stream: {best}, torch.compile")
            out[f"{best}_compiled"] = stream_dit(model, preset, device, dtype, blocks, clock)
    finally:
        attn._HAS_FLASH = has_flash
    return out


# ----------------------------------------------------------------------------------------------------------
# 2. VAE decode, streamed per block
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def vae_decode(preset, device: torch.device, dtype: torch.dtype, blocks: int, clock: Clock, dry: bool) -> dict:
    from diffusers import AutoencoderKLWan

    from .model.codec import WanVAECodec

    cfg = dict(DRY_VAE if dry else WAN22_VAE)
    cfg.update(latents_mean=[0.0] * cfg["z_dim"], latents_std=[1.0] * cfg["z_dim"])
    with torch.device(device):
        vae = AutoencoderKLWan(**cfg)
    codec = WanVAECodec(vae.to(dtype))
    if codec.latent_channels != preset.latent_channels or codec.spatial_compression != preset.spatial_compression:
        raise RuntimeError(f"VAE config does not match {preset.name}'s latent space")
    hw, bf = preset.latent_size, preset.stream.block_frames
    decoder = codec.stream_decoder()
    clock.reset_peak()
    times, frames = [], []
    for _ in range(blocks):
        z = torch.randn(1, preset.latent_channels, bf, *hw, device=device, dtype=dtype)
        t0 = clock()
        out = decoder.decode(z)
        times.append(clock() - t0)
        frames.append(out.shape[2])
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return {"blocks": blocks, "frames_per_block": frames[-1], "fps": frames[-1] / steady, "block_s": steady,
            "first_block_s": times[0], "output_shape": list(out.shape), "peak_memory_gb": clock.peak_gb(),
            "config": {k: v for k, v in cfg.items() if not k.startswith("latents_")}}


# ----------------------------------------------------------------------------------------------------------
# 3. one FSDP2 training step
# ----------------------------------------------------------------------------------------------------------

def train_step(preset, device: torch.device, stage: str, steps: int, clock: Clock, dry: bool) -> dict:
    from .data.bank import LatentBank
    from .training import trainer as trainer_mod

    g = torch.Generator().manual_seed(0)
    n, c, f = 2, preset.latent_channels, preset.train_latent_frames
    hw = preset.latent_size
    text = None if preset.model.prompt_vocab else torch.randn(n, 512 if not dry else 4, preset.model.text_dim,
                                                              generator=g).half()
    bank = LatentBank(torch.arange(n), torch.randn(n, c, f, *hw, generator=g).half(),
                      torch.randn(n, c, 1, *hw, generator=g).half(), torch.randn(n, c, 1, *hw, generator=g).half(),
                      ["walk"] * n, text)
    p = argparse.ArgumentParser()
    trainer_mod.add_arguments(p)
    with tempfile.TemporaryDirectory() as tmp:
        args = p.parse_args(["--stage", stage, "--batch", "1", "--fsdp", "--checkpointing", "--ema", "0",
                             "--warmup", "1", "--run-dir", tmp, "--device", device.type, "--sample-every", "0",
                             "--threads", str(torch.get_num_threads())])
        args.config = preset
        clock.reset_peak()
        t0 = clock()
        with torch.device(device):
            tr = trainer_mod.Trainer(args, bank)
        setup = clock() - t0
        tr.model.train()
        times, logs = [], []
        for step in range(steps):
            t0 = clock()
            logs.append(tr.step(step))
            times.append(clock() - t0)
        params = sum(p.numel() for p in tr.model.parameters())
    return {"stage": stage, "steps": steps, "step_s": times[-1], "first_step_s": times[0], "setup_s": setup,
            "loss": logs[-1]["loss"], "grad_norm": logs[-1]["grad_norm"], "params": params,
            "tokens_per_sample": (f + 2) * hw[0] * hw[1] // 4, "peak_memory_gb": clock.peak_gb(),
            "settings": "FSDP2 1 process, bf16 compute / fp32 masters+Adam, activation checkpointing, no EMA"}


# ----------------------------------------------------------------------------------------------------------

def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--dry", action="store_true", help="CPU, micro shapes: the same code path in seconds")
    p.add_argument("--config", default="wan2.2-ti2v-5b")
    p.add_argument("--out", type=Path, default=None, help="folder for gpu_check.json (default: $OUT or ./gpu_check)")
    p.add_argument("--blocks", type=int, default=None, help="blocks streamed per variant (default 12; dry 4)")
    p.add_argument("--sections", default="stream,vae,train")
    p.add_argument("--train-stage", default="teacher", choices=["teacher", "forcing"])
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args(argv)

    from .config import get_preset

    out_dir = args.out or Path(os.environ.get("OUT") or "gpu_check")
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.dry:
        device, dtype, preset = torch.device("cpu"), torch.float32, dry_preset()
        torch.set_num_threads(min(2, torch.get_num_threads()))
    else:
        if not torch.cuda.is_available():
            log("no CUDA device: use --dry for the CPU path")
            return 2
        device, dtype, preset = torch.device("cuda"), torch.bfloat16, get_preset(args.config)
        torch.backends.cuda.matmul.allow_tf32 = True
    blocks = args.blocks or (4 if args.dry else 12)
    clock = Clock(device)
    w, h = preset.resolution
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "dry": args.dry, "config": preset.name,
        "resolution": f"{w}x{h}", "latent_shape": list(preset.latent_shape), "dtype": str(dtype).replace("torch.", ""),
        "tokens_per_latent_frame": preset.latent_size[0] * preset.latent_size[1] // 4,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "weights": "random", "errors": {}}
    path = out_dir / "gpu_check.json"

    def save() -> None:
        path.write_text(json.dumps(result, indent=2) + "\n")

    sections = {
        "stream": lambda: stream_variants(preset, device, dtype, blocks, clock, args.dry, not args.no_compile),
        "vae": lambda: vae_decode(preset, device, dtype, blocks, clock, args.dry),
        "train": lambda: train_step(preset, device, args.train_stage, 2, clock, args.dry),
    }
    t_all = time.perf_counter()
    for name in [s for s in args.sections.split(",") if s]:
        log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            result[name] = sections[name]()
        except Exception as e:  # noqa: BLE001  (record it, measure the rest)
            result["errors"][name] = f"{type(e).__name__}: {e}"
            log(traceback.format_exc())
        result.setdefault("section_s", {})[name] = round(time.perf_counter() - t0, 2)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        save()
    stream, vae = result.get("stream", {}), result.get("vae", {})
    best = [v for k, v in stream.items() if isinstance(v, dict) and "fps" in v]
    if best and vae:
        # a block's DiT time plus its VAE decode: what a session without overlap would stream at
        dit_s = min(v["block_s"] for v in best)
        result["stream_plus_vae_fps"] = vae["frames_per_block"] / (dit_s + vae["block_s"])
    result["total_s"] = round(time.perf_counter() - t_all, 2)
    save()
    print(json.dumps(result))
    log(f"wrote {path}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(run())
