"""A model that concatenates the reference latent to every frame (ModelConfig.reference_channels): the
warm start from a model without it, the cache's reference, diffusers parity, streaming. (Cached against
masked passes: tests/test_cache.py.)"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from fashionchameleon.config import ModelConfig, get_preset
from fashionchameleon.model import causal
from fashionchameleon.model.dit import WanDiT
from fashionchameleon.model.kv_cache import WindowPolicy
from fashionchameleon.training.trainer import with_reference_channels

PLAIN = ModelConfig(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4, text_dim=8,
                    freq_dim=16, ffn_dim=32, num_layers=2)
WITH_REF = replace(PLAIN, reference_channels=4)
HW = (4, 6)


def lat(frames, seed):
    return torch.randn(1, 4, frames, *HW, generator=torch.Generator().manual_seed(seed))


def text_of(model):
    return model.embed_text(torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(9)))


@pytest.fixture(scope="module")
def model():
    from conftest import randomize_

    return randomize_(WanDiT(WITH_REF), scale=0.3, seed=5).eval()


@torch.no_grad()
def test_warm_start_is_the_network_it_came_from(randomize):
    plain = randomize(WanDiT(PLAIN), scale=0.3, seed=4).eval()
    widened = WanDiT(WITH_REF).eval()
    widened.load_state_dict(with_reference_channels(plain.state_dict(), WITH_REF))
    assert widened.patch_embedding.weight.shape[1] == 8
    text, x, t = text_of(plain), lat(3, 1), torch.tensor([700.0])
    same = plain(x, t, text, text_is_embedded=True)
    torch.testing.assert_close(widened(x, t, text, text_is_embedded=True, reference=lat(1, 2)), same, atol=0, rtol=0)
    # once the new weights move, the reference is read
    widened.patch_embedding.weight[:, 4:] = torch.randn(24, 4, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    assert (widened(x, t, text, text_is_embedded=True, reference=lat(1, 2)) - same).abs().max() > 1e-3
    # a state of the right shape already, or a model without the channels, is left alone
    assert with_reference_channels(widened.state_dict(), WITH_REF)["patch_embedding.weight"].shape[1] == 8
    state = plain.state_dict()
    assert with_reference_channels(state, PLAIN) is state


def test_reference_is_required_and_checked(model, randomize):
    x, t = lat(3, 1), torch.tensor([500.0])
    with pytest.raises(ValueError, match="takes 4 reference channels; got none"):
        model(x, t, None)
    with pytest.raises(ValueError, match=r"must be \(b, 4, 1, 4, 6\)"):
        model(x, t, None, reference=lat(2, 3))
    plain = WanDiT(PLAIN)
    with pytest.raises(ValueError, match="takes 0 reference channels"):
        plain(x, t, None, reference=lat(1, 3))


@torch.no_grad()
def test_cache_carries_the_prefix_reference(model):
    policy = WindowPolicy(sink=3, window=3)
    text = text_of(model)
    prefix = lat(2, 10)
    cache = causal.new_cache(model, HW, policy)
    causal.prefill(model, cache, prefix, text)
    torch.testing.assert_close(cache.reference, prefix[:, :, :1])
    assert cache.fork().reference is cache.reference
    new_prefix = lat(2, 11)
    causal.prefill(model, cache, new_prefix, text)           # a switch rewrites the prefix: the reference follows
    torch.testing.assert_close(cache.reference, new_prefix[:, :, :1])
    one = causal.new_cache(model, HW, policy)
    causal.prefill_and_recache(model, one, prefix, lat(3, 12), text)
    torch.testing.assert_close(one.reference, prefix[:, :, :1])
    plain_cache = causal.new_cache(WanDiT(PLAIN), HW, policy)
    causal.prefill(WanDiT(PLAIN), plain_cache, prefix, None)
    assert plain_cache.reference is None


def test_diffusers_export_concatenates_like_wan_image_to_video(tmp_path, randomize):
    from diffusers import WanTransformer3DModel

    from fashionchameleon.model.interop import export_diffusers, from_pretrained, import_diffusers
    from fashionchameleon.model.loading import save_checkpoint

    preset = get_preset("micro-v2")
    preset = replace(preset, name="micro-v2-ref", model=replace(preset.model, reference_channels=16))
    ours = randomize(WanDiT(preset.model), scale=0.2, seed=6).eval()
    save_checkpoint(tmp_path / "ours", ours, preset, metadata={"codec_sha256": "abc"})
    d = preset.model.to_diffusers()
    assert d["in_channels"] == 32 and d["_fashionchameleon_reference_channels"] == 16
    assert ModelConfig.from_diffusers(d) == replace(preset.model, prompt_vocab=())
    out = export_diffusers(tmp_path / "ours", tmp_path / "diffusers")
    ref = WanTransformer3DModel.from_pretrained(str(out)).eval()
    text = ours.prompt_embedding(ours.prompt_ids(["sway"]))[:, None]
    x, r = torch.randn(1, 16, 3, 4, 6), torch.randn(1, 16, 1, 4, 6)
    t = torch.tensor([[0.0, 300.0, 800.0]])
    with torch.no_grad():
        expected = ref(torch.cat([x, r.expand(-1, -1, 3, -1, -1)], 1), t.repeat_interleave(6, 1), text).sample
        torch.testing.assert_close(ours(x, t, text, reference=r), expected, atol=1e-5, rtol=1e-5)
    back, back_preset, _ = from_pretrained(import_diffusers(out, tmp_path / "back"))
    assert back_preset.model.reference_channels == 16
    torch.testing.assert_close(back.patch_embedding.weight, ours.patch_embedding.weight, atol=0, rtol=0)


def test_streams_and_switches(randomize):
    from fashionchameleon.model.codec import TinyCodec, TinyCodecConfig
    from fashionchameleon.streaming.generator import StreamingGenerator

    base = get_preset("micro-v2")
    preset = replace(base, model=replace(base.model, reference_channels=16))
    torch.manual_seed(0)
    codec = TinyCodec(TinyCodecConfig(width=8, enc_blocks=1, dec_blocks=1)).eval()
    gen = StreamingGenerator(randomize(WanDiT(preset.model), scale=0.1, seed=7).eval(), codec, preset)
    rng = np.random.default_rng(0)
    person, a, b = (rng.integers(0, 255, (48, 32, 3), dtype=np.uint8) for _ in range(3))
    frames = []
    with gen.session(person, a, "sway", seed=0, num_frames=40) as session:
        for chunk in session:
            frames.append(chunk.frames)
            if len(frames) == 2:
                session.post_switch(b, label="b")
    video = np.concatenate(frames)
    assert video.shape == (40, 48, 32, 3) and video.std() > 0
