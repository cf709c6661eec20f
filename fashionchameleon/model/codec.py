"""Latent video codecs: one interface, two implementations.

Video tensors are (batch, 3, frames, height, width) in [-1, 1]; latents are (batch, channels, latent frames,
h, w), normalised per channel. Both codecs are causal in time like Wan's VAE: latent 0 holds frame 0 alone,
latent i >= 1 holds frames 4i-3 .. 4i, so ``encode_image(x)`` equals the first latent of ``encode`` of a
1-frame video, and a stream decodes block by block through ``stream_decoder()``, which keeps its temporal
state so the chunks join without seams.

* ``TinyCodec``: trained here on the synthetic world (16 channels, 4x temporal, 8x spatial compression).
  A per-frame convolutional encoder, then each group of four frame features is fused into one latent. The
  decoder expands a latent into four frames (TAEHV-style temporal growth) and carries one latent of memory.
* ``WanVAECodec``: diffusers' ``AutoencoderKLWan`` (real checkpoints), streamed through its feature cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

TEMPORAL = 4


def latent_frames(video_frames: int) -> int:
    if video_frames < 1 or (video_frames - 1) % TEMPORAL:
        raise ValueError(f"a video must have 1 + 4k frames, got {video_frames}")
    return 1 + (video_frames - 1) // TEMPORAL


def video_frames(num_latent_frames: int) -> int:
    return 1 + TEMPORAL * (num_latent_frames - 1)


class StreamDecoder:
    """Decodes a latent stream block by block; the first latent yields 1 frame, every other one 4."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LatentCodec:
    latent_channels: int
    temporal_compression: int = TEMPORAL
    spatial_compression: int

    @property
    def sha256(self) -> str:
        raise NotImplementedError

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """(b, 3, H, W) in [-1, 1] -> (b, C, 1, h, w): an image as the first latent of a 1-frame video."""
        return self.encode(image[:, :, None])

    @property
    def latent_sha256(self) -> str:
        """Identifies the latent space (what checkpoints and latent banks depend on): the codec's own hash,
        or, for a decoder fine-tuned with the encoder frozen, the hash of the codec it was tuned from."""
        return self.sha256

    def stream_decoder(self) -> StreamDecoder:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.stream_decoder().decode(latents)


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """Content hash of a state dict (names, dtypes, shapes and bytes), independent of the file format."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        # reshape: a 0-dim tensor (a scalar parameter) cannot be viewed as bytes; the bytes are the same
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# TinyCodec
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TinyCodecConfig:
    latent_channels: int = 16
    spatial_compression: int = 8
    width: int = 128             # channels of the convolutional refinements (at latent resolution)
    enc_blocks: int = 2
    dec_blocks: int = 3
    pixel_width: int = 0         # channels of a full-resolution refinement after the patch decoder (0: none)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.pixel_width:     # codecs without it keep their config.json as it was
            del d["pixel_width"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TinyCodecConfig":
        return cls(**d)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


def is_encoder_tensor(name: str) -> bool:
    """Whether ``encode`` depends on this tensor: the encoder, the latent normalisation, and the patch mean
    (the decoder's ``dec_proj.bias``, which the encoder subtracts too)."""
    return name.startswith(("enc_", "latent_")) or name == "dec_proj.bias"


GRID_PERIOD = 16   # px: the token grid of a 2x2-patch model on an 8x codec (the codec's own 8-px grid divides it)


def grid_phase(h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """(1, 4, h, w): sine and cosine of the position within the 16-px grid, rows then columns. They tell a
    convolution where block seams fall, which it could not know from pixels alone (it is shift-invariant)."""
    ang = [2 * torch.pi * torch.arange(n, device=device, dtype=torch.float32) / GRID_PERIOD for n in (h, w)]
    y = torch.stack([ang[0].sin(), ang[0].cos()])[:, :, None].expand(2, h, w)
    x = torch.stack([ang[1].sin(), ang[1].cos()])[:, None, :].expand(2, h, w)
    return torch.cat([y, x])[None].to(dtype or torch.float32)


def _refiner(c_in: int, width: int, blocks: int, c_out: int) -> nn.Sequential:
    out = nn.Conv2d(width, c_out, 3, padding=1)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)   # starts as the identity around the linear codec
    return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), *[ResBlock(width) for _ in range(blocks)], nn.SiLU(), out)


