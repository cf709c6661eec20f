"""Training stages on the `micro` preset: masks, one step lowers each loss, exact resume, 2-process DDP."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fashionchameleon.config import TINY_PROMPTS, get_preset
from fashionchameleon.model.kv_cache import WindowPolicy, block_causal_mask
from fashionchameleon.training import trainer as trainer_mod
from fashionchameleon.training.dmd import frame_weights
from fashionchameleon.training.latents import LatentBank
from fashionchameleon.training.runstate import step_generator

ROOT = Path(__file__).resolve().parents[1]


def make_bank(path: Path, n: int = 8) -> Path:
    g = torch.Generator().manual_seed(0)
    frames = get_preset("micro").train_latent_frames
    bank = LatentBank(torch.arange(n), torch.randn(n, 16, frames, 4, 4, generator=g).half(),
                      torch.randn(n, 16, 1, 4, 4, generator=g).half(), torch.randn(n, 16, 1, 4, 4, generator=g).half(),
                      [TINY_PROMPTS[i % len(TINY_PROMPTS)] for i in range(n)])
    bank.save(path)
    return path


def cli_args(tmp_path: Path, stage: str, *extra: str) -> list[str]:
    bank = tmp_path / "bank.safetensors"
    if not bank.exists():
        make_bank(bank)
    return ["--stage", stage, "--config", "micro", "--bank", str(bank), "--codec", str(tmp_path / "no-codec"),
            "--run-dir", str(tmp_path / f"run-{stage}"), "--sample-every", "0", "--save-every", "1",
            "--threads", "1", "--batch", "4", "--warmup", "1", *extra]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    trainer_mod.add_arguments(p)
    return p.parse_args(argv)


def test_teacher_forcing_mask_hand_built():
    # 6 frames in blocks of 3, prefix of 2, sink 3, window 3: rows = clean 0..5 then noisy 0..5
    m = block_causal_mask(6, 3, WindowPolicy(3, 3), context_frames=2, teacher_forcing=True).int()
    P, C0, C1, N0, N1 = [1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]
    o = [0, 0, 0]
    expected = torch.tensor(
        [P + C0 + o + o + o] * 3            # clean block 0: prefix + itself
        + [P + C0 + C1 + o + o] * 3         # clean block 1: prefix + clean 0 + itself
        + [P + o + o + N0 + o] * 3          # noisy block 0: prefix + itself
        + [P + C0 + o + o + N1] * 3)        # noisy block 1: prefix + clean 0 + itself
    assert torch.equal(m, expected)


def test_block_causal_mask_with_eviction_hand_built():
    # 9 frames, blocks of 3, sink 3, window 3: block 2 sees the sink (block 0) and block 1, block 3 n/a
    m = block_causal_mask(9, 3, WindowPolicy(3, 3)).int()
    row_block2 = m[6].tolist()
    assert row_block2 == [1, 1, 1, 1, 1, 1, 1, 1, 1]
    m = block_causal_mask(12, 3, WindowPolicy(3, 3)).int()
    assert m[9].tolist() == [1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]   # block 1 evicted for block 3


def test_frame_weights():
    r = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    w = frame_weights(r, 0.2)
    assert torch.allclose(w.mean(), torch.tensor(1.0)) and w[0, 0] > w[0, 1] > w[0, 3]  # worse frames weigh more
    assert torch.equal(frame_weights(r, float("inf")), torch.ones_like(r))


def test_reference_same_uses_the_clips_own_first_latent(tmp_path):
    # the no-mismatch ablation: the reference is the target clip's first frame, not another garment's render
    for mode, same in (("other", False), ("same", True)):
        tr = trainer_mod.Trainer(parse(cli_args(tmp_path, "forcing", "--reference", mode)),
                                 LatentBank.load(tmp_path / "bank.safetensors"))
        b = tr.local_batch(3)
        assert torch.equal(b["reference"], b["video"][:, :, :1]) is same
        assert torch.equal(b["video"], tr.bank.batch(3, 4)["video"])


def teacher_checkpoint(tmp_path: Path) -> Path:
    from fashionchameleon.model.dit import WanDiT
    from fashionchameleon.model.loading import save_checkpoint

    torch.manual_seed(1)
    folder = tmp_path / "teacher"
    save_checkpoint(folder, WanDiT(get_preset("micro").model), get_preset("micro"))
    return folder


@pytest.mark.parametrize("stage", ["teacher", "forcing", "dmd"])
def test_one_step_lowers_the_loss_on_a_fixed_batch(tmp_path, stage):
    extra = ["--lr", "3e-3"]
    if stage == "dmd":
        t = teacher_checkpoint(tmp_path)
        # Adam's first step moves every weight by ~lr whatever the gradient: keep it small near the optimum
        extra = ["--lr", "1e-5", "--teacher", str(t), "--init", str(t)]
    args = parse(cli_args(tmp_path, stage, *extra))
    tr = trainer_mod.Trainer(args, LatentBank.load(args.bank))
    batch = {**tr.bank.batch(0, 4), "rows": slice(None), "global_batch": 4}
    obj = tr.objective
    if stage == "dmd":
        x, target, w, _ = obj.targets(batch, step_generator(0, 0))
        before = obj.surrogate(x, target, w)
        tr.opt.zero_grad()
        before.backward()
        tr.opt.step()
        x2, _, _, _ = obj.targets(batch, step_generator(0, 0))
        after = obj.surrogate(x2, target, w)
    else:
        before, _ = obj(batch, step_generator(0, 0))
        tr.opt.zero_grad()
        before.backward()
        tr.opt.step()
        after, _ = obj(batch, step_generator(0, 0))
    assert after.item() < before.item()


def test_dmd_anchor_adds_the_weighted_forcing_loss_on_the_batch(tmp_path):
    from fashionchameleon.training.objectives import TeacherForcing

    t = teacher_checkpoint(tmp_path)
    common = ["--teacher", str(t), "--init", str(t)]
    plain = trainer_mod.Trainer(parse(cli_args(tmp_path, "dmd", *common)),
                                LatentBank.load(tmp_path / "bank.safetensors"))
    anchored = trainer_mod.Trainer(parse(cli_args(tmp_path, "dmd", *common, "--anchor", "0.5")), plain.bank)
    batch = {**plain.bank.batch(0, 4), "rows": slice(None), "global_batch": 4}
    loss, logs = anchored.objective(batch, step_generator(0, 3))
    # the same draws: DMD's part first, then the forcing loss from where DMD left the generator
    gen = step_generator(0, 3)
    x, target, w, _ = plain.objective.targets(batch, gen)
    dmd = plain.objective.surrogate(x, target, w)
    forcing, _ = TeacherForcing(plain.model, plain.preset)(batch, gen)
    assert forcing.item() > 0
    assert logs["dmd_loss"] == pytest.approx(dmd.item(), rel=1e-5)
    assert logs["anchor_loss"] == pytest.approx(forcing.item(), rel=1e-5)
    assert loss.item() == pytest.approx(dmd.item() + 0.5 * forcing.item(), rel=1e-5)
    # and so is the gradient: the student's weights get DMD's plus half of forcing's (both models start from t)
    loss.backward()
    (dmd + 0.5 * forcing).backward()
    for pa, pb in zip(anchored.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-7)
    # ... which is not DMD's alone
    x, target, w, _ = plain.objective.targets(batch, step_generator(0, 3))
    dmd_alone = torch.autograd.grad(plain.objective.surrogate(x, target, w), list(plain.model.parameters()),
                                    allow_unused=True)
    assert any(g is not None and not torch.allclose(g, p.grad, atol=1e-6)
               for g, p in zip(dmd_alone, plain.model.parameters()))


@pytest.mark.parametrize("argv", [["--stage", "forcing", "--anchor", "0.5"], ["--stage", "dmd", "--anchor", "-1"],
                                  ["--stage", "dmd", "--anchor", "nan"]])
def test_anchor_outside_dmd_or_negative_is_refused(tmp_path, argv):
    args = parse(cli_args(tmp_path, "dmd")[2:] + argv)
    with pytest.raises(SystemExit, match="--anchor"):
        trainer_mod.run(args)


@pytest.mark.parametrize("argv, flag", [
    (["--stage", "forcing", "--gate-weight", "1"], "--gate-weight"),                   # micro has no copy gate
    (["--stage", "teacher", "--config", "tiny-v2-copy", "--gate-weight", "1"], "--gate-weight"),
    (["--stage", "forcing", "--config", "tiny-v2-copy", "--gate-weight", "-1"], "--gate-weight"),
    (["--stage", "forcing", "--gate-only"], "--gate-only"),
    (["--stage", "dmd", "--config", "tiny-v2-copy", "--gate-only"], "--gate-only"),
    (["--stage", "forcing", "--config", "tiny-v2-copy", "--gate-only", "--lora", "2"], "--gate-only"),
    (["--stage", "forcing", "--gate-lr", "1e-3"], "--gate-lr"),
    (["--stage", "dmd", "--config", "tiny-v2-copy", "--gate-lr", "1e-3"], "--gate-lr"),
    (["--stage", "forcing", "--config", "tiny-v2-copy", "--gate-lr", "0"], "--gate-lr")])
def test_copy_gate_flags_outside_a_copy_models_forcing_are_refused(tmp_path, argv, flag):
    args = parse(cli_args(tmp_path, "dmd")[2:] + argv)
    with pytest.raises(SystemExit, match=flag):
        trainer_mod.run(args)


def micro_copy():
    from dataclasses import replace

    micro = get_preset("micro")
    return replace(micro, name="micro-copy", model=replace(micro.model, reference_channels=16, reference_copy=True))


@pytest.mark.parametrize("rates", [["--lr", "1e-2"], ["--lr", "1e-4", "--gate-lr", "1e-2"]])
def test_gate_only_trains_the_copy_gate_and_nothing_else(tmp_path, rates):
    from fashionchameleon.model.dit import WanDiT

    preset = micro_copy()
    args = parse(cli_args(tmp_path, "forcing", "--steps", "3", "--gate-only", "--gate-weight", "1", *rates))
    args.config = preset
    trainer_mod.run(args)
    torch.manual_seed(args.seed)            # the trainer builds its network right after seeding with --seed
    start = WanDiT(preset.model).state_dict()
    trained = torch.load(tmp_path / "run-forcing" / "state.pt", weights_only=True)["model"]
    assert set(trained) == set(start)
    for k, v in start.items():
        if k.startswith("copy_"):
            assert not torch.equal(trained[k], v), f"{k} did not train"
        else:
            assert torch.equal(trained[k], v), f"{k} changed under --gate-only"


def test_forcing_leaves_a_fitted_region_head_alone(tmp_path):
    from dataclasses import replace

    from fashionchameleon.model.dit import WanDiT

    micro = micro_copy()
    preset = replace(micro, name="micro-region", model=replace(micro.model, region_head=True))
    args = parse(cli_args(tmp_path, "forcing", "--steps", "2", "--lr", "1e-2", "--gate-weight", "1"))
    args.config = preset
    trainer_mod.run(args)
    torch.manual_seed(args.seed)            # the trainer builds its network right after seeding with --seed
    start = WanDiT(preset.model).state_dict()
    trained = torch.load(tmp_path / "run-forcing" / "state.pt", weights_only=True)["model"]
    assert any(k.startswith("region_head.") for k in start)
    for k, v in start.items():
        if k.startswith("region_head."):
            assert torch.equal(trained[k], v), f"{k} moved"
    assert not torch.equal(trained["proj_out.weight"], start["proj_out.weight"])     # the rest trained


def test_region_dilation_trains_and_records_another_spread(tmp_path):
    """`--region-dilation` replaces the preset's spread for the run, and the exported checkpoint records it (the
    loader builds the network from the checkpoint's config: it streams with the spread it was trained with)."""
    from dataclasses import replace

    from fashionchameleon.model.loading import load_checkpoint

    micro = micro_copy()
    preset = replace(micro, name="micro-region", model=replace(micro.model, region_head=True, region_dilation=1))
    args = parse(cli_args(tmp_path, "forcing", "--steps", "1", "--region-dilation", "3", "--out",
                          str(tmp_path / "out")))
    args.config = preset
    trainer_mod.run(args)
    model, loaded, _ = load_checkpoint(tmp_path / "out")
    assert loaded.model.region_dilation == model.config.region_dilation == 3
    assert loaded.model == replace(preset.model, region_dilation=3)
    for bad, needle in ((["--region-dilation", "2"], "region head"), (["--region-dilation", "9"], "0-8")):
        args = parse(cli_args(tmp_path, "forcing", "--steps", "1", *bad))
        args.config = preset if needle == "0-8" else micro
        with pytest.raises(SystemExit, match=needle):
            trainer_mod.run(args)


