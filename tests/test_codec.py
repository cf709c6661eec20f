"""Codec interface: streaming decode equals full decode (both implementations), image = first latent."""

import pytest
import torch

from fashionchameleon.model.codec import TinyCodec, TinyCodecConfig, WanVAECodec, latent_frames


def small_tiny_codec():
    from conftest import randomize_

    codec = TinyCodec(TinyCodecConfig(width=16, enc_blocks=1, dec_blocks=1))
    randomize_(codec, scale=0.06, seed=4)
    return codec.eval()


def small_tiny_codec_with_pixel_refinement():
    from conftest import randomize_

    codec = TinyCodec(TinyCodecConfig(width=16, enc_blocks=1, dec_blocks=1, pixel_width=4))
    randomize_(codec, scale=0.06, seed=4)
    return codec.eval()


def small_wan_codec():
    from diffusers import AutoencoderKLWan

    from conftest import randomize_

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    randomize_(vae, scale=0.1, seed=5)
    return WanVAECodec(vae.eval())


@pytest.mark.parametrize("make", [small_tiny_codec, small_tiny_codec_with_pixel_refinement, small_wan_codec],
                         ids=["tiny", "tiny-pixel", "wan"])
@torch.no_grad()
def test_streaming_decode_equals_full_decode(make):
    codec = make()
    video = torch.rand(1, 3, 17, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    z = codec.encode(video)
    assert z.shape == (1, 16, latent_frames(17), 4, 4)
    full = codec.decode(z)
    assert full.shape == (1, 3, 17, 32, 32) and full.std() > 1e-3
    dec = codec.stream_decoder()
    chunks = [dec.decode(z[:, :, :2]), dec.decode(z[:, :, 2:3]), dec.decode(z[:, :, 3:5])]
    assert [c.shape[2] for c in chunks] == [5, 4, 8]
    torch.testing.assert_close(torch.cat(chunks, 2), full, atol=1e-4, rtol=1e-4)
    # a fresh stream decoder starts over: its first latent again yields one frame
    assert codec.stream_decoder().decode(z[:, :, :1]).shape[2] == 1


@pytest.mark.parametrize("make", [small_tiny_codec, small_wan_codec], ids=["tiny", "wan"])
@torch.no_grad()
def test_encode_image_is_first_latent_of_a_one_frame_video(make):
    codec = make()
    frame = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    video = torch.cat([frame[:, :, None], torch.rand(2, 3, 4, 32, 32) * 2 - 1], 2)
    img = codec.encode_image(frame)
    torch.testing.assert_close(img, codec.encode(frame[:, :, None]), atol=1e-5, rtol=1e-5)
    # causal: the first latent of a longer video is the image latent too
    torch.testing.assert_close(img, codec.encode(video)[:, :, :1], atol=1e-4, rtol=1e-4)


def test_tiny_codec_save_load_and_hash(tmp_path):
    codec = small_tiny_codec()
    codec.save(tmp_path / "c")
    loaded = TinyCodec.load(tmp_path / "c")
    assert loaded.sha256 == TinyCodec.load(tmp_path / "c").sha256   # stable across loads
    import json
    assert json.loads((tmp_path / "c" / "config.json").read_text())["sha256"] == loaded.sha256
    with torch.no_grad():
        loaded.latent_mean.add_(1.0)
    assert loaded.sha256 != codec.sha256


@torch.no_grad()
def test_a_saved_codec_reconstructs_exactly_like_the_one_that_was_saved(tmp_path):
    codec = small_tiny_codec()
    video = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    codec.save(tmp_path / "c")
    loaded = TinyCodec.load(tmp_path / "c").eval()
    # weights are stored in half precision: the loaded codec is the original with its weights rounded ...
    rounded = small_tiny_codec()
    rounded.load_state_dict({k: v.half().float() for k, v in codec.state_dict().items()})
    assert torch.equal(loaded.decode(loaded.encode(video)), rounded.decode(rounded.encode(video)))
    # ... which moves a reconstruction by far less than one 8-bit step
    assert (loaded.decode(loaded.encode(video)) - codec.decode(codec.encode(video))).abs().max() < 2 / 255


@pytest.mark.parametrize("name", ["codec", "codec-v2"])
def test_the_shipped_codec_reproduces_its_held_out_report(name):
    """Each shipped codec (world v1, world v2), loaded from disk, reconstructs its 32 held-out report clips to
    the PSNR its report.json records."""
    import json
    from pathlib import Path

    from fashionchameleon.training.codec_report import codec_report

    folder = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / name
    codec = TinyCodec.load(folder).eval()
    saved = json.loads((folder / "report.json").read_text())
    assert saved["codec_sha256"] == codec.sha256
    world = {"size": tuple(saved["size"]), "version": saved["world_version"]} if "world_version" in saved else {}
    again = json.loads(codec_report(codec, saved["seeds"], num_frames=saved["frames_per_clip"], **world))
    assert abs(again["psnr"] - saved["psnr"]) < 0.05, (again["psnr"], saved["psnr"])
    assert abs(again["psnr_worst_decile"] - saved["psnr_worst_decile"]) < 0.05


def test_video_length_must_be_one_plus_4k():
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        small_tiny_codec().encode(torch.zeros(1, 3, 6, 16, 16))


def test_a_tuned_decoder_keeps_the_latent_space_and_the_checkpoints_made_on_it(tmp_path):
    """train-codec --tune-decoder: the encoder (so every latent) is bit-identical, the decoder changes, the
    codec answers to its base's latent hash (banks and checkpoints made with the base stay valid), and a
    file whose encoder was changed afterwards is refused."""
    import argparse
    import json

    from safetensors.torch import load_file, save_file

    from fashionchameleon.data.datasets import render_bank
    from fashionchameleon.model.loading import CheckpointError
    from fashionchameleon.training import codec_train

    base = small_tiny_codec()
    base.save(tmp_path / "base")
    base = TinyCodec.load(tmp_path / "base")
    bank = tmp_path / "bank.npz"
    render_bank(range(4), 9, size=32, workers=1, progress=False).save(bank)
    p = argparse.ArgumentParser()
    codec_train.add_arguments(p)
    args = p.parse_args(["--tune-decoder", str(tmp_path / "base"), "--pixel-width", "4", "--bank", str(bank),
                         "--steps", "3", "--batch", "2", "--lr", "1e-2", "--threads", "1",
                         "--eval-seeds", "500000-500000", "--run-dir", str(tmp_path / "run"),
                         "--out", str(tmp_path / "tuned")])
    assert codec_train.run(args) == 0
    tuned = TinyCodec.load(tmp_path / "tuned")
    assert tuned.config.pixel_width == 4 and tuned.tuned_from == base.sha256
    assert tuned.latent_sha256 == base.latent_sha256 and tuned.sha256 != base.sha256
    video = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        z = base.encode(video)
        assert torch.equal(tuned.encode(video), z)
        assert (tuned.decode(z) - base.decode(z)).abs().max() > 1e-3       # the decoder did train
    meta = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert meta["latent_sha256"] == base.sha256 and json.loads((tmp_path / "tuned" / "report.json").read_text())[
        "latent_sha256"] == base.sha256
    # tampering with the encoder breaks the claim
    state = load_file(str(tmp_path / "tuned" / "codec.safetensors"))
    state["enc_proj.bias"] = state["enc_proj.bias"] + 1
    save_file(state, str(tmp_path / "tuned" / "codec.safetensors"))
    with pytest.raises(CheckpointError, match="encoder"):
        TinyCodec.load(tmp_path / "tuned")
    # a bank holding held-out seeds is refused, wherever it was made
    from fashionchameleon.data.datasets import HeldOutSeedError
    held = tmp_path / "held.npz"
    render_bank([500_000], 9, size=32, workers=1, training=False, progress=False).save(held)
    args.bank, args.out = held, tmp_path / "held-out"
    with pytest.raises(HeldOutSeedError):
        codec_train.run(args)
    args.bank = bank
    # a tuned decoder is not tuned again (its base is the one to tune)
    args.tune_decoder, args.out = tmp_path / "tuned", tmp_path / "again"
    meta_ok = TinyCodec.load(tmp_path / "base")
    meta_ok.tuned_from = "x" * 64
    meta_ok.save(tmp_path / "tuned")
    with pytest.raises(SystemExit, match="already a tuned decoder"):
        codec_train.run(args)


def test_a_generator_accepts_a_tuned_decoder_for_a_checkpoint_of_its_base(micro_assets, tmp_path):
    from fashionchameleon.streaming.generator import StreamingGenerator

    model_dir, codec_dir = micro_assets
    tuned = TinyCodec(TinyCodecConfig(**{**TinyCodec.load(codec_dir).config.to_dict(), "pixel_width": 4}))
    base = TinyCodec.load(codec_dir)
    tuned.load_state_dict(base.state_dict(), strict=False)
    tuned.tuned_from = base.sha256
    tuned.save(tmp_path / "tuned")
    gen = StreamingGenerator.from_pretrained(model_dir, tmp_path / "tuned")
    assert gen.codec.config.pixel_width == 4
    other = TinyCodec(base.config)                      # another latent space: refused
    other.save(tmp_path / "other")
    with pytest.raises(ValueError, match="trained on codec"):
        StreamingGenerator.from_pretrained(model_dir, tmp_path / "other")
