"""Every SwitchBench metric on constructed inputs with known answers."""

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from fashionchameleon.data.world import make_switch_sample, render_clip, spec_for_seed
from fashionchameleon.eval import metrics as M


def test_ciede2000_matches_scikit_image():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (500, 3)), rng.integers(0, 256, (500, 3))
    la, lb = rgb2lab(a[None] / 255.0)[0], rgb2lab(b[None] / 255.0)[0]
    np.testing.assert_allclose(M.ciede2000(la, lb), deltaE_ciede2000(la, lb), atol=1e-6)
    np.testing.assert_allclose(M.rgb_to_lab(a), la, atol=0.02)  # constants differ in the last digits
    assert M.ciede2000(M.rgb_to_lab(a), M.rgb_to_lab(a)).max() < 1e-9


def test_palette_distance_in_chunks_is_the_nearest_colour(monkeypatch):
    """The chunked palette distance (bounded memory on 1,000-frame runs) equals the brute-force minimum over
    the palette, chunk boundaries included (7 pixel rows a chunk here, 100 pixels)."""
    rng = np.random.default_rng(1)
    pixels = M.rgb_to_lab(rng.integers(0, 256, (100, 3)))
    palette = [tuple(c) for c in rng.integers(0, 256, (5, 3))]
    brute = np.stack([M.ciede2000(pixels, M.rgb_to_lab(np.array([c]))[0]) for c in palette]).min(0)
    monkeypatch.setattr(M, "PALETTE_CHUNK", 36)
    np.testing.assert_allclose(M.palette_distance(pixels, palette), brute, rtol=0, atol=1e-12)
    monkeypatch.setattr(M, "PALETTE_CHUNK", 1)   # fewer pairs than colours: still a pixel a chunk
    np.testing.assert_allclose(M.palette_distance(pixels, palette), brute, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def clip():
    spec = spec_for_seed(500_123)
    return spec, render_clip(spec, [(0, spec.garments[0])], 24), render_clip(spec, [(0, spec.garments[1])], 24)


def test_clip_against_itself(clip):
    spec, a, _ = clip
    assert M.garment_color_error(a.frames, a.frames, a.garment_masks) == 0
    assert M.outside_psnr(a.frames, a.frames, a.garment_masks) >= 99
    assert M.texture_score(a.frames, a.garment_masks, a.frames, a.garment_masks) == pytest.approx(1.0)
    assert M.motion_amplitude_ratio(a.person_masks, a.person_masks) == pytest.approx(1.0)


def test_known_colour_shift(clip):
    _, a, _ = clip
    shifted = a.frames.copy()
    m = a.garment_masks
    shifted[m] = np.clip(shifted[m].astype(int) + [30, 0, 0], 0, 255)
    err = M.garment_color_error(shifted, a.frames, a.garment_masks)
    assert 5 < err < 40
    # the shift stays inside the garment: outside PSNR is untouched
    assert M.outside_psnr(shifted, a.frames, a.garment_masks) >= 99


def test_leakage_and_latency_on_a_real_switch():
    sw = make_switch_sample(500_200, switches=1, num_frames=48, switch_frames=[24])
    old, new = sw.garments[0].palette, sw.garments[1].palette
    region = M.erode(sw.clip.garment_masks, 1)
    per_frame = M.leakage_per_frame(sw.clip.frames, region, new, old)
    assert per_frame[:24].min() > 0.5 and per_frame[24:].max() < 0.5
    assert M.switch_latency_frames(per_frame[24:]) == 0
    assert M.switch_latency_frames(per_frame[:24]) == 24           # never switched in the window
    # the old garment kept after the switch = full leakage
    stay = sw.single_clips[0]
    assert M.leakage(stay.frames[24:], M.erode(stay.garment_masks[24:], 1), new, old) > 0.5


def test_frozen_clip(clip):
    _, a, _ = clip
    frozen = np.repeat(a.person_masks[:1], len(a.person_masks), 0)
    assert M.motion_amplitude_ratio(frozen, a.person_masks) < 0.05


def test_clip_with_a_cut(clip):
    spec, a, _ = clip
    other = render_clip(spec_for_seed(500_124), [(0, spec_for_seed(500_124).garments[0])], 24)
    cut = np.concatenate([a.person_masks[:12], other.person_masks[12:]])
    smooth = M.motion_discontinuity(a.person_masks, 12)
    assert M.motion_discontinuity(cut, 12) > 3 * smooth
    assert smooth < 3


def test_garment_switch_alone_is_not_motion():
    sw = make_switch_sample(500_300, switches=1, num_frames=40, switch_frames=[20])
    assert M.motion_discontinuity(sw.clip.person_masks, 20) < 3


def test_texture_distinguishes_patterns():
    # a striped garment against a flat copy of itself scores lower than against itself
    for seed in range(500_000, 500_200):
        spec = spec_for_seed(seed)
        g = spec.garments[0]
        if g.pattern == "stripes":
            break
    a = render_clip(spec, [(0, g)], 4)
    flat = a.frames.copy()
    flat[a.garment_masks] = g.primary
    assert M.texture_score(flat, a.garment_masks, a.frames, a.garment_masks) < 0.7


def test_flicker():
    rng = np.random.default_rng(0)
    still = np.full((10, 16, 16, 3), 120, np.uint8)
    static = np.ones((16, 16), bool)
    assert M.flicker(still, static) == 0
    noisy = np.clip(still + rng.integers(-10, 11, still.shape), 0, 255).astype(np.uint8)
    assert 3 < M.flicker(noisy, static) < 10


def test_paired_bootstrap():
    lo, hi = M.paired_bootstrap(np.full(32, 2.0) + np.random.default_rng(0).normal(0, 0.1, 32))
    assert lo < 2.0 < hi and hi - lo < 0.2
    lo, hi = M.paired_bootstrap(np.random.default_rng(1).normal(0, 1, 64))
    assert lo < 0 < hi
