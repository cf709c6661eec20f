"""Fill a RealBench folder with licensed inputs: photos of people and product-style garment images.

    python scripts/make_realbench.py DIR [--persons astronaut,camera,hopper] [--garments 4] [--world both]

People (bundled with installed packages; licences as their sources state):
  astronaut  Eileen Collins, NASA (skimage.data): "No known copyright restrictions, released into the public domain."
  camera     skimage.data: "No copyright restrictions. CC0 by the photographer (Lav Varshney)." (greyscale)
  hopper     Commodore Grace M. Hopper, official U.S. Navy photograph (a work of the U.S. federal government,
             public domain), shipped as matplotlib's sample_data/grace_hopper.jpg
None is ever a training image (world v2's backgrounds are a fixed list of scikit-image's non-person images;
world_v2.PERSON_PHOTOS names the ones it excludes). Each gets a sidecar JSON with its torso box (fractions of
the photo), measured by eye.

Garments: flat-lays of tops and dresses rendered by the synthetic world from held-out seeds (500,000+),
alternating v1 (square) and v2 (portrait) with ``--world both``; their colours differ clearly, so a switch
is measurable (landing is measured on the torso, so no skirts or trousers).
Layout: DIR/persons/*.png (+ .json), DIR/garments/*.png, DIR/SOURCES.txt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

FIRST_SEED = 500_000      # held out: evaluation only
PERSONS = {
    # name: (loader: skimage.data attribute or matplotlib sample_data file, licence line,
    #        torso box x0, y0, x1, y1 as photo fractions)
    "astronaut": ("astronaut", "NASA, public domain (skimage.data.astronaut)", (0.05, 0.45, 0.6, 1.0)),
    "camera": ("camera", "CC0, Lav Varshney (skimage.data.camera)", (0.02, 0.25, 0.45, 1.0)),
    "hopper": ("grace_hopper.jpg", "U.S. Navy official photograph, public domain (matplotlib sample_data)",
               (0.06, 0.6, 0.98, 1.0)),
}


def load_person(source: str) -> np.ndarray:
    """A person photo as RGB: a matplotlib sample_data file (``*.jpg``) or a scikit-image data attribute."""
    if source.endswith(".jpg"):
        import matplotlib.cbook

        return np.asarray(Image.open(matplotlib.cbook.get_sample_data(source)).convert("RGB"))
    import skimage.data as skd

    return np.asarray(getattr(skd, source)())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--persons", default="astronaut,camera,hopper", help=f"comma list of {', '.join(PERSONS)}")
    ap.add_argument("--garments", type=int, default=4, help="number of world flat-lays (at least 2)")
    ap.add_argument("--world", choices=["1", "2", "both"], default="both")
    args = ap.parse_args(argv)
    names = [n for n in args.persons.split(",") if n]
    bad = [n for n in names if n not in PERSONS]
    if bad or args.garments < 2:
        print(f"error: unknown person {bad[0]!r}" if bad else "error: --garments must be at least 2", file=sys.stderr)
        return 2
    from fashionchameleon.data import world

    persons_dir, garments_dir = args.dir / "persons", args.dir / "garments"
    persons_dir.mkdir(parents=True, exist_ok=True)
    garments_dir.mkdir(parents=True, exist_ok=True)
    sources = ["RealBench inputs", ""]
    for name in names:
        attr, licence, torso = PERSONS[name]
        img = load_person(attr)
        Image.fromarray(img).convert("RGB").save(persons_dir / f"{name}.png")
        (persons_dir / f"{name}.json").write_text(json.dumps({"torso": list(torso), "source": licence}) + "\n")
        sources.append(f"persons/{name}.png: {licence}")

    versions = {"1": [1], "2": [2], "both": [1, 2]}[args.world]
    chosen: list = []
    seed = FIRST_SEED
    while len(chosen) < args.garments:
        version = versions[len(chosen) % len(versions)]
        g = world.spec_for_seed(seed, version=version).garments[0]
        seed += 1
        # tops and dresses only (landing is measured on the torso), in clearly different colours: the
        # landing metric needs the torso colour to have somewhere to go
        if getattr(g, "slot", "upper") == "lower":
            continue
        if all(np.abs(np.subtract(g.primary, o.primary)).sum() > 150 for _, o, _ in chosen):
            chosen.append((seed - 1, g, version))
    for s, g, version in chosen:
        size = 256 if version == 1 else (144, 256)
        name = f"world{version}_{s}_{g.type}_{g.pattern}.png"
        Image.fromarray(world.render_flatlay(g, size)).save(garments_dir / name)
        sources.append(f"garments/{name}: synthetic world v{version}, held-out seed {s} (rendered, no licence needed)")
    (args.dir / "SOURCES.txt").write_text("\n".join(sources) + "\n")
    print(f"{args.dir}: {len(names)} persons, {len(chosen)} garments", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
