"""Training on world v2: presets pick the world and the portrait size; v1 `tiny` data stays exactly as it was."""

import argparse
import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from fashionchameleon.config import PRESETS, TINY_V2_PROMPTS, Preset, get_preset
from fashionchameleon.data import world_v2
from fashionchameleon.data.datasets import HeldOutSeedError, WorldDataset, render_bank
from fashionchameleon.training import codec_train, latents
from fashionchameleon.training import trainer as trainer_mod

V2 = [name for name, p in PRESETS.items() if p.world_version == 2]


def test_v2_presets_are_portrait_with_the_v2_world_vocabulary():
    assert {"tiny-v2-a", "tiny-v2-b", "tiny-v2-c", "micro-v2"} <= set(V2)
    for name in V2:
        p = get_preset(name)
        w, h = p.resolution
        assert h > w and p.world_size == (w, h)
        assert p.model.prompt_vocab == TINY_V2_PROMPTS == world_v2.MOTIONS
        # every latent frame splits into whole patches
        _, ph, pw = p.model.patch_size
        lh, lw = p.latent_size
        assert lh % ph == 0 and lw % pw == 0


def test_v1_presets_round_trip_unchanged_and_v2_keeps_its_world():
    tiny = get_preset("tiny")
    assert tiny.world_version == 1 and tiny.world_size == 128
    assert "world_version" not in tiny.to_dict()          # the shipped config.json format is unchanged
    assert Preset.from_dict(json.loads(json.dumps(tiny.to_dict()))) == tiny
    v2 = get_preset("tiny-v2-a")
    assert Preset.from_dict(json.loads(json.dumps(v2.to_dict()))) == v2


def test_a_portrait_preset_on_world_1_is_refused_for_training_but_evaluates_on_crops():
    v2 = get_preset("tiny-v2-a")
    on_v1 = dataclasses.replace(v2, world_version=1)
    assert on_v1.world_size == v2.resolution                # evaluation: the centre crop of a square
    with pytest.raises(ValueError, match="world 2"):
        on_v1.training_world()
    assert v2.training_world() == (2, v2.resolution) and get_preset("tiny").training_world() == (1, 128)
    with pytest.raises(SystemExit, match="world 2"):
        codec_train.codec_world(on_v1)


def test_the_trainer_refuses_a_portrait_preset_on_world_1(tmp_path):
    args = _args(config="micro-v2", codec=tmp_path / "no-codec", run_dir=tmp_path / "run", steps=1, threads=1)
    args.config = dataclasses.replace(get_preset("micro-v2"), world_version=1)
    with pytest.raises(SystemExit, match="world 2"):
        trainer_mod.run(args)


@pytest.mark.parametrize("name", ["micro-v2", "tiny-v2-a", "tiny-v2-b"])
def test_v2_dataset_yields_portrait_tensors_of_the_preset(name):
    p = get_preset(name)
    w, h = p.resolution
    item = WorldDataset.for_preset(p, [3])[0]
    assert item["video"].shape == (3, p.train_video_frames, h, w)
    assert item["reference"].shape == item["garment"].shape == (3, h, w)
    assert item["prompt"] in TINY_V2_PROMPTS
    assert item["prompt"] == world_v2.spec_for_seed(3).prompt      # the v2 world's prompt, not v1's


def test_training_refuses_heldout_seeds_on_v2():
    p = get_preset("micro-v2")
    with pytest.raises(HeldOutSeedError):
        WorldDataset.for_preset(p, [1, 500_000])
    with pytest.raises(HeldOutSeedError):
        render_bank([2, 750_000], 5, size=p.world_size, version=2, workers=1, progress=False)
    with pytest.raises(HeldOutSeedError):
        latents.build_or_load_bank("no-codec", "0" * 64, [4, 999_999], frames=5, size=p.world_size, version=2)
    assert len(WorldDataset.for_preset(p, [600_000], training=False)) == 1   # evaluation may read them


