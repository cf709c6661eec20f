"""Streaming generator, sessions and the KV rescheduler on a random `micro` model (mechanics, not quality)."""

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from fashionchameleon.config import StreamConfig
from fashionchameleon.data.world import make_sample
from fashionchameleon.model import causal
from fashionchameleon.streaming.rescheduler import VARIANTS, KVRescheduler, SwitchPolicy, mix_reference, variant_policy
from fashionchameleon.streaming.events import DirChannel, Event


@pytest.fixture(scope="module")
def images():
    s = make_sample(11, num_frames=1, size=64)
    t = make_sample(12, num_frames=1, size=64)
    u = make_sample(13, num_frames=1, size=64)
    return s.reference, s.garment_image, t.garment_image, u.garment_image


def frames_of(session):
    return np.concatenate([c.frames for c in session])


def test_chunks_and_determinism(micro_generator, images):
    person, garment, _, _ = images
    a = micro_generator.session(person, garment, "wave", seed=3, num_frames=40)
    chunks = list(a)
    assert [c.first_frame for c in chunks] == [0, 9, 21, 33]
    assert [len(c.frames) for c in chunks] == [9, 12, 12, 7]
    assert chunks[0].frames.dtype == np.uint8 and chunks[0].frames.shape[1:] == (32, 32, 3)
    assert set(chunks[1].timings) >= {"denoise", "commit", "decode", "reschedule"}
    b = micro_generator.session(person, garment, "wave", seed=3, num_frames=40)
    assert np.array_equal(np.concatenate([c.frames for c in chunks]), frames_of(b))
    c = micro_generator.session(person, garment, "wave", seed=4, num_frames=40)
    assert not np.array_equal(np.concatenate([c2.frames for c2 in chunks]), frames_of(c))


@torch.no_grad()
def test_a_block_is_committed_when_the_next_one_is_asked_for(micro_generator, images):
    """The session commits lazily; its latents equal an eager loop (denoise, commit, denoise, ...) and the last
    block is never committed."""
    gen = micro_generator
    person, garment, _, _ = images
    s = gen.session(person, garment, "wave", seed=5, num_frames=40, keep_latents=True)
    streamed = [c.latents for c in s]
    assert s.cache.committed_frames == 3 * (len(streamed) - 1)       # all but the last block

    rng = torch.Generator().manual_seed(5)
    cache = causal.new_cache(gen.model, s.reference.shape[-2:], s.cache.policy)
    causal.prefill(gen.model, cache, torch.cat([s.reference, s.garment], 2), s.text)
    for latents in streamed:
        noise = torch.randn(latents.shape, generator=rng)
        x0 = causal.denoise_block(gen.model, cache, noise, s.sigmas, s.text, generator=rng)
        causal.commit(gen.model, cache, x0, s.text)
        torch.testing.assert_close(x0, latents, atol=0, rtol=0)


def test_switch_applies_at_the_next_block(micro_generator, images):
    person, garment, other, _ = images
    s = micro_generator.session(person, garment, "walk", seed=0, num_frames=60)
    seen = []
    for chunk in s:
        seen.append((chunk.index, chunk.garment, chunk.events))
        if chunk.index == 1:
            s.post_switch(other, "B")
    assert [g for _, g, _ in seen] == ["garment 0", "garment 0", "B", "B", "B", "B"]
    (rec,) = [e for e in s.events if e["kind"] == "switch"]
    assert rec["status"] == "applied" and rec["block"] == 2 and rec["frame"] == 21
    assert seen[2][2][0]["id"] == rec["id"]


def test_latest_switch_wins(micro_generator, images):
    person, garment, b, c = images
    s = micro_generator.session(person, garment, seed=0, num_frames=30)
    it = iter(s)
    next(it)
    s.post_switch(b, "B")
    s.post_switch(c, "C")
    s.post_switch(b, "B2")
    chunk = next(it)
    assert chunk.garment == "B2"
    status = {e["label"]: e["status"] for e in s.events}
    assert status == {"B": "skipped", "C": "skipped", "B2": "applied"}


def test_events_posted_after_the_last_block_stay_in_the_log_as_pending(micro_generator, images):
    person, garment, other, _ = images
    with micro_generator.session(person, garment, seed=0, num_frames=9) as s:
        list(s)
        late = s.post_switch(other, "late")
    (rec,) = [e for e in s.events if e["id"] == late]
    assert rec["status"] == "pending" and rec["frame"] is None


