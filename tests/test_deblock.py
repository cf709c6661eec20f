"""The deblocking filter: smooths small seams on the grid lines, keeps edges and ramps, works frame by frame
(a stream decoded block by block gets the same frames), and reaches the stream only when its config asks."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from fashionchameleon.data.datasets import to_uint8
from fashionchameleon.eval.realbench import grid_visibility
from fashionchameleon.model.deblock import deblock


def blocky_frames(seed: int = 0, frames: int = 5, h: int = 48, w: int = 64, seam: float = 0.1) -> torch.Tensor:
    """A smooth random picture with a small constant offset per 16x16 token: faint seams on the token grid."""
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3 * frames, h // 8, w // 8, generator=g) * 1.6 - 0.8,
                                             size=(h, w), mode="bicubic", align_corners=True)
    offsets = (torch.rand(1, 3 * frames, h // 16, w // 16, generator=g) - 0.5) * 2 * seam
    blocks = offsets.repeat_interleave(16, 2).repeat_interleave(16, 3)
    return (smooth + blocks).reshape(1, 3, frames, h, w).clamp(-1, 1)


def test_threshold_zero_is_the_identity():
    v = blocky_frames()
    assert torch.equal(deblock(v, 16, 8, 0.0), v)


def test_faint_seams_fade_and_the_picture_stays():
    v = blocky_frames(seam=0.15)
    out = deblock(v, 16, 8, 0.5)
    before, after = grid_visibility(to_uint8(v[0]), 16), grid_visibility(to_uint8(out[0]), 16)
    assert before > 1.7 and after < 1.0 + 0.25 * (before - 1.0)
    # corrections are equal and opposite around each line: every row's and column's sum is kept
    assert torch.allclose(out.sum(dim=(3, 4)), v.sum(dim=(3, 4)), atol=1e-3)
    assert (out - v).abs().max() < 0.25


def test_edges_and_ramps_on_a_grid_line_are_kept():
    h, w = 32, 48
    edge = torch.full((1, 3, 1, h, w), -0.8)
    edge[..., 16:] = 0.8                           # a strong edge exactly on the token line x = 16
    assert torch.equal(deblock(edge, 16, 8, 0.5), edge)
    ramp = torch.linspace(-0.9, 0.9, w).expand(1, 3, 1, h, w).clone()   # a gradient crossing every line
    assert torch.allclose(deblock(ramp, 16, 8, 0.5), ramp, atol=1e-6)


def test_frame_by_frame_so_streaming_decode_matches_full():
    v = blocky_frames(frames=9)
    full = deblock(v, 16, 8, 0.5)
    chunks = torch.cat([deblock(v[:, :, :1], 16, 8, 0.5), deblock(v[:, :, 1:5], 16, 8, 0.5),
                        deblock(v[:, :, 5:], 16, 8, 0.5)], 2)
    assert torch.equal(full, chunks)


@pytest.mark.parametrize("deblock_on", [0.0, 0.5])
def test_stream_frames_change_only_near_grid_lines(micro_generator, deblock_on):
    """The session applies its config's filter to what it decodes: off, the frames are bit for bit the raw
    decoder's; on, only pixels within a ramp of a grid line can differ."""
    from fashionchameleon.data.world import make_sample

    s = make_sample(5, num_frames=1, size=32)
    frames = {}
    for d in (0.0, deblock_on):
        gen = micro_generator.with_config(stream=replace(micro_generator.preset.stream, deblock=d))
        with gen.session(s.reference, s.garment_image, seed=1, num_frames=21) as session:
            frames[d] = np.concatenate([c.frames for c in session])
    raw, out = frames[0.0].astype(int), frames[deblock_on].astype(int)
    token_px, codec_px = micro_generator.grid_pixels
    assert (token_px, codec_px) == (16, 8)
    far = np.ones(raw.shape[2], bool)              # columns (and, the frame being square, rows) no ramp reaches
    for period, taps in ((codec_px, 3), (token_px, 6)):
        for b in range(period, raw.shape[2] - taps + 1, period):
            far[b - taps:b + taps] = False
    assert far.any() and np.array_equal(out[:, far][:, :, far], raw[:, far][:, :, far])
    assert (deblock_on == 0.0) == np.array_equal(out, raw)
