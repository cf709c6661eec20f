"""``python -m fashionchameleon compare A.json[:VARIANT] B.json[:VARIANT]``: two runs on the same SwitchBench cases.

Both files are ``eval --json`` outputs: two SwitchBench runs, or two RealBench runs (``eval --real``; cases
paired by person, garment and switch, on fidelity, token grid and landing). SwitchBench cases are paired by
seed; for every metric of one variant (default ``full``, or ``--variant``; a ``:VARIANT`` suffix picks a row
per file, so any row of one run can be paired with any row of another) under each protocol both ran, for the
ten-switch rows and for the long-run metrics, it reports both means and the paired 95% bootstrap interval of
the mean of (B - A). This is how the training ablations, the switch policies and the v2 pilot are read.

    python -m fashionchameleon compare reports/ablations/dmd-tau0.2.json reports/ablations/dmd-tauinf.json
    python -m fashionchameleon compare reports/identity/heldout-500000-500015.json:paper \
        reports/identity/heldout-500000-500015-full-v3.json:full
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import metrics as M

LONG_METRICS = ("drift_ratio", "motion_min", "identity_drift")
REALBENCH_METRICS = ("fidelity_ssim", "fidelity_psnr", "fidelity_ratio", "ref_ssim_late", "grid_visibility",
                     "grid_visibility_codec", "grid_codec_roundtrip", "landing_gain")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="eval --json output of the baseline, optionally FILE:VARIANT")
    p.add_argument("b", help="eval --json output compared with it (intervals are of B - A), optionally FILE:VARIANT")
    p.add_argument("--variant", default="full", help="the rescheduling variant to compare where a file names none")
    p.add_argument("--json", action="store_true", help="one line of JSON on stdout")


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def _seed(row: dict):
    return row["seed"]


def _real_case(row: dict):
    return row["person"], row["garment"], row["switch_to"]


def paired(rows_a: list[dict], rows_b: list[dict], metrics, key=_seed) -> tuple[dict, int]:
    """Per metric: mean of A, mean of B, 95% interval of mean(B - A) over the cases both have (by ``key``:
    the seed; RealBench's person, garment and switch)."""
    by_key = {key(r): r for r in rows_a}
    pairs = [(by_key[key(r)], r) for r in rows_b if key(r) in by_key]
    out = {}
    for m in metrics:
        a = np.array([_num(x.get(m)) for x, _ in pairs])      # reports from before a metric existed: NaN
        b = np.array([_num(y.get(m)) for _, y in pairs])
        out[m] = {"a": float(np.nanmean(a)) if np.isfinite(a).any() else float("nan"),
                  "b": float(np.nanmean(b)) if np.isfinite(b).any() else float("nan"),
                  "diff_ci": list(M.paired_bootstrap(b - a))}
    return out, len(pairs)


def split_spec(spec: str, default_variant: str) -> tuple[Path, str]:
    """``FILE`` or ``FILE:VARIANT`` (a path that exists as given wins, so a colon in a file name still works)."""
    path, _, variant = spec.rpartition(":")
    if not path or Path(spec).exists() or not variant or "/" in variant:
        return Path(spec), default_variant
    return Path(path), variant


def compare(a: dict, b: dict, variant: str = "full", variant_b: str | None = None) -> dict:
    """Pairs ``variant`` of run A with ``variant_b`` (default: the same) of run B, case by case."""
    from .cli import TEN_SWITCH_METRICS
    from .switchbench import METRICS

    variant_b = variant_b or variant
    if isinstance(a.get("cases"), list) and isinstance(b.get("cases"), list):     # two RealBench runs
        out = {"checkpoint_a": a.get("checkpoint_sha"), "checkpoint_b": b.get("checkpoint_sha")}
        out["realbench"], out["cases_realbench"] = paired(a["cases"], b["cases"], REALBENCH_METRICS, _real_case)
        if not out["cases_realbench"]:
            raise ValueError("the two RealBench runs share no case (person, garment, switch)")
        return out
    ca, cb = a.get("per_case"), b.get("per_case")
    if ca is None or cb is None:
        raise ValueError("both files need per-case results: re-run `eval --json` with this version")
    out = {"variant": variant if variant == variant_b else f"{variant} vs {variant_b}",
           "checkpoint_a": a.get("checkpoint_sha"), "checkpoint_b": b.get("checkpoint_sha")}
    for key in ("a", "b"):
        if ca.get(key, {}).get(variant) and cb.get(key, {}).get(variant_b):
            out[f"protocol_{key}"], out[f"cases_{key}"] = paired(ca[key][variant], cb[key][variant_b], METRICS)
    ten_a, ten_b = ca.get("ten_switches", {}).get(variant), cb.get("ten_switches", {}).get(variant_b)
    if ten_a and ten_b:
        out["ten_switches"], out["cases_ten_switches"] = paired(ten_a, ten_b, TEN_SWITCH_METRICS)
    if ca.get("long") and cb.get("long"):      # long runs stream `full` only
        out["long"], out["cases_long"] = paired(ca["long"], cb["long"], LONG_METRICS)
    if len(out) == 3:
        raise ValueError(f"the two files share no results for variant {out['variant']!r}")
    return out


def print_table(out: dict, names: tuple[str, str], file=sys.stderr) -> None:
    print(f"A = {names[0]}\nB = {names[1]}", file=file)
    for key, title in (("protocol_a", "protocol (a)"), ("protocol_b", "protocol (b)"),
                       ("ten_switches", "ten switches"), ("long", "long runs"), ("realbench", "RealBench")):
        if key not in out:
            continue
        n = out["cases_" + key.removeprefix("protocol_")]
        which = f", variant {out['variant']}" if "variant" in out and key != "long" else ""
        print(f"\n{title}, {n} paired cases{which}", file=file)
        print(f"{'metric':24s}{'A':>10s}{'B':>10s}   95% interval of B - A", file=file)
        for m, r in out[key].items():
            lo, hi = r["diff_ci"]
            flag = "" if not (lo > 0 or hi < 0) else "  *"
            print(f"{m:24s}{r['a']:10.3f}{r['b']:10.3f}   [{lo:.3f}, {hi:.3f}]{flag}", file=file)
    print("\n* the interval excludes 0", file=file)


def run(args: argparse.Namespace) -> int:
    from .switchbench import nan_to_none

    try:
        (path_a, var_a), (path_b, var_b) = (split_spec(s, args.variant) for s in (args.a, args.b))
        a, b = (json.loads(p.read_text()) for p in (path_a, path_b))
        out = compare(a, b, var_a, var_b)
    except (OSError, json.JSONDecodeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_table(out, (str(args.a), str(args.b)))
    if args.json:
        print(json.dumps(nan_to_none(out)))
    return 0
