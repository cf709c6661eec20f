"""Latent banks: pre-encoded (video, reference, garment) latents the trainer reads, and
``python -m fashionchameleon bank``, which builds one from real clips in the official data layout.

The official layout (QuanjianSong/FashionChameleon, ``assets/examples/meta_train.csv``): a CSV with the
columns ``video,prompt,width,height``; ``video`` is a path relative to a root (the repository root there:
``./assets/examples/caseN/slice_XXXX.mp4``); ``prompt`` is a JSON object of caption lists (``en_long``,
``en_short``, ``cn_long``, ``cn_short``); each video has two siblings, ``<stem>_src.png`` (the same person
in ANOTHER outfit: the reference) and ``<stem>_cloth.png`` (the garment's product photo).

Clips are resampled to the preset's frame rate (nearest frame in time), fitted like the reference image
(resize to cover, centre-crop) and cut to the training clip length; product photos are padded on white.
Rows are encoded in shards under ``<out>.parts/`` so an interrupted run resumes where it stopped; the
shards are merged into one safetensors file in the trainer's ``LatentBank`` format at the end.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

CAPTION_KEYS = ("en_short", "en_long", "cn_short", "cn_long")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Where the codec of each real preset comes from (its ``vae/`` subfolder, never downloaded here).
WAN_VAE_REPOS = {16: "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", 48: "Wan-AI/Wan2.2-TI2V-5B-Diffusers"}


# ----------------------------------------------------------------------------------------------------------
# The bank format (read by the trainer)
# ----------------------------------------------------------------------------------------------------------

@dataclass
class LatentBank:
    """Latents of N clips: ``video`` (N, C, F, h, w), ``reference`` and ``garment`` (N, C, 1, h, w), all fp16,
    one prompt per clip and optionally ``text`` (N, L, D) text-encoder embeddings (real shapes).

    Stored as one safetensors file (tensors ``seeds``, ``video``, ``reference``, ``garment`` [, ``text``])
    with the prompts in a ``.prompts.txt`` sibling, one a line. ``seeds`` are world seeds for the synthetic
    world, CSV row numbers for real clips.
    """

    seeds: torch.Tensor
    video: torch.Tensor
    reference: torch.Tensor
    garment: torch.Tensor
    prompts: list[str]
    text: torch.Tensor | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.seeds)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {"seeds": self.seeds, "video": self.video.contiguous(), "reference": self.reference.contiguous(),
                   "garment": self.garment.contiguous()}
        if self.text is not None:
            tensors["text"] = self.text.contiguous()
        # prompts one a line: a newline inside a caption would split it
        path.with_suffix(".prompts.txt").write_text("\n".join(" ".join(p.split("\n")) for p in self.prompts))
        tmp = path.with_name(f".{path.name}.partial")
        save_file(tensors, str(tmp), metadata=self.metadata or None)
        os.replace(tmp, path)   # the bank appears only when complete

    @classmethod
    def load(cls, path: Path) -> "LatentBank":
        from safetensors import safe_open
        from safetensors.torch import load_file

        t = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        prompts = Path(path).with_suffix(".prompts.txt").read_text().split("\n")
        return cls(t["seeds"], t["video"], t["reference"], t["garment"], prompts, t.get("text"), dict(meta))

    def batch(self, step: int, batch: int, seed: int = 0, frames: int | None = None) -> dict:
        """The global batch of a step (random items, a pure function of (seed, step)); ``frames`` keeps the
        first latent frames only."""
        # the same generator as training.runstate.step_rng(seed, step) (this layer may not import training)
        rng = np.random.default_rng([seed, step, 0])
        idx = torch.from_numpy(rng.integers(len(self), size=batch))
        video = self.video[idx].float()
        if frames is not None and frames < video.shape[2]:
            video = video[:, :, :frames]
        out = {"index": idx, "video": video, "reference": self.reference[idx].float(),
               "garment": self.garment[idx].float(), "prompts": [self.prompts[i] for i in idx.tolist()]}
        if self.text is not None:
            out["text"] = self.text[idx].float()
        return out


# ----------------------------------------------------------------------------------------------------------
# Reading one row of the official layout
# ----------------------------------------------------------------------------------------------------------

class BadRow(ValueError):
    """A row that cannot be used; ``reason`` is its category in the summary."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def pick_caption(prompt_json: str, key: str = "en_short") -> str:
    """The caption of ``key`` from the CSV's prompt cell: its list of captions joined by spaces (as the
    official post-training joins ``en_long``). A missing language falls back to the other one of the same
    length, as the official loader does."""
    try:
        d = json.loads(prompt_json)
    except (json.JSONDecodeError, TypeError) as e:
        raise BadRow("bad_prompt", f"prompt is not JSON ({e})") from None
    if not isinstance(d, dict):
        raise BadRow("bad_prompt", "prompt is not a JSON object of caption lists")
    other = {"en_short": "cn_short", "cn_short": "en_short", "en_long": "cn_long", "cn_long": "en_long"}[key]
    value = d.get(key) if d.get(key) is not None else d.get(other)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRow("bad_prompt", f"prompt has no caption list {key!r} (nor {other!r})")
    caption = " ".join(v.strip() for v in value if v.strip())
    if not caption:
        raise BadRow("bad_prompt", f"prompt's {key!r} captions are empty")
    return caption


