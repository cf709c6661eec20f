"""scripts/student_v2_verdict.py's selection rule, on eval and compare files written in advance (no model runs:
the script reuses an eval file holding the checkpoint's weights and a compare file of unchanged inputs), and that
reuse rule itself."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "student_v2_verdict.py"


@pytest.fixture
def verdict(monkeypatch):
    spec = importlib.util.spec_from_file_location("student_v2_verdict", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the fake checkpoint folders below have no weights: each one's "hash" is its folder name
    monkeypatch.setattr(module, "checkpoint_sha", lambda checkpoint: Path(checkpoint).name)
    return module


def write_lineage(verdict_module, out: Path, rows: dict, compares: dict, preset: str = "tiny-v2-a") -> None:
    """rows: stage -> (colour, outside PSNR); compares: 'a-b' -> {metric: diff_ci}. The stages' checkpoint
    folders (run -x) get a config.json under out/pilot, for the script to find which stages exist."""
    for stage, (colour, psnr) in rows.items():
        (out / "pilot" / f"{stage}-{preset}-x").mkdir(parents=True, exist_ok=True)
        (out / "pilot" / f"{stage}-{preset}-x" / "config.json").write_text("{}")
        (out / f"tuning-{stage}.json").write_text(json.dumps(
            {"rows": {"full": {"garment_color_error": colour, "outside_psnr": psnr}},
             "checkpoint_sha": f"{stage}-{preset}-x"}))
    for pair, metrics in compares.items():
        a, b = pair.split("-")
        (out / f"tuning-{pair}.json").write_text(json.dumps(
            {"protocol_a": {m: {"a": 0, "b": 0, "diff_ci": ci} for m, ci in metrics.items()},
             "inputs_sha256": verdict_module.inputs_sha(out / f"tuning-{a}.json", out / f"tuning-{b}.json")}))


def test_lowest_colour_among_those_whose_outside_psnr_holds(verdict, tmp_path):
    # DMD has the lowest colour but loses outside PSNR significantly to forcing (the best): not eligible
    write_lineage(verdict, tmp_path, {"forcing": (24.0, 23.0), "student": (20.0, 21.0), "average": (22.0, 22.8)},
                  {"forcing-student": {"outside_psnr": [-3.0, -1.0]},
                   "forcing-average": {"outside_psnr": [-0.9, 0.4]}})
    chosen, summary = verdict.select(tmp_path / "pilot", "-x", tmp_path)
    assert chosen == "average"
    assert summary["student"]["eligible"] is False and summary["average"]["eligible"] is True


def test_the_average_wins_a_tie_but_not_a_significant_loss(verdict, tmp_path):
    rows = {"forcing": (21.0, 23.0), "student": (24.0, 22.9), "average": (22.0, 22.9)}
    psnr_holds = {"forcing-student": {"outside_psnr": [-0.5, 0.3]}, "forcing-average": {"outside_psnr": [-0.5, 0.3]}}
    write_lineage(verdict, tmp_path, rows, {**psnr_holds, "forcing-average": {"outside_psnr": [-0.5, 0.3],
                                                                     "garment_color_error": [-0.2, 2.0]}})
    assert verdict.select(tmp_path / "pilot", "-x", tmp_path)[0] == "average"
    write_lineage(verdict, tmp_path, rows, {**psnr_holds, "forcing-average": {"outside_psnr": [-0.5, 0.3],
                                                                     "garment_color_error": [0.3, 2.0]}})
    assert verdict.select(tmp_path / "pilot", "-x", tmp_path)[0] == "forcing"


def test_a_lineage_that_stopped_at_forcing_chooses_forcing(verdict, tmp_path):
    write_lineage(verdict, tmp_path, {"forcing": (24.0, 23.0)}, {})
    chosen, summary = verdict.select(tmp_path / "pilot", "-x", tmp_path)
    assert chosen == "forcing" and list(summary) == ["forcing"]
    with pytest.raises(SystemExit, match="no stage"):
        verdict.select(tmp_path / "pilot", "-missing", tmp_path)


def test_a_lineage_of_another_preset_is_found_by_its_name(verdict, tmp_path):
    write_lineage(verdict, tmp_path, {"forcing": (24.0, 23.0)}, {}, preset="tiny-v2-ref")
    with pytest.raises(SystemExit, match="no stage"):
        verdict.select(tmp_path / "pilot", "-x", tmp_path)
    assert verdict.select(tmp_path / "pilot", "-x", tmp_path, "tiny-v2-ref")[0] == "forcing"


def test_an_eval_file_is_reused_only_for_the_same_weights(verdict, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(verdict, "run_eval", lambda args: calls.append(args) or json.dumps(
        {"checkpoint_sha": Path(args[1]).name, "rows": {"full": {"garment_color_error": 1.0}}}))
    out = tmp_path / "world2.json"
    out.write_text(json.dumps({"checkpoint_sha": "forcing-x", "rows": {"full": {"garment_color_error": 9.0}}}))
    # the file holds forcing-x's result: reused for forcing-x, evaluated again for a re-exported student-x
    assert verdict.switchbench(tmp_path / "forcing-x", "1-2", out)["rows"]["full"]["garment_color_error"] == 9.0
    assert calls == []
    assert verdict.switchbench(tmp_path / "student-x", "1-2", out)["rows"]["full"]["garment_color_error"] == 1.0
    assert len(calls) == 1 and calls[0][:2] == ["--checkpoint", str(tmp_path / "student-x")]
    assert json.loads(out.read_text())["checkpoint_sha"] == "student-x"


def test_a_compare_file_is_redone_when_an_input_changed(verdict, tmp_path, monkeypatch):
    monkeypatch.setattr(verdict, "compare", lambda a, b: {"protocol_a": {"m": {"diff_ci": [b["v"] - a["v"]] * 2}}})
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text('{"v": 1}')
    b.write_text('{"v": 3}')
    assert verdict.interval(verdict.compared(a, b, out), "m") == (2.0, 2.0)
    b.write_text('{"v": 6}')
    assert verdict.interval(verdict.compared(a, b, out), "m") == (5.0, 5.0)
    assert verdict.interval(json.loads(out.read_text()), "m") == (5.0, 5.0)


def test_a_new_student_must_beat_the_shipped_default(verdict, tmp_path, monkeypatch):
    """The replacement rule (session 19): better on world v2 in colour or outside PSNR and worse in neither; not
    worse on world 1 or on RealBench. Intervals here are exact differences (b - a) of one number per metric."""
    metrics = ("garment_color_error", "outside_psnr", "fidelity_ratio", "grid_visibility", "landing_gain")
    def compare(a, b):      # SwitchBench files compare under protocol_a, RealBench ones under realbench
        diffs = {m: {"a": a[m], "b": b[m], "diff_ci": [b[m] - a[m]] * 2} for m in metrics}
        return {"protocol_a": diffs, "realbench": diffs}

    monkeypatch.setattr(verdict, "compare", compare)
    monkeypatch.setattr(verdict, "ROOT", tmp_path)
    base = dict(zip(metrics, (20.0, 22.0, 0.9, 2.5, 10.0)))
    for name, path in verdict.DEFAULT_FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(json.dumps(base))

    def checks(**candidate):
        out = tmp_path / "held-out"
        out.mkdir(exist_ok=True)
        for name in verdict.DEFAULT_FILES:
            (out / f"{name}.json").write_text(json.dumps({**base, **candidate.get(name, {})}))
        return verdict.against_default(out)[0]

    assert all(checks(world2={"garment_color_error": 18.0}).values())                   # better colour
    assert all(checks(world2={"outside_psnr": 23.0}).values())                          # better scene
    assert not checks()["world2_better_than_default"]                                   # only as good
    assert not checks(world2={"garment_color_error": 18.0, "outside_psnr": 21.0})["world2_better_than_default"]
    worse_grid = checks(world2={"garment_color_error": 18.0}, realbench={"grid_visibility": 3.0})
    assert not worse_grid["realbench_fidelity_and_grid_not_worse_than_default"]
    assert not checks(world2={"garment_color_error": 18.0}, world1={"garment_color_error": 21.0})[
        "world1_colour_not_worse_than_default"]
