"""Command line: ``python -m fashionchameleon <command>`` (also installed as ``fashionchameleon``).

Each subcommand's module is imported when the parser is built (for its arguments); the modules keep their
heavy imports (gradio, diffusers, the model) inside ``run`` so that ``--help`` and ``info`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys

from .config import PRESETS


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .config import get_preset
    from .model.dit import WanDiT

    preset = get_preset(args.config)
    with torch.device("meta"):
        model = WanDiT(preset.model)
    params = sum(p.numel() for p in model.parameters())
    info = {"config": preset.name, "params": params, "layers": preset.model.num_layers,
            "dim": preset.model.inner_dim, "heads": preset.model.num_attention_heads,
            "latent_channels": preset.latent_channels, "resolution": "{}x{}".format(*preset.resolution),
            "block_frames": preset.stream.block_frames, "steps": len(preset.stream.denoise_timesteps),
            "fps": preset.fps, "train_latent_frames": preset.train_latent_frames,
            "latent_shape": list(preset.latent_shape)}
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:16s} {v:,}" if isinstance(v, int) else f"{k:16s} {v}")
    return 0


COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module providing add_arguments/run, one-line help)
    "world": ("data.cli", "render a sample and a switch sample of the synthetic world (mp4 + contact sheets)"),
    "eval": ("eval.cli", "SwitchBench: garment switch quality against the synthetic world's ground truth"),
    "compare": ("eval.compare", "paired comparison of two checkpoints' SwitchBench results (eval --json files)"),
    "bench": ("bench", "speed and memory benchmark (streaming, switches, teacher vs student, codec)"),
    "render": ("streaming.cli", "render a video offline from a person and garment images, with garment switches"),
    "train": ("training.trainer", "train a stage (teacher | forcing | dmd) of the video model"),
    "bank": ("data.bank", "encode a CSV of real clips (the official layout) into a latent bank the trainer reads"),
    "average": ("training.average", "interpolate the weights of two checkpoints of one run (e.g. forcing and GR-DMD)"),
    "train-codec": ("training.codec_train", "train the small latent codec of `tiny` on the synthetic world"),
    "train-region": ("training.region_train", "fit the region head that shuts a copy-gate model's gate on the "
                     "person (or the garments) in the reference"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fashionchameleon",
                                     description="Real-time interactive garment video customization.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="parameter count and shape of a preset (built on the meta device)")
    p.add_argument("--config", default="tiny", help=f"preset name: {', '.join(PRESETS)}")
    p.add_argument("--json", action="store_true", help="one line of JSON on stdout")
    p.set_defaults(func=cmd_info)
    import importlib

    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f".{module}", __package__)
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
