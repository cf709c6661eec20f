"""Attention kernels: PyTorch SDPA everywhere, flash-attn on CUDA when it is installed."""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

_HAS_FLASH = importlib.util.find_spec("flash_attn") is not None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax attention over (batch, heads, tokens, head_dim) tensors.

    ``mask`` is boolean (query tokens, key tokens), True where attention is allowed.
    """
    if mask is None and _HAS_FLASH and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        from flash_attn import flash_attn_func  # optional GPU extra

        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
