"""The synthetic world: determinism, exact masks, switch ground truth, seed split, real-data folder loader."""

import warnings

import numpy as np
import pytest

from fashionchameleon.data.datasets import FolderTriplets, HeldOutSeedError, WorldDataset, check_training_seeds
from fashionchameleon.data.world import (GARMENT_TYPES, MOTIONS, PATTERNS, make_sample, make_switch_sample,
                                         render_clip, spec_for_seed)


def test_deterministic_per_seed():
    a, b = make_sample(1234, num_frames=9), make_sample(1234, num_frames=9)
    assert np.array_equal(a.clip.frames, b.clip.frames)
    assert np.array_equal(a.reference, b.reference) and np.array_equal(a.garment_image, b.garment_image)
    c = make_sample(1235, num_frames=9)
    assert not np.array_equal(a.clip.frames, c.clip.frames)


def test_reference_wears_another_garment():
    s = make_sample(77, num_frames=5)
    assert s.reference_garment != s.garment
    assert not np.array_equal(s.reference, s.clip.frames[0])


@pytest.mark.parametrize("seed", [3, 40, 500_001])
def test_renders_differing_only_in_garment_differ_only_inside_garment_masks(seed):
    spec = spec_for_seed(seed)
    a = render_clip(spec, [(0, spec.garments[0])], 8)
    b = render_clip(spec, [(0, spec.garments[1])], 8)
    differ = (a.frames != b.frames).any(-1)
    union = a.garment_masks | b.garment_masks
    assert differ.any()
    assert not (differ & ~union).any(), "pixels changed outside both garment masks"
    assert (a.garment_masks <= a.person_masks).all()


def test_switch_sample_equals_single_garment_clips():
    sw = make_switch_sample(99, switches=2, num_frames=48, switch_frames=[16, 30])
    assert sw.switch_frames == [16, 30] and len(sw.garments) == 3
    bounds = [0, 16, 30, 48]
    for k in range(3):
        seg = slice(bounds[k], bounds[k + 1])
        assert np.array_equal(sw.clip.frames[seg], sw.single_clips[k].frames[seg])
        assert np.array_equal(sw.clip.garment_masks[seg], sw.single_clips[k].garment_masks[seg])
    assert not np.array_equal(sw.single_clips[0].frames[20], sw.single_clips[1].frames[20])


def test_switch_frames_must_lie_inside():
    with pytest.raises(ValueError, match="inside"):
        make_switch_sample(1, num_frames=32, switch_frames=[40])


def test_world_is_varied():
    specs = [spec_for_seed(s) for s in range(300)]
    assert {s.motion.name for s in specs} == set(MOTIONS)
    assert {g.type for s in specs for g in s.garments} == set(GARMENT_TYPES)
    assert {g.pattern for s in specs for g in s.garments} == set(PATTERNS)
    assert len({s.scene.background for s in specs}) == 3


def test_any_even_resolution():
    s = make_sample(5, num_frames=2, size=96)
    assert s.clip.frames.shape == (2, 96, 96, 3) and s.garment_image.shape == (96, 96, 3)
    with pytest.raises(ValueError):
        render_clip(spec_for_seed(5), [(0, spec_for_seed(5).garments[0])], 2, size=97)


def test_training_loader_refuses_heldout_seeds():
    with pytest.raises(HeldOutSeedError):
        check_training_seeds([10, 500_000])
    with pytest.raises(HeldOutSeedError):
        WorldDataset([499_999, 750_000])
    assert len(WorldDataset([0, 499_999])) == 2
    assert len(WorldDataset([600_000], training=False)) == 1  # evaluation may read them


def test_folder_triplets_skip_bad_items(tmp_path):
    from PIL import Image

    from fashionchameleon.media import write_mp4

    s = make_sample(8, num_frames=9, size=64)
    for i in ("a", "b", "c"):
        write_mp4(s.clip.frames, tmp_path / f"{i}.mp4", fps=16)
        Image.fromarray(s.reference).save(tmp_path / f"{i}_src.png")
        Image.fromarray(s.garment_image).save(tmp_path / f"{i}_cloth.png")
    (tmp_path / "a.txt").write_text("a person waving\n")
    (tmp_path / "b.mp4").write_bytes(b"not a video at all")          # corrupt video
    (tmp_path / "c_cloth.png").unlink()                               # missing image
    (tmp_path / "d.mp4").write_bytes((tmp_path / "a.mp4").read_bytes())
    (tmp_path / "d_src.png").write_bytes(b"\x89PNG truncated")        # unreadable image
    Image.fromarray(s.garment_image).save(tmp_path / "d_cloth.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = FolderTriplets(tmp_path, size=32, num_frames=9)
        items = list(ds)
    assert [it["id"] for it in items] == ["a"]
    assert items[0]["video"].shape == (3, 9, 32, 32) and items[0]["caption"] == "a person waving"
    messages = " ".join(str(w.message) for w in caught)
    assert "b.mp4" in messages and "c_cloth.png" in messages and "d.mp4" in messages
