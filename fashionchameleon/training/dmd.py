"""Gradient-reweighted distribution matching distillation (the paper's streaming distillation, stage 2).

The student rolls out clips block by block with its KV cache exactly as at inference (few steps, t=0
commit), with gradients through one randomly chosen exit step per rollout. A window of the rollout of the
teacher's clip length is scored by the real score (the frozen teacher with CFG) and the fake score (a
critic trained on the student's samples with flow matching); the DMD gradient is
``(x0_fake - x0_real) / mean|x - x0_real|``.

Gradient reweighting: every latent frame f of the window gets weight ``w_f = F * softmax(-r_f / tau)``
over the window's frames, with ``r_f`` the frame's reward standardised per rollout, so frames that came out
worse weigh more (tau = inf gives plain DMD). Reward (higher is better, no ground truth used): the negative
teacher denoising error of the re-noised frame, ``-mean((x0_real_f - x_f)^2)`` at the same noise level as
the DMD step -- frames the teacher would move a lot are the ones it finds unlikely.

Rollouts are longer than the teacher's clip (``rollout_blocks``), so the student learns to extrapolate with
the rolling cache; the scored window starts at a random block.

Regression anchor (beyond the paper, off by default): ``anchor`` > 0 adds that weight times the teacher-forcing
loss on the batch's own clips. DMD alone matches the teacher's distribution of garments and trades the scene
around them for it (outside PSNR falls on every v2 run); the clips pin the student to copying its reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import Preset
from ..model import causal
from ..model.dit import WanDiT
from ..model.kv_cache import WindowPolicy
from ..model.schedule import stream_sigmas
from .flow import Conditions, add_noise, bidirectional_velocity, guided_velocity, shift_sigma
from .objectives import TeacherForcing, conditions_of, rand_rows, randn_rows, text_of


def frame_weights(rewards: torch.Tensor, tau: float) -> torch.Tensor:
    """(b, frames) rewards -> weights, softmax(-standardised r / tau) per rollout, rescaled to mean 1."""
    if math.isinf(tau):
        return torch.ones_like(rewards)
    r = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)
    return torch.softmax(-r / tau, dim=1) * rewards.shape[1]


class GradientReweightedDMD(torch.nn.Module):
    def __init__(self, model: WanDiT, preset: Preset, teacher: WanDiT, critic: WanDiT, *, tau: float = 0.2,
                 guidance: float = 3.0, critic_steps: int = 2, critic_lr: float = 4e-5,
                 rollout_blocks: int | None = None, shift: float = 3.0, anchor: float = 0.0):
        super().__init__()
        self.model = model                      # the only trainable submodule (DDP wraps this module)
        self.anchor = anchor
        # the forcing objective shares the student (not a submodule of its own: one model, one DDP tree)
        self.__dict__["forcing"] = TeacherForcing(model, preset) if anchor > 0 else None
        self.preset, self.tau, self.guidance, self.shift = preset, tau, guidance, shift
        self.critic_steps = critic_steps
        # teacher and critic are kept out of the module tree so DDP of the generator step ignores them
        self.__dict__["teacher"] = teacher
        self.__dict__["critic"] = critic
        self.critic_opt = torch.optim.AdamW(critic.parameters(), lr=critic_lr, betas=(0.9, 0.99), weight_decay=0.01)
        s = preset.stream
        self.policy = WindowPolicy(s.sink_frames, s.window_frames)
        self.window = preset.train_latent_frames
        self.blocks = rollout_blocks or (-(-self.window // s.block_frames) + 2)
        self.sigmas = stream_sigmas(preset.stream)

    # -- rollout -------------------------------------------------------------------------------------------------
    def rollout(self, cond: Conditions, gen: torch.Generator, exit_step: int | None, batch: dict) -> torch.Tensor:
        """Latents (b, C, blocks * block_frames, h, w); gradients only through each block's exit step."""
        model, s = self.model, self.preset.stream
        shape = cond.reference.shape
        cache = causal.new_cache(model, shape[-2:], self.policy)
        with torch.no_grad():
            causal.prefill(model, cache, cond.prefix, cond.text)
        blocks = []
        last = len(self.sigmas) - 1 if exit_step is None else exit_step
        for _ in range(self.blocks):
            # all of the block's noise up front (row-sliced, so data-parallel runs match a single process)
            noises = [randn_rows(gen, batch, shape[1], s.block_frames, *shape[-2:]) for _ in range(last + 1)]
            x0 = causal.denoise_block(model, cache, noises[0], self.sigmas, cond.text, exit_step=exit_step,
                                      renoise=noises[1:])
            with torch.no_grad():
                causal.commit(model, cache, x0.detach(), cond.text)
            blocks.append(x0)
        return torch.cat(blocks, 2)

    def _window(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        bf = self.preset.stream.block_frames
        starts = list(range(0, x.shape[2] - self.window + 1, bf))
        start = starts[int(torch.randint(len(starts), (1,), generator=gen))]
        return x[:, :, start:start + self.window]

    # -- critic (fake score) ----------------------------------------------------------------------------------------
    def critic_step(self, batch: dict, gen: torch.Generator, world: int = 1, *, scope=None,
                    after_backward=None) -> None:
        """Update the critic on fresh student samples (flow matching), ``critic_steps`` times.

        ``scope(fn, *args)`` runs the forward parts (FSDP: inside the networks' root modules, see
        ``parallel.py``); ``after_backward()`` replaces the data-parallel gradient all-reduce (FSDP reduces
        gradients itself and reshards here)."""
        scope = scope or (lambda fn, *args: fn(*args))
        x, cond = scope(self.critic_sample, batch, gen)
        self.critic.train()
        for _ in range(self.critic_steps):
            loss = scope(self.critic_loss, x, cond, batch, gen)
            self.critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:
                after_backward()
            elif world > 1:
                for p in self.critic.parameters():
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.AVG)
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), 1.0)
            self.critic_opt.step()
        self.last_critic_loss = loss.item()

    def critic_sample(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, Conditions]:
        """A window of a student rollout (no gradients) and the batch's conditions."""
        cond = conditions_of(self.model, batch)
        cond = Conditions(cond.reference, cond.garment, None if cond.text is None else cond.text.detach())
        with torch.no_grad():
            x = self._window(self.rollout(cond, gen, None, batch), gen)
        return x, cond

    def critic_loss(self, x: torch.Tensor, cond: Conditions, batch: dict, gen: torch.Generator) -> torch.Tensor:
        """Flow matching of the critic on the student's samples."""
        noise = randn_rows(gen, batch, *x.shape[1:])
        sigma = shift_sigma(rand_rows(gen, batch), self.shift)
        ctext = text_of(self.critic, batch)
        v = bidirectional_velocity(self.critic, Conditions(cond.reference, cond.garment, ctext),
                                   add_noise(x, noise, sigma), sigma)
        return F.mse_loss(v.float(), noise - x)

    # -- generator (student) ----------------------------------------------------------------------------------------
    def targets(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """A rollout window x (with gradients), its DMD regression target and per-frame weights."""
        cond = conditions_of(self.model, batch)
        exit_step = int(torch.randint(len(self.sigmas), (1,), generator=gen))
        x = self._window(self.rollout(cond, gen, exit_step, batch), gen)
        noise = randn_rows(gen, batch, *x.shape[1:])
        sigma = shift_sigma(0.02 + 0.96 * rand_rows(gen, batch), self.shift)
        with torch.no_grad():
            xs = add_noise(x.detach(), noise, sigma)
            tcond = Conditions(cond.reference, cond.garment,
                               text_of(self.teacher, batch))
            ccond = Conditions(cond.reference, cond.garment,
                               text_of(self.critic, batch))
            s = sigma.view(-1, 1, 1, 1, 1)
            x0_real = xs - s * guided_velocity(self.teacher, tcond, xs, sigma, self.guidance)
            x0_fake = xs - s * bidirectional_velocity(self.critic, ccond, xs, sigma)
            norm = (x.detach() - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)
            grad = (x0_fake - x0_real) / norm
            rewards = -(x0_real - x.detach()).pow(2).mean(dim=(1, 3, 4))          # (b, frames)
            weights = frame_weights(rewards, self.tau)
        logs = {"dmd_grad": grad.abs().mean().item(), "weight_max": weights.max().item(),
                "critic_loss": getattr(self, "last_critic_loss", float("nan"))}
        return x, (x - grad).detach(), weights, logs

    @staticmethod
    def surrogate(x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """0.5 * weighted squared distance to the fixed target: its gradient is the weighted DMD gradient."""
        per_frame = 0.5 * (x - target).pow(2).mean(dim=(1, 3, 4))                  # (b, frames)
        return (weights * per_frame).mean()

    def forward(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        x, target, weights, logs = self.targets(batch, gen)
        loss = self.surrogate(x, target, weights)
        logs = {"dmd_loss": loss.item(), **logs}
        if self.forcing is not None:
            regression, _ = self.forcing(batch, gen)
            loss = loss + self.anchor * regression
            logs["anchor_loss"] = regression.item()
        return loss, {"loss": loss.item(), **logs}
