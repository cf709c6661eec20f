"""Training-free KV-cache rescheduling: what happens to the cache when the garment changes mid-stream.

Three switchable parts (the paper's garment KV refresh, historical KV withdraw, reference KV disentangle)
and the named variants compared on SwitchBench. The work is batched: one codec call per new image and one
model pass for the new prefix together with the kept recent frames re-cached under it (two passes only
when the sink is kept, since the re-cached frames must also see it).

Positions: after a withdraw the cache is compacted like any other window (prefix at 0..1, surviving sink
and history right after it), so the next block sits where a training block would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from ..config import StreamConfig
from ..model import causal
from ..model.kv_cache import KVCache


@dataclass(frozen=True)
class SwitchPolicy:
    refresh: bool = True          # encode the new garment, recompute the prefix
    withdraw: bool = True         # drop history showing the old garment
    keep_recent: int = 3          # history frames a withdraw keeps (re-cached at t=0 under the new prefix)
    withdraw_sink: bool = True    # the sink shows the old garment too
    disentangle: bool = True      # reference := last generated frame (decode -> last frame -> encode_image)
    restart: bool = False         # start a new generation from the last frame (nothing kept, decoder reset)
    # Beyond the paper: a reference rebuilt from a generated frame carries that frame's errors, and ten
    # switches compound them. Two ways to stop the compounding, both training-free:
    reference_mix: float = 1.0    # rebuilt reference latent = mix * last frame + (1 - mix) * original reference
    reanchor_after: int = 0       # blocks after a switch at which the original reference is put back (0: never)
    reanchor_mix: float = 0.0     # the last frame's share in the reference put back then (0: the original alone)
    # The blend pulls a moved limb back toward the photo's pose (a jump at the switch). Where the last frame's
    # latent differs from the original's by more than ``reference_gate`` times the mean difference (motion,
    # not slow drift), the rebuilt reference takes the last frame alone (0: blend everywhere).
    reference_gate: float = 0.0
    # The rebuilt reference and the kept frames still show the old garment, and a model that learned to copy
    # its reference follows them. Guidance away from the old garment, classifier-free style with the old
    # garment in the negative prefix (a condition the model knows, unlike a dropped one), pushes the first
    # block(s) after a switch toward the new one: one more model pass per guided step, on those blocks only
    # (1: off).
    guidance: float = 1.0
    guidance_blocks: int = 1      # blocks after a switch that are guided
    guidance_steps: int = 0       # denoising steps of such a block that are guided, from the first (0: all)


VARIANTS = ("full", "paper", "no_refresh", "no_withdraw", "no_disentangle", "naive", "restart",
            "reanchor", "blend", "recent_only", "blend_late", "gated")


def variant_policy(name: str, stream: StreamConfig | None = None) -> SwitchPolicy:
    """Named variants. ``full`` is the project's default: the paper's three operations with the rebuilt
    reference blended with the original one (``reference_mix`` = 0.75 of the last frame), and the original
    reference put back one block later (``reanchor_after`` = 1), chosen among the candidates on training
    seeds (MODEL_CARD, "Ten switches"); its settings come from the streaming config ``stream`` (default:
    ``StreamConfig()``), guidance away from the old garment included (off unless the config sets it; the
    ablations derived from ``full`` inherit it). ``paper`` is the paper's exact recipe (never guided).
    ``reanchor``, ``blend``, ``recent_only``, ``blend_late`` and ``gated`` are the candidates as they were
    measured."""
    c = stream or StreamConfig()
    paper = SwitchPolicy(keep_recent=0, withdraw_sink=True)
    full = SwitchPolicy(keep_recent=c.keep_recent, withdraw_sink=c.withdraw_sink, reference_mix=c.reference_mix,
                        reanchor_after=c.reanchor_after, reanchor_mix=c.reanchor_mix, reference_gate=c.reference_gate,
                        guidance=c.switch_guidance, guidance_blocks=c.switch_guidance_blocks,
                        guidance_steps=c.switch_guidance_steps)
    table = {
        "full": full,
        "paper": paper,
        "no_refresh": replace(full, refresh=False),
        "no_withdraw": replace(full, withdraw=False),
        "no_disentangle": replace(full, disentangle=False, reference_mix=1.0, reanchor_after=0, reanchor_mix=0.0),
        "naive": SwitchPolicy(refresh=True, withdraw=False, disentangle=False),
        "restart": SwitchPolicy(refresh=True, withdraw=True, keep_recent=0, withdraw_sink=True, disentangle=True,
                                restart=True),
        # the candidates for `full`, measured against each other (ten switches in a row, training seeds)
        "reanchor": replace(paper, reanchor_after=1),
        "blend": replace(paper, reference_mix=0.5),
        "recent_only": replace(paper, keep_recent=max(c.keep_recent, 3), disentangle=False),
        # the last frame alone at the switch (the motion carries on from it), the blend one block later
        "blend_late": replace(full, reference_mix=1.0, reanchor_after=1, reanchor_mix=0.5),
        # the blend only where the last frame agrees with the photo; where something moved, the last frame
        "gated": replace(full, reference_mix=0.5, reanchor_after=0, reference_gate=1.5),
    }
    if name not in table:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return table[name]


def mix_reference(last_latent: torch.Tensor, original: torch.Tensor | None, mix: float,
                  gate: float = 0.0) -> torch.Tensor:
    """``mix`` of the last frame's latent plus the rest of the original reference (mix 1: the last frame).
    With ``gate`` > 0, latent positions (and their neighbours) whose channel-mean absolute difference exceeds
    ``gate`` x its mean over the frame take the last frame alone."""
    if mix >= 1.0 or original is None:
        return last_latent
    weight = torch.full_like(last_latent[:, :1], mix)
    if gate > 0:
        diff = (last_latent - original).abs().mean(1, keepdim=True)                     # (b, 1, 1, h, w)
        moved = (diff > gate * diff.mean(dim=(-2, -1), keepdim=True)).float()
        moved = torch.nn.functional.max_pool3d(moved, (1, 3, 3), stride=1, padding=(0, 1, 1))
        weight = torch.maximum(weight, moved)
    return weight * last_latent + (1.0 - weight) * original


@dataclass
class SwitchResult:
    reference: torch.Tensor
    garment: torch.Tensor
    last_latent: torch.Tensor | None      # the last frame encoded (disentangle), for a later re-anchor blend
    kept_frames: int
    seconds: float


class KVRescheduler:
    """Applies a ``SwitchPolicy`` to a cache between blocks."""

    def __init__(self, model, codec, policy: SwitchPolicy):
        self.model, self.codec, self.policy = model, codec, policy

    @torch.no_grad()
    def reanchor(self, cache: KVCache, *, reference: torch.Tensor, garment: torch.Tensor, text) -> float:
        """Put the original reference (or its blend with the switch's last frame) back in the prefix, history
        kept: once a switch has landed, the history carries the motion, and the reference only has to hold
        identity and scene. Returns seconds."""
        t0 = time.perf_counter()
        causal.prefill(self.model, cache, torch.cat([reference, garment], 2), text)
        return time.perf_counter() - t0

    @torch.no_grad()
    def negative(self, cache: KVCache, *, reference: torch.Tensor, old_garment: torch.Tensor, text) -> KVCache:
        """For a guided block: ``cache`` forked (its frames shared), with the garment before the switch in its
        prefix instead of the new one."""
        negative = cache.fork()
        causal.prefill(self.model, negative, torch.cat([reference, old_garment], 2), text)
        return negative

    @torch.no_grad()
    def switch(self, cache: KVCache, *, reference: torch.Tensor, garment: torch.Tensor, new_garment_image: torch.Tensor,
               last_frame: torch.Tensor | None, recent_latents: torch.Tensor | None, text,
               original_reference: torch.Tensor | None = None) -> SwitchResult:
        """Reschedule ``cache`` for a new garment.

        reference / garment: the current prefix latents (b, C, 1, h, w); new_garment_image (b, 3, H, W) in
        [-1, 1]; last_frame (b, 3, H, W): the last decoded frame; recent_latents (b, C, n, h, w): the last
        generated clean latents (for re-caching ``keep_recent`` of them); original_reference: the session's
        first reference latent (for ``reference_mix`` < 1). Returns the new prefix latents.
        """
        t0 = time.perf_counter()
        p = self.policy
        dtype = reference.dtype
        if p.refresh:
            garment = self.codec.encode_image(new_garment_image).to(dtype)
        last_latent = None
        if p.disentangle and last_frame is not None:
            last_latent = self.codec.encode_image(last_frame).to(dtype)
            reference = mix_reference(last_latent, original_reference, p.reference_mix, p.reference_gate)
        kept = 0
        if p.restart:
            cache.reset()
            causal.prefill(self.model, cache, torch.cat([reference, garment], 2), text)
        elif not p.withdraw:
            causal.prefill(self.model, cache, torch.cat([reference, garment], 2), text)
        else:
            kept = min(p.keep_recent, cache.frames("history") + cache.frames("sink"),
                       0 if recent_latents is None else recent_latents.shape[2])
            cache.clear("history")
            if p.withdraw_sink:
                cache.clear("sink")
            # the last frames are re-cached at t=0 under the new prefix, as history: they show the old
            # garment, so they must roll out of the window rather than become a permanent sink
            prefix = torch.cat([reference, garment], 2)
            if kept and not cache.frames("sink"):
                causal.prefill_and_recache(self.model, cache, prefix, recent_latents[:, :, -kept:], text)
            else:
                causal.prefill(self.model, cache, prefix, text)
                if kept:
                    causal.commit(self.model, cache, recent_latents[:, :, -kept:], text, to_history=True)
        return SwitchResult(reference, garment, last_latent, kept, time.perf_counter() - t0)
