"""World v2: determinism, exact masks, static scene, mismatch, portrait framing, person-photo exclusion."""

import numpy as np
import pytest

from fashionchameleon.data import world_v2 as W2
from fashionchameleon.data.world import make_sample, make_switch_sample, render_background, render_clip, spec_for_seed

SIZE = (56, 96)     # small portrait frames keep the tests fast; geometry is resolution-independent


def _seed_with(pred, start=0):
    return next(s for s in range(start, start + 2000) if pred(W2.spec_for_seed(s)))


def test_deterministic_per_seed():
    a, b = make_sample(321, num_frames=5, size=SIZE, version=2), make_sample(321, num_frames=5, size=SIZE, version=2)
    assert np.array_equal(a.clip.frames, b.clip.frames) and np.array_equal(a.clip.garment_masks, b.clip.garment_masks)
    assert np.array_equal(a.reference, b.reference) and np.array_equal(a.garment_image, b.garment_image)
    c = make_sample(322, num_frames=5, size=SIZE, version=2)
    assert not np.array_equal(a.clip.frames, c.clip.frames)
    # v2 has its own seed stream: seed 321 of v1 is another world
    assert make_sample(321, num_frames=1, size=64).clip.frames.shape == (1, 64, 64, 3)


def test_portrait_shape_and_size_contract():
    s = make_sample(5, num_frames=3, version=2)
    assert s.clip.frames.shape == (3, 192, 112, 3) and s.garment_image.shape == (192, 112, 3)
    assert s.reference.shape == (192, 112, 3) and s.clip.person_masks.shape == (3, 192, 112)
    s = make_sample(5, num_frames=1, size=(128, 224), version=2)
    assert s.clip.frames.shape == (1, 224, 128, 3)
    with pytest.raises(ValueError, match="width, height"):
        make_sample(5, num_frames=1, size=128, version=2)
    with pytest.raises(ValueError, match="even"):
        make_sample(5, num_frames=1, size=(57, 96), version=2)
    with pytest.raises(ValueError, match="version"):
        spec_for_seed(5, version=3)


@pytest.mark.parametrize("slot", ["upper", "lower", "dress"])
def test_garment_change_touches_only_garment_masks(slot):
    seed = _seed_with(lambda sp: sp.slot == slot, start=500_000 if slot == "dress" else 0)
    spec = spec_for_seed(seed, version=2)
    a = render_clip(spec, [(0, spec.garments[0])], 6, SIZE, fps=8)
    b = render_clip(spec, [(0, spec.garments[1])], 6, SIZE, fps=8)
    differ = (a.frames != b.frames).any(-1)
    union = a.garment_masks | b.garment_masks
    assert differ.sum() > 50, "a switch must be visible"
    assert not (differ & ~union).any(), "pixels changed outside both garment masks"
    assert (a.garment_masks <= a.person_masks).all() and (b.garment_masks <= b.person_masks).all()
    # and the garment mask is where the garment shows: most of it changes when only the garment changes
    assert (differ & a.garment_masks).sum() > 0.5 * a.garment_masks.sum()


def test_scene_is_static_outside_the_person():
    for seed in (11, 4242, 600_123):
        spec = spec_for_seed(seed, version=2)
        clip = render_clip(spec, [(0, spec.garments[0])], 6, SIZE, fps=4)
        bg = render_background(spec, SIZE)
        for i, frame in enumerate(clip.frames):
            shadow = W2.contact_shadow(spec, i / 4, SIZE) > 0
            outside = ~clip.person_masks[i] & ~shadow
            assert np.array_equal(frame[outside], bg[outside]), f"seed {seed} frame {i}: the scene moved"
            # the person mask is not empty and not the whole frame
            assert 0.05 < clip.person_masks[i].mean() < 0.8


def test_reference_is_same_person_and_scene_in_another_garment():
    for seed in (3, 77, 500_500):
        s = make_sample(seed, num_frames=1, size=SIZE, version=2)
        assert s.reference_garment != s.garment and s.reference_garment.slot == s.garment.slot
        assert s.reference_garment.primary != s.garment.primary
        ref, _, ref_mask = W2.render_frame(s.spec, s.reference_garment, 0.0, SIZE)
        assert np.array_equal(ref, s.reference)
        differ = (s.reference != s.clip.frames[0]).any(-1)
        assert differ.any()
        assert not (differ & ~(ref_mask | s.clip.garment_masks[0])).any()


def test_switch_sample_equals_single_garment_clips():
    sw = make_switch_sample(99, switches=2, num_frames=24, size=SIZE, switch_frames=[8, 16], version=2)
    assert sw.switch_frames == [8, 16] and len(sw.garments) == 3
    bounds = [0, 8, 16, 24]
    for k in range(3):
        seg = slice(bounds[k], bounds[k + 1])
        assert np.array_equal(sw.clip.frames[seg], sw.single_clips[k].frames[seg])
        assert np.array_equal(sw.clip.garment_masks[seg], sw.single_clips[k].garment_masks[seg])
    assert sw.reference.shape == (96, 56, 3) and sw.garment_images[0].shape == (96, 56, 3)
    assert spec_for_seed(99, version=2).garments[-1] not in sw.garments   # the reference's garment is not worn


