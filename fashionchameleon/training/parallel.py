"""FSDP2 for the training stages: sharded networks, bf16 mixed precision, sharded checkpoints.

Every network a stage trains or queries (teacher: one; forcing: one; DMD: student, real score, critic) is
sharded with ``torch.distributed.fsdp.fully_shard``: one unit per transformer block and a root unit for the
rest (patch and condition embedders, output head). Masters, gradients and Adam states stay fp32 and
sharded; on GPU the forward/backward runs in bf16 (``MixedPrecisionPolicy``, gradients reduced in fp32).

Two properties of this codebase shape how:

* The networks are used outside their own ``forward`` (``embed_text``, several passes per step that hand
  keys/values to each other through the KV cache). So a network's root unit is a ``ShardScope`` whose
  forward runs a function: everything a step does with the network happens inside one root forward, where
  the root parameters are gathered, and FSDP reduces the root's gradients once at the end of backward.
* A block's keys reach later passes through the cache, not through the block's output, so a block's
  gradient may be needed after FSDP's per-block post-backward hook has run. Trainable networks therefore
  keep their gathered bf16 blocks from forward to the end of backward (``reshard_after_forward=False``,
  no reshard after backward) and ``reshard()`` explicitly before the optimizer step; what is sharded is the
  fp32 master weights, gradients and optimizer states (the large part: 16 of 18 bytes a parameter). Frozen
  networks (DMD's real score) reshard after every forward.

Checkpoints: ``torch.distributed.checkpoint`` (one shard file per rank), written under a temporary name and
renamed when every rank is done, so a run killed mid-save resumes from the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn as nn

# Our blocks return views (reshapes of their output) and nothing modifies a block's output in place, which is
# the case FSDP2's warning is about.
warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")


def init_distributed(device_type: str) -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun (nccl on GPU, gloo on CPU). A single
    process asked for FSDP gets a one-process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not dist.is_initialized():
        if world == 1:
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
            os.environ.setdefault("RANK", "0")
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", world_size=world,
                                rank=int(os.environ.get("RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def shutdown_distributed() -> None:
    """End the process group cleanly: a barrier first, so no rank tears down gloo's connections while a peer
    still has a collective in flight (that race aborts the peer with "terminate called without an active
    exception")."""
    if dist.is_initialized():
        dist.barrier()
        # ... and a count in the rendezvous store (which outlives the group's connections): no rank starts closing
        # its connections until every rank has left the barrier, whose last messages may still be in flight
        store = dist.distributed_c10d._get_default_store()
        store.add("fashionchameleon/shutdown", 1)
        deadline = time.monotonic() + 60
        while store.add("fashionchameleon/shutdown", 0) < dist.get_world_size() and time.monotonic() < deadline:
            time.sleep(0.01)
        dist.destroy_process_group()


class ShardScope(nn.Module):
    """The FSDP root of one network: ``scope(fn, *args)`` runs ``fn(*args)`` as the root's forward, so every
    use of the network inside (its forward, ``embed_text``, several passes) sees gathered root parameters."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, fn: Callable, *args: Any) -> Any:
        return fn(*args)


def mixed_precision(device: torch.device, enabled: bool = True):
    """bf16 compute with fp32 gradient reduction on GPU; None (fp32 everywhere) on CPU or when disabled."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if not enabled or device.type != "cuda":
        return None
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard(net: nn.Module, *, trainable: bool, mp_policy=None) -> ShardScope:
    """Shard a ``WanDiT`` (one unit per block, a ``ShardScope`` root); returns the scope. Parameters are
    replaced by sharded ones: build optimizers afterwards."""
    from torch.distributed.fsdp import fully_shard

    kw = {"mp_policy": mp_policy} if mp_policy is not None else {}
    for block in net.blocks:
        fully_shard(block, reshard_after_forward=not trainable, **kw)
        if trainable:
            block.set_reshard_after_backward(False)
    scope = ShardScope(net)
    fully_shard(scope, **kw)
    return scope


def units(scope: ShardScope) -> list[nn.Module]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in scope.modules() if isinstance(m, FSDPModule)]


