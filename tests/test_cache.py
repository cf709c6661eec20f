"""Block-causal mode and the segmented KV cache against explicit masked passes (fp32, random weights)."""

import pytest
import torch

from fashionchameleon.config import ModelConfig
from fashionchameleon.model import causal
from fashionchameleon.model.dit import WanDiT
from fashionchameleon.model.kv_cache import LayerCapture, WindowPolicy, block_causal_mask
from fashionchameleon.model.rope import apply_rope, rope_rotation

CFG = ModelConfig(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4, text_dim=8,
                  freq_dim=16, ffn_dim=32, num_layers=2)
B, HW = 3, (4, 4)  # block frames, latent grid (-> 2x2 tokens a frame)


@pytest.fixture(scope="module")
def model():
    from conftest import randomize_

    return randomize_(WanDiT(CFG), scale=0.3, seed=3).eval()


def lat(frames, seed):
    return torch.randn(1, 4, frames, *HW, generator=torch.Generator().manual_seed(seed))


def text_of(model):
    return model.embed_text(torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(9)))


class QuerySpy:
    """Records the number of query frames of every forward pass."""

    def __init__(self, model):
        self.frames = []
        self.handle = model.register_forward_pre_hook(lambda m, args: self.frames.append(args[0].shape[2]))

    def close(self):
        self.handle.remove()


