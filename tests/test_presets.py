"""The presets as FashionChameleon uses them: `wan2.2-ti2v-5b` is the official portrait configuration."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fashionchameleon.config import PRESETS, get_preset

ROOT = Path(__file__).resolve().parents[1]


def info(name: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "fashionchameleon", "info", "--config", name, "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_wan22_5b_is_the_official_portrait_configuration():
    d = info("wan2.2-ti2v-5b")
    assert d["resolution"] == "704x1280" and 4e9 < d["params"] < 6e9
    assert d["latent_shape"] == [23, 48, 80, 44]           # official image_or_video_shape (F, C, H, W)
    assert d["fps"] == 24 and d["block_frames"] == 3 and d["steps"] == 4
    p = get_preset("wan2.2-ti2v-5b")
    assert p.stream.denoise_timesteps == (1000, 750, 500, 250) and p.stream.timestep_shift == 5.0
    assert p.latent_size[0] * p.latent_size[1] // 4 == 880  # tokens a latent frame (2x2 patches)
    assert p.train_video_frames == 81                        # the official loader's clip length
    land = info("wan2.2-ti2v-5b-landscape")
    assert land["resolution"] == "1280x704" and land["params"] == d["params"]


# `micro` is excluded: a test stand-in whose short clips (6 latent frames) let the tests reach eviction quickly
@pytest.mark.parametrize("name", sorted(set(PRESETS) - {"micro"}))
def test_streaming_never_sees_a_position_training_did_not(name):
    p = get_preset(name)
    s = p.stream
    assert 2 + s.sink_frames + s.window_frames + s.block_frames <= 2 + p.train_latent_frames


def test_stream_config_refuses_out_of_range_switch_settings():
    """One range check for every way a streaming config is made (presets, config.json, flags, `average`)."""
    from fashionchameleon.config import StreamConfig

    for bad in ({"reference_mix": 1.5}, {"reference_mix": float("nan")}, {"reanchor_mix": -0.1},
                {"reference_gate": -1.0}, {"reference_snap": float("inf")}, {"deblock": -0.5}, {"keep_recent": -1}, {"reanchor_after": -2}, {"block_frames": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            StreamConfig(**bad)
    for preset in PRESETS.values():     # every preset passes it
        assert StreamConfig.from_dict(preset.stream.to_dict()) == preset.stream
