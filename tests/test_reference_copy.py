"""The learned copy gate (ModelConfig.reference_copy): closed, the network it was warm-started from; open,
a clean estimate that is exactly the reference; trainable from closed; configs and export. (Cached against
masked passes: tests/test_cache.py.)"""

from dataclasses import replace

import pytest
import torch

from fashionchameleon.config import ModelConfig, get_preset
from fashionchameleon.model.dit import WanDiT, copy_velocity, region_shut
from fashionchameleon.training.trainer import warm_start

WITH_REF = ModelConfig(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4, text_dim=8,
                       freq_dim=16, ffn_dim=32, num_layers=2, reference_channels=4)
WITH_COPY = replace(WITH_REF, reference_copy=True)
HW = (4, 6)


def lat(frames, seed):
    return torch.randn(1, 4, frames, *HW, generator=torch.Generator().manual_seed(seed))


def text_of(model):
    return model.embed_text(torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(9)))


def copy_model(randomize) -> tuple[WanDiT, WanDiT]:
    """A random reference-channel network and the copy-gate network warm-started from it."""
    base = randomize(WanDiT(WITH_REF), scale=0.3, seed=4).eval()
    gated = WanDiT(WITH_COPY).eval()
    gated.load_state_dict(warm_start(base.state_dict(), WITH_COPY))
    return base, gated


@torch.no_grad()
def test_closed_gate_is_the_network_it_came_from(randomize):
    base, gated = copy_model(randomize)
    assert gated.copy_proj.weight.shape == (4, 24)      # one gate per latent position of a 1x2x2 patch
    text, x, t, ref = text_of(base), lat(3, 1), torch.tensor([700.0]), lat(1, 2)
    same = base(x, t, text, text_is_embedded=True, reference=ref)
    torch.testing.assert_close(gated(x, t, text, text_is_embedded=True, reference=ref), same, atol=0, rtol=0)
    state = gated.state_dict()
    assert warm_start(state, WITH_COPY) is state        # already of the right shape: left alone


@torch.no_grad()
def test_open_gate_lands_on_the_reference(randomize):
    _, gated = copy_model(randomize)
    gated.copy_proj.bias.fill_(1.0)                     # gain x 1 > 1: clamped fully open everywhere
    x, ref = lat(3, 1), lat(1, 2)
    t = torch.tensor([[900.0, 400.0, 150.0]])           # one timestep per frame
    v = gated(x, t, text_of(gated), text_is_embedded=True, reference=ref)
    sigma = (t / 1000).view(1, 1, 3, 1, 1)
    torch.testing.assert_close(x - sigma * v, ref.expand_as(x), atol=1e-5, rtol=1e-5)
    # half open: halfway between the network's clean estimate and the reference
    gated.copy_proj.bias.fill_(0.05)
    half = gated(x, t, text_of(gated), text_is_embedded=True, reference=ref)
    gated.copy_proj.bias.fill_(0.0)
    closed = gated(x, t, text_of(gated), text_is_embedded=True, reference=ref)
    torch.testing.assert_close(x - sigma * half, 0.5 * (x - sigma * closed) + 0.5 * ref, atol=1e-5, rtol=1e-5)
    # the distance term: open by its bias, shut again wherever the network's own estimate is far from the
    # reference (here: everywhere, these are random latents)
    gated.copy_proj.bias.fill_(1.0)
    gated.copy_distance.fill_(-100.0)
    far = gated(x, t, text_of(gated), text_is_embedded=True, reference=ref)
    torch.testing.assert_close(far, closed, atol=0, rtol=0)


def test_copy_velocity_at_clean_frames_is_zero():
    x, ref = lat(2, 1), lat(1, 2)
    v = copy_velocity(x, ref, torch.tensor([0.0, 0.5]).view(1, 1, 2, 1, 1))
    assert torch.equal(v[:, :, 0], torch.zeros_like(v[:, :, 0]))
    torch.testing.assert_close(v[:, :, 1], (x[:, :, 1] - ref[:, :, 0]) / 0.5)


def test_closed_gate_learns_to_open_where_copying_helps(randomize):
    """From exactly closed, one step of gradient descent on a target that is the reference opens the gate."""
    _, gated = copy_model(randomize)
    gated.train()
    x, ref, t = lat(3, 1), lat(1, 2), torch.tensor([600.0])
    target = (x - ref) / 0.6                            # the velocity onto the reference
    opt = torch.optim.SGD(gated.copy_proj.parameters(), lr=1e-2)
    loss = (gated(x, t, text_of(gated), text_is_embedded=True, reference=ref) - target).square().mean()
    loss.backward()
    assert gated.copy_proj.weight.grad.abs().sum() > 0
    opt.step()
    with torch.no_grad():
        after = (gated(x, t, text_of(gated), text_is_embedded=True, reference=ref) - target).square().mean()
    assert after < loss.detach()


