"""RealBench: metric relations on synthetic images, input discovery, and the CLI's JSON contract (micro model)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fashionchameleon.eval import realbench as RB


def _smooth(h=64, w=64):
    y, x = np.mgrid[0:h, 0:w].astype(float)
    img = 128 + 60 * np.sin(x / 9.0) * np.cos(y / 11.0)
    return np.repeat(img[..., None], 3, -1).astype(np.uint8)


def test_grid_visibility_sees_a_painted_grid_and_not_a_smooth_image():
    smooth = _smooth()
    assert 0.85 < RB.grid_visibility(smooth, 16) < 1.15
    grid = smooth.copy()
    grid[:, 15::16] = 30      # dark lines along the token boundaries
    grid[15::16, :] = 30
    assert RB.grid_visibility(grid, 16) > 1.5
    # blocks: piecewise-constant 8x8 tiles (what a coarse codec leaves) show on the 8-px grid only
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.integers(0, 255, (8, 8)), np.ones((8, 8)))
    blocks = np.repeat(blocks[..., None], 3, -1) + rng.normal(0, 2, (64, 64, 3))
    assert RB.grid_visibility(blocks, 8) > 1.5
    noise = rng.integers(0, 255, (4, 64, 64, 3))
    assert 0.9 < RB.grid_visibility(noise, 16) < 1.1


def test_ssim_and_fidelity_relations():
    a = _smooth()
    assert RB.masked_ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a + np.random.default_rng(1).normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    mask = np.zeros(a.shape[:2], bool)
    mask[:, :32] = True
    assert RB.masked_ssim(noisy, a) < 0.8
    half = a.copy()
    half[:, 32:] = noisy[:, 32:]          # damage only outside the mask
    assert RB.masked_ssim(half, a, mask) > 0.95     # only the window's reach across the edge
    assert RB.masked_ssim(half, a, ~mask) < 0.8


def test_landing_distance_moves_toward_the_new_garment():
    flat = np.full((64, 64, 3), 255, np.uint8)
    flat[16:48, 20:44] = (200, 30, 30)                      # a red garment on white
    target = RB.garment_color(flat)
    box = (8, 8, 24, 24)
    before = np.full((3, 32, 32, 3), (30, 160, 40), np.uint8)   # green torso
    after = before.copy()
    after[:, 8:24, 8:24] = (195, 35, 30)
    d0, d1 = RB.torso_distance(before, box, target), RB.torso_distance(after, box, target)
    assert d1 < 3 and d0 > 50


def test_torso_box_maps_the_sidecar_through_the_person_crop(tmp_path):
    p = tmp_path / "person_a.png"
    Image.fromarray(np.zeros((200, 100, 3), np.uint8)).save(p)
    # fit_person to 32x32: scale 0.32 -> 32x64, centre crop drops 16 rows above
    assert RB.torso_box(p, (200, 100), (32, 32)) == (8, 11, 24, 27)      # the default box, in frame fractions
    p.with_suffix(".json").write_text(json.dumps({"torso": [0.0, 0.5, 1.0, 1.0]}))
    assert RB.torso_box(p, (200, 100), (32, 32)) == (0, 16, 32, 32)


def _folder(root, flat: bool):
    rng = np.random.default_rng(0)
    person = rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)
    g1 = np.full((40, 40, 3), 255, np.uint8)
    g1[8:32, 10:30] = (200, 30, 30)
    g2 = np.full((40, 40, 3), 255, np.uint8)
    g2[8:32, 10:30] = (30, 40, 200)
    if flat:
        Image.fromarray(person).save(root / "person_x.png")
        Image.fromarray(g1).save(root / "garment_red.png")
        Image.fromarray(g2).save(root / "garment_blue.jpg")
    else:
        (root / "persons").mkdir()
        (root / "garments").mkdir()
        Image.fromarray(person).save(root / "persons" / "x.png")
        Image.fromarray(g1).save(root / "garments" / "red.png")
        Image.fromarray(g2).save(root / "garments" / "blue.png")
        (root / "garments" / "notes.txt").write_text("not an image")


@pytest.mark.parametrize("flat", [True, False])
def test_find_inputs_layouts(tmp_path, flat):
    _folder(tmp_path, flat)
    persons, garments = RB.find_inputs(tmp_path)
    assert len(persons) == 1 and len(garments) == 2


def test_find_inputs_needs_two_garments(tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "person_a.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "garment_a.png")
    with pytest.raises(ValueError, match="2 garment"):
        RB.find_inputs(tmp_path)


def test_run_realbench_on_micro(micro_generator, tmp_path):
    _folder(tmp_path, flat=True)
    cfg = RB.RealBenchConfig(frames=30, switch_at=10, late=6)
    out = RB.run_realbench(micro_generator, tmp_path, cfg, out=tmp_path / "sheets", progress=False)
    cases = out["cases"]
    assert len(cases) == 2 and {c["garment"] for c in cases} == {"garment_blue.jpg", "garment_red.png"}
    for c in cases:
        assert c["switch_to"] != c["garment"]
        assert cfg.switch_at <= c["switch_frame"] < cfg.frames
        assert 0 < c["fidelity_ssim"] <= 1 and 0 < c["ref_ssim_early"] <= 1
        assert c["landing_gain"] == pytest.approx(c["landing_before"] - c["landing_after"])
        assert c["landed"] == (c["landing_gain"] >= RB.LANDED_DE)
        assert c["grid_visibility"] > 0 and c["grid_visibility_codec"] > 0
        assert c["grid_photo"] > 0 and c["grid_codec_roundtrip"] > 0
        sheet = np.asarray(Image.open(c["sheet"]))
        assert sheet.shape[0] == 32 and sheet.shape[1] > 32 * 10
    assert out["token_px"] == 16 and out["codec_px"] == 8 and out["codec_sha256"] == micro_generator.codec.sha256
    # the per-photo scale: the photo itself and its codec round trip (one value per person, in every case)
    person = micro_generator.person_image(np.asarray(Image.open(tmp_path / "person_x.png").convert("RGB")))
    assert cases[0]["grid_photo"] == pytest.approx(RB.grid_visibility(person[None], 16))
    roundtrip = RB.codec_roundtrip(micro_generator, person)
    assert roundtrip.shape == person.shape and roundtrip.dtype == np.uint8
    assert cases[0]["grid_codec_roundtrip"] == pytest.approx(RB.grid_visibility(roundtrip[None], 16))
    assert out["means"]["fidelity_ssim"] == pytest.approx(np.mean([c["fidelity_ssim"] for c in cases]))
    assert out["means"]["landing"] == pytest.approx(np.mean([c["landing_gain"] for c in cases]))


def test_cli_json_contract(micro_assets, tmp_path):
    _folder(tmp_path, flat=False)
    model, codec = micro_assets
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "fashionchameleon", "eval", "--real", str(tmp_path), "--json",
                        "--checkpoint", str(model), "--codec", str(codec), "--threads", "1", "--out",
                        str(tmp_path / "out"), "--reference-mix", "0.25"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert set(out["means"]) >= {"fidelity_ssim", "fidelity_psnr", "fidelity_ratio", "grid_visibility",
                                 "grid_visibility_codec", "grid_photo", "grid_codec_roundtrip", "landing"}
    assert len(out["cases"]) == 2 and out["landed"].endswith("/2")
    assert json.loads((tmp_path / "out" / "realbench.json").read_text())["cases"][0]["person"] == "x.png"
    assert out["stream"]["reference_mix"] == 0.25      # the switch settings given reach the generator
    bad_mix = subprocess.run([sys.executable, "-m", "fashionchameleon", "eval", "--real", str(tmp_path), "--json",
                              "--checkpoint", str(model), "--codec", str(codec), "--reference-mix", "1.5"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert bad_mix.returncode == 2 and "--reference-mix out of range" in bad_mix.stderr
    bad = subprocess.run([sys.executable, "-m", "fashionchameleon", "eval", "--real", str(tmp_path / "nope"),
                          "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "no such folder" in bad.stderr


def test_make_realbench_writes_every_licensed_person_with_its_torso_box(tmp_path):
    """The default input set: three photos of people (none a training image), each with a torso box and a licence
    line, and flat-lays of held-out world garments in clearly different colours."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "scripts" / "make_realbench.py"), str(tmp_path), "--garments", "3"],
                       capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr
    persons, garments = RB.find_inputs(tmp_path)
    assert sorted(p.stem for p in persons) == ["astronaut", "camera", "hopper"] and len(garments) == 3
    for p in persons:
        side = json.loads(p.with_suffix(".json").read_text())
        x0, y0, x1, y1 = side["torso"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and side["source"]
        assert Image.open(p).mode == "RGB" and min(Image.open(p).size) >= 256
    from fashionchameleon.data.world_v2 import PERSON_PHOTOS, PHOTO_SOURCES

    assert not {"astronaut", "camera"} & set(PHOTO_SOURCES) and {"astronaut", "camera"} <= PERSON_PHOTOS
    def garment_colour(path):       # the flat-lay's mean colour off its near-white background
        px = np.asarray(Image.open(path).convert("RGB"), float).reshape(-1, 3)
        return px[px.min(1) < 240].mean(0)

    colours = [garment_colour(g) for g in garments]
    assert all(np.abs(a - b).sum() > 30 for i, a in enumerate(colours) for b in colours[i + 1:])


def test_compare_pairs_two_realbench_runs_case_by_case():
    from fashionchameleon.eval.compare import REALBENCH_METRICS, compare

    def run(offset, order):
        return {"cases": [{"person": p, "garment": g, "switch_to": "z.png",
                           **{m: i + offset for m in REALBENCH_METRICS}}
                          for i, (p, g) in enumerate(order)], "means": {}}

    cases = [("a.png", "g1.png"), ("a.png", "g2.png"), ("b.png", "g1.png")]
    a = run(0.0, cases)
    b = run(0.5, cases)
    b["cases"].reverse()                                   # pairing is by case, not by position
    for i, c in enumerate(b["cases"]):
        c.update({m: (len(cases) - 1 - i) + 0.5 for m in REALBENCH_METRICS})
    b["cases"].append({"person": "new.png", "garment": "g1.png", "switch_to": "z.png",
                       **{m: 99.0 for m in REALBENCH_METRICS}})
    out = compare(a, b)
    assert out["cases_realbench"] == 3
    assert out["realbench"]["grid_visibility"]["diff_ci"] == [0.5, 0.5]
    with pytest.raises(ValueError, match="share no case"):
        compare(a, {"cases": [b["cases"][-1]]})