def siblings(video: Path) -> tuple[Path, Path]:
    """``<stem>_src.png`` (reference) and ``<stem>_cloth.png`` (garment) next to a clip."""
    return video.with_name(f"{video.stem}_src.png"), video.with_name(f"{video.stem}_cloth.png")


def read_clip(path: Path, fps: float, frames: int) -> np.ndarray:
    """The first ``frames`` frames of a clip resampled to ``fps`` (the source frame nearest in time to each
    target time), uint8 (frames, H, W, 3). Raises ``BadRow`` if unreadable or too short."""
    import av

    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadRow("unreadable_video", "no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or fps)
            prev, t_prev, t0 = None, None, None
            for k, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else k / rate
                t0 = t if t0 is None else t0
                t -= t0
                img = frame.to_ndarray(format="rgb24")
                if prev is not None:
                    # target times closer to the previous frame than to this one take the previous frame
                    while len(out) < frames and len(out) / fps <= (t_prev + t) / 2:
                        out.append(prev)
                if len(out) >= frames:
                    break
                prev, t_prev = img, t
            if prev is not None:    # the last frame lasts one source interval
                while len(out) < frames and len(out) / fps < t_prev + 0.5 / rate:
                    out.append(prev)
    except BadRow:
        raise
    except Exception as e:  # noqa: BLE001  (any decoder error means: unreadable)
        raise BadRow("unreadable_video", f"unreadable video ({type(e).__name__}: {e})") from None
    if not out:
        raise BadRow("unreadable_video", "no video frames")
    if len(out) < frames:
        raise BadRow("too_short", f"{len(out)} frames at {fps:g} fps, need {frames}")
    return np.stack(out)


@dataclass(frozen=True)
class Item:
    video: np.ndarray       # (F, H, W, 3) uint8, fitted
    reference: np.ndarray   # (H, W, 3)
    garment: np.ndarray
    caption: str


def load_row(row: dict, root: Path, size: tuple[int, int], fps: float, frames: int, caption_key: str) -> Item:
    """One CSV row as fitted pixels and its caption (``size`` is (width, height))."""
    from ..media import InputImageError, fit_garment, fit_person, load_image

    caption = pick_caption(row.get("prompt"), caption_key)
    if not row.get("video"):
        raise BadRow("bad_row", "empty video column")
    video = root / row["video"]
    src, cloth = siblings(video)
    missing = [p.name for p in (video, src, cloth) if not p.is_file()]
    if missing:
        raise BadRow("missing_file" if video.name in missing else "missing_sibling", f"missing {', '.join(missing)}")
    try:
        reference = fit_person(load_image(src), size)
        garment = fit_garment(load_image(cloth), size)
    except InputImageError as e:
        raise BadRow("bad_image", str(e)) from None
    clip = read_clip(video, fps, frames)
    return Item(np.stack([fit_person(f, size) for f in clip]), reference, garment, caption)


def vocab_prompt(caption: str, vocab: tuple[str, ...]) -> str:
    """For models that know a few prompt names instead of text (``tiny``): the first name the caption
    mentions (``arms_up`` as "arms up" or "raise"), else the first name."""
    low = caption.lower()
    if low in vocab:
        return low
    for name in vocab:
        words = {name, name.replace("_", " "), name.split("_")[0]} | ({"raise", "raises"} if name == "arms_up" else set())
        if any(w in low for w in words):
            return name
    return vocab[0]


# ----------------------------------------------------------------------------------------------------------
# Codec of a preset
# ----------------------------------------------------------------------------------------------------------

def default_codec(preset) -> str:
    """A tiny preset's codec: the shipped tiny codec trained on the preset's world (v1: assets/checkpoints/codec,
    v2: codec-v2; a tuned decoder is never the default); a real preset's: its Wan VAE repo."""
    if preset.latent_channels == 16 and preset.spatial_compression == 8 and preset.model.prompt_vocab:
        from ..model.loading import shipped_tiny_codecs

        for folder, meta, tuned in shipped_tiny_codecs():
            if not tuned and meta.get("world_version", 1) == preset.world_version:
                return str(folder)
        shipped = PACKAGE_ROOT / "assets" / "checkpoints" / "codec"
        return str(shipped if shipped.exists() else Path("assets/checkpoints/codec"))
    return WAN_VAE_REPOS.get(preset.latent_channels, WAN_VAE_REPOS[48])


def open_codec(name_or_path: str, preset, device: str = "cpu"):
    """The codec (a tiny codec folder, or a local Wan VAE: a diffusers folder with ``vae/`` or the hub cache);
    never downloads. Checks it matches the preset's latent space."""
    from ..model.codec import load_codec

    path = Path(name_or_path)
    if not path.exists():
        if name_or_path.count("/") != 1 or name_or_path.startswith((".", "/")):
            raise SystemExit(f"error: no codec at {name_or_path}")
        try:  # a hub id: only if it is already in the local cache
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(name_or_path, allow_patterns=["vae/*"], local_files_only=True))
        except Exception:  # noqa: BLE001
            raise SystemExit(
                f"error: the Wan VAE ({name_or_path}) is not on this machine. Download its vae/ folder, e.g. "
                f"`huggingface-cli download {name_or_path} --include 'vae/*' --local-dir ./{name_or_path.split('/')[-1]}`, "
                f"and pass --codec ./{name_or_path.split('/')[-1]}") from None
    try:
        codec = load_codec(path, device=device)
    except ImportError as e:
        raise SystemExit(f"error: the Wan VAE needs diffusers ({e})") from None
    if codec.latent_channels != preset.latent_channels or codec.spatial_compression != preset.spatial_compression:
        raise SystemExit(f"error: codec {name_or_path} has {codec.latent_channels} channels at "
                         f"{codec.spatial_compression}x, preset {preset.name} needs {preset.latent_channels} at "
                         f"{preset.spatial_compression}x")
    return codec


