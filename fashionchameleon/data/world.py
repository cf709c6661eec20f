"""The synthetic human-garment world: people who move, wearing garments that can be swapped at any frame.

Everything is drawn procedurally with numpy from a seed (no downloads): a person (body proportions, skin,
hair, face, trousers, shoes) in a scene (plain, gradient or studio background), performing one of five
motions whose name is the prompt, wearing a garment described by a small record (type, pattern, colours,
scale). Pose is a pure function of time, so the same clip can be rendered with any garment timeline: the
ground truth of every switch (masks, the clip without the switch, the clip with the other garment) is exact.

Geometry is in units of the image height, so any even resolution renders the same world.

World v2 (``world_v2.py``: domain-randomised scenes, portrait try-on framing) is selected with
``version=2`` in ``spec_for_seed`` / ``make_sample`` / ``make_switch_sample``; the other functions follow the
spec (or garment) they are given. v1's output does not change (the shipped v1 model depends on it).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass

import numpy as np

TRAIN_SEEDS = range(0, 500_000)
HELDOUT_SEEDS = range(500_000, 1_000_000)

MOTIONS = ("walk", "wave", "turn", "sway", "arms_up")
GARMENT_TYPES = ("tee", "longsleeve", "tank", "dress", "jacket")
PATTERNS = ("solid", "stripes", "checks", "dots", "logo")
BACKGROUNDS = ("plain", "gradient", "studio")
HAIR_STYLES = ("short", "long", "bun", "bald")
LOGO_SHAPES = ("circle", "square", "triangle", "diamond")

SKIN_TONES = [(255, 224, 196), (241, 194, 160), (224, 172, 128), (198, 134, 96), (141, 85, 54), (92, 58, 38)]
HAIR_COLORS = [(30, 24, 20), (70, 45, 28), (140, 95, 50), (220, 190, 120), (160, 60, 30), (120, 120, 120)]


def is_heldout(seed: int) -> bool:
    """Seeds 500,000-999,999 are evaluation material: training refuses them."""
    return seed in HELDOUT_SEEDS


def parse_seeds(text: str) -> list[int]:
    """'A-B' (inclusive) or 'A,B,C'."""
    text = str(text).strip()
    if "-" in text and "," not in text:
        a, b = text.split("-")
        a, b = int(a), int(b)
        if b < a:
            raise ValueError(f"empty seed range {text}")
        return list(range(a, b + 1))
    return [int(s) for s in text.split(",") if s]


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


# ----------------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Garment:
    """A garment as metrics see it: which type, which pattern, which colours, what scale."""

    type: str
    pattern: str
    primary: tuple[int, int, int]
    secondary: tuple[int, int, int]
    scale: float = 0.05          # pattern period in image heights
    logo: str = "circle"
    inner: tuple[int, int, int] = (240, 240, 240)   # the shirt under a jacket

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """Colours that may appear on this garment (before shading)."""
        colors = [self.primary]
        if self.pattern != "solid":
            colors.append(self.secondary)
        if self.type == "jacket":
            colors.append(self.inner)
        return colors

    @property
    def sleeves(self) -> str:
        return {"tee": "short", "longsleeve": "long", "tank": "none", "dress": "short", "jacket": "long"}[self.type]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Garment":
        h = rng.random()
        primary = _hsv(h, rng.uniform(0.45, 0.95), rng.uniform(0.45, 0.95))
        secondary = _hsv(h + rng.uniform(0.25, 0.75), rng.uniform(0.1, 0.9), rng.choice([rng.uniform(0.85, 1.0),
                                                                                        rng.uniform(0.1, 0.35)]))
        return cls(type=str(rng.choice(GARMENT_TYPES)), pattern=str(rng.choice(PATTERNS)), primary=primary,
                   secondary=secondary, scale=float(rng.uniform(0.06, 0.1)), logo=str(rng.choice(LOGO_SHAPES)),
                   inner=(240, 240, 240) if rng.random() < 0.6 else (35, 35, 40))


@dataclass(frozen=True)
class Person:
    height: float          # overall scale (1 = reference body)
    shoulder: float        # shoulder half-width
    hip: float             # hip half-width
    head: float            # head radius
    skin: tuple[int, int, int]
    hair_style: str
    hair_color: tuple[int, int, int]
    trousers: tuple[int, int, int]
    shoes: tuple[int, int, int]
    x: float               # horizontal place in the frame

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Person":
        return cls(height=float(rng.uniform(0.9, 1.02)), shoulder=float(rng.uniform(0.13, 0.165)),
                   hip=float(rng.uniform(0.1, 0.125)), head=float(rng.uniform(0.07, 0.085)),
                   skin=SKIN_TONES[rng.integers(len(SKIN_TONES))], hair_style=str(rng.choice(HAIR_STYLES)),
                   hair_color=HAIR_COLORS[rng.integers(len(HAIR_COLORS))],
                   trousers=_hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.15, 0.6)),
                   shoes=_hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.05, 0.4)),
                   x=float(rng.uniform(0.45, 0.55)))


@dataclass(frozen=True)
class Scene:
    background: str
    color_a: tuple[int, int, int]
    color_b: tuple[int, int, int]
    floor: float = 0.8     # y of the studio's floor line

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Scene":
        h = rng.random()
        return cls(background=str(rng.choice(BACKGROUNDS)), color_a=_hsv(h, rng.uniform(0.05, 0.4), rng.uniform(0.55, 0.95)),
                   color_b=_hsv(h + rng.uniform(-0.2, 0.2), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.8)),
                   floor=float(rng.uniform(0.72, 0.84)))


@dataclass(frozen=True)
class Motion:
    name: str
    freq: float            # cycles per second
    phase: float
    amplitude: float

    @classmethod
    def random(cls, rng: np.random.Generator, name: str | None = None) -> "Motion":
        return cls(name=name or str(rng.choice(MOTIONS)), freq=float(rng.uniform(0.35, 0.8)),
                   phase=float(rng.uniform(0, 2 * math.pi)), amplitude=float(rng.uniform(0.7, 1.0)))


@dataclass(frozen=True)
class Spec:
    """Everything a seed decides: who, where, how they move, and the garments of the sample."""

    seed: int
    person: Person
    scene: Scene
    motion: Motion
    garments: tuple[Garment, ...]        # garments[0] is worn; the others are switch targets / references

    @property
    def prompt(self) -> str:
        return self.motion.name


def _v2():
    from . import world_v2

    return world_v2


def _is_v2(record) -> bool:
    return getattr(record, "version", 1) == 2


def _v1_crop(size) -> tuple[int, int, int] | None:
    """World v1 draws squares. A (width, height) size that is not square is the centre crop of a square of the
    larger side (how a v2-shaped, portrait model is evaluated on v1 seeds): (side, width, height), else None."""
    if not isinstance(size, (tuple, list)):
        return None
    w, h = int(size[0]), int(size[1])
    return None if w == h else (max(w, h), w, h)


def _centre(img: np.ndarray, w: int, h: int) -> np.ndarray:
    y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y0:y0 + h, x0:x0 + w]


def _side(size) -> int:
    """v1's square side for an int or a square (width, height)."""
    return int(size[0]) if isinstance(size, (tuple, list)) else int(size)


