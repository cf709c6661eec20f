"""World v2: the synthetic human-garment world, domain-randomised and framed like real try-on clips.

Why a second world: the v1 world has plain backgrounds, so a model trained on it never has to *copy* a
scene from the reference and draws a world-like one instead (notes/v1-diagnosis.md). v2 randomises what
the model must copy (textured and photographic backgrounds, many-looking people) and what it must repaint
(garments with prints, knits, logos, stripes, checks; tops, dresses, skirts, trousers), in portrait frames
with the person filling most of the frame, a static camera and e-commerce motions.

The contract is the v1 one (``world.py``): a seed decides a ``SpecV2``; pose is a pure function of time;
``render_clip`` renders any garment timeline; masks are the exact support of the person and of the visible
garment, so a pixel outside both garment masks does not depend on the garment at all. Only the person
changes over time: the background is static, apart from a soft contact shadow under the feet (a pure
function of pose, see ``contact_shadow``).

All garments of one sample fill the same slot (upper body, lower body, or a dress): swapping them changes
only garment pixels. Sizes are ``(width, height)`` pairs (portrait, e.g. 112x192); geometry is in units of
the image height, x runs over ``[0, width / height]``.

Photographic backgrounds come from scikit-image's bundled data images. Photos of people are evaluation
material (RealBench) and are excluded by an explicit list, enforced where photos are loaded.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from .world import Clip, Sample, SwitchSample

VERSION = 2
DEFAULT_SIZE = (112, 192)          # (width, height): 7:12 portrait, divisible by 16

MOTIONS = ("sway", "turn", "hair", "collar", "hips", "walk", "wave", "arms_up")
UPPER_TYPES = ("tee", "longsleeve", "tank", "jacket", "sweater", "shirt")
LOWER_TYPES = ("skirt", "trousers", "shorts")
DRESS_TYPES = ("dress",)
GARMENT_TYPES = UPPER_TYPES + LOWER_TYPES + DRESS_TYPES
SLOTS = {**{t: "upper" for t in UPPER_TYPES}, **{t: "lower" for t in LOWER_TYPES}, "dress": "dress"}
PATTERNS = ("solid", "stripes", "checks", "dots", "logo", "print", "knit")
BACKGROUNDS = ("photo", "noise", "shapes", "stripes", "room", "furniture", "studio")
FRAMINGS = ("full", "three_quarter")
HAIR_STYLES = ("short", "long", "bun", "bald", "ponytail", "curly", "bob")
LOGO_SHAPES = ("circle", "square", "triangle", "diamond", "star")

# scikit-image data images usable as backgrounds (all CC0 / public domain per skimage's docstrings).
PHOTO_SOURCES = ("brick", "grass", "gravel", "coffee", "chelsea", "rocket", "hubble_deep_field", "coins",
                 "moon", "text", "page", "clock", "cell", "immunohistochemistry", "motorcycle_left", "logo",
                 "colorwheel")
# Images that show a person (or part of one): evaluation material only, never a training background.
PERSON_PHOTOS = frozenset({"astronaut", "camera", "lfw_subset", "no_time_for_that_tiny", "retina",
                           "microaneurysms", "skin"})

SKIN_ANCHORS = [(255, 226, 200), (240, 196, 164), (224, 172, 130), (196, 136, 98), (150, 96, 62), (96, 60, 40),
                (70, 45, 32)]
HAIR_COLORS = [(25, 20, 18), (60, 40, 26), (110, 72, 40), (160, 110, 60), (215, 185, 120), (150, 55, 30),
               (130, 130, 130), (235, 235, 230)]
IRIS_COLORS = [(60, 40, 25), (40, 30, 20), (70, 110, 150), (80, 110, 70)]


class PersonPhotoError(ValueError):
    """A photo of a person was asked for as world material; those are for evaluation only."""


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        raise ValueError(f"world v2 renders portrait frames: give size=(width, height), e.g. {DEFAULT_SIZE}, "
                         f"not {size}")
    w, h = int(size[0]), int(size[1])
    if w % 2 or h % 2 or w < 16 or h < 16:
        raise ValueError(f"resolution must be even and at least 16 a side, got {w}x{h}")
    return w, h


# ----------------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GarmentV2:
    """A garment as metrics see it (type, pattern, colours, scale) plus what shapes it."""

    type: str
    pattern: str
    primary: tuple[int, int, int]
    secondary: tuple[int, int, int]
    accent: tuple[int, int, int]
    scale: float = 0.05            # pattern period in image heights (at body scale 1)
    angle: float = 0.0             # stripe direction, radians
    logo: str = "circle"
    inner: tuple[int, int, int] = (240, 240, 240)   # the shirt under a jacket
    sleeves: str = "short"         # none / short / long (upper garments and dresses)
    length: float = 1.0            # hem length factor (dresses, skirts, jackets)
    neck: str = "crew"             # crew / v
    motif: int = 0                 # seeds the print's motif placement
    version: int = VERSION

    @property
    def slot(self) -> str:
        return SLOTS[self.type]

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """Colours that may appear on this garment (before shading)."""
        colors = [self.primary]
        if self.pattern != "solid":
            colors.append(self.secondary)
        if self.pattern in ("print", "logo", "checks"):
            colors.append(self.accent)
        if self.type == "jacket":
            colors.append(self.inner)
        return colors

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def random(cls, rng: np.random.Generator, slot: str) -> "GarmentV2":
        types = {"upper": UPPER_TYPES, "lower": LOWER_TYPES, "dress": DRESS_TYPES}[slot]
        gtype = str(rng.choice(types))
        h = rng.random()
        primary = _hsv(h, rng.uniform(0.35, 0.95), rng.uniform(0.35, 0.95))
        secondary = _hsv(h + rng.uniform(0.25, 0.75), rng.uniform(0.1, 0.9),
                         rng.choice([rng.uniform(0.85, 1.0), rng.uniform(0.1, 0.35)]))
        accent = _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))
        pattern = str(rng.choice(PATTERNS, p=[0.16, 0.16, 0.14, 0.1, 0.14, 0.16, 0.14]))
        sleeves = {"tee": "short", "longsleeve": "long", "tank": "none", "jacket": "long", "sweater": "long",
                   "shirt": str(rng.choice(["short", "long"])), "dress": str(rng.choice(["none", "short", "long"]))
                   }.get(gtype, "none")
        angle = float(rng.choice([0.0, 0.0, math.pi / 2, math.pi / 4, -math.pi / 4]))
        return cls(type=gtype, pattern=pattern, primary=primary, secondary=secondary, accent=accent,
                   scale=float(rng.uniform(0.035, 0.08)), angle=angle, logo=str(rng.choice(LOGO_SHAPES)),
                   inner=(240, 240, 240) if rng.random() < 0.6 else _hsv(rng.random(), 0.3, rng.uniform(0.1, 0.3)),
                   sleeves=sleeves, length=float(rng.uniform(0.75, 1.25)),
                   neck=str(rng.choice(["crew", "v"])) if gtype in ("tee", "dress", "sweater", "tank") else "crew",
                   motif=int(rng.integers(1 << 20)))


@dataclass(frozen=True)
class PersonV2:
    height: float              # body height (head top to soles) in image heights, before framing
    shoulder: float            # half-widths, in body heights
    waist: float
    hip: float
    head: float                # head radius, in body heights
    limb: float                # limb thickness factor
    skin: tuple[int, int, int]
    hair_style: str
    hair_color: tuple[int, int, int]
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    top: tuple[int, int, int]      # worn when the sample's garments are lower-body garments
    bottom: tuple[int, int, int]   # worn when they are upper-body garments
    bottom_kind: str               # trousers / skirt / shorts
    shoes: tuple[int, int, int]
    x: float                       # body centre, as a fraction of the frame width
    top_y: float                   # head top, in image heights

    @classmethod
    def random(cls, rng: np.random.Generator, framing: str) -> "PersonV2":
        k = rng.uniform(0, len(SKIN_ANCHORS) - 1)
        i = int(k)
        a, b = np.array(SKIN_ANCHORS[i], float), np.array(SKIN_ANCHORS[min(i + 1, len(SKIN_ANCHORS) - 1)], float)
        skin = tuple(int(v) for v in np.clip(a + (b - a) * (k - i) + rng.normal(0, 6, 3), 0, 255))
        build = rng.uniform(-1, 1)      # slim .. broad, correlates the widths
        height = rng.uniform(0.84, 0.92) if framing == "full" else rng.uniform(1.25, 1.5)
        return cls(height=float(height), shoulder=float(0.115 + 0.015 * build + rng.uniform(-0.008, 0.008)),
                   waist=float(0.075 + 0.014 * build + rng.uniform(-0.006, 0.006)),
                   hip=float(0.092 + 0.012 * build + rng.uniform(-0.008, 0.01)),
                   head=float(rng.uniform(0.062, 0.072)), limb=float(1.0 + 0.15 * build + rng.uniform(-0.05, 0.05)),
                   skin=skin, hair_style=str(rng.choice(HAIR_STYLES)),
                   hair_color=HAIR_COLORS[rng.integers(len(HAIR_COLORS))], iris=IRIS_COLORS[rng.integers(4)],
                   lips=_hsv(rng.uniform(-0.03, 0.03), rng.uniform(0.3, 0.6), rng.uniform(0.45, 0.75)),
                   top=_hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.2, 0.95)),
                   bottom=_hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.15, 0.6)),
                   bottom_kind=str(rng.choice(["trousers", "trousers", "skirt", "shorts"])),
                   shoes=_hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.05, 0.5)),
                   x=float(rng.uniform(0.42, 0.58)),
                   top_y=float(rng.uniform(0.035, 0.06)) if framing == "full" else float(rng.uniform(0.04, 0.09)))


@dataclass(frozen=True)
class SceneV2:
    background: str
    colors: tuple[tuple[int, int, int], ...]     # the scene's palette
    seed: int                                    # procedural detail (shapes, noise, objects)
    floor: float = 0.8                           # y of the floor line (rooms, furniture, studio)
    photo: str = ""                              # scikit-image data image (background == "photo")
    crop: tuple[float, float, float] = (0.0, 0.0, 1.0)    # x0, y0 (fractions of the slack), side fraction
    flip: bool = False
    hue: float = 0.0                             # recolouring of photos: hue rotation (turns),
    saturation: float = 1.0                      # saturation factor,
    gain: float = 1.0                            # brightness factor,
    tint: bool = False                           # and a duotone map for grey photos
    light: float = 0.0                           # key light from the left (-1) .. right (+1)
    vignette: float = 0.0

    @classmethod
    def random(cls, rng: np.random.Generator) -> "SceneV2":
        kind = str(rng.choice(BACKGROUNDS, p=[0.28, 0.12, 0.12, 0.1, 0.14, 0.14, 0.1]))
        h = rng.random()
        colors = tuple(_hsv(h + rng.uniform(-0.25, 0.25), rng.uniform(0.05, 0.7), rng.uniform(0.25, 0.95))
                       for _ in range(4))
        photo = str(rng.choice(PHOTO_SOURCES)) if kind == "photo" else ""
        return cls(background=kind, colors=colors, seed=int(rng.integers(1 << 30)),
                   floor=float(rng.uniform(0.7, 0.86)), photo=photo,
                   crop=(float(rng.random()), float(rng.random()), float(rng.uniform(0.3, 1.0))),
                   flip=bool(rng.random() < 0.5), hue=float(rng.uniform(-0.5, 0.5) if rng.random() < 0.6 else 0.0),
                   saturation=float(rng.uniform(0.5, 1.4)), gain=float(rng.uniform(0.75, 1.15)),
                   tint=bool(rng.random() < 0.7), light=float(rng.uniform(-1, 1)),
                   vignette=float(rng.uniform(0.0, 0.35) if rng.random() < 0.5 else 0.0))


@dataclass(frozen=True)
class MotionV2:
    name: str
    freq: float            # cycles per second
    phase: float
    amplitude: float
    side: int              # which hand leads (-1 = image left)

    @classmethod
    def random(cls, rng: np.random.Generator, name: str | None = None) -> "MotionV2":
        # faster than v1 (0.35-0.8 Hz): arms must move clearly between frames
        return cls(name=name or str(rng.choice(MOTIONS)), freq=float(rng.uniform(0.45, 1.0)),
                   phase=float(rng.uniform(0, 2 * math.pi)), amplitude=float(rng.uniform(0.75, 1.0)),
                   side=int(rng.choice([-1, 1])))


@dataclass(frozen=True)
class SpecV2:
    """Everything a seed decides in world v2."""

    seed: int
    person: PersonV2
    scene: SceneV2
    motion: MotionV2
    garments: tuple[GarmentV2, ...]      # garments[0] is worn; the others are switch targets / references
    framing: str
    version: int = VERSION

    @property
    def prompt(self) -> str:
        return self.motion.name

    @property
    def slot(self) -> str:
        return self.garments[0].slot


def spec_for_seed(seed: int, num_garments: int = 4) -> SpecV2:
    # a seed stream of its own: v2 seed 7 is unrelated to v1 seed 7
    rng = np.random.default_rng([int(seed), VERSION])
    framing = str(rng.choice(FRAMINGS, p=[0.55, 0.45]))
    person, scene, motion = PersonV2.random(rng, framing), SceneV2.random(rng), MotionV2.random(rng)
    slot = str(rng.choice(["upper", "lower", "dress"], p=[0.6, 0.22, 0.18]))
    garments: list[GarmentV2] = []
    while len(garments) < num_garments:
        g = GarmentV2.random(rng, slot)
        # garments of one sample differ clearly in colour, so every switch is visible
        if all(np.abs(np.subtract(g.primary, o.primary)).sum() > 120 for o in garments):
            garments.append(g)
    return SpecV2(int(seed), person, scene, motion, tuple(garments), framing)


# ----------------------------------------------------------------------------------------------------------
# Pose
# ----------------------------------------------------------------------------------------------------------

@dataclass
class PoseV2:
    cx: float                  # body centre offset from the person's place, image heights
    scale: float               # body height factor (walking toward the camera grows it)
    turn: float                # rotation about the vertical axis, radians
    tilt: float                # lateral lean about the hips, radians
    hand_l: tuple[float, float]     # hand targets in body units relative to the shoulder (x outwards, y down)
    hand_r: tuple[float, float]
    leg_l: float               # knee lift 0..1
    leg_r: float
    bob: float                 # vertical offset, image heights
    head_tilt: float


REST_HAND = (0.035, 0.29)


def _mix(a, b, p):
    return (a[0] + (b[0] - a[0]) * p, a[1] + (b[1] - a[1]) * p)


def pose_at(spec: SpecV2, t: float) -> PoseV2:
    """Pose at time t seconds: smooth and periodic, so it is predictable from the last frames."""
    m = spec.motion
    w = 2 * math.pi * m.freq * t + m.phase
    a = m.amplitude
    p = 0.5 - 0.5 * math.cos(w)                 # 0..1..0 once a cycle
    swing = math.sin(w)
    pose = PoseV2(cx=0.0, scale=1.0, turn=0.0, tilt=0.0, hand_l=REST_HAND, hand_r=REST_HAND, leg_l=0.0, leg_r=0.0,
                  bob=0.0, head_tilt=0.0)
    lead = m.side
    if m.name == "sway":
        pose.cx += 0.035 * a * swing
        pose.tilt = 0.1 * a * swing
        pose.hand_l = (0.035 + 0.05 * a * max(swing, 0), 0.29 - 0.04 * a * max(swing, 0))
        pose.hand_r = (0.035 + 0.05 * a * max(-swing, 0), 0.29 - 0.04 * a * max(-swing, 0))
        pose.head_tilt = -0.08 * a * swing
    elif m.name == "turn":
        pose.turn = 0.85 * a * swing
        pose.hand_l = (0.035 + 0.03 * swing, 0.29)
        pose.hand_r = (0.035 - 0.03 * swing, 0.29)
    elif m.name == "hair":
        up = (-0.02, -0.13)                     # at the side of the head
        if lead < 0:
            pose.hand_l = _mix(REST_HAND, up, a * p)
        else:
            pose.hand_r = _mix(REST_HAND, up, a * p)
        pose.head_tilt = 0.12 * a * p * lead
        pose.tilt = -0.04 * a * p * lead
    elif m.name == "collar":
        collar = (-0.075, 0.0)                  # hands at the collar, just inside the shoulders
        pose.hand_l = _mix(REST_HAND, collar, a * (0.5 - 0.5 * math.cos(w)))
        pose.hand_r = _mix(REST_HAND, collar, a * (0.5 - 0.5 * math.cos(w + 0.6)))
        pose.head_tilt = 0.05 * swing
    elif m.name == "hips":
        hips = (-0.005, 0.24)                   # hands on the hips, elbows out
        q = 0.35 + 0.65 * p
        pose.hand_l, pose.hand_r = _mix(REST_HAND, hips, q), _mix(REST_HAND, hips, q)
        pose.cx += 0.02 * a * math.sin(w * 0.5)
        pose.tilt = 0.06 * a * math.sin(w * 0.5)
        pose.turn = 0.25 * a * math.sin(w * 0.5 + 1.0)
    elif m.name == "walk":
        # toward the camera and back: the body grows, the feet come down the frame
        pose.scale = 1.0 + 0.1 * a * (0.5 - 0.5 * math.cos(w * 0.25))
        step = math.sin(w)
        pose.leg_l, pose.leg_r = max(0.0, step) * a, max(0.0, -step) * a
        pose.hand_l = (0.045, 0.29 - 0.05 * a * max(-step, 0))
        pose.hand_r = (0.045, 0.29 - 0.05 * a * max(step, 0))
        pose.bob = -0.006 * abs(step)
    elif m.name == "wave":
        wave = (0.14 + 0.045 * math.sin(3 * w), -0.16 + 0.02 * math.cos(3 * w))
        q = min(1.0, 1.6 * (0.5 - 0.5 * math.cos(w * 0.5)) + 0.3)
        if lead < 0:
            pose.hand_l = _mix(REST_HAND, wave, q)
        else:
            pose.hand_r = _mix(REST_HAND, wave, q)
    elif m.name == "arms_up":
        up = (0.06, -0.28)
        pose.hand_l, pose.hand_r = _mix(REST_HAND, up, a * p), _mix(REST_HAND, up, a * p)
        pose.bob = -0.008 * p
    return pose


# ----------------------------------------------------------------------------------------------------------
# Drawing primitives, computed only inside each shape's box (rendering stays fast at any size)
# ----------------------------------------------------------------------------------------------------------

class Canvas2:
    def __init__(self, width: int, height: int, light: float = 0.0):
        self.w, self.h = width, height
        self.xs = ((np.arange(width) + 0.5) / height).astype(np.float32)
        self.ys = ((np.arange(height) + 0.5) / height).astype(np.float32)
        self.px = 1.0 / height
        self.light = light

    def zeros(self) -> np.ndarray:
        return np.zeros((self.h, self.w), np.float32)

    def _box(self, x0: float, x1: float, y0: float, y1: float):
        c0, c1 = max(int(math.floor(x0 * self.h)) - 2, 0), min(int(math.ceil(x1 * self.h)) + 2, self.w)
        r0, r1 = max(int(math.floor(y0 * self.h)) - 2, 0), min(int(math.ceil(y1 * self.h)) + 2, self.h)
        if c1 <= c0 or r1 <= r0:
            return None
        return slice(r0, r1), slice(c0, c1)

    def _soft(self, d: np.ndarray) -> np.ndarray:
        return np.clip(0.5 - d / (2.0 * self.px), 0.0, 1.0)

    def capsule(self, p0, p1, r0: float, r1: float | None = None, shade: bool = False):
        """Soft capsule; with ``shade`` also a cylinder's shading (ones outside), lit from ``self.light``."""
        r1 = r0 if r1 is None else r1
        (x0, y0), (x1, y1) = p0, p1
        rm = max(r0, r1)
        out, sh = self.zeros(), (np.ones((self.h, self.w), np.float32) if shade else None)
        box = self._box(min(x0, x1) - rm, max(x0, x1) + rm, min(y0, y1) - rm, max(y0, y1) + rm)
        if box is None:
            return (out, sh) if shade else out
        X, Y = self.xs[box[1]][None, :], self.ys[box[0]][:, None]
        dx, dy = x1 - x0, y1 - y0
        L2 = dx * dx + dy * dy + 1e-12
        h = np.clip(((X - x0) * dx + (Y - y0) * dy) / L2, 0.0, 1.0)
        ox, oy = X - x0 - h * dx, Y - y0 - h * dy
        d = np.sqrt(ox * ox + oy * oy)
        r = r0 + (r1 - r0) * h
        out[box] = self._soft(d - r)
        if shade:
            q = np.clip(d / r, 0, 1)
            lat = np.clip(ox / r, -1, 1)        # horizontal offset from the axis: the lit side is brighter
            sh[box] = 1.0 - 0.28 * q * q + 0.12 * self.light * lat
        return (out, sh) if shade else out

    def ellipse(self, c, rx: float, ry: float, angle: float = 0.0, shade: bool = False):
        out, sh = self.zeros(), (np.ones((self.h, self.w), np.float32) if shade else None)
        rm = max(rx, ry)
        box = self._box(c[0] - rm, c[0] + rm, c[1] - rm, c[1] + rm)
        if box is None:
            return (out, sh) if shade else out
        X, Y = self.xs[box[1]][None, :], self.ys[box[0]][:, None]
        ca, sa = math.cos(angle), math.sin(angle)
        u = (X - c[0]) * ca + (Y - c[1]) * sa
        v = -(X - c[0]) * sa + (Y - c[1]) * ca
        k = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
        out[box] = self._soft((k - 1.0) * min(rx, ry))
        if shade:
            sh[box] = 1.0 - 0.25 * np.clip(k, 0, 1) ** 2 + 0.1 * self.light * np.clip((X - c[0]) / rx, -1, 1)
        return (out, sh) if shade else out

    def polygon(self, *shapes) -> np.ndarray:
        """Union of convex polygons (each a list of points in order) with soft edges and no seams where
        they meet: the union is taken on signed distances, before the edge ramp."""
        out = self.zeros()
        xs_ = [p[0] for pts in shapes for p in pts]
        ys_ = [p[1] for pts in shapes for p in pts]
        box = self._box(min(xs_), max(xs_), min(ys_), max(ys_))
        if box is None:
            return out
        X, Y = self.xs[box[1]][None, :], self.ys[box[0]][:, None]
        dist = None
        for pts in shapes:
            n = len(pts)
            area = sum(pts[i][0] * pts[(i + 1) % n][1] - pts[(i + 1) % n][0] * pts[i][1] for i in range(n))
            sign = 1.0 if area > 0 else -1.0
            d = None
            for i in range(n):
                (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % n]
                ex, ey = x1 - x0, y1 - y0
                L = math.hypot(ex, ey) + 1e-12
                di = sign * ((X - x0) * ey - (Y - y0) * ex) / L
                d = di if d is None else np.maximum(d, di)
            dist = d if dist is None else np.minimum(dist, d)
        out[box] = self._soft(dist)
        return out

    def rect(self, x0, y0, x1, y1) -> np.ndarray:
        return self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def _bbox(alpha: np.ndarray):
    rows = np.flatnonzero(alpha.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(alpha.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _blend(img: np.ndarray, alpha: np.ndarray, color, shade: np.ndarray | None = None):
    box = _bbox(alpha)
    if box is None:
        return None
    a = alpha[box][..., None]
    c = color[box] if isinstance(color, np.ndarray) and color.ndim == 3 else np.asarray(color, np.float32)
    if shade is not None:
        c = c * shade[box][..., None]
    img[box] += a * (c - img[box])
    return box


def _hash01(i: np.ndarray, j: np.ndarray, k: int) -> np.ndarray:
    """Integer hash of a lattice cell -> [0, 1): the same on every machine (no float sin tricks)."""
    v = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ np.int64(k * 83492791 % (1 << 31))
    v = (v ^ (v >> 13)) * 1274126177
    v = v ^ (v >> 16)
    return ((v & 0xFFFF).astype(np.float32)) / 65536.0


# ----------------------------------------------------------------------------------------------------------
# Garment textures in body coordinates (they move and squeeze with the body)
# ----------------------------------------------------------------------------------------------------------

def garment_texture(cv: Canvas2, g: GarmentV2, origin: tuple[float, float], squeeze: float = 1.0,
                    unit: float = 1.0, logo_at: tuple[float, float] | None = None) -> np.ndarray:
    """RGB texture over the whole canvas; ``unit`` scales the pattern with the body."""
    X, Y = cv.xs[None, :], cv.ys[:, None]
    u = (X - origin[0]) / max(squeeze, 0.3)
    v = np.broadcast_to(Y - origin[1], (cv.h, cv.w))
    u = np.broadcast_to(u, (cv.h, cv.w))
    p = g.scale * unit
    soft = p / (2 * math.pi * 2 * cv.px)

    def band(w, duty=0.0):
        return np.clip(0.5 + (np.sin(2 * math.pi * w / p) + duty) * soft, 0, 1)

    prim = np.asarray(g.primary, np.float32)
    secc = np.asarray(g.secondary, np.float32)
    acc = np.asarray(g.accent, np.float32)
    ca, sa = math.cos(g.angle), math.sin(g.angle)
    along = -u * sa + v * ca                      # stripes run across this coordinate
    sec = np.zeros((cv.h, cv.w), np.float32)
    third = None
    if g.pattern == "stripes":
        sec = band(along, 0.3 * math.sin(g.motif))
    elif g.pattern == "checks":
        a, b = band(u), band(v)
        sec = a * b                               # gingham: dark where both bands cross
        third = np.clip(0.5 + np.sin(2 * math.pi * (u + v) / (p * 0.5)) * soft * 0.5 - 0.45, 0, 1) * (1 - a) * (1 - b)
        sec = np.clip(sec + 0.5 * (a + b - 2 * a * b), 0, 1)
    elif g.pattern == "dots":
        du = (u / p + 0.25) % 1.0 - 0.5
        dv = (v / p + 0.25 + 0.5 * (np.floor(u / p) % 2)) % 1.0 - 0.5
        sec = np.clip(0.5 - (np.hypot(du, dv) - 0.2) * p / (2 * cv.px), 0, 1)
    elif g.pattern == "print":
        # one flower-like motif per lattice cell, jittered and coloured per cell by a hash
        q = p * 1.6
        ci, cj = np.floor(u / q), np.floor(v / q)
        jx, jy = _hash01(ci, cj, g.motif), _hash01(cj, ci, g.motif + 1)
        lx = (u / q - ci) - (0.3 + 0.4 * jx)
        ly = (v / q - cj) - (0.3 + 0.4 * jy)
        rad = np.hypot(lx, ly)
        petals = 0.22 * (0.65 + 0.35 * np.cos(5 * np.arctan2(ly, lx) + 6.28 * jx))
        sec = np.clip(0.5 - (rad - petals) * q / (2 * cv.px), 0, 1)
        third = np.clip(0.5 - (rad - 0.06) * q / (2 * cv.px), 0, 1) + (_hash01(ci, cj, g.motif + 2) < 0.3) * sec
        third = np.clip(third, 0, 1)
    elif g.pattern == "knit":
        # ribs (fine vertical modulation), chevron stitches and a band of the secondary colour across the chest
        rib = 0.5 + 0.5 * np.sin(2 * math.pi * u / (p * 0.3))
        chev = np.abs(((u / (p * 0.3)) % 1.0) - 0.5) + ((v / (p * 0.25)) % 1.0)
        stitch = 0.5 + 0.5 * np.cos(2 * math.pi * chev)
        yb = v / p
        sec = ((yb > 1.0) & (yb < 2.2)).astype(np.float32) * (0.6 + 0.4 * (np.abs(((u / p) % 1.0) - 0.5) < 0.25))
        tone = (0.84 + 0.1 * rib + 0.08 * stitch)[..., None]
        return (prim * (1 - sec[..., None]) + secc * sec[..., None]) * tone
    base = prim * (1 - sec[..., None]) + secc * sec[..., None]
    if third is not None:
        base = base * (1 - third[..., None]) + acc * third[..., None]
    if g.pattern == "logo" and logo_at is not None:
        lx, ly = logo_at
        s = 0.035 * unit
        shape = {"circle": lambda: cv.ellipse((lx, ly), s * squeeze, s),
                 "square": lambda: cv.rect(lx - s * squeeze, ly - s, lx + s * squeeze, ly + s),
                 "triangle": lambda: cv.polygon([(lx, ly - s * 1.2), (lx + s * 1.1 * squeeze, ly + s * 0.8),
                                                 (lx - s * 1.1 * squeeze, ly + s * 0.8)]),
                 "diamond": lambda: cv.polygon([(lx, ly - s * 1.3), (lx + s * squeeze, ly), (lx, ly + s * 1.3),
                                                (lx - s * squeeze, ly)]),
                 "star": lambda: np.maximum(cv.polygon([(lx, ly - s * 1.3), (lx + s * 1.1 * squeeze, ly + s * 0.7),
                                                        (lx - s * 1.1 * squeeze, ly + s * 0.7)]),
                                            cv.polygon([(lx, ly + s * 1.3), (lx + s * 1.1 * squeeze, ly - s * 0.7),
                                                        (lx - s * 1.1 * squeeze, ly - s * 0.7)]))}[g.logo]()
        # a word-like bar under the logo, as on printed tees
        bar = cv.rect(lx - 1.4 * s * squeeze, ly + 1.6 * s, lx + 1.4 * s * squeeze, ly + 2.1 * s)
        base = base * (1 - shape[..., None]) + secc * shape[..., None]
        base = base * (1 - bar[..., None]) + acc * bar[..., None]
    return base


# ----------------------------------------------------------------------------------------------------------
# Backgrounds (static: computed once per clip)
# ----------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """An RGB float32 image from scikit-image's bundled data; photos of people are refused."""
    if name in PERSON_PHOTOS:
        raise PersonPhotoError(f"{name!r} shows a person: it is evaluation material, never a world background")
    if name not in PHOTO_SOURCES:
        raise ValueError(f"unknown background photo {name!r} (choose from {', '.join(PHOTO_SOURCES)})")
    try:
        import skimage.data as skd
    except ImportError as e:   # pragma: no cover - depends on the environment
        raise ImportError("world v2 photo backgrounds need scikit-image (pip install scikit-image)") from e
    if name == "motorcycle_left":
        img = skd.stereo_motorcycle()[0]
    elif name == "immunohistochemistry":
        img = skd.immunohistochemistry()
    else:
        img = getattr(skd, name)()
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img.astype(np.float64) / max(float(img.max()), 1e-6) * 255, 0, 255)
    img = img.astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:     # RGBA on white
        a = img[..., 3:] / 255.0
        img = img[..., :3] * a + 255.0 * (1 - a)
    return np.ascontiguousarray(img[..., :3])


def _recolor(img: np.ndarray, scene: SceneV2) -> np.ndarray:
    grey = img.std(axis=2).mean() < 3.0
    if grey and scene.tint:
        # duotone: dark -> colors[0], light -> colors[1]
        t = (img[..., :1] / 255.0)
        return np.asarray(scene.colors[0], np.float32) * (1 - t) + np.asarray(scene.colors[1], np.float32) * t
    # YIQ hue rotation and saturation, then gain
    m = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    yiq = img @ m.T
    c, s = math.cos(2 * math.pi * scene.hue), math.sin(2 * math.pi * scene.hue)
    i, q = yiq[..., 1].copy(), yiq[..., 2].copy()
    yiq[..., 1] = (c * i - s * q) * scene.saturation
    yiq[..., 2] = (s * i + c * q) * scene.saturation
    return yiq @ np.linalg.inv(m).T.astype(np.float32)


def _photo_background(scene: SceneV2, w: int, h: int) -> np.ndarray:
    from PIL import Image

    src = load_photo(scene.photo)
    sh, sw = src.shape[:2]
    # the largest portrait window of the photo, scaled by crop[2], placed by crop[0:2]
    ch = min(sh, sw * h / w)
    ch *= scene.crop[2]
    cw = ch * w / h
    x0 = (sw - cw) * scene.crop[0]
    y0 = (sh - ch) * scene.crop[1]
    im = Image.fromarray(np.clip(src, 0, 255).astype(np.uint8))
    im = im.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch), reducing_gap=2.0)
    out = np.asarray(im, np.float32)
    if scene.flip:
        out = out[:, ::-1]
    return _recolor(out, scene) * scene.gain