# ----------------------------------------------------------------------------------------------------------
# Building a bank: shards, resume, merge
# ----------------------------------------------------------------------------------------------------------

@dataclass
class BankJob:
    csv: Path
    out: Path
    root: Path
    config: str = "tiny"
    frames: int | None = None          # video frames per clip (default: the preset's training clip)
    caption: str = "en_short"
    codec: str | None = None
    text_encoder: Path | None = None
    shard_size: int = 16
    device: str = "cpu"


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"video", "prompt"} - set(reader.fieldnames or [])
        if missing:
            raise SystemExit(f"error: {path} has no column(s) {', '.join(sorted(missing))} "
                             "(expected video,prompt,width,height)")
        return list(reader)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_bank(job: BankJob, *, progress: bool = True, log=None, _max_shards: int | None = None) -> dict:
    """Encode ``job.csv`` into ``job.out``; returns the summary (the CLI's JSON). ``_max_shards`` stops after
    that many new shards (tests use it to interrupt a run)."""
    from tqdm import tqdm

    from ..config import get_preset
    from ..model.codec import latent_frames

    # tqdm.write clears the progress bar first, so each skipped row stays one clean line
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    preset = get_preset(job.config)
    frames = job.frames or preset.train_video_frames
    latent_frames(frames)  # 1 + 4k, or a clear error
    rows = read_rows(job.csv)
    codec_name = job.codec or default_codec(preset)
    codec = open_codec(codec_name, preset, job.device)
    fingerprint = {"csv_sha256": _sha256(job.csv), "root": str(job.root.resolve()), "config": preset.name,
                   "frames": frames, "fps": preset.fps, "caption": job.caption, "codec_sha256": codec.latent_sha256,
                   "text_encoder": str(job.text_encoder) if job.text_encoder else "", "shard_size": job.shard_size}
    parts = job.out.with_name(job.out.name + ".parts")
    job_file = parts / "job.json"
    if parts.exists() and (not job_file.exists() or json.loads(job_file.read_text()) != fingerprint):
        log(f"{parts}: left by a different job, starting over")
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(fingerprint, indent=2))

    encoder = None
    if job.text_encoder is not None:
        from ..model.text import PromptEncoder

        encoder = PromptEncoder(job.text_encoder, device=job.device)
    shards = math.ceil(len(rows) / job.shard_size)
    done = [k for k in range(shards) if (parts / f"shard-{k:05d}.json").exists()]
    bar = tqdm(total=len(rows), initial=sum(min(job.shard_size, len(rows) - k * job.shard_size) for k in done),
               desc="bank", unit="clip", disable=not progress, file=sys.stderr)
    new = 0
    for k in range(shards):
        record = parts / f"shard-{k:05d}.json"
        if record.exists():
            continue
        if _max_shards is not None and new >= _max_shards:
            break
        items, ids, prompts, captions, texts, skips = [], [], [], [], [], []
        for i in range(k * job.shard_size, min((k + 1) * job.shard_size, len(rows))):
            row = rows[i]
            try:
                item = load_row(row, job.root, preset.resolution, preset.fps, frames, job.caption)
            except BadRow as e:
                # row numbers as a spreadsheet shows them: the header is line 1
                log(f"skip row {i + 2} ({row.get('video')}): {e}")
                skips.append({"row": i, "reason": e.reason, "message": str(e)})
                bar.update(1)
                continue
            items.append(_encode(codec, item, job.device))
            ids.append(i)
            captions.append(item.caption)
            prompts.append(vocab_prompt(item.caption, preset.model.prompt_vocab) if preset.model.prompt_vocab
                           else item.caption)
            if encoder is not None:
                texts.append(encoder.encode(item.caption)[0].half().cpu())
            bar.update(1)
        if items:
            from safetensors.torch import save_file

            tensors = {"seeds": torch.tensor(ids), **{name: torch.stack([it[j] for it in items])
                                                     for j, name in enumerate(("video", "reference", "garment"))}}
            if texts:
                tensors["text"] = torch.stack(texts)
            tmp = parts / f".shard-{k:05d}.partial"
            save_file(tensors, str(tmp))
            os.replace(tmp, parts / f"shard-{k:05d}.safetensors")
        # the record is written last: a shard counts as done only once its tensors are on disk
        record.write_text(json.dumps({"items": len(items), "prompts": prompts, "captions": captions,
                                      "skipped": skips}))
        new += 1
    bar.close()
    summary = _merge(parts, shards, job, fingerprint, complete=len(list(parts.glob("shard-*.json"))) == shards)
    return summary


