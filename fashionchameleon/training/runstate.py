"""Run folders for exact resume: model, optimizer, step and RNG state, written atomically.

Run folders live outside the repository (default ``~/.cache/fashionchameleon/runs/<name>``); only milestone
weights are copied into ``assets/``. Data order is a pure function of (seed, step), so a resumed run draws
the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def default_run_dir(name: str) -> Path:
    root = Path(os.environ.get("FASHIONCHAMELEON_RUNS", Path.home() / ".cache" / "fashionchameleon" / "runs"))
    return root / name


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The data RNG of one step: independent of how the run was interrupted."""
    return np.random.default_rng([seed, step, stream])


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(step_rng(seed, step, 1000 + stream).integers(2**62)))


def save_run_state(run_dir: Path, step: int, modules: dict[str, Any], extra: dict | None = None) -> None:
    """Atomically write ``state.pt`` with every module/optimizer state dict and the global RNGs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "extra": extra or {},
             "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
                     "python": random.getstate()[1]}}
    for k, m in modules.items():
        state[k] = m.state_dict()
    tmp = run_dir / "state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, run_dir / "state.pt")


def load_run_state(run_dir: Path, modules: dict[str, Any]) -> tuple[int, dict]:
    """Restore modules/optimizers; returns (step, extra), or (0, {}) when there is nothing to resume."""
    path = run_dir / "state.pt"
    if not path.exists():
        return 0, {}
    state = torch.load(path, map_location="cpu", weights_only=True)
    for k, m in modules.items():
        m.load_state_dict(state[k])
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["step"]), state.get("extra", {})


def append_log(run_dir: Path, record: dict) -> None:
    with open(run_dir / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_log(run_dir: Path, step: int) -> None:
    """Drop log records past ``step`` (written after the last checkpoint of an interrupted run)."""
    records = [r for r in read_log(run_dir) if r.get("step", 0) <= step]
    if (run_dir / "log.jsonl").exists():
        (run_dir / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def plot_curves(records: list[dict], keys: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        pts = [(r["step"], r[k]) for r in records if k in r]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=k, lw=1)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
