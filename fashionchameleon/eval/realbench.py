"""RealBench: the streaming model on real photos of people, without ground-truth video.

    python -m fashionchameleon eval --real DIR --json [--out FOLDER] [--checkpoint ...] [--codec ...]

Inputs (DIR), either layout:

    DIR/persons/*.png|jpg|jpeg|webp     and  DIR/garments/*.png|jpg|jpeg|webp
    DIR/person_*.png ...                and  DIR/garment_*.png ...

A person may come with a sidecar ``<stem>.json`` holding ``{"torso": [x0, y0, x1, y1]}``: the torso box as
fractions of the ORIGINAL photo (it is mapped through the same resize and centre crop as the person image).
Without one, the torso box is the middle of the fitted frame (x 0.25-0.75, y 0.35-0.85), where try-on
framing puts the torso.

Cases: every person x every garment, switching mid-stream to the next garment in the (sorted) list. Per case:

- reference fidelity over time, outside the garment region (the person's torso box, see ``garment_region``):
  ``fidelity_ssim`` / ``fidelity_psnr``: late frames against early frames (the mean of the first block);
  ``ref_ssim_early`` / ``ref_ssim_late``: the first block and the last frames against the input photo, and
  ``fidelity_ratio`` = late / early (1.0 = no decay); ``fidelity_curve``: SSIM against the photo per block;
- token-grid visibility: mean |gradient| across the lines of the token grid (spatial compression x patch
  size) over the mean |gradient| elsewhere, on the late frames (1.0 = invisible); ``grid_visibility_codec``
  is the same on the codec's block grid (spatial compression); for scale, ``grid_photo`` is the token-grid
  visibility of the fitted photo itself (the floor) and ``grid_codec_roundtrip`` that of the photo encoded
  and decoded by the codec alone (what the codec adds before the model draws anything; through the stream's
  deblocking filter when its config sets one, as the stream's frames are);
- garment landing: CIELAB distance (dE76) of the torso's mean colour to the new garment's median colour, in the
  block before the switch (``landing_before``) and the late frames (``landing_after``); ``landing_gain`` =
  before - after; ``landed`` when the gain is at least ``LANDED_DE`` (a clearly visible change);
- with ``--out``: one contact sheet PNG per case (inputs, then frames across the stream).

JSON (one line on stdout): ``cases``, ``means`` (fidelity_ssim, fidelity_psnr, fidelity_ratio,
grid_visibility, grid_visibility_codec, grid_photo, grid_codec_roundtrip, landing, landing_before,
landing_after), ``landed`` ("k/n"), ``checkpoint_sha``, ``codec_sha256``, ``resolution``, ``token_px``,
``codec_px``, ``frames``, ``switch_at``, ``stream`` (the streaming and switch settings used), ``seconds``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import metrics as M

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
LANDED_DE = 5.0             # dE76 a switch must remove from the torso-to-garment distance to count as landed
DEFAULT_TORSO = (0.25, 0.35, 0.75, 0.85)   # x0, y0, x1, y1 as fractions of the fitted frame


@dataclass(frozen=True)
class RealBenchConfig:
    frames: int = 96            # video frames per case
    switch_at: int = 48         # the switch is posted once this many frames have streamed
    late: int = 12              # the last frames: "late"
    prompt: str = "sway"        # used when the model's vocabulary has it (tiny: yes)
    seed: int = 0
    sheet_frames: int = 8       # frames on a contact sheet


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------

def _images(paths) -> list[Path]:
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def find_inputs(root: Path) -> tuple[list[Path], list[Path]]:
    """Person and garment images of a RealBench folder (see the module docstring for the layouts)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    persons = _images((root / "persons").glob("*")) + _images(root.glob("person_*"))
    garments = _images((root / "garments").glob("*")) + _images(root.glob("garment_*"))
    if not persons:
        raise ValueError(f"{root}: no person images (persons/*.png or person_*.png)")
    if len(garments) < 2:
        raise ValueError(f"{root}: need at least 2 garment images (garments/*.png or garment_*.png) for a switch")
    return persons, garments


