"""LoRA on the attention and FFN projections through peft, for fine-tuning the large shapes."""

from __future__ import annotations

import os
from pathlib import Path

import torch

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "net.0.proj", "net.2"]


def apply_lora(model: torch.nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.0) -> torch.nn.Module:
    """Inject zero-initialised LoRA adapters in place; only adapter weights stay trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=dropout, target_modules=TARGETS,
                     init_lora_weights=True)
    model = inject_adapter_in_model(cfg, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def save_adapters(model: torch.nn.Module, folder: str | os.PathLike) -> Path:
    import json

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(folder / "adapter_model.safetensors"))
    cfg = model.peft_config["default"]
    (folder / "adapter_config.json").write_text(json.dumps(
        {"r": cfg.r, "lora_alpha": cfg.lora_alpha, "target_modules": sorted(cfg.target_modules)}, indent=2) + "\n")
    return folder


def load_adapters(model: torch.nn.Module, folder: str | os.PathLike) -> torch.nn.Module:
    """Inject adapters with the saved configuration into ``model`` and load their weights."""
    import json

    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    model = apply_lora(model, cfg["r"], cfg["lora_alpha"])
    result = set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if missing:
        raise ValueError(f"{folder}: adapter tensors that match no layer, e.g. {missing[0]}")
    return model


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold the adapters into the base weights and remove them (for export)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            parent._modules[child] = module.get_base_layer()
    if hasattr(model, "peft_config"):
        del model.peft_config
    for p in model.parameters():
        p.requires_grad_(True)
    return model
