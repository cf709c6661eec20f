"""``python -m fashionchameleon eval``: SwitchBench from the command line.

    python -m fashionchameleon eval --seeds 500000-500015 --out reports/switchbench --json

Prints a table on stderr, writes a Markdown report with plots to ``--out``, and with ``--json`` one line of
JSON on stdout: rows (protocol a), rows_free (protocol b), paired intervals of row - full, cases, seeds,
checkpoint_sha, per_case (every case's metrics by protocol, for ``compare``), and with ``--long``
drift_ratio, motion_min (the smallest windowed motion amplitude ratio of any long run), identity_drift
(``full``), identity_drift_by_variant and background_drift_by_variant (ten switches in a row, every variant
evaluated, dB), ten_switch_rows and ten_switch_paired (see ``long_runs``).
NaN is written as null.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..config import StreamConfig

DEFAULT_SEEDS = "500000-500015"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", default=DEFAULT_SEEDS, help="inclusive seed range A-B (default: held-out)")
    p.add_argument("--cases", type=int, default=None, help="use the first N seeds of the range")
    p.add_argument("--variants", default="full,paper,no_refresh,no_withdraw,no_disentangle,naive,restart")
    p.add_argument("--protocols", default="a,b", help="a (primed), b (free-running), or both")
    p.add_argument("--long", action="store_true", help="also 1,000-frame drift and the ten-switch case")
    p.add_argument("--long-frames", type=int, default=1000)
    p.add_argument("--with-teacher", action="store_true", help="also the bidirectional teacher (protocol a)")
    p.add_argument("--teacher", default=None, help="teacher checkpoint folder (default: the shipped teacher of the checkpoint's codec)")
    p.add_argument("--checkpoint", default=None, help="student checkpoint (default: the embedded default model)")
    p.add_argument("--codec", default=None, help="codec folder (default: the shipped codec the checkpoint was trained on)")
    p.add_argument("--keep-recent", type=int, default=None, help="override the streaming config's keep_recent")
    p.add_argument("--withdraw-sink", choices=["yes", "no"], default=None)
    p.add_argument("--reference-mix", type=float, default=None,
                   help="override `full`'s last-frame share of the reference rebuilt at a switch (1 = paper)")
    p.add_argument("--reanchor-after", type=int, default=None,
                   help="override `full`'s blocks after a switch until the reference is put back (0: never)")
    p.add_argument("--reanchor-mix", type=float, default=None,
                   help="override `full`'s last-frame share in the reference put back then (0: the original)")
    p.add_argument("--reference-gate", type=float, default=None,
                   help="override `full`'s motion gate on the blend (x the mean latent difference; 0: off)")
    p.add_argument("--switch-guidance", type=float, default=None,
                   help="override `full`'s guidance away from the old garment on the first block(s) after a switch (1: off)")
    p.add_argument("--switch-guidance-blocks", type=int, default=None,
                   help="override how many blocks after a switch are guided")
    p.add_argument("--switch-guidance-steps", type=int, default=None,
                   help="override how many denoising steps of a guided block are guided, from the first (0: all)")
    p.add_argument("--reference-snap", type=float, default=None,
                   help="override the streaming config's reference_snap (latent distance snapped onto the "
                        "reference; 0: off)")
    p.add_argument("--deblock", type=float, default=None,
                   help="override the streaming config's deblock (the largest seam step smoothed on the token and "
                        "codec grids, a fraction of the pixel range; 0: off)")
    p.add_argument("--world", type=int, choices=[1, 2], default=None,
                   help="the synthetic world whose seeds to evaluate (default: the checkpoint's own), rendered at "
                        "the checkpoint's resolution (v1 at a portrait size: the centre crop of its square)")
    p.add_argument("--out", type=Path, default=None, help="report folder (Markdown + PNG plots)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--real", type=Path, default=None, metavar="DIR",
                   help="RealBench instead: real person and garment photos in DIR (see eval/realbench.py)")


# the streaming settings of `full`'s switch that eval can override, as written in its JSON ("switch_policy")
SWITCH_SETTINGS = ("reference_mix", "reanchor_after", "reanchor_mix", "reference_gate", "switch_guidance",
                   "switch_guidance_blocks", "switch_guidance_steps")


def stream_overrides(args: argparse.Namespace, stream: StreamConfig) -> StreamConfig:
    """The streaming config with the settings given on the command line (--keep-recent, --withdraw-sink,
    --reference-snap, --deblock, --reference-mix, ...) put in; ValueError (naming the flag) for a value StreamConfig refuses."""
    import dataclasses

    names = ("keep_recent", "reference_snap", "deblock") + SWITCH_SETTINGS
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.withdraw_sink is not None:
        given["withdraw_sink"] = args.withdraw_sink == "yes"
    for name, value in given.items():
        try:
            stream = dataclasses.replace(stream, **{name: value})
        except ValueError as e:
            raise ValueError(f"--{name.replace('_', '-')} out of range: {value} ({e})") from None
    return stream


def generator_from_args(args: argparse.Namespace):
    """The streaming generator ``eval`` runs: --checkpoint (default: the embedded model) with --codec, its
    streaming config overridden by the switch flags. ValueError for a bad flag value."""
    from ..streaming.generator import DEFAULT_CHECKPOINT, StreamingGenerator

    gen = StreamingGenerator.from_pretrained(args.checkpoint or DEFAULT_CHECKPOINT, args.codec)
    stream = stream_overrides(args, gen.preset.stream)
    return gen.with_config(stream=stream)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "real", None) is not None:     # RealBench: real photos, no ground-truth video
        from .realbench import run_cli

        return run_cli(args)
    import dataclasses

    import torch
    from tqdm import tqdm

    from ..streaming.rescheduler import VARIANTS
    from ..data.world import is_heldout, parse_seeds
    from .compare import paired
    from .switchbench import METRICS, case_metrics, ground_truth, make_case, nan_to_none, stream_case, world_of

    torch.set_num_threads(args.threads)
    seeds = parse_seeds(args.seeds)
    if args.cases:
        seeds = seeds[: args.cases]
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        print(f"error: unknown variant {bad[0]!r}", file=sys.stderr)
        return 2
    if args.long and args.long_frames < 100:
        print(f"error: --long-frames must be at least 100 (the drift baseline is frames 50-100), got {args.long_frames}",
              file=sys.stderr)
        return 2
    train_seeds = [s for s in seeds if not is_heldout(s)]
    if train_seeds:
        print(f"note: {len(train_seeds)} seeds are training seeds (use them only for tuning)", file=sys.stderr)
    try:
        gen = generator_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    preset, stream = gen.preset, gen.preset.stream
    if args.world is not None and args.world != preset.world_version:
        from ..data import world as W
        from ..data import world_v2 as W2

        motions = W2.MOTIONS if args.world == 2 else W.MOTIONS
        # a text-embedding model (no vocabulary) is prompted in words: any world's motions will do
        unknown = gen.model.unknown_prompts(motions) if gen.model.config.prompt_vocab else []
        if unknown:
            print(f"error: world v{args.world}'s motions {', '.join(unknown)} are prompts this model does not know",
                  file=sys.stderr)
            return 2
        gen = gen.with_config(preset=dataclasses.replace(preset, world_version=args.world))
        preset = gen.preset
    protocols = [p for p in args.protocols.split(",") if p in ("a", "b")]
    teacher = None
    if args.with_teacher:
        from ..model.loading import CheckpointError, load_checkpoint, require_same_latents
        from ..streaming.generator import shipped_teacher_for

        teacher_folder = args.teacher or shipped_teacher_for(gen.codec.latent_sha256)
        teacher, _, teacher_meta = load_checkpoint(teacher_folder)
        try:
            require_same_latents(f"the teacher {teacher_folder}", teacher_meta, gen.codec.latent_sha256,
                                 "the student's codec")
        except CheckpointError as e:
            print(f"error: {e} (give --teacher a teacher of the same latent space)", file=sys.stderr)
            return 2

    results = {p: {v: [] for v in variants + (["teacher"] if teacher is not None and p == "a" else [])} for p in protocols}
    curves = {v: [] for v in variants}
    examples = {}
    t0 = time.time()
    bar = tqdm(total=len(seeds) * len(variants) * len(protocols), desc="switchbench", unit="run", file=sys.stderr)
    for seed in seeds:
        case = make_case(seed)
        gt = ground_truth(seed, case, world_of(gen))
        for p in protocols:
            for v in variants:
                frames, applied = stream_case(gen, gt, case, v, primed=p == "a")
                truth = gt if applied == case.switch_frames else ground_truth(seed, case, world_of(gen), applied)
                m = case_metrics(frames, truth, primed=p == "a")
                if p == "a":
                    curves[v].append(m.pop("_leakage_curve"))
                    examples.setdefault(v, []).append((m["garment_color_error"], seed, frames, applied))
                m.pop("_leakage_curve", None)
                results[p][v].append({"seed": seed, **m})
                bar.update(1)
            if teacher is not None and p == "a":
                from .teacher_row import teacher_case_metrics

                results[p]["teacher"].append({"seed": seed, **teacher_case_metrics(teacher, gen, gt, case)})
    bar.close()

    def means(rows):
        return {m: float(np.nanmean([r[m] for r in rows])) if rows and any(np.isfinite(r[m]) for r in rows)
                else float("nan") for m in METRICS}

    out = {"rows": {v: means(r) for v, r in results.get("a", {}).items()},
           "rows_free": {v: means(r) for v, r in results.get("b", {}).items()},
           "paired": {}, "cases": len(seeds), "seeds": f"{seeds[0]}-{seeds[-1]}",
           "checkpoint_sha": gen.checkpoint_sha, "world": preset.world_version, "keep_recent": stream.keep_recent,
           "withdraw_sink": stream.withdraw_sink, "reference_snap": stream.reference_snap,
           "deblock": stream.deblock,
           "switch_policy": {k: getattr(stream, k) for k in SWITCH_SETTINGS},
           "seconds": round(time.time() - t0, 1),
           "per_case": {p: rows for p, rows in results.items()}}
    if "a" in results and "full" in results["a"]:
        for v, rows in results["a"].items():
            if v != "full":
                out["paired"][v] = {m: r["diff_ci"] for m, r in paired(results["a"]["full"], rows, METRICS)[0].items()}
    if args.long:
        summary, per_case = long_runs(gen, seeds, variants, args.long_frames)
        out.update(summary)
        out["per_case"].update(per_case)
    print_table(out, file=sys.stderr)
    if args.out is not None:
        from .report import write_report

        write_report(args.out, out, curves, examples, gen, " ".join(sys.argv))
        print(f"report: {args.out / 'report.md'}", file=sys.stderr)
    if args.json:
        print(json.dumps(nan_to_none(out)))
    return 0


TEN_SWITCH_METRICS = ("identity_drift", "background_drift", "garment_color_error", "leakage",
                      "motion_discontinuity", "motion_discontinuity_max")


def long_runs(gen, seeds: list[int], variants: list[str], frames: int) -> tuple[dict, dict]:
    """1,000-frame drift (``full``) and ten switches in a row for every variant (``full`` always), per seed.

    Keys: drift_ratio, motion_min, identity_drift (``full``), identity_drift_by_variant and
    background_drift_by_variant (dB, means over seeds), ten_switch_rows (means of TEN_SWITCH_METRICS),
    ten_switch_paired (95% intervals of variant - full); and the per-case rows (long, ten_switches)."""
    import numpy as np
    from tqdm import tqdm

    from .compare import paired
    from .switchbench import long_run, ten_switch_case, ten_switches, world_of

    variants = ["full"] + [v for v in variants if v != "full"]
    runs, ten = [], {v: [] for v in variants}
    for s in tqdm(seeds, desc="long runs and ten switches", file=sys.stderr):
        case_and_truth = ten_switch_case(s, world_of(gen))
        for v in variants:
            r = ten_switches(gen, s, v, case_and_truth=case_and_truth)
            ten[v].append({"seed": s, "identity_drift": r["identity_drift"], "background_drift": r["background_drift"],
                           **{m: r["metrics"][m] for m in TEN_SWITCH_METRICS[2:]},
                           "outside_curve": r["outside_curve"], "background_curve": r["background_curve"]})
        runs.append({"seed": s, **long_run(gen, s, frames), "identity_drift": ten["full"][-1]["identity_drift"]})

    def mean(rows, m):
        vals = [r[m] for r in rows if r[m] is not None and np.isfinite(r[m])]
        return float(np.mean(vals)) if vals else float("nan")

    rows = {v: {m: mean(r, m) for m in TEN_SWITCH_METRICS} for v, r in ten.items()}
    summary = {"drift_ratio": float(np.nanmean([r["drift_ratio"] for r in runs])),
            "motion_min": float(np.nanmin([r["motion_min"] for r in runs])),
            "identity_drift": rows["full"]["identity_drift"],
            "identity_drift_by_variant": {v: r["identity_drift"] for v, r in rows.items()},
            "background_drift_by_variant": {v: r["background_drift"] for v, r in rows.items()},
            "ten_switch_rows": rows,
            "ten_switch_paired": {v: {m: r["diff_ci"] for m, r in paired(ten["full"], ten[v], TEN_SWITCH_METRICS)[0].items()}
                                  for v in variants if v != "full"}}
    return summary, {"long": runs, "ten_switches": ten}


def print_table(out: dict, file=sys.stderr) -> None:
    from .switchbench import METRICS

    short = {"garment_color_error": "color", "texture_score": "texture", "leakage": "leak",
             "switch_latency_frames": "latency", "outside_psnr": "out_psnr", "motion_discontinuity": "jump",
             "motion_discontinuity_max": "jump_max",
             "motion_amplitude_ratio": "motion", "flicker": "flicker"}
    for key, title in (("rows", "protocol (a): primed with ground truth"), ("rows_free", "protocol (b): free-running")):
        rows = out.get(key) or {}
        if not rows:
            continue
        print(f"\n{title}  [{out['cases']} cases, seeds {out['seeds']}]", file=file)
        print(f"{'row':16s}" + "".join(f"{short[m]:>10s}" for m in METRICS), file=file)
        for v, r in rows.items():
            frozen = " frozen" if r["motion_amplitude_ratio"] < 0.5 else ""
            print(f"{v:16s}" + "".join(f"{r[m]:10.3f}" for m in METRICS) + frozen, file=file)
    if out.get("paired"):
        print("\npaired 95% intervals of (row - full), protocol (a):", file=file)
        for v, r in out["paired"].items():
            print(f"{v:16s}" + "".join(f"{'[%.2f,%.2f]' % tuple(r[m]):>16s}" for m in METRICS[:4]), file=file)
    for k in ("drift_ratio", "motion_min", "identity_drift"):
        if k in out:
            print(f"{k}: {out[k]:.3f}", file=file)
    if out.get("ten_switch_rows"):
        print(f"\nten switches in a row [{out['cases']} cases]:", file=file)
        print(f"{'row':16s}" + "".join(f"{m[:14]:>16s}" for m in TEN_SWITCH_METRICS), file=file)
        for v, r in out["ten_switch_rows"].items():
            print(f"{v:16s}" + "".join(f"{r[m]:16.3f}" for m in TEN_SWITCH_METRICS), file=file)
        print("paired 95% intervals of (row - full):", file=file)
        for v, r in out["ten_switch_paired"].items():
            print(f"{v:16s}" + "".join(f"{'[%.2f,%.2f]' % tuple(r[m]):>16s}" for m in TEN_SWITCH_METRICS), file=file)
