"""`average`: weight interpolation of two checkpoints of one run."""

import json

import pytest
import torch
from conftest import randomize_

from fashionchameleon.__main__ import main
from fashionchameleon.config import get_preset
from fashionchameleon.model.dit import WanDiT
from fashionchameleon.model.loading import CheckpointError, load_checkpoint, save_checkpoint
from fashionchameleon.training.average import average_checkpoints

META = {"mode": "block-causal", "codec_sha256": "c" * 64, "train_seeds": "0-7"}


def _checkpoint(folder, seed, preset="micro", **meta):
    model = randomize_(WanDiT(get_preset(preset).model), scale=0.2, seed=seed)
    save_checkpoint(folder, model, get_preset(preset), metadata={**META, **meta}, dtype=torch.float16)   # as trained


def test_average_is_the_weighted_sum_and_records_its_sources(tmp_path):
    _checkpoint(tmp_path / "a", 1, stage="forcing", steps=200)
    _checkpoint(tmp_path / "b", 2, stage="dmd", steps=100)
    # as loaded (the tiny family is stored in fp16, and so is the average)
    sa, sb = (load_checkpoint(tmp_path / n)[0].state_dict() for n in ("a", "b"))
    average_checkpoints(tmp_path / "a", tmp_path / "b", 0.25, tmp_path / "ab", {"reference_mix": 0.5})
    model, preset, meta = load_checkpoint(tmp_path / "ab")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, (0.75 * sa[k] + 0.25 * sb[k]).half().float(), atol=1e-3, rtol=1e-3)
        assert not torch.equal(v, sa[k]) and not torch.equal(v, sb[k])
    assert preset.stream.reference_mix == 0.5 and preset.model == get_preset("micro").model
    assert meta["stage"] == "average" and meta["mode"] == "block-causal" and meta["codec_sha256"] == "c" * 64
    assert meta["average"]["alpha"] == 0.25
    assert (meta["average"]["a"]["stage"], meta["average"]["b"]["steps"]) == ("forcing", 100)
    # the ends are the inputs themselves
    average_checkpoints(tmp_path / "a", tmp_path / "b", 1.0, tmp_path / "b-only")
    for k, v in load_checkpoint(tmp_path / "b-only")[0].state_dict().items():
        assert torch.equal(v, sb[k])


def test_average_refuses_what_cannot_be_averaged(tmp_path):
    _checkpoint(tmp_path / "a", 1)
    _checkpoint(tmp_path / "other-codec", 2, codec_sha256="d" * 64)
    _checkpoint(tmp_path / "teacher", 3, mode="bidirectional")
    _checkpoint(tmp_path / "other-net", 4, preset="micro-v2")
    for other, what in [("other-codec", "codec_sha256"), ("teacher", "mode"), ("other-net", "different networks")]:
        with pytest.raises(CheckpointError, match=what):
            average_checkpoints(tmp_path / "a", tmp_path / other, 0.5, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="alpha"):
        average_checkpoints(tmp_path / "a", tmp_path / "a", 1.5, tmp_path / "out")


def test_average_cli(tmp_path, capsys):
    _checkpoint(tmp_path / "a", 1)
    _checkpoint(tmp_path / "b", 2)
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0.5", "--out",
                 str(tmp_path / "ab")]) == 0
    assert json.loads((tmp_path / "ab" / "config.json").read_text())["average"]["alpha"] == 0.5
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "2", "--out",
                 str(tmp_path / "x")]) == 2
    assert "alpha must be in [0, 1]" in capsys.readouterr().err
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0.5", "--out",
                 str(tmp_path / "a")]) == 2
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "nope"), "--alpha", "0.5", "--out",
                 str(tmp_path / "y")]) == 2
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0.5", "--reference-mix", "1.5",
                 "--out", str(tmp_path / "z")]) == 2
    assert "reference_mix must be in [0, 1]" in capsys.readouterr().err and not (tmp_path / "z").exists()
