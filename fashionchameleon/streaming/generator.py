"""The streaming generator: prefill a person and a garment, then stream chunks of video while garment
switches, prompt changes and stops arrive from any thread (or process).

    gen = StreamingGenerator.from_pretrained()
    with gen.session(person, garment, prompt="wave", seed=0) as session:
        for chunk in session:                 # chunk.frames, chunk.index, chunk.garment, chunk.timings
            show(chunk.frames)
            if user_clicked:
                session.post_switch(other_garment)

Per block: commit the previous block at t=0 (its keys/values enter the KV cache), apply pending events (the
rescheduler handles a switch), denoise the block in a few steps against the cache, decode it with the
streaming codec. A block is committed only when the next one is asked for: its frames reach the viewer a
commit pass sooner, and the last block of a stream never pays for a commit nobody reads.
"""

from __future__ import annotations

import collections
import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..config import Preset, StreamConfig, get_preset
from ..media import fit_garment, fit_person, load_image
from ..model import causal
from ..model.dit import far_from_reference
from ..model.deblock import deblock
from ..model.kv_cache import WindowPolicy
from ..model.loading import shipped_configs, shipped_tiny_codecs
from ..model.schedule import stream_sigmas
from .events import Event, EventLog, LocalChannel
from .rescheduler import KVRescheduler, mix_reference, variant_policy

ASSETS = Path(__file__).resolve().parents[2] / "assets"
# The embedded default: the world-v2 student (issue 17). v1's student and codec stay shipped as
# assets/checkpoints/tiny and codec, for SwitchBench's v1 rows and for anyone pinning the old model.
DEFAULT_CHECKPOINT = ASSETS / "checkpoints" / "student-v2"
DEFAULT_CODEC = ASSETS / "checkpoints" / "codec-v2"
DEFAULT_PRESET = "tiny-v2-region"   # the default checkpoint's shape, for random weights when it is missing


def shipped_codec_for(latent_sha256: str | None) -> Path:
    """The shipped codec folder (under assets/checkpoints) whose latent space a checkpoint was trained on
    (its ``codec_sha256``), an untuned one first; the default codec when the checkpoint names none or no
    shipped codec matches (loading then says which codec it wants)."""
    for folder, meta, _ in shipped_tiny_codecs():
        if latent_sha256 and meta.get("latent_sha256", meta.get("sha256")) == latent_sha256:
            return folder
    return DEFAULT_CODEC


def shipped_teacher_for(latent_sha256: str | None) -> Path:
    """The shipped bidirectional teacher trained on the codec latent space ``latent_sha256`` (the teacher row
    and DMD's real score must read the student's latents); assets/checkpoints/teacher when none matches."""
    for folder, meta in shipped_configs():
        if latent_sha256 and meta.get("mode") == "bidirectional" and meta.get("codec_sha256") == latent_sha256:
            return folder
    return ASSETS / "checkpoints" / "teacher"


@dataclass
class Chunk:
    frames: np.ndarray              # (T, H, W, 3) uint8
    index: int                      # block number in this session
    first_frame: int                # number of the chunk's first video frame
    garment: str                    # label of the garment in effect
    timings: dict[str, float]       # seconds: commit (of the previous block), events, reschedule, denoise,
                                    # decode, total
    events: list[dict] = field(default_factory=list)   # events that took effect at this chunk
    latents: torch.Tensor | None = None                # the block's clean latents (1, C, f, h, w)


def snap_to_reference(x0: torch.Tensor, reference: torch.Tensor, threshold: float) -> torch.Tensor:
    """``x0`` (b, C, F, h, w) with every latent position within ``threshold`` (L2 over channels) of the
    reference (b, C, 1, h, w) set to the reference's latent, the model's own estimate back in full at twice
    the distance (a smoothstep between). Small distances are the blur of an imperfect copy of what did not
    change; a new garment or a moved limb is far from the reference and passes untouched."""
    if threshold <= 0:
        return x0
    residual = x0 - reference
    keep = far_from_reference(residual.norm(dim=1, keepdim=True), threshold)
    # next to what changed the model keeps its estimate: a limb's edge moves a little, yet it moves
    keep = torch.nn.functional.max_pool3d(keep, (1, 3, 3), stride=1, padding=(0, 1, 1))
    return reference + keep * residual