@torch.no_grad()
def _encode(codec, item: Item, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from .datasets import to_tensor_image, to_tensor_video

    video = codec.encode(to_tensor_video(item.video)[None].to(device))[0]
    reference = codec.encode_image(to_tensor_image(item.reference)[None].to(device))[0]
    garment = codec.encode_image(to_tensor_image(item.garment)[None].to(device))[0]
    return video.half().cpu(), reference.half().cpu(), garment.half().cpu()


def _merge(parts: Path, shards: int, job: BankJob, fingerprint: dict, complete: bool) -> dict:
    from safetensors.torch import load_file

    from ..config import get_preset

    records = [json.loads((parts / f"shard-{k:05d}.json").read_text()) for k in range(shards)
               if (parts / f"shard-{k:05d}.json").exists()]
    skips = [s for r in records for s in r["skipped"]]
    reasons = dict(sorted(Counter(s["reason"] for s in skips).items()))
    prompts = [p for r in records for p in r["prompts"]]
    captions = [c for r in records for c in r["captions"]]
    loaded = [load_file(str(parts / f"shard-{k:05d}.safetensors")) for k in range(shards)
              if (parts / f"shard-{k:05d}.safetensors").exists()]
    preset = get_preset(job.config)
    h, w = preset.latent_size
    empty_shape = [0, preset.latent_channels, 1 + (fingerprint["frames"] - 1) // 4, h, w]
    summary = {"items": len(prompts), "skipped": len(skips), "reasons": reasons,
               "video_shape": empty_shape, "prompts": len(prompts)}
    if not complete:
        summary["complete"] = False
        return summary
    if loaded:
        cat = {k: torch.cat([t[k] for t in loaded]) for k in loaded[0]}
        bank = LatentBank(cat["seeds"], cat["video"], cat["reference"], cat["garment"], prompts, cat.get("text"),
                          metadata={"fingerprint": json.dumps(fingerprint), "source": str(job.csv),
                                    "fps": str(preset.fps), "frames": str(fingerprint["frames"])})
        job.out.parent.mkdir(parents=True, exist_ok=True)
        bank.save(job.out)
        job.out.with_suffix(".captions.txt").write_text("\n".join(" ".join(c.split("\n")) for c in captions))
        summary["video_shape"] = list(bank.video.shape)
        shutil.rmtree(parts)    # merged: the shards are no longer needed
    return summary


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", type=Path, required=True, help="CSV with the columns video,prompt,width,height")
    p.add_argument("--root", type=Path, default=None, help="folder the CSV's video paths are relative to "
                   "(default: the current directory, as the official meta_train.csv expects)")
    p.add_argument("--config", default="tiny", help="preset: resolution, frame rate, clip length and codec")
    p.add_argument("--frames", type=int, default=None, help="video frames per clip, 1 + 4k (default: the "
                   "preset's training clip); shorter clips are skipped")
    p.add_argument("--out", type=Path, required=True, help="the bank (safetensors; prompts in a .prompts.txt sibling)")
    p.add_argument("--caption", choices=CAPTION_KEYS, default="en_short", help="which caption list of the prompt")
    p.add_argument("--codec", default=None, help="codec folder or Wan repo id in the local cache (default: the "
                   "shipped tiny codec of the preset's world for tiny presets, the preset's Wan VAE otherwise)")
    p.add_argument("--text-encoder", type=Path, default=None,
                   help="umT5 folder: also store text embeddings (real shapes)")
    p.add_argument("--shard-size", type=int, default=16, help="rows per shard (the unit of resume)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="last stdout line: the summary as JSON")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if not args.csv.is_file():
        print(f"error: {args.csv}: no such file", file=sys.stderr)
        return 2
    job = BankJob(csv=args.csv, out=args.out, root=args.root or Path.cwd(), config=args.config, frames=args.frames,
                  caption=args.caption, codec=args.codec, text_encoder=args.text_encoder,
                  shard_size=max(1, args.shard_size), device=args.device)
    try:
        summary = build_bank(job)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['items']} clips in {args.out} ({summary['skipped']} skipped: "
              f"{', '.join(f'{k} {v}' for k, v in summary['reasons'].items()) or 'none'})")
    return 0 if summary["items"] else 1
