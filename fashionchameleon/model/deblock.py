"""A deblocking filter for decoded frames: smooths the seams of the token and codec grids, keeps real edges.

A latent video model writes each token (here 16x16 pixels: an 8x codec block times a 2x2 patch) somewhat on
its own; where neighbouring tokens disagree a little, the decoded frame shows a step along the grid line,
and a grid of such steps is what the eye picks up (RealBench's ``grid_visibility``). Video codecs answer the
same artefact with an in-loop deblocking filter (H.264's idea): at each block boundary, a small step between
otherwise smooth sides is a seam and is smoothed; a large step is an edge of the picture and is kept.

Here, at every grid line:

* the *excess step* is the jump across the line beyond the local slope on either side
  (``(q0 - p0) - ((p0 - p1) + (q1 - q0)) / 2``), so a ramp that merely crosses the line is left alone;
* it is spread over ``taps`` pixels on each side as a linear ramp, so a flat seam becomes a gentle gradient;
* its weight fades linearly from 1 (no step) to 0 at ``threshold`` (mean over channels of the excess step, in
  units of the full pixel range): a seam of a few levels is removed, an edge half as tall as the range is kept.

Lines of the token grid get a wide ramp (3/8 of the token), those of the codec's block grid a narrow one;
ramps of neighbouring lines never overlap. Each frame is filtered on its own, so a stream decoded block by
block gives the same frames as one decode of the whole video.
"""

from __future__ import annotations

import torch


def _smooth_lines(video: torch.Tensor, dim: int, period: int, taps: int, threshold: float) -> torch.Tensor:
    """One pass over the grid lines every ``period`` pixels along ``dim`` of a (B, C, T, H, W) video."""
    length = video.shape[dim]
    bounds = torch.arange(period, length - taps + 1, period, device=video.device)
    if taps < 1 or not len(bounds):
        return video
    p0, p1, q0, q1 = (video.index_select(dim, bounds + k) for k in (-1, -2, 0, 1))
    excess = (q0 - p0) - 0.5 * ((p0 - p1) + (q1 - q0))
    # range [-1, 1] is 2 wide: the threshold is in units of the full range
    weight = (1 - excess.abs().mean(dim=1, keepdim=True) / (2 * threshold)).clamp(0, 1)
    # pixel i from the line (0 = next to it) moves by (taps - i) / (2 taps + 1) of the step: a linear ramp
    i = torch.arange(taps, device=video.device)
    share = ((taps - i) / (2 * taps + 1)).to(video.dtype).view(taps, *([1] * (video.dim() - dim - 1)))
    moved = ((excess * weight).unsqueeze(dim + 1) * share).flatten(dim, dim + 1)      # (bound, i) pairs
    where = torch.cat([(bounds[:, None] - 1 - i).flatten(), (bounds[:, None] + i).flatten()])
    return video.index_add(dim, where, torch.cat([moved, -moved], dim))


def deblock(video: torch.Tensor, token_px: int, codec_px: int, threshold: float) -> torch.Tensor:
    """Smooth the seams of a decoded video (B, 3, T, H, W) in [-1, 1]: first every codec block line
    (``codec_px``), then every token line (``token_px``). ``threshold`` (0: off) is the excess step, as a
    fraction of the pixel range, at which a line stops being smoothed. Lines aligned to the top-left corner."""
    if threshold <= 0:
        return video
    out = video.float()
    for period in dict.fromkeys((codec_px, token_px)):       # once each, codec lines first
        if period < 4:                                       # no block seams at that scale
            continue
        taps = max(1, min(3 * period // 8, period // 2))
        for dim in (4, 3):                                   # vertical lines (across columns), then horizontal
            out = _smooth_lines(out, dim, period, taps, threshold)
    return out.to(video.dtype)