def _to_tensor_image(img: np.ndarray, device, dtype) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].to(device, dtype) / 127.5 - 1.0


class StreamingGenerator:
    """Holds the model and codec; creates sessions (one per user, many at once)."""

    def __init__(self, model, codec, preset: Preset, *, device: str | torch.device = "cpu",
                 checkpoint_sha: str | None = None, stream: StreamConfig | None = None, text_encoder=None):
        self.model = model.to(device).eval().requires_grad_(False)
        self.codec = codec
        self.preset = preset if stream is None else replace(preset, stream=stream)
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype
        self.checkpoint_sha = checkpoint_sha
        self.text_encoder = text_encoder    # e.g. model.text.PromptEncoder for models that take umT5 embeddings

    def embed_prompt(self, prompt: str | None):
        """Projected text tokens for a prompt: a vocabulary entry (`tiny`) or umT5 embeddings (real shapes,
        encoded once per prompt and cached); None without a prompt."""
        if prompt is None:
            return None
        if self.model.config.prompt_vocab:
            return self.model.embed_text([prompt])
        if self.text_encoder is None:
            raise ValueError("this model takes text embeddings: give the generator a text_encoder "
                             "(fashionchameleon.model.text.PromptEncoder) to use prompts")
        return self.model.embed_text(self.text_encoder.encode(prompt).to(self.device, self.dtype))

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path = DEFAULT_CHECKPOINT, codec: str | Path | None = None, *,
                        device: str = "cpu", dtype: torch.dtype = torch.float32) -> "StreamingGenerator":
        from ..model.codec import load_codec
        from ..model.loading import load_checkpoint, require_same_latents

        model, preset, meta = load_checkpoint(checkpoint, device=device, dtype=dtype)
        codec = codec or shipped_codec_for(meta.get("codec_sha256"))
        codec_obj = load_codec(codec, device=device)
        require_same_latents(checkpoint, meta, codec_obj.latent_sha256, codec)
        from ..model.codec import state_sha256

        return cls(model, codec_obj, preset, device=device, checkpoint_sha=state_sha256(model.state_dict()))

    @classmethod
    def random(cls, preset: str | Preset = "tiny", codec=None, *, seed: int = 0, device: str = "cpu",
               dtype: torch.dtype = torch.float32) -> "StreamingGenerator":
        """Random weights (tests and speed benchmarks before / without a trained checkpoint)."""
        from ..model.codec import TinyCodec
        from ..model.dit import WanDiT

        preset = get_preset(preset) if isinstance(preset, str) else preset
        torch.manual_seed(seed)
        model = WanDiT(preset.model).to(device=device, dtype=dtype)
        if codec is None:
            codec = TinyCodec().to(device).eval()
        return cls(model, codec, preset, device=device, checkpoint_sha="random")

    def with_config(self, *, preset: Preset | None = None, stream: StreamConfig | None = None) -> "StreamingGenerator":
        """The same model and codec (shared, not copied) under another preset and/or streaming config."""
        return StreamingGenerator(self.model, self.codec, preset or self.preset, device=self.device,
                                  checkpoint_sha=self.checkpoint_sha, stream=stream, text_encoder=self.text_encoder)

    @property
    def grid_pixels(self) -> tuple[int, int]:
        """(token pixels, codec block pixels): spatial compression x patch, spatial compression."""
        sc = self.preset.spatial_compression
        return sc * self.model.config.patch_size[1], sc

    # -- images -> latents ---------------------------------------------------------------------------------------------
    @property
    def resolution(self) -> tuple[int, int]:
        return self.preset.resolution

    def person_image(self, person) -> np.ndarray:
        return fit_person(load_image(person, "person image"), self.resolution)

    def garment_image(self, garment) -> np.ndarray:
        return fit_garment(load_image(garment, "garment image"), self.resolution)

    @torch.no_grad()
    def encode_image(self, img: np.ndarray) -> torch.Tensor:
        x = _to_tensor_image(img, self.device, torch.float32)
        return self.codec.encode_image(x).to(self.dtype)

    def session(self, person, garment, prompt: str | None = None, *, seed: int = 0, variant: str = "full",
                num_frames: int | None = None, channel=None, garment_label: str = "garment 0",
                keep_latents: bool = False) -> "Session":
        return Session(self, person, garment, prompt, seed=seed, variant=variant, num_frames=num_frames,
                       channel=channel, garment_label=garment_label, keep_latents=keep_latents)


