"""`bank`: real clips in the official layout (CSV + caseN/slice_XXXX.mp4 with _src/_cloth siblings) -> the
trainer's latent bank; bad rows skipped with one line each; sharded and resumable."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionchameleon.config import get_preset
from fashionchameleon.data.bank import BankJob, LatentBank, build_bank, pick_caption, read_clip, vocab_prompt
from fashionchameleon.media import fit_person
from fashionchameleon.media import write_mp4

ROOT = Path(__file__).resolve().parents[1]
PROMPT = {"cn_long": ["一位女性走向镜头。", "室内。"], "cn_short": ["女子挥手。", "室内。"],
          "en_long": ["A woman walks toward the camera, smiling.", "Indoor setting."],
          "en_short": ["A woman waves at the camera.", "Indoor; a green sweater."]}


def clip(frames: int, w: int = 36, h: int = 64, seed: int = 0) -> np.ndarray:
    """Frames whose brightness encodes their index (so resampling can be checked after H.264)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 40, (h, w, 3)).astype(np.uint8)
    return np.stack([np.clip(base + 3 * i, 0, 255).astype(np.uint8) for i in range(frames)])


def official_layout(root: Path) -> Path:
    """assets/examples/caseN/slice_XXXX.{mp4,_src.png,_cloth.png} and meta_train.csv, 4 bad rows of 6."""
    ex = root / "assets" / "examples"
    rows = []

    def case(n: int, frames: int = 60, src: bool = True, cloth: bool = True, prompt=None, video_bytes=None):
        d = ex / f"case{n}"
        d.mkdir(parents=True)
        stem = d / f"slice_{n:04d}"
        if video_bytes is None:
            write_mp4(clip(frames, seed=n), stem.with_suffix(".mp4"), fps=25)
        else:
            stem.with_suffix(".mp4").write_bytes(video_bytes)
        if src:
            Image.fromarray(clip(1, 40, 70, seed=10 + n)[0]).save(f"{stem}_src.png")
        if cloth:
            Image.fromarray(np.full((50, 30, 3), 90, np.uint8)).save(f"{stem}_cloth.png")
        rows.append([f"./assets/examples/case{n}/slice_{n:04d}.mp4",
                     json.dumps(PROMPT, ensure_ascii=False) if prompt is None else prompt, "720", "1280"])

    case(1)
    case(2)
    case(3, cloth=False)                      # missing sibling
    case(4, video_bytes=b"not a video at all")  # unreadable video
    case(5, prompt="{not json")               # bad prompt JSON
    case(6, frames=10)                        # too short for 33 frames at 16 fps
    import csv

    meta = ex / "meta_train.csv"
    with open(meta, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video", "prompt", "width", "height"])
        w.writerows(rows)
    return meta


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    return root, official_layout(root)


def test_bank_cli_contract_on_the_official_layout(layout, tmp_path):
    root, meta = layout
    out = tmp_path / "bank.safetensors"
    # run from the layout's root: the CSV's ./assets/... paths are relative to the current directory
    proc = subprocess.run([sys.executable, "-m", "fashionchameleon", "bank", "--csv", str(meta), "--out", str(out),
                           "--json"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == {"items": 2, "skipped": 4, "video_shape": [2, 16, 9, 16, 16], "prompts": 2,
                       "reasons": {"bad_prompt": 1, "missing_sibling": 1, "too_short": 1, "unreadable_video": 1}}
    skip_lines = [line for line in proc.stderr.splitlines() if "skip row" in line]
    assert len(skip_lines) == 4
    assert any("slice_0003_cloth.png" in line for line in skip_lines)

    bank = LatentBank.load(out)
    assert bank.video.shape == (2, 16, 9, 16, 16) and bank.reference.shape == (2, 16, 1, 16, 16)
    assert bank.seeds.tolist() == [0, 1]                         # CSV row numbers
    assert bank.prompts == ["wave", "wave"]                      # tiny knows prompt names, not captions
    assert out.with_suffix(".captions.txt").read_text().split("\n")[0] == "A woman waves at the camera. Indoor; a green sweater."
    assert not out.with_name(out.name + ".parts").exists()
    # the trainer reads it: one teacher step on `tiny`
    from fashionchameleon.training import trainer as trainer_mod

    import argparse

    p = argparse.ArgumentParser()
    trainer_mod.add_arguments(p)
    args = p.parse_args(["--stage", "teacher", "--bank", str(out), "--batch", "2", "--run-dir", str(tmp_path / "run"),
                         "--threads", "1", "--codec", str(tmp_path / "none")])
    tr = trainer_mod.Trainer(args, LatentBank.load(out))
    logs = tr.step(0)
    assert np.isfinite(logs["loss"])


def test_bank_resumes_from_its_shards(layout, tmp_path):
    root, meta = layout
    codec = str(ROOT / "assets" / "checkpoints" / "codec")
    lines: list[str] = []
    job = BankJob(csv=meta, out=tmp_path / "b.safetensors", root=root, config="tiny", codec=codec, shard_size=2)
    partial = build_bank(job, progress=False, log=lines.append, _max_shards=1)
    assert partial.get("complete") is False and partial["items"] == 2 and not job.out.exists()
    first = job.out.with_name("b.safetensors.parts") / "shard-00000.safetensors"
    stamp = first.stat().st_mtime_ns
    os.utime(first, ns=(stamp, stamp))
    full = build_bank(job, progress=False, log=lines.append)
    assert full["items"] == 2 and full["skipped"] == 4 and len(lines) == 4   # shard 0 was not redone
    fresh = build_bank(BankJob(csv=meta, out=tmp_path / "c.safetensors", root=root, codec=codec, shard_size=6),
                       progress=False, log=lambda m: None)
    a, b = LatentBank.load(job.out), LatentBank.load(tmp_path / "c.safetensors")
    assert fresh == full
    assert torch.equal(a.video, b.video) and torch.equal(a.garment, b.garment) and a.prompts == b.prompts


def test_clips_are_resampled_to_the_preset_rate_and_fitted(tmp_path):
    src = clip(50)
    write_mp4(src, tmp_path / "c.mp4", fps=25)
    frames = read_clip(tmp_path / "c.mp4", fps=16, frames=29)
    # brightness encodes the source index: target frame i is the source frame nearest i / 16 s (a tie
    # goes to the earlier frame); H.264 moves the brightness by up to ~0.6 of a step, a neighbour is 1 away
    expected = np.ceil(np.arange(29) * 25 / 16 - 0.5)
    found = np.array([(f.astype(float) - src[0]).mean() / 3 for f in frames])
    assert np.abs(found - expected).max() < 0.75
    with pytest.raises(ValueError, match="need 40"):
        read_clip(tmp_path / "c.mp4", fps=16, frames=40)        # 2 s of video make 32 frames at 16 fps
    # fitted exactly like the reference image: cover, then centre-crop to the preset's (width, height)
    fitted = fit_person(frames[0], get_preset("wan2.2-ti2v-5b").resolution)
    assert fitted.shape == (1280, 704, 3)


def test_captions_and_prompt_names():
    cell = json.dumps(PROMPT)
    assert pick_caption(cell) == "A woman waves at the camera. Indoor; a green sweater."
    assert pick_caption(cell, "en_long").startswith("A woman walks")
    assert pick_caption(json.dumps({"cn_short": ["女子挥手。"]}), "en_short") == "女子挥手。"   # official fallback
    for bad, key in (("{", "en_short"), ("[1, 2]", "en_short"), (json.dumps({"en_long": []}), "en_long"),
                     (json.dumps({"en_short": [3]}), "en_short")):
        with pytest.raises(ValueError):
            pick_caption(bad, key)
    vocab = get_preset("tiny").model.prompt_vocab
    assert vocab_prompt("A woman walks toward the camera", vocab) == "walk"
    assert vocab_prompt("She raises both arms", vocab) == "arms_up"