def reshard(scope: ShardScope) -> None:
    """Free the gathered parameters (after backward, before the optimizer step reads the sharded ones)."""
    for m in units(scope):
        m.reshard()


def run_scoped(scopes: list[ShardScope], fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` inside every scope's root forward (nested)."""
    if not scopes:
        return fn(*args)
    return scopes[0](lambda: run_scoped(scopes[1:], fn, *args))


def scalar(t: torch.Tensor) -> float:
    """A float from a (possibly distributed) scalar such as ``clip_grad_norm_``'s total norm."""
    return float(t.full_tensor() if hasattr(t, "full_tensor") else t)


# -- sharded checkpoints ---------------------------------------------------------------------------------------

def _state(parts: dict[str, tuple[ShardScope, torch.optim.Optimizer | None]]) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state: dict[str, Any] = {}
    for name, (scope, opt) in parts.items():
        state[name] = scope.state_dict()
        if opt is not None:
            state[f"{name}_opt"] = get_optimizer_state_dict(scope, opt)
    return state


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    pointer = run_dir / "latest.json"
    if not pointer.exists():
        return None
    d = json.loads(pointer.read_text())
    return int(d["step"]), run_dir / d["dir"]


def save_sharded(run_dir: Path, step: int, parts: dict[str, tuple[ShardScope, torch.optim.Optimizer | None]],
                 extra: dict | None = None) -> None:
    """Every rank writes its shards of every network and optimizer; rank 0 then renames the folder and moves
    the ``latest.json`` pointer (a kill before that leaves the previous checkpoint in charge)."""
    import torch.distributed.checkpoint as dcp

    rank = dist.get_rank()
    name = f"dcp-{step:08d}"
    tmp = run_dir / f".{name}.partial"
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    dcp.save(_state(parts), checkpoint_id=str(tmp))
    dist.barrier()
    if rank == 0:
        previous = latest_checkpoint(run_dir)
        shutil.rmtree(run_dir / name, ignore_errors=True)
        os.replace(tmp, run_dir / name)
        torch.save({"torch": torch.get_rng_state(), "extra": extra or {}}, run_dir / name / "rng.pt")
        pointer = run_dir / ".latest.json.tmp"
        pointer.write_text(json.dumps({"step": step, "dir": name}))
        os.replace(pointer, run_dir / "latest.json")
        if previous is not None and previous[1].name != name:
            shutil.rmtree(previous[1], ignore_errors=True)
    dist.barrier()


def load_sharded(run_dir: Path, parts: dict[str, tuple[ShardScope, torch.optim.Optimizer | None]]) -> tuple[int, dict]:
    """Restore what ``save_sharded`` wrote; (0, {}) when there is nothing to resume."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import DefaultLoadPlanner
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    found = latest_checkpoint(run_dir)
    if found is None:
        return 0, {}
    step, folder = found
    state = _state(parts)
    weights = {k: v for k, v in state.items() if not k.endswith("_opt")}
    dcp.load(weights, checkpoint_id=str(folder))        # strict: every weight must be there
    # Adam keeps no state for parameters that never had a gradient (cross-attention's query/key under
    # one-token prompts), while a fresh optimizer's state dict lists them all: those may be absent
    optims = {k: v for k, v in state.items() if k.endswith("_opt")}
    dcp.load(optims, checkpoint_id=str(folder), planner=DefaultLoadPlanner(allow_partial_load=True))
    state = {**weights, **optims}
    for name, (scope, opt) in parts.items():
        scope.load_state_dict(state[name])
        if opt is not None:
            set_optimizer_state_dict(scope, opt, state[f"{name}_opt"])
    saved = torch.load(folder / "rng.pt", weights_only=True)
    torch.set_rng_state(saved["torch"])
    return step, saved.get("extra", {})


def full_state_dict(scope: ShardScope) -> dict[str, torch.Tensor]:
    """The network's whole state dict on CPU, on rank 0 (empty elsewhere); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(scope, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.removeprefix("net."): v for k, v in sd.items()}
