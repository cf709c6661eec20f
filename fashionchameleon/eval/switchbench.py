"""SwitchBench: how well a garment switch lands, measured against the synthetic world's exact ground truth.

Each case (one seed: a person, a motion, 2-4 garments, switch frames at block starts) is streamed by every
rescheduling variant under two protocols:

* (a) primed: the stream starts from the ground-truth latents up to the first switch (isolates the switch);
* (b) free-running: the user's view, generated from the first frame.

Metrics (see ``metrics.py``) are computed over the 16 frames after each switch (leakage over frames 8-16),
averaged over a case's switches, then over cases; rows are compared with ``full`` by paired 95% bootstrap
intervals (protocol a).

The ground truth comes from the world the generator's preset was trained on (``world_of(gen)``: its
``world_version`` and ``world_size``; v1 renders squares, v2 portrait (width, height) frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..data.world import Garment, make_switch_sample, render_background, render_clip, scene_colors
from . import metrics as M

WINDOW = 16
LEAK_FROM = 8
METRICS = ("garment_color_error", "texture_score", "leakage", "switch_latency_frames", "outside_psnr",
           "motion_discontinuity", "motion_discontinuity_max", "motion_amplitude_ratio", "flicker")
LOWER_IS_BETTER = {"garment_color_error": True, "texture_score": False, "leakage": True, "switch_latency_frames": True,
                   "outside_psnr": False, "motion_discontinuity": True, "motion_discontinuity_max": True,
                   "motion_amplitude_ratio": None, "flicker": True}


def block_starts(n: int, first: int = 9, block: int = 12) -> list[int]:
    return [0] + list(range(first, n, block))


@dataclass(frozen=True)
class World:
    """Which synthetic world renders a case's ground truth, at which size (v1: a square side; v2: (w, h))."""

    version: int = 1
    size: int | tuple[int, int] = 128


def world_of(gen) -> World:
    """The world of a generator's preset (the one its model was trained on)."""
    return World(gen.preset.world_version, gen.preset.world_size)


def as_world(world: "World | int") -> World:
    """An int is v1's square size (what callers passed before world v2)."""
    return world if isinstance(world, World) else World(1, int(world))


def frame_size(spec, frames: np.ndarray) -> int | tuple[int, int]:
    """The renderers' ``size`` for frames (..., H, W, 3) of ``spec``'s world: v2 takes (width, height)."""
    h, w = frames.shape[-3:-1]
    return (w, h) if getattr(spec, "version", 1) == 2 or w != h else h


@dataclass
class Case:
    seed: int
    switch_frames: list[int]
    num_frames: int


def make_case(seed: int, switches: int | None = None, spacing: int | None = None) -> Case:
    """Switch frames at block starts (21 or 33 for the first), 24-36 frames apart, 24 frames after the last."""
    rng = np.random.default_rng(seed + 104_729)
    k = switches if switches is not None else int(rng.integers(1, 4))
    frames = [int(rng.choice([21, 33]))]
    for _ in range(k - 1):
        frames.append(frames[-1] + (spacing or int(rng.choice([24, 36]))))
    return Case(seed, frames, frames[-1] + 36)


# ----------------------------------------------------------------------------------------------------------
# Streaming one case
# ----------------------------------------------------------------------------------------------------------