def test_moved_weight_trains_a_reference_model_and_is_recorded(tmp_path):
    """`--moved-weight` belongs to the forcing stage of a model that takes the reference latent; the exported
    checkpoint records it."""
    from fashionchameleon.model.loading import load_checkpoint

    args = parse(cli_args(tmp_path, "forcing", "--steps", "1", "--moved-weight", "2", "--out", str(tmp_path / "out")))
    args.config = micro_copy()
    trainer_mod.run(args)
    assert load_checkpoint(tmp_path / "out")[2]["moved_weight"] == 2.0
    for stage, config, weight in (("forcing", "micro", "2"), ("teacher", None, "2"), ("forcing", None, "-1")):
        args = parse(cli_args(tmp_path, stage, "--steps", "1", "--moved-weight", weight))
        args.config = micro_copy() if config is None else get_preset(config)
        with pytest.raises(SystemExit, match="--moved-weight"):
            trainer_mod.run(args)


def test_gate_lr_gives_the_copy_gate_its_own_rate_on_the_same_schedule(tmp_path):
    args = parse(cli_args(tmp_path, "forcing", "--steps", "2", "--lr", "1e-4", "--gate-lr", "1e-2",
                          "--gate-weight", "1"))
    args.config = micro_copy()
    trainer_mod.run(args)
    state = torch.load(tmp_path / "run-forcing" / "state.pt", weights_only=False)
    trunk, gate = state["opt"]["param_groups"]
    assert len(gate["params"]) == 3                              # copy_proj weight and bias, copy_distance
    assert gate["lr"] == pytest.approx(100 * trunk["lr"]) and trunk["lr"] > 0
    log = [json.loads(line) for line in (tmp_path / "run-forcing" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["lr"] == pytest.approx(trunk["lr"])          # the log keeps the trunk's rate


def test_exact_resume_after_interruption(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    trainer_mod.run(parse(cli_args(tmp_path / "a", "teacher", "--steps", "4")))
    interrupted = cli_args(tmp_path / "b", "teacher", "--steps", "4")
    trainer_mod.run(parse(interrupted + ["--stop-after", "2"]))
    assert torch.load(tmp_path / "b" / "run-teacher" / "state.pt", weights_only=True)["step"] == 2
    trainer_mod.run(parse(interrupted))
    a = torch.load(tmp_path / "a" / "run-teacher" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run-teacher" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"
    assert a["opt"]["state"][0]["exp_avg"].abs().sum() > 0


def test_export_only_leaves_a_running_runs_log_and_args_alone(tmp_path):
    """A milestone is exported while the run goes on past its last save: the records after that save and the
    run's own arguments must survive the export (the resumed run truncates its log, not the export)."""
    argv = cli_args(tmp_path, "teacher", "--steps", "2")
    trainer_mod.run(parse(argv))
    run_dir = tmp_path / "run-teacher"
    with (run_dir / "log.jsonl").open("a") as log:       # a step logged after the last save
        log.write(json.dumps({"step": 3, "loss": 1.0}) + "\n")
    before = {name: (run_dir / name).read_text() for name in ("log.jsonl", "args.json")}
    trainer_mod.run(parse(argv + ["--export-only", "--out", str(tmp_path / "milestone")]))
    assert {name: (run_dir / name).read_text() for name in before} == before
    assert json.loads((tmp_path / "milestone" / "config.json").read_text())["steps"] == 2


def _run_cli(argv, nproc=None, env=None):
    cmd = [sys.executable, "-m", "fashionchameleon", "train", *argv]
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", "29533", "-m", "fashionchameleon", "train", *argv]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    r = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("stage", ["teacher", "forcing"])
def test_two_processes_match_one_process(tmp_path, stage):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    _run_cli(cli_args(tmp_path / "one", stage, "--steps", "1", "--out", str(tmp_path / "one" / "out")))
    _run_cli(cli_args(tmp_path / "two", stage, "--steps", "1", "--out", str(tmp_path / "two" / "out")), nproc=2)
    one = torch.load(tmp_path / "one" / f"run-{stage}" / "state.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "two" / f"run-{stage}" / "state.pt", weights_only=True)["model"]
    init = None
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-6, rtol=1e-5, msg=name)
    # the step did move the weights (same init in both runs: seeded)
    torch.manual_seed(0)
    from fashionchameleon.model.dit import WanDiT

    init = WanDiT(get_preset("micro").model).state_dict()
    assert any(not torch.equal(init[k], one[k]) for k in one)
    assert load_file(str(tmp_path / "one" / "out" / "model.safetensors"))


def test_lora_flag_trains_only_adapters_and_exports_merged(tmp_path):
    from fashionchameleon.model.loading import load_checkpoint

    t = teacher_checkpoint(tmp_path)
    (tmp_path / "l").mkdir()
    args = parse(cli_args(tmp_path / "l", "forcing", "--steps", "2", "--init", str(t), "--lora", "4",
                          "--lr", "1e-2", "--out", str(tmp_path / "l" / "out")))
    trainer_mod.run(args)
    state = torch.load(tmp_path / "l" / "run-forcing" / "state.pt", weights_only=True)["model"]
    base, _, _ = load_checkpoint(t)
    for k, v in base.state_dict().items():
        lora_key = k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(state.get(k, state.get(lora_key)), v), f"{k} changed under LoRA"
    assert any("lora_B" in k and state[k].abs().sum() > 0 for k in state)   # the adapters did train
    exported, _, _ = load_checkpoint(tmp_path / "l" / "out")                # merged: plain keys again
    assert set(exported.state_dict()) == set(base.state_dict())
