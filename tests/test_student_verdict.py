"""scripts/student_v2_verdict.py's selection rule, on eval and compare files written in advance (no model runs:
the script reuses a JSON file that exists)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "student_v2_verdict.py"


@pytest.fixture(scope="module")
def verdict():
    spec = importlib.util.spec_from_file_location("student_v2_verdict", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_lineage(out: Path, rows: dict, compares: dict) -> None:
    """rows: stage -> (colour, outside PSNR); compares: 'a-b' -> {metric: diff_ci}. The stages' checkpoint
    folders (run -x) get a config.json under out/pilot, for the script to find which stages exist."""
    for stage, (colour, psnr) in rows.items():
        (out / "pilot" / f"{stage}-tiny-v2-a-x").mkdir(parents=True, exist_ok=True)
        (out / "pilot" / f"{stage}-tiny-v2-a-x" / "config.json").write_text("{}")
        (out / f"tuning-{stage}.json").write_text(json.dumps(
            {"rows": {"full": {"garment_color_error": colour, "outside_psnr": psnr}}}))
    for pair, metrics in compares.items():
        (out / f"tuning-{pair}.json").write_text(json.dumps(
            {"protocol_a": {m: {"a": 0, "b": 0, "diff_ci": ci} for m, ci in metrics.items()}}))


def test_lowest_colour_among_those_whose_outside_psnr_holds(verdict, tmp_path):
    # DMD has the lowest colour but loses outside PSNR significantly to forcing (the best): not eligible
    write_lineage(tmp_path, {"forcing": (24.0, 23.0), "student": (20.0, 21.0), "average": (22.0, 22.8)},
                  {"forcing-student": {"outside_psnr": [-3.0, -1.0]},
                   "forcing-average": {"outside_psnr": [-0.9, 0.4]}})
    chosen, summary = verdict.select(tmp_path / "pilot", "-x", tmp_path)
    assert chosen == "average"
    assert summary["student"]["eligible"] is False and summary["average"]["eligible"] is True


def test_the_average_wins_a_tie_but_not_a_significant_loss(verdict, tmp_path):
    rows = {"forcing": (21.0, 23.0), "student": (24.0, 22.9), "average": (22.0, 22.9)}
    psnr_holds = {"forcing-student": {"outside_psnr": [-0.5, 0.3]}, "forcing-average": {"outside_psnr": [-0.5, 0.3]}}
    write_lineage(tmp_path, rows, {**psnr_holds, "forcing-average": {"outside_psnr": [-0.5, 0.3],
                                                                     "garment_color_error": [-0.2, 2.0]}})
    assert verdict.select(tmp_path / "pilot", "-x", tmp_path)[0] == "average"
    write_lineage(tmp_path, rows, {**psnr_holds, "forcing-average": {"outside_psnr": [-0.5, 0.3],
                                                                     "garment_color_error": [0.3, 2.0]}})
    assert verdict.select(tmp_path / "pilot", "-x", tmp_path)[0] == "forcing"


def test_a_lineage_that_stopped_at_forcing_chooses_forcing(verdict, tmp_path):
    write_lineage(tmp_path, {"forcing": (24.0, 23.0)}, {})
    chosen, summary = verdict.select(tmp_path / "pilot", "-x", tmp_path)
    assert chosen == "forcing" and list(summary) == ["forcing"]
    with pytest.raises(SystemExit, match="no stage"):
        verdict.select(tmp_path / "pilot", "-missing", tmp_path)