@torch.no_grad()
@pytest.mark.parametrize("reference_channels,reference_copy", [(0, False), (4, False), (4, True)])
def test_cached_equals_masked_teacher_forcing_pass(model, reference_channels, reference_copy):
    """Also for a model that concatenates the reference to every frame (ModelConfig.reference_channels), and
    one whose copy gate (random weights: partly open) mixes in the velocity onto it (reference_copy): the
    cache carries the prefix's reference to every cached pass, as the masked pass is given it."""
    if reference_channels:
        from dataclasses import replace

        from conftest import randomize_

        cfg = replace(CFG, reference_channels=reference_channels, reference_copy=reference_copy)
        model = randomize_(WanDiT(cfg), scale=0.3, seed=5).eval()
    policy = WindowPolicy(sink=3, window=6)
    n, text = 9, text_of(model)
    prefix, clean, noisy = lat(2, 0), lat(n, 1), lat(n, 2)
    t_blocks = torch.tensor([900.0, 400.0, 650.0])

    # (a) one masked pass over [clean | noisy] with the prefix as context.
    cache = causal.new_cache(model, HW, policy)
    causal.prefill(model, cache, prefix, text)
    timesteps = torch.cat([torch.zeros(n), t_blocks.repeat_interleave(B)])[None]
    positions = torch.arange(2, 2 + n).repeat(2)
    mask = block_causal_mask(n, B, policy, context_frames=2, teacher_forcing=True)
    full = model(torch.cat([clean, noisy], 2), timesteps, text, positions=positions, frame_mask=mask,
                 context=cache, text_is_embedded=True, reference=cache.reference)

    # (b) block by block with the cache; each pass sees only the new block's queries.
    spy = QuerySpy(model)
    for j in range(n // B):
        s = slice(j * B, (j + 1) * B)
        out = causal.denoise(model, cache, noisy[:, :, s], t_blocks[j].expand(1), text)
        torch.testing.assert_close(out, full[:, :, n + j * B: n + (j + 1) * B], atol=1e-5, rtol=1e-5)
        causal.commit(model, cache, clean[:, :, s], text)    # checked by the next block's denoise
    spy.close()
    assert spy.frames == [B] * (2 * n // B)
    assert full.std() > 0.1


@torch.no_grad()
def test_kv_only_pass_captures_what_the_full_pass_captures(model):
    x, text = lat(B, 6), text_of(model)
    t = torch.zeros(1, B)
    full, cut = LayerCapture(), LayerCapture()
    out = model(x, t, text, capture=full, text_is_embedded=True)
    assert model(x, t, text, capture=cut, text_is_embedded=True, kv_only=True) is None
    assert out.shape == x.shape and sorted(cut.keys) == list(range(model.config.num_layers))
    for i in full.keys:
        torch.testing.assert_close(cut.keys[i], full.keys[i], atol=0, rtol=0)
        torch.testing.assert_close(cut.values[i], full.values[i], atol=0, rtol=0)
    with pytest.raises(ValueError, match="capture"):
        model(x, t, text, text_is_embedded=True, kv_only=True)


@torch.no_grad()
def test_seeing_the_future_changes_the_output(model):
    policy = WindowPolicy(sink=3, window=6)
    text, x = text_of(model), lat(6, 4)
    cache = causal.new_cache(model, HW, policy)
    causal.prefill(model, cache, lat(2, 5), text)
    mask = block_causal_mask(6, B, policy, context_frames=2)
    leaky = mask.clone()
    leaky[:B, 2 + B:] = True  # block 0 may see block 1
    t = torch.tensor([500.0])
    pos = cache.query_positions(6)
    a = model(x, t, text, positions=pos, frame_mask=mask, context=cache, text_is_embedded=True)
    b = model(x, t, text, positions=pos, frame_mask=leaky, context=cache, text_is_embedded=True)
    assert (a[:, :, :B] - b[:, :, :B]).abs().max() > 1e-3


class FullHistoryContext:
    """Reference: keeps every committed frame (unbounded) and rotates the visible ones at window positions."""

    def __init__(self, model, prefix_capture):
        self.model = model
        self.prefix = prefix_capture
        self.frames: list[LayerCapture] = []
        self.visible: list[int] = []

    def committed(self):
        return sum(c.frames for c in self.frames)

    def context(self, layer):
        ks = [self.prefix.keys[layer]] + [c.keys[layer] for c in self.frames]
        vs = [self.prefix.values[layer]] + [c.values[layer] for c in self.frames]
        k, v = torch.cat(ks, 2), torch.cat(vs, 2)
        b, h, f, hw, d = k.shape
        pos = torch.zeros(f)  # invisible frames are masked; their position does not matter
        pos[:2] = torch.arange(2)
        for rank, frame in enumerate(self.visible):
            pos[2 + frame] = 2 + rank
        rotation = rope_rotation(pos, 2, 2, CFG.attention_head_dim)
        return apply_rope(k.reshape(b, h, f * hw, d), rotation), v.reshape(b, h, f * hw, d)

    def extend(self, layer, keys, values):
        ck, cv = self.context(layer)
        return torch.cat([ck, keys], 2), torch.cat([cv, values], 2)

    def mask(self, frames):
        c = self.committed()
        m = torch.zeros(frames, 2 + c + frames, dtype=torch.bool)
        m[:, :2] = True
        m[:, [2 + i for i in self.visible]] = True
        m[:, 2 + c:] = True
        return m


@torch.no_grad()
def test_rolling_window_with_sink_equals_explicit_masked_attention(model):
    policy = WindowPolicy(sink=3, window=6)
    text = text_of(model)
    prefix = lat(2, 6)
    cache = causal.new_cache(model, HW, policy)
    causal.prefill(model, cache, prefix, text)
    ref = FullHistoryContext(model, causal.encode_prefix(model, prefix, text))
    for j in range(8):  # evictions start at block 4
        ref.visible = policy.visible(ref.committed())
        noisy, clean, t = lat(B, 100 + j), lat(B, 200 + j), torch.tensor([300.0 + 50 * j])
        pos = torch.arange(2 + len(ref.visible), 2 + len(ref.visible) + B)
        expected = model(noisy, t, text, positions=pos, frame_mask=ref.mask(B), context=ref, text_is_embedded=True)
        got = causal.denoise(model, cache, noisy, t, text)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        cap = LayerCapture()
        model(clean, torch.zeros(1, B), text, positions=pos, frame_mask=ref.mask(B), context=ref, capture=cap,
              text_is_embedded=True)
        ref.frames.append(cap)
        causal.commit(model, cache, clean, text)
        assert cache.frames("sink") == 3 and cache.frames("history") == min(6, 3 * j)
    assert cache.visible_frames == 2 + 3 + 6


@torch.no_grad()
def test_translation_invariance(model):
    """The same visible content at stream frame ~100 and ~10,000 gives the same output."""
    policy = WindowPolicy(sink=3, window=6)
    text = text_of(model)
    sink, junk, h1, h2, noisy = lat(B, 10), lat(B, 11), lat(B, 12), lat(B, 13), lat(B, 14)

    def run(junk_blocks):
        cache = causal.new_cache(model, HW, policy)
        causal.prefill(model, cache, lat(2, 15), text)
        causal.commit(model, cache, sink, text)
        for _ in range(junk_blocks):
            causal.commit(model, cache, junk, text)
        causal.commit(model, cache, h1, text)
        causal.commit(model, cache, h2, text)
        return cache.committed_frames, causal.denoise(model, cache, noisy, torch.tensor([700.0]), text)

    def video_frame(latent_frames):  # 4x temporal compression, the first latent is one frame
        return 1 + 4 * (latent_frames - 1)

    frame_a, a = run(6)      # the block after it starts near video frame 100
    frame_b, b = run(832)    # ... and near video frame 10,000
    assert 90 <= video_frame(frame_a) <= 110 and video_frame(frame_b) >= 10_000
    assert a.std() > 0.1
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_prefix_recompute_equals_fresh_prefill(model):
    policy = WindowPolicy(sink=3, window=6)
    text = text_of(model)
    ref_img, garment_a, garment_b, noisy = lat(1, 20), lat(1, 21), lat(1, 22), lat(B, 23)
    t = torch.tensor([800.0])

    cache = causal.new_cache(model, HW, policy)
    causal.prefill(model, cache, torch.cat([ref_img, garment_a], 2), text)
    causal.commit(model, cache, lat(B, 24), text)
    causal.commit(model, cache, lat(B, 25), text)
    before = causal.denoise(model, cache, noisy, t, text)
    # switch: new garment prefix, history and sink withdrawn
    causal.prefill(model, cache, torch.cat([ref_img, garment_b], 2), text)
    cache.keep_history(0)
    cache.clear("sink")
    assert cache.visible_frames == 2
    switched = causal.denoise(model, cache, noisy, t, text)

    fresh = causal.new_cache(model, HW, policy)
    causal.prefill(model, fresh, torch.cat([ref_img, garment_b], 2), text)
    torch.testing.assert_close(switched, causal.denoise(model, fresh, noisy, t, text), atol=1e-6, rtol=1e-6)
    assert (switched - before).abs().max() > 1e-3


def prefilled_cache(model, text, seed):
    cache = causal.new_cache(model, HW, WindowPolicy(sink=3, window=6))
    causal.prefill(model, cache, lat(2, seed), text)
    return cache


@torch.no_grad()
def test_keep_history_keeps_the_last_frames(model):
    text = text_of(model)
    cache = prefilled_cache(model, text, 30)
    for j in range(4):
        causal.commit(model, cache, lat(B, 31 + j), text)
    last = cache.keys["history"][1][:, :, -2:].clone()
    cache.keep_history(2)
    assert cache.frames("history") == 2 and cache.frames("sink") == 3
    assert torch.equal(cache.keys["history"][1], last)


def test_extend_writes_into_one_buffer_and_equals_concatenation(model):
    text = text_of(model)
    cache = prefilled_cache(model, text, 50)
    with torch.no_grad():
        causal.commit(model, cache, lat(B, 51), text)
    ck, cv = (t.clone() for t in cache.context(1))
    heads, hd = CFG.num_attention_heads, CFG.attention_head_dim

    def kv(tokens, seed):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(1, heads, tokens, hd, generator=g), torch.randn(1, heads, tokens, hd, generator=g)

    with torch.no_grad():
        k1, v1 = kv(12, 1)
        a_k, a_v = cache.extend(1, k1, v1)
        assert torch.equal(a_k, torch.cat([ck, k1], 2)) and torch.equal(a_v, torch.cat([cv, v1], 2))
        k2, v2 = kv(12, 2)
        b_k, _ = cache.extend(1, k2, v2)     # the next denoising step: same buffer, new tail
        assert b_k.data_ptr() == a_k.data_ptr() and torch.equal(b_k, torch.cat([ck, k2], 2))
        k3, v3 = kv(4, 3)                    # another block size: a new buffer, same context
        assert torch.equal(cache.extend(1, k3, v3)[1], torch.cat([cv, v3], 2))
        assert torch.equal(cache.context(1)[0], ck) and torch.equal(cache.context(1)[1], cv)

    # With autograd (DMD's exit step) the result is a fresh concatenation, so a later no-grad pass that
    # writes the buffer (the block's commit) cannot corrupt what backward needs.
    k4, v4 = (t.requires_grad_() for t in kv(12, 4))
    g_k, g_v = cache.extend(1, k4, v4)
    with torch.no_grad():
        cache.extend(1, *kv(12, 5))
    (g_k.square() + g_v * 3).sum().backward()    # square keeps g_k for backward: an in-place write would raise
    assert torch.allclose(k4.grad, 2 * k4) and torch.equal(v4.grad, torch.full_like(v4, 3.0))


@torch.no_grad()
def test_memory_is_bounded(model):
    text = text_of(model)
    cache = prefilled_cache(model, text, 40)
    block = lat(B, 41)
    sizes = {}
    for j in range(1, 1001):
        causal.commit(model, cache, block, text)
        if j in (20, 1000):
            sizes[j] = cache.memory_bytes()
    assert sizes[20] == sizes[1000] > 0
    assert cache.query_positions(B).max() == 2 + 3 + 6 + B - 1


def test_window_policy():
    p = WindowPolicy(sink=3, window=6)
    assert p.visible(0) == [] and p.visible(3) == [0, 1, 2]
    assert p.visible(9) == list(range(9))
    assert p.visible(12) == [0, 1, 2, 6, 7, 8, 9, 10, 11]
    mask = block_causal_mask(6, 3, p, context_frames=2, teacher_forcing=True)
    assert mask.shape == (12, 14)
    # noisy block 1 (rows 9..11) sees the prefix, clean block 0, itself; not clean block 1 nor noisy block 0
    row = mask[9]
    assert row[:2].all() and row[2:5].all() and not row[5:8].any() and not row[8:11].any() and row[11:14].all()


@torch.no_grad()
def test_prefill_and_recache_equals_two_passes(model):
    policy = WindowPolicy(sink=3, window=3)
    text = text_of(model)
    prefix, recent = lat(2, 50), lat(3, 51)
    one = causal.new_cache(model, HW, policy)
    causal.prefill_and_recache(model, one, prefix, recent, text)
    two = causal.new_cache(model, HW, policy)
    causal.prefill(model, two, prefix, text)
    causal.commit(model, two, recent, text, to_history=True)
    assert one.frames("history") == two.frames("history") == 3 and one.frames("sink") == 0
    for seg in ("prefix", "history"):
        for layer in range(CFG.num_layers):
            torch.testing.assert_close(one.keys[seg][layer], two.keys[seg][layer], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(one.values[seg][layer], two.values[seg][layer], atol=1e-5, rtol=1e-5)
    noisy = lat(3, 52)
    torch.testing.assert_close(causal.denoise(model, one, noisy, torch.tensor([600.0]), text),
                               causal.denoise(model, two, noisy, torch.tensor([600.0]), text), atol=1e-5, rtol=1e-5)
