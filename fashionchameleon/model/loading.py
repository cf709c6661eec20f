"""Weights in and out: diffusers Wan folders, hub repo ids, our own checkpoints.

Nothing is downloaded unless a hub repo id is asked for; pickles are never executed (``.pt`` files go
through ``torch.load(weights_only=True)``). Every mismatch names the tensor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig, Preset
from .dit import WanDiT


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says which file or tensor and why."""


def require_same_latents(checkpoint, meta: dict, latent_sha256: str, codec) -> None:
    """Refuse a checkpoint whose recorded codec (``codec_sha256``) is not the latent space ``latent_sha256`` of
    ``codec``: v1 and v2 checkpoints share shapes, so the mismatch would otherwise run silently. A decoder
    tuned later (encoder frozen) keeps its base's latent space, so it passes."""
    if meta.get("codec_sha256") and meta["codec_sha256"] != latent_sha256:
        raise CheckpointError(f"{checkpoint} was trained on codec {meta['codec_sha256'][:12]}, but {codec} is "
                              f"{latent_sha256[:12]}: use the codec it was trained on")


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pt``/``.pth``/``.bin`` file loaded without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises several types for corrupt headers
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot be loaded with weights_only=True ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "generator_ema", "generator", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a flat dict of tensors")
    return obj


def _weight_files(folder: Path) -> list[Path]:
    index = sorted(folder.glob("*.safetensors.index.json"))
    if index:
        shards = sorted(set(json.loads(index[0].read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    # side files of ours (e.g. a prompt vocabulary exported beside diffusers weights) are not model weights
    files = sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("fashionchameleon_"))
    if not files:
        files = sorted(p for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".bin"))
    if not files:
        raise CheckpointError(f"{folder}: no .safetensors (or .pt/.bin) weight files")
    return files


def read_folder_tensors(folder: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for f in _weight_files(folder):
        state.update(read_tensors(f))
    return state


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                       allow_missing: tuple[str, ...] = ()) -> None:
    """``load_state_dict`` that fails with a message naming the first missing, extra or mis-shaped tensor."""
    expected = model.state_dict()
    for name, ref in expected.items():
        if name not in state:
            if any(name.startswith(p) for p in allow_missing):
                continue
            raise CheckpointError(f"{source}: tensor '{name}' is missing (expected shape {tuple(ref.shape)})")
        if tuple(state[name].shape) != tuple(ref.shape):
            raise CheckpointError(f"{source}: tensor '{name}' has shape {tuple(state[name].shape)}, "
                                  f"expected {tuple(ref.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor '{extra[0]}'" + (f" (+{len(extra) - 1} more)" if len(extra) > 1 else ""))
    dtype = next(iter(expected.values())).dtype
    on_meta = any(t.is_meta for t in expected.values())
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=not allow_missing, assign=on_meta)


def resolve_folder(name_or_path: str | os.PathLike, *, allow_download: bool = True) -> Path:
    """A local folder, or a hub repo id ("owner/name") fetched into the huggingface_hub cache."""
    path = Path(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: expected a checkpoint folder")
        return path
    text = str(name_or_path)
    if text.count("/") != 1 or text.startswith((".", "/")) or not allow_download:
        raise CheckpointError(f"{text}: no such folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "transformer/*"]))
    except Exception as e:
        raise CheckpointError(
            f"could not fetch '{text}' from the Hugging Face hub ({type(e).__name__}). Without network access, "
            f"download it elsewhere (e.g. `huggingface-cli download {text} --local-dir ./{text.split('/')[-1]}`), "
            f"copy the folder here and pass its path instead.") from None


def load_diffusers_transformer(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu",
                               dtype: torch.dtype = torch.float32) -> WanDiT:
    """Our DiT from a diffusers ``WanTransformer3DModel`` folder (or a pipeline folder with ``transformer/``)."""
    folder = resolve_folder(name_or_path)
    if (folder / "transformer" / "config.json").exists():
        folder = folder / "transformer"
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise CheckpointError(f"{folder}: no config.json")
    cfg = ModelConfig.from_diffusers(json.loads(cfg_file.read_text()))
    with torch.device("meta"):
        model = WanDiT(cfg)
    model = model.to(dtype=dtype)
    load_state_checked(model, read_folder_tensors(folder), str(folder))
    return model.to(device)


# -- our own checkpoints: config.json (preset + metadata) and model.safetensors -----------------------------

def save_checkpoint(folder: str | os.PathLike, model: WanDiT, preset: Preset, *,
                    metadata: dict[str, Any] | None = None, dtype: torch.dtype | None = None,
                    max_shard_mb: float | None = None) -> Path:
    """config.json + model.safetensors, or shards of at most ``max_shard_mb`` with an index (a Space's
    plain-git limit is 10 MB per file)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    for old in list(folder.glob("model*.safetensors")) + list(folder.glob("model*.safetensors.index.json")):
        old.unlink()
    shards: list[dict[str, torch.Tensor]] = [{}]
    limit = None if max_shard_mb is None else max_shard_mb * 2**20
    size = 0
    for k, v in state.items():
        nbytes = v.numel() * v.element_size()
        if limit is not None and shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nbytes
    if len(shards) == 1:
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, folder / "model.safetensors")
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(folder / (name + ".tmp")), metadata={"format": "pt"})
            os.replace(folder / (name + ".tmp"), folder / name)
            weight_map.update({k: name for k in shard})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}, indent=1) + "\n")
    config = {"preset": preset.to_dict(), **(metadata or {})}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "checkpoints"


def shipped_configs() -> list[tuple[Path, dict[str, Any]]]:
    """(folder, config.json) of every shipped checkpoint and codec under assets/checkpoints, by name."""
    configs = sorted(SHIPPED.glob("*/config.json"))
    return [(cfg.parent, json.loads(cfg.read_text())) for cfg in configs]


def shipped_tiny_codecs() -> list[tuple[Path, dict[str, Any], bool]]:
    """(folder, config.json, tuned) of every shipped tiny codec, untuned ones first, then by name. A tuned
    decoder (`train-codec --tune-decoder`) keeps its base's latent space: ``latent_sha256`` names it."""
    found = [(folder, meta, meta.get("latent_sha256", meta.get("sha256")) != meta.get("sha256"))
             for folder, meta in shipped_configs() if meta.get("codec") == "tiny"]
    return sorted(found, key=lambda fmt: fmt[2])     # stable: name order kept within each group


def read_checkpoint_config(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{folder}: no config.json (not a FashionChameleon checkpoint folder)")
    try:
        return json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file}: invalid JSON ({e})") from None


def load_checkpoint(folder: str | os.PathLike, *, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> tuple[WanDiT, Preset, dict[str, Any]]:
    """(model, preset, metadata) from one of our checkpoint folders."""
    folder = resolve_folder(folder)
    meta = read_checkpoint_config(folder)
    if "preset" not in meta:
        raise CheckpointError(f"{folder}/config.json: no 'preset' entry")
    preset = Preset.from_dict(meta["preset"])
    with torch.device("meta"):
        model = WanDiT(preset.model)
    model = model.to(dtype=dtype)
    load_state_checked(model, read_folder_tensors(folder), str(folder))
    return model.to(device).eval(), preset, meta