def test_v1_tiny_data_unchanged():
    # pinned from the code before world versions existed: the shipped v1 model depends on these tensors
    ds = WorldDataset([1234, 77], num_frames=9, size=128)
    assert WorldDataset.for_preset(get_preset("tiny"), [0]).size == 128
    h = hashlib.sha256()
    for i in range(len(ds)):
        item = ds[i]
        for k in ("video", "reference", "garment"):
            h.update(item[k].numpy().tobytes())
        h.update(item["prompt"].encode())
    assert h.hexdigest() == "cc67cdeb2466f8de3f71f54ff3c7a17aae2ede9082aeaf46d4c1685c6f67ef0f"
    # v1 bank names stay what they were (banks already built keep being found)
    from pathlib import Path

    assert latents.bank_path(Path("r"), "ab" * 32, [0, 9], 33, 128).name == f"{'ab' * 8}_0-9_33f_128px.safetensors"
    assert latents.bank_path(Path("r"), "ab" * 32, [0, 9], 33, (112, 192), 2).name == \
        f"{'ab' * 8}_0-9_33f_v2_112x192.safetensors"


def test_codec_batches_crop_portrait_frames():
    import numpy as np

    from fashionchameleon.data.datasets import Bank
    from fashionchameleon.training.codec_train import batch_at

    n, t, h, w = 3, 12, 48, 32
    rng = np.random.default_rng(0)
    bank = Bank(np.arange(n), rng.integers(0, 255, (n, t, h, w, 3), dtype=np.uint8),
                rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8), rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8),
                ["sway"] * n)
    video, images = batch_at(bank, 0, 2, 0, crop=24)
    assert video.shape == (2, 3, 9, 24, 24) and images.shape == (2, 3, 24, 24)
    video, images = batch_at(bank, 0, 2, 0, crop=64)      # crop larger than a side: that side stays whole
    assert video.shape == (2, 3, 9, 48, 32)


