"""`bash scripts/gpu_check.sh --dry`: the GPU check's code path (stream, VAE decode, FSDP training step) on the
CPU at micro shapes, writing the same JSON."""

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_runs_every_section(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "2"}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert json.loads(r.stdout.strip().splitlines()[-1]) == result
    assert result["dry"] is True and result["errors"] == {}
    stream = result["stream"]
    for variant in ("sdpa_eager", "sdpa_compiled"):
        v = stream[variant]
        assert v["fps"] > 0 and v["first_chunk_s"] > 0 and v["late_early_ratio"] > 0
        # the cache stops growing: prefix + sink + window
        assert v["visible_frames_at_end"] == 2 + 3 + 3
    assert result["vae"]["frames_per_block"] == 12 and result["vae"]["output_shape"] == [1, 3, 12, 32, 32]
    train = result["train"]
    assert train["step_s"] > 0 and train["loss"] > 0 and train["grad_norm"] > 0
    assert result["stream_plus_vae_fps"] > 0
