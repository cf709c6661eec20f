"""``python -m fashionchameleon train-region``: fit the region head of a copy-gate model.

A copy-gate model (``ModelConfig.reference_copy``) copies the reference wherever its gate is open; the gate's
own features cannot tell the reference's garment, or a limb that moved, from the unchanged scene, so it copies
the old garment back and freezes the person in the reference's pose (sessions 22-23). The region head
(``ModelConfig.region_head``) gives the gate that cue: from the reference latent alone it marks where the copy
must not reach, and the gate is shut there.

Its target, per training seed of the synthetic worlds, with ``--target person`` (the default): the union of the
person's silhouettes wearing each of the seed's garments (the reference's own and the ones it could switch to)
at a few times of the motion; with ``--target garment``: the union of those garments alone. As a share per
latent position. The reference wears one of them at t = 0, as in training and SwitchBench. Only the head trains
(the network is frozen, bit for bit), in a few minutes; the references are rendered and encoded once and kept
in the run folder. The last ``--val-share`` of the seeds is held back to report the head's IoU, recall and
false marks (``region_head.json`` next to the checkpoint, and a contact sheet ``region_head.png``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import world as w1
from ..data.datasets import check_training_seeds, to_tensor_image
from ..data.world import parse_seeds
from .runstate import default_run_dir

MOTION_TIMES = (0.0, 1.0, 2.0)   # seconds: the region covers the motion, not only the reference's pose
TARGETS = ("person", "garment")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init", type=Path, required=True, help="checkpoint folder of a copy-gate model (reference_copy)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write: --init plus the fitted head")
    p.add_argument("--codec", type=Path, default=Path("assets/checkpoints/codec-v2"),
                   help="the codec --init was trained with (its latent space is checked)")
    p.add_argument("--v2-seeds", default="2000-4399", help="world-v2 training seeds A-B (0-499,999)")
    p.add_argument("--v1-seeds", default="2000-2799",
                   help="world-1 training seeds, centre-cropped to the preset's portrait ('' for none)")
    p.add_argument("--val-share", type=float, default=0.1, help="share of each world's seeds held back to report")
    p.add_argument("--target", choices=TARGETS, default="person",
                   help="what the head marks: the whole person (moving limbs too; tuned in session 23) or only "
                        "where a garment can sit")
    p.add_argument("--dilation", type=int, default=2,
                   help="latent positions the region is spread at run time (session 23's tuning: 2)")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0, help="seed of the fit's batch order")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--run-dir", type=Path, default=None,
                   help="where the rendered references are kept (default ~/.cache/fashionchameleon/runs/region)")


def region_example(seed: int, version: int, size: tuple[int, int], target: str = "person"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(reference uint8 HxWx3, region bool HxW) of one training seed: the reference wears one of the seed's
    garments at t = 0 (chosen by the seed); the region is where any of them sits at ``MOTION_TIMES``
    (``target`` garment), or where the person wearing any of them is (``target`` person)."""
    if target not in TARGETS:
        raise ValueError(f"target is one of {TARGETS}, got {target!r}")
    w, h = size
    if version == 2:
        from ..data import world_v2 as w2

        spec = w2.spec_for_seed(seed)

        def render(g, t):
            return w2.render_frame(spec, g, t, (w, h))
    else:
        spec = w1.spec_for_seed(seed)
        side = max(w, h)

        def render(g, t):   # world 1 draws squares: a portrait preset sees their centre crop (as eval does)
            return tuple(w1._centre(a, w, h) for a in w1.render_frame(spec, g, t, side))
    pick = np.random.default_rng([seed, version, 31]).integers(len(spec.garments))
    reference = render(spec.garments[pick], 0.0)[0]
    region = np.zeros((h, w), bool)
    for g in spec.garments:
        for t in MOTION_TIMES:
            region |= render(g, t)[2 if target == "garment" else 1]
    return reference, region


def render_examples(seeds: list[int], version: int, size: tuple[int, int], codec, cache: Path,
                    target: str = "person"):
    """Reference latents (n, c, 1, h', w'), region shares per latent position (n, 1, 1, h', w') and the
    references (uint8, for the contact sheet); kept at ``cache`` (same seeds, size and codec: reused)."""
    if cache.exists():
        d = torch.load(cache)
        return d["latents"], d["regions"], d["images"]
    images, regions = [], []
    for s in tqdm(seeds, desc=f"render world {version}", file=sys.stderr):
        ref, region = region_example(s, version, size, target)
        images.append(ref)
        regions.append(region)
    images_np = np.stack(images)
    latents = []
    with torch.no_grad():
        for i in tqdm(range(0, len(seeds), 64), desc=f"encode world {version}", file=sys.stderr):
            latents.append(codec.encode_image(to_tensor_image(images_np[i:i + 64])).float())
    latents_t = torch.cat(latents)
    if latents_t.ndim == 4:
        latents_t = latents_t[:, :, None]
    grid = latents_t.shape[-2:]
    region_t = torch.from_numpy(np.stack(regions)).float()[:, None]
    shares = F.adaptive_avg_pool2d(region_t, grid)[:, :, None]
    images_t = torch.from_numpy(images_np)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"latents": latents_t, "regions": shares, "images": images_t}, cache)
    return latents_t, shares, images_t