def _args(**kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    trainer_mod.add_arguments(p)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    return p.parse_args(["--stage", "teacher", *argv])


def test_two_step_v2_teacher_runs_and_saves_a_loadable_checkpoint(micro_assets, tmp_path, monkeypatch):
    from fashionchameleon.model.loading import load_checkpoint

    _, codec = micro_assets
    monkeypatch.setenv("FASHIONCHAMELEON_RUNS", str(tmp_path / "runs"))   # the latent bank goes here
    out = tmp_path / "teacher"
    args = _args(config="micro-v2", codec=codec, train_seeds="0-3", run_dir=tmp_path / "run", steps=2, batch=2,
                 warmup=1, save_every=1, sample_every=0, threads=1, out=out)
    assert trainer_mod.run(args) == 0
    model, preset, meta = load_checkpoint(out)
    assert preset.name == "micro-v2" and preset.world_version == 2 and meta["steps"] == 2
    banks = list((tmp_path / "runs" / "latents").glob("*_v2_32x48.safetensors"))
    assert len(banks) == 1                                   # portrait latents of world v2, named as such
    w, h = preset.resolution
    with torch.no_grad():
        lat = torch.randn(1, 16, 3, h // 8, w // 8)
        y = model(lat, torch.zeros(1), ["hair"])
    assert y.shape == lat.shape and torch.isfinite(y).all()


def test_a_world_mix_draws_its_share_of_world_1_crops(micro_assets, tmp_path, monkeypatch):
    from fashionchameleon.model.loading import load_checkpoint

    _, codec = micro_assets
    monkeypatch.setenv("FASHIONCHAMELEON_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "teacher"
    args = _args(config="micro-v2", codec=codec, train_seeds="0-5", run_dir=tmp_path / "run", steps=1, batch=2,
                 warmup=1, save_every=1, sample_every=0, threads=1, out=out, world_mix=0.25)
    assert trainer_mod.run(args) == 0
    # 6 world-v2 clips and round(6 * 0.25 / 0.75) = 2 world-1 clips, the first train seeds, in one mixed bank
    names = sorted(b.name for b in (tmp_path / "runs" / "latents").glob("*.safetensors"))
    assert [n.split("_", 1)[1] for n in names] == ["0-1_33f_v1_32x48.safetensors", "0-5_33f_v2_32x48.safetensors"]
    world1 = latents.LatentBank.load(tmp_path / "runs" / "latents" / names[0])
    from fashionchameleon.data import world as world_v1

    assert world1.seeds.tolist() == [0, 1] and world1.video.shape[-2:] == (6, 4)
    assert world1.prompts == [world_v1.make_sample(s, num_frames=1, size=(32, 48)).prompt for s in (0, 1)]
    assert load_checkpoint(out)[2]["world_mix"] == 0.25

    mixed = latents.mix_banks(latents.LatentBank.load(tmp_path / "runs" / "latents" / names[1]), world1)
    assert len(mixed) == 8 and mixed.prompts[6:] == world1.prompts
    assert torch.equal(mixed.video[6:], world1.video)


@pytest.mark.parametrize("kw, match", [(dict(config="micro", world_mix=0.25), "world-v2 presets"),
                                       (dict(config="micro-v2", world_mix=0.75), r"\(0, 0.5\]"),
                                       (dict(config="micro-v2", world_mix=0.25, bank="b.safetensors"), "--bank")])
def test_a_world_mix_is_refused_where_it_cannot_apply(tmp_path, kw, match):
    args = _args(codec=tmp_path / "no-codec", run_dir=tmp_path / "run", steps=1, threads=1, **kw)
    with pytest.raises(SystemExit, match=match):
        trainer_mod.run(args)
    assert latents.other_world_count(3000, 0.25) == 1000 and latents.other_world_count(10, 0.0) == 0
    with pytest.raises(ValueError):
        latents.other_world_count(10, 1.0)


def test_a_bank_of_another_size_is_refused(tmp_path):
    from fashionchameleon.training.latents import LatentBank

    bank = tmp_path / "v1.safetensors"
    n = 2
    LatentBank(torch.arange(n), torch.zeros(n, 16, 9, 4, 4).half(), torch.zeros(n, 16, 1, 4, 4).half(),
               torch.zeros(n, 16, 1, 4, 4).half(), ["sway"] * n).save(bank)
    args = _args(config="micro-v2", bank=bank, codec=tmp_path / "no-codec", run_dir=tmp_path / "run", steps=1,
                 threads=1, sample_every=0)
    with pytest.raises(SystemExit, match="4x4 latents"):
        trainer_mod.run(args)


def test_a_student_cannot_start_from_a_teacher_of_another_shape(micro_assets, tmp_path):
    model_dir, _ = micro_assets            # a `micro` (v1, 32x32) network: another vocabulary than micro-v2
    args = _args(config="micro-v2", init=model_dir, codec=tmp_path / "no-codec", run_dir=tmp_path / "run")
    args.stage = "forcing"
    with pytest.raises(SystemExit, match="another shape"):
        trainer_mod.Trainer(args)


def test_switchbench_renders_the_ground_truth_of_the_generators_world(micro_assets):
    import numpy as np

    from fashionchameleon.eval.switchbench import (World, case_metrics, ground_truth, long_run, make_case,
                                                   stream_case, world_of)
    from fashionchameleon.model.codec import load_codec
    from fashionchameleon.streaming.generator import StreamingGenerator

    _, codec_dir = micro_assets
    gen = StreamingGenerator.random("micro-v2", load_codec(codec_dir))
    assert world_of(gen) == World(2, (32, 48))
    seed = 500_003
    case = make_case(seed, switches=1)
    gt = ground_truth(seed, case, world_of(gen))
    assert gt.spec.version == 2 and gt.clip.frames.shape[1:] == (48, 32, 3)
    frames, applied = stream_case(gen, gt, case, "full", primed=True)
    assert frames.shape[1:] == (48, 32, 3)
    m = case_metrics(frames, gt if applied == case.switch_frames else ground_truth(seed, case, world_of(gen), applied),
                     primed=True)
    assert np.isfinite(m["garment_color_error"]) and np.isfinite(m["outside_psnr"])
    assert np.isfinite(long_run(gen, seed, frames=100)["drift_ratio"])
    # an int still means world v1 at that square size (what callers passed before world v2)
    assert ground_truth(seed, case, 32).clip.frames.shape[1:] == (32, 32, 3)


def test_latent_bank_build_resumes_from_its_saved_shards(micro_assets, tmp_path, monkeypatch):
    """A build killed part way keeps the shards it finished; the next build encodes only the rest and gives
    the same bank as an uninterrupted build."""
    _, codec = micro_assets
    sha, seeds, kw = "ab" * 32, [0, 1, 2, 3, 4], dict(frames=5, size=(16, 32), version=2, workers=1, progress=False)
    monkeypatch.setattr(latents, "SHARD", 2)
    whole = latents.build_or_load_bank(codec, sha, seeds, root=tmp_path / "a", **kw)
    render = latents.make_sample

    def failing_on(bad):     # the workers are forked: they see the patched renderer
        def f(seed, **kwargs):
            if seed in bad:
                raise RuntimeError(f"killed at seed {seed}")
            return render(seed, **kwargs)
        return f

    monkeypatch.setattr(latents, "make_sample", failing_on({4}))           # dies in the third shard
    with pytest.raises(RuntimeError, match="killed at seed 4"):
        latents.build_or_load_bank(codec, sha, seeds, root=tmp_path / "b", **kw)
    assert len(list((tmp_path / "b").glob(".*.parts/*.safetensors"))) == 2
    monkeypatch.setattr(latents, "make_sample", failing_on({0, 1, 2, 3}))   # finished shards are not redone
    resumed = latents.build_or_load_bank(codec, sha, seeds, root=tmp_path / "b", **kw)
    assert not list((tmp_path / "b").glob(".*.parts"))
    assert resumed.seeds.tolist() == seeds and resumed.prompts == whole.prompts
    for k in ("video", "reference", "garment"):
        assert torch.equal(getattr(resumed, k), getattr(whole, k)), k


def test_a_portrait_model_is_evaluated_on_world_v1_seeds_as_the_centre_crop(micro_assets, tmp_path):
    """`eval --world 1` on a v2 (portrait) checkpoint: v1's ground truth rendered as the centre crop of its square,
    masks and all; a model that lacks the other world's motion prompts is refused."""
    import subprocess
    import sys
    from pathlib import Path

    from fashionchameleon.data import world as W
    from fashionchameleon.model.codec import TinyCodec
    from fashionchameleon.model.dit import WanDiT
    from fashionchameleon.model.loading import save_checkpoint

    square = W.make_switch_sample(500_001, switches=1, num_frames=40, size=48)
    crop = W.make_switch_sample(500_001, switches=1, num_frames=40, size=(32, 48))
    assert crop.clip.frames.shape[1:] == (48, 32, 3) and crop.reference.shape == (48, 32, 3)
    assert np.array_equal(crop.clip.frames, square.clip.frames[:, :, 8:40])
    assert np.array_equal(crop.clip.garment_masks, square.clip.garment_masks[:, :, 8:40])
    assert np.array_equal(W.render_background(crop.spec, (32, 48)), W.render_background(square.spec, 48)[:, 8:40])
    flat = W.render_flatlay(crop.garments[0], (32, 48))       # the square product photo, padded with white
    assert flat.shape == (48, 32, 3) and (flat[:8] == 255).all()

    model_v1, codec = micro_assets
    preset = get_preset("micro-v2")
    model_dir = tmp_path / "micro-v2"
    save_checkpoint(model_dir, WanDiT(preset.model), preset, metadata={"codec_sha256": TinyCodec.load(codec).sha256})
    root = Path(__file__).resolve().parents[1]

    def eval_cli(model, world):
        return subprocess.run([sys.executable, "-m", "fashionchameleon", "eval", "--checkpoint", str(model), "--codec",
                               str(codec), "--seeds", "500000-500000", "--variants", "full", "--protocols", "a",
                               "--world", world, "--threads", "1", "--json"],
                              cwd=root, capture_output=True, text=True, timeout=600)

    r = eval_cli(model_dir, "1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["world"] == 1 and np.isfinite(out["rows"]["full"]["garment_color_error"])
    r = eval_cli(model_v1, "2")                       # micro knows v1's five motions, not hair/collar/hips
    assert r.returncode == 2 and "prompts this model does not know" in r.stderr
