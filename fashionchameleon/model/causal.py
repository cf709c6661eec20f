"""The three cached passes every block-causal user needs: prefill the prefix, denoise a block, commit it.

The streaming generator, DMD rollouts, evaluation priming and the tests all call these, so there is
one definition of what a block sees.
"""

from __future__ import annotations

from typing import Callable

import torch

from .dit import WanDiT
from .kv_cache import KVCache, LayerCapture, WindowPolicy, block_causal_mask


class StopRequested(Exception):
    """Raised between denoising steps when the caller asked the stream to stop."""


def new_cache(model: WanDiT, latent_hw: tuple[int, int], policy: WindowPolicy, prefix_frames: int = 2) -> KVCache:
    _, ph, pw = model.config.patch_size
    return KVCache(model.config.num_layers, model.config.attention_head_dim,
                   (latent_hw[0] // ph, latent_hw[1] // pw), policy, prefix_frames)


def prefix_reference(model: WanDiT, prefix: torch.Tensor) -> torch.Tensor | None:
    """The latent a model with ``reference_channels`` concatenates to every frame: the prefix's first frame
    (the reference person); None for models without."""
    return prefix[:, :, :1] if model.config.reference_channels else None


def encode_prefix(model: WanDiT, prefix: torch.Tensor, text) -> LayerCapture:
    """One t=0 pass over the condition frames (b, c, P, h, w); they attend only to each other."""
    capture = LayerCapture()
    zeros = torch.zeros(prefix.shape[0], prefix.shape[2], device=prefix.device)
    model(prefix, zeros, text, capture=capture, text_is_embedded=True, kv_only=True,
          reference=prefix_reference(model, prefix))
    return capture


def prefill(model: WanDiT, cache: KVCache, prefix: torch.Tensor, text) -> None:
    cache.set_prefix(encode_prefix(model, prefix, text))
    cache.reference = prefix_reference(model, prefix)


def prefill_and_recache(model: WanDiT, cache: KVCache, prefix: torch.Tensor, recent: torch.Tensor, text) -> None:
    """One pass instead of two after a switch that emptied the sink and history: the new prefix (which
    attends only to itself) and the re-cached recent frames (which see the new prefix and themselves),
    numerically the same as ``prefill`` followed by ``commit(..., to_history=True)``."""
    if cache.frames("sink") or cache.frames("history"):
        raise ValueError("prefill_and_recache needs an empty sink and history")
    p, k = prefix.shape[2], recent.shape[2]
    mask = torch.zeros(p + k, p + k, dtype=torch.bool)
    mask[:p, :p] = True
    mask[p:, :] = block_causal_mask(k, k, WindowPolicy(0, 0), context_frames=p)
    capture = LayerCapture()
    t = torch.zeros(prefix.shape[0], p + k, device=prefix.device)
    reference = prefix_reference(model, prefix)
    model(torch.cat([prefix, recent], 2), t, text, frame_mask=mask, capture=capture, text_is_embedded=True,
          kv_only=True, reference=reference)
    cache.set_prefix(capture.frames_slice(0, p))
    cache.reference = reference
    cache.commit(capture.frames_slice(p, p + k), to_history=True)


def denoise(model: WanDiT, cache: KVCache, noisy: torch.Tensor, timestep: torch.Tensor, text) -> torch.Tensor:
    """Velocity for a block of noisy frames that sees everything visible in the cache and itself."""
    return model(noisy, timestep, text, positions=cache.query_positions(noisy.shape[2], noisy.device),
                 context=cache, text_is_embedded=True, reference=cache.reference)


def commit(model: WanDiT, cache: KVCache, clean: torch.Tensor, text, to_history: bool = False) -> None:
    """t=0 pass over a finished block: its keys/values enter the cache (the pass stops at the last layer's
    keys/values, since its output is never used)."""
    capture = LayerCapture()
    zeros = torch.zeros(clean.shape[0], clean.shape[2], device=clean.device)
    model(clean, zeros, text, positions=cache.query_positions(clean.shape[2], clean.device),
          context=cache, capture=capture, text_is_embedded=True, kv_only=True, reference=cache.reference)
    cache.commit(capture, to_history=to_history)


def denoise_block(model: WanDiT, cache: KVCache, noise: torch.Tensor, sigmas: torch.Tensor, text, *,
                  exit_step: int | None = None, generator: torch.Generator | None = None,
                  renoise: list[torch.Tensor] | None = None, should_stop=None,
                  negative: KVCache | None = None, guidance: float = 1.0, guided_steps: int = 0,
                  x0_map: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Few-step sampling of one block: predict x0 at each noise level, re-noise to the next one.

    ``exit_step`` (DMD training) stops after that step and lets gradients flow through it only. Returns the
    clean estimate. Re-noising draws from ``generator`` unless ``renoise`` gives the noises. ``should_stop()``
    is polled before every step (a stop lands within one step). With ``negative`` (the same cache with another
    garment in its prefix) and ``guidance`` != 1, the first ``guided_steps`` steps (0: all) are guided away from
    that garment, classifier-free style: ``v_n + guidance (v - v_n)``. ``x0_map`` edits every step's clean
    estimate before it is re-noised or returned (the streaming reference snap).
    """
    last = len(sigmas) - 1 if exit_step is None else exit_step
    guided = 0 if negative is None or guidance == 1.0 else (guided_steps or last + 1)
    x = noise
    b = noise.shape[0]
    x0 = noise
    for k in range(last + 1):
        if should_stop is not None and should_stop():
            raise StopRequested
        s = sigmas[k]
        t = (s * 1000).expand(b).to(x.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and k == last):
            v = denoise(model, cache, x, t, text)
            if k < guided:
                v_n = denoise(model, negative, x, t, text)
                v = v_n + guidance * (v - v_n)
            x0 = x - s * v
            if x0_map is not None:
                x0 = x0_map(x0)
        if k < last:
            nxt = sigmas[k + 1]
            eps = renoise[k] if renoise is not None else torch.randn(x.shape, generator=generator)
            eps = eps.to(x.device)
            x = (1 - nxt) * x0.detach() + nxt * eps
    return x0