def _value_noise(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    from PIL import Image

    grid = rng.random((cells + 1, max(2, round(cells * w / h)) + 1)).astype(np.float32)
    im = Image.fromarray(grid, mode="F").resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(im, np.float32)


def _room_floor(cv: Canvas2, scene: SceneV2, img: np.ndarray, rng: np.random.Generator) -> None:
    Y = cv.ys[:, None]
    X = cv.xs[None, :]
    floor = (Y > scene.floor).astype(np.float32)
    fc = np.asarray(scene.colors[2], np.float32)
    depth = np.clip((Y - scene.floor) / max(1.0 - scene.floor, 1e-3), 0, 1)
    ground = fc * (0.75 + 0.3 * depth)[..., None]
    if rng.random() < 0.5:   # wooden planks: lines converging in perspective
        lines = np.abs(((X - cv.w / cv.h / 2) / (0.3 + depth) * 12) % 1.0 - 0.5) < 0.06
        ground = ground * (1 - 0.15 * lines[..., None])
    img[:] = img * (1 - floor[..., None]) + ground * floor[..., None]
    # a skirting board
    _blend(img, cv.rect(0, scene.floor - 0.012, cv.w / cv.h, scene.floor), np.asarray(scene.colors[3]) * 0.9)


def _objects(cv: Canvas2, scene: SceneV2, img: np.ndarray, rng: np.random.Generator, furniture: bool) -> None:
    W = cv.w / cv.h
    cols = [np.asarray(c, np.float32) for c in scene.colors]
    n = int(rng.integers(3, 7))
    for _ in range(n):
        kind = str(rng.choice(["frame", "plant", "lamp", "window"] if not furniture else
                              ["shelf", "sofa", "cabinet", "table", "frame", "door"]))
        x = float(rng.uniform(-0.05, W + 0.05))
        c = _hsv(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.2, 0.9))
        if kind == "frame":
            fw, fh, fy = rng.uniform(0.06, 0.2), rng.uniform(0.06, 0.2), rng.uniform(0.08, scene.floor - 0.25)
            _blend(img, cv.rect(x - fw / 2, fy, x + fw / 2, fy + fh), np.asarray(c) * 0.5)
            inner = cv.rect(x - fw / 2 + 0.01, fy + 0.01, x + fw / 2 - 0.01, fy + fh - 0.01)
            art = _value_noise(rng, cv.w, cv.h, int(rng.integers(4, 30)))[..., None]
            _blend(img, inner, cols[int(rng.integers(4))] * (1 - art) + np.asarray(c, np.float32) * art)
        elif kind == "window":
            ww, wy = rng.uniform(0.15, 0.3), rng.uniform(0.05, 0.2)
            wh = scene.floor - wy - rng.uniform(0.1, 0.3)
            sky = _hsv(0.58 + rng.uniform(-0.05, 0.05), rng.uniform(0.1, 0.4), rng.uniform(0.8, 1.0))
            _blend(img, cv.rect(x - ww / 2 - 0.01, wy - 0.01, x + ww / 2 + 0.01, wy + wh + 0.01), (235, 235, 230))
            _blend(img, cv.rect(x - ww / 2, wy, x + ww / 2, wy + wh), sky)
            _blend(img, cv.rect(x - 0.005, wy, x + 0.005, wy + wh), (235, 235, 230))
            _blend(img, cv.rect(x - ww / 2, wy + wh / 2 - 0.005, x + ww / 2, wy + wh / 2 + 0.005), (235, 235, 230))
        elif kind == "plant":
            base = scene.floor + rng.uniform(-0.02, 0.06)
            ph = rng.uniform(0.08, 0.14)
            _blend(img, cv.polygon([(x - 0.04, base - ph * 0.4), (x + 0.04, base - ph * 0.4), (x + 0.03, base),
                                    (x - 0.03, base)]), c)
            green = np.asarray(_hsv(rng.uniform(0.22, 0.4), rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.7)))
            for _k in range(int(rng.integers(5, 10))):
                lx, ly = x + rng.uniform(-0.07, 0.07), base - ph * 0.4 - rng.uniform(0.02, 0.2)
                _blend(img, cv.ellipse((lx, ly), rng.uniform(0.015, 0.035), rng.uniform(0.03, 0.06),
                                       rng.uniform(-1, 1)), green * rng.uniform(0.7, 1.2))
        elif kind == "lamp":
            base = scene.floor + rng.uniform(0.0, 0.05)
            top = base - rng.uniform(0.35, 0.55)
            _blend(img, cv.rect(x - 0.004, top, x + 0.004, base), (40, 40, 40))
            _blend(img, cv.polygon([(x - 0.03, top - 0.06), (x + 0.03, top - 0.06), (x + 0.05, top + 0.02),
                                    (x - 0.05, top + 0.02)]), _hsv(0.12, 0.3, 0.95))
        elif kind == "shelf":
            sw_, top = rng.uniform(0.15, 0.3), scene.floor - rng.uniform(0.3, 0.6)
            _blend(img, cv.rect(x - sw_ / 2, top, x + sw_ / 2, scene.floor), np.asarray(c) * 0.7)
            rows = int(rng.integers(2, 5))
            for r in range(rows):
                y0 = top + (scene.floor - top) * r / rows + 0.01
                y1 = top + (scene.floor - top) * (r + 1) / rows - 0.005
                bx = x - sw_ / 2 + 0.01
                while bx < x + sw_ / 2 - 0.02:
                    bw = rng.uniform(0.008, 0.02)
                    bh = (y1 - y0) * rng.uniform(0.55, 0.95)
                    _blend(img, cv.rect(bx, y1 - bh, bx + bw, y1), _hsv(rng.random(), 0.6, rng.uniform(0.3, 0.9)))
                    bx += bw + 0.002
        elif kind == "sofa":
            sw_, sh_ = rng.uniform(0.3, 0.6), rng.uniform(0.12, 0.2)
            y1 = scene.floor + rng.uniform(0.0, 0.05)
            _blend(img, cv.rect(x - sw_ / 2, y1 - sh_, x + sw_ / 2, y1 - 0.02), np.asarray(c) * 0.85)
            _blend(img, cv.rect(x - sw_ / 2, y1 - sh_ * 0.5, x + sw_ / 2, y1), c)
            for side in (-1, 1):
                _blend(img, cv.rect(x + side * sw_ / 2 - 0.025, y1 - sh_ * 0.7, x + side * sw_ / 2 + 0.025, y1),
                       np.asarray(c) * 0.7)
        elif kind in ("cabinet", "door"):
            cw_ = rng.uniform(0.12, 0.25) if kind == "cabinet" else rng.uniform(0.16, 0.22)
            top = scene.floor - (rng.uniform(0.15, 0.35) if kind == "cabinet" else rng.uniform(0.55, 0.7))
            _blend(img, cv.rect(x - cw_ / 2, top, x + cw_ / 2, scene.floor), c)
            _blend(img, cv.rect(x - cw_ / 2, top, x + cw_ / 2, top + 0.012), np.asarray(c) * 1.15)
            _blend(img, cv.ellipse((x + cw_ * 0.35, (top + scene.floor) / 2), 0.006, 0.006), (200, 190, 120))
        else:  # table
            tw = rng.uniform(0.15, 0.35)
            ty = scene.floor - rng.uniform(0.12, 0.2)
            _blend(img, cv.rect(x - tw / 2, ty, x + tw / 2, ty + 0.015), c)
            for side in (-1, 1):
                _blend(img, cv.rect(x + side * (tw / 2 - 0.02) - 0.006, ty, x + side * (tw / 2 - 0.02) + 0.006,
                                    scene.floor + 0.02), np.asarray(c) * 0.7)


