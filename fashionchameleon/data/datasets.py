"""Data sets: the synthetic world (rendered on the fly or from a pre-rendered bank, optionally as cached
latents keyed by the codec's hash) and a folder of real triplets (the paper's benchmark layout).

The training side refuses held-out seeds (500,000-999,999): evaluation numbers stay honest.

World version and size: ``version=1`` renders v1's square frames (``size`` an int, the default and the shipped
`tiny`'s data); ``version=2`` renders world v2's portrait frames (``size`` = (width, height)). A preset's
``world_version`` / ``world_size`` give both (``WorldDataset.for_preset``).
"""

from __future__ import annotations

import multiprocessing as mp
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .world import TRAIN_SEEDS, is_heldout, make_sample

Size = int | tuple[int, int]     # v1: a square side; v2: (width, height)


class HeldOutSeedError(ValueError):
    pass


def check_training_seeds(seeds) -> list[int]:
    seeds = [int(s) for s in seeds]
    bad = [s for s in seeds if is_heldout(s)]
    if bad:
        raise HeldOutSeedError(f"seed {bad[0]} is held out for evaluation (500,000-999,999); "
                               f"training uses seeds 0-499,999")
    out_of_range = [s for s in seeds if s not in TRAIN_SEEDS]
    if out_of_range:
        raise ValueError(f"seed {out_of_range[0]} is outside the world's seed range 0-999,999")
    return seeds


@dataclass
class Bank:
    """Pre-rendered samples as arrays (uint8): clips (N, T, H, W, 3), garment images and references (N, H, W, 3)."""

    seeds: np.ndarray
    clips: np.ndarray
    garments: np.ndarray
    references: np.ndarray
    prompts: list[str]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, seeds=self.seeds, clips=self.clips, garments=self.garments, references=self.references,
                 prompts=np.array(self.prompts))

    @classmethod
    def load(cls, path: Path) -> "Bank":
        d = np.load(path)
        return cls(d["seeds"], d["clips"], d["garments"], d["references"], [str(p) for p in d["prompts"]])


def _render_one(args):
    seed, frames, size, version = args
    s = make_sample(seed, num_frames=frames, size=size, version=version)
    return s.clip.frames, s.garment_image, s.reference, s.prompt


def render_bank(seeds, num_frames: int, size: Size = 128, workers: int = 2, training: bool = True,
                progress: bool = True, version: int = 1) -> Bank:
    """Pre-rendered samples of world ``version`` at ``size`` (training refuses held-out seeds)."""
    seeds = check_training_seeds(seeds) if training else [int(s) for s in seeds]
    jobs = [(s, num_frames, size, version) for s in seeds]
    ctx = mp.get_context("fork")
    from tqdm import tqdm

    with ctx.Pool(workers) as pool:
        results = list(tqdm(pool.imap(_render_one, jobs, chunksize=4), total=len(jobs), disable=not progress,
                            desc="render world", unit="clip"))
    return Bank(np.array(seeds), np.stack([r[0] for r in results]), np.stack([r[1] for r in results]),
                np.stack([r[2] for r in results]), [r[3] for r in results])


def _tensor(a: np.ndarray) -> torch.Tensor:
    # torch refuses to share memory with a read-only array (a memory-mapped bank): copy only then
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def to_tensor_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., T, H, W, 3) -> float (..., 3, T, H, W) in [-1, 1]."""
    return _tensor(frames).float().div(127.5).sub(1.0).movedim(-1, -4)


def to_tensor_image(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return _tensor(images).float().div(127.5).sub(1.0).movedim(-1, -3)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (..., 3, [T,] H, W) in [-1, 1] with channels at dim -4 (video) or -3 (image) -> uint8 channels-last."""
    dim = -4 if x.ndim >= 4 and x.shape[-4] == 3 else -3
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().movedim(dim, -1).cpu().numpy()


# ----------------------------------------------------------------------------------------------------------
# Real triplets: <id>.mp4, <id>_src.png, <id>_cloth.png, optional <id>.txt
# ----------------------------------------------------------------------------------------------------------

def read_video(path: Path, max_frames: int | None = None) -> np.ndarray:
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError("no video frames")
    return np.stack(frames)