def test_a_gate_pushed_shut_still_learns_to_open(randomize):
    """Forward the gate is clamped to [0, 1]; backward its gradient passes straight through, so a gate below 0
    everywhere (shut where copying hurt) still opens where the target is the reference."""
    _, gated = copy_model(randomize)
    with torch.no_grad():
        gated.copy_proj.bias.fill_(-0.05)               # pre-activation -0.5: shut
    x, ref, t = lat(3, 1), lat(1, 2), torch.tensor([600.0])
    v = gated(x, t, text_of(gated), text_is_embedded=True, reference=ref)
    ((v - (x - ref) / 0.6).square().mean()).backward()
    assert gated.copy_proj.bias.grad.sum() < 0            # descent raises the gate


def test_a_shut_gate_does_not_hear_shut_further():
    """Beyond a bound only the gradient that moves a gate back inside passes."""
    from fashionchameleon.model.dit import GateClamp

    z = torch.tensor([-1.0, -1.0, 0.5, 0.5, 2.0, 2.0], requires_grad=True)
    out = GateClamp.apply(z)
    assert out.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    out.backward(torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]))
    assert z.grad.tolist() == [0.0, -1.0, 1.0, -1.0, 1.0, 0.0]


def test_config_rules():
    with pytest.raises(ValueError, match="reference_copy needs reference_channels == out_channels"):
        replace(WITH_REF, reference_channels=0, reference_copy=True)
    assert "reference_copy" not in WITH_REF.to_dict()   # configs without it keep their config.json as it was
    assert ModelConfig.from_dict(WITH_COPY.to_dict()) == WITH_COPY
    with pytest.raises(ValueError, match="no diffusers counterpart"):
        WITH_COPY.to_diffusers()
    preset = get_preset("tiny-v2-copy")
    assert preset.model == replace(get_preset("tiny-v2-ref").model, reference_copy=True)
    assert preset.stream == get_preset("tiny-v2-ref").stream


@torch.no_grad()
def test_return_gate_hands_over_the_gate_of_the_same_pass(randomize):
    base, gated = copy_model(randomize)
    gated.copy_proj.bias.fill_(0.05)
    x, ref, t = lat(3, 1), lat(1, 2), torch.tensor([600.0])
    v, gate, own = gated(x, t, text_of(gated), text_is_embedded=True, reference=ref, return_gate=True)
    assert gate.shape == (1, 1, 3, *HW) and torch.allclose(gate, torch.full_like(gate, 0.5))
    torch.testing.assert_close(v, gated(x, t, text_of(gated), text_is_embedded=True, reference=ref), atol=0, rtol=0)
    # the velocity before the gate is the network it was warm-started from; the gate mixes the copy into it
    torch.testing.assert_close(own, base(x, t, text_of(base), text_is_embedded=True, reference=ref))
    sigma = torch.full((1, 1, 3, 1, 1), 0.6)
    torch.testing.assert_close(v, own + 0.5 * (copy_velocity(x, ref, sigma) - own))
    with pytest.raises(ValueError, match="return_gate needs a model with reference_copy"):
        base(x, t, text_of(base), text_is_embedded=True, reference=ref, return_gate=True)


def test_forcing_supervises_the_gate_with_where_the_truth_is_the_reference(randomize):
    """The gate loss's target is 1 where the clip equals the reference and 0 where it is far: at a shut gate
    (0 everywhere) the loss is 1 and 0 respectively, added to the velocity loss with its weight."""
    from fashionchameleon.config import Preset
    from fashionchameleon.training.objectives import TeacherForcing

    _, gated = copy_model(randomize)
    preset = Preset(name="copy-test", model=WITH_COPY, resolution=(48, 32), train_latent_frames=6)
    ref = lat(1, 2)
    for video, expected in ((ref.expand(1, 4, 6, *HW).clone(), 1.0), (ref.expand(1, 4, 6, *HW) + 5.0, 0.0)):
        batch = {"video": video, "reference": ref, "garment": lat(1, 3), "prompts": ["x"],
                 "text": torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(9))}
        objective = TeacherForcing(gated, preset, garment_dropout=0.0, gate_weight=0.5)
        loss, metrics = objective(batch, torch.Generator().manual_seed(0))
        assert metrics["gate_loss"] == pytest.approx(expected)
        assert loss.item() == pytest.approx(metrics["velocity_loss"] + 0.5 * expected, rel=1e-6)
        plain_loss, plain = TeacherForcing(gated, preset, garment_dropout=0.0)(batch, torch.Generator().manual_seed(0))
        assert plain["loss"] == pytest.approx(metrics["velocity_loss"], rel=1e-6) and "gate_loss" not in plain
    with pytest.raises(ValueError, match="needs a model with reference_copy"):
        TeacherForcing(WanDiT(WITH_REF), preset, gate_weight=0.5)


