"""Training objectives as small modules over the one model.

* ``TeacherFlowMatching``: bidirectional teacher, in-context prefix at t=0, garment dropout for CFG.
* ``TeacherForcing``: the block-causal student on ``[clean context | noisy blocks]`` at its own 4 timesteps.
* DMD lives in ``dmd.py`` (it needs rollouts, a critic and the teacher).

Each objective is an ``nn.Module`` around the model whose ``forward(batch, generator)`` returns
``(loss, logs)`` in ONE call, so DistributedDataParallel can wrap it even though the model runs twice
inside (prefix pass, then the video pass that reads the prefix's keys).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import Preset
from ..model import causal
from ..model.dit import WanDiT
from ..model.kv_cache import WindowPolicy, block_causal_mask
from ..model.schedule import stream_sigmas
from .flow import Conditions, add_noise, bidirectional_velocity, shift_sigma


def _rows(full: torch.Tensor, batch: dict) -> torch.Tensor:
    return full[batch.get("rows", slice(None))].to(batch["video"].device)


def randn_rows(gen: torch.Generator, batch: dict, *tail: int) -> torch.Tensor:
    """Standard normal noise for this rank's rows, drawn (on the CPU generator) for the whole global batch so
    that a data-parallel run draws exactly the numbers a single process would; on the batch's device."""
    return _rows(torch.randn(batch.get("global_batch", len(batch["prompts"])), *tail, generator=gen), batch)


def rand_rows(gen: torch.Generator, batch: dict) -> torch.Tensor:
    return _rows(torch.rand(batch.get("global_batch", len(batch["prompts"])), generator=gen), batch)


def randint_rows(gen: torch.Generator, batch: dict, high: int, *tail: int) -> torch.Tensor:
    return _rows(torch.randint(high, (batch.get("global_batch", len(batch["prompts"])), *tail), generator=gen), batch)


def text_of(model: WanDiT, batch: dict) -> torch.Tensor | None:
    """The batch's text through ``model``'s own text projection: prompt names for vocabulary models,
    text-encoder embeddings (``batch["text"]``, umT5 for the real shapes) otherwise, or None."""
    return model.embed_text(batch["prompts"] if model.config.prompt_vocab else batch.get("text"))


def conditions_of(model: WanDiT, batch: dict) -> Conditions:
    return Conditions(batch["reference"], batch["garment"], text_of(model, batch))


