"""Our Wan DiT against diffusers' WanTransformer3DModel, presets against the published shapes, checkpoints."""

import json

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file, save_file

from fashionchameleon.config import ModelConfig, get_preset
from fashionchameleon.model.dit import WanDiT
from fashionchameleon.model.loading import CheckpointError, load_checkpoint, load_diffusers_transformer, save_checkpoint

SMALL = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
             text_dim=16, freq_dim=32, ffn_dim=40, num_layers=2, cross_attn_norm=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from conftest import randomize_

    ref = randomize_(WanTransformer3DModel(**SMALL), seed=1).eval()
    folder = tmp_path_factory.mktemp("wan") / "transformer"
    ref.save_pretrained(folder)
    return ref, folder


@pytest.mark.parametrize("case", ["text", "null_text", "per_frame_timesteps"])
def test_matches_diffusers(reference, case):
    ref, folder = reference
    ours = load_diffusers_transformer(folder).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 3, 8, 6, generator=g)
    text = torch.randn(2, 5, 16, generator=g)
    if case == "null_text":  # the unconditional branch of CFG: an all-zero prompt embedding
        text = torch.zeros(2, 5, 16)
    t_frames = torch.tensor([[0.0, 500.0, 900.0], [100.0, 250.0, 999.0]])
    if case == "per_frame_timesteps":
        t_ref = t_frames.repeat_interleave(4 * 3, dim=1)  # diffusers takes one timestep per token
        t_ours = t_frames
    else:
        t_ref = t_ours = torch.tensor([300.0, 800.0])
    with torch.no_grad():
        expected = ref(x, t_ref, text).sample
        got = ours(x, t_ours, text)
    assert expected.std() > 0.5, "degenerate reference output"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_single_token_text_shortcut_matches_diffusers(reference):
    ref, folder = reference
    ours = load_diffusers_transformer(folder).eval()
    x, text = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 1, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, torch.tensor([400.0]), text), ref(x, torch.tensor([400.0]), text).sample,
                                   atol=1e-5, rtol=1e-5)


def test_mask_changes_output(randomize):
    model = randomize(WanDiT(ModelConfig.from_diffusers(SMALL))).eval()
    x, t = torch.randn(1, 4, 3, 4, 4), torch.tensor([500.0])
    causal = torch.tril(torch.ones(3, 3, dtype=torch.bool))
    with torch.no_grad():
        full = model(x, t, torch.randn(1, 3, 16))
        masked = model(x, t, torch.randn(1, 3, 16), frame_mask=causal)
        all_true = model(x, t, None, frame_mask=torch.ones(3, 3, dtype=torch.bool))
        none = model(x, t, None)
    assert (full - masked).abs().max() > 1e-2
    torch.testing.assert_close(all_true, none, atol=1e-5, rtol=1e-5)  # an all-allowed mask is no mask
    # The first frame sees only itself under the causal mask: it does not depend on later frames.
    x2 = x.clone()
    x2[:, :, 1:] += 1.0
    with torch.no_grad():
        a = model(x, t, None, frame_mask=causal)
        b = model(x2, t, None, frame_mask=causal)
    torch.testing.assert_close(a[:, :, 0], b[:, :, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["wan2.1-1.3b", "wan2.2-ti2v-5b", "wan2.2-ti2v-5b-landscape"])
def test_real_shapes_match_published_configs(name):
    cfg = get_preset(name).model
    with torch.device("meta"):
        ours = WanDiT(cfg)
        ref = WanTransformer3DModel(**{k: v for k, v in cfg.to_diffusers().items() if not k.startswith("_")})
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert ours_shapes == ref_shapes
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_published_parameter_counts():
    counts = {}
    for name in ("wan2.1-1.3b", "wan2.2-ti2v-5b"):
        with torch.device("meta"):
            counts[name] = sum(p.numel() for p in WanDiT(get_preset(name).model).parameters())
    assert 1.3e9 < counts["wan2.1-1.3b"] < 1.5e9
    assert 4.9e9 < counts["wan2.2-ti2v-5b"] < 5.1e9


def test_checkpoint_round_trip(tmp_path, randomize):
    preset = get_preset("tiny")
    cfg = ModelConfig(num_attention_heads=2, attention_head_dim=12, text_dim=8, freq_dim=16, ffn_dim=32,
                      num_layers=2, prompt_vocab=("walk", "wave"))
    preset = type(preset)(name="micro", model=cfg)
    model = randomize(WanDiT(cfg)).eval()
    save_checkpoint(tmp_path / "ck", model, preset, metadata={"note": "x"})
    loaded, preset2, meta = load_checkpoint(tmp_path / "ck")
    assert preset2 == preset and meta["note"] == "x"
    x, t = torch.randn(1, 16, 2, 4, 4), torch.tensor([[0.0, 700.0]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, ["wave"]), model(x, t, ["wave"]), atol=0, rtol=0)


def test_broken_folders_name_the_tensor(reference, tmp_path):
    _, folder = reference
    state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    config = (folder / "config.json").read_text()

    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "config.json").write_text(config)
    save_file({k: v for k, v in state.items() if k != "blocks.1.attn1.to_k.weight"},
              str(missing / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn1\.to_k\.weight.*missing"):
        load_diffusers_transformer(missing)

    bad = tmp_path / "badshape"
    bad.mkdir()
    (bad / "config.json").write_text(config)
    state2 = dict(state)
    state2["proj_out.bias"] = torch.zeros(3)
    save_file(state2, str(bad / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match=r"proj_out\.bias.*shape"):
        load_diffusers_transformer(bad)


def test_sharded_folder_and_pt_weights_only(reference, tmp_path):
    ref, folder = reference
    state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((folder / "config.json").read_text())
    keys = sorted(state)
    halves = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2:]}
    weight_map = {}
    for fname, ks in halves.items():
        save_file({k: state[k] for k in ks}, str(sharded / fname))
        weight_map.update({k: fname for k in ks})
    (sharded / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = load_diffusers_transformer(sharded)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k

    # A pickle that would run code is refused: weights_only=True.
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    from fashionchameleon.model.loading import read_tensors

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        read_tensors(tmp_path / "evil.pt")


def test_unreachable_hub_says_what_to_download():
    with pytest.raises(CheckpointError, match="download"):
        load_diffusers_transformer("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")


def test_sharded_checkpoint_round_trip(tmp_path, randomize):
    preset = get_preset("micro")
    model = randomize(WanDiT(preset.model)).eval()
    save_checkpoint(tmp_path / "ck", model, preset, max_shard_mb=0.005)
    shards = sorted((tmp_path / "ck").glob("model-*.safetensors"))
    assert len(shards) > 2
    for p in shards:  # a shard holding several tensors stays under the limit (one big tensor may not)
        if len(load_file(str(p))) > 1:
            assert p.stat().st_size < 0.005 * 2**20 + 4096
    loaded, _, _ = load_checkpoint(tmp_path / "ck")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
