"""Flow matching (rectified flow, as Wan): noise schedule, the in-context sequence, the teacher sampler.

``x_sigma = (1 - sigma) * x0 + sigma * noise``; the network predicts the velocity ``noise - x0`` at
timestep ``1000 * sigma``. The condition prefix ``[reference, garment]`` always sits at t = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model import causal
from ..model.dit import WanDiT
from ..model.kv_cache import WindowPolicy
from ..model.schedule import shift_sigma  # noqa: F401  (the schedule lives with the model; re-exported)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``sigma`` broadcasts over (b,) or (b, frames)."""
    s = sigma.view(*sigma.shape, *([1] * (x0.ndim - sigma.ndim))) if sigma.ndim == 1 else sigma[:, None, :, None, None]
    return (1 - s) * x0 + s * noise


@dataclass
class Conditions:
    """A batch's conditions: reference and garment latents (b, C, 1, h, w) and prompt text."""

    reference: torch.Tensor
    garment: torch.Tensor
    text: torch.Tensor | None          # embedded text tokens (b, L, dim)

    @property
    def prefix(self) -> torch.Tensor:
        return torch.cat([self.reference, self.garment], 2)

    def drop_garment(self, drop: torch.Tensor) -> "Conditions":
        """Zero the garment latent where ``drop`` (b,) is True (classifier-free guidance's unconditional)."""
        g = torch.where(drop.view(-1, 1, 1, 1, 1), torch.zeros_like(self.garment), self.garment)
        return Conditions(self.reference, g, self.text)

    @staticmethod
    def cat(a: "Conditions", b: "Conditions") -> "Conditions":
        text = None if a.text is None else torch.cat([a.text, b.text])
        return Conditions(torch.cat([a.reference, b.reference]), torch.cat([a.garment, b.garment]), text)


def bidirectional_velocity(model: WanDiT, cond: Conditions, video: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Teacher mode: every video frame sees the prefix and all video frames; the prefix sees only itself."""
    cache = causal.new_cache(model, video.shape[-2:], WindowPolicy(0, 0))
    causal.prefill(model, cache, cond.prefix, cond.text)
    t = (sigma * 1000).view(-1, 1).expand(video.shape[0], video.shape[2]) if sigma.ndim == 1 else sigma * 1000
    return causal.denoise(model, cache, video, t, cond.text)


def guided_velocity(model: WanDiT, cond: Conditions, video: torch.Tensor, sigma: torch.Tensor,
                    guidance: float) -> torch.Tensor:
    """Classifier-free guidance on the garment: v_u + g (v_c - v_u), both halves in one batch."""
    if guidance == 1.0:
        return bidirectional_velocity(model, cond, video, sigma)
    b = video.shape[0]
    both = Conditions.cat(cond, cond.drop_garment(torch.ones(b, dtype=torch.bool, device=video.device)))
    v = bidirectional_velocity(model, both, torch.cat([video, video]), torch.cat([sigma, sigma]))
    v_c, v_u = v[:b], v[b:]
    return v_u + guidance * (v_c - v_u)


@torch.no_grad()
def sample_teacher(model: WanDiT, cond: Conditions, shape: tuple[int, ...], steps: int = 50, guidance: float = 3.0,
                   shift: float = 3.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler sampling of a whole clip with the bidirectional teacher (the slow reference)."""
    x = torch.randn(shape, generator=generator).to(cond.reference.device, cond.reference.dtype)
    sigmas = shift_sigma(torch.linspace(1.0, 0.0, steps + 1), shift).to(x.device)
    for i in range(steps):
        s = sigmas[i].expand(shape[0]).to(x.device)
        v = guided_velocity(model, cond, x, s, guidance)
        x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x