def test_moved_weight_weighs_the_positions_where_the_truth_left_the_reference(randomize):
    """``moved_weight`` W: the velocity loss is (S_still + (1 + W) S_moved) / (N_still + (1 + W) N_moved) over
    the squared errors S and the position counts N of the two kinds, so L_W x the denominator is affine in W; a
    clip all still (or all moved) gives the plain loss."""
    from fashionchameleon.config import Preset
    from fashionchameleon.training.objectives import TeacherForcing

    _, gated = copy_model(randomize)
    preset = Preset(name="copy-test", model=WITH_COPY, resolution=(48, 32), train_latent_frames=6)
    ref = lat(1, 2)
    text = torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(9))

    def loss_of(video, weight):
        batch = {"video": video, "reference": ref, "garment": lat(1, 3), "prompts": ["x"], "text": text}
        objective = TeacherForcing(gated, preset, garment_dropout=0.0, moved_weight=weight)
        with torch.no_grad():
            return objective(batch, torch.Generator().manual_seed(0))[0].item()

    for video in (ref.expand(1, 4, 6, *HW).clone(), ref.expand(1, 4, 6, *HW) + 5.0):
        assert loss_of(video, 3.0) == pytest.approx(loss_of(video, 0.0), rel=1e-6)
    video = ref.expand(1, 4, 6, *HW).clone()
    video[..., 4:] += 5.0                                   # the right third of every frame moved
    n_moved = 6 * HW[0] * 2
    n_still = 6 * HW[0] * HW[1] - n_moved
    scaled = {w: loss_of(video, w) * (n_still + (1 + w) * n_moved) for w in (0.0, 1.0, 3.0)}
    assert scaled[3.0] - scaled[0.0] == pytest.approx(3 * (scaled[1.0] - scaled[0.0]), rel=1e-5)
    assert loss_of(video, 3.0) != pytest.approx(loss_of(video, 0.0), rel=1e-3)     # the weighting did act
    with pytest.raises(ValueError, match="moved_weight"):
        TeacherForcing(gated, preset, moved_weight=-1.0)


def test_oracle_gate_target_is_the_copy_that_lands_closest_to_the_truth():
    """The oracle target moves the network's clean estimate toward the reference as far as brings it closest to
    the truth: 1 where the truth is the reference, the fraction of the way for a truth part of the way, 0 where
    the reference lies away from the truth (the estimate is already nearer)."""
    from fashionchameleon.config import Preset
    from fashionchameleon.training.objectives import TeacherForcing

    preset = Preset(name="copy-test", model=WITH_COPY, resolution=(48, 32), train_latent_frames=6)
    objective = TeacherForcing(WanDiT(WITH_COPY), preset, gate_weight=1.0, gate_target="oracle")
    estimate, reference = lat(3, 1), lat(1, 2)
    sigma = torch.full((1, 3), 0.5)
    noisy = lat(3, 3)
    own = (noisy - estimate) / 0.5           # the velocity whose clean estimate is ``estimate``
    for x0, expected in ((reference.expand_as(estimate), 1.0), (estimate + 0.3 * (reference - estimate), 0.3),
                         (estimate - (reference - estimate), 0.0), (estimate, 0.0)):
        target = objective._gate_target(x0, reference, noisy, sigma, own)
        assert target.shape == (1, 1, 3, *HW)
        torch.testing.assert_close(target, torch.full_like(target, expected), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="gate_target"):
        TeacherForcing(WanDiT(WITH_COPY), preset, gate_weight=1.0, gate_target="nearest")


def test_the_weight_hash_covers_the_gates_scalar_weight():
    """eval and the streaming generator record a checkpoint's weight hash: the gate's 0-dim distance weight is
    part of it (a 0-dim tensor once broke the hash)."""
    from fashionchameleon.model.codec import state_sha256

    model = WanDiT(WITH_COPY)
    before = state_sha256(model.state_dict())
    with torch.no_grad():
        model.copy_distance.fill_(-0.5)
    assert state_sha256(model.state_dict()) != before


