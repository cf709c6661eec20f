"""Paired (by seed) 95% intervals between rows of separate `eval --json` runs, any variant against any other:
protocol (a) and ten-switch metrics. (`python -m fashionchameleon compare` pairs one variant across two runs.)

    python scripts/pair_rows.py BASE.json:VARIANT OTHER.json:VARIANT [MORE.json:VARIANT ...]

Each line: the other row's mean, the base row's mean, the interval of (other - base).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fashionchameleon.eval.metrics import paired_bootstrap  # noqa: E402

PROTOCOL_A = ("garment_color_error", "leakage", "outside_psnr", "motion_discontinuity")
TEN = ("identity_drift", "background_drift", "garment_color_error", "leakage", "motion_discontinuity")


def rows(spec: str) -> tuple[dict, dict]:
    path, variant = spec.rsplit(":", 1)
    per_case = json.loads(Path(path).read_text())["per_case"]
    by_seed = lambda rs: {r["seed"]: r for r in rs}  # noqa: E731
    return by_seed(per_case["a"][variant]), by_seed(per_case.get("ten_switches", {}).get(variant, []))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    base = rows(argv[0])
    for spec in argv[1:]:
        other = rows(spec)
        print(f"{spec} - {argv[0]}")
        for name, i, metrics in (("protocol (a)", 0, PROTOCOL_A), ("ten switches", 1, TEN)):
            seeds = sorted(set(base[i]) & set(other[i]))
            for m in metrics:
                o = np.array([other[i][s][m] for s in seeds], float)
                b = np.array([base[i][s][m] for s in seeds], float)
                lo, hi = paired_bootstrap(o - b)
                print(f"  {name:12s} {m:22s} {np.nanmean(o):8.3f} vs {np.nanmean(b):8.3f}  [{lo:+.2f}, {hi:+.2f}]  n={len(seeds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