def region_scores(logits: torch.Tensor, shares: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """IoU, recall and false marks of the predicted region (probability > threshold) against the target
    (share > 0.5), per latent position."""
    pred, truth = torch.sigmoid(logits) > threshold, shares > 0.5
    union = (pred | truth).sum().item()
    return {"iou": (pred & truth).sum().item() / max(union, 1),
            "recall": pred[truth].float().mean().item() if truth.any() else float("nan"),
            "false_marks": pred[~truth].float().mean().item() if (~truth).any() else float("nan")}


def contact_sheet(images: torch.Tensor, probs: torch.Tensor, path: Path, columns: int = 8) -> None:
    """References with the predicted region tinted red, for a look at what the head marks."""
    from PIL import Image

    columns = min(columns, len(images))
    n = min(len(images), columns * 2)
    tiles = []
    for i in range(n):
        img = images[i].numpy().astype(np.float32)
        p = F.interpolate(probs[i:i + 1, :, 0], size=img.shape[:2], mode="nearest")[0, 0].numpy()[..., None]
        tiles.append((img * (1 - 0.5 * p) + np.array([255, 0, 0]) * 0.5 * p).clip(0, 255).astype(np.uint8))
    rows = [np.concatenate(tiles[r:r + columns], 1) for r in range(0, n - columns + 1, columns)]
    if rows:
        Image.fromarray(np.concatenate(rows, 0)).save(path)


def run(args: argparse.Namespace) -> int:
    from ..model.codec import TinyCodec
    from ..model.dit import WanDiT
    from ..model.loading import load_checkpoint, read_folder_tensors, require_same_latents, resolve_folder, \
        save_checkpoint

    torch.set_num_threads(args.threads)
    if not 0 < args.val_share < 1:
        raise SystemExit(f"--val-share is a share between 0 and 1, got {args.val_share}")
    seeds = {2: check_training_seeds(parse_seeds(args.v2_seeds)),
             1: check_training_seeds(parse_seeds(args.v1_seeds)) if args.v1_seeds else []}
    model, preset, meta = load_checkpoint(args.init)
    if not preset.model.reference_copy:
        raise SystemExit(f"{args.init}: not a copy-gate model (reference_copy); the region only shuts a copy gate")
    codec = TinyCodec.load(args.codec).eval()
    require_same_latents(args.init, meta, codec.latent_sha256, args.codec)
    size = tuple(preset.resolution)
    run_dir = args.run_dir or default_run_dir("region")

    train, val = [], []
    for version, ss in seeds.items():
        if not ss:
            continue
        key = f"{args.target}-w{version}-{ss[0]}-{ss[-1]}-{len(ss)}-{size[0]}x{size[1]}-{codec.latent_sha256[:12]}"
        data = render_examples(ss, version, size, codec, run_dir / f"references-{key}.pt", args.target)
        cut = len(ss) - max(1, int(round(len(ss) * args.val_share)))
        train.append([d[:cut] for d in data])
        val.append([d[cut:] for d in data])
    z_train, m_train = (torch.cat([t[i] for t in train]) for i in (0, 1))
    z_val, m_val, img_val = (torch.cat([t[i] for t in val]) for i in (0, 1, 2))

    cfg = dataclasses.replace(preset.model, region_head=True, region_dilation=args.dilation)
    fitted = WanDiT(cfg)
    state = model.state_dict()
    network = {k: v for k, v in state.items() if not k.startswith("region_head.")}   # a refit starts the head anew
    fitted.load_state_dict({**fitted.state_dict(), **network})
    head = fitted.region_head.train()
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.Adam(head.parameters(), lr=args.lr)
    for step in (bar := tqdm(range(args.steps), desc="fit region head", file=sys.stderr)):
        lr = args.lr * 0.5 * (1 + np.cos(np.pi * step / args.steps))    # cosine to 0
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(z_train), (args.batch,), generator=gen)
        loss = F.binary_cross_entropy_with_logits(head(z_train[idx]), m_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    head.eval()
    with torch.no_grad():
        logits_val = head(z_val)
        logits_train = head(z_train[:len(z_val)])
    report = {"val": region_scores(logits_val, m_val), "train": region_scores(logits_train, m_train[:len(z_val)]),
              "val_examples": len(z_val), "train_examples": len(z_train), "v2_seeds": args.v2_seeds,
              "v1_seeds": args.v1_seeds, "val_share": args.val_share, "steps": args.steps,
              "target": args.target, "dilation": args.dilation, "motion_times": list(MOTION_TIMES)}

    folder = resolve_folder(args.init)
    first = next(iter(read_folder_tensors(folder).values()))
    out_meta = {k: v for k, v in meta.items() if k != "preset"}
    out_meta["region_head"] = {"init": str(args.init), **report}
    preset = dataclasses.replace(preset, model=cfg)
    save_checkpoint(args.out, fitted, preset, metadata=out_meta, dtype=first.dtype,
                    max_shard_mb=9 if len(list(folder.glob("model-*.safetensors"))) > 1 else None)
    (args.out / "region_head.json").write_text(json.dumps(report, indent=1) + "\n")
    contact_sheet(img_val, torch.sigmoid(logits_val), args.out / "region_head.png")
    print(json.dumps(report))
    return 0
