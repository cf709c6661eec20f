"""The Wan-family video DiT, written for this project and compatible with diffusers' weights.

One network serves as teacher and student. What differs is only what each query frame may see:

* bidirectional: all frames of the sequence see each other (optionally under a frame-level mask);
* block-causal: a block of frames sees the condition prefix, the sink, a window of history and itself,
  either through a mask over one long sequence (training) or through a KV cache (streaming).

For the cache, every layer hands its new keys (before RoPE) and values to a ``KVCapture`` and may read
extra keys/values (already rotated at their visible positions) from a ``KVContext``. Timesteps are given
per latent frame, so condition frames sit at t=0 while video frames are noisy.

Module and parameter names follow diffusers' ``WanTransformer3DModel`` so state dicts map one to one.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from ..config import ModelConfig
from .attention import attention
from .rope import apply_rope, rope_rotation


class KVContext(Protocol):
    """Keys/values from outside the current forward (the cache), per layer, before the current frames."""

    def extend(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The context's rotated keys and values followed by the current ones, each (batch, heads, tokens,
        head_dim)."""
        ...


class KVCapture(Protocol):
    def capture(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Receives the current frames' keys before RoPE and values, each (batch, heads, frames, hw, head_dim)."""
        ...


class FP32LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


def timestep_sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features [cos | sin] of timesteps (Wan: flip_sin_to_cos, no frequency shift)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    ang = t.float()[..., None] * freqs
    return torch.cat([ang.cos(), ang.sin()], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class TextProjection(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(x), approximate="tanh"))


class ConditionEmbedder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.freq_dim = cfg.freq_dim
        self.time_embedder = TimestepEmbedding(cfg.freq_dim, cfg.inner_dim)
        self.time_proj = nn.Linear(cfg.inner_dim, cfg.inner_dim * 6)
        self.text_embedder = TextProjection(cfg.text_dim, cfg.inner_dim)

    def forward(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame timesteps (batch, frames) -> temb (b, f, dim) and modulation (b, f, 6, dim)."""
        dtype = self.time_embedder.linear_1.weight.dtype
        temb = self.time_embedder(timestep_sinusoid(timestep, self.freq_dim).to(dtype))
        mod = self.time_proj(F.silu(temb)).unflatten(-1, (6, -1))
        return temb, mod


class FeedForward(nn.Module):
    """GELU(tanh) MLP; the ``net.0.proj`` / ``net.2`` names are diffusers'."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        proj = nn.Module()
        proj.proj = nn.Linear(dim, hidden)
        self.net = nn.ModuleList([proj, nn.Dropout(0.0), nn.Linear(hidden, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](F.gelu(self.net[0].proj(x), approximate="tanh"))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (b, heads, tokens, hd)

    def keys_values(self, x: torch.Tensor, frames: int, layer: int,
                    capture: KVCapture | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (before RoPE) and values of the current frames, handed to ``capture`` if given."""
        k = self._heads(self.norm_k(self.to_k(x)))
        v = self._heads(self.to_v(x))
        if capture is not None:
            b, h, n, d = k.shape
            capture.capture(layer, k.view(b, h, frames, n // frames, d), v.view(b, h, frames, n // frames, d))
        return k, v

    def self_attention(self, x: torch.Tensor, frames: int, rotation: torch.Tensor, mask: torch.Tensor | None,
                       layer: int, context: KVContext | None, capture: KVCapture | None) -> torch.Tensor:
        q = self._heads(self.norm_q(self.to_q(x)))
        k, v = self.keys_values(x, frames, layer, capture)
        q, k = apply_rope(q, rotation), apply_rope(k, rotation)
        if context is not None:
            k, v = context.extend(layer, k, v)
        out = attention(q, k, v, mask)
        return self.to_out[0](out.transpose(1, 2).flatten(2))

    def cross_attention(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if text.shape[1] == 1:
            # Softmax over a single key is 1: every query receives that key's value (q is irrelevant).
            return self.to_out[0](self.to_v(text)).expand_as(x)
        q = self._heads(self.norm_q(self.to_q(x)))
        k = self._heads(self.norm_k(self.to_k(text)))
        v = self._heads(self.to_v(text))
        return self.to_out[0](attention(q, k, v).transpose(1, 2).flatten(2))


class _FixedContext:
    """A layer's cache context taken out of the cache before an activation-checkpointed block runs, so the
    recomputation in backward sees exactly the keys/values of the forward even if the cache has moved on
    (a DMD rollout commits blocks after the pass that carries gradients)."""

    def __init__(self, context: KVContext, layer: int):
        ck, cv = context.context(layer)
        self.keys, self.values = ck, cv

    def extend(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([self.keys.to(keys.dtype), keys], 2), torch.cat([self.values.to(values.dtype), values], 2)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.inner_dim
        self.norm1 = FP32LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.attn1 = Attention(dim, cfg.num_attention_heads, cfg.eps)
        self.attn2 = Attention(dim, cfg.num_attention_heads, cfg.eps)
        self.norm2 = FP32LayerNorm(dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, cfg.ffn_dim)
        self.norm3 = FP32LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, text: torch.Tensor | None, mod: torch.Tensor, frames: int,
                rotation: torch.Tensor, mask: torch.Tensor | None, layer: int,
                context: KVContext | None, capture: KVCapture | None, kv_only: bool = False) -> torch.Tensor | None:
        b, n, d = x.shape
        # mod: (b, frames, 6, dim) -> six (b, frames, 1, dim) tensors, broadcast over each frame's tokens
        # (addcmul: one fused multiply-add per modulation instead of two passes over the activations).
        shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table + mod.float()).unsqueeze(2).unbind(3)

        def per_frame(t: torch.Tensor, fn) -> torch.Tensor:
            return fn(t.view(b, frames, n // frames, d)).view(b, n, d)

        h = per_frame(self.norm1(x.float()), lambda t: torch.addcmul(shift, t, 1 + scale)).type_as(x)
        if kv_only:
            self.attn1.keys_values(h, frames, layer, capture)
            return None
        h = self.attn1.self_attention(h, frames, rotation, mask, layer, context, capture)
        x = per_frame(x.float(), lambda t: torch.addcmul(t, h.view(t.shape), gate)).type_as(x)
        if text is not None:
            x = x + self.attn2.cross_attention(self.norm2(x.float()).type_as(x), text)
        h = per_frame(self.norm3(x.float()), lambda t: torch.addcmul(c_shift, t, 1 + c_scale)).type_as(x)
        h = self.ffn(h)
        return per_frame(x.float(), lambda t: torch.addcmul(t, h.float().view(t.shape), c_gate)).type_as(x)


# The copy gate's pre-activation is this multiple of its linear head: Adam moves each weight by about the
# learning rate per step, so the gain sets how fast a gate can open (within tens of steps at 1e-4).
COPY_GAIN = 10.0


class GateClamp(torch.autograd.Function):
    """Clamp to [0, 1]; backward, a gate inside passes its gradient, a gate beyond a bound only the part that
    moves it back inside. A plain clamp would leave a gate shut for good once pushed below 0 (where copying
    hurt), deaf to where copying helps; a plain straight-through one would keep pushing shut gates further and
    swamp the gradient norm (clipped to 1) with that noise."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return z.clamp(0, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        # descent moves z by -grad: below 0 only a negative gradient opens, above 1 only a positive one closes
        passes = ((z >= 0) & (z <= 1)) | ((z < 0) & (grad < 0)) | ((z > 1) & (grad > 0))
        return grad * passes


def far_from_reference(distance: torch.Tensor, threshold: float) -> torch.Tensor:
    """0 where ``distance`` (to the reference latent, per position) is within ``threshold``, 1 at twice it and
    beyond, a smoothstep between: the one fade both the copy gate's cut and the streaming snap use."""
    far = ((distance - threshold) / threshold).clamp(0, 1)
    return far * far * (3 - 2 * far)


def copy_velocity(noisy: torch.Tensor, reference: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The flow-matching velocity whose clean estimate ``noisy - sigma v`` is exactly ``reference``:
    (x_t - reference) / sigma; zero on frames at sigma = 0 (already clean: nothing to copy).
    ``sigma`` is (b, 1, frames, 1, 1)."""
    v = (noisy.float() - reference.float()) / sigma.clamp_min(1e-6)
    return torch.where(sigma > 0, v, torch.zeros_like(v)).to(noisy.dtype)


class RegionHead(nn.Module):
    """Where the copy must not reach, per latent position: logits (b, 1, 1, h, w) from the reference latent
    (b, c, 1, h, w) alone (`train-region` fits it to the person, or to where garments can sit). A few
    convolutions (dilated once, to see a whole torso), run on the one reference frame; the last layer starts at
    zero weights and a low bias, so an unfitted head marks almost nothing."""

    def __init__(self, channels: int, width: int = 48):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.GELU(),
            nn.Conv2d(width, 1, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.constant_(self.net[-1].bias, -6.0)

    def forward(self, reference: torch.Tensor) -> torch.Tensor:
        return self.net(reference[:, :, 0].to(self.net[0].weight.dtype))[:, :, None]


def region_shut(region_logits: torch.Tensor, dilation: int) -> torch.Tensor:
    """The share of the copy gate to shut: the region's probability, spread ``dilation`` latent positions
    (a max filter) for the motion between the reference and the frame."""
    p = torch.sigmoid(region_logits.float())[:, :, 0]
    if dilation:
        p = F.max_pool2d(p, 2 * dilation + 1, stride=1, padding=dilation)
    return p[:, :, None]


class WanDiT(nn.Module):
    """Wan video DiT. ``forward`` maps noisy latents (b, c, f, h, w) to the flow-matching velocity."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        # Activation checkpointing per transformer block (training at real shapes): a block's activations are
        # recomputed in backward instead of stored. Same numbers, less memory, about one more forward.
        self.gradient_checkpointing = False
        dim = cfg.inner_dim
        self.patch_embedding = nn.Conv3d(cfg.in_channels + cfg.reference_channels, dim, kernel_size=cfg.patch_size,
                                         stride=cfg.patch_size)
        self.condition_embedder = ConditionEmbedder(cfg)
        self.blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.num_layers)])
        self.norm_out = FP32LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, cfg.out_channels * math.prod(cfg.patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        if cfg.reference_copy:
            # one gate per output latent position, from the token's features and from how far the network's own
            # clean estimate is from the reference there (near: what did not change; the features alone were
            # slow to tell that apart). All zero: closed until training opens it.
            self.copy_proj = nn.Linear(dim, math.prod(cfg.patch_size))
            nn.init.zeros_(self.copy_proj.weight)
            nn.init.zeros_(self.copy_proj.bias)
            self.copy_distance = nn.Parameter(torch.zeros(()))
        if cfg.region_head:
            self.region_head = RegionHead(cfg.reference_channels)
        if cfg.prompt_vocab:
            self.prompt_embedding = nn.Embedding(len(cfg.prompt_vocab), cfg.text_dim)

    # -- helpers -------------------------------------------------------------------------------------------
    def tokens_per_frame(self, height: int, width: int) -> int:
        _, ph, pw = self.config.patch_size
        return (height // ph) * (width // pw)

    def unknown_prompts(self, prompts: list[str] | tuple[str, ...]) -> list[str]:
        """The prompt names outside this model's vocabulary (all of them for a text-embedding model)."""
        return [p for p in prompts if p not in self.config.prompt_vocab]

    def prompt_ids(self, prompts: list[str] | str) -> torch.Tensor:
        vocab = self.config.prompt_vocab
        prompts = [prompts] if isinstance(prompts, str) else prompts
        bad = self.unknown_prompts(prompts)
        if bad:
            raise ValueError(f"prompt {bad[0]!r} is not one this model knows: {', '.join(vocab)}")
        return torch.tensor([vocab.index(p) for p in prompts], device=self.proj_out.weight.device)

    def embed_text(self, text: torch.Tensor | list[str] | str | None) -> torch.Tensor | None:
        """Projected text tokens (b, L, dim): from prompt names (vocabulary models) or text-encoder output."""
        if text is None:
            return None
        if isinstance(text, (str, list)):
            if not self.config.prompt_vocab:
                raise ValueError("this model takes text embeddings (e.g. umT5), not prompt names")
            text = self.prompt_embedding(self.prompt_ids(text))[:, None]
        return self.condition_embedder.text_embedder(text.to(self.proj_out.weight.dtype))

    def rope(self, positions: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
        return rope_rotation(positions, hp, wp, self.config.attention_head_dim)

    # -- forward ---------------------------------------------------------------------------------------------
    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor | list[str] | str | None = None,
        *,
        positions: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        context: KVContext | None = None,
        capture: KVCapture | None = None,
        text_is_embedded: bool = False,
        kv_only: bool = False,
        reference: torch.Tensor | None = None,
        return_gate: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
        """Velocity prediction.

        Args:
            latents: (b, c, f, h, w).
            timestep: (b,) one timestep per sample, or (b, f) one per latent frame.
            text: (b, L, text_dim) embeddings, prompt names for vocabulary models, or None (no cross-attention).
            positions: temporal RoPE positions of the f frames (default 0..f-1).
            frame_mask: boolean (f, f_context + f), True where a query frame may attend a key frame
                (context frames first).
            context / capture: KV-cache hooks (see module docstring).
            text_is_embedded: ``text`` already went through ``embed_text`` (reuse across denoising steps).
            kv_only: only fill ``capture`` (a t=0 pass that commits frames to the cache): stop once the last
                layer has handed over its keys/values, skipping its attention, MLP and the output head; returns
                None.
            reference: (b, reference_channels, 1, h, w), concatenated to every frame's channels: required by a
                model with ``reference_channels``, refused by one without.
            return_gate: return (velocity, gate, own velocity): also the copy gate (b, 1, f, h, w) and the
                network's velocity before the gate mixed the copy in (a model with ``reference_copy``; training
                supervises the gate).
        """
        if kv_only and capture is None:
            raise ValueError("kv_only needs a capture to fill")
        if return_gate and not self.config.reference_copy:
            raise ValueError("return_gate needs a model with reference_copy")
        b, _, f, h, w = latents.shape
        pt, ph, pw = self.config.patch_size
        if f % pt or h % ph or w % pw:
            raise ValueError(f"latent shape {tuple(latents.shape)} is not divisible by patch size {(pt, ph, pw)}")
        refs = self.config.reference_channels
        if (reference is None) != (refs == 0):
            raise ValueError(f"this model takes {refs} reference channels; got "
                             f"{'none' if reference is None else tuple(reference.shape)}")
        noisy = latents
        if reference is not None:
            if reference.shape[1] != refs or reference.shape[2] != 1 or reference.shape[-2:] != latents.shape[-2:]:
                raise ValueError(f"reference {tuple(reference.shape)} must be (b, {refs}, 1, {h}, {w})")
            latents = torch.cat([latents, reference.to(latents.device, latents.dtype).expand(b, -1, f, -1, -1)], 1)
        f, hp, wp = f // pt, h // ph, w // pw
        hw = hp * wp
        if positions is None:
            positions = torch.arange(f, device=latents.device)
        rotation = self.rope(positions, hp, wp).to(latents.device)

        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        if timestep.ndim == 1:
            timestep = timestep[:, None].expand(b, f)
        temb, mod = self.condition_embedder(timestep)

        text_tokens = text if text_is_embedded else self.embed_text(text)

        mask = None
        if frame_mask is not None:
            mask = frame_mask.to(latents.device).repeat_interleave(hw, 0).repeat_interleave(hw, 1)

        # inputs follow the weights' dtype (bf16 under FSDP mixed precision, fp32 masters stay in the optimizer)
        x = self.patch_embedding(latents.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2).contiguous()
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            only_kv = kv_only and i == last
            if self.gradient_checkpointing and torch.is_grad_enabled() and not only_kv:
                ctx = _FixedContext(context, i) if context is not None else None
                x = torch.utils.checkpoint.checkpoint(block, x, text_tokens, mod, f, rotation, mask, i, ctx, capture,
                                                      use_reentrant=False)
            else:
                x = block(x, text_tokens, mod, f, rotation, mask, i, context, capture, kv_only=only_kv)
        if kv_only:
            return None     # the last layer stopped after handing over its keys/values

        shift, scale = (self.scale_shift_table + temb.float().unsqueeze(2)).unsqueeze(2).unbind(3)
        d = x.shape[-1]
        x = torch.addcmul(shift, self.norm_out(x.float()).view(b, f, hw, d), 1 + scale).view(b, f * hw, d).type_as(x)
        velocity = self._unpatchify(self.proj_out(x), f, hp, wp)
        if self.config.reference_copy:
            timestep = timestep.repeat_interleave(pt, 1)
            sigma = (timestep.float() / 1000).view(b, 1, -1, 1, 1)
            # the gate reads how far the network's own clean estimate is from the reference, without training it
            distance = (noisy.float() - sigma * velocity.float() - reference.float()).norm(dim=1, keepdim=True).detach()
            z = self._unpatchify(self.copy_proj(x), f, hp, wp) + self.copy_distance * distance
            gate = GateClamp.apply(COPY_GAIN * z)
            if self.config.copy_cut:
                gate = gate * (1 - far_from_reference(distance, self.config.copy_cut))
            if self.config.region_head:
                shut = region_shut(self.region_head(reference), self.config.region_dilation)
                gate = gate * (1 - shut)
            own = velocity
            velocity = own + gate * (copy_velocity(noisy, reference, sigma) - own)
            if return_gate:
                return velocity, gate, own
        return velocity

    def _unpatchify(self, x: torch.Tensor, f: int, hp: int, wp: int) -> torch.Tensor:
        """(b, f*hp*wp, patch volume * c) token outputs -> (b, c, frames, h, w)."""
        pt, ph, pw = self.config.patch_size
        x = x.reshape(x.shape[0], f, hp, wp, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