def spec_for_seed(seed: int, num_garments: int = 4, version: int = 1) -> Spec:
    if version == 2:
        return _v2().spec_for_seed(seed, num_garments)
    if version != 1:
        raise ValueError(f"unknown world version {version} (1 or 2)")
    rng = np.random.default_rng(seed)
    person, scene, motion = Person.random(rng), Scene.random(rng), Motion.random(rng)
    garments: list[Garment] = []
    while len(garments) < num_garments:
        g = Garment.random(rng)
        # keep garments of one sample clearly different in colour (a switch must be visible)
        if all(np.abs(np.subtract(g.primary, o.primary)).sum() > 120 for o in garments):
            garments.append(g)
    return Spec(seed, person, scene, motion, tuple(garments))


# ----------------------------------------------------------------------------------------------------------
# Pose
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Pose:
    cx: float
    turn: float            # body rotation about the vertical axis, radians
    tilt: float            # lateral lean, radians
    arm_l: tuple[float, float]   # (shoulder angle, elbow bend), angle 0 = hanging down, positive = outwards
    arm_r: tuple[float, float]
    leg_l: float           # knee lift (0..1)
    leg_r: float
    bob: float             # vertical offset


def pose_at(spec: Spec, t: float) -> Pose:
    """Pose at time t seconds: a smooth periodic function of time (predictable from the last frames)."""
    m = spec.motion
    w = 2 * math.pi * m.freq * t + m.phase
    a = m.amplitude
    pose = Pose(cx=spec.person.x, turn=0.0, tilt=0.0, arm_l=(0.18, 0.1), arm_r=(0.18, 0.1), leg_l=0.0,
                leg_r=0.0, bob=0.0)
    if m.name == "walk":
        pose.arm_l = (0.15 + 0.35 * a * math.sin(w), 0.25)
        pose.arm_r = (0.15 - 0.35 * a * math.sin(w), 0.25)
        pose.leg_l = max(0.0, math.sin(w)) * a
        pose.leg_r = max(0.0, -math.sin(w)) * a
        pose.bob = 0.008 * abs(math.sin(w))
    elif m.name == "wave":
        pose.arm_r = (2.3 + 0.15 * math.sin(w), 0.9 + 0.6 * a * math.sin(3 * w))
        pose.arm_l = (0.2, 0.15)
    elif m.name == "turn":
        pose.turn = 0.9 * a * math.sin(w)
        pose.arm_l = (0.2 + 0.1 * math.sin(w), 0.2)
        pose.arm_r = (0.2 - 0.1 * math.sin(w), 0.2)
    elif m.name == "sway":
        pose.cx += 0.05 * a * math.sin(w)
        pose.tilt = 0.12 * a * math.sin(w)
        pose.arm_l = (0.3 + 0.2 * math.sin(w), 0.3)
        pose.arm_r = (0.3 - 0.2 * math.sin(w), 0.3)
    elif m.name == "arms_up":
        lift = 0.5 - 0.5 * math.cos(w)
        pose.arm_l = (0.2 + 2.4 * a * lift, 0.2)
        pose.arm_r = (0.2 + 2.4 * a * lift, 0.2)
        pose.bob = -0.01 * lift
    return pose


