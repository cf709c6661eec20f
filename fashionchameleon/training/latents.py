"""Pre-encoded latents of the world's training seeds, keyed by the codec's hash (a changed codec never
reuses stale latents). Data order is a pure function of (seed, step)."""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import check_training_seeds, to_tensor_image, to_tensor_video
from ..data.world import make_sample
from .runstate import step_rng

_CODEC = None


def _init_worker(codec_dir: str) -> None:
    global _CODEC
    from ..model.codec import load_codec

    torch.set_num_threads(1)
    _CODEC = load_codec(codec_dir)


@torch.no_grad()
def _encode_seed(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    seed, frames, size = args
    s = make_sample(seed, num_frames=frames, size=size)
    video = _CODEC.encode(to_tensor_video(s.clip.frames)[None])[0]
    ref = _CODEC.encode_image(to_tensor_image(s.reference)[None])[0]
    garment = _CODEC.encode_image(to_tensor_image(s.garment_image)[None])[0]
    return video.half(), ref.half(), garment.half(), s.prompt


@dataclass
class LatentBank:
    seeds: torch.Tensor
    video: torch.Tensor        # (N, C, F, h, w) fp16
    reference: torch.Tensor    # (N, C, 1, h, w)
    garment: torch.Tensor
    prompts: list[str]

    def __len__(self) -> int:
        return len(self.seeds)

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({"seeds": self.seeds, "video": self.video.contiguous(), "reference": self.reference.contiguous(),
                   "garment": self.garment.contiguous()}, str(path))
        Path(path).with_suffix(".prompts.txt").write_text("\n".join(self.prompts))

    @classmethod
    def load(cls, path: Path) -> "LatentBank":
        from safetensors.torch import load_file

        t = load_file(str(path))
        prompts = Path(path).with_suffix(".prompts.txt").read_text().split("\n")
        return cls(t["seeds"], t["video"], t["reference"], t["garment"], prompts)

    def batch(self, step: int, batch: int, seed: int = 0, frames: int | None = None) -> dict:
        """The global batch of a step (random items, a pure function of (seed, step)); ``frames`` keeps the
        first latent frames only."""
        rng = step_rng(seed, step)
        idx = torch.from_numpy(rng.integers(len(self), size=batch))
        video = self.video[idx].float()
        if frames is not None and frames < video.shape[2]:
            video = video[:, :, :frames]
        return {"index": idx, "video": video, "reference": self.reference[idx].float(),
                "garment": self.garment[idx].float(), "prompts": [self.prompts[i] for i in idx.tolist()]}


def bank_path(root: Path, codec_sha: str, seeds: list[int], frames: int, size: int) -> Path:
    return root / f"{codec_sha[:16]}_{seeds[0]}-{seeds[-1]}_{frames}f_{size}px.safetensors"


def build_or_load_bank(codec_dir: str | os.PathLike, codec_sha: str, seeds, frames: int = 33, size: int = 128,
                       root: Path | None = None, workers: int = 2, progress: bool = True) -> LatentBank:
    from tqdm import tqdm

    from .runstate import default_run_dir

    seeds = check_training_seeds(seeds)
    root = root or default_run_dir("latents")
    root.mkdir(parents=True, exist_ok=True)
    path = bank_path(root, codec_sha, seeds, frames, size)
    if path.exists():
        return LatentBank.load(path)
    jobs = [(s, frames, size) for s in seeds]
    with mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(str(codec_dir),)) as pool:
        out = list(tqdm(pool.imap(_encode_seed, jobs, chunksize=8), total=len(jobs), desc="encode world",
                        unit="clip", disable=not progress))
    bank = LatentBank(torch.tensor(seeds), torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out]),
                      torch.stack([o[2] for o in out]), [o[3] for o in out])
    bank.save(path)
    return bank
