"""Issue 17's selection and ship rule for one v2 student lineage (forcing, GR-DMD, their average), as code.

    python scripts/student_v2_verdict.py [--out DIR] [--preset NAME] PILOT -- TAG
    e.g. python scripts/student_v2_verdict.py ~/.cache/fashionchameleon/pilot-v2 -- -c2-w1mix50
    (--preset: the lineage's preset, default tiny-v2-a; its folders are PILOT/<stage>-<preset><TAG>)
    (`--`: a TAG starts with a dash, as scripts/pilot_v2.sh's do)

Both halves were written down before any of these results: the ship rule in session 10 (MODEL_CARD, "Not
shipped"), the selection among a lineage's stages in session 13.

Selection, on world-v2 *training* seeds 1000-1015 (full, protocol a, 16 cases), among the lineage's stages that
exist (a forcing-only run: forcing): among the checkpoints whose outside PSNR is not significantly worse than the
best one's (paired interval wholly below 0), the lowest garment colour error; the average wins a tie (its colour
interval against the lowest includes 0).

Ship the chosen one only if, paired case by case on held-out inputs:
  RealBench vs v1 (reports/pilot-v2/realbench-v1.json): fidelity ratio better and token grid better (intervals
    exclude 0), garment landing not worse;
  world-1 seeds 500000-500015 vs the shipped v1 (reports/switchbench.json): colour and outside PSNR not worse;
  world-v2 seeds 500000-500015: colour not worse than session 13's forcing student
    (reports/pilot-v2/switchbench-forcing-tiny-v2-a-c2.json).
"Not worse" means the interval is not wholly on the worse side.

Since a v2 student ships (session 19; this rule written then, before any result of a lineage after it), the
chosen one must also beat the shipped default, paired on the same held-out inputs with the default's own files
(DEFAULT_FILES below): on world-v2 seeds garment colour or outside PSNR better (interval wholly on the better
side) and neither worse; on world-1 seeds colour and outside PSNR not worse; on RealBench fidelity ratio, token
grid and landing not worse. "ship" is true only when the six checks against v1 and these five all pass.

Prints one JSON verdict; every eval and compare
file it reads is kept under --out (the held-out ones in a folder named after the chosen stage; the verdicts up to
session 17's forcing-only one kept them at the top). Running again reuses an eval file only while it holds the
same checkpoint (its checkpoint_sha matches the folder's weights: a checkpoint re-exported under the same name is
evaluated again), and a compare file only while its two inputs are unchanged.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from fashionchameleon.eval.compare import compare
from fashionchameleon.eval.switchbench import nan_to_none

ROOT = Path(__file__).resolve().parents[1]     # the reports and the codec below are the repository's
CODEC = str(ROOT / "assets/checkpoints/codec-v2")
TUNING_SEEDS = "1000-1015"     # world-v2 training seeds: choosing among a lineage never touches held-out ones
HELD_OUT_SEEDS = "500000-500015"
STAGES = ("forcing", "student", "average")   # $PILOT/<stage>-<PRESET><TAG>
# the shipped default's held-out evals (scripts/pilot_v2.sh student-eval, session 24): same seeds, cases, photos
DEFAULT_FILES = {"world2": "reports/pilot-v2/switchbench-student-tiny-v2-region-g9.json",
                 "world1": "reports/pilot-v2/switchbench-student-tiny-v2-region-g9-world1.json",
                 "realbench": "reports/pilot-v2/realbench-student-tiny-v2-region-g9.json"}


@functools.cache
def checkpoint_sha(checkpoint: Path) -> str:
    """The content hash that eval records as checkpoint_sha (the generator's), from the folder's weights."""
    from fashionchameleon.model.codec import state_sha256
    from fashionchameleon.model.loading import load_checkpoint

    model, _, _ = load_checkpoint(checkpoint)
    return state_sha256(model.state_dict())


def run_eval(args: list[str]) -> str:
    return subprocess.run([sys.executable, "-m", "fashionchameleon", "eval", *args, "--json"],
                          check=True, capture_output=True, text=True).stdout


def evaluate(checkpoint: Path, args: list[str], out: Path) -> dict:
    """`python -m fashionchameleon eval --checkpoint CHECKPOINT ARGS --json`, kept at OUT; reused only while it
    holds this checkpoint's weights."""
    if out.exists():
        held = json.loads(out.read_text())
        if held.get("checkpoint_sha") == checkpoint_sha(checkpoint):
            return held
        print(f"{out}: made with other weights than {checkpoint}'s now; evaluating again", file=sys.stderr)
    result = run_eval(["--checkpoint", str(checkpoint), *args])
    out.write_text(result)
    return json.loads(result)


def inputs_sha(a: Path, b: Path) -> str:
    return hashlib.sha256(a.read_bytes() + b"\0" + b.read_bytes()).hexdigest()


def compared(a: Path, b: Path, out: Path) -> dict:
    """`compare A B` (intervals of B - A), kept at OUT with a hash of both inputs; reused while they hold."""
    key = inputs_sha(a, b)
    held = json.loads(out.read_text()) if out.exists() else {}
    if held.get("inputs_sha256") == key:
        return held
    result = nan_to_none(compare(json.loads(a.read_text()), json.loads(b.read_text())))
    out.write_text(json.dumps({**result, "inputs_sha256": key}))
    return result


def switchbench(checkpoint: Path, seeds: str, out: Path, world: int = 2) -> dict:
    return evaluate(checkpoint, ["--codec", CODEC, "--variants", "full", "--protocols", "a", "--seeds", seeds,
                                 "--cases", "16", "--threads", "2", "--world", str(world)], out)


def interval(comparison: dict, metric: str) -> tuple[float, float]:
    section = comparison.get("protocol_a") or comparison["realbench"]
    low, high = section[metric]["diff_ci"]
    return float(low), float(high)


def select(pilot: Path, tag: str, out: Path, preset: str = "tiny-v2-a") -> tuple[str, dict]:
    # a lineage may stop early (e.g. teacher forcing alone): choose among the stages it has
    stages = [s for s in STAGES if (pilot / f"{s}-{preset}{tag}" / "config.json").is_file()]
    if not stages:
        raise SystemExit(f"no stage of {tag!r} in {pilot} (looked for {', '.join(STAGES)})")
    reports = {s: out / f"tuning-{s}.json" for s in stages}
    for stage in stages:
        switchbench(pilot / f"{stage}-{preset}{tag}", TUNING_SEEDS, reports[stage])
    rows = {s: json.loads(reports[s].read_text())["rows"]["full"] for s in stages}
    best_psnr = max(stages, key=lambda s: rows[s]["outside_psnr"])
    eligible = [best_psnr]
    for stage in stages:
        if stage != best_psnr:
            c = compared(reports[best_psnr], reports[stage], out / f"tuning-{best_psnr}-{stage}.json")
            if interval(c, "outside_psnr")[1] >= 0:
                eligible.append(stage)
    lowest = min(eligible, key=lambda s: rows[s]["garment_color_error"])
    chosen = lowest
    if lowest != "average" and "average" in eligible:
        c = compared(reports[lowest], reports["average"], out / f"tuning-{lowest}-average.json")
        if interval(c, "garment_color_error")[0] <= 0:
            chosen = "average"
    summary = {s: {"colour": rows[s]["garment_color_error"], "outside_psnr": rows[s]["outside_psnr"],
                   "eligible": s in eligible} for s in stages}
    return chosen, summary


def ship_checks(checkpoint: Path, out: Path, realbench: Path) -> dict:
    if not realbench.is_dir():
        subprocess.run([sys.executable, str(ROOT / "scripts/make_realbench.py"), str(realbench)], check=True)
    evaluate(checkpoint, ["--real", str(realbench), "--codec", CODEC, "--threads", "2"], out / "realbench.json")
    real_c = compared(ROOT / "reports/pilot-v2/realbench-v1.json", out / "realbench.json",
                      out / "compare-realbench-v1.json")
    switchbench(checkpoint, HELD_OUT_SEEDS, out / "world1.json", world=1)
    w1 = compared(ROOT / "reports/switchbench.json", out / "world1.json", out / "compare-world1-v1.json")
    switchbench(checkpoint, HELD_OUT_SEEDS, out / "world2.json")
    w2 = compared(ROOT / "reports/pilot-v2/switchbench-forcing-tiny-v2-a-c2.json", out / "world2.json",
                  out / "compare-world2-forcing-c2.json")
    checks = {
        "realbench_fidelity_ratio_better": interval(real_c, "fidelity_ratio")[0] > 0,
        "realbench_grid_better": interval(real_c, "grid_visibility")[1] < 0,
        "realbench_landing_not_worse": interval(real_c, "landing_gain")[1] >= 0,
        "world1_colour_not_worse": interval(w1, "garment_color_error")[0] <= 0,
        "world1_outside_psnr_not_worse": interval(w1, "outside_psnr")[1] >= 0,
        "world2_colour_not_worse_than_forcing_c2": interval(w2, "garment_color_error")[0] <= 0,
    }
    figures = picked_figures([
        ("realbench_vs_v1", real_c, "realbench", ("fidelity_ratio", "grid_visibility", "landing_gain")),
        ("world1_vs_v1", w1, "protocol_a", ("garment_color_error", "outside_psnr", "switch_latency_frames")),
        ("world2_vs_forcing_c2", w2, "protocol_a", ("garment_color_error", "outside_psnr"))])
    default_checks, default_figures = against_default(out)
    return {"checks": checks, "checks_vs_default": default_checks,
            "ship": all(checks.values()) and all(default_checks.values()),
            "figures": {**figures, **default_figures}}


def against_default(out: Path) -> tuple[dict, dict]:
    """The rule for replacing the shipped v2 default, on the held-out files ship_checks has just written."""
    c = {name: compared(ROOT / DEFAULT_FILES[name], out / f"{name}.json", out / f"compare-{name}-default.json")
         for name in DEFAULT_FILES}
    colour, psnr = interval(c["world2"], "garment_color_error"), interval(c["world2"], "outside_psnr")
    checks = {
        "world2_better_than_default": (colour[1] < 0 or psnr[0] > 0) and colour[0] <= 0 and psnr[1] >= 0,
        "world1_colour_not_worse_than_default": interval(c["world1"], "garment_color_error")[0] <= 0,
        "world1_outside_psnr_not_worse_than_default": interval(c["world1"], "outside_psnr")[1] >= 0,
        "realbench_fidelity_and_grid_not_worse_than_default": interval(c["realbench"], "fidelity_ratio")[1] >= 0
        and interval(c["realbench"], "grid_visibility")[0] <= 0,
        "realbench_landing_not_worse_than_default": interval(c["realbench"], "landing_gain")[1] >= 0,
    }
    figures = picked_figures([
        ("world2_vs_default", c["world2"], "protocol_a", ("garment_color_error", "outside_psnr")),
        ("world1_vs_default", c["world1"], "protocol_a", ("garment_color_error", "outside_psnr")),
        ("realbench_vs_default", c["realbench"], "realbench", ("fidelity_ratio", "grid_visibility", "landing_gain"))])
    return checks, figures


def picked_figures(entries: list[tuple[str, dict, str, tuple[str, ...]]]) -> dict:
    """(name, comparison, section, metrics) -> {name: {metric: a, b and diff_ci}}: what verdict.json shows."""
    return {name: {m: {k: c[sec][m][k] for k in ("a", "b", "diff_ci")} for m in metrics}
            for name, c, sec, metrics in entries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pilot", type=Path, help="the pilot folder (scripts/pilot_v2.sh's PILOT)")
    parser.add_argument("tag", help="the student run's TAG, e.g. -c2-w1mix50")
    parser.add_argument("--out", type=Path, help="where the evals go (default PILOT/reports/verdict<TAG>)")
    parser.add_argument("--preset", default="tiny-v2-a", help="the lineage's preset (scripts/pilot_v2.sh's CHOSEN)")
    args = parser.parse_args()
    out = args.out or args.pilot / "reports" / f"verdict{args.tag}"
    out.mkdir(parents=True, exist_ok=True)
    chosen, tuning = select(args.pilot, args.tag, out, args.preset)
    verdict = {"tag": args.tag, "tuning_seeds": TUNING_SEEDS, "tuning": tuning, "chosen": chosen}
    # the held-out evals go in a folder of the chosen stage: a lineage that gains stages later (forcing first, GR-DMD
    # after) may choose another, and the earlier choice's files stay beside it instead of being overwritten
    held_out = out / chosen
    held_out.mkdir(exist_ok=True)
    verdict.update(ship_checks(args.pilot / f"{chosen}-{args.preset}{args.tag}", held_out, args.pilot / "realbench"))
    (out / "verdict.json").write_text(json.dumps(verdict, indent=1))
    print(json.dumps(verdict))


if __name__ == "__main__":
    main()