# ----------------------------------------------------------------------------------------------------------
# Drawing primitives on a pixel grid (soft coverage, antialiased)
# ----------------------------------------------------------------------------------------------------------

class Canvas:
    def __init__(self, size: int):
        self.n = size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self.x = (xs + 0.5) / size   # in image heights (square images)
        self.y = (ys + 0.5) / size
        self.px = 1.0 / size

    def _soft(self, signed_dist: np.ndarray) -> np.ndarray:
        # edges ramp over two pixels: a camera's softness, which keeps the world learnable by a small codec
        return np.clip(0.5 - signed_dist / (2.0 * self.px), 0.0, 1.0)

    def capsule(self, p0, p1, r0: float, r1: float | None = None) -> np.ndarray:
        r1 = r0 if r1 is None else r1
        (x0, y0), (x1, y1) = p0, p1
        dx, dy = x1 - x0, y1 - y0
        L2 = dx * dx + dy * dy + 1e-12
        h = np.clip(((self.x - x0) * dx + (self.y - y0) * dy) / L2, 0.0, 1.0)
        d = np.hypot(self.x - x0 - h * dx, self.y - y0 - h * dy)
        return self._soft(d - (r0 + (r1 - r0) * h))

    def ellipse(self, c, rx: float, ry: float, angle: float = 0.0) -> np.ndarray:
        ca, sa = math.cos(angle), math.sin(angle)
        u = (self.x - c[0]) * ca + (self.y - c[1]) * sa
        v = -(self.x - c[0]) * sa + (self.y - c[1]) * ca
        k = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
        return self._soft((k - 1.0) * min(rx, ry))

    def polygon(self, pts) -> np.ndarray:
        """Convex polygon (points in order) with soft edges."""
        d = np.full(self.x.shape, -np.inf, dtype=np.float32)
        n = len(pts)
        area = sum(pts[i][0] * pts[(i + 1) % n][1] - pts[(i + 1) % n][0] * pts[i][1] for i in range(n))
        sign = 1.0 if area > 0 else -1.0
        for i in range(n):
            (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % n]
            ex, ey = x1 - x0, y1 - y0
            L = math.hypot(ex, ey) + 1e-12
            # outward distance from edge i
            d = np.maximum(d, sign * ((self.x - x0) * ey - (self.y - y0) * ex) / L)
        return self._soft(d)