def test_stop_mid_block_lands_within_one_denoising_step(micro_generator, images):
    person, garment, _, _ = images
    s = micro_generator.session(person, garment, seed=0)
    model = micro_generator.model
    calls = []
    stopped_at = []

    def hook(module, args):
        calls.append(args[0].shape[2])
        if len(calls) == 7 and not stopped_at:   # the second denoising step of block 1
            threading.Thread(target=s.stop).start()
            time.sleep(0.2)
            stopped_at.append(len(calls))

    handle = model.register_forward_pre_hook(hook)
    try:
        chunks = list(s)
    finally:
        handle.remove()
    assert len(chunks) == 1
    # after the stop was posted, at most the step already running finishes: no further model passes
    assert len(calls) <= stopped_at[0] + 1
    list(s)  # stopping twice / iterating a stopped session is harmless


def test_two_sessions_in_two_threads_do_not_interfere(micro_generator, images):
    person, garment, other, _ = images
    alone = frames_of(micro_generator.session(person, garment, "sway", seed=5, num_frames=45))
    results = {}

    def run_a():
        s = micro_generator.session(person, garment, "sway", seed=5, num_frames=45)
        results["a"] = frames_of(s)

    def run_b():
        s = micro_generator.session(person, garment, "turn", seed=9, num_frames=45)
        out = []
        for chunk in s:
            out.append(chunk.frames)
            s.post_switch(other, "B")
        results["b"] = (np.concatenate(out), s.events)

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results["a"], alone)
    assert any(e["status"] == "applied" for e in results["b"][1])


def _state(cache):
    return {seg: [None if t is None else t.clone() for t in cache.keys[seg]] for seg in ("prefix", "sink", "history")}


