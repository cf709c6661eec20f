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
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# TinyCodec
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TinyCodecConfig:
    latent_channels: int = 16
    spatial_compression: int = 8
    enc_channels: tuple[int, int, int, int] = (12, 32, 64, 128)   # widths at 1/2, 1/4 (and decoder 1/2), 1/8
    latent_width: int = 160      # decoder features at latent resolution
    frame_width: int = 128       # decoder features per frame after temporal growth

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TinyCodecConfig":
        d = dict(d)
        d["enc_channels"] = tuple(d.get("enc_channels", cls.enc_channels))
        return cls(**d)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class MemBlock(nn.Module):
    """Residual block that also sees the previous latent's input (one latent of temporal memory)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(2 * c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(torch.cat([x, past], 1)))))


class TinyCodec(nn.Module, LatentCodec):
    def __init__(self, config: TinyCodecConfig = TinyCodecConfig()):
        super().__init__()
        if config.spatial_compression != 8:
            raise ValueError("TinyCodec compresses 8x spatially")
        self.config = config
        self.latent_channels = config.latent_channels
        self.spatial_compression = config.spatial_compression
        c0, c1, c2, c3 = config.enc_channels
        # Space-to-depth steps (PixelUnshuffle) keep the full-resolution layers thin and the net easy to train.
        self.frame_encoder = nn.Sequential(
            nn.PixelUnshuffle(2), nn.Conv2d(12, c0, 3, padding=1), ResBlock(c0),
            nn.PixelUnshuffle(2), nn.Conv2d(4 * c0, c1, 3, padding=1), ResBlock(c1),
            nn.PixelUnshuffle(2), nn.Conv2d(4 * c1, c3, 3, padding=1), ResBlock(c3),
        )
        self.group_encoder = nn.Sequential(
            nn.Conv2d(TEMPORAL * c3, c3, 1), ResBlock(c3), nn.SiLU(), nn.Conv2d(c3, config.latent_channels, 3, padding=1),
        )
        L, Fw = config.latent_width, config.frame_width
        self.latent_in = nn.Conv2d(config.latent_channels, L, 3, padding=1)
        self.mem = nn.ModuleList([MemBlock(L), MemBlock(L)])
        self.grow = nn.Conv2d(L, TEMPORAL * Fw, 1)
        self.frame_decoder = nn.Sequential(
            nn.SiLU(), nn.Conv2d(Fw, 4 * c2, 3, padding=1), nn.PixelShuffle(2), ResBlock(c2),   # 32x32
            nn.SiLU(), nn.Conv2d(c2, 4 * c1, 3, padding=1), nn.PixelShuffle(2),                 # 64x64
            nn.SiLU(), nn.Conv2d(c1, 4 * c0, 3, padding=1), nn.PixelShuffle(2),                 # 128x128
            nn.SiLU(), nn.Conv2d(c0, 3, 3, padding=1),
        )
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))

    # -- encoding ---------------------------------------------------------------------------------------------
    def encode_raw(self, video: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = video.shape
        n = latent_frames(t)
        if h % 8 or w % 8:
            raise ValueError(f"frame size {w}x{h} is not a multiple of 8")
        feats = self.frame_encoder(video.transpose(1, 2).reshape(b * t, 3, h, w))
        feats = feats.view(b, t, *feats.shape[1:])
        # group 0 = frame 0 repeated (a still image), group i = frames 4i-3..4i
        groups = torch.cat([feats[:, :1].expand(b, TEMPORAL, *feats.shape[2:]), feats[:, 1:]], 1)
        groups = groups.reshape(b * n, TEMPORAL * feats.shape[2], *feats.shape[3:])
        z = self.group_encoder(groups)
        return z.view(b, n, *z.shape[1:]).transpose(1, 2)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        z = self.encode_raw(video)
        return (z - self.latent_mean.view(1, -1, 1, 1, 1)) / self.latent_std.view(1, -1, 1, 1, 1)

    # -- decoding ---------------------------------------------------------------------------------------------
    def decode_raw(self, z: torch.Tensor, memory: list[torch.Tensor] | None, first: bool
                   ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decode raw latents (b, C, n, h, w) given the memory from the latent before; returns frames and memory."""
        b, c, n, h, w = z.shape
        x = self.latent_in(z.transpose(1, 2).reshape(b * n, c, h, w)).view(b, n, -1, h, w)
        new_memory = []
        for k, block in enumerate(self.mem):
            past = memory[k] if memory is not None else torch.zeros_like(x[:, :1])
            prev = torch.cat([past, x[:, :-1]], 1)         # each latent sees the one before it
            new_memory.append(x[:, -1:])
            x = block(x.flatten(0, 1), prev.flatten(0, 1)).view(b, n, -1, h, w)
        g = self.grow(x.flatten(0, 1)).view(b * n * TEMPORAL, -1, h, w)
        frames = self.frame_decoder(g).view(b, n, TEMPORAL, 3, h * 8, w * 8)
        frames = frames.flatten(1, 2)                       # (b, 4n, 3, H, W)
        if first:
            frames = frames[:, TEMPORAL - 1:]               # latent 0 is a single frame
        return frames.transpose(1, 2), new_memory

    def stream_decoder(self) -> "TinyStreamDecoder":
        return TinyStreamDecoder(self)

    def decode_train(self, z_normalised: torch.Tensor) -> torch.Tensor:
        """Full decode with gradients (training); numerically the same as the stream decoder."""
        z = z_normalised * self.latent_std.view(1, -1, 1, 1, 1) + self.latent_mean.view(1, -1, 1, 1, 1)
        return self.decode_raw(z, None, True)[0]

    @property
    def sha256(self) -> str:
        return state_sha256(self.state_dict())

    # -- files ------------------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "codec.safetensors.tmp"))
        os.replace(folder / "codec.safetensors.tmp", folder / "codec.safetensors")
        meta = {"codec": "tiny", "config": self.config.to_dict(), "sha256": state_sha256(state), **(extra or {})}
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
