"""FSDP2 training on 2 CPU processes (gloo): the same losses and gradients as one process on the same global
batch, exact resume from sharded checkpoints, and activation checkpointing that changes no number."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_training import cli_args, parse, teacher_checkpoint

from fashionchameleon.training import trainer as trainer_mod
from fashionchameleon.training.latents import LatentBank

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("teacher", "forcing", "dmd")


def torchrun(args: list[str], port: int, module: list[str] | None = None, timeout: int = 240) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           *(module or []), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]


def stage_args(tmp_path: Path, stage: str, *extra: str) -> list[str]:
    more = []
    if stage == "dmd":
        t = teacher_checkpoint(tmp_path)
        more = ["--teacher", str(t), "--init", str(t)]
    return cli_args(tmp_path, stage, "--lr", "1e-3", *more, *extra)


def one_process(argv: list[str], checkpointing: bool = False) -> dict:
    """The reference: two steps in this process, no distribution, no FSDP."""
    args = parse(argv + (["--checkpointing"] if checkpointing else []))
    tr = trainer_mod.Trainer(args, LatentBank.load(args.bank))
    rec = {"logs": [], "grads": []}
    for step in range(2):
        rec["logs"].append(tr.step(step))
        rec["grads"].append({n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None})
    rec["weights"] = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    if tr.critic is not None:
        rec["critic"] = {n: p.detach().clone() for n, p in tr.critic.named_parameters()}
    return rec


def assert_same(a: dict, b: dict, atol: float = 2e-6, rtol: float = 1e-4) -> None:
    for la, lb in zip(a["logs"], b["logs"]):
        for k in ("loss", "grad_norm"):
            assert la[k] == pytest.approx(lb[k], rel=rtol, abs=atol), (k, la[k], lb[k])
    for ga, gb in zip(a["grads"], b["grads"]):
        assert set(ga) == set(gb)
        for n in ga:
            torch.testing.assert_close(ga[n], gb[n], atol=atol, rtol=rtol, msg=n)
    for key in ("weights", "critic"):
        for n in a.get(key, {}):
            torch.testing.assert_close(a[key][n], b[key][n], atol=atol, rtol=rtol, msg=f"{key}.{n}")


@pytest.mark.parametrize("stage", STAGES)
def test_fsdp_two_processes_match_one_process(tmp_path, stage):
    argv = stage_args(tmp_path, stage)
    ref = one_process(argv)
    out = tmp_path / "fsdp.pt"
    # activation checkpointing on in the sharded run: both properties at once
    torchrun([str(ROOT / "tests" / "fsdp_worker.py"), str(out), *argv, "--fsdp", "--checkpointing"],
             port=29600 + STAGES.index(stage))
    assert_same(torch.load(out, weights_only=False), ref)
    assert ref["logs"][0]["grad_norm"] > 0


@pytest.mark.parametrize("stage", ["forcing", "dmd"])
def test_activation_checkpointing_changes_no_number(tmp_path, stage, monkeypatch):
    argv = stage_args(tmp_path, stage)
    plain = one_process(argv)
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    ckpt = one_process(argv, checkpointing=True)
    assert calls, "activation checkpointing was not used"
    assert_same(ckpt, plain, atol=1e-6, rtol=1e-6)


def test_fsdp_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    def run(folder: Path, port: int, *extra: str) -> None:
        folder.mkdir(exist_ok=True)
        argv = stage_args(folder, "dmd", "--steps", "2", "--fsdp", "--out", str(folder / "out"), *extra)
        torchrun(argv, port=port, module=["-m", "fashionchameleon", "train"])

    run(tmp_path / "a", 29610)
    run(tmp_path / "b", 29611, "--stop-after", "1")
    b_run = tmp_path / "b" / "run-dmd"
    assert json.loads((b_run / "latest.json").read_text())["step"] == 1
    assert len(list((b_run / "dcp-00000001").glob("*.distcp"))) == 2          # one shard file per rank
    # a kill during the next save leaves a partial folder behind: it must be ignored
    (b_run / ".dcp-00000002.partial").mkdir()
    (b_run / ".dcp-00000002.partial" / "__0_0.distcp").write_bytes(b"truncated")
    run(tmp_path / "b", 29612)
    a, b = load_file(str(tmp_path / "a" / "out" / "model.safetensors")), load_file(str(tmp_path / "b" / "out" / "model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    logs = [[json.loads(line) for line in (tmp_path / r / "run-dmd" / "log.jsonl").read_text().splitlines()]
            for r in ("a", "b")]
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]
    assert [r["critic_loss"] for r in logs[0]] == [r["critic_loss"] for r in logs[1]]
    assert len(logs[1]) == 2