class Session:
    """One user's stream. Iterate it for chunks; post events from anywhere; close (or ``with``) to free it."""

    def __init__(self, gen: StreamingGenerator, person, garment, prompt: str | None, *, seed: int = 0,
                 variant: str = "full", num_frames: int | None = None, channel=None,
                 garment_label: str = "garment 0", keep_latents: bool = False):
        self.gen = gen
        cfg = gen.preset.stream
        self.stream_cfg = cfg
        self.policy = variant_policy(variant, cfg)
        self.variant = variant
        self.rescheduler = KVRescheduler(gen.model, gen.codec, self.policy)
        self.channel = channel or LocalChannel()
        self.log = EventLog()
        self.num_frames = num_frames
        self.keep_latents = keep_latents
        self.rng = torch.Generator().manual_seed(int(seed))
        self.prompt = prompt
        vocab = gen.model.config.prompt_vocab
        if vocab and prompt is None:
            self.prompt = vocab[0]
        self.text = gen.embed_prompt(self.prompt)
        self.person = gen.person_image(person)
        garment_img = gen.garment_image(garment)
        self.garment_label = garment_label
        self.reference = gen.encode_image(self.person)
        self.original_reference = self.reference    # what re-anchoring and blending return to
        self.reanchor_at: int | None = None         # block at which the original reference goes back
        self.reanchor_reference = self.reference    # ... blended with the switch's last frame (reanchor_mix)
        self.garment = gen.encode_image(garment_img)
        self.guided_blocks = 0                      # blocks left to guide away from the garment before the switch
        self.old_garment = self.garment             # ... that garment's latent
        h, w = self.reference.shape[-2:]
        self.cache = causal.new_cache(gen.model, (h, w), WindowPolicy(cfg.sink_frames, cfg.window_frames))
        self.sigmas = stream_sigmas(cfg)
        with torch.no_grad():
            causal.prefill(gen.model, self.cache, torch.cat([self.reference, self.garment], 2), self.text)
        self.decoder = gen.codec.stream_decoder()
        self.block = 0
        self.frame = 0
        self.recent: torch.Tensor | None = None     # last clean latents (for re-caching after a switch)
        self.uncommitted: torch.Tensor | None = None   # the last block, until the next one is asked for
        self.last_frame: np.ndarray | None = None
        self.closed = False
        self.stopped = False
        self._block_starts: collections.deque[float] = collections.deque(maxlen=256)

    # -- events -----------------------------------------------------------------------------------------------------
    def post_switch(self, garment, label: str | None = None) -> str:
        """Queue a garment switch (an image path, array or PIL image); it applies at the next block."""
        img = self.gen.garment_image(garment)    # validate now: a bad image fails the caller, not the stream
        ev = Event("switch", img, label or f"garment {len(self.log.records) + 1}")
        self.channel.post(ev)
        return ev.id

    def post_prompt(self, prompt: str) -> str:
        if self.gen.model.config.prompt_vocab:
            self.gen.model.prompt_ids([prompt])      # validate
        ev = Event("prompt", prompt, prompt)
        self.channel.post(ev)
        return ev.id

    def stop(self) -> None:
        self.channel.post(Event("stop"))

    @property
    def events(self) -> list[dict]:
        return self.log.as_dicts()

    # -- priming (evaluation on ground truth) ---------------------------------------------------------------------------
    @torch.no_grad()
    def prime(self, latents: torch.Tensor) -> np.ndarray:
        """Start from given clean latents (1, C, F, h, w) instead of generating them: committed block by block
        and decoded (so the decoder and the reference rebuild continue seamlessly). Returns their frames."""
        frames = []
        bf = self.stream_cfg.block_frames
        self._commit_pending()
        latents = latents.to(self.gen.device, self.gen.dtype)
        for i in range(0, latents.shape[2], bf):
            blk = latents[:, :, i:i + bf]
            causal.commit(self.gen.model, self.cache, blk, self.text)
            self._remember(blk)
            out = self._decode(blk)
            frames.append(out)
            self.frame += len(out)
            self.block += 1
        return np.concatenate(frames) if frames else np.zeros((0, *self.person.shape), np.uint8)

    @torch.no_grad()
    def _commit_pending(self) -> None:
        if self.uncommitted is not None:
            causal.commit(self.gen.model, self.cache, self.uncommitted, self.text)
            self.uncommitted = None

    def _remember(self, blk: torch.Tensor) -> None:
        keep = max(self.stream_cfg.keep_recent, 1)
        self.recent = blk if self.recent is None else torch.cat([self.recent, blk], 2)[:, :, -keep:]

    def _decode(self, blk: torch.Tensor) -> np.ndarray:
        video = deblock(self.decoder.decode(blk.float()), *self.gen.grid_pixels, self.stream_cfg.deblock)
        frames = ((video[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()
        self.last_frame = frames[-1]
        return frames

    # -- the loop -------------------------------------------------------------------------------------------------
    def _apply_events(self) -> tuple[list, float]:
        events = self.channel.drain()
        applied, t_resched = [], 0.0
        records = {e.id: self.log.add(e) for e in events}
        now = time.time()
        if self.channel.stop_requested() or any(e.kind == "stop" for e in events):
            self._log_stop(list(records.values()), now)
            return [], 0.0
        switches = [e for e in events if e.kind == "switch"]
        for e in events:
            rec = records[e.id]
            if e.kind == "prompt":
                self.prompt, self.text = e.payload, self.gen.embed_prompt(e.payload)
                with torch.no_grad():
                    causal.prefill(self.gen.model, self.cache, torch.cat([self.reference, self.garment], 2), self.text)
            elif e.kind == "switch" and e is not switches[-1]:
                rec.status = "skipped"      # several switches before one block: the latest wins
                continue
            if e.kind == "switch":
                res = self.rescheduler.switch(
                    self.cache, reference=self.reference, garment=self.garment,
                    new_garment_image=_to_tensor_image(e.payload, self.gen.device, torch.float32),
                    last_frame=None if self.last_frame is None else _to_tensor_image(self.last_frame, self.gen.device, torch.float32),
                    recent_latents=self.recent, text=self.text, original_reference=self.original_reference)
                self.old_garment = self.garment
                self.reference, self.garment = res.reference, res.garment
                p = self.policy
                self.reanchor_at = (self.block + p.reanchor_after
                                    if p.reanchor_after and p.disentangle and not p.restart else None)
                if self.reanchor_at is not None:
                    self.reanchor_reference = (self.original_reference if res.last_latent is None else
                                               mix_reference(res.last_latent, self.original_reference, p.reanchor_mix,
                                                             p.reference_gate))
                # without a refresh the "old" garment is the new one: guidance would change nothing
                self.guided_blocks = p.guidance_blocks if p.guidance != 1.0 and p.refresh else 0
                self.garment_label = e.label
                t_resched += res.seconds
                if self.policy.restart:
                    self.decoder = self.gen.codec.stream_decoder()
                    self.recent = None
            rec.status, rec.applied_at, rec.block, rec.frame = "applied", now, self.block, self.frame
            rec.latency_s = now - e.posted_at
            rec.blocks_waited = sum(1 for s in list(self._block_starts)[:-1] if s > e.posted_at)
            applied.append(rec.to_dict())
        if self.reanchor_at is not None and self.block >= self.reanchor_at:
            self.reanchor_at = None
            self.reference = self.reanchor_reference
            t_resched += self.rescheduler.reanchor(self.cache, reference=self.reference, garment=self.garment,
                                                   text=self.text)
        return applied, t_resched

    def _log_stop(self, records: list, now: float) -> None:
        """The run stops before the current block is shown: the stop is logged at this frame; events that
        came with it never take effect (their block is never produced)."""
        self.stopped = True
        for e in self.channel.drain():
            records.append(self.log.add(e))
        if not any(r.kind == "stop" for r in records):     # the STOP mark (or a removed mailbox) without its event
            records.append(self.log.add(Event("stop", label="stop", posted_at=now)))
        for r in records:
            if r.kind == "stop":
                r.status, r.applied_at, r.block, r.frame = "applied", now, self.block, self.frame
                r.latency_s = now - r.posted_at
            else:
                r.status = "cancelled"

    def __iter__(self):
        model = self.gen.model
        bf = self.stream_cfg.block_frames
        c, h, w = self.reference.shape[1], *self.reference.shape[-2:]
        while not self.closed:
            if self.num_frames is not None and self.frame >= self.num_frames:
                return
            t0 = time.perf_counter()
            self._block_starts.append(time.time())
            self._commit_pending()
            t_commit = time.perf_counter() - t0
            applied, t_resched = self._apply_events()
            if self.stopped:
                return
            negative = None
            if self.guided_blocks > 0:
                self.guided_blocks -= 1
                t_n = time.perf_counter()
                negative = self.rescheduler.negative(self.cache, reference=self.reference, old_garment=self.old_garment,
                                                     text=self.text)
                t_resched += time.perf_counter() - t_n
            t1 = time.perf_counter()
            noise = torch.randn((1, c, bf, h, w), generator=self.rng).to(self.gen.device, self.gen.dtype)
            snap = self.stream_cfg.reference_snap
            x0_map = functools.partial(snap_to_reference, reference=self.reference, threshold=snap) if snap else None
            try:
                with torch.no_grad():
                    x0 = causal.denoise_block(model, self.cache, noise, self.sigmas, self.text, generator=self.rng,
                                              should_stop=self.channel.stop_requested, negative=negative,
                                              guidance=self.policy.guidance, guided_steps=self.policy.guidance_steps,
                                              x0_map=x0_map)
            except causal.StopRequested:
                # what applied at this block is never shown: report it with the stop, not at a frame
                self._log_stop([r for r in self.log.records if r.block == self.block and r.status == "applied"],
                               time.time())
                return
            t2 = time.perf_counter()
            self.uncommitted = x0
            self._remember(x0)
            frames = self._decode(x0)
            t3 = time.perf_counter()
            if self.num_frames is not None:
                frames = frames[: self.num_frames - self.frame]
            chunk = Chunk(frames, self.block, self.frame, self.garment_label,
                          {"reschedule": t_resched, "denoise": t2 - t1, "commit": t_commit, "decode": t3 - t2,
                           "events": t1 - t0 - t_commit - t_resched, "total": t3 - t0},
                          applied, x0.detach().cpu() if self.keep_latents else None)
            self.block += 1
            self.frame += len(frames)
            yield chunk

    def close(self) -> None:
        """Free the cache and the channel; an iterator still running ends at its next block. Events posted
        too late to take effect stay in the log as ``pending``."""
        self.closed = True
        self.cache.reset()
        for e in self.channel.drain():
            self.log.add(e)
        self.channel.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

