"""SwitchBench report: Markdown tables, a per-frame leakage plot around the switch, worst-case contact sheets."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np


def _table(rows: dict, metrics) -> list[str]:
    lines = ["| row | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for v, r in rows.items():
        cells = ["n/a" if r[m] is None or r[m] != r[m] else f"{r[m]:.3f}" for m in metrics]
        frozen = " (frozen)" if r.get("motion_amplitude_ratio") is not None and r["motion_amplitude_ratio"] < 0.5 else ""
        lines.append(f"| {v}{frozen} | " + " | ".join(cells) + " |")
    return lines


def plot_long_runs(runs: list[dict], path: Path, window: int = 50) -> None:
    """Per-window garment colour error and motion amplitude ratio of each long free run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in runs:
        x = np.arange(len(r["color_curve"])) * window + window / 2
        a.plot(x, r["color_curve"], lw=1, alpha=0.7)
        b.plot(x, r["motion_curve"], lw=1, alpha=0.7)
    a.set(xlabel="frame", ylabel="palette colour error (CIEDE2000)", title="colour over a long free run")
    b.axhline(0.5, color="gray", ls=":", lw=1)
    b.set(xlabel="frame", ylabel="motion amplitude / ground truth", title="motion (below 0.5: frozen)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ten_switches(ten: dict[str, list[dict]], path: Path) -> None:
    """Mean outside PSNR and background-only PSNR after each of ten switches, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "outside_curve", "outside the garment (person + scene)"),
                           (axes[1], "background_curve", "static background only")):
        for v, rows in ten.items():
            curve = np.nanmean(np.array([r[key] for r in rows], dtype=float), 0)
            ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", ms=3, label=v, lw=2 if v == "full" else 1)
        ax.set(xlabel="switch", ylabel="PSNR vs ground truth (dB)", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, result: dict, curves: dict, examples: dict, gen, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from .switchbench import METRICS, WINDOW

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for v, cs in curves.items():
        if cs:
            ax.plot(np.arange(WINDOW), np.nanmean(np.stack(cs), 0), label=v, lw=1.5 if v == "full" else 1)
    ax.axhline(0.5, color="gray", ls=":", lw=1)
    ax.set_xlabel("frames after the switch")
    ax.set_ylabel("leakage (0 = new garment, 1 = old)")
    ax.set_title("SwitchBench, protocol (a): leakage per frame")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "leakage_curves.png", dpi=110)
    plt.close(fig)

    sheets = []
    for v in ("full", "naive", "restart"):
        for err, seed, frames, applied in sorted(examples.get(v, []), key=lambda e: -np.nan_to_num(e[0]))[:2]:
            f = applied[0]
            idx = [max(0, f - 2), f - 1, f, f + 1, f + 4, f + 8, f + 15]
            sheets.append(np.concatenate([frames[min(i, len(frames) - 1)] for i in idx], 1))
            (out / "worst").mkdir(exist_ok=True)
            Image.fromarray(sheets[-1]).resize((sheets[-1].shape[1] * 2, sheets[-1].shape[0] * 2), Image.NEAREST).save(
                out / "worst" / f"{v}_seed{seed}.png")
    lines = ["# SwitchBench report", "", f"Command: `{command}`", "",
             f"Machine: {platform.machine()}, {platform.system()}; checkpoint {str(result['checkpoint_sha'])[:12]}; "
             f"{result['cases']} cases, seeds {result['seeds']}; keep_recent={result.get('keep_recent')}, "
             f"withdraw_sink={result.get('withdraw_sink')}; {result['seconds']} s.", "",
             "## Protocol (a): history primed with ground truth up to the switch", ""]
    lines += _table(result["rows"], METRICS) if result["rows"] else ["(not run)"]
    lines += ["", "## Protocol (b): free-running from the first frame", ""]
    lines += _table(result["rows_free"], METRICS) if result["rows_free"] else ["(not run)"]
    if result["paired"]:
        lines += ["", "## Paired 95% bootstrap intervals of (row - full), protocol (a)", "",
                  "| row | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for v, r in result["paired"].items():
            lines.append(f"| {v} | " + " | ".join(f"[{a:.2f}, {b:.2f}]" for a, b in (r[m] for m in METRICS)) + " |")
    for k in ("drift_ratio", "motion_min", "identity_drift"):
        if k in result:
            lines.append(f"\n{k}: {result[k]:.3f}")
    if result.get("per_case", {}).get("long"):
        plot_long_runs(result["per_case"]["long"], out / "long_runs.png")
        lines += ["", "![long runs](long_runs.png)"]
    if result.get("ten_switch_rows"):
        cols = list(next(iter(result["ten_switch_rows"].values())))
        lines += ["", "## Ten switches in a row (drifts: dB lost from the 1st to the 10th switch)", ""]
        lines += _table(result["ten_switch_rows"], cols)
        lines += ["", "Paired 95% intervals of (row - full):", "", "| row | " + " | ".join(cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for v, r in result["ten_switch_paired"].items():
            lines.append(f"| {v} | " + " | ".join(f"[{a:.2f}, {b:.2f}]" for a, b in (r[m] for m in cols)) + " |")
        plot_ten_switches(result["per_case"]["ten_switches"], out / "ten_switches.png")
        lines += ["", "![ten switches](ten_switches.png)"]
    lines += ["", "![leakage](leakage_curves.png)", "",
              "Worst cases (highest colour error) for full / naive / restart: frames F-2, F-1, F, F+1, F+4, F+8, F+15 "
              "around the switch at F, in `worst/`."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
