"""Run under torchrun by tests/test_fsdp.py: a few FSDP2 training steps of every stage on `micro`, saving the
losses, gradient norms and full gradients/weights (rank 0) for comparison with one process."""

import argparse
import sys
from pathlib import Path

import torch

from fashionchameleon.training import trainer as trainer_mod
from fashionchameleon.training.parallel import shutdown_distributed
from fashionchameleon.training.latents import LatentBank


def full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu().clone()


def main() -> None:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    p = argparse.ArgumentParser()
    trainer_mod.add_arguments(p)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tr = trainer_mod.Trainer(args, LatentBank.load(args.bank))
    record = {"logs": [], "grads": [], "weights": None}
    for step in range(2):
        record["logs"].append(tr.step(step))
        # the step's (clipped) gradients are still on the sharded parameters: gather them (all ranks)
        record["grads"].append({n: full(p.grad) for n, p in tr.model.named_parameters() if p.grad is not None})
    record["weights"] = {n: full(p) for n, p in tr.model.named_parameters()}
    if tr.critic is not None:
        record["critic"] = {n: full(p) for n, p in tr.critic.named_parameters()}
    if tr.rank == 0:
        torch.save(record, out)
    shutdown_distributed()


if __name__ == "__main__":
    main()
