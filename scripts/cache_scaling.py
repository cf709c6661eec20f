"""Cached vs. uncached block cost as a stream grows (Foundation II's table).

Cached: one denoising pass of a block against the bounded KV cache after N blocks. Uncached: what a model
without a cache pays for the same block -- one masked pass over every frame generated so far (block-causal
mask with the same sink/window visibility). Random `tiny` weights, fp32, 2 threads.

    .venv/bin/python scripts/cache_scaling.py [--blocks 10 100 1000] [--uncached-max 100]
"""

import argparse
import statistics
import time

import torch

from fashionchameleon.config import get_preset
from fashionchameleon.model import causal
from fashionchameleon.model.dit import WanDiT
from fashionchameleon.model.kv_cache import WindowPolicy, block_causal_mask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--uncached-max", type=int, default=100, help="skip the uncached pass beyond this many blocks")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preset = get_preset("tiny")
    s = preset.stream
    policy = WindowPolicy(s.sink_frames, s.window_frames)
    torch.manual_seed(0)
    model = WanDiT(preset.model).eval()
    text = model.embed_text(["walk"])
    bf, hw = s.block_frames, (16, 16)
    rows = []
    with torch.no_grad():
        cache = causal.new_cache(model, hw, policy)
        causal.prefill(model, cache, torch.randn(1, 16, 2, *hw), text)
        done = 0
        block = torch.randn(1, 16, bf, *hw)
        t = torch.tensor([500.0])
        for target in sorted(args.blocks):
            while done < target:
                causal.commit(model, cache, block, text)
                done += 1
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                causal.denoise(model, cache, block, t, text)
                times.append(time.perf_counter() - t0)
            cached = statistics.median(times)
            uncached = None
            if target <= args.uncached_max:
                frames = (target + 1) * bf
                mask = block_causal_mask(frames, bf, policy, context_frames=2)
                prefix = causal.new_cache(model, hw, policy)
                causal.prefill(model, prefix, torch.randn(1, 16, 2, *hw), text)
                x = torch.randn(1, 16, frames, *hw)
                t0 = time.perf_counter()
                model(x, t, text, positions=torch.arange(2, 2 + frames), frame_mask=mask, context=prefix,
                      text_is_embedded=True)
                uncached = time.perf_counter() - t0
            rows.append((target, cached, uncached, cache.memory_bytes()))
            print(f"{target:6d} blocks: cached {cached * 1000:7.1f} ms   uncached "
                  + (f"{uncached * 1000:9.1f} ms" if uncached is not None else "      n/a (too large)")
                  + f"   cache {cache.memory_bytes() / 2**20:.2f} MiB", flush=True)


if __name__ == "__main__":
    main()