def _procedural_background(cv: Canvas2, scene: SceneV2) -> np.ndarray:
    rng = np.random.default_rng(scene.seed)
    w, h = cv.w, cv.h
    W = w / h
    cols = [np.asarray(c, np.float32) for c in scene.colors]
    X, Y = cv.xs[None, :], cv.ys[:, None]
    kind = scene.background
    if kind == "noise":
        # fractal value noise: octaves from large blotches to fine grain, through a 3-colour ramp
        n = sum(_value_noise(rng, w, h, int(c)) * wgt for c, wgt in
                ((rng.integers(2, 5), 0.5), (rng.integers(6, 14), 0.3), (rng.integers(20, 48), 0.2)))
        n = np.clip((n - 0.5) * rng.uniform(1.5, 3.0) + 0.5, 0, 1)[..., None]
        return np.where(n < 0.5, cols[0] * (1 - 2 * n) + cols[1] * 2 * n, cols[1] * (2 - 2 * n) + cols[2] * (2 * n - 1))
    if kind == "stripes":
        ang = float(rng.choice([0.0, math.pi / 2, math.pi / 4, -math.pi / 4, rng.uniform(-1.5, 1.5)]))
        period = rng.uniform(0.02, 0.2)
        along = X * math.cos(ang) + Y * math.sin(ang)
        k = np.floor(along / period).astype(np.int64)
        ncol = int(rng.integers(2, 4))
        img = np.zeros((h, w, 3), np.float32)
        for i in range(ncol):
            img += (k % ncol == i)[..., None] * cols[i]
        if rng.random() < 0.4:   # a second, crossing set: plaid wallpaper
            k2 = np.floor((X * math.cos(ang + math.pi / 2) + Y * math.sin(ang + math.pi / 2)) / period).astype(np.int64)
            img *= (0.8 + 0.2 * (k2 % 2 == 0))[..., None]
        return img
    if kind == "shapes":
        img = np.broadcast_to(cols[0], (h, w, 3)).copy()
        for _ in range(int(rng.integers(12, 45))):
            size = float(np.exp(rng.uniform(np.log(0.01), np.log(0.25))))   # several scales
            cx, cy = rng.uniform(-0.05, W + 0.05), rng.uniform(-0.05, 1.05)
            c = _hsv(rng.random(), rng.uniform(0.1, 0.9), rng.uniform(0.2, 1.0))
            sk = rng.integers(3)
            if sk == 0:
                a = cv.ellipse((cx, cy), size, size * rng.uniform(0.5, 1.5), rng.uniform(0, 3))
            elif sk == 1:
                a = cv.rect(cx - size, cy - size * rng.uniform(0.3, 1.5), cx + size, cy + size)
            else:
                a = cv.polygon([(cx, cy - size), (cx + size, cy + size * 0.8), (cx - size, cy + size * 0.8)])
            _blend(img, a, c)
        return img
    # rooms, furniture and studios: a lit wall and a floor
    t = Y[..., None]
    wall = cols[0] * (1.05 - 0.25 * t) + (cols[1] - cols[0]) * 0.3 * np.clip(X / W, 0, 1)[..., None]
    img = np.broadcast_to(wall, (h, w, 3)).astype(np.float32).copy()
    if kind == "studio":
        if rng.random() < 0.5:   # a cyclorama: the wall bends into the floor without a line
            return cols[0] * (1.0 - 0.3 * (t - 0.5) ** 2) * np.ones((h, w, 1), np.float32)
        _room_floor(cv, scene, img, rng)
        return img
    if kind == "room" and rng.random() < 0.5:   # wallpaper texture on the wall
        n = _value_noise(rng, w, h, int(rng.integers(15, 40)))[..., None]
        img *= 0.9 + 0.2 * n
    _room_floor(cv, scene, img, rng)
    _objects(cv, scene, img, rng, furniture=kind == "furniture")
    return img


