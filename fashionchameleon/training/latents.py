"""Pre-encoded latents of the world's training seeds, keyed by the codec's hash (a changed codec never
reuses stale latents). Data order is a pure function of (seed, step).

``version`` / ``size`` pick the world and its frame size (v1: a square side; v2: (width, height)); a preset
gives both as ``world_version`` / ``world_size``."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
from pathlib import Path

import torch

from ..data.bank import LatentBank  # noqa: F401  (the bank format lives with the data; re-exported here)
from ..data.datasets import Size, check_training_seeds, to_tensor_image, to_tensor_video
from ..data.world import make_sample

_CODEC = None
SHARD = 200     # seeds per saved shard of a bank being built


def _init_worker(codec_dir: str) -> None:
    global _CODEC
    from ..model.codec import load_codec

    torch.set_num_threads(1)
    _CODEC = load_codec(codec_dir)


@torch.no_grad()
def _encode_seed(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    seed, frames, size, version = args
    s = make_sample(seed, num_frames=frames, size=size, version=version)
    video = _CODEC.encode(to_tensor_video(s.clip.frames)[None])[0]
    ref = _CODEC.encode_image(to_tensor_image(s.reference)[None])[0]
    garment = _CODEC.encode_image(to_tensor_image(s.garment_image)[None])[0]
    return video.half(), ref.half(), garment.half(), s.prompt


def bank_path(root: Path, codec_sha: str, seeds: list[int], frames: int, size: Size, version: int = 1) -> Path:
    stem = f"{codec_sha[:16]}_{seeds[0]}-{seeds[-1]}_{frames}f"
    if version == 1 and isinstance(size, int):    # v1 squares keep their original names: built banks stay valid
        return root / f"{stem}_{size}px.safetensors"
    w, h = size
    return root / f"{stem}_v{version}_{w}x{h}.safetensors"


def build_or_load_bank(codec_dir: str | os.PathLike, codec_sha: str, seeds, frames: int = 33, size: Size = 128,
                       root: Path | None = None, workers: int = 2, progress: bool = True,
                       version: int = 1) -> LatentBank:
    """Latents of world ``version``'s training seeds at ``size`` (held-out seeds are refused), cached on disk."""
    from tqdm import tqdm

    from .runstate import default_run_dir

    seeds = check_training_seeds(seeds)
    root = root or default_run_dir("latents")
    root.mkdir(parents=True, exist_ok=True)
    path = bank_path(root, codec_sha, seeds, frames, size, version)
    if path.exists():
        return LatentBank.load(path)
    # encoded in shards of SHARD seeds, each saved as it completes: an interrupted build resumes
    parts_dir = path.with_name(f".{path.stem}.parts")
    parts_dir.mkdir(exist_ok=True)
    chunks = [seeds[i:i + SHARD] for i in range(0, len(seeds), SHARD)]
    parts = []
    bar = tqdm(total=len(seeds), desc="encode world", unit="clip", disable=not progress)
    pool = None     # opened at the first shard that is not saved yet: a resumed, finished build starts no workers
    try:
        for i, chunk in enumerate(chunks):
            part_path = parts_dir / f"{i:04d}_{chunk[0]}-{chunk[-1]}.safetensors"
            if part_path.exists():
                parts.append(LatentBank.load(part_path))
                bar.update(len(chunk))
                continue
            if pool is None:
                pool = mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(str(codec_dir),))
            out = []
            for o in pool.imap(_encode_seed, [(s, frames, size, version) for s in chunk], chunksize=8):
                out.append(o)
                bar.update(1)
            part = LatentBank(torch.tensor(chunk), torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out]),
                              torch.stack([o[2] for o in out]), [o[3] for o in out])
            part.save(part_path)
            parts.append(part)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    bar.close()
    bank = LatentBank(torch.cat([b.seeds for b in parts]), torch.cat([b.video for b in parts]),
                      torch.cat([b.reference for b in parts]), torch.cat([b.garment for b in parts]),
                      [p for b in parts for p in b.prompts])
    bank.save(path)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return bank


def other_world_count(main_clips: int, fraction: float) -> int:
    """How many other-world clips make ``fraction`` of a uniformly drawn batch when ``main_clips`` are the rest."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"a world mix is a fraction in [0, 1), got {fraction}")
    return round(main_clips * fraction / (1.0 - fraction))


def mix_banks(main: LatentBank, other: LatentBank) -> LatentBank:
    """One bank of both worlds' clips (same latent shape): uniform batches then draw each in proportion."""
    if main.video.shape[1:] != other.video.shape[1:]:
        raise ValueError(f"banks of different latent shapes: {tuple(main.video.shape[1:])} and "
                         f"{tuple(other.video.shape[1:])}")
    if (main.text is None) != (other.text is None):
        raise ValueError("one bank has text embeddings and the other does not")
    text = None if main.text is None else torch.cat([main.text, other.text])
    return LatentBank(torch.cat([main.seeds, other.seeds]), torch.cat([main.video, other.video]),
                      torch.cat([main.reference, other.reference]), torch.cat([main.garment, other.garment]),
                      main.prompts + other.prompts, text, dict(main.metadata))