def test_config_rules_of_the_copy_cut():
    with pytest.raises(ValueError, match="copy_cut"):
        replace(WITH_REF, copy_cut=0.5)                     # no gate to cut
    with pytest.raises(ValueError, match="copy_cut"):
        replace(WITH_COPY, copy_cut=-1.0)
    assert "copy_cut" not in WITH_COPY.to_dict()
    cut = replace(WITH_COPY, copy_cut=0.5)
    assert ModelConfig.from_dict(cut.to_dict()) == cut


@torch.no_grad()
def test_the_copy_cut_shuts_the_gate_where_the_own_estimate_is_far_from_the_reference(randomize):
    """The cut multiplies the gate by 1 where the network's own clean estimate is within it of the reference, 0
    beyond twice it (smoothstep between); the gate's features are unchanged."""
    _, gated = copy_model(randomize)
    gated.copy_proj.bias.fill_(0.05)                         # gate 0.5 everywhere without the cut
    cut = WanDiT(replace(WITH_COPY, copy_cut=1.0)).eval()
    cut.load_state_dict(gated.state_dict())
    x, ref, t = lat(3, 1), lat(1, 2), torch.tensor([600.0])
    _, gate, own = gated(x, t, text_of(gated), text_is_embedded=True, reference=ref, return_gate=True)
    _, cut_gate, cut_own = cut(x, t, text_of(cut), text_is_embedded=True, reference=ref, return_gate=True)
    torch.testing.assert_close(own, cut_own)
    distance = (x - 0.6 * own - ref).norm(dim=1, keepdim=True)
    near, far = distance < 1.0, distance > 2.0
    assert near.any() and far.any()
    torch.testing.assert_close(cut_gate[near], gate[near])
    assert (cut_gate[far] == 0).all()
    between = ~near & ~far
    assert ((cut_gate[between] > 0) & (cut_gate[between] < gate[between])).all()


def test_config_rules_of_the_region_head():
    with pytest.raises(ValueError, match="region_head"):
        replace(WITH_REF, region_head=True)              # no gate to shut
    with pytest.raises(ValueError, match="region_dilation"):
        replace(WITH_COPY, region_head=True, region_dilation=-1)
    assert "region_head" not in WITH_COPY.to_dict() and "region_dilation" not in WITH_COPY.to_dict()
    region = replace(WITH_COPY, region_head=True, region_dilation=2)
    assert ModelConfig.from_dict(region.to_dict()) == region


def test_region_shut_spreads_a_marked_position_by_the_dilation():
    logits = torch.full((1, 1, 1, 5, 7), -30.0)
    logits[0, 0, 0, 2, 3] = 30.0
    for dilation, box in ((0, 1), (1, 3), (2, 5)):
        shut = region_shut(logits, dilation)
        assert shut.shape == logits.shape
        marked = shut[0, 0, 0] > 0.5
        assert marked.sum() == box * box
        r = dilation
        assert marked[2 - r:3 + r, 3 - r:4 + r].all()


@torch.no_grad()
def test_the_region_head_shuts_the_gate_where_it_marks(randomize):
    """Unfitted, the head marks almost nothing (the copy model, up to its low bias); where it marks, the gate is
    shut and the network's own velocity comes out; elsewhere the gate is as before."""
    _, gated = copy_model(randomize)
    gated.copy_proj.bias.fill_(1.0)                           # fully open everywhere without the region
    cfg = replace(WITH_COPY, region_head=True, region_dilation=0)
    region = WanDiT(cfg).eval()
    region.load_state_dict({**region.state_dict(), **gated.state_dict()})
    x, ref, t = lat(3, 1), lat(1, 2), torch.tensor([600.0])
    text = text_of(gated)
    v, gate, own = gated(x, t, text, text_is_embedded=True, reference=ref, return_gate=True)
    rv, region_gate, region_own = region(x, t, text, text_is_embedded=True, reference=ref, return_gate=True)
    torch.testing.assert_close(region_own, own)
    torch.testing.assert_close(region_gate, gate * (1 - torch.sigmoid(torch.tensor(-6.0))))
    # mark the left half of the reference: shut there, open as before on the right
    left = torch.zeros(HW)
    left[:, : HW[1] // 2] = 1
    region.region_head.forward = lambda r: (60 * left - 30).expand(r.shape[0], 1, 1, *HW)
    rv, region_gate, region_own = region(x, t, text, text_is_embedded=True, reference=ref, return_gate=True)
    torch.testing.assert_close(rv[..., : HW[1] // 2], own[..., : HW[1] // 2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rv[..., HW[1] // 2:], v[..., HW[1] // 2:], atol=1e-5, rtol=1e-5)