def _encode_frames(codec, frames: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(frames.copy()).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        return codec.encode(x)


def stream_case(gen, gt, case: Case, variant: str, primed: bool, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Frames (N, H, W, 3) of one case, primed with ground truth up to the first switch (protocol a) or not,
    and the frames where the switches took effect. Each switch is posted so that it applies at the first
    block starting at or after its frame; ``restart`` restarts the decoder (its next block is 3 frames
    shorter), which can move its later switches to a later block start."""
    session = gen.session(gt.reference, gt.garment_images[0], gt.prompt, seed=seed, variant=variant,
                          num_frames=case.num_frames, garment_label="g0")
    out = []
    with session:
        if primed:
            f0 = case.switch_frames[0]
            out.append(session.prime(_encode_frames(gen.codec, gt.clip.frames[:f0])))
        pending = list(zip(case.switch_frames, gt.garment_images[1:], range(1, 99)))

        def post_due(next_start: int) -> None:
            while pending and pending[0][0] <= next_start:
                f, img, k = pending.pop(0)
                session.post_switch(img, f"g{k}")

        post_due(session.frame)
        for chunk in session:
            out.append(chunk.frames)
            post_due(chunk.first_frame + len(chunk.frames))
        applied = [e["frame"] for e in session.events if e["kind"] == "switch" and e["status"] == "applied"]
    frames = np.concatenate(out)
    if len(applied) != len(case.switch_frames) or any(a < f for a, f in zip(applied, case.switch_frames)):
        raise RuntimeError(f"switches applied at {applied}, expected at/after {case.switch_frames}")
    return frames, applied


def ground_truth(seed: int, case: Case, world: World | int, applied: list[int] | None = None):
    """The exact ground truth of a case (switches at the frames where they took effect) in ``world`` (an int:
    world v1 at that square size)."""
    world = as_world(world)
    frames = applied or case.switch_frames
    return make_switch_sample(seed, switches=len(frames), num_frames=case.num_frames, switch_frames=list(frames),
                              size=world.size, version=world.version)


# ----------------------------------------------------------------------------------------------------------
# Metrics of one streamed case
# ----------------------------------------------------------------------------------------------------------

def garment_region(frames: np.ndarray, person: np.ndarray, garments: list[Garment], others: list) -> np.ndarray:
    """Protocol (b): the garment region found from the renderer's record -- person pixels whose nearest
    recorded colour belongs to one of the garments rather than to skin, hair, trousers, shoes or face."""
    region = np.zeros(person.shape, bool)
    if not person.any():
        return region
    lab = M.rgb_to_lab(frames[person])
    garment_pal = [c for g in garments for c in g.palette]
    d_g = M.palette_distance(lab, garment_pal)
    d_o = M.palette_distance(lab, others)
    region[person] = d_g < d_o
    return M.erode(region, 1)


def free_running_leakage(frames: np.ndarray, spec, new: Garment, old: Garment) -> np.ndarray:
    """Protocol (b) leakage per frame of a generated clip of ``spec``'s person and scene: the garment region
    found from the renderer's record, 0 = it shows ``new``, 1 = it still shows ``old``."""
    person = M.person_masks(frames, render_background(spec, frame_size(spec, frames)))
    region = garment_region(frames, person, [new, old], scene_colors(spec))
    return M.leakage_per_frame(frames, region, new.palette, old.palette)


def case_metrics(frames: np.ndarray, gt, primed: bool) -> dict[str, float]:
    """Mean over the case's switches of every metric (NaN where a protocol does not define it). ``gt`` is the
    ground truth with its switches where the stream's took effect."""
    spec = gt.spec
    bg = render_background(spec, frame_size(spec, frames))
    gen_person = M.person_masks(frames, bg)
    gt_person = gt.clip.person_masks
    static = ~M.dilate(gen_person.any(0) | gt_person.any(0), 3)
    rows = []
    for k, f in enumerate(gt.switch_frames):
        w = slice(f, f + WINDOW)
        new, old = gt.garments[k + 1], gt.garments[k]
        gt_frames, gt_mask = gt.clip.frames[w], gt.clip.garment_masks[w]
        g = frames[w]
        if primed:
            region = M.erode(gt_mask, 1)
            color = M.garment_color_error(g, gt_frames, gt_mask)
            texture = M.texture_score(g, gt_mask, gt_frames, gt_mask)
            outside = M.outside_psnr(g, gt_frames, gt_mask)
        else:
            region = garment_region(g, gen_person[w], [new, old], scene_colors(spec))
            color = M.palette_color_error(g, region, new.palette)
            texture = M.texture_score(g, region, gt_frames, gt_mask)
            outside = float("nan")
        per_frame = M.leakage_per_frame(g, region, new.palette, old.palette)
        rows.append({
            "garment_color_error": color,
            "texture_score": texture,
            "leakage": float(np.nanmean(per_frame[LEAK_FROM:])) if np.isfinite(per_frame[LEAK_FROM:]).any() else float("nan"),
            "switch_latency_frames": float(M.switch_latency_frames(per_frame)),
            "outside_psnr": outside,
            "motion_discontinuity": M.motion_discontinuity(gen_person, f),
            # the largest jump anywhere in the window: also catches one a block after the switch (re-anchoring)
            "motion_discontinuity_max": max(M.motion_discontinuity(gen_person, i)
                                            for i in range(f, min(f + WINDOW, len(gen_person) - 1))),
            "motion_amplitude_ratio": M.motion_amplitude_ratio(gen_person[w], gt_person[w]),
            "flicker": M.flicker(g, static),
            "_leakage_curve": per_frame,
        })
    out = {m: float(np.nanmean([r[m] for r in rows])) if any(np.isfinite(r[m]) for r in rows) else float("nan")
           for m in METRICS}
    out["_leakage_curve"] = np.nanmean(np.stack([r["_leakage_curve"] for r in rows]), 0)
    return out


# ----------------------------------------------------------------------------------------------------------
# Long runs: drift over 1,000 frames and identity after ten switches
# ----------------------------------------------------------------------------------------------------------

def long_run(gen, seed: int, frames: int = 1000, stream_seed: int = 0, window: int = 50) -> dict:
    """Free run of ``frames`` frames with one garment. ``drift_ratio``: palette colour error over the last
    ``window`` frames divided by that over frames 50-100 (per-frame errors averaged); ``motion_min``: the
    smallest motion amplitude ratio to the ground truth's own ``frames``-frame render over consecutive windows
    (below 0.5 the person froze somewhere); plus both per-window curves."""
    if frames < max(100, window):
        raise ValueError(f"a long run needs at least {max(100, window)} frames, got {frames}")
    world = world_of(gen)
    size = world.size
    gt = make_switch_sample(seed, switches=1, num_frames=48, switch_frames=[24], size=size, version=world.version)
    session = gen.session(gt.reference, gt.garment_images[0], gt.prompt, seed=stream_seed, num_frames=frames)
    with session:
        video = np.concatenate([chunk.frames for chunk in session])[:frames]
    spec, garment = gt.spec, gt.garments[0]
    person = M.person_masks(video, render_background(spec, size))
    region = garment_region(video, person, [garment], scene_colors(spec))
    color = np.array([M.palette_color_error(video[i:i + 1], region[i:i + 1], garment.palette)
                      for i in range(len(video))])
    truth = render_clip(spec, [(0, garment)], len(video), size).person_masks
    starts = range(0, len(video) - window + 1, window)
    motion = [M.motion_amplitude_ratio(person[a:a + window], truth[a:a + window]) for a in starts]
    early, late = np.nanmean(color[50:100]), np.nanmean(color[-window:])
    return {"drift_ratio": float(late / early) if early > 0 else float("nan"), "motion_min": float(np.min(motion)),
            "color_curve": [float(np.nanmean(color[a:a + window])) for a in starts], "motion_curve": motion}


def ten_switch_case(seed: int, world: World | int, switches: int = 10):
    """The case (switches every 24 frames) and its ground truth in ``world`` (an int: v1 at that size);
    render once, stream every variant."""
    case = make_case(seed, switches=switches, spacing=24)
    return case, ground_truth(seed, case, world)


def ten_switches(gen, seed: int, variant: str = "full", stream_seed: int = 0, case_and_truth=None) -> dict:
    """Ten switches in a row (protocol a, every 24 frames) and what they do to the person and the scene.

    Per switch k, over the 16 frames after it: ``outside_curve`` is the outside PSNR (identity, background
    and pose together), ``background_curve`` the PSNR of the static background only (pixels that neither the
    true person touches in those frames), which separates erosion of the scene from
    honest divergence of the motion. ``identity_drift`` / ``background_drift``: the first value minus the
    last. Plus the SwitchBench metrics averaged over the ten switches (``metrics``)."""
    world = world_of(gen)
    case, gt = case_and_truth or ten_switch_case(seed, world)
    frames, applied = stream_case(gen, gt, case, variant, primed=True, seed=stream_seed)
    if applied != case.switch_frames:
        gt = ground_truth(seed, case, world, applied)
    outside, background = [], []
    for f in applied:
        w = slice(f, f + WINDOW)
        outside.append(M.outside_psnr(frames[w], gt.clip.frames[w], gt.clip.garment_masks[w]))
        # the true person's region only: a generated person that eroded into the scene must count as error
        static = ~M.dilate(gt.clip.person_masks[w].any(0), 3)
        background.append(M.psnr(frames[w], gt.clip.frames[w], np.broadcast_to(static, frames[w].shape[:3])))
    metrics = case_metrics(frames, gt, primed=True)
    metrics.pop("_leakage_curve")
    return {"identity_drift": outside[0] - outside[-1], "background_drift": background[0] - background[-1],
            "outside_curve": outside, "background_curve": background, "metrics": metrics}


def identity_drift(gen, seed: int, variant: str = "full", stream_seed: int = 0) -> float:
    """Outside PSNR after the first of ten switches minus after the tenth (see ``ten_switches``)."""
    return ten_switches(gen, seed, variant, stream_seed)["identity_drift"]


def nan_to_none(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    return x
