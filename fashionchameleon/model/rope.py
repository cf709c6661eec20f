"""3D rotary position embedding of Wan, with temporal positions given explicitly.

Wan splits each head's channels into a temporal, a height and a width part and rotates channel pairs
(interleaved: 0/1, 2/3, ...) by angle ``position * theta ** (-2i / dim)``. Diffusers precomputes a table
for positions 0..1023; we compute angles from the positions themselves, so a frame can sit at any offset
(the KV cache re-rotates stored keys when the visible window moves).
"""

from __future__ import annotations

import torch


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels of a head given to the (time, height, width) axes, as in Wan."""
    h = w = 2 * (head_dim // 6)
    return head_dim - h - w, h, w


def _inv_freq(dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))


def rope_rotation(frame_positions: torch.Tensor, height: int, width: int, head_dim: int,
                  theta: float = 10000.0) -> torch.Tensor:
    """Unit complex rotations ``exp(i * angle)``, shape (frames * height * width, head_dim // 2), token
    order (f, h, w); angles are formed in float64 so large positions keep their precision."""
    t_dim, h_dim, w_dim = axis_dims(head_dim)
    device = frame_positions.device
    pos_t = frame_positions.to(torch.float64)
    ang_t = torch.outer(pos_t, _inv_freq(t_dim, theta).to(device))
    ang_h = torch.outer(torch.arange(height, dtype=torch.float64, device=device), _inv_freq(h_dim, theta).to(device))
    ang_w = torch.outer(torch.arange(width, dtype=torch.float64, device=device), _inv_freq(w_dim, theta).to(device))
    f = len(pos_t)
    ang = torch.cat([
        ang_t[:, None, None, :].expand(f, height, width, -1),
        ang_h[None, :, None, :].expand(f, height, width, -1),
        ang_w[None, None, :, :].expand(f, height, width, -1),
    ], dim=-1).reshape(f * height * width, -1)
    return torch.polar(torch.ones_like(ang), ang).to(torch.complex64)


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of ``x`` (..., tokens, head_dim): each pair is one complex number,
    multiplied by its token's rotation (one complex multiply instead of four real ones and a stack)."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)
