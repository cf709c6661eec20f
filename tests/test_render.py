"""The render CLI: a valid H.264 mp4 with the requested frames; bad input -> one line, exit 2, no file."""

import subprocess
import sys
from pathlib import Path

import av
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from fashionchameleon.data.world import make_sample

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("render_inputs")
    s, t = make_sample(21, num_frames=1, size=96), make_sample(22, num_frames=1, size=96)
    Image.fromarray(s.reference).convert("RGBA").save(d / "person.png")                # RGBA input
    Image.fromarray(s.garment_image).convert("L").save(d / "garment_gray.png")         # grayscale input
    Image.fromarray(t.garment_image).save(d / "other.jpg")
    (d / "notes.png").write_text("this is not an image")
    data = (d / "other.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])
    Image.new("1", (9000, 9000)).save(d / "bomb.png")                                   # 81 Mpx, tiny file
    return d


def render(tmp_path, micro_assets, *args):
    model, codec = micro_assets
    cmd = [sys.executable, "-m", "fashionchameleon", "render", "--checkpoint", str(model), "--codec", str(codec), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_render_writes_h264_with_requested_frames(tmp_path, micro_assets, inputs):
    out = tmp_path / "out.mp4"
    r = render(tmp_path, micro_assets, "--person", str(inputs / "person.png"), "--garment",
               str(inputs / "garment_gray.png"), "--switch", f"20:{inputs / 'other.jpg'}", "--prompt", "wave",
               "--frames", "50", "--seed", "3", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "applied at frame 21" in r.stderr
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert "AI-generated" in c.metadata.get("comment", "")
    assert len(frames) == 50 and frames[0].shape == (32, 32, 3)
    assert not list(tmp_path.glob(".*"))  # no partial file left


@pytest.mark.parametrize("case,needle", [
    ("missing", "no such file"),
    ("not_image", "not an image"),
    ("truncated", "truncated"),
    ("bomb", "too large"),
    ("switch_outside", "outside the video"),
    ("switch_syntax", "FRAME:IMAGE"),
    ("bad_prompt", "prompt"),
    ("bad_deblock", "--deblock"),
    ("ckpt_missing_tensor", "missing"),
    ("ckpt_bad_shape", "shape"),
    ("ckpt_no_folder", "no such folder"),
])
def test_render_bad_input(tmp_path, micro_assets, inputs, case, needle):
    person, garment = str(inputs / "person.png"), str(inputs / "other.jpg")
    extra = []
    model, codec = micro_assets
    if case == "missing":
        person = str(inputs / "nope.png")
    elif case == "not_image":
        garment = str(inputs / "notes.png")
    elif case == "truncated":
        garment = str(inputs / "truncated.jpg")
    elif case == "bomb":
        person = str(inputs / "bomb.png")
    elif case == "switch_outside":
        extra = ["--switch", f"80:{garment}"]
    elif case == "switch_syntax":
        extra = ["--switch", "soon"]
    elif case == "bad_prompt":
        extra = ["--prompt", "moonwalk"]
    elif case == "bad_deblock":
        extra = ["--deblock", "-1"]
    elif case.startswith("ckpt"):
        broken = tmp_path / "broken"
        broken.mkdir()
        if case != "ckpt_no_folder":
            (broken / "config.json").write_text((Path(model) / "config.json").read_text())
            state = load_file(str(Path(model) / "model.safetensors"))
            if case == "ckpt_missing_tensor":
                state.pop("blocks.0.attn1.to_q.weight")
            else:
                state["blocks.0.ffn.net.2.weight"] = state["blocks.0.ffn.net.2.weight"][:, :5].contiguous()
            save_file(state, str(broken / "model.safetensors"))
        else:
            broken = tmp_path / "does-not-exist"
        extra = ["--checkpoint", str(broken)]
    out = tmp_path / "out.mp4"
    r = render(tmp_path, micro_assets, "--person", person, "--garment", garment, "--frames", "40", *extra, "-o", str(out))
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr
    assert not out.exists() and not list(tmp_path.glob("*.mp4"))