def test_person_photos_are_never_backgrounds():
    assert {"astronaut", "camera"} <= W2.PERSON_PHOTOS
    assert not set(W2.PHOTO_SOURCES) & W2.PERSON_PHOTOS
    for name in ("astronaut", "camera", "lfw_subset"):
        with pytest.raises(W2.PersonPhotoError):
            W2.load_photo(name)
    photos = {spec_for_seed(s, version=2).scene.photo for s in range(400)} - {""}
    assert len(photos) >= 8 and not photos & W2.PERSON_PHOTOS


def test_person_photo_refused_even_if_listed(monkeypatch):
    # the exclusion is enforced where photos load, not only by the list of sources
    monkeypatch.setattr(W2, "PHOTO_SOURCES", W2.PHOTO_SOURCES + ("astronaut",))
    with pytest.raises(W2.PersonPhotoError):
        W2.load_photo.__wrapped__("astronaut")


def test_photo_backgrounds_are_cropped_and_recoloured():
    pytest.importorskip("skimage")
    seeds = [s for s in range(300) if W2.spec_for_seed(s).scene.background == "photo"][:6]
    bgs = [render_background(spec_for_seed(s, version=2), SIZE).astype(float) for s in seeds]
    assert all(b.std() > 3 for b in bgs), "a photo background is flat"
    assert all(not np.array_equal(a, b) for i, a in enumerate(bgs) for b in bgs[i + 1:])


def test_world_is_varied():
    specs = [W2.spec_for_seed(s) for s in range(400)]
    assert {s.motion.name for s in specs} == set(W2.MOTIONS)
    assert {s.scene.background for s in specs} == set(W2.BACKGROUNDS)
    assert {s.framing for s in specs} == set(W2.FRAMINGS)
    assert {g.type for s in specs for g in s.garments} == set(W2.GARMENT_TYPES)
    assert {g.pattern for s in specs for g in s.garments} == set(W2.PATTERNS)
    assert {g.sleeves for s in specs for g in s.garments if g.slot == "upper"} == {"none", "short", "long"}
    assert len({s.person.skin for s in specs}) > 300 and len({s.person.hair_style for s in specs}) == len(W2.HAIR_STYLES)
    for s in specs:   # the garments of one sample share a slot, so a switch changes only garment pixels
        assert len({g.slot for g in s.garments}) == 1


@pytest.mark.parametrize("motion", W2.MOTIONS)
def test_every_motion_moves_the_person(motion):
    seed = _seed_with(lambda sp: sp.motion.name == motion)
    spec = spec_for_seed(seed, version=2)
    clip = render_clip(spec, [(0, spec.garments[0])], 2, SIZE, fps=4)   # a quarter of a second apart
    moved = (clip.person_masks[0] ^ clip.person_masks[1]).sum()
    assert moved > 0.04 * clip.person_masks[0].sum(), f"{motion} barely moves"


def test_framing_fills_the_portrait_frame():
    for framing in W2.FRAMINGS:
        seed = _seed_with(lambda sp: sp.framing == framing)
        clip = make_sample(seed, num_frames=1, size=SIZE, version=2).clip
        rows = np.flatnonzero(clip.person_masks[0].any(1))
        height = (rows[-1] - rows[0] + 1) / SIZE[1]
        assert height > 0.85, f"{framing}: the person spans {height:.2f} of the frame height"
        if framing == "three_quarter":
            assert rows[-1] == SIZE[1] - 1, "three-quarter framing cuts the legs at the frame's bottom"


def test_world_cli_renders_the_default_models_world_and_checks_its_size(tmp_path):
    """`world` draws world 2 at the default model's 112x192 unless told otherwise; world 1 takes a square size;
    a size that is odd, tiny or not WxH is refused with exit code 2 and nothing written."""
    import json
    import subprocess
    import sys

    from PIL import Image

    def world(out, *args):
        return subprocess.run([sys.executable, "-m", "fashionchameleon", "world", "--seed", "500123", "--out",
                               str(tmp_path / out), "--frames", "32", *args], capture_output=True, text=True, timeout=300)

    assert world("v2").returncode == 0
    assert Image.open(tmp_path / "v2" / "person.png").size == (112, 192)
    assert json.loads((tmp_path / "v2" / "world_500123.json").read_text())["world"] == 2
    assert np.array_equal(np.asarray(Image.open(tmp_path / "v2" / "person.png")),
                          make_sample(500123, num_frames=32, size=(112, 192), version=2).reference)
    assert world("v1", "--version", "1", "--size", "96x96").returncode == 0
    assert Image.open(tmp_path / "v1" / "person.png").size == (96, 96)
    for bad in ("11x3", "wide", "112x2000"):
        r = world("bad", "--size", bad)
        assert r.returncode == 2 and "--size" in r.stderr and not (tmp_path / "bad").exists()