class TinyCodec(nn.Module, LatentCodec):
    """A linear patch codec (initialised from PCA of 8x8x4-frame patch groups) plus convolutional refinements.

    A latent position summarises an 8x8 patch over a group of four frames (768 values -> 16). The linear
    part alone is a PCA codec (about 28 dB on the world); the refinements, zero-initialised, learn what a
    linear map cannot (edges across patch borders, motion). The decoder's refinement also sees the previous
    latent: one latent of temporal memory, the streaming decoder's whole state.
    """

    def __init__(self, config: TinyCodecConfig = TinyCodecConfig()):
        super().__init__()
        if config.spatial_compression != 8:
            raise ValueError("TinyCodec compresses 8x spatially")
        self.config = config
        self.latent_channels = config.latent_channels
        self.spatial_compression = config.spatial_compression
        d = TEMPORAL * 3 * 64
        self.patch_dim = d
        self.enc_proj = nn.Conv2d(d, config.latent_channels, 1)
        self.enc_refine = _refiner(d, config.width, config.enc_blocks, config.latent_channels)
        self.dec_proj = nn.Conv2d(config.latent_channels, d, 1)
        self.dec_refine = _refiner(2 * config.latent_channels, config.width, config.dec_blocks, d)
        # a small per-frame convolution over the decoded pixels: the patch decoder writes each 8x8 block on its
        # own, and this smooths the seams between blocks (and the model's 16-px tokens). Per frame, so
        # streaming needs no extra state. Zero-initialised: adding it changes nothing until it is trained.
        self.dec_pixel = (nn.Sequential(nn.Conv2d(3 + 4, config.pixel_width, 3, padding=1), nn.SiLU(),
                                        nn.Conv2d(config.pixel_width, config.pixel_width, 3, padding=1), nn.SiLU(),
                                        nn.Conv2d(config.pixel_width, 3, 3, padding=1))
                          if config.pixel_width else None)
        if self.dec_pixel is not None:
            nn.init.zeros_(self.dec_pixel[-1].weight)
            nn.init.zeros_(self.dec_pixel[-1].bias)
        self.tuned_from: str | None = None      # see latent_sha256
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))

    @torch.no_grad()
    def init_pca(self, groups: torch.Tensor) -> None:
        """Initialise the linear part from patch groups (N, 768) with PCA."""
        mean = groups.mean(0)
        cov = torch.cov((groups - mean).T.double())
        _, vecs = torch.linalg.eigh(cov)
        basis = vecs[:, -self.latent_channels:].flip(1).T.float()        # (C, 768), largest first
        self.enc_proj.weight.copy_(basis[:, :, None, None])
        self.enc_proj.bias.copy_(-(basis @ mean))
        self.dec_proj.weight.copy_(basis.T[:, :, None, None])
        self.dec_proj.bias.copy_(mean)

    # -- patch groups ---------------------------------------------------------------------------------------------
    @staticmethod
    def to_groups(video: torch.Tensor) -> torch.Tensor:
        """(b, 3, t, H, W) -> (b, n, 768, H/8, W/8); group 0 is frame 0 repeated (a still image)."""
        b, c, t, h, w = video.shape
        n = latent_frames(t)
        if h % 8 or w % 8:
            raise ValueError(f"frame size {w}x{h} is not a multiple of 8")
        frames = torch.cat([video[:, :, :1].expand(b, c, TEMPORAL, h, w), video[:, :, 1:]], 2)   # (b, 3, 4n, H, W)
        x = frames.view(b, c, n, TEMPORAL, h // 8, 8, w // 8, 8)
        x = x.permute(0, 2, 3, 1, 5, 7, 4, 6)                     # b, n, frame, c, py, px, hy, wx
        return x.reshape(b, n, TEMPORAL * c * 64, h // 8, w // 8)

    @staticmethod
    def from_groups(groups: torch.Tensor) -> torch.Tensor:
        """(b, n, 768, h, w) -> (b, 3, 4n, 8h, 8w)."""
        b, n, _, h, w = groups.shape
        x = groups.view(b, n, TEMPORAL, 3, 8, 8, h, w).permute(0, 3, 1, 2, 6, 4, 7, 5)   # b, c, n, f, hy, py, wx, px
        return x.reshape(b, 3, n * TEMPORAL, h * 8, w * 8)

    # -- encoding ---------------------------------------------------------------------------------------------
    def encode_raw(self, video: torch.Tensor) -> torch.Tensor:
        g = self.to_groups(video)
        b, n = g.shape[:2]
        g = g.flatten(0, 1)
        z = self.enc_proj(g) + self.enc_refine(g - self.dec_proj.bias.view(1, -1, 1, 1))
        return z.view(b, n, *z.shape[1:]).transpose(1, 2)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        z = self.encode_raw(video)
        return (z - self.latent_mean.view(1, -1, 1, 1, 1)) / self.latent_std.view(1, -1, 1, 1, 1)

    # -- decoding ---------------------------------------------------------------------------------------------
    def decode_raw(self, z: torch.Tensor, memory: list[torch.Tensor] | None, first: bool
                   ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decode raw latents (b, C, n, h, w) given the latent before them; returns frames and the new memory."""
        b, c, n, h, w = z.shape
        zs = z.transpose(1, 2)                                           # (b, n, C, h, w)
        past = memory[0] if memory is not None else torch.zeros_like(zs[:, :1])
        prev = torch.cat([past, zs[:, :-1]], 1)
        flat, prev = zs.flatten(0, 1), prev.flatten(0, 1)
        groups = self.dec_proj(flat) + self.dec_refine(torch.cat([flat, prev], 1))
        frames = self.from_groups(groups.view(b, n, -1, h, w))
        if self.dec_pixel is not None:
            t = frames.shape[2]
            flat = frames.transpose(1, 2).flatten(0, 1)                    # (b*t, 3, H, W)
            phase = grid_phase(*flat.shape[-2:], flat.device, flat.dtype).expand(len(flat), -1, -1, -1)
            flat = flat + self.dec_pixel(torch.cat([flat, phase], 1))
            frames = flat.view(b, t, 3, *flat.shape[-2:]).transpose(1, 2)
        if first:
            frames = frames[:, :, TEMPORAL - 1:]                         # latent 0 is a single frame
        return frames, [zs[:, -1:]]

    def stream_decoder(self) -> "TinyStreamDecoder":
        return TinyStreamDecoder(self)

    @property
    def sha256(self) -> str:
        return state_sha256(self.state_dict())

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """Everything ``encode`` depends on (``is_encoder_tensor``)."""
        return {k: v for k, v in self.state_dict().items() if is_encoder_tensor(k)}

    @property
    def latent_sha256(self) -> str:
        return self.tuned_from or self.sha256

    # -- files ------------------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # half precision on disk (under 10 MB, a Space's plain-git limit); the hash is of what a load yields
        state = {k: v.detach().cpu().half().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "codec.safetensors.tmp"))
        os.replace(folder / "codec.safetensors.tmp", folder / "codec.safetensors")
        meta = {"codec": "tiny", "config": self.config.to_dict(),
                "sha256": state_sha256({k: v.float() for k, v in state.items()}), **(extra or {})}
        if self.tuned_from:   # the latent space it keeps, and the encoder that proves it (checked at load)
            enc = {k: v.float() for k, v in state.items() if is_encoder_tensor(k)}
            meta.update(latent_sha256=self.tuned_from, encoder_sha256=state_sha256(enc))
        (folder / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> "TinyCodec":
        from .loading import CheckpointError, load_state_checked, read_tensors

        folder = Path(folder)
        cfg_file = folder / "config.json"
        if not cfg_file.is_file():
            raise CheckpointError(f"{folder}: no config.json (not a codec folder)")
        meta = json.loads(cfg_file.read_text())
        codec = cls(TinyCodecConfig.from_dict(meta["config"]))
        load_state_checked(codec, read_tensors(folder / "codec.safetensors"), str(folder))
        if meta.get("latent_sha256"):
            if state_sha256(codec.encoder_state()) != meta.get("encoder_sha256"):
                raise CheckpointError(f"{folder}: its encoder is not the one whose latent space it claims "
                                      f"({meta['latent_sha256'][:12]}): the file was changed after tuning")
            codec.tuned_from = meta["latent_sha256"]
        return codec.to(device).eval()


class TinyStreamDecoder(StreamDecoder):
    def __init__(self, codec: TinyCodec):
        self.codec = codec
        self.memory: list[torch.Tensor] | None = None
        self.first = True

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        c = self.codec
        z = latents.to(c.latent_std.dtype) * c.latent_std.view(1, -1, 1, 1, 1) + c.latent_mean.view(1, -1, 1, 1, 1)
        frames, self.memory = c.decode_raw(z, self.memory, self.first)
        self.first = False
        return frames.clamp(-1, 1)


# ----------------------------------------------------------------------------------------------------------
# Wan VAE through diffusers
# ----------------------------------------------------------------------------------------------------------

class WanVAECodec(LatentCodec):
    """diffusers ``AutoencoderKLWan`` behind the codec interface (latents normalised with its mean/std)."""

    def __init__(self, vae):
        self.vae = vae.eval()
        cfg = vae.config
        self.latent_channels = cfg.z_dim
        self.spatial_compression = getattr(vae, "spatial_compression_ratio", 8) * (cfg.patch_size or 1)
        p = next(vae.parameters())
        self._mean = torch.tensor(cfg.latents_mean, dtype=p.dtype, device=p.device).view(1, -1, 1, 1, 1)
        self._std = torch.tensor(cfg.latents_std, dtype=p.dtype, device=p.device).view(1, -1, 1, 1, 1)

    @classmethod
    def from_pretrained(cls, name_or_path: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> "WanVAECodec":
        from diffusers import AutoencoderKLWan

        from .loading import resolve_folder

        folder = resolve_folder(name_or_path)
        if (folder / "vae" / "config.json").exists():
            folder = folder / "vae"
        return cls(AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype).to(device))

    @property
    def sha256(self) -> str:
        return state_sha256(self.vae.state_dict())

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        latent_frames(video.shape[2])
        z = self.vae.encode(video.to(self._mean.dtype)).latent_dist.mode()
        return (z - self._mean) / self._std

    def stream_decoder(self) -> "WanStreamDecoder":
        return WanStreamDecoder(self)


class WanStreamDecoder(StreamDecoder):
    """Calls the Wan decoder one latent frame at a time, keeping its causal-convolution feature cache."""

    def __init__(self, codec: WanVAECodec):
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        self.codec = codec
        self.vae = codec.vae
        self.feat_map = [None] * self.vae._cached_conv_counts["decoder"]
        self.first = True
        self._unpatchify = unpatchify

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.to(self.codec._std.dtype) * self.codec._std + self.codec._mean
        x = self.vae.post_quant_conv(z)
        outs = []
        for i in range(x.shape[2]):
            out = self.vae.decoder(x[:, :, i:i + 1], feat_cache=self.feat_map, feat_idx=[0], first_chunk=self.first)
            self.first = False
            outs.append(out)
        out = torch.cat(outs, 2)
        if self.vae.config.patch_size is not None:
            out = self._unpatchify(out, patch_size=self.vae.config.patch_size)
        return out.clamp(-1, 1)


def load_codec(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> LatentCodec:
    """A codec folder of ours (config.json with "codec": "tiny") or a diffusers Wan VAE folder / repo id."""
    folder = Path(name_or_path)
    cfg = folder / "config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("codec") == "tiny":
        return TinyCodec.load(folder, device)
    return WanVAECodec.from_pretrained(str(name_or_path), device=str(device))
