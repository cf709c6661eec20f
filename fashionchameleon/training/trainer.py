"""``python -m fashionchameleon train --stage teacher|forcing|dmd --config NAME``: one training loop.

The loop is the same for every stage; the stage picks the objective and where weights start:
teacher (from scratch), forcing (student initialised from the teacher), dmd (student from forcing, critic
from the teacher). Run state (model, EMA, optimizer, step, RNG) lives in a run folder outside the
repository and resumes exactly: batches and noise are pure functions of (seed, step). Under ``torchrun`` the
global batch is split across ranks and gradients are averaged by DDP (gloo on CPU, nccl on GPU), or, with
``--fsdp``, every network is sharded with FSDP2 (bf16 on GPU, fp32 masters, sharded checkpoints through
torch.distributed.checkpoint; see ``parallel.py``), which is what the real shapes need.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from ..config import ModelConfig, Preset, get_preset
from .runstate import (append_log, default_run_dir, load_run_state, plot_curves, read_log, save_run_state,
                       step_generator, truncate_log)

STAGES = ("teacher", "forcing", "dmd")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", choices=STAGES, required=True)
    p.add_argument("--config", default="tiny", help="model preset (its world_version and resolution pick the "
                   "training world and frame size: tiny = world v1 128x128, tiny-v2-* = world v2 portrait)")
    p.add_argument("--steps", type=int, default=2000, help="total optimizer steps of this stage")
    p.add_argument("--batch", type=int, default=8, help="global batch size")
    p.add_argument("--lr", type=float, default=None, help="default: 4e-4 teacher, 1e-4 forcing, 2e-5 dmd")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay (0: no EMA copy; export the weights)")
    p.add_argument("--gate-weight", type=float, default=0.0, metavar="WEIGHT",
                   help="forcing with a reference_copy model: weight of a loss supervising the copy gate with where "
                        "the truth is the reference (0: the velocity loss alone)")
    p.add_argument("--gate-target", choices=["bound", "oracle"], default="bound",
                   help="--gate-weight's target: bound = 1 where the truth is within 0.2 of the reference; oracle = "
                        "the gate that moves the network's own clean estimate closest to the truth")
    p.add_argument("--gate-lr", type=float, default=None, metavar="LR",
                   help="forcing with a reference_copy model: the copy gate's own peak learning rate (same schedule; "
                        "default: --lr)")
    p.add_argument("--gate-only", action="store_true",
                   help="forcing with a reference_copy model: train only the copy gate (copy_proj, copy_distance), the "
                        "rest frozen as --init left it (cheap: no backward through the trunk; pass a larger --lr)")
    p.add_argument("--moved-weight", type=float, default=0.0, metavar="W",
                   help="forcing with a model that takes the reference latent: the velocity loss weighs positions "
                        "where the truth left the reference (new garment, moving limbs) 1 + W times (0: all alike)")
    p.add_argument("--region-dilation", type=int, default=None, metavar="N",
                   help="a model with a region head: train with the head's mark spread N latent positions (0-8) "
                        "instead of the preset's; the checkpoint records it")
    p.add_argument("--tau", type=float, default=0.2, help="dmd: gradient-reweighting temperature (inf = plain DMD)")
    p.add_argument("--reference", choices=["other", "same"], default="other",
                   help="other: the reference wears another garment (the paper's mismatch); same: the clip's own "
                        "first frame (the no-mismatch ablation)")
    p.add_argument("--critic-lr", type=float, default=4e-5, help="dmd: the critic's (fake score's) learning rate")
    p.add_argument("--anchor", type=float, default=0.0, metavar="WEIGHT",
                   help="dmd: add WEIGHT x the teacher-forcing loss on the batch's clips (a regression anchor "
                        "that keeps the scene; 0: plain GR-DMD)")
    p.add_argument("--init", type=Path, default=None, help="checkpoint folder to start from (forcing/dmd)")
    p.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint (dmd: real score and critic init)")
    p.add_argument("--codec", type=Path, default=Path("assets/checkpoints/codec"))
    p.add_argument("--train-seeds", default="0-2999", help="training seeds A-B (must lie in 0-499,999)")
    p.add_argument("--bank", type=Path, default=None, help="a pre-encoded latent bank file (default: built from --train-seeds)")
    p.add_argument("--world-mix", type=float, default=0.0, metavar="FRACTION",
                   help="world-v2 presets: this share of the clips comes from world 1 (centre-cropped to the "
                        "preset's portrait, the first train seeds), so the model keeps v1's people too (0-0.5)")
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
    p.add_argument("--fsdp", action="store_true", help="shard every network with FSDP2 (launch with torchrun; "
                   "one process works too)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                   help="FSDP compute dtype on GPU (masters, optimizer states and gradient reduction stay fp32; "
                        "CPU always computes in fp32)")
    p.add_argument("--checkpointing", action="store_true",
                   help="activation checkpointing per transformer block (recompute in backward: less memory)")


def with_reference_channels(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """``state`` of a network without reference channels, for one with ``cfg.reference_channels``: the patch
    embedding gains zero weights for them, so the new network starts as exactly the old one and learns to use
    the concatenated reference from there. Any other state is returned as it is."""
    w = state.get("patch_embedding.weight")
    if not cfg.reference_channels or w is None or w.shape[1] != cfg.in_channels:
        return state
    zeros = w.new_zeros(w.shape[0], cfg.reference_channels, *w.shape[2:])
    return {**state, "patch_embedding.weight": torch.cat([w, zeros], 1)}


def warm_start(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """``state`` of a smaller network of the same family for one of ``cfg``: zero weights for reference
    channels it lacks (``with_reference_channels``) and a closed copy gate (``reference_copy``), so the new
    network computes exactly what the old one did until training moves the new weights."""
    state = with_reference_channels(state, cfg)
    if cfg.reference_copy and "copy_proj.weight" not in state and "proj_out.weight" in state:
        w = state["proj_out.weight"]
        gates = w.shape[0] // cfg.out_channels
        state = {**state, "copy_proj.weight": w.new_zeros(gates, w.shape[1]), "copy_proj.bias": w.new_zeros(gates),
                 "copy_distance": w.new_zeros(())}
    return state


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank() if world > 1 else 0), world


def codec_latents(codec: str | Path) -> str | None:
    """The latent-space hash of ``--codec`` when it is a folder here (None for a hub id)."""
    from ..model.codec import load_codec

    return load_codec(codec).latent_sha256 if Path(codec).exists() else None


def check_checkpoint_latents(checkpoints: list[tuple[str, dict]], latents: str | None, codec: str | Path) -> None:
    """``--init`` and ``--teacher`` (name, metadata) must have been trained on ``--codec``'s latents
    (``latents``: its hash; None skips the check)."""
    from ..model.loading import CheckpointError, require_same_latents

    if latents is None:
        return
    try:
        for name, meta in checkpoints:
            require_same_latents(name, meta, latents, f"--codec {codec}")
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None


class Trainer:
    def __init__(self, args: argparse.Namespace, bank=None, codec_sha256: str | None = None):
        """``codec_sha256``: ``--codec``'s latent hash when the caller has loaded it (else loaded here)."""
        from ..model.dit import WanDiT
        from ..model.loading import load_checkpoint

        self.args = args
        self.fsdp = bool(getattr(args, "fsdp", False))
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if self.fsdp:
            from .parallel import init_distributed

            if args.lora:
                raise SystemExit("error: --lora and --fsdp do not combine (LoRA trains few weights: use DDP)")
            self.rank, self.world = init_distributed(self.device.type)
        else:
            self.rank, self.world = _dist()
        self.preset = args.config if isinstance(args.config, Preset) else get_preset(args.config)
        torch.manual_seed(args.seed)
        self.model = WanDiT(self.preset.model)
        checked = []   # (flag, metadata) of the checkpoints read: their latent space must be --codec's
        if args.init is not None:
            init, _, init_meta = load_checkpoint(args.init)
            checked.append((f"--init {args.init}", init_meta))
            state = warm_start(init.state_dict(), self.preset.model)
            own = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
            if {k: tuple(v.shape) for k, v in state.items()} != own:
                # e.g. a student narrower than its teacher: there is no width-reducing initialisation, so the
                # student starts from a teacher of its own shape (a wider one can only be dmd's --teacher)
                raise SystemExit(f"error: --init {args.init} is a network of another shape than {self.preset.name} "
                                 f"(width, layers, patch size or vocabulary differ)")
            self.model.load_state_dict(state)
        self.model.to(self.device)
        self.teacher = None
        self.critic = None
        if args.stage == "dmd":
            if args.teacher is None:
                raise SystemExit("error: --stage dmd needs --teacher (the real score)")
            self.teacher, _, teacher_meta = load_checkpoint(args.teacher, device=self.device)
            checked.append((f"--teacher {args.teacher}", teacher_meta))
            self.teacher.requires_grad_(False)
            self.critic = copy.deepcopy(self.teacher).requires_grad_(True).train()
        self.codec_sha256 = codec_sha256 or codec_latents(args.codec)   # checked against, and recorded at export
        check_checkpoint_latents(checked, self.codec_sha256, args.codec)
        if args.lora:
            from .lora import apply_lora

            self.model = apply_lora(self.model, args.lora)
        for name, p in self.model.named_parameters():
            # --gate-only: the copy gate alone; a region head was fitted to the world's masks by train-region, and
            # no loss here moves it
            if "region_head." in name or (args.gate_only and not name.startswith("copy_")):
                p.requires_grad_(False)
        # no EMA copy with --ema 0 (one copy of the weights less: the 1-GPU check at real shapes needs it)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval() if args.ema > 0 else None
        self.model.gradient_checkpointing = bool(getattr(args, "checkpointing", False))
        if self.critic is not None:
            self.critic.gradient_checkpointing = self.model.gradient_checkpointing
        self.scopes: dict = {}
        if self.fsdp:
            from .parallel import mixed_precision, shard

            mp = mixed_precision(self.device, getattr(args, "precision", "bf16") == "bf16")
            self.scopes["model"] = shard(self.model, trainable=True, mp_policy=mp)
            if self.ema is not None:
                self.scopes["ema"] = shard(self.ema, trainable=False)   # never runs forward while training
            if self.teacher is not None:
                self.scopes["teacher"] = shard(self.teacher, trainable=False, mp_policy=mp)
                self.scopes["critic"] = shard(self.critic, trainable=True, mp_policy=mp)
        lr = args.lr if args.lr is not None else {"teacher": 4e-4, "forcing": 1e-4, "dmd": 2e-5}[args.stage]
        self.lr = lr
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        gate_lr = args.gate_lr
        # the copy gate's own rate: Adam moves a weight by about its rate per step, and at the trunk's the gate
        # opens too slowly to matter within a run (MODEL_CARD.md, "Copying the reference")
        params = [{"params": [p for n, p in named if not (gate_lr and n.startswith("copy_"))]}]
        if gate_lr:
            params.append({"params": [p for n, p in named if n.startswith("copy_")], "lr_scale": gate_lr / lr})
        params = [group for group in params if group["params"]]     # --gate-only: no trunk group
        # on GPU one parameter at a time: the multi-tensor ("foreach") path allocates temporaries the size of all
        # the (sharded) states at once, 20 GB for a 5B model on one GPU
        self.opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.01,
                                     foreach=False if self.device.type == "cuda" else None)
        self.objective = self._objective()
        self.net = self.objective
        if self.world > 1 and not self.fsdp:
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
            return TeacherForcing(self.model, self.preset, gate_weight=self.args.gate_weight,
                                  gate_target=self.args.gate_target, moved_weight=self.args.moved_weight)
        from .dmd import GradientReweightedDMD

        return GradientReweightedDMD(self.model, self.preset, self.teacher, self.critic, tau=self.args.tau,
                                     critic_lr=self.args.critic_lr, anchor=self.args.anchor)

    def forward_scopes(self) -> list:
        """FSDP roots a step runs inside (the networks' parameters are gathered there); empty without FSDP."""
        return [self.scopes[k] for k in ("model", "teacher", "critic") if k in self.scopes]

    def sharded_parts(self) -> dict:
        parts = {"model": (self.scopes["model"], self.opt)}
        if "ema" in self.scopes:
            parts["ema"] = (self.scopes["ema"], None)
        if "critic" in self.scopes:
            parts["critic"] = (self.scopes["critic"], self.objective.critic_opt)
        return parts

    def modules(self) -> dict:
        m = {"model": self.model, "opt": self.opt}
        if self.ema is not None:
            m["ema"] = self.ema
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
            g["lr"] = self.lr_at(step) * g.get("lr_scale", 1.0)
        gen = step_generator(self.args.seed, step)  # identical on every rank
        batch = self.local_batch(step)
        if self.fsdp:
            from .parallel import reshard, run_scoped

            scopes = self.forward_scopes()
            if hasattr(self.objective, "critic_step"):
                self.objective.critic_step(batch, gen, self.world, scope=lambda fn, *a: run_scoped(scopes, fn, *a),
                                           after_backward=lambda: reshard(self.scopes["critic"]))
            loss, logs = run_scoped(scopes, self.net, batch, gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            reshard(self.scopes["model"])   # the optimizer and the EMA read the sharded parameters
        else:
            if hasattr(self.objective, "critic_step"):
                self.objective.critic_step(batch, gen, self.world)
            loss, logs = self.net(batch, gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        if self.ema is not None:
            with torch.no_grad():
                # the decay ramps up with the step count: a plain 0.999 would still average in the untrained
                # weights of a run a few thousand steps long
                d = min(self.args.ema, (1 + step) / (10 + step))
                for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                    pe.lerp_(pm, 1 - d)
        from .parallel import scalar

        if self.world > 1:
            logs = self._global_logs(logs)
        return {**logs, "grad_norm": scalar(gnorm), "lr": self.lr_at(step)}

    def _global_logs(self, logs: dict) -> dict:
        """Each rank's losses are over its rows: log the global batch's (the mean; the max for maxima)."""
        keys = [k for k in sorted(logs) if isinstance(logs[k], float)]
        t = torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=self.device)
        mx = t.clone()
        torch.distributed.all_reduce(t)                      # gloo has no AVG: sum, then divide
        torch.distributed.all_reduce(mx, op=torch.distributed.ReduceOp.MAX)
        return {**logs, **{k: float(mx[i] if k.endswith("_max") else t[i] / self.world) for i, k in enumerate(keys)}}

    def save(self, step: int) -> None:
        """Run state for exact resume (every rank calls this under FSDP)."""
        if self.fsdp:
            from .parallel import save_sharded

            save_sharded(self.run_dir, step, self.sharded_parts())
        elif self.rank == 0:
            save_run_state(self.run_dir, step, self.modules())

    def load(self) -> int:
        if self.fsdp:
            from .parallel import load_sharded

            return load_sharded(self.run_dir, self.sharded_parts())[0]
        return load_run_state(self.run_dir, self.modules())[0]

    def export(self, folder: Path, step: int) -> None:
        """The EMA weights as a checkpoint folder (every rank calls this under FSDP; rank 0 writes)."""
        from ..model.dit import WanDiT
        from ..model.loading import save_checkpoint

        model = self.ema if self.ema is not None else self.model
        if self.fsdp:
            from .parallel import full_state_dict

            state = full_state_dict(self.scopes["ema" if self.ema is not None else "model"])
            if self.rank != 0:
                return
            with torch.device("meta"):
                model = WanDiT(self.preset.model)
            model.load_state_dict(state, assign=True)
        if self.args.lora:
            from .lora import merge_lora

            model = merge_lora(copy.deepcopy(model))
        small = bool(self.preset.model.prompt_vocab)     # the tiny family (tiny, micro, tiny-v2-*): fp16, small shards
        metadata = {"stage": self.args.stage, "steps": step, "codec_sha256": self.codec_sha256,
                    "train_seeds": self.args.train_seeds,
                    "mode": "bidirectional" if self.args.stage == "teacher" else "block-causal"}
        if self.args.world_mix:
            metadata["world_mix"] = self.args.world_mix
        if self.args.stage == "dmd" and self.args.anchor:
            metadata["anchor"] = self.args.anchor
        if self.args.gate_weight:
            metadata["gate_weight"] = self.args.gate_weight
            metadata["gate_target"] = self.args.gate_target
        if self.args.moved_weight:
            metadata["moved_weight"] = self.args.moved_weight
        if self.args.gate_only:
            metadata["gate_only"] = True
        if self.args.gate_lr:
            metadata["gate_lr"] = self.args.gate_lr
        save_checkpoint(folder, model, self.preset, dtype=torch.float16 if small else None,
                        max_shard_mb=9.0 if small else None, metadata=metadata)


def _world_mix_problem(args: argparse.Namespace, preset: Preset) -> str | None:
    """Why ``--world-mix`` cannot apply to this run (None when it can)."""
    from ..data import world as world_v1

    if not 0.0 < args.world_mix <= 0.5:
        return f"a share in (0, 0.5], got {args.world_mix}"
    if args.bank is not None:
        return "mixes the banks it builds from --train-seeds, not a pre-encoded --bank"
    if preset.world_version != 2:
        return f"{preset.name} trains on world {preset.world_version}; the mix adds world 1 to world-v2 presets"
    unknown = [m for m in world_v1.MOTIONS if m not in preset.model.prompt_vocab]
    if unknown:
        return f"world 1's motions {', '.join(unknown)} are prompts {preset.name} does not know"
    return None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.world import parse_seeds
    from ..model.codec import load_codec
    from .latents import LatentBank, build_or_load_bank, mix_banks, other_world_count

    torch.set_num_threads(args.threads)
    codec = load_codec(args.codec) if Path(args.codec).exists() else None
    preset = args.config if isinstance(args.config, Preset) else get_preset(args.config)
    if args.region_dilation is not None:
        if not preset.model.region_head:
            raise SystemExit(f"error: --region-dilation needs a model with a region head (e.g. --config "
                             f"tiny-v2-region), not {preset.name}")
        try:
            model_cfg = dataclasses.replace(preset.model, region_dilation=args.region_dilation)
        except ValueError as e:
            raise SystemExit(f"error: --region-dilation: {e}") from None
        args.config = preset = dataclasses.replace(preset, model=model_cfg)
    try:
        world_version, world_size = preset.training_world()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.anchor and (args.stage != "dmd" or not math.isfinite(args.anchor) or args.anchor < 0):
        raise SystemExit("error: --anchor is a non-negative weight of the dmd stage")
    # the copy gate's flags all belong to the forcing stage of a model that has the gate
    copy_forcing = args.stage == "forcing" and preset.model.reference_copy
    if args.gate_weight and (not copy_forcing or not math.isfinite(args.gate_weight) or args.gate_weight < 0):
        raise SystemExit("error: --gate-weight is a non-negative weight of the forcing stage of a model with "
                         "reference_copy (e.g. --config tiny-v2-copy)")
    if args.gate_lr is not None and (not copy_forcing or args.lora or args.fsdp
                                     or not math.isfinite(args.gate_lr) or args.gate_lr <= 0):
        raise SystemExit("error: --gate-lr is a positive rate of the copy gate in the forcing stage of a model with "
                         "reference_copy (e.g. --config tiny-v2-copy), without --lora or --fsdp")
    if args.gate_only and (not copy_forcing or args.lora or args.fsdp):
        raise SystemExit("error: --gate-only trains the copy gate in the forcing stage of a model with reference_copy "
                         "(e.g. --config tiny-v2-copy), without --lora or --fsdp")
    if args.moved_weight and (args.stage != "forcing" or not preset.model.reference_channels
                              or not math.isfinite(args.moved_weight) or args.moved_weight < 0):
        raise SystemExit("error: --moved-weight is a non-negative weight of the forcing stage of a model that takes "
                         "the reference latent (e.g. --config tiny-v2-region)")
    if args.world_mix:
        problem = _world_mix_problem(args, preset)
        if problem:
            raise SystemExit(f"error: --world-mix: {problem}")
    if args.bank is not None:
        bank = LatentBank.load(args.bank)
    elif codec is None:
        raise SystemExit(f"error: no codec at {args.codec} (train it first: python -m fashionchameleon train-codec)")
    else:
        seeds = parse_seeds(args.train_seeds)
        frames = 1 + 4 * (preset.train_latent_frames - 1)
        bank = build_or_load_bank(args.codec, codec.latent_sha256, seeds, frames=frames, size=world_size,
                                  version=world_version)
        if args.world_mix:
            bank = mix_banks(bank, build_or_load_bank(args.codec, codec.latent_sha256,
                                                      seeds[:other_world_count(len(seeds), args.world_mix)],
                                                      frames=frames, size=world_size, version=1))
    if bank.video.shape[1] != preset.latent_channels:
        raise SystemExit(f"error: the bank holds {bank.video.shape[1]}-channel latents, {preset.name} needs "
                         f"{preset.latent_channels} (build it with `bank --config {preset.name}`)")
    if tuple(bank.video.shape[-2:]) != preset.latent_size:
        h, w = bank.video.shape[-2:]
        raise SystemExit(f"error: the bank holds {w}x{h} latents, {preset.name} needs "
                         f"{preset.latent_size[1]}x{preset.latent_size[0]} ({'x'.join(map(str, preset.resolution))} "
                         f"frames; a bank of another world or size?)")
    trainer = Trainer(args, bank, None if codec is None else codec.latent_sha256)
    run_dir = trainer.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    step = trainer.load()
    if args.export_only:
        # a milestone of a run that may still be going: its log and its args.json are the run's, left as they are
        if args.out is None or step == 0:
            raise SystemExit("error: --export-only needs --out and a run folder with saved state")
        trainer.export(args.out, step)
        if trainer.rank == 0:
            print(f"exported the EMA weights of step {step} to {args.out}", file=sys.stderr)
        return 0
    if trainer.rank == 0:
        truncate_log(run_dir, step)
        (run_dir / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items() if k != "func"}, indent=2))
        if step:
            print(f"resumed {run_dir} at step {step}", file=sys.stderr)
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
            trainer.save(step)
            if trainer.rank == 0:
                curves = [k for k in ("loss", "dmd_loss", "anchor_loss", "critic_loss") if k in logs]
                plot_curves(read_log(run_dir), curves,
                            run_dir / "loss.png", f"{args.stage} ({trainer.preset.name})")
        # (samples run one process's forward: not with sharded networks)
        if (args.sample_every and codec is not None and step % args.sample_every == 0 and trainer.rank == 0
                and not trainer.fsdp):
            from .samples import write_sample

            write_sample(trainer, codec, step)
    bar.close()
    if args.out is not None and step >= args.steps and (trainer.rank == 0 or trainer.fsdp):
        trainer.export(args.out, step)
        if trainer.rank == 0:
            print(f"exported EMA weights to {args.out}", file=sys.stderr)
    if trainer.world > 1 or trainer.fsdp:
        from .parallel import shutdown_distributed

        shutdown_distributed()
    return 0