def torso_box(person_path: Path, photo_shape: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in pixels of the fitted (W, H) frame: from a sidecar JSON, or the default box."""
    w, h = size
    side = Path(person_path).with_suffix(".json")
    if side.is_file():
        fx0, fy0, fx1, fy1 = json.loads(side.read_text())["torso"]
        ih, iw = photo_shape
        # the same geometry as fit_person: scale to cover, then centre-crop
        scale = max(w / iw, h / ih)
        nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
        ox, oy = (nw - w) // 2, (nh - h) // 2
        box = (fx0 * iw * scale - ox, fy0 * ih * scale - oy, fx1 * iw * scale - ox, fy1 * ih * scale - oy)
    else:
        box = (DEFAULT_TORSO[0] * w, DEFAULT_TORSO[1] * h, DEFAULT_TORSO[2] * w, DEFAULT_TORSO[3] * h)
    x0, y0 = int(np.clip(round(box[0]), 0, w - 1)), int(np.clip(round(box[1]), 0, h - 1))
    x1, y1 = int(np.clip(round(box[2]), x0 + 1, w)), int(np.clip(round(box[3]), y0 + 1, h))
    return x0, y0, x1, y1


# ----------------------------------------------------------------------------------------------------------
# Metrics (pure functions of arrays: tested on synthetic images)
# ----------------------------------------------------------------------------------------------------------

def _gray(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames, np.float64)
    return f @ np.array([0.299, 0.587, 0.114]) if f.shape[-1] == 3 else f


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM of two images (H, W[, 3]) on luminance, Gaussian window (Wang et al. 2004)."""
    from scipy.ndimage import gaussian_filter

    x, y = _gray(a), _gray(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda z: gaussian_filter(z, sigma, mode="reflect")  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over ``mask``; frames (T, H, W, 3) against one image or against frames of the same shape."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim == 3:
        a = a[None]
    b = np.broadcast_to(b, a.shape)
    m = np.ones(a.shape[1:3], bool) if mask is None else mask
    if not m.any():
        return float("nan")
    return float(np.mean([ssim_map(fa, fb)[m].mean() for fa, fb in zip(a, b)]))


def grid_visibility(frames: np.ndarray, block: int) -> float:
    """Mean |gradient| across the lines of a ``block``-pixel grid (aligned to the top-left corner) divided
    by the mean |gradient| between all other neighbouring pixels: 1.0 = no grid, a blocky image > 1."""
    g = _gray(np.asarray(frames))
    if g.ndim == 2:
        g = g[None]
    gx = np.abs(np.diff(g, axis=2))          # between columns x and x+1
    gy = np.abs(np.diff(g, axis=1))
    on_x = (np.arange(gx.shape[2]) + 1) % block == 0
    on_y = (np.arange(gy.shape[1]) + 1) % block == 0
    if not on_x.any() and not on_y.any():
        return float("nan")
    across = np.concatenate([gx[:, :, on_x].ravel(), gy[:, on_y, :].ravel()])
    elsewhere = np.concatenate([gx[:, :, ~on_x].ravel(), gy[:, ~on_y, :].ravel()])
    return float(across.mean() / max(elsewhere.mean(), 1e-6))


def garment_color(img: np.ndarray, white: float = 40.0) -> np.ndarray:
    """Median colour (CIELAB) of a product photo's garment: the pixels that are not near-white background."""
    lab = M.rgb_to_lab(np.asarray(img, np.uint8)).reshape(-1, 3)
    far = np.abs(np.asarray(img, np.float64).reshape(-1, 3) - 255.0).sum(-1) > white
    return np.median(lab[far] if far.sum() >= 16 else lab, axis=0)


def torso_distance(frames: np.ndarray, box: tuple[int, int, int, int], target_lab: np.ndarray) -> float:
    """dE76 between the torso box's mean colour (CIELAB) over ``frames`` and a target colour. The mean, not
    the median: a garment that lands on part of the torso should move the figure part of the way."""
    x0, y0, x1, y1 = box
    lab = M.rgb_to_lab(np.asarray(frames, np.uint8)[:, y0:y1, x0:x1]).reshape(-1, 3)
    return float(np.linalg.norm(lab.mean(axis=0) - target_lab))


def garment_region(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels excused from fidelity: the person's torso box (where a garment switch may repaint),
    dilated by two pixels. It comes from the input photo, not from the generated frames: where the model
    paints a garment somewhere else (or the scene decays), fidelity is meant to drop. (Pixels that change
    between pre- and post-switch frames were tried as an extension, but on a decaying model they cover
    most of the frame and would excuse the decay itself.)"""
    region = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    region[y0:y1, x0:x1] = True
    return M.dilate(region, 2)


# ----------------------------------------------------------------------------------------------------------
# Running the cases
# ----------------------------------------------------------------------------------------------------------

def codec_roundtrip(gen, person: np.ndarray) -> np.ndarray:
    """The photo through the codec alone (encode, decode), as uint8 (H, W, 3); decoded as the stream decodes,
    through the streaming config's deblocking filter (off unless its ``deblock`` is set)."""
    import torch

    from ..data.datasets import to_uint8
    from ..model.deblock import deblock

    with torch.no_grad():
        video = gen.codec.decode(gen.encode_image(person).float())
        return to_uint8(deblock(video, *gen.grid_pixels, gen.preset.stream.deblock)[0, :, 0])


def stream_case(gen, person: np.ndarray, garment_a: np.ndarray, garment_b: np.ndarray,
                cfg: RealBenchConfig) -> tuple[np.ndarray, int, int]:
    """Stream ``cfg.frames`` frames of ``person`` in ``garment_a``, posting a switch to ``garment_b`` once
    ``cfg.switch_at`` frames have streamed. Returns (frames, the first frame generated after the switch,
    the number of frames of the first block)."""
    vocab = gen.model.config.prompt_vocab
    prompt = cfg.prompt if cfg.prompt in vocab else (vocab[0] if vocab else None)
    frames, applied = [], None
    with gen.session(person, garment_a, prompt, seed=cfg.seed, num_frames=cfg.frames) as session:
        posted = False
        for chunk in session:
            if any(e.get("kind") == "switch" for e in chunk.events) and applied is None:
                applied = chunk.first_frame
            frames.append(chunk.frames)
            if not posted and chunk.first_frame + len(chunk.frames) >= cfg.switch_at:
                session.post_switch(garment_b, label="switch")
                posted = True
    video = np.concatenate(frames)
    return video, (applied if applied is not None else len(video)), len(frames[0])


def case_metrics(video: np.ndarray, person: np.ndarray, garment_b: np.ndarray, box, switch_frame: int,
                 cfg: RealBenchConfig, block_px: tuple[int, int], early: int) -> dict:
    late = min(cfg.late, max(1, len(video) - switch_frame))
    region = garment_region(video.shape[1:3], box)
    outside = ~region
    early_frames, late_frames = video[:early], video[-late:]
    early_mean = early_frames.astype(np.float64).mean(0)
    fid_ssim = masked_ssim(late_frames, early_mean, outside)
    fid_psnr = M.psnr(late_frames, np.broadcast_to(early_mean, late_frames.shape),
                      np.broadcast_to(outside, late_frames.shape[:3]))
    ref_early = masked_ssim(early_frames, person, outside)
    ref_late = masked_ssim(late_frames, person, outside)
    curve = [round(masked_ssim(video[i:i + early], person, outside), 4) for i in range(0, len(video), early)]
    target = garment_color(garment_b)
    pre = video[max(0, switch_frame - late):switch_frame]
    before = torso_distance(pre if len(pre) else video[:1], box, target)
    after = torso_distance(late_frames, box, target)
    token_px, codec_px = block_px
    return {"fidelity_ssim": fid_ssim, "fidelity_psnr": fid_psnr, "ref_ssim_early": ref_early,
            "ref_ssim_late": ref_late, "fidelity_ratio": ref_late / ref_early if ref_early > 0 else float("nan"),
            "fidelity_curve": curve, "grid_visibility": grid_visibility(late_frames, token_px),
            "grid_visibility_codec": grid_visibility(late_frames, codec_px), "landing_before": before,
            "landing_after": after, "landing_gain": before - after, "landed": bool(before - after >= LANDED_DE),
            "garment_region_share": float(region.mean())}


def contact_sheet(path: Path, person: np.ndarray, garment_a: np.ndarray, garment_b: np.ndarray,
                  video: np.ndarray, switch_frame: int, n: int = 8) -> None:
    """Inputs (person, garment, switch garment), then ``n`` frames evenly across the stream; the first frame
    after the switch is framed in red."""
    from PIL import Image

    idx = set(np.linspace(0, len(video) - 1, n).round().astype(int).tolist())
    idx = sorted(idx | {min(switch_frame, len(video) - 1)})
    tiles = [person, garment_a, garment_b]
    for i in idx:
        f = video[i].copy()
        if i == switch_frame:
            f[:2], f[-2:], f[:, :2], f[:, -2:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
        tiles.append(f)
    sep = np.full((video.shape[1], 2, 3), 255, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, sep)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)


def run_realbench(gen, root: Path, cfg: RealBenchConfig = RealBenchConfig(), out: Path | None = None,
                  progress: bool = True) -> dict:
    from ..media import load_image

    t0 = time.time()
    persons, garments = find_inputs(root)
    token_px, codec_px = gen.grid_pixels
    cases = []
    for p in persons:
        photo = load_image(p, f"person image {p.name}")
        person = gen.person_image(photo)
        box = torso_box(p, photo.shape[:2], gen.resolution)
        grids = {"grid_photo": grid_visibility(person[None], token_px),
                 "grid_codec_roundtrip": grid_visibility(codec_roundtrip(gen, person)[None], token_px)}
        for k, ga in enumerate(garments):
            gb = garments[(k + 1) % len(garments)]
            img_a, img_b = gen.garment_image(ga), gen.garment_image(gb)
            video, switch_frame, first_block = stream_case(gen, person, img_a, img_b, cfg)
            m = case_metrics(video, person, img_b, box, switch_frame, cfg, (token_px, codec_px), early=first_block)
            case = {"person": p.name, "garment": ga.name, "switch_to": gb.name, "switch_frame": switch_frame,
                    "torso_box": list(box), **m, **grids}
            if out is not None:
                sheet = Path(out) / f"case_{len(cases):02d}_{p.stem}_{ga.stem}_to_{gb.stem}.png"
                contact_sheet(sheet, person, img_a, img_b, video, switch_frame, cfg.sheet_frames)
                case["sheet"] = str(sheet)
            cases.append(case)
            if progress:
                print(f"{p.name} {ga.name} -> {gb.name}: fidelity ssim {m['fidelity_ssim']:.3f} "
                      f"psnr {m['fidelity_psnr']:.1f} ratio {m['fidelity_ratio']:.3f} grid {m['grid_visibility']:.2f} "
                      f"landing {m['landing_before']:.1f} -> {m['landing_after']:.1f}", file=sys.stderr)

    def mean(key):
        vals = [c[key] for c in cases if c[key] is not None and np.isfinite(c[key])]
        return float(np.mean(vals)) if vals else float("nan")

    means = {k: mean(k) for k in ("fidelity_ssim", "fidelity_psnr", "fidelity_ratio", "ref_ssim_early",
                                  "ref_ssim_late", "grid_visibility", "grid_visibility_codec", "grid_photo",
                                  "grid_codec_roundtrip", "landing_before", "landing_after")}
    means["landing"] = mean("landing_gain")
    return {"cases": cases, "means": means, "landed": f"{sum(c['landed'] for c in cases)}/{len(cases)}",
            "persons": len(persons), "garments": len(garments), "checkpoint_sha": gen.checkpoint_sha,
            "codec_sha256": gen.codec.sha256,
            "resolution": list(gen.resolution), "token_px": token_px, "codec_px": codec_px, "frames": cfg.frames,
            "switch_at": cfg.switch_at, "late": cfg.late, "landed_de": LANDED_DE,
            "stream": gen.preset.stream.to_dict(), "seconds": round(time.time() - t0, 1)}


def _finite(x):
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def run_cli(args) -> int:
    """``eval --real DIR``: uses --checkpoint, --codec, --out, --threads, --json and the switch settings
    (--keep-recent, --withdraw-sink, --reference-mix, --reanchor-after, --reanchor-mix, --reference-gate) of the
    eval command."""
    import torch

    from .cli import generator_from_args

    torch.set_num_threads(args.threads)
    try:
        find_inputs(args.real)
        gen = generator_from_args(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = run_realbench(gen, args.real, RealBenchConfig(), args.out)
    m = out["means"]
    print(f"\nRealBench [{len(out['cases'])} cases]  fidelity ssim {m['fidelity_ssim']:.3f}  psnr "
          f"{m['fidelity_psnr']:.2f}  ratio {m['fidelity_ratio']:.3f}  grid {m['grid_visibility']:.2f} "
          f"(codec {m['grid_visibility_codec']:.2f})  landing {m['landing']:.1f} dE, landed {out['landed']}",
          file=sys.stderr)
    if args.out is not None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "realbench.json").write_text(json.dumps(_finite(out), indent=1))
    if args.json:
        print(json.dumps(_finite(out)))
    return 0
