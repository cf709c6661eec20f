"""``python -m fashionchameleon train --stage teacher|forcing|dmd --config NAME``: one training loop.

The loop is the same for every stage; the stage picks the objective and where weights start:
teacher (from scratch), forcing (student initialised from the teacher), dmd (student from forcing, critic
from the teacher). Run state (model, EMA, optimizer, step, RNG) lives in a run folder outside the
repository and resumes exactly: batches and noise are pure functions of (seed, step). Under ``torchrun`` the
global batch is split across ranks and gradients are averaged by DDP (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from ..config import Preset, get_preset
from .runstate import (append_log, default_run_dir, load_run_state, plot_curves, read_log, save_run_state,
                       step_generator, truncate_log)

STAGES = ("teacher", "forcing", "dmd")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", choices=STAGES, required=True)
    p.add_argument("--config", default="tiny", help="model preset")
    p.add_argument("--steps", type=int, default=2000, help="total optimizer steps of this stage")
    p.add_argument("--batch", type=int, default=8, help="global batch size")
    p.add_argument("--lr", type=float, default=None, help="default: 4e-4 teacher, 1e-4 forcing, 2e-5 dmd")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--tau", type=float, default=0.2, help="dmd: gradient-reweighting temperature (inf = plain DMD)")
    p.add_argument("--reference", choices=["other", "same"], default="other",
                   help="other: the reference wears another garment (the paper's mismatch); same: the clip's own "
                        "first frame (the no-mismatch ablation)")
    p.add_argument("--critic-lr", type=float, default=4e-5, help="dmd: the critic's (fake score's) learning rate")
    p.add_argument("--init", type=Path, default=None, help="checkpoint folder to start from (forcing/dmd)")
    p.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint (dmd: real score and critic init)")
    p.add_argument("--codec", type=Path, default=Path("assets/checkpoints/codec"))
    p.add_argument("--train-seeds", default="0-2999", help="training seeds A-B (must lie in 0-499,999)")
    p.add_argument("--bank", type=Path, default=None, help="a pre-encoded latent bank file (default: built from --train-seeds)")
    p.add_argument("--run-dir", type=Path, default=None, help="default ~/.cache/fashionchameleon/runs/<stage>-<config>")
    p.add_argument("--out", type=Path, default=None, help="export the EMA weights here at the end (a checkpoint folder)")
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--sample-every", type=int, default=500, help="write a sample video every N steps (0: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--lora", type=int, default=0, help="LoRA rank on attention and FFN projections (0: full fine-tune)")
    p.add_argument("--export-only", action="store_true",
                   help="write the run's current EMA weights to --out (a milestone) and exit, without training")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many steps in this invocation")


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank() if world > 1 else 0), world


class Trainer:
    def __init__(self, args: argparse.Namespace, bank=None):
        from ..model.dit import WanDiT
        from ..model.loading import load_checkpoint

        self.args = args
        self.rank, self.world = _dist()
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        self.preset = args.config if isinstance(args.config, Preset) else get_preset(args.config)
        torch.manual_seed(args.seed)
        self.model = WanDiT(self.preset.model)
        if args.init is not None:
            init, _, _ = load_checkpoint(args.init)
            self.model.load_state_dict(init.state_dict())
        self.model.to(self.device)
        self.teacher = None
        self.critic = None
        if args.stage == "dmd":
            if args.teacher is None:
                raise SystemExit("error: --stage dmd needs --teacher (the real score)")
            self.teacher, _, _ = load_checkpoint(args.teacher, device=self.device)
            self.teacher.requires_grad_(False)
            self.critic = copy.deepcopy(self.teacher).requires_grad_(True).train()
        if args.lora:
            from .lora import apply_lora

            self.model = apply_lora(self.model, args.lora)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        lr = args.lr if args.lr is not None else {"teacher": 4e-4, "forcing": 1e-4, "dmd": 2e-5}[args.stage]
        self.lr = lr
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.01)
        self.objective = self._objective()
        self.net = self.objective
        if self.world > 1:
            # find_unused_parameters: with one-token prompts the cross-attention's query/key weights get no
            # gradient (softmax over one key is 1), and DDP must not wait for them.
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.bank = bank
        self.run_dir = args.run_dir or default_run_dir(f"{args.stage}-{self.preset.name}")

    def _objective(self):
        from .objectives import TeacherFlowMatching, TeacherForcing

        if self.args.stage == "teacher":
            return TeacherFlowMatching(self.model, self.preset)
        if self.args.stage == "forcing":
            return TeacherForcing(self.model, self.preset)
        from .dmd import GradientReweightedDMD

        return GradientReweightedDMD(self.model, self.preset, self.teacher, self.critic, tau=self.args.tau,
                                     critic_lr=self.args.critic_lr)

    def modules(self) -> dict:
        m = {"model": self.model, "ema": self.ema, "opt": self.opt}
        if self.critic is not None:
            m.update(critic=self.critic, critic_opt=self.objective.critic_opt)
        return m

    def lr_at(self, step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, self.args.warmup))
        progress = min(step / max(1, self.args.steps), 1.0)
        return self.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def local_batch(self, step: int) -> dict:
        """This rank's rows of the step's global batch (all of it in a single process)."""
        if self.args.batch % self.world:
            raise SystemExit(f"error: --batch {self.args.batch} does not split over {self.world} processes")
        batch = self.bank.batch(step, self.args.batch, self.args.seed)
        rows = slice(self.rank * self.args.batch // self.world, (self.rank + 1) * self.args.batch // self.world)
        batch = {k: (v[rows].to(self.device) if torch.is_tensor(v) else v[rows]) for k, v in batch.items()}
        if self.args.reference == "same":
            # the codec encodes frame 0 on its own, so the first video latent IS the encoded first frame
            batch["reference"] = batch["video"][:, :, :1].clone()
        return {**batch, "rows": rows, "global_batch": self.args.batch}

    def step(self, step: int) -> dict:
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(step)
        gen = step_generator(self.args.seed, step)  # identical on every rank
        batch = self.local_batch(step)
        if hasattr(self.objective, "critic_step"):
            self.objective.critic_step(batch, gen, self.world)
        loss, logs = self.net(batch, gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        with torch.no_grad():
            # the decay ramps up with the step count: a plain 0.999 would still average in the untrained
            # weights of a run a few thousand steps long
            d = min(self.args.ema, (1 + step) / (10 + step))
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(pm, 1 - d)
        return {**logs, "grad_norm": float(gnorm), "lr": self.lr_at(step)}

    def export(self, folder: Path, step: int) -> None:
        from ..model.codec import load_codec
        from ..model.loading import save_checkpoint

        model = self.ema
        if self.args.lora:
            from .lora import merge_lora

            model = merge_lora(copy.deepcopy(self.ema))
        codec_sha = load_codec(self.args.codec).sha256 if Path(self.args.codec).exists() else None
        small = self.preset.name in ("tiny", "micro")
        save_checkpoint(folder, model, self.preset, dtype=torch.float16 if small else None,
                        max_shard_mb=9.0 if small else None,
                        metadata={"stage": self.args.stage, "steps": step, "codec_sha256": codec_sha,
                                  "train_seeds": self.args.train_seeds, "mode": "bidirectional" if self.args.stage == "teacher" else "block-causal"})


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..eval.codec_report import parse_seeds
    from ..model.codec import load_codec
    from .latents import build_or_load_bank

    from .latents import LatentBank

    torch.set_num_threads(args.threads)
    codec = load_codec(args.codec) if Path(args.codec).exists() else None
    preset = args.config if isinstance(args.config, Preset) else get_preset(args.config)
    if args.bank is not None:
        bank = LatentBank.load(args.bank)
    elif codec is None:
        raise SystemExit(f"error: no codec at {args.codec} (train it first: python -m fashionchameleon train-codec)")
    else:
        bank = build_or_load_bank(args.codec, codec.sha256, parse_seeds(args.train_seeds),
                                  frames=1 + 4 * (preset.train_latent_frames - 1))
    trainer = Trainer(args, bank)
    run_dir = trainer.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    step, _ = load_run_state(run_dir, trainer.modules())
    if trainer.rank == 0:
        truncate_log(run_dir, step)
        (run_dir / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items() if k != "func"}, indent=2))
        if step:
            print(f"resumed {run_dir} at step {step}", file=sys.stderr)
    if args.export_only:
        if args.out is None or step == 0:
            raise SystemExit("error: --export-only needs --out and a run folder with saved state")
        trainer.export(args.out, step)
        print(f"exported the EMA weights of step {step} to {args.out}", file=sys.stderr)
        return 0
    bar = tqdm(total=args.steps, initial=step, desc=f"train {args.stage}", unit="step", file=sys.stderr,
               disable=trainer.rank != 0)
    stop_at = min(args.steps, step + args.stop_after) if args.stop_after else args.steps
    trainer.model.train()
    while step < stop_at:
        t0 = time.perf_counter()
        logs = trainer.step(step)
        step += 1
        if trainer.rank == 0:
            append_log(run_dir, {"step": step, **logs, "sec": round(time.perf_counter() - t0, 3)})
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
        if step % args.save_every == 0 or step == stop_at:
            if trainer.rank == 0:
                save_run_state(run_dir, step, trainer.modules())
                plot_curves(read_log(run_dir), [k for k in ("loss", "dmd_loss", "critic_loss") if k in logs],
                            run_dir / "loss.png", f"{args.stage} ({trainer.preset.name})")
        if args.sample_every and codec is not None and step % args.sample_every == 0 and trainer.rank == 0:
            from .samples import write_sample

            write_sample(trainer, codec, step)
    bar.close()
    if trainer.rank == 0 and args.out is not None and step >= args.steps:
        trainer.export(args.out, step)
        print(f"exported EMA weights to {args.out}", file=sys.stderr)
    if trainer.world > 1:
        torch.distributed.destroy_process_group()
    return 0
