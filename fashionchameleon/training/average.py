"""``python -m fashionchameleon average A B --alpha 0.5 --out DIR``: weight interpolation of two checkpoints.

    weights = (1 - alpha) * A + alpha * B

Meant for two stages of one run (teacher forcing and the GR-DMD student initialised from it): DMD sharpens and
lands switches sooner but lets the reference decay; the interpolation trades between the two without training
(the idea of WiSE-FT / model soups; measured in MODEL_CARD, "The average of forcing and GR-DMD"). Both
checkpoints must share the network shape, the attention mode and the codec latent space. The output keeps B's
preset (with the switch settings given here), records both sources and ``alpha``, and is written like the
trainer's exports.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from ..model.codec import state_sha256
from ..model.loading import CheckpointError, load_checkpoint, save_checkpoint


def _source(folder, meta: dict, model: torch.nn.Module) -> dict:
    return {"folder": str(folder), "stage": meta.get("stage"), "steps": meta.get("steps"),
            "sha256": state_sha256(model.state_dict())}


def average_checkpoints(a: str | Path, b: str | Path, alpha: float, out: str | Path,
                        stream_changes: dict | None = None) -> Path:
    """Write ``(1 - alpha) * a + alpha * b`` to ``out``; CheckpointError when the two cannot be averaged."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    model_a, preset_a, meta_a = load_checkpoint(a)
    model_b, preset_b, meta_b = load_checkpoint(b)
    if preset_a.model != preset_b.model:
        raise CheckpointError(f"{a} and {b} are different networks ({preset_a.name} vs {preset_b.name})")
    for key in ("mode", "codec_sha256"):
        if meta_a.get(key) != meta_b.get(key):
            raise CheckpointError(f"{a} and {b} differ in {key}: {meta_a.get(key)} vs {meta_b.get(key)}")

    sources = {"a": _source(a, meta_a, model_a), "b": _source(b, meta_b, model_b)}
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    with torch.no_grad():
        model_b.load_state_dict({k: torch.lerp(state_a[k], v, alpha) if v.is_floating_point() else v
                                 for k, v in state_b.items()})
    preset = preset_b
    if stream_changes:
        preset = dataclasses.replace(preset, stream=dataclasses.replace(preset.stream, **stream_changes))
    small = bool(preset.model.prompt_vocab)     # the tiny family is shipped as fp16 in small shards, like training
    metadata = {"stage": "average", "steps": meta_b.get("steps"), "codec_sha256": meta_b.get("codec_sha256"),
                "train_seeds": meta_b.get("train_seeds"), "mode": meta_b.get("mode"),
                "average": {"alpha": alpha, **sources}}
    return save_checkpoint(out, model_b, preset, metadata=metadata, dtype=torch.float16 if small else None,
                           max_shard_mb=9.0 if small else None)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", type=Path, help="checkpoint folder weighted 1 - alpha (e.g. the teacher-forcing stage)")
    p.add_argument("b", type=Path, help="checkpoint folder weighted alpha (e.g. the GR-DMD student from A)")
    p.add_argument("--alpha", type=float, required=True, help="B's share of the weights, in [0, 1]")
    p.add_argument("--out", type=Path, required=True, help="output checkpoint folder")
    p.add_argument("--reference-mix", type=float, default=None,
                   help="store this `full` reference mix in the output's streaming config (default: B's)")


def run(args: argparse.Namespace) -> int:
    changes = {} if args.reference_mix is None else {"reference_mix": args.reference_mix}
    if args.out.resolve() in (args.a.resolve(), args.b.resolve()):
        print("error: --out must not be one of the inputs", file=sys.stderr)
        return 2
    try:
        out = average_checkpoints(args.a, args.b, args.alpha, args.out, changes)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({1 - args.alpha:g} x {args.a} + {args.alpha:g} x {args.b})", file=sys.stderr)
    return 0
