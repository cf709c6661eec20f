"""The one noise schedule (rectified flow, as Wan): shifted sigmas, and the student's few denoising levels.

The generator, training and the benchmark all take the student's levels from ``stream_sigmas`` so that a
stream denoises exactly at the noise levels the student was trained on.
"""

from __future__ import annotations

import torch

from ..config import StreamConfig


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """Shifted schedule: spends more steps at high noise (Wan/SD3 style)."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def stream_sigmas(stream: StreamConfig) -> torch.Tensor:
    """The student's denoising noise levels: nominal timesteps / 1000, shifted by the config's shift."""
    t = torch.tensor(stream.denoise_timesteps, dtype=torch.float32) / 1000.0
    return shift_sigma(t, stream.timestep_shift)
