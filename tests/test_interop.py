"""Interoperability: diffusers export/import, original-Wan and Self-Forcing layouts, hub helpers, the umT5
prompt encoder, LoRA adapters."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fashionchameleon.config import get_preset
from fashionchameleon.model.dit import WanDiT
from fashionchameleon.model.interop import (export_diffusers, from_pretrained, import_diffusers, load_wan_weights,
                                            push_to_hub)
from fashionchameleon.model.loading import save_checkpoint

PRESET = get_preset("micro")


@pytest.fixture
def micro(tmp_path, randomize):
    model = randomize(WanDiT(PRESET.model), scale=0.2, seed=11).eval()
    save_checkpoint(tmp_path / "ours", model, PRESET, metadata={"codec_sha256": "abc"})
    return model, tmp_path / "ours"


def outputs(model, text="wave"):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 3, 4, 4, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([[0.0, 300.0, 800.0]]), [text] if model.config.prompt_vocab else text)


def test_diffusers_export_and_back(micro, tmp_path):
    from diffusers import WanTransformer3DModel

    model, folder = micro
    out = export_diffusers(folder, tmp_path / "diffusers")
    ref = WanTransformer3DModel.from_pretrained(str(out)).eval()
    text = model.prompt_embedding(model.prompt_ids(["wave"]))[:, None]
    x = torch.randn(1, 16, 3, 4, 4)
    t = torch.tensor([[0.0, 300.0, 800.0]])
    with torch.no_grad():
        torch.testing.assert_close(ref(x, t.repeat_interleave(4, 1), text).sample, model(x, t, text), atol=1e-5, rtol=1e-5)
    back, preset, meta = from_pretrained(import_diffusers(out, tmp_path / "back"))
    assert preset == PRESET and meta["codec_sha256"] == "abc"
    torch.testing.assert_close(outputs(back), outputs(model), atol=0, rtol=0)


def wan_layout(state: dict) -> dict:
    """Our keys written the way the original Wan code names them (hand-written, independent of the converter)."""
    out = {"freqs": torch.zeros(4)}
    top = {"patch_embedding.weight": "patch_embedding.weight", "patch_embedding.bias": "patch_embedding.bias",
           "condition_embedder.time_embedder.linear_1.weight": "time_embedding.0.weight",
           "condition_embedder.time_embedder.linear_1.bias": "time_embedding.0.bias",
           "condition_embedder.time_embedder.linear_2.weight": "time_embedding.2.weight",
           "condition_embedder.time_embedder.linear_2.bias": "time_embedding.2.bias",
           "condition_embedder.text_embedder.linear_1.weight": "text_embedding.0.weight",
           "condition_embedder.text_embedder.linear_1.bias": "text_embedding.0.bias",
           "condition_embedder.text_embedder.linear_2.weight": "text_embedding.2.weight",
           "condition_embedder.text_embedder.linear_2.bias": "text_embedding.2.bias",
           "condition_embedder.time_proj.weight": "time_projection.1.weight",
           "condition_embedder.time_proj.bias": "time_projection.1.bias",
           "proj_out.weight": "head.head.weight", "proj_out.bias": "head.head.bias",
           "scale_shift_table": "head.modulation"}
    block = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
             "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
             "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
             "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
             "norm2": "norm3", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}
    for k, v in state.items():
        if k in top:
            out[top[k]] = v
            continue
        i, rest = k.split(".", 2)[1], k.split(".", 2)[2]
        if rest == "scale_shift_table":
            out[f"blocks.{i}.modulation"] = v
            continue
        mod, param = rest.rsplit(".", 1)
        out[f"blocks.{i}.{block[mod]}.{param}"] = v
    return out


@pytest.mark.parametrize("fmt", ["wan_pt", "wan_safetensors", "self_forcing_pt"])
def test_original_wan_and_self_forcing_layouts(tmp_path, randomize, fmt):
    cfg = PRESET.model.__class__(**{**PRESET.model.__dict__, "prompt_vocab": ()})
    model = randomize(WanDiT(cfg), scale=0.2, seed=12).eval()
    state = wan_layout(model.state_dict())
    if fmt == "wan_pt":
        torch.save(state, tmp_path / "w.pt")
        path = tmp_path / "w.pt"
    elif fmt == "wan_safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
        path = tmp_path / "w.safetensors"
    else:
        torch.save({"generator_ema": {f"model.{k}": v for k, v in state.items()}, "step": torch.tensor(7)},
                   tmp_path / "sf.pt")
        path = tmp_path / "sf.pt"
    loaded = load_wan_weights(path, cfg)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


class LocalHub:
    """Stands in for huggingface_hub.HfApi offline: a repo is a folder under ``root``."""

    def __init__(self, root: Path):
        self.root = root

    def create_repo(self, repo_id, private=False, exist_ok=False):
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)

    def upload_folder(self, folder_path, repo_id, commit_message=""):
        import shutil

        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)


def test_push_to_hub_and_from_pretrained(micro, tmp_path):
    model, folder = micro
    hub = LocalHub(tmp_path / "hub")
    assert push_to_hub(folder, "someone/tiny-chameleon", api=hub) == "someone/tiny-chameleon"
    loaded, preset, _ = from_pretrained(tmp_path / "hub" / "someone" / "tiny-chameleon")
    torch.testing.assert_close(outputs(loaded), outputs(model), atol=0, rtol=0)


def test_prompt_encoder_from_a_local_folder(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    from fashionchameleon.model.text import PromptEncoder

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", "a", "person", "walking", "waving"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(tmp_path / "enc" / "tokenizer")
    torch.manual_seed(0)
    UMT5EncoderModel(UMT5Config(vocab_size=len(vocab), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
                     ).save_pretrained(tmp_path / "enc" / "text_encoder")
    enc = PromptEncoder(tmp_path / "enc", max_length=8)
    e = enc.encode("a person walking")
    assert e.shape == (1, 8, 16) and e[0, :3].abs().sum() > 0 and e[0, 4:].abs().sum() == 0
    assert enc.encode("a person walking") is e and len(enc) == 1          # cached: no second encoder run
    assert not torch.equal(enc.encode("a person waving"), e)
    with pytest.raises(FileNotFoundError, match="download"):
        PromptEncoder(tmp_path / "missing")


def test_lora_zero_init_matches_base_and_trains_only_adapters(micro, tmp_path):
    from fashionchameleon.training.lora import apply_lora, load_adapters, merge_lora, save_adapters

    base, folder = micro
    before = outputs(base)
    lora_model, _, _ = from_pretrained(folder)
    lora_model = apply_lora(lora_model, rank=4)
    torch.testing.assert_close(outputs(lora_model), before, atol=0, rtol=0)   # zero-initialised adapters
    frozen = {k: v.clone() for k, v in lora_model.state_dict().items() if "lora_" not in k}
    opt = torch.optim.SGD([p for p in lora_model.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(2, 16, 3, 4, 4)
    lora_model.train()
    for _ in range(2):
        loss = lora_model(x, torch.tensor([500.0, 500.0]), ["walk", "wave"]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    lora_model.eval()
    for k, v in lora_model.state_dict().items():
        if "lora_" not in k:
            assert torch.equal(v, frozen[k]), f"{k} changed"
    tuned = outputs(lora_model)
    assert (tuned - before).abs().max() > 1e-4
    save_adapters(lora_model, tmp_path / "adapters")
    fresh, _, _ = from_pretrained(folder)
    reloaded = load_adapters(fresh, tmp_path / "adapters")
    torch.testing.assert_close(outputs(reloaded), tuned, atol=1e-6, rtol=1e-6)
    merged = merge_lora(reloaded)
    assert not any("lora_" in k for k in merged.state_dict())
    torch.testing.assert_close(outputs(merged), tuned, atol=1e-5, rtol=1e-5)
    assert json.loads((tmp_path / "adapters" / "adapter_config.json").read_text())["r"] == 4