@functools.lru_cache(maxsize=16)
def _background_cached(scene: SceneV2, w: int, h: int) -> np.ndarray:
    cv = Canvas2(w, h)
    img = _photo_background(scene, w, h) if scene.background == "photo" else _procedural_background(cv, scene)
    img = np.asarray(img, np.float32)
    if scene.vignette:
        X, Y = cv.xs[None, :] / (w / h) - 0.5, cv.ys[:, None] - 0.5
        img = img * (1 - scene.vignette * (X * X + Y * Y))[..., None]
    img = np.clip(img, 0, 255).astype(np.float32)
    img.setflags(write=False)
    return img


def render_background(spec: SpecV2, size=DEFAULT_SIZE) -> np.ndarray:
    """The empty scene (no person, no shadow): what the static camera sees behind the person."""
    w, h = _pair(size)
    return np.clip(_background_cached(spec.scene, w, h) + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# The person
# ----------------------------------------------------------------------------------------------------------

@dataclass
class _Body:
    B: float
    top: float
    cx: float
    squeeze: float
    head_c: tuple[float, float]
    hr: float
    chin_y: float
    shoulder_y: float
    waist_y: float
    hip_y: float
    sole_y: float
    sh_l: tuple[float, float]
    sh_r: tuple[float, float]
    sw: float
    ww: float
    hw: float
    dx_s: float            # lean offset at the shoulders
    dx_w: float            # lean offset at the waist
    face_dx: float


def _body(spec: SpecV2, pose: PoseV2, aspect: float) -> _Body:
    P = spec.person
    B = P.height * pose.scale
    sole0 = P.top_y + P.height
    # walking toward the camera: the soles come down the frame as the body grows
    top = sole0 + 0.45 * (B - P.height) - B + pose.bob
    cx = P.x * aspect + pose.cx
    squeeze = 0.62 + 0.38 * abs(math.cos(pose.turn))
    hr = P.head * B
    shoulder_y = top + 0.185 * B
    hip_y = top + 0.49 * B
    waist_y = top + 0.36 * B
    lean = math.sin(pose.tilt)
    dx_s = lean * (hip_y - shoulder_y)
    dx_w = lean * (hip_y - waist_y)
    head_c = (cx + lean * (hip_y - top - hr) + math.sin(pose.head_tilt) * hr, top + 1.05 * hr)
    sw, ww, hw = P.shoulder * B * squeeze, P.waist * B * squeeze, P.hip * B * squeeze
    return _Body(B, top, cx, squeeze, head_c, hr, head_c[1] + hr, shoulder_y, waist_y, hip_y, top + B,
                 (cx - sw * 0.9 + dx_s, shoulder_y + 0.012 * B), (cx + sw * 0.9 + dx_s, shoulder_y + 0.012 * B),
                 sw, ww, hw, dx_s, dx_w, math.sin(pose.turn) * hr * 0.55)


def _arm_ik(shoulder, target, l1: float, l2: float, side: int):
    """Elbow and hand for a two-link arm reaching ``target``; the elbow bends outwards."""
    sx, sy = shoulder
    tx, ty = target
    dx, dy = tx - sx, ty - sy
    d = min(max(math.hypot(dx, dy), abs(l1 - l2) + 1e-4), l1 + l2 - 1e-4)
    base = math.atan2(dy, dx)
    off = math.acos(max(-1.0, min(1.0, (l1 * l1 + d * d - l2 * l2) / (2 * l1 * d))))
    best = None
    for sgn in (1, -1):
        a = base + sgn * off
        ex, ey = sx + l1 * math.cos(a), sy + l1 * math.sin(a)
        if best is None or side * ex > side * best[0]:
            best = (ex, ey)
    ex, ey = best
    ang = math.atan2(ty - ey, tx - ex)
    return (ex, ey), (ex + l2 * math.cos(ang), ey + l2 * math.sin(ang))


def contact_shadow(spec: SpecV2, t: float, size=DEFAULT_SIZE) -> np.ndarray:
    """The soft shadow under the feet (full-body framing only): a pure function of pose, not of garments."""
    w, h = _pair(size)
    cv = Canvas2(w, h)
    body = _body(spec, pose_at(spec, t), w / h)
    if spec.framing != "full" or spec.scene.background in ("photo", "noise", "shapes", "stripes"):
        return cv.zeros()
    shift = 0.04 * spec.scene.light * body.B
    return cv.ellipse((body.cx - shift, body.sole_y - 0.005), 0.17 * body.B, 0.018 * body.B) * 0.4


def render_frame(spec: SpecV2, garment: GarmentV2, t: float, size=DEFAULT_SIZE,
                 background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame: (rgb uint8 HxWx3, person mask bool, garment mask bool), masks as exact support."""
    w, h = _pair(size)
    cv = Canvas2(w, h, light=spec.scene.light)
    img = (background if background is not None else _background_cached(spec.scene, w, h)).copy()
    P, pose = spec.person, pose_at(spec, t)
    b = _body(spec, pose, w / h)
    B, cx, sq = b.B, b.cx, b.squeeze
    person = cv.zeros()
    garm = cv.zeros()

    sh = contact_shadow(spec, t, size)
    if sh.any():
        _blend(img, sh, (0, 0, 0))

    def paint(alpha, color, is_garment: bool, shade=None):
        box = _blend(img, alpha, color, shade)
        if box is None:
            return
        a = alpha[box]
        np.maximum(person[box], a, out=person[box])
        garm[box] = garm[box] * (1 - a) + (a if is_garment else 0.0)

    X = cv.xs[None, :]
    torso_shade = np.broadcast_to(1.0 - 0.3 * np.clip(np.abs(X - cx - b.dx_w) / (b.sw + 1e-6), 0, 1) ** 2
                                  + 0.1 * spec.scene.light * np.clip((X - cx) / (b.sw + 1e-6), -1, 1), (h, w))
    skin = np.asarray(P.skin, np.float32)
    slot = garment.slot
    unit = B / 0.88                               # patterns scale with the body (and the framing)
    neck_pt = (cx + b.dx_s * 1.1, b.chin_y)
    gtex = garment_texture(cv, garment, (cx, b.shoulder_y), sq, unit,
                           (cx + 0.35 * b.sw * math.sin(pose.turn) + b.dx_s * 0.6, b.shoulder_y + 0.09 * B))

    # back hair (behind the body)
    hr, hc = b.hr, b.head_c
    if P.hair_style == "long":
        paint(cv.polygon([(hc[0] - hr * 1.05, hc[1]), (hc[0] + hr * 1.05, hc[1]),
                          (hc[0] + hr * 1.25, hc[1] + hr * 2.6), (hc[0] - hr * 1.25, hc[1] + hr * 2.6)]),
              P.hair_color, False)
    elif P.hair_style == "curly":
        paint(cv.ellipse((hc[0], hc[1] - hr * 0.2), hr * 1.45, hr * 1.35), P.hair_color, False)
    elif P.hair_style == "ponytail":
        paint(cv.capsule((hc[0] + hr * 0.6, hc[1] - hr * 0.5), (hc[0] + hr * 1.0, hc[1] + hr * 1.6), hr * 0.35,
                         hr * 0.2), P.hair_color, False)

    # legs: skin, then the bottom (the person's own, or the garment when the slot is "lower")
    knees, feet = [], []
    for side, lift in ((-1, pose.leg_l), (1, pose.leg_r)):
        hx = cx + side * b.hw * 0.55
        knee_y = b.top + 0.72 * B
        knee = (hx + side * 0.006 * B, knee_y - 0.05 * B * lift)
        foot = (hx + side * 0.012 * B, b.sole_y - 0.035 * B - 0.07 * B * lift)
        knees.append(knee)
        feet.append(foot)
        a, s_ = cv.capsule((hx, b.hip_y - 0.02 * B), knee, 0.05 * B * P.limb * sq, 0.036 * B * P.limb * sq, True)
        paint(a, skin, False, s_)
        a, s_ = cv.capsule(knee, foot, 0.036 * B * P.limb * sq, 0.026 * B * P.limb * sq, True)
        paint(a, skin, False, s_)
    for side, foot in zip((-1, 1), feet):
        a, s_ = cv.ellipse((foot[0] + side * 0.008 * B, foot[1] + 0.022 * B), 0.04 * B * sq, 0.022 * B, shade=True)
        paint(a, P.shoes, False, s_)

    def bottoms(kind: str, color, is_garment: bool, length: float = 1.0):
        pelvis = [(cx - b.ww + b.dx_w, b.waist_y), (cx + b.ww + b.dx_w, b.waist_y),
                  (cx + b.hw * 1.05, b.hip_y + 0.02 * B), (cx - b.hw * 1.05, b.hip_y + 0.02 * B)]
        if kind == "skirt":
            hem = b.hip_y + (0.12 + 0.12 * length) * B
            flare = b.hw * (1.35 + 0.35 * length)
            shape = cv.polygon(pelvis, [(cx - b.hw + b.dx_w * 0.5, b.hip_y - 0.04 * B),
                                        (cx + b.hw + b.dx_w * 0.5, b.hip_y - 0.04 * B),
                                        (cx + flare, hem), (cx - flare, hem)])
            paint(shape, color, is_garment, torso_shade)
            return
        paint(cv.polygon(pelvis), color, is_garment, torso_shade)
        for side, knee, foot in zip((-1, 1), knees, feet):
            hx = cx + side * b.hw * 0.55
            r0, r1 = 0.056 * B * P.limb * sq, 0.043 * B * P.limb * sq
            if kind == "shorts":
                end = (hx + (knee[0] - hx) * 0.55 * length, b.hip_y + (knee[1] - b.hip_y) * 0.55 * length)
                a, s_ = cv.capsule((hx, b.hip_y - 0.02 * B), end, r0, r0 * 0.95, True)
                paint(a, color, is_garment, s_)
            else:
                a, s_ = cv.capsule((hx, b.hip_y - 0.02 * B), knee, r0, r1, True)
                paint(a, color, is_garment, s_)
                a, s_ = cv.capsule(knee, (foot[0], foot[1] - 0.005 * B), r1, 0.034 * B * P.limb * sq, True)
                paint(a, color, is_garment, s_)

    if slot == "upper":
        bottoms(P.bottom_kind, P.bottom, False)
    elif slot == "lower":
        bottoms(garment.type, gtex, True, garment.length)

    # bare torso (under any top: what a neckline or a tank top leaves visible)
    def torso_parts(hem_y, inset=0.0):
        hem_w = b.hw * 1.06
        up = [(cx - b.sw + inset + b.dx_s, b.shoulder_y - 0.008 * B),
              (cx + b.sw - inset + b.dx_s, b.shoulder_y - 0.008 * B),
              (cx + b.ww * 1.05 + b.dx_w, b.waist_y), (cx - b.ww * 1.05 + b.dx_w, b.waist_y)]
        # the parts overlap: two soft edges meeting exactly would leave a seam of half coverage
        lo = [(cx - b.ww * 1.05 + b.dx_w, b.waist_y - 0.015 * B), (cx + b.ww * 1.05 + b.dx_w, b.waist_y - 0.015 * B),
              (cx + hem_w, hem_y), (cx - hem_w, hem_y)]
        return [up, lo]

    paint(cv.polygon(*torso_parts(b.waist_y + 0.02 * B)), skin, False, torso_shade)

    if slot in ("upper", "dress"):
        g = garment
        hem = b.hip_y + (0.02 + (0.06 * g.length if g.type == "jacket" else 0.0)) * B
        inset = 0.045 * B * sq if g.type == "tank" or (g.type == "dress" and g.sleeves == "none") else 0.0
        parts = torso_parts(hem, inset)
        if g.type == "dress":
            dhem = b.hip_y + (0.14 + 0.22 * g.length) * B
            flare = b.hw * (1.3 + 0.5 * g.length)
            parts.append([(cx - b.ww * 1.05 + b.dx_w, b.waist_y - 0.015 * B),
                          (cx + b.ww * 1.05 + b.dx_w, b.waist_y - 0.015 * B),
                          (cx + flare, dhem), (cx - flare, dhem)])
        shape = cv.polygon(*parts)
        if g.neck == "v" or g.type == "tank":
            depth = (0.1 if g.neck == "v" else 0.05) * B
            cut = cv.polygon([(neck_pt[0] - 0.035 * B * sq, b.shoulder_y - 0.02 * B),
                              (neck_pt[0] + 0.035 * B * sq, b.shoulder_y - 0.02 * B),
                              (neck_pt[0], b.shoulder_y + depth)])
            shape = shape * (1 - cut)
        paint(shape, gtex, True, torso_shade)
        if g.type == "jacket":   # open front shows the shirt underneath (part of the garment)
            opening = cv.polygon([(cx - 0.02 * B * sq + b.dx_s, b.shoulder_y - 0.005),
                                  (cx + 0.02 * B * sq + b.dx_s, b.shoulder_y - 0.005),
                                  (cx + 0.035 * B * sq, hem), (cx - 0.035 * B * sq, hem)])
            paint(opening * shape, np.asarray(g.inner, np.float32), True, torso_shade)
        if g.type in ("sweater",) or g.pattern == "knit":   # ribbed hem band
            band = shape * (cv.ys[:, None] > hem - 0.025 * B)
            paint(band.astype(np.float32), np.asarray(g.primary, np.float32) * 0.82, True, torso_shade)
        if g.type == "shirt":    # placket and collar points
            paint(cv.rect(cx - 0.004 * B + b.dx_s, b.shoulder_y, cx + 0.004 * B + b.dx_s, hem) * shape,
                  np.asarray(g.secondary, np.float32) * 0.9 + 20, True)
            for side in (-1, 1):
                paint(cv.polygon([(neck_pt[0], b.shoulder_y + 0.01 * B),
                                  (neck_pt[0] + side * 0.05 * B * sq, b.shoulder_y - 0.012 * B),
                                  (neck_pt[0] + side * 0.035 * B * sq, b.shoulder_y + 0.035 * B)]),
                      np.asarray(g.primary, np.float32) * 1.05, True)
    else:
        # the person's own top, over the waistband of the garment
        paint(cv.polygon(*torso_parts(b.hip_y - 0.01 * B)), P.top, False, torso_shade)

    # neck, ears, head, face, front hair
    paint(cv.capsule(neck_pt, (cx + b.dx_s, b.shoulder_y - 0.01 * B), 0.027 * B * sq), skin * 0.92, False)
    for side in (-1, 1):
        paint(cv.ellipse((hc[0] + side * hr * 0.95 * (0.85 + 0.15 * sq), hc[1] + hr * 0.05), hr * 0.2, hr * 0.3),
              skin * 0.95, False)
    a, s_ = cv.ellipse(hc, hr * (0.85 + 0.15 * sq), hr * 1.12, shade=True)
    paint(a, skin, False, s_)
    if P.hair_style in ("short", "long", "bun", "ponytail", "curly", "bob"):
        cap = cv.ellipse((hc[0], hc[1] - hr * 0.4), hr * 1.06, hr * 0.82) * (cv.ys[:, None] < hc[1] - hr * 0.28)
        paint(cap.astype(np.float32), P.hair_color, False)
    if P.hair_style == "bob":
        for side in (-1, 1):
            paint(cv.capsule((hc[0] + side * hr * 0.95, hc[1] - hr * 0.4), (hc[0] + side * hr * 0.95, hc[1] + hr * 0.8),
                             hr * 0.28), P.hair_color, False)
    if P.hair_style == "long":
        side_lock = -1 if spec.seed % 2 else 1
        paint(cv.capsule((hc[0] + side_lock * hr * 0.9, hc[1] - hr * 0.2),
                         (hc[0] + side_lock * hr * 1.05, hc[1] + hr * 2.3), hr * 0.3, hr * 0.18),
              np.asarray(P.hair_color, np.float32) * 1.1, False)
    if P.hair_style == "bun":
        paint(cv.ellipse((hc[0], hc[1] - hr * 1.15), hr * 0.45, hr * 0.4), P.hair_color, False)
    if abs(pose.turn) < 1.3:
        fx = hc[0] + b.face_dx
        eye_y = hc[1] + hr * 0.05
        for ex in (-0.38, 0.38):
            ec = (fx + ex * hr * sq, eye_y)
            paint(cv.ellipse(ec, hr * 0.17 * sq, hr * 0.11), (245, 245, 240), False)
            paint(cv.ellipse(ec, hr * 0.09, hr * 0.1), P.iris, False)
            paint(cv.ellipse((ec[0], eye_y - hr * 0.25), hr * 0.19 * sq, hr * 0.045), np.asarray(P.hair_color) * 0.8,
                  False)
        paint(cv.ellipse((fx, hc[1] + hr * 0.32), hr * 0.08, hr * 0.14), skin * 0.85, False)
        paint(cv.ellipse((fx, hc[1] + hr * 0.62), hr * 0.26 * sq, hr * 0.08), P.lips, False)

    # arms last (a hand may reach the hair): skin, then the sleeve of the top, then the hand
    if slot == "lower":
        sleeves, sleeve_tex, sleeve_g = "short", np.asarray(P.top, np.float32), False
    else:
        sleeves, sleeve_tex, sleeve_g = garment.sleeves, gtex, True
    l1, l2 = 0.165 * B, 0.14 * B
    for shp, hand_rel, side in ((b.sh_l, pose.hand_l, -1), (b.sh_r, pose.hand_r, 1)):
        target = (shp[0] + side * hand_rel[0] * B, shp[1] + hand_rel[1] * B)
        elbow, wrist = _arm_ik(shp, target, l1, l2, side)
        r_up, r_lo = 0.03 * B * P.limb, 0.024 * B * P.limb
        a, s_ = cv.capsule(shp, elbow, r_up, r_lo * 1.05, True)
        paint(a, skin, False, s_)
        a2, s2 = cv.capsule(elbow, wrist, r_lo, r_lo * 0.85, True)
        paint(a2, skin, False, s2)
        if sleeves == "short":
            mid = (shp[0] * 0.5 + elbow[0] * 0.5, shp[1] * 0.5 + elbow[1] * 0.5)
            a, s_ = cv.capsule(shp, mid, r_up * 1.3, r_up * 1.2, True)
            paint(a, sleeve_tex, sleeve_g, s_)
        elif sleeves == "long":
            a, s_ = cv.capsule(shp, elbow, r_up * 1.25, r_lo * 1.3, True)
            paint(a, sleeve_tex, sleeve_g, s_)
            cuff = (elbow[0] + (wrist[0] - elbow[0]) * 0.92, elbow[1] + (wrist[1] - elbow[1]) * 0.92)
            a, s_ = cv.capsule(elbow, cuff, r_lo * 1.3, r_lo * 1.15, True)
            paint(a, sleeve_tex, sleeve_g, s_)
        ang = math.atan2(wrist[1] - elbow[1], wrist[0] - elbow[0])
        hand = (wrist[0] + math.cos(ang) * 0.022 * B, wrist[1] + math.sin(ang) * 0.022 * B)
        a, s_ = cv.ellipse(hand, 0.022 * B, 0.03 * B, ang - math.pi / 2, shade=True)
        paint(a, skin, False, s_)

    rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return rgb, person > 1e-4, garm > 1e-4


# ----------------------------------------------------------------------------------------------------------
# Product photo
# ----------------------------------------------------------------------------------------------------------

def render_flatlay(garment: GarmentV2, size=DEFAULT_SIZE) -> np.ndarray:
    """Product photo of the garment: laid flat, centred on a light background, filling most of the width."""
    w, h = _pair(size)
    cv = Canvas2(w, h)
    W = w / h
    img = np.full((h, w, 3), 250.0, np.float32)
    g = garment
    sleeve = {"short": 0.09, "long": 0.3, "none": 0.0}[g.sleeves] if g.slot != "lower" else 0.0
    # the outline's extent in garment units, so that every garment fills most of the frame like a product shot
    if g.type == "skirt":
        span, tall = 0.22 * (1.5 + 0.3 * g.length), 0.25 + 0.15 * g.length
    elif g.type in ("trousers", "shorts"):
        span, tall = 0.26, 0.5 if g.type == "trousers" else max(0.1, 0.18 * g.length)
    else:
        span = 2 * (0.13 + 0.45 * sleeve + 0.03)
        body = 0.45 + 0.2 * g.length if g.type == "dress" else 0.36 + (0.08 * g.length if g.type == "jacket" else 0)
        tall = max(body, 0.03 + 0.9 * sleeve + 0.03)
    k = min(0.88 * W / span, 0.8 / tall)
    cx = W / 2
    top = 0.5 - tall * k / 2
    unit = 0.8 * k
    tex = garment_texture(cv, g, (cx, top), 1.0, unit, (cx, top + 0.09 * k))
    shade = np.broadcast_to((1.0 - 0.12 * np.clip(np.abs(cv.xs[None, :] - cx) / (0.2 * k), 0, 1) ** 2)[..., None],
                            (h, w, 1))
    tex = tex * shade
    sw, hw = 0.13 * k, 0.11 * k
    parts = []
    if g.slot == "lower":
        wb = top
        if g.type == "skirt":
            hem = wb + (0.25 + 0.15 * g.length) * k
            parts.append(cv.polygon([(cx - hw, wb), (cx + hw, wb), (cx + hw * (1.5 + 0.3 * g.length), hem),
                                     (cx - hw * (1.5 + 0.3 * g.length), hem)]))
        else:
            leg = (0.5 if g.type == "trousers" else 0.18 * g.length) * k
            parts.append(cv.rect(cx - hw, wb, cx + hw, wb + 0.08 * k))
            for side in (-1, 1):
                parts.append(cv.polygon([(cx + side * 0.003, wb + 0.05 * k), (cx + side * hw, wb + 0.02 * k),
                                         (cx + side * (hw + 0.02 * k), wb + leg), (cx + side * 0.02 * k, wb + leg)]))
        # shadow, then the garment
        for p in parts:
            _blend(img, np.roll(np.roll(p, 2, 0), 2, 1) * 0.2, (0, 0, 0))
        body = functools.reduce(np.maximum, parts)
        _blend(img, body, tex)
        _blend(img, cv.rect(cx - hw, wb, cx + hw, wb + 0.018 * k), np.asarray(g.primary, np.float32) * 0.8)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)
    hem = top + (0.36 + (0.08 * g.length if g.type == "jacket" else 0.0)) * k
    if g.type == "tank" or (g.type == "dress" and g.sleeves == "none"):
        parts.append(cv.polygon([(cx - sw + 0.035 * k, top), (cx + sw - 0.035 * k, top), (cx + hw, hem),
                                 (cx - hw, hem)]))
    else:
        parts.append(cv.polygon([(cx - sw, top), (cx + sw, top), (cx + hw, hem), (cx - hw, hem)]))
    if g.type == "dress":
        dhem = top + (0.45 + 0.2 * g.length) * k
        parts.append(cv.polygon([(cx - hw, top + 0.2 * k), (cx + hw, top + 0.2 * k), (cx + 0.2 * k, dhem),
                                 (cx - 0.2 * k, dhem)]))
    sleeve_len = sleeve * k
    for side in (-1, 1):
        if sleeve_len:
            p0 = (cx + side * (sw - 0.015 * k), top + 0.025 * k)
            p1 = (p0[0] + side * sleeve_len * 0.45, p0[1] + sleeve_len * 0.9)
            parts.append(cv.capsule(p0, p1, 0.035 * k, 0.028 * k))
    for p in parts:
        _blend(img, np.roll(np.roll(p, 2, 0), 2, 1) * 0.2, (0, 0, 0))
    body = functools.reduce(np.maximum, parts)
    _blend(img, body, tex)
    if g.type == "jacket":
        _blend(img, body * cv.polygon([(cx - 0.02 * k, top), (cx + 0.02 * k, top), (cx + 0.03 * k, hem),
                                       (cx - 0.03 * k, hem)]), np.asarray(g.inner, np.float32))
    if g.type == "sweater" or g.pattern == "knit":
        _blend(img, body * (cv.ys[:, None] > hem - 0.02 * k), np.asarray(g.primary, np.float32) * 0.82)
    # neckline
    if g.neck == "v":
        _blend(img, cv.polygon([(cx - 0.04 * k, top - 0.001), (cx + 0.04 * k, top - 0.001), (cx, top + 0.08 * k)]),
               (250, 250, 250))
    else:
        _blend(img, cv.ellipse((cx, top), 0.045 * k, 0.025 * k), (250, 250, 250))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# Samples (the v1 structures)
# ----------------------------------------------------------------------------------------------------------

def render_clip(spec: SpecV2, timeline: list[tuple[int, GarmentV2]], num_frames: int, size=DEFAULT_SIZE,
                fps: int = 16, start_frame: int = 0) -> Clip:
    """Frames ``start_frame .. start_frame+num_frames-1``; ``timeline`` = [(first frame, garment), ...]."""
    w, h = _pair(size)
    timeline = sorted(timeline, key=lambda e: e[0])
    bg = _background_cached(spec.scene, w, h)
    frames, pm, gm = [], [], []
    for i in range(start_frame, start_frame + num_frames):
        g = [gar for f, gar in timeline if f <= i]
        rgb, p, m = render_frame(spec, (g[-1] if g else timeline[0][1]), i / fps, (w, h), bg)
        frames.append(rgb)
        pm.append(p)
        gm.append(m)
    return Clip(np.stack(frames), np.stack(pm), np.stack(gm))


def make_sample(seed: int, num_frames: int = 33, size=DEFAULT_SIZE, fps: int = 16) -> Sample:
    spec = spec_for_seed(seed)
    target, other = spec.garments[0], spec.garments[1]
    clip = render_clip(spec, [(0, target)], num_frames, size, fps)
    reference, _, _ = render_frame(spec, other, 0.0, size)
    return Sample(seed, spec, clip, target, render_flatlay(target, size), reference, other, spec.prompt)


def make_switch_sample(seed: int, switches: int = 1, num_frames: int = 64, size=DEFAULT_SIZE, fps: int = 16,
                       switch_frames: list[int] | None = None) -> SwitchSample:
    spec = spec_for_seed(seed, num_garments=max(4, min(switches + 2, 12)))
    rng = np.random.default_rng([int(seed), VERSION, 7_919])
    if switch_frames is None:
        lo, hi = num_frames // 4, num_frames - 16
        if hi - lo < switches:
            raise ValueError(f"{num_frames} frames are too few for {switches} switches")
        switch_frames = sorted(int(f) for f in rng.choice(np.arange(lo, hi), size=switches, replace=False))
    if any(not 0 < f < num_frames for f in switch_frames):
        raise ValueError(f"switch frames must lie inside the clip (1..{num_frames - 1}): {switch_frames}")
    pool = list(spec.garments[:-1])     # the last garment is the reference's
    garments = [pool[k % len(pool)] for k in range(len(switch_frames) + 1)]
    timeline = [(0, garments[0])] + [(f, g) for f, g in zip(switch_frames, garments[1:])]
    clip = render_clip(spec, timeline, num_frames, size, fps)
    unique = list(dict.fromkeys(garments))
    singles = {g: render_clip(spec, [(0, g)], num_frames, size, fps) for g in unique}
    reference, _, _ = render_frame(spec, spec.garments[-1], 0.0, size)
    return SwitchSample(seed, spec, garments, list(switch_frames), clip, [singles[g] for g in garments],
                        [render_flatlay(g, size) for g in garments], reference, spec.prompt)


def scene_colors(spec: SpecV2) -> list[tuple[int, int, int]]:
    """Every non-garment colour painted on the person (skin, hair, own clothes, shoes, face)."""
    p = spec.person
    own = [p.bottom] if spec.slot == "upper" else [p.top] if spec.slot == "lower" else []
    return [p.skin, p.hair_color, *own, p.shoes, p.iris, p.lips, (245, 245, 240)]
