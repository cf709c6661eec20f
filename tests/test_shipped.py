"""The shipped codec in assets/: it loads, its hash is the recorded one, and it reconstructs held-out clips."""

import json
from pathlib import Path

import numpy as np
import torch

from fashionchameleon.data.datasets import to_tensor_video, to_uint8
from fashionchameleon.data.world import make_sample
from fashionchameleon.model.codec import TinyCodec

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"


def test_shipped_codec_hash_and_round_trip():
    codec = TinyCodec.load(ASSETS / "codec")
    meta = json.loads((ASSETS / "codec" / "config.json").read_text())
    assert codec.sha256 == meta["sha256"]
    assert (ASSETS / "codec" / "codec.safetensors").stat().st_size < 10 * 2**20   # a Space's plain-git limit
    psnrs = []
    for seed in (500_100, 500_101):
        clip = make_sample(seed, num_frames=17).clip.frames
        with torch.no_grad():
            rec = to_uint8(codec.decode(codec.encode(to_tensor_video(clip)[None]))[0])
        mse = ((rec.astype(np.float64) - clip) ** 2).mean()
        psnrs.append(10 * np.log10(255**2 / mse))
    assert min(psnrs) > 26.0, psnrs
