"""Model and streaming presets as small dataclasses.

A preset names everything needed to build the network (``ModelConfig``), the latent space it works in
(``latent_channels``, compression factors) and how it streams (``StreamConfig``). Real Wan shapes mirror
the published diffusers configs so that their checkpoints load one to one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# The motions of the synthetic world; for `tiny` they are its whole prompt vocabulary.
TINY_PROMPTS: tuple[str, ...] = ("walk", "wave", "turn", "sway", "arms_up")
# World v2's motions (data/world_v2.py MOTIONS, repeated here because config sits below data; a test keeps
# the two equal): the prompt vocabulary of the presets trained on world v2.
TINY_V2_PROMPTS: tuple[str, ...] = ("sway", "turn", "hair", "collar", "hips", "walk", "wave", "arms_up")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the Wan-family video DiT (field names follow diffusers' ``WanTransformer3DModel``)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_attention_heads: int = 4
    attention_head_dim: int = 64
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 64
    freq_dim: int = 256
    ffn_dim: int = 1024
    num_layers: int = 8
    cross_attn_norm: bool = True
    eps: float = 1e-6
    rope_max_seq_len: int = 1024
    # `tiny` learns one embedding per prompt of this vocabulary instead of running a text encoder;
    # an empty tuple means the model takes text embeddings (umT5 for the real shapes) as input.
    prompt_vocab: tuple[str, ...] = ()
    # Latent channels of the reference frame concatenated to every input frame, as Wan's image-to-video
    # models concatenate their condition latent (0: none, the reference is only in the attention prefix).
    # Spatially aligned, it makes copying the scene and the person outside the garment a local operation
    # instead of an attention lookup that a tiny network renders as 16-px blocks.
    reference_channels: int = 0
    # A learned copy gate (needs reference_channels == out_channels): per latent position the network also
    # says how much of its output is the reference itself, v <- v + g ((x_t - reference) / sigma - v), the
    # velocity that lands exactly on the reference. Copying what did not change becomes one gate value
    # instead of a reconstruction; the gate starts at 0 (the network without it). No diffusers counterpart.
    reference_copy: bool = False
    # The copy gate closes where the network's own clean estimate is already far from the reference (fully open
    # within this distance, L2 over channels per latent position, shut at twice it; 0: no cut): a training-free
    # check on a gate whose features cannot tell a new garment from the unchanged scene well enough. (It does not
    # catch a garment the early estimates still draw like the reference's: MODEL_CARD.md.)
    copy_cut: float = 0.0
    # A small head that reads the reference latent alone and marks where the copy must not reach: the person
    # (moving limbs too) or only where garments can sit, as `train-region --target` fitted it. The copy gate is
    # shut there, the mark spread by ``region_dilation`` latent positions for the motion since the reference.
    # The gate's own features do not tell the reference's garment or a moving arm from the unchanged scene
    # (sessions 22-23): this cue does. Fitted after the network, by `train-region`; needs reference_copy.
    region_head: bool = False
    region_dilation: int = 1

    def __post_init__(self) -> None:
        if self.reference_copy and self.reference_channels != self.out_channels:
            raise ValueError(f"reference_copy needs reference_channels == out_channels ({self.out_channels}), "
                             f"got {self.reference_channels}")
        if self.copy_cut and (not self.reference_copy or not self.copy_cut > 0):
            raise ValueError(f"copy_cut is a positive distance of a model with reference_copy, got {self.copy_cut}")
        if self.region_head and not self.reference_copy:
            raise ValueError("region_head shuts the copy gate: it needs a model with reference_copy")
        if not 0 <= self.region_dilation <= 8:
            raise ValueError(f"region_dilation is 0-8 latent positions, got {self.region_dilation}")

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        d["prompt_vocab"] = list(self.prompt_vocab)
        for name in ("reference_channels", "reference_copy", "copy_cut", "region_head"):
            if not d[name]:                 # configs without them keep their config.json as it was
                del d[name]
        if not self.region_head:
            del d["region_dilation"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        d = dict(d)
        if "patch_size" in d:
            d["patch_size"] = tuple(d["patch_size"])
        if "prompt_vocab" in d:
            d["prompt_vocab"] = tuple(d["prompt_vocab"])
        return cls(**d)

    @classmethod
    def from_diffusers(cls, d: dict[str, Any]) -> "ModelConfig":
        """Our config from a diffusers ``WanTransformer3DModel`` config.json (variants we do not model fail)."""
        if d.get("image_dim") or d.get("added_kv_proj_dim"):
            raise ValueError("image-conditioned Wan variants (image_dim / added_kv_proj_dim) are not supported")
        if d.get("qk_norm", "rms_norm_across_heads") != "rms_norm_across_heads":
            raise ValueError(f"unsupported qk_norm {d.get('qk_norm')!r}")
        keep = {f.name for f in dataclasses.fields(cls)} - {"prompt_vocab", "reference_channels", "reference_copy",
                                                            "copy_cut", "region_head", "region_dilation"}
        ours = {k: v for k, v in d.items() if k in keep}
        refs = int(d.get("_fashionchameleon_reference_channels") or 0)
        if refs:
            ours.update(in_channels=ours["in_channels"] - refs, reference_channels=refs)
        return cls.from_dict(ours)

    def to_diffusers(self) -> dict[str, Any]:
        if self.reference_copy:
            raise ValueError("a model with reference_copy has no diffusers counterpart (WanTransformer3DModel has no "
                             "copy gate); keep it in our safetensors format")
        d = self.to_dict()
        d.pop("prompt_vocab")
        # diffusers' in_channels counts the concatenated condition channels too (as Wan image-to-video's 36)
        # (a "_" key, which diffusers' loader passes over, keeps how many are ours for the way back)
        refs = d.pop("reference_channels", 0)
        if refs:
            d.update(in_channels=self.in_channels + refs, _fashionchameleon_reference_channels=refs)
        d.update(_class_name="WanTransformer3DModel", qk_norm="rms_norm_across_heads", image_dim=None,
                 added_kv_proj_dim=None, pos_embed_seq_len=None)
        return d


@dataclass(frozen=True)
class StreamConfig:
    """How the block-causal student streams (all in latent frames)."""

    block_frames: int = 3          # latent frames denoised together
    sink_frames: int = 3           # first generated frames kept forever (attention sink)
    window_frames: int = 6         # rolling history after the sink
    keep_recent: int = 3           # history frames a garment switch keeps (re-cached under the new prefix)
    withdraw_sink: bool = True     # whether a switch also withdraws the sink (it shows the old garment)
    reference_mix: float = 0.75    # `full`: last-frame share of the reference rebuilt at a switch (1 = paper)
    reanchor_after: int = 1        # `full`: blocks after a switch until the original reference is back (0: never)
    reanchor_mix: float = 0.0      # `full`: the switch's last-frame share in the reference put back then
    reference_gate: float = 0.0    # `full`: where the last frame moved (diff > gate x mean), no blend (0: off)
    switch_guidance: float = 1.0   # `full`: guidance away from the old garment after a switch (1: off)
    switch_guidance_blocks: int = 1  # ... on how many blocks
    switch_guidance_steps: int = 0   # ... on how many of a block's denoising steps, from the first (0: all)
    denoise_timesteps: tuple[int, ...] = (1000, 750, 500, 250)
    timestep_shift: float = 5.0    # flow-matching shift applied to the nominal timesteps
    # every variant: a generated latent position within this distance (L2 over channels) of the reference's
    # is snapped onto it, fading back to the model's estimate at twice the distance (0: off). What a tiny
    # network copies through attention comes out blurred into its token grid; this copies it exactly.
    reference_snap: float = 0.0
    # every variant: decoded frames go through a deblocking filter (model/deblock.py) that smooths the token
    # and codec grid seams whose excess step is below this fraction of the pixel range (0: off)
    deblock: float = 0.0

    def __post_init__(self) -> None:
        # the one range check of the switch settings (command-line overrides, `average`, config.json files)
        if self.block_frames < 1:
            raise ValueError(f"block_frames must be >= 1, got {self.block_frames}")
        for name in ("sink_frames", "window_frames", "keep_recent", "reanchor_after", "switch_guidance_blocks",
                     "switch_guidance_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("reference_mix", "reanchor_mix"):
            if not 0.0 <= getattr(self, name) <= 1.0:      # also refuses NaN
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("reference_gate", "switch_guidance", "reference_snap", "deblock"):
            if not 0.0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["denoise_timesteps"] = list(self.denoise_timesteps)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StreamConfig":
        d = dict(d)
        if "denoise_timesteps" in d:
            d["denoise_timesteps"] = tuple(d["denoise_timesteps"])
        return cls(**d)


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    stream: StreamConfig = field(default_factory=StreamConfig)
    resolution: tuple[int, int] = (128, 128)    # (width, height) of generated video
    fps: int = 16
    latent_channels: int = 16
    temporal_compression: int = 4
    spatial_compression: int = 8
    train_latent_frames: int = 9                # video latent frames of a training clip (the 2 condition
                                                # frames come on top: the official "23" is 2 + 21)
    world_version: int = 1                      # the synthetic world that trains and evaluates it: 1 (square,
                                                # the shipped `tiny`) or 2 (portrait, data/world_v2.py)

    @property
    def world_size(self) -> int | tuple[int, int]:
        """The ``size`` the world's renderers take: v1 draws squares (an int; a portrait resolution is the
        centre crop of a square, for evaluating portrait models on v1 seeds), v2 (width, height)."""
        w, h = self.resolution
        if self.world_version == 1 and w == h:
            return h
        return (w, h)

    def training_world(self) -> tuple[int, int | tuple[int, int]]:
        """(world version, render size) that trains this preset. World 1 draws squares: its portrait crops
        (fine for evaluation) cut off heads and feet, so a non-square preset must train on world 2."""
        w, h = self.resolution
        if self.world_version == 1 and w != h:
            raise ValueError(f"{self.name} is {w}x{h} on world 1, which draws squares (a portrait crop cuts off "
                             "heads and feet): train a non-square preset on world 2 (world_version=2)")
        return self.world_version, self.world_size

    @property
    def latent_size(self) -> tuple[int, int]:
        """(height, width) of a latent frame."""
        w, h = self.resolution
        return h // self.spatial_compression, w // self.spatial_compression

    @property
    def train_video_frames(self) -> int:
        """Video frames of a training clip (4x temporal compression, the first frame alone)."""
        return 1 + self.temporal_compression * (self.train_latent_frames - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(frames, channels, height, width) of a training sequence, condition frames included (as the
        official configs' ``image_or_video_shape``)."""
        return (2 + self.train_latent_frames, self.latent_channels, *self.latent_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "model": self.model.to_dict(), "stream": self.stream.to_dict(),
            "resolution": list(self.resolution), "fps": self.fps, "latent_channels": self.latent_channels,
            "temporal_compression": self.temporal_compression,
            "spatial_compression": self.spatial_compression, "train_latent_frames": self.train_latent_frames,
            # written only when it is not v1, so v1 configs (the shipped checkpoint's) stay byte-identical
            **({"world_version": self.world_version} if self.world_version != 1 else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preset":
        d = dict(d)
        d["model"] = ModelConfig.from_dict(d["model"])
        d["stream"] = StreamConfig.from_dict(d.get("stream", {}))
        d["resolution"] = tuple(d.get("resolution", (128, 128)))
        return cls(**d)


# Wan-AI/Wan2.2-TI2V-5B-Diffusers' transformer (one network, two framings below).
_WAN22_5B = ModelConfig(num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
                        text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30)

# World v2 pilot candidates (issue 17; docs/train-tiny.md, "v2 pilot"): portrait framing, the v1 codec
# geometry (16 channels, 8x) and tiny's streaming window. Tokens a latent frame: a 84 (7x12 of 16x16 px),
# b 112 (8x14 of 16x16 px, more pixels), c 168 (14x12 of 8 px wide x 16 px tall: a standing person's
# arms and edges are mostly vertical; a narrower, shallower network pays for the tokens -- square 8 px
# tokens, 336 a frame, cost 3x tiny's DiT even at width 128 and cannot stream at 20 fps on 2 cores).
# Per-block costs measured for each are in the docs. `a` won the pilot; its student is the embedded default.
_TINY_V2_A = Preset(
    name="tiny-v2-a",
    model=ModelConfig(num_attention_heads=4, attention_head_dim=64, text_dim=64, freq_dim=256, ffn_dim=1024,
                      num_layers=8, prompt_vocab=TINY_V2_PROMPTS),
    # reference_mix 0.5 (tiny's 0.75): the v2 network copies a pose-aligned reference, so the last frame's
    # old garment pulls the repainted torso toward it; chosen on training seeds (MODEL_CARD, "The average
    # of forcing and GR-DMD")
    stream=StreamConfig(block_frames=3, sink_frames=3, window_frames=3, keep_recent=0, reference_mix=0.5),
    resolution=(112, 192), train_latent_frames=9, world_version=2,
)
_TINY_V2_REF = dataclasses.replace(_TINY_V2_A, name="tiny-v2-ref",
                                   model=dataclasses.replace(_TINY_V2_A.model, reference_channels=16))
_TINY_V2_COPY = dataclasses.replace(_TINY_V2_REF, name="tiny-v2-copy",
                                    model=dataclasses.replace(_TINY_V2_REF.model, reference_copy=True))

PRESETS: dict[str, Preset] = {
    # The first model's (the CPU default until tiny-v2-a): 64 tokens per latent frame at 128x128 (8x VAE,
    # 2x2 patches). The visible window (2 prefix + 3 sink + 3 history + 3 block = 11 frames) is exactly the
    # training clip with its prefix, so no position ever exceeds what training saw.
    "tiny": Preset(
        name="tiny",
        model=ModelConfig(num_attention_heads=4, attention_head_dim=64, in_channels=16, out_channels=16,
                          text_dim=64, freq_dim=256, ffn_dim=1024, num_layers=8, prompt_vocab=TINY_PROMPTS),
        stream=StreamConfig(block_frames=3, sink_frames=3, window_frames=3, keep_recent=0),
        train_latent_frames=9,
    ),
    # A few-thousand-parameter stand-in used by the tests (32x32 video, 4x4 latents): not a real model.
    "micro": Preset(
        name="micro",
        model=ModelConfig(num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                          text_dim=8, freq_dim=16, ffn_dim=32, num_layers=2, prompt_vocab=TINY_PROMPTS),
        resolution=(32, 32), train_latent_frames=6, stream=StreamConfig(sink_frames=3, window_frames=3, keep_recent=3),
    ),
    # World v2 pilot candidates: see _TINY_V2_A above.
    "tiny-v2-a": _TINY_V2_A,
    # tiny-v2-a with the reference latent also concatenated to every frame's channels (Wan image-to-video's
    # way of conditioning): 16 more input channels of the patch embedding, the same cost otherwise. Trained
    # from a tiny-v2-a teacher whose patch embedding gains zero weights for them (train --init).
    "tiny-v2-ref": _TINY_V2_REF,
    # tiny-v2-ref with the learned copy gate (ModelConfig.reference_copy): one more linear head of 4 outputs
    # per token. Trained from a tiny-v2-ref network whose gate starts closed (train --init).
    "tiny-v2-copy": _TINY_V2_COPY,
    # tiny-v2-copy with the region head (ModelConfig.region_head) that shuts the gate on the person, as
    # `train-region` fits it (session 23's tuned dilation): train from a checkpoint that holds a fitted head.
    "tiny-v2-region": dataclasses.replace(_TINY_V2_COPY, name="tiny-v2-region", model=dataclasses.replace(
        _TINY_V2_COPY.model, region_head=True, region_dilation=2)),
    "tiny-v2-b": Preset(
        name="tiny-v2-b",
        model=ModelConfig(num_attention_heads=4, attention_head_dim=64, text_dim=64, freq_dim=256, ffn_dim=1024,
                          num_layers=8, prompt_vocab=TINY_V2_PROMPTS),
        stream=StreamConfig(block_frames=3, sink_frames=3, window_frames=3, keep_recent=0),
        resolution=(128, 224), train_latent_frames=9, world_version=2,
    ),
    "tiny-v2-c": Preset(
        name="tiny-v2-c",
        model=ModelConfig(patch_size=(1, 2, 1), num_attention_heads=3, attention_head_dim=64, text_dim=64,
                          freq_dim=256, ffn_dim=768, num_layers=6, prompt_vocab=TINY_V2_PROMPTS),
        stream=StreamConfig(block_frames=3, sink_frames=3, window_frames=3, keep_recent=0),
        resolution=(112, 192), train_latent_frames=9, world_version=2,
    ),
    # A few-thousand-parameter stand-in on world v2 for the tests (32x48 portrait video, 4x6 latents) with
    # tiny's clip length and window: not a real model.
    "micro-v2": Preset(
        name="micro-v2",
        model=ModelConfig(num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                          text_dim=8, freq_dim=16, ffn_dim=32, num_layers=2, prompt_vocab=TINY_V2_PROMPTS),
        stream=StreamConfig(block_frames=3, sink_frames=3, window_frames=3, keep_recent=0),
        resolution=(32, 48), train_latent_frames=9, world_version=2,
    ),
    # Published diffusers configs (Wan-AI/Wan2.1-T2V-1.3B-Diffusers, Wan-AI/Wan2.2-TI2V-5B-Diffusers).
    "wan2.1-1.3b": Preset(
        name="wan2.1-1.3b",
        model=ModelConfig(num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                          text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30),
        resolution=(832, 480), fps=16, latent_channels=16, spatial_compression=8, train_latent_frames=21,
        # 2 prefix + 3 sink + 15 history + 3 block = 23 = the training sequence with its prefix
        stream=StreamConfig(sink_frames=3, window_frames=15),
    ),
    # FashionChameleon's released configs (QuanjianSong/FashionChameleon, configs/*_wan22_ic.yaml): portrait
    # 704 wide x 1280 high, latent (23, 48, 80, 44) = 2 condition frames + 21 video latent frames (81 video
    # frames at 24 fps), 880 tokens per latent frame, blocks of 3, steps 1000/750/500/250 with shift 5.
    # The visible window while streaming, 2 prefix + 3 sink + 15 history + 3 block = 23 frames, is the
    # training sequence: no position ever exceeds what training saw.
    "wan2.2-ti2v-5b": Preset(
        name="wan2.2-ti2v-5b",
        model=_WAN22_5B,
        resolution=(704, 1280), fps=24, latent_channels=48, spatial_compression=16, train_latent_frames=21,
        stream=StreamConfig(block_frames=3, sink_frames=3, window_frames=15,
                            denoise_timesteps=(1000, 750, 500, 250), timestep_shift=5.0),
    ),
    # The same network at Wan2.2's default landscape 1280x704 (e.g. for the published text/image-to-video
    # checkpoints as they are); not what FashionChameleon trains on.
    "wan2.2-ti2v-5b-landscape": Preset(
        name="wan2.2-ti2v-5b-landscape",
        model=_WAN22_5B,
        resolution=(1280, 704), fps=24, latent_channels=48, spatial_compression=16, train_latent_frames=21,
        stream=StreamConfig(block_frames=3, sink_frames=3, window_frames=15),
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(PRESETS)}") from None