@torch.no_grad()
def test_rescheduler_leaves_exactly_what_it_should(micro_generator, images):
    person, garment, other, _ = images
    gen = micro_generator
    new_img = torch.from_numpy(gen.garment_image(other).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1

    def streamed(blocks=4):
        s = gen.session(person, garment, "wave", seed=1)
        it = iter(s)
        for _ in range(blocks):
            next(it)
        return s

    # refresh only: the prefix changes, sink and history are untouched
    s = streamed()
    before = _state(s.cache)
    KVRescheduler(gen.model, gen.codec, SwitchPolicy(refresh=True, withdraw=False, disentangle=False)).switch(
        s.cache, reference=s.reference, garment=s.garment, new_garment_image=new_img, last_frame=None,
        recent_latents=s.recent, text=s.text)
    after = _state(s.cache)
    for seg in ("sink", "history"):
        assert all(torch.equal(a, b) for a, b in zip(before[seg], after[seg]))
    assert not torch.equal(before["prefix"][0], after["prefix"][0])

    # withdraw keeps exactly keep_recent history frames (and drops the sink)
    for keep in (0, 2, 3):
        s = streamed()
        KVRescheduler(gen.model, gen.codec, SwitchPolicy(keep_recent=keep, withdraw_sink=True)).switch(
            s.cache, reference=s.reference, garment=s.garment, new_garment_image=new_img, last_frame=None,
            recent_latents=s.recent, text=s.text)
        assert s.cache.frames("history") == keep and s.cache.frames("sink") == 0

    # disentangle: the new reference is encode_image of the last decoded frame
    s = streamed()
    last = torch.from_numpy(s.last_frame.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    res = KVRescheduler(gen.model, gen.codec, variant_policy("paper")).switch(
        s.cache, reference=s.reference, garment=s.garment, new_garment_image=new_img, last_frame=last,
        recent_latents=s.recent, text=s.text)
    torch.testing.assert_close(res.reference, gen.codec.encode_image(last))
    # ... and the prefix now encodes [that reference, the new garment]
    fresh = causal.new_cache(gen.model, res.reference.shape[-2:], s.cache.policy)
    causal.prefill(gen.model, fresh, torch.cat([res.reference, res.garment], 2), s.text)
    torch.testing.assert_close(s.cache.keys["prefix"][1], fresh.keys["prefix"][1])


@torch.no_grad()
def test_named_variants_do_what_their_names_say(micro_generator, images):
    """By value: `no_refresh` keeps the garment latent (and re-prefills the same prefix), `restart` empties
    sink and history, `withdraw_sink=False` keeps the sink bit for bit, `no_withdraw` keeps all history."""
    person, garment, other, _ = images
    gen = micro_generator
    new_img = torch.from_numpy(gen.garment_image(other).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1

    def switched(policy):
        s = gen.session(person, garment, "wave", seed=1)
        it = iter(s)
        for _ in range(4):
            next(it)
        s._commit_pending()
        before = _state(s.cache)
        last = torch.from_numpy(s.last_frame.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        res = KVRescheduler(gen.model, gen.codec, policy).switch(
            s.cache, reference=s.reference, garment=s.garment, new_garment_image=new_img, last_frame=last,
            recent_latents=s.recent, text=s.text, original_reference=s.original_reference)
        return s, before, res

    s, before, res = switched(variant_policy("no_refresh"))
    assert torch.equal(res.garment, s.garment)
    s, before, res = switched(variant_policy("restart"))
    assert s.cache.frames("sink") == 0 and s.cache.frames("history") == 0 and s.cache.frames("prefix") == 2
    s, before, res = switched(variant_policy("full", StreamConfig(withdraw_sink=False)))
    assert s.cache.frames("sink") == 3
    assert all(torch.equal(a, b) for a, b in zip(before["sink"], _state(s.cache)["sink"]))
    assert not torch.equal(res.garment, s.garment)
    s, before, res = switched(variant_policy("no_withdraw"))
    assert all(torch.equal(a, b) for seg in ("sink", "history") for a, b in zip(before[seg], _state(s.cache)[seg]))


@torch.no_grad()
def test_reference_mix_blends_the_rebuilt_reference_with_the_original(micro_generator, images):
    person, garment, other, _ = images
    gen = micro_generator
    new_img = torch.from_numpy(gen.garment_image(other).copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    s = gen.session(person, garment, "wave", seed=1)
    it = iter(s)
    next(it), next(it)
    last = torch.from_numpy(s.last_frame.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    res = KVRescheduler(gen.model, gen.codec, SwitchPolicy(keep_recent=0, reference_mix=0.25)).switch(
        s.cache, reference=s.reference, garment=s.garment, new_garment_image=new_img, last_frame=last,
        recent_latents=s.recent, text=s.text, original_reference=s.original_reference)
    torch.testing.assert_close(res.reference, 0.25 * gen.codec.encode_image(last) + 0.75 * s.original_reference)
    assert not torch.allclose(res.reference, s.original_reference)


@torch.no_grad()
def test_reanchor_puts_the_original_reference_back_after_the_switch_has_landed(micro_generator, images):
    """`full` rebuilds the reference from the last frame at the switch (as the paper does), then, from the
    ``reanchor_after``-th block on, the prefix is [original reference, new garment] again, history kept."""
    person, garment, other, _ = images
    gen = micro_generator
    for after in (1, 2):
        s = gen.session(person, garment, "wave", seed=2, variant="full", num_frames=12 * 8)
        s.policy = variant_policy("full", StreamConfig(reference_mix=1.0, reanchor_after=after))
        prefixes, history = [], []
        for chunk in s:
            prefixes.append((s.reference.clone(), s.cache.keys["prefix"][0].clone()))
            history.append(s.cache.frames("history") + s.cache.frames("sink"))
            if chunk.index == 1:
                s.post_switch(other)
        switched = 2
        rebuilt = prefixes[switched][0]
        assert not torch.equal(rebuilt, s.original_reference)            # disentangled at the switch
        for k in range(switched, switched + after):
            assert torch.equal(prefixes[k][0], rebuilt)
        back = switched + after
        assert torch.equal(prefixes[back][0], s.original_reference)       # ... and re-anchored
        fresh = causal.new_cache(gen.model, s.reference.shape[-2:], s.cache.policy)
        causal.prefill(gen.model, fresh, torch.cat([s.original_reference, s.garment], 2), s.text)
        torch.testing.assert_close(prefixes[back][1], fresh.keys["prefix"][0])
        assert history[back] >= history[back - 1]                           # the re-anchor withdraws nothing
    # the paper's recipe never re-anchors
    s = gen.session(person, garment, "wave", seed=2, variant="paper", num_frames=12 * 6)
    for chunk in s:
        if chunk.index == 1:
            s.post_switch(other)
    assert not torch.equal(s.reference, s.original_reference)


def test_reference_gate_keeps_the_last_frame_where_it_moved_and_blends_elsewhere():
    torch.manual_seed(0)
    original = torch.randn(1, 4, 1, 10, 12)
    last = original + 0.05 * torch.randn_like(original)           # slow drift everywhere ...
    last[..., 4:6, 5:7] += 3.0                                      # ... and a limb that moved
    mixed = mix_reference(last, original, 0.5, gate=1.5)
    moved = torch.zeros(10, 12, dtype=torch.bool)
    moved[3:7, 4:8] = True                                          # the moved positions, dilated by one
    torch.testing.assert_close(mixed[..., moved], last[..., moved])
    torch.testing.assert_close(mixed[..., ~moved], 0.5 * last[..., ~moved] + 0.5 * original[..., ~moved])
    torch.testing.assert_close(mix_reference(last, original, 0.5), 0.5 * last + 0.5 * original)   # gate off
    assert torch.equal(mix_reference(last, original, 1.0, gate=1.5), last)


@torch.no_grad()
def test_blend_late_continues_from_the_last_frame_then_puts_the_blend_back(micro_generator, images):
    """`blend_late`: at the switch the reference is the last frame alone; one block later the prefix holds
    reanchor_mix (0.5) of that frame's latent plus half the original reference, history kept."""
    person, garment, other, _ = images
    gen = micro_generator
    s = gen.session(person, garment, "wave", seed=3, variant="blend_late", num_frames=12 * 5)
    refs, last_at_switch = [], None
    for chunk in s:
        refs.append(s.reference.clone())
        if chunk.index == 1:
            s.post_switch(other)
            last_at_switch = s.last_frame.copy()
    last = gen.codec.encode_image(torch.from_numpy(last_at_switch).permute(2, 0, 1)[None].float() / 127.5 - 1)
    torch.testing.assert_close(refs[2], last)                                       # the switch block
    torch.testing.assert_close(refs[3], 0.5 * last + 0.5 * s.original_reference)    # one block later
    torch.testing.assert_close(refs[4], refs[3])
    fresh = causal.new_cache(gen.model, s.reference.shape[-2:], s.cache.policy)
    causal.prefill(gen.model, fresh, torch.cat([refs[3], s.garment], 2), s.text)
    torch.testing.assert_close(s.cache.keys["prefix"][0], fresh.keys["prefix"][0])


def test_every_variant_streams_through_ten_switches(micro_generator, images):
    person, garment, b, c = images
    for variant in VARIANTS:
        s = micro_generator.session(person, garment, seed=0, variant=variant, num_frames=12 * 12)
        mem = []
        for chunk in s:
            s.post_switch(b if chunk.index % 2 else c)
            mem.append(s.cache.memory_bytes())
        assert sum(e["status"] == "applied" for e in s.events) >= 10
        assert max(mem) <= max(mem[:3]) * 1.5, variant


def _post_from_child(path):
    code = ("import numpy as np; from fashionchameleon.streaming.events import DirChannel, Event;"
            f"c = DirChannel({str(path)!r}); c.post(Event('switch', np.full((8, 8, 3), 7, np.uint8), 'child'));"
            "c.post(Event('stop'))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_dir_channel_crosses_processes(tmp_path):
    ch = DirChannel(tmp_path / "mailbox")
    _post_from_child(tmp_path / "mailbox")
    events = ch.drain()
    assert [e.kind for e in events] == ["switch", "stop"] and events[0].label == "child"
    assert events[0].payload.shape == (8, 8, 3) and events[0].payload[0, 0, 0] == 7
    assert ch.stop_requested() and ch.drain() == []


def test_session_with_dir_channel(micro_generator, images, tmp_path):
    person, garment, other, _ = images
    ch = DirChannel(tmp_path / "box")
    s = micro_generator.session(person, garment, seed=0, channel=ch, num_frames=40)
    labels = []
    for chunk in s:
        labels.append(chunk.garment)
        if chunk.index == 0:
            DirChannel(tmp_path / "box").post(Event("switch", micro_generator.garment_image(other), "remote"))
    assert labels == ["garment 0", "remote", "remote", "remote"]


def test_prime_continues_from_given_latents(micro_generator, images):
    person, garment, _, _ = images
    torch.manual_seed(0)
    latents = torch.randn(1, 16, 6, 4, 4)
    s = micro_generator.session(person, garment, seed=0, num_frames=40)
    primed = s.prime(latents)
    assert len(primed) == 21 and s.frame == 21 and s.block == 2
    assert s.cache.frames("sink") == 3 and s.cache.frames("history") == 3
    rest = list(s)
    assert rest[0].first_frame == 21 and sum(len(c.frames) for c in rest) == 19


def test_prompt_change_applies_at_the_next_block(micro_generator, images):
    person, garment, _, _ = images
    s = micro_generator.session(person, garment, "walk", seed=0, num_frames=40)
    with pytest.raises(ValueError, match="prompt"):
        s.post_prompt("moonwalk")
    for chunk in s:
        if chunk.index == 0:
            before = s.text.clone()
            s.post_prompt("arms_up")
    (rec,) = s.events
    assert rec["kind"] == "prompt" and rec["status"] == "applied" and rec["block"] == 1
    assert s.prompt == "arms_up" and not torch.equal(before, s.text)


@torch.no_grad()
def test_a_forked_cache_shares_frames_and_changes_apart(micro_generator, images):
    """The negative cache of a guided block is a fork: same frames, its own prefix; neither side sees the
    other's later changes."""
    gen = micro_generator
    person, garment, _, _ = images
    s = gen.session(person, garment, "wave", seed=1, num_frames=40)
    list(s)
    before = {seg: [k.clone() for k in s.cache.keys[seg]] for seg in ("prefix", "sink", "history")}
    fork = s.cache.fork()
    assert fork.visible_frames == s.cache.visible_frames and fork.keys["sink"][0] is s.cache.keys["sink"][0]
    causal.prefill(gen.model, fork, torch.cat([s.reference, torch.zeros_like(s.garment)], 2), s.text)
    causal.commit(gen.model, fork, torch.randn(1, s.reference.shape[1], 3, *s.reference.shape[-2:]), s.text)
    fork.clear("sink")
    for seg, keys in before.items():
        for a, b in zip(keys, s.cache.keys[seg]):
            assert torch.equal(a, b)
    assert not torch.equal(fork.keys["prefix"][0], s.cache.keys["prefix"][0])


@torch.no_grad()
def test_guided_denoising_steers_away_from_the_negative_garment(micro_generator, images):
    """denoise_block with a negative cache (another garment in the prefix): each guided step takes
    v_n + g (v - v_n); guidance 1 (or no negative cache) is the plain block; guided_steps limits guidance to the
    first steps."""
    gen = micro_generator
    person, garment, other, _ = images
    s = gen.session(person, garment, "wave", seed=1)
    it = iter(s)
    next(it), next(it)
    s._commit_pending()
    resched = KVRescheduler(gen.model, gen.codec, SwitchPolicy())
    negative = resched.negative(s.cache, reference=s.reference, old_garment=gen.encode_image(gen.garment_image(other)),
                              text=s.text)
    noise = torch.randn(1, s.reference.shape[1], 3, *s.reference.shape[-2:], generator=torch.Generator().manual_seed(0))
    renoise = [torch.randn_like(noise) for _ in range(len(s.sigmas) - 1)]

    def manual(g, steps):
        x = noise
        for k, sig in enumerate(s.sigmas):
            t = (sig * 1000).expand(1)
            v = causal.denoise(gen.model, s.cache, x, t, s.text)
            if k < steps:
                v_n = causal.denoise(gen.model, negative, x, t, s.text)
                v = v_n + g * (v - v_n)
            x0 = x - sig * v
            if k < len(s.sigmas) - 1:
                x = (1 - s.sigmas[k + 1]) * x0 + s.sigmas[k + 1] * renoise[k]
        return x0

    plain = causal.denoise_block(gen.model, s.cache, noise, s.sigmas, s.text, renoise=renoise)
    torch.testing.assert_close(plain, manual(1.0, 0))
    for g, steps in ((3.0, 0), (3.0, 1)):
        got = causal.denoise_block(gen.model, s.cache, noise, s.sigmas, s.text, renoise=renoise, negative=negative,
                                   guidance=g, guided_steps=steps)
        torch.testing.assert_close(got, manual(g, steps or len(s.sigmas)))
        assert not torch.allclose(got, plain)
    same = causal.denoise_block(gen.model, s.cache, noise, s.sigmas, s.text, renoise=renoise, negative=negative, guidance=1.0)
    assert torch.equal(same, plain)


@torch.no_grad()
def test_switch_guidance_changes_only_the_guided_blocks_after_a_switch(micro_generator, images):
    """`full` with switch guidance: the same stream as without up to the switch; the switch's block differs;
    guidance 1 is exactly the unguided stream. `paper` never guides."""
    person, garment, other, _ = images
    gen = micro_generator

    def run(variant, **stream):
        s = gen.session(person, garment, "wave", seed=2, variant=variant, num_frames=12 * 5, keep_latents=True)
        s.policy = variant_policy(variant, StreamConfig(**stream))
        blocks = []
        for chunk in s:
            blocks.append(chunk.latents)
            if chunk.index == 1:
                s.post_switch(other)
        return blocks

    plain = run("full")
    assert all(torch.equal(a, b) for a, b in zip(plain, run("full", switch_guidance=1.0, switch_guidance_blocks=3)))
    guided = run("full", switch_guidance=4.0, switch_guidance_blocks=1)
    assert all(torch.equal(a, b) for a, b in zip(plain[:2], guided[:2]))
    assert not torch.allclose(plain[2], guided[2])
    assert all(torch.equal(a, b) for a, b in zip(run("paper"), run("paper", switch_guidance=4.0)))
    assert variant_policy("full", StreamConfig(switch_guidance=2.0)).guidance == 2.0
    assert variant_policy("naive", StreamConfig(switch_guidance=2.0)).guidance == 1.0


def test_snap_to_reference_copies_only_what_is_near_it():
    """Within the threshold a latent position becomes the reference's; at twice it and beyond (and next to
    such a position) the model's estimate stays; 0 is off."""
    from fashionchameleon.streaming.generator import snap_to_reference

    ref = torch.randn(1, 4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    step = torch.zeros(1, 4, 2, 6, 6)
    step[:, 0, :, :, :] = 0.5                       # a small difference everywhere...
    step[:, 0, 1, 0, 0] = 3.0                       # ...and a large one in a corner of frame 1
    x0 = ref + step
    got = snap_to_reference(x0, ref, threshold=1.0)
    torch.testing.assert_close(got[:, :, 0], ref[:, :, 0], atol=0, rtol=0)      # all near: copied
    torch.testing.assert_close(got[:, :, 1, :2, :2], x0[:, :, 1, :2, :2], atol=0, rtol=0)   # the change + its ring
    torch.testing.assert_close(got[:, :, 1, 3:, 3:], ref[:, :, 0, 3:, 3:], atol=0, rtol=0)
    between = ref + 0.75                            # |residual| = 0.75 x 2 = 1.5: halfway up the smoothstep
    torch.testing.assert_close(snap_to_reference(between, ref, threshold=1.0), ref + 0.375)
    assert snap_to_reference(x0, ref, threshold=0.0) is x0


@torch.no_grad()
def test_a_session_with_a_huge_snap_streams_the_reference(micro_generator, images):
    """reference_snap in the streaming config reaches every denoising step: with a threshold no estimate
    exceeds, every block is the reference latent itself; without it the stream is the model's."""
    from dataclasses import replace

    person, garment, _, _ = images
    gen = micro_generator.with_config(stream=replace(micro_generator.preset.stream, reference_snap=1e6))
    s = gen.session(person, garment, "wave", seed=1, num_frames=21, keep_latents=True)
    for chunk in s:
        torch.testing.assert_close(chunk.latents, s.reference.expand_as(chunk.latents).cpu(), atol=0, rtol=0)
    plain = micro_generator.session(person, garment, "wave", seed=1, num_frames=21, keep_latents=True)
    assert not torch.equal(next(iter(plain)).latents, s.reference.expand(-1, -1, 3, -1, -1).cpu())
