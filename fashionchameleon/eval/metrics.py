"""SwitchBench metrics. Every function takes uint8 frames (T, H, W, 3) and boolean masks (T, H, W) and says
exactly what it computes. Colours are compared in CIELAB with CIEDE2000 (implemented here in numpy)."""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------------------------------------
# Colour
# ----------------------------------------------------------------------------------------------------------


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (uint8 or float 0-255, [..., 3]) -> CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference between Lab arrays (broadcasting over leading axes)."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    C1, C2 = np.hypot(a1, b1), np.hypot(a2, b2)
    Cm = (C1 + C2) / 2
    G = 0.5 * (1 - np.sqrt(Cm**7 / (Cm**7 + 25.0**7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dLp = L2 - L1
    dCp = C2p - C1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(C1p * C2p == 0, 0, dh)
    dHp = 2 * np.sqrt(C1p * C2p) * np.sin(np.radians(dh) / 2)
    Lpm = (L1 + L2) / 2
    Cpm = (C1p + C2p) / 2
    hsum = h1p + h2p
    hpm = np.where(np.abs(h1p - h2p) > 180, np.where(hsum < 360, hsum + 360, hsum - 360), hsum) / 2
    hpm = np.where(C1p * C2p == 0, hsum, hpm)
    T = (1 - 0.17 * np.cos(np.radians(hpm - 30)) + 0.24 * np.cos(np.radians(2 * hpm))
         + 0.32 * np.cos(np.radians(3 * hpm + 6)) - 0.20 * np.cos(np.radians(4 * hpm - 63)))
    dtheta = 30 * np.exp(-(((hpm - 275) / 25) ** 2))
    Rc = 2 * np.sqrt(Cpm**7 / (Cpm**7 + 25.0**7))
    Sl = 1 + 0.015 * (Lpm - 50) ** 2 / np.sqrt(20 + (Lpm - 50) ** 2)
    Sc = 1 + 0.045 * Cpm
    Sh = 1 + 0.015 * Cpm * T
    Rt = -np.sin(np.radians(2 * dtheta)) * Rc
    return np.sqrt((dLp / Sl) ** 2 + (dCp / Sc) ** 2 + (dHp / Sh) ** 2 + Rt * (dCp / Sc) * (dHp / Sh))


def erode(mask: np.ndarray, it: int = 1) -> np.ndarray:
    """Binary erosion (4-neighbourhood) of (..., H, W) masks, ``it`` times (interior pixels only)."""
    m = mask.copy()
    for _ in range(it):
        p = np.pad(m, [(0, 0)] * (m.ndim - 2) + [(1, 1), (1, 1)], constant_values=False)
        m = m & p[..., :-2, 1:-1] & p[..., 2:, 1:-1] & p[..., 1:-1, :-2] & p[..., 1:-1, 2:]
    return m


def dilate(mask: np.ndarray, it: int = 1) -> np.ndarray:
    return ~erode(~mask, it)


# ----------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------


def garment_color_error(gen: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Protocol (a): mean CIEDE2000 between generated and ground-truth pixels inside the ground-truth garment
    mask (eroded by one pixel, so the anti-aliased border does not count), over all given frames."""
    m = erode(mask, 1)
    if not m.any():
        return float("nan")
    return float(ciede2000(rgb_to_lab(gen[m]), rgb_to_lab(ref[m])).mean())


PALETTE_CHUNK = 1 << 20


def palette_distance(pixels_lab: np.ndarray, palette: list) -> np.ndarray:
    """Per-pixel CIEDE2000 to the nearest colour of a palette (list of RGB). Pixels go in chunks of about
    ``PALETTE_CHUNK`` pixel-colour pairs: CIEDE2000 holds some 40 float64 temporaries of the broadcast shape,
    which for a 1,000-frame run against a scene's colours would be tens of GB at once."""
    pal = rgb_to_lab(np.asarray(palette, np.float64))
    rows = max(1, PALETTE_CHUNK // len(pal))
    out = np.empty(len(pixels_lab), np.float64)
    for a in range(0, len(pixels_lab), rows):
        out[a:a + rows] = ciede2000(pixels_lab[a:a + rows, None, :], pal[None, :, :]).min(axis=1)
    return out


def palette_color_error(gen: np.ndarray, region: np.ndarray, palette: list) -> float:
    """Protocol (b): mean CIEDE2000 from each pixel of the garment region to the nearest colour of the
    garment's own palette (the renderer's record). Shading makes a perfect render score a few units."""
    if not region.any():
        return float("nan")
    return float(palette_distance(rgb_to_lab(gen[region]), palette).mean())


def leakage(gen: np.ndarray, region: np.ndarray, new_palette: list, old_palette: list) -> float:
    """d_new / (d_old + d_new): the region's mean palette distance to the new garment vs. the old one
    (0 = fully switched, 1 = still the old garment, 0.5 = undecided)."""
    if not region.any():
        return float("nan")
    lab = rgb_to_lab(gen[region])
    d_new = palette_distance(lab, new_palette).mean()
    d_old = palette_distance(lab, old_palette).mean()
    return float(d_new / max(d_old + d_new, 1e-9))


def leakage_per_frame(gen: np.ndarray, regions: np.ndarray, new_palette: list, old_palette: list) -> np.ndarray:
    return np.array([leakage(g[None], r[None], new_palette, old_palette) for g, r in zip(gen, regions)])


def switch_latency_frames(per_frame_leakage: np.ndarray) -> int:
    """First frame after the switch whose garment region is closer to the new garment than to the old one
    (leakage < 0.5); the window length if it never is."""
    below = np.flatnonzero(np.nan_to_num(per_frame_leakage, nan=1.0) < 0.5)
    return int(below[0]) if len(below) else len(per_frame_leakage)


def _orientation_stats(frames: np.ndarray, mask: np.ndarray, bins: int = 8) -> tuple[np.ndarray, float]:
    g = frames.astype(np.float64).mean(-1)
    gx = np.zeros_like(g)
    gy = np.zeros_like(g)
    gx[..., 1:-1] = (g[..., 2:] - g[..., :-2]) / 2
    gy[..., 1:-1, :] = (g[..., 2:, :] - g[..., :-2, :]) / 2
    m = erode(mask, 1)
    mag = np.hypot(gx, gy)[m]
    ang = (np.arctan2(gy, gx)[m] % np.pi) / np.pi * bins
    hist = np.bincount(np.minimum(ang.astype(int), bins - 1), weights=mag, minlength=bins)
    total = hist.sum()
    return (hist / total if total > 0 else np.full(bins, 1.0 / bins)), float(mag.mean()) if len(mag) else 0.0


def texture_score(gen: np.ndarray, gen_mask: np.ndarray, ref: np.ndarray, ref_mask: np.ndarray) -> float:
    """Pattern similarity in [0, 1], higher is better: the intersection of magnitude-weighted gradient
    orientation histograms (8 bins) inside the garment masks, times the ratio of mean gradient energies
    (min / max). Stripes, checks and dots have distinct orientation profiles and energies; a flat colour
    where a pattern should be scores low."""
    if not erode(gen_mask, 1).any() or not erode(ref_mask, 1).any():
        return float("nan")
    h1, e1 = _orientation_stats(gen, gen_mask)
    h2, e2 = _orientation_stats(ref, ref_mask)
    energy = min(e1, e2) / max(e1, e2) if max(e1, e2) > 1e-9 else 1.0
    return float(np.minimum(h1, h2).sum() * energy)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over the pixels where ``mask`` is True (all when None)."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        d = d[mask]
    mse = d.mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def outside_psnr(gen: np.ndarray, ref: np.ndarray, garment_masks: np.ndarray) -> float:
    """Protocol (a): PSNR between generated and ground-truth frames outside the garment (the ground-truth
    garment mask dilated by two pixels): identity, background and pose preservation."""
    return psnr(gen, ref, ~dilate(garment_masks, 2))


def person_masks(frames: np.ndarray, background: np.ndarray, threshold: float = 30.0) -> np.ndarray:
    """Pixels that differ from the known empty-scene background by more than ``threshold`` (sum of |RGB|)."""
    return np.abs(frames.astype(np.int32) - background.astype(np.int32)).sum(-1) > threshold


def silhouette_motion(masks: np.ndarray) -> np.ndarray:
    """Per frame pair: |S_t xor S_(t-1)| / |S_t|, the share of the silhouette that moved (independent of
    garment colour, so a garment switch alone does not count as motion)."""
    x = (masks[1:] ^ masks[:-1]).sum(axis=(1, 2)).astype(np.float64)
    return x / np.maximum(masks[1:].sum(axis=(1, 2)), 1)


def motion_discontinuity(masks: np.ndarray, switch_index: int) -> float:
    """Silhouette motion across the switch (the pairs ending at frames ``switch_index`` and +1) divided by
    the median silhouette motion of all other frame pairs of the clip: ~1 continuous, >> 1 a jump or cut."""
    m = silhouette_motion(masks)
    at = [i for i in (switch_index - 1, switch_index) if 0 <= i < len(m)]
    rest = np.delete(m, at)
    base = np.median(rest) if len(rest) else np.nan
    return float(np.mean(m[at]) / max(base, 1e-3))


def motion_amplitude_ratio(gen_masks: np.ndarray, ref_masks: np.ndarray) -> float:
    """Mean silhouette motion of the generated frames over that of the ground truth (same frames); below 0.5
    the row is marked frozen (a frozen video would otherwise look continuous and leak-free)."""
    g, r = silhouette_motion(gen_masks).mean(), silhouette_motion(ref_masks).mean()
    return float(g / max(r, 1e-6))


def flicker(frames: np.ndarray, static: np.ndarray) -> float:
    """Mean absolute frame difference (0-255 scale) over pixels that are static background in every frame
    (``static``: (H, W) bool): residual temporal noise the scene itself does not have."""
    if not static.any() or len(frames) < 2:
        return float("nan")
    d = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(-1)
    return float(d[:, static].mean())


def paired_bootstrap(diffs: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean of paired differences (NaNs dropped)."""
    d = np.asarray(diffs, np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(len(d), size=(n, len(d)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
