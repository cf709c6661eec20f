import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(int(os.environ.get("FC_TEST_THREADS", min(2, torch.get_num_threads()))))


def randomize_(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Give EVERY parameter random values (also the ones libraries initialise to zero or one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


@pytest.fixture
def randomize():
    return randomize_


@pytest.fixture(scope="session")
def micro_assets(tmp_path_factory):
    """A random `micro` checkpoint (32x32 video) and a small random codec, saved like the shipped ones."""
    from fashionchameleon.config import get_preset
    from fashionchameleon.model.codec import TinyCodec, TinyCodecConfig
    from fashionchameleon.model.dit import WanDiT
    from fashionchameleon.model.loading import save_checkpoint

    root = tmp_path_factory.mktemp("micro_assets")
    torch.manual_seed(0)
    codec = TinyCodec(TinyCodecConfig(width=16, enc_blocks=1, dec_blocks=1))
    randomize_(codec, scale=0.08, seed=7)
    codec.save(root / "codec")
    preset = get_preset("micro")
    model = randomize_(WanDiT(preset.model), scale=0.2, seed=8)
    save_checkpoint(root / "model", model, preset, metadata={"codec_sha256": TinyCodec.load(root / "codec").sha256})
    return root / "model", root / "codec"


@pytest.fixture
def micro_generator(micro_assets):
    from fashionchameleon.streaming.generator import StreamingGenerator

    return StreamingGenerator.from_pretrained(micro_assets[0], micro_assets[1])