class FolderTriplets(torch.utils.data.Dataset):
    """A folder of real person/garment/video triplets; bad items are skipped with a warning, never a crash."""

    def __init__(self, root: str | Path, size: int = 128, num_frames: int = 33):
        from ..media import load_image  # noqa: F401  (validated lazily per item)

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: not a folder")
        self.size, self.num_frames = size, num_frames
        self.ids = sorted(p.stem for p in self.root.glob("*.mp4"))
        self.valid: list[str] = []
        for i in self.ids:
            missing = [n for n in (f"{i}_src.png", f"{i}_cloth.png") if not (self.root / n).is_file()]
            if missing:
                warnings.warn(f"skipping {self.root / (i + '.mp4')}: missing {', '.join(missing)}")
                continue
            self.valid.append(i)

    def __len__(self) -> int:
        return len(self.valid)

    def _load(self, i: str) -> dict:
        from ..media import fit_garment, fit_person, load_image

        frames = read_video(self.root / f"{i}.mp4", self.num_frames)
        if len(frames) < self.num_frames:
            raise ValueError(f"{len(frames)} frames, need {self.num_frames}")
        frames = np.stack([fit_person(f, self.size) for f in frames])
        caption = (self.root / f"{i}.txt").read_text().strip() if (self.root / f"{i}.txt").is_file() else ""
        return {"id": i, "video": to_tensor_video(frames),
                "reference": to_tensor_image(fit_person(load_image(self.root / f"{i}_src.png"), self.size)),
                "garment": to_tensor_image(fit_garment(load_image(self.root / f"{i}_cloth.png"), self.size)),
                "caption": caption}

    def __getitem__(self, index: int) -> dict | None:
        i = self.valid[index]
        try:
            return self._load(i)
        except Exception as e:  # a bad file must not end an epoch
            warnings.warn(f"skipping {self.root / (i + '.mp4')}: {type(e).__name__}: {e}")
            return None

    def __iter__(self):
        for k in range(len(self)):
            item = self[k]
            if item is not None:
                yield item


# ----------------------------------------------------------------------------------------------------------
# The world as a torch data set (frames, or latents cached on disk under the codec's hash)
# ----------------------------------------------------------------------------------------------------------

class WorldDataset(torch.utils.data.Dataset):
    """Samples of the synthetic world by seed.

    Without a codec, items hold pixels in [-1, 1]; with one, latents of the video, the reference and the
    garment image, cached under ``cache_dir/<codec sha256[:16]>/`` so a changed codec never reuses stale
    latents. ``training=True`` (the default) refuses held-out seeds.
    """

    def __init__(self, seeds, num_frames: int = 33, size: Size = 128, codec=None, cache_dir: str | Path | None = None,
                 training: bool = True, version: int = 1):
        self.seeds = check_training_seeds(seeds) if training else [int(s) for s in seeds]
        self.num_frames, self.size, self.codec, self.version = num_frames, size, codec, version
        self.cache = None
        if codec is not None and cache_dir is not None:
            self.cache = Path(cache_dir) / codec.latent_sha256[:16]
            self.cache.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_preset(cls, preset, seeds, codec=None, cache_dir: str | Path | None = None,
                   training: bool = True) -> "WorldDataset":
        """Training clips of a preset: its world version, frame size and clip length."""
        return cls(seeds, num_frames=preset.train_video_frames, size=preset.world_size, codec=codec,
                   cache_dir=cache_dir, training=training, version=preset.world_version)

    def _cache_name(self, seed: int) -> str:
        # v1 keeps its original names (existing caches stay valid); v2 names carry the version and both sides
        if self.version == 1:
            return f"{seed}_{self.num_frames}_{self.size}.safetensors"
        w, h = self.size
        return f"{seed}_{self.num_frames}_v{self.version}_{w}x{h}.safetensors"

    def _sample(self, seed: int):
        return make_sample(seed, self.num_frames, self.size, version=self.version)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> dict:
        seed = self.seeds[index]
        if self.codec is None:
            s = self._sample(seed)
            return {"seed": seed, "prompt": s.prompt, "video": to_tensor_video(s.clip.frames),
                    "reference": to_tensor_image(s.reference), "garment": to_tensor_image(s.garment_image)}
        path = self.cache / self._cache_name(seed) if self.cache else None
        if path is not None and path.exists():
            from safetensors.torch import load_file

            t = load_file(str(path))
            return {"seed": seed, "prompt": make_prompt(seed, self.version), **{k: v.float() for k, v in t.items()}}
        s = self._sample(seed)
        with torch.no_grad():
            item = {"video": self.codec.encode(to_tensor_video(s.clip.frames)[None])[0],
                    "reference": self.codec.encode_image(to_tensor_image(s.reference)[None])[0],
                    "garment": self.codec.encode_image(to_tensor_image(s.garment_image)[None])[0]}
        if path is not None:
            from safetensors.torch import save_file

            save_file({k: v.half().contiguous() for k, v in item.items()}, str(path))
            item = {k: v.half().float() for k, v in item.items()}  # identical whether cached or not
        return {"seed": seed, "prompt": s.prompt, **item}


def make_prompt(seed: int, version: int = 1) -> str:
    from .world import spec_for_seed

    return spec_for_seed(seed, version=version).prompt
