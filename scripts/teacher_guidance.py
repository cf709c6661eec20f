"""The teacher's SwitchBench protocol (a) figures as a function of its classifier-free guidance scale
(a tuning question: run it on training seeds).

    .venv/bin/python scripts/teacher_guidance.py --seeds 0-7 --guidance 1.5 3 5 [--teacher DIR] [--json]
"""

import argparse
import json
import sys

import numpy as np
import torch
from tqdm import tqdm

from fashionchameleon.data.world import parse_seeds
from fashionchameleon.eval.switchbench import METRICS, ground_truth, make_case
from fashionchameleon.eval.teacher_row import teacher_case_metrics
from fashionchameleon.model.loading import load_checkpoint
from fashionchameleon.streaming.generator import ASSETS, StreamingGenerator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0-7")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.5, 3.0, 5.0])
    p.add_argument("--teacher", default=str(ASSETS / "checkpoints" / "teacher"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    gen = StreamingGenerator.from_pretrained()
    teacher, _, _ = load_checkpoint(args.teacher)
    seeds = parse_seeds(args.seeds)
    cases = [(make_case(s), s) for s in seeds]
    truths = [ground_truth(s, case, gen.resolution[1]) for case, s in cases]
    out = {}
    for g in args.guidance:
        rows = []
        for (case, _), gt in tqdm(list(zip(cases, truths)), desc=f"guidance {g}", file=sys.stderr):
            m = teacher_case_metrics(teacher, gen, gt, case, guidance=g)
            rows.append({k: m[k] for k in METRICS})
        out[str(g)] = {k: float(np.nanmean([r[k] for r in rows])) for k in METRICS}
        print(f"guidance {g}: " + ", ".join(f"{k} {v:.3f}" for k, v in out[str(g)].items()), file=sys.stderr)
    if args.json:
        print(json.dumps({"seeds": args.seeds, "teacher": args.teacher, "guidance": out}, indent=1))


if __name__ == "__main__":
    main()
