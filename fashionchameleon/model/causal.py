"""The three cached passes every block-causal user needs: prefill the prefix, denoise a block, commit it.

The streaming generator, DMD rollouts, evaluation priming and the tests all call these, so there is
one definition of what a block sees.
"""

from __future__ import annotations

import torch

from .dit import WanDiT
from .kv_cache import KVCache, LayerCapture, WindowPolicy


def new_cache(model: WanDiT, latent_hw: tuple[int, int], policy: WindowPolicy, prefix_frames: int = 2) -> KVCache:
    _, ph, pw = model.config.patch_size
    return KVCache(model.config.num_layers, model.config.attention_head_dim,
                   (latent_hw[0] // ph, latent_hw[1] // pw), policy, prefix_frames)


def encode_prefix(model: WanDiT, prefix: torch.Tensor, text) -> LayerCapture:
    """One t=0 pass over the condition frames (b, c, P, h, w); they attend only to each other."""
    capture = LayerCapture()
    zeros = torch.zeros(prefix.shape[0], prefix.shape[2], device=prefix.device)
    model(prefix, zeros, text, capture=capture, text_is_embedded=True)
    return capture


def prefill(model: WanDiT, cache: KVCache, prefix: torch.Tensor, text) -> None:
    cache.set_prefix(encode_prefix(model, prefix, text))


def denoise(model: WanDiT, cache: KVCache, noisy: torch.Tensor, timestep: torch.Tensor, text) -> torch.Tensor:
    """Velocity for a block of noisy frames that sees everything visible in the cache and itself."""
    return model(noisy, timestep, text, positions=cache.query_positions(noisy.shape[2], noisy.device),
                 context=cache, text_is_embedded=True)


def commit(model: WanDiT, cache: KVCache, clean: torch.Tensor, text) -> torch.Tensor:
    """t=0 pass over a finished block: its keys/values enter the cache. Returns the (unused) velocity."""
    capture = LayerCapture()
    zeros = torch.zeros(clean.shape[0], clean.shape[2], device=clean.device)
    out = model(clean, zeros, text, positions=cache.query_positions(clean.shape[2], clean.device),
                context=cache, capture=capture, text_is_embedded=True)
    cache.commit(capture)
    return out