def _bbox(alpha: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(alpha.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(alpha.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _paint(img: np.ndarray, alpha: np.ndarray, color) -> tuple[slice, slice] | None:
    """Alpha-blend ``color`` (RGB or an image) over ``img`` where ``alpha`` > 0; returns the touched box."""
    box = _bbox(alpha)
    if box is None:
        return None
    a = alpha[box][..., None]
    c = color[box] if isinstance(color, np.ndarray) and color.ndim == 3 else np.asarray(color, np.float32)
    img[box] += a * (c - img[box])
    return box


# ----------------------------------------------------------------------------------------------------------
# Garment pattern, in body coordinates so it moves with the body
# ----------------------------------------------------------------------------------------------------------

def garment_texture(cv: Canvas, g: Garment, origin: tuple[float, float], squeeze: float = 1.0,
                    logo_at: tuple[float, float] | None = None, logo_size: float = 0.03) -> np.ndarray:
    u = (cv.x - origin[0]) / max(squeeze, 0.3)
    v = cv.y - origin[1]
    p = g.scale
    sec = np.zeros(cv.x.shape, dtype=np.float32)
    def band(w):  # a square wave with soft (two-pixel) transitions
        return np.clip(0.5 + np.sin(2 * math.pi * w / p) * p / (2 * math.pi * 2 * cv.px), 0, 1)

    if g.pattern == "stripes":
        sec = band(v).astype(np.float32)
    elif g.pattern == "checks":
        a, b = band(u), band(v)
        sec = (a + b - 2 * a * b).astype(np.float32)   # soft xor
    elif g.pattern == "dots":
        du = (u / p + 0.25) % 1.0 - 0.5
        dv = (v / p + 0.25) % 1.0 - 0.5
        sec = np.clip(0.5 - (np.hypot(du, dv) - 0.22) * p / (2 * cv.px), 0, 1)
    elif g.pattern == "logo" and logo_at is not None:
        lx, ly = logo_at
        s = logo_size
        if g.logo == "circle":
            sec = cv.ellipse((lx, ly), s, s)
        elif g.logo == "square":
            sec = cv.polygon([(lx - s, ly - s), (lx + s, ly - s), (lx + s, ly + s), (lx - s, ly + s)])
        elif g.logo == "triangle":
            sec = cv.polygon([(lx, ly - s * 1.2), (lx + s * 1.1, ly + s * 0.8), (lx - s * 1.1, ly + s * 0.8)])
        else:
            sec = cv.polygon([(lx, ly - s * 1.3), (lx + s, ly), (lx, ly + s * 1.3), (lx - s, ly)])
    prim = np.asarray(g.primary, np.float32)
    secc = np.asarray(g.secondary, np.float32)
    return prim * (1 - sec[..., None]) + secc * sec[..., None]


# ----------------------------------------------------------------------------------------------------------
# Rendering a frame
# ----------------------------------------------------------------------------------------------------------

def _background(cv: Canvas, scene: Scene) -> np.ndarray:
    a = np.asarray(scene.color_a, np.float32)
    b = np.asarray(scene.color_b, np.float32)
    if scene.background == "plain":
        return np.broadcast_to(a, cv.x.shape + (3,)).copy()
    if scene.background == "gradient":
        t = cv.y[..., None]
        return a * (1 - t) + b * t
    floor = (cv.y > scene.floor)[..., None].astype(np.float32)
    wall = a * (1 - 0.25 * cv.y[..., None])
    ground = b * (0.8 + 0.2 * (cv.y[..., None] - scene.floor))
    return wall * (1 - floor) + ground * floor


def _limb(shoulder, angle: float, bend: float, l1: float, l2: float, side: int, squeeze: float):
    """Upper/lower arm end points; side -1 = image left."""
    a1 = angle
    ex = shoulder[0] + side * math.sin(a1) * l1 * squeeze
    ey = shoulder[1] + math.cos(a1) * l1
    a2 = a1 + bend
    hx = ex + side * math.sin(a2) * l2 * squeeze
    hy = ey + math.cos(a2) * l2
    return (ex, ey), (hx, hy)


def render_frame(spec: Spec, garment: Garment, t: float, size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame: (rgb uint8 HxWx3, person mask bool, garment mask bool), masks as exact support."""
    if _is_v2(spec):
        return _v2().render_frame(spec, garment, t, size)
    if crop := _v1_crop(size):
        return tuple(_centre(a, *crop[1:]) for a in render_frame(spec, garment, t, crop[0]))
    cv = Canvas(_side(size))
    img = _background(cv, spec.scene).astype(np.float32)
    P, pose = spec.person, pose_at(spec, t)
    s = P.height
    squeeze = 0.65 + 0.35 * abs(math.cos(pose.turn))
    cx = pose.cx
    top = 0.97 - 0.87 * s + pose.bob                 # head top
    head_c = (cx + math.sin(pose.tilt) * 0.25 * s, top + P.head * s * 1.05)
    neck = (cx + math.sin(pose.tilt) * 0.2 * s, head_c[1] + P.head * s * 0.95)
    shoulder_y = neck[1] + 0.035 * s
    hip_y = shoulder_y + 0.27 * s
    sw, hw = P.shoulder * s * squeeze, P.hip * s * squeeze
    tilt_dx = math.sin(pose.tilt) * 0.2 * s
    sh_l, sh_r = (cx - sw + tilt_dx, shoulder_y), (cx + sw + tilt_dx, shoulder_y)
    hip_l, hip_r = (cx - hw, hip_y), (cx + hw, hip_y)
    person = np.zeros(cv.x.shape, np.float32)
    garm = np.zeros(cv.x.shape, np.float32)

    # floor shadow in the studio
    if spec.scene.background == "studio":
        sh = cv.ellipse((cx, 0.975), 0.13 * s, 0.012) * 0.35
        _paint(img, sh, (0, 0, 0))

    def paint(alpha, color, is_garment: bool):
        box = _paint(img, alpha, color)
        if box is None:
            return
        a = alpha[box]
        np.maximum(person[box], a, out=person[box])
        garm[box] = garm[box] * (1 - a) + (a if is_garment else 0.0)

    # legs and shoes
    leg_len = 0.31 * s
    for hip, lift, side in ((hip_l, pose.leg_l, -1), (hip_r, pose.leg_r, 1)):
        hx = hip[0] * 0.6 + cx * 0.4 + side * 0.01
        knee = (hx + side * 0.005, hip_y + leg_len * 0.5 - 0.05 * lift * s)
        foot = (hx + side * 0.01, hip_y + leg_len - 0.06 * lift * s)
        paint(cv.capsule((hx, hip_y), knee, 0.05 * s * squeeze, 0.042 * s * squeeze), P.trousers, False)
        paint(cv.capsule(knee, foot, 0.042 * s * squeeze, 0.036 * s * squeeze), P.trousers, False)
        paint(cv.ellipse((foot[0] + side * 0.015, foot[1] + 0.02 * s), 0.045 * s * squeeze, 0.022 * s),
              P.shoes, False)

    # torso garment (plus skirt for a dress)
    shade = (1.0 - 0.35 * np.clip(np.abs(cv.x - cx) / (sw + 1e-6), 0, 1) ** 2)[..., None]
    logo_at = (cx + 0.35 * sw * math.sin(pose.turn) + tilt_dx * 0.5, shoulder_y + 0.09 * s)
    tex = garment_texture(cv, garment, (cx, neck[1]), squeeze, logo_at, 0.032 * s * squeeze) * shade
    if garment.type == "tank":
        torso = cv.polygon([(sh_l[0] + 0.03 * s, shoulder_y - 0.005), (sh_r[0] - 0.03 * s, shoulder_y - 0.005),
                            (hip_r[0] + 0.01, hip_y + 0.02), (hip_l[0] - 0.01, hip_y + 0.02)])
    else:
        torso = cv.polygon([(sh_l[0], shoulder_y - 0.01), (sh_r[0], shoulder_y - 0.01),
                            (hip_r[0] + 0.012, hip_y + 0.03), (hip_l[0] - 0.012, hip_y + 0.03)])
    if garment.type == "dress":
        skirt = cv.polygon([(hip_l[0] - 0.01, hip_y), (hip_r[0] + 0.01, hip_y),
                            (cx + hw * 1.8, hip_y + 0.19 * s), (cx - hw * 1.8, hip_y + 0.19 * s)])
        torso = np.maximum(torso, skirt)
    paint(torso, tex, True)
    if garment.type == "jacket":  # open front shows the shirt underneath
        opening = cv.polygon([(cx - 0.018 * s * squeeze + tilt_dx, shoulder_y - 0.005),
                              (cx + 0.018 * s * squeeze + tilt_dx, shoulder_y - 0.005),
                              (cx + 0.028 * s * squeeze, hip_y + 0.03), (cx - 0.028 * s * squeeze, hip_y + 0.03)])
        paint(opening * torso, np.asarray(garment.inner, np.float32) * shade, True)

    # arms: sleeves per garment type, skin elsewhere
    for sh, (angle, bend), side in ((sh_l, pose.arm_l, -1), (sh_r, pose.arm_r, 1)):
        elbow, hand = _limb(sh, angle, bend, 0.14 * s, 0.13 * s, side, squeeze)
        r_up, r_lo = 0.04 * s, 0.032 * s
        upper = cv.capsule(sh, elbow, r_up, r_lo * 1.1)
        lower = cv.capsule(elbow, hand, r_lo, r_lo * 0.9)
        sleeves = garment.sleeves
        if sleeves == "short":
            mid = (sh[0] * 0.45 + elbow[0] * 0.55, sh[1] * 0.45 + elbow[1] * 0.55)
            paint(upper, P.skin, False)
            paint(cv.capsule(sh, mid, r_up * 1.15), tex, True)
            paint(lower, P.skin, False)
        elif sleeves == "long":
            paint(upper, tex, True)
            paint(lower, tex, True)
        else:
            paint(upper, P.skin, False)
            paint(lower, P.skin, False)
        paint(cv.ellipse(hand, 0.03 * s, 0.033 * s), P.skin, False)

    # neck, head, hair, face
    paint(cv.capsule(neck, (neck[0], shoulder_y - 0.005), 0.032 * s), P.skin, False)
    hr = P.head * s
    face_dx = math.sin(pose.turn) * hr * 0.55
    if P.hair_style == "long":
        paint(cv.polygon([(head_c[0] - hr * 1.05, head_c[1]), (head_c[0] + hr * 1.05, head_c[1]),
                          (head_c[0] + hr * 1.15, head_c[1] + hr * 1.9), (head_c[0] - hr * 1.15, head_c[1] + hr * 1.9)]),
              P.hair_color, False)
    paint(cv.ellipse(head_c, hr * (0.85 + 0.15 * squeeze), hr * 1.1), P.skin, False)
    if P.hair_style in ("short", "long", "bun"):
        cap = cv.ellipse((head_c[0], head_c[1] - hr * 0.35), hr * 1.02, hr * 0.8) * (cv.y < head_c[1] - hr * 0.25)
        paint(cap.astype(np.float32), P.hair_color, False)
    if P.hair_style == "bun":
        paint(cv.ellipse((head_c[0], head_c[1] - hr * 1.15), hr * 0.45, hr * 0.4), P.hair_color, False)
    if abs(pose.turn) < 1.3:
        eye_y = head_c[1] + hr * 0.05
        for ex in (-0.38, 0.38):
            paint(cv.ellipse((head_c[0] + face_dx + ex * hr * squeeze, eye_y), hr * 0.12, hr * 0.14), (30, 30, 35), False)
        paint(cv.ellipse((head_c[0] + face_dx, head_c[1] + hr * 0.5), hr * 0.3 * squeeze, hr * 0.07), (150, 60, 60), False)

    rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    # Masks are the exact support (any coverage): a pixel outside the garment mask does not depend on the
    # garment at all. Metrics that want the garment's interior erode it.
    return rgb, person > 1e-4, garm > 1e-4


def render_flatlay(garment: Garment, size: int = 128) -> np.ndarray:
    """Product photo of the garment: canonical pose, centred on white."""
    if _is_v2(garment):
        return _v2().render_flatlay(garment, size)
    if crop := _v1_crop(size):      # the square product photo, padded with its white to the frame's shape
        side, w, h = min(crop[1:]), crop[1], crop[2]
        out = np.full((h, w, 3), 255, np.uint8)
        y0, x0 = (h - side) // 2, (w - side) // 2
        out[y0:y0 + side, x0:x0 + side] = render_flatlay(garment, side)
        return out
    cv = Canvas(_side(size))
    img = np.full(cv.x.shape + (3,), 255.0, np.float32)
    cx, top, bottom = 0.5, 0.2, 0.78 if garment.type != "dress" else 0.9
    sw, hw = 0.2, 0.16
    shade = (1.0 - 0.15 * np.clip(np.abs(cv.x - cx) / sw, 0, 1) ** 2)[..., None]
    tex = garment_texture(cv, garment, (cx, top), 1.6, (cx, top + 0.16), 0.055) * shade
    hem = 0.72 if garment.type == "dress" else bottom
    if garment.type == "tank":
        body = cv.polygon([(cx - sw + 0.06, top), (cx + sw - 0.06, top), (cx + hw, hem), (cx - hw, hem)])
    else:
        body = cv.polygon([(cx - sw, top), (cx + sw, top), (cx + hw, hem), (cx - hw, hem)])
    if garment.type == "dress":
        body = np.maximum(body, cv.polygon([(cx - hw, hem - 0.02), (cx + hw, hem - 0.02), (cx + 0.3, bottom), (cx - 0.3, bottom)]))
    sleeve_len = {"short": 0.12, "long": 0.32, "none": 0.0}[garment.sleeves]
    for side in (-1, 1):
        if sleeve_len:
            p0 = (cx + side * (sw - 0.02), top + 0.03)
            p1 = (p0[0] + side * sleeve_len * 0.62, p0[1] + sleeve_len * 0.78)
            _paint(img, cv.capsule(p0, p1, 0.05, 0.04), tex)
    _paint(img, body, tex)
    if garment.type == "jacket":
        _paint(img, body * cv.polygon([(cx - 0.03, top), (cx + 0.03, top), (cx + 0.045, hem), (cx - 0.045, hem)]),
               np.asarray(garment.inner, np.float32) * shade)
    # collar
    _paint(img, cv.ellipse((cx, top), 0.07, 0.035), (255, 255, 255))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# Samples
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Clip:
    frames: np.ndarray           # (T, H, W, 3) uint8
    person_masks: np.ndarray     # (T, H, W) bool
    garment_masks: np.ndarray    # (T, H, W) bool


def render_clip(spec: Spec, timeline: list[tuple[int, Garment]], num_frames: int, size: int = 128,
                fps: int = 16, start_frame: int = 0) -> Clip:
    """Frames ``start_frame .. start_frame+num_frames-1``; ``timeline`` = [(first frame, garment), ...]."""
    if _is_v2(spec):
        return _v2().render_clip(spec, timeline, num_frames, size, fps, start_frame)
    if any(int(n) % 2 for n in (size if isinstance(size, (tuple, list)) else (size,))):
        raise ValueError(f"resolution must be even, got {size}")
    timeline = sorted(timeline, key=lambda e: e[0])
    frames, pm, gm = [], [], []
    for i in range(start_frame, start_frame + num_frames):
        g = [gar for f, gar in timeline if f <= i]
        rgb, p, m = render_frame(spec, (g[-1] if g else timeline[0][1]), i / fps, size)
        frames.append(rgb)
        pm.append(p)
        gm.append(m)
    return Clip(np.stack(frames), np.stack(pm), np.stack(gm))


@dataclass
class Sample:
    """One training/evaluation sample: the paper's mismatched reference and the target clip."""

    seed: int
    spec: Spec
    clip: Clip
    garment: Garment
    garment_image: np.ndarray       # flat lay on white
    reference: np.ndarray           # same person and scene at frame 0, wearing ANOTHER garment
    reference_garment: Garment
    prompt: str


def make_sample(seed: int, num_frames: int = 33, size: int | tuple[int, int] | None = None, fps: int = 16,
                version: int = 1) -> Sample:
    """``size``: an int (v1, square; default 128) or (width, height) (v2, portrait; default 112x192; v1 renders
    a (width, height) as the centre crop of a square)."""
    if version == 2:
        return _v2().make_sample(seed, num_frames, _v2().DEFAULT_SIZE if size is None else size, fps)
    size = 128 if size is None else size
    spec = spec_for_seed(seed)
    target, other = spec.garments[0], spec.garments[1]
    clip = render_clip(spec, [(0, target)], num_frames, size, fps)
    reference, _, _ = render_frame(spec, other, 0.0, size)
    return Sample(seed, spec, clip, target, render_flatlay(target, size), reference, other, spec.prompt)


@dataclass
class SwitchSample:
    """A clip whose garment changes at ``switch_frames``, plus the no-switch clip of every garment in it."""

    seed: int
    spec: Spec
    garments: list[Garment]         # garments[k] is worn from switch_frames[k-1] on (garments[0] from 0)
    switch_frames: list[int]
    clip: Clip
    single_clips: list[Clip]        # the whole clip wearing garments[k] throughout
    garment_images: list[np.ndarray]
    reference: np.ndarray
    prompt: str


def make_switch_sample(seed: int, switches: int = 1, num_frames: int = 64, size: int | tuple[int, int] | None = None,
                       fps: int = 16, switch_frames: list[int] | None = None, version: int = 1) -> SwitchSample:
    if version == 2:
        return _v2().make_switch_sample(seed, switches, num_frames, _v2().DEFAULT_SIZE if size is None else size,
                                        fps, switch_frames)
    size = 128 if size is None else size
    spec = spec_for_seed(seed, num_garments=max(4, min(switches + 2, 12)))
    rng = np.random.default_rng(seed + 7_919)
    if switch_frames is None:
        lo, hi = num_frames // 4, num_frames - 16
        if hi - lo < switches:
            raise ValueError(f"{num_frames} frames are too few for {switches} switches")
        switch_frames = sorted(int(f) for f in rng.choice(np.arange(lo, hi), size=switches, replace=False))
    if any(not 0 < f < num_frames for f in switch_frames):
        raise ValueError(f"switch frames must lie inside the clip (1..{num_frames - 1}): {switch_frames}")
    # cycle through garments 0,1,2,... skipping the reference garment (the last one)
    pool = list(spec.garments[:-1])
    garments = [pool[k % len(pool)] for k in range(len(switch_frames) + 1)]
    timeline = [(0, garments[0])] + [(f, g) for f, g in zip(switch_frames, garments[1:])]
    clip = render_clip(spec, timeline, num_frames, size, fps)
    unique = list(dict.fromkeys(garments))
    singles = {g: render_clip(spec, [(0, g)], num_frames, size, fps) for g in unique}
    reference, _, _ = render_frame(spec, spec.garments[-1], 0.0, size)
    return SwitchSample(seed, spec, garments, list(switch_frames), clip, [singles[g] for g in garments],
                        [render_flatlay(g, size) for g in garments], reference, spec.prompt)


def render_background(spec: Spec, size: int = 128) -> np.ndarray:
    """The empty scene (no person, no shadow): what a static camera sees behind the person."""
    if _is_v2(spec):
        return _v2().render_background(spec, size)
    if crop := _v1_crop(size):
        return _centre(render_background(spec, crop[0]), *crop[1:])
    return np.clip(_background(Canvas(_side(size)), spec.scene) + 0.5, 0, 255).astype(np.uint8)


def scene_colors(spec: Spec) -> list[tuple[int, int, int]]:
    """Every non-garment colour the renderer paints on the person (skin, hair, trousers, shoes, face)."""
    if _is_v2(spec):
        return _v2().scene_colors(spec)
    p = spec.person
    return [p.skin, p.hair_color, p.trousers, p.shoes, (30, 30, 35), (150, 60, 60)]