class TeacherFlowMatching(torch.nn.Module):
    def __init__(self, model: WanDiT, preset: Preset, garment_dropout: float = 0.1, shift: float = 3.0):
        super().__init__()
        self.model = model
        self.preset, self.garment_dropout, self.shift = preset, garment_dropout, shift

    def forward(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        model = self.model
        x0 = batch["video"]
        noise = randn_rows(gen, batch, *x0.shape[1:])
        sigma = shift_sigma(rand_rows(gen, batch), self.shift)
        drop = rand_rows(gen, batch) < self.garment_dropout
        cond = conditions_of(model, batch).drop_garment(drop)
        v = bidirectional_velocity(model, cond, add_noise(x0, noise, sigma), sigma)
        loss = F.mse_loss(v.float(), noise - x0)     # bf16 under mixed precision: the loss in fp32
        return loss, {"loss": loss.item()}


class TeacherForcing(torch.nn.Module):
    """Each block of the noisy copy sits at one of the student's timesteps and sees the clean blocks before it.

    With ``gate_weight`` > 0 (a model with ``reference_copy``), the copy gate is also supervised per latent
    position, every position alike: the velocity loss alone gives copying a few percent of its signal (the static
    scene's share of it; MODEL_CARD.md, "Copying the reference"). ``gate_target`` "bound": 1 where the truth is
    within ``gate_bound`` of the reference (L2 over channels), 0 elsewhere; "oracle": the gate that would have
    moved the network's own clean estimate closest to the truth (its projection onto the line to the reference,
    clamped to [0, 1]), which is 1 where the truth is the reference and weighs a partial copy against the
    network's estimate elsewhere.

    With ``moved_weight`` > 0, the velocity loss weighs each latent position where the truth left the reference
    (farther than ``gate_bound``: the new garment, a moving limb) 1 + ``moved_weight`` times, normalised by the
    batch's mean weight so that the loss keeps its scale: the trunk's capacity goes where copying cannot help.
    """

    def __init__(self, model: WanDiT, preset: Preset, garment_dropout: float = 0.1, gate_weight: float = 0.0,
                 gate_bound: float = 0.2, gate_target: str = "bound", moved_weight: float = 0.0):
        super().__init__()
        if gate_weight and not model.config.reference_copy:
            raise ValueError("a gate loss needs a model with reference_copy")
        if not 0.0 <= moved_weight < float("inf"):
            raise ValueError(f"moved_weight must be a finite number >= 0, got {moved_weight}")
        if moved_weight and not model.config.reference_channels:
            raise ValueError("moved_weight needs a model that takes the reference latent (reference_channels)")
        self.moved_weight = moved_weight
        self.model = model
        self.preset, self.garment_dropout = preset, garment_dropout
        if gate_target not in ("bound", "oracle"):
            raise ValueError(f"gate_target is 'bound' or 'oracle', not {gate_target!r}")
        self.gate_weight, self.gate_bound, self.gate_target = gate_weight, gate_bound, gate_target
        s = preset.stream
        self.policy = WindowPolicy(s.sink_frames, s.window_frames)
        self.sigmas = stream_sigmas(preset.stream)

    def forward(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        model = self.model
        x0 = batch["video"]
        b, _, f = x0.shape[:3]
        bf = self.preset.stream.block_frames
        blocks = -(-f // bf)
        noise = randn_rows(gen, batch, *x0.shape[1:])
        which = randint_rows(gen, batch, len(self.sigmas), blocks)
        sigma = self.sigmas.to(x0.device)[which].repeat_interleave(bf, dim=1)[:, :f]     # (b, f)
        drop = rand_rows(gen, batch) < self.garment_dropout
        cond = conditions_of(model, batch).drop_garment(drop)
        cache = causal.new_cache(model, x0.shape[-2:], self.policy)
        causal.prefill(model, cache, cond.prefix, cond.text)
        seq = torch.cat([x0, add_noise(x0, noise, sigma)], 2)
        t = torch.cat([torch.zeros(b, f, device=x0.device), sigma * 1000], 1)
        positions = cache.query_positions(f, x0.device).repeat(2)
        mask = block_causal_mask(f, bf, self.policy, context_frames=cache.visible_frames, teacher_forcing=True)
        out = model(seq, t, cond.text, positions=positions, frame_mask=mask, context=cache, text_is_embedded=True,
                    reference=cache.reference, return_gate=self.gate_weight > 0)
        v, gate, own = out if self.gate_weight > 0 else (out, None, None)
        if self.moved_weight:
            weight = 1 + self.moved_weight * self._left_reference(x0, cache.reference).float()
            squared = (v[:, :, f:].float() - (noise - x0).float()).square()
            loss = (squared * weight).mean() / weight.mean()
        else:
            loss = F.mse_loss(v[:, :, f:].float(), noise - x0)
        metrics = {"loss": loss.item()}
        if gate is not None:
            gate_loss = F.mse_loss(gate[:, :, f:].float(), self._gate_target(x0, cache.reference, seq[:, :, f:],
                                                                              sigma, own[:, :, f:]))
            metrics.update(velocity_loss=loss.item(), gate_loss=gate_loss.item())
            loss = loss + self.gate_weight * gate_loss
            metrics["loss"] = loss.item()
        return loss, metrics

    def _left_reference(self, x0: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(b, 1, f, h, w) bool per latent position: the truth is farther than ``gate_bound`` (L2 over channels)
        from the reference."""
        return (x0.float() - reference.float()).norm(dim=1, keepdim=True) >= self.gate_bound

    @torch.no_grad()
    def _gate_target(self, x0: torch.Tensor, reference: torch.Tensor, noisy: torch.Tensor, sigma: torch.Tensor,
                     own: torch.Tensor) -> torch.Tensor:
        """(b, 1, f, h, w) per latent position: where copying the reference is right."""
        if self.gate_target == "bound":
            return (~self._left_reference(x0, reference)).float()
        x0, reference = x0.float(), reference.float()
        # the noisy blocks all sit at sigma > 0 (the stream's levels), so the own clean estimate is defined
        estimate = noisy.float() - sigma[:, None, :, None, None] * own.float()
        toward = reference - estimate
        best = (x0 - estimate).mul(toward).sum(1, keepdim=True) / toward.square().sum(1, keepdim=True).clamp_min(1e-6)
        return best.clamp(0, 1)
