"""Checkpoints in other people's formats: diffusers folders (export and import), the original Wan and
Self-Forcing key layouts, and hub helpers (``push_to_hub`` / ``from_pretrained``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from ..config import ModelConfig, Preset
from .dit import WanDiT
from .loading import (CheckpointError, load_checkpoint, load_state_checked, read_folder_tensors, read_tensors,
                      resolve_folder, save_checkpoint)

# Original Wan (and Self-Forcing, which wraps it) -> our / diffusers names. Applied to each key's dotted path.
_WAN_BLOCK_RULES = [
    (r"\.self_attn\.q\.", ".attn1.to_q."), (r"\.self_attn\.k\.", ".attn1.to_k."), (r"\.self_attn\.v\.", ".attn1.to_v."),
    (r"\.self_attn\.o\.", ".attn1.to_out.0."), (r"\.self_attn\.norm_q\.", ".attn1.norm_q."),
    (r"\.self_attn\.norm_k\.", ".attn1.norm_k."),
    (r"\.cross_attn\.q\.", ".attn2.to_q."), (r"\.cross_attn\.k\.", ".attn2.to_k."), (r"\.cross_attn\.v\.", ".attn2.to_v."),
    (r"\.cross_attn\.o\.", ".attn2.to_out.0."), (r"\.cross_attn\.norm_q\.", ".attn2.norm_q."),
    (r"\.cross_attn\.norm_k\.", ".attn2.norm_k."),
    (r"\.norm3\.", ".norm2."),                      # Wan's cross-attention norm is diffusers' norm2
    (r"\.ffn\.0\.", ".ffn.net.0.proj."), (r"\.ffn\.2\.", ".ffn.net.2."),
    (r"\.modulation$", ".scale_shift_table"),
]
_WAN_TOP = {
    "time_embedding.0.": "condition_embedder.time_embedder.linear_1.",
    "time_embedding.2.": "condition_embedder.time_embedder.linear_2.",
    "text_embedding.0.": "condition_embedder.text_embedder.linear_1.",
    "text_embedding.2.": "condition_embedder.text_embedder.linear_2.",
    "time_projection.1.": "condition_embedder.time_proj.",
    "head.head.": "proj_out.",
    "head.modulation": "scale_shift_table",
}
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "generator.", "model.")


def convert_wan_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of an original-Wan / Self-Forcing state dict -> ours; buffers they keep (``freqs``) are dropped."""
    out = {}
    for key, value in state.items():
        k = key
        changed = True
        while changed:
            changed = False
            for p in _WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        if k == "freqs" or k.endswith(".freqs"):
            continue
        for old, new in _WAN_TOP.items():
            if k.startswith(old):
                k = new + k[len(old):]
                break
        if k.startswith("blocks."):
            for pattern, repl in _WAN_BLOCK_RULES:
                k = re.sub(pattern, repl, k)
        out[k] = value
    return out


def load_wan_weights(path: str | os.PathLike, config: ModelConfig) -> WanDiT:
    """Our DiT from an original-Wan or Self-Forcing ``.pt``/``.safetensors`` file (``weights_only`` loading)."""
    state = convert_wan_state(read_tensors(path))
    with torch.device("meta"):
        model = WanDiT(config)
    load_state_checked(model, state, str(path), allow_missing=("prompt_embedding",) if not config.prompt_vocab else ())
    return model


# -- diffusers folders ------------------------------------------------------------------------------------------

def export_diffusers(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """One of our checkpoints as a diffusers ``WanTransformer3DModel`` folder. A prompt vocabulary (``tiny``)
    has no diffusers counterpart: it goes to ``fashionchameleon_prompts.safetensors`` beside the weights."""
    from safetensors.torch import save_file

    model, preset, meta = load_checkpoint(checkpoint)
    config = preset.model.to_diffusers()    # ValueError for a model diffusers cannot hold, before any file
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("prompt_embedding")}
    save_file(state, str(out / "diffusion_pytorch_model.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if preset.model.prompt_vocab:
        save_file({"weight": model.prompt_embedding.weight.detach().contiguous()},
                  str(out / "fashionchameleon_prompts.safetensors"))
    (out / "fashionchameleon.json").write_text(json.dumps({"preset": preset.to_dict(), **{
        k: v for k, v in meta.items() if k != "preset"}}, indent=2) + "\n")
    return out


def import_diffusers(folder: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A diffusers Wan transformer folder (ours or anyone's) as one of our checkpoints."""
    from safetensors.torch import load_file

    from .loading import load_diffusers_transformer

    folder = resolve_folder(folder)
    extra = folder / "fashionchameleon.json"
    if extra.exists():
        meta = json.loads(extra.read_text())
        preset = Preset.from_dict(meta.pop("preset"))
    else:
        base = load_diffusers_transformer(folder)
        preset, meta = Preset(name="imported", model=base.config), {"source": str(folder)}
    with torch.device("meta"):
        model = WanDiT(preset.model)
    state = read_folder_tensors(folder)
    if preset.model.prompt_vocab:
        state["prompt_embedding.weight"] = load_file(str(folder / "fashionchameleon_prompts.safetensors"))["weight"]
    load_state_checked(model, state, str(folder))
    return save_checkpoint(out, model, preset, metadata=meta)


# -- hub ----------------------------------------------------------------------------------------------------------------

def push_to_hub(folder: str | os.PathLike, repo_id: str, *, private: bool = False, api=None,
                commit_message: str = "Upload FashionChameleon checkpoint") -> str:
    """Upload a checkpoint folder to a model repo (huggingface_hub); returns the repo id."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise CheckpointError(f"{folder}: not a checkpoint folder (no config.json)")
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
    return repo_id


def from_pretrained(name_or_path: str | os.PathLike, *, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """(model, preset, metadata) from a local folder or a hub repo id of one of our checkpoints."""
    return load_checkpoint(resolve_folder(name_or_path), device=device, dtype=dtype)
