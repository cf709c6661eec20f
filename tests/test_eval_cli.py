"""The eval (SwitchBench) and bench CLIs run end to end and keep their JSON contracts (random micro model)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=600):
    r = subprocess.run([sys.executable, "-m", "fashionchameleon", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stdout   # exactly one line of JSON on stdout; logs go to stderr
    return json.loads(lines[0]), r.stderr


def test_eval_json_contract(micro_assets, tmp_path):
    model, codec = micro_assets
    out, err = run_cli("eval", "--checkpoint", str(model), "--codec", str(codec), "--seeds", "500000-500002",
                       "--variants", "full,naive,restart", "--out", str(tmp_path / "rep"), "--json",
                       "--long", "--long-frames", "120", "--threads", "1")
    for key in ("rows", "rows_free", "paired", "cases", "seeds", "checkpoint_sha", "drift_ratio", "identity_drift"):
        assert key in out
    assert out["cases"] == 3 and out["seeds"] == "500000-500002"
    assert set(out["rows"]) == {"full", "naive", "restart"} and set(out["rows_free"]) == {"full", "naive", "restart"}
    assert set(out["rows"]["full"]) >= {"garment_color_error", "texture_score", "leakage", "switch_latency_frames",
                                        "outside_psnr", "motion_discontinuity", "motion_amplitude_ratio", "flicker"}
    assert out["rows_free"]["full"]["outside_psnr"] is None          # not defined without alignment: null
    assert isinstance(out["rows"]["full"]["garment_color_error"], float)
    lo, hi = out["paired"]["naive"]["garment_color_error"]
    assert lo <= hi
    assert (tmp_path / "rep" / "report.md").exists() and (tmp_path / "rep" / "leakage_curves.png").exists()
    assert (tmp_path / "rep" / "long_runs.png").exists()
    assert "protocol (a)" in err
    for r in out["per_case"]["a"]["full"]:     # the window's worst jump includes the one at the switch
        assert r["motion_discontinuity_max"] >= r["motion_discontinuity"] - 1e-9
    # per-case results, paired by seed in `compare`
    assert [r["seed"] for r in out["per_case"]["a"]["full"]] == [500000, 500001, 500002]
    long = out["per_case"]["long"]
    assert len(long) == 3 and len(long[0]["motion_curve"]) == 2           # 120 frames = two 50-frame windows
    assert out["motion_min"] == min(min(r["motion_curve"]) for r in long)
    # ten switches in a row for every variant evaluated: means of the per-case drifts, full's is identity_drift
    ten = out["per_case"]["ten_switches"]
    assert set(out["identity_drift_by_variant"]) == set(ten) == {"full", "naive", "restart"}
    for v, rows in ten.items():
        assert [r["seed"] for r in rows] == [500000, 500001, 500002] and len(rows[0]["outside_curve"]) == 10
        for r in rows:
            assert abs(r["identity_drift"] - (r["outside_curve"][0] - r["outside_curve"][-1])) < 1e-9
        assert abs(out["identity_drift_by_variant"][v] - sum(r["identity_drift"] for r in rows) / 3) < 1e-9
    assert out["identity_drift"] == out["identity_drift_by_variant"]["full"]
    assert [r["identity_drift"] for r in long] == [r["identity_drift"] for r in ten["full"]]
    assert set(out["background_drift_by_variant"]) == set(ten) and set(out["ten_switch_paired"]) == {"naive", "restart"}
    assert (tmp_path / "rep" / "ten_switches.png").exists()
    (tmp_path / "a.json").write_text(json.dumps(out))
    cmp, err = run_cli("compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--json")
    assert cmp["cases_a"] == cmp["cases_b"] == cmp["cases_long"] == 3 and "95% interval" in err
    r = cmp["protocol_a"]["garment_color_error"]
    assert r["a"] == r["b"] == out["rows"]["full"]["garment_color_error"] and r["diff_ci"] == [0.0, 0.0]


def test_compare_pairs_cases_by_seed():
    from fashionchameleon.eval.compare import compare

    rows = lambda vals: [{"seed": s, "drift_ratio": v, "motion_min": 1.0, "identity_drift": None}  # noqa: E731
                         for s, v in vals]
    a = {"per_case": {"long": rows([(1, 1.0), (2, 2.0), (3, 3.0)])}}
    b = {"per_case": {"long": rows([(3, 4.0), (1, 2.0), (9, 100.0)])}}     # seed 9 has no partner; order differs
    out = compare(a, b)
    assert out["cases_long"] == 2
    assert out["long"]["drift_ratio"]["diff_ci"] == [1.0, 1.0]            # B - A is +1 on both paired seeds
    assert out["long"]["drift_ratio"]["a"] == 2.0 and out["long"]["drift_ratio"]["b"] == 3.0
    assert all(x != x for x in out["long"]["identity_drift"]["diff_ci"])    # all missing: NaN, not 0


def test_compare_pairs_any_row_of_one_run_with_any_row_of_another(tmp_path):
    """FILE:VARIANT picks the row on each side; protocol (a) and ten-switch rows are paired by seed."""
    from fashionchameleon.eval.cli import TEN_SWITCH_METRICS
    from fashionchameleon.eval.switchbench import METRICS

    def rows(base):
        return [{"seed": s, **{m: base + s for m in METRICS + TEN_SWITCH_METRICS}} for s in (1, 2, 3)]

    a = {"per_case": {"a": {"paper": rows(1.0), "full": rows(5.0)}, "ten_switches": {"paper": rows(2.0)}}}
    b = {"per_case": {"a": {"full": rows(3.0)}, "ten_switches": {"full": rows(0.5)}}}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    out, err = run_cli("compare", f"{tmp_path / 'a.json'}:paper", f"{tmp_path / 'b.json'}:full", "--json")
    assert out["variant"] == "paper vs full" and out["cases_a"] == out["cases_ten_switches"] == 3
    assert out["protocol_a"]["garment_color_error"]["diff_ci"] == [2.0, 2.0]        # 3 - 1 on every seed
    assert out["ten_switches"]["identity_drift"]["diff_ci"] == [-1.5, -1.5]        # 0.5 - 2
    assert "ten switches, 3 paired cases" in err
    same, _ = run_cli("compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json")   # --variant full
    assert same["protocol_a"]["garment_color_error"]["diff_ci"] == [-2.0, -2.0] and "ten_switches" not in same
    r = subprocess.run([sys.executable, "-m", "fashionchameleon", "compare", f"{tmp_path / 'a.json'}:nope",
                        str(tmp_path / "b.json")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no results for variant 'nope vs full'" in r.stderr


def test_bench_json_contract(micro_assets):
    model, codec = micro_assets
    out, _ = run_cli("bench", "--config", "micro", "--checkpoint", str(model), "--codec-folder", str(codec), "--blocks", "40", "--switch-every", "7",
                     "--threads", "1", "--json")
    for key in ("fps", "first_chunk_s", "late_early_chunk_ratio", "memory_growth_ratio", "switch_overhead_ratio",
                "switch_latency_blocks", "teacher_speedup", "codec_decode_fps", "codec_encode_fps", "config", "device",
                "resolution", "steps", "block_frames", "threads", "checkpoint_sha"):
        assert key in out, key
    assert out["config"] == "micro" and out["resolution"] == "32x32" and out["steps"] == 4
    assert out["fps"] > 0 and out["switch_latency_blocks"] is not None and out["teacher_speedup"] > 1
    assert out["memory_growth_second_half"] > 0 and set(out["rss_mb"]) == {"20", "40"}   # block 20 is also the half
    assert out["switch_block_ratio"] > 0 and out["switch_guidance"] == 1.0
    guided, _ = run_cli("bench", "--config", "micro", "--checkpoint", str(model), "--codec-folder", str(codec),
                        "--blocks", "32", "--switch-every", "7", "--no-teacher", "--switch-guidance", "3", "--threads", "1",
                        "--json")
    assert guided["switch_guidance"] == 3.0 and guided["switch_block_ratio"] > 0 and guided["switches"] >= 3
    r = subprocess.run([sys.executable, "-m", "fashionchameleon", "bench", "--config", "micro", "--checkpoint", str(model),
                        "--codec-folder", str(codec), "--switch-guidance", "-1"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "switch_guidance must be" in r.stderr
    r = subprocess.run([sys.executable, "-m", "fashionchameleon", "bench", "--config", "micro", "--checkpoint", str(model),
                        "--blocks", "12"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "at least 30 blocks" in r.stderr
    codec_only, _ = run_cli("bench", "--config", "micro", "--checkpoint", str(model), "--codec-folder", str(codec),
                            "--codec", "--json", "--threads", "1")
    assert codec_only["codec_decode_fps"] > 0 and "fps" not in codec_only


def test_switch_policy_overrides_reach_full(micro_assets):
    """--reference-mix 1 --reanchor-after 0 --keep-recent 0 turn `full` into the paper's recipe: the same rows,
    recorded."""
    model, codec = micro_assets
    out, _ = run_cli("eval", "--checkpoint", str(model), "--codec", str(codec), "--seeds", "500000-500000",
                     "--variants", "full,paper", "--protocols", "a", "--reference-mix", "1", "--keep-recent", "0",
                     "--reanchor-after", "0",
                     "--json", "--threads", "1")
    assert out["switch_policy"] == {"reference_mix": 1.0, "reanchor_after": 0, "reanchor_mix": 0.0,
                                    "reference_gate": 0.0, "switch_guidance": 1.0, "switch_guidance_blocks": 1,
                                    "switch_guidance_steps": 0}
    assert out["reference_snap"] == 0.0             # the checkpoint's own (not a switch setting: every variant's)
    assert out["deblock"] == 0.0
    assert out["rows"]["full"] == out["rows"]["paper"]
    r = subprocess.run([sys.executable, "-m", "fashionchameleon", "eval", "--reference-mix", "1.5"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--reference-mix out of range" in r.stderr


def test_stream_overrides_put_in_only_what_was_given():
    """The one place SwitchBench and RealBench read the switch flags: values given replace the checkpoint's,
    the rest stay; out-of-range values are refused."""
    import argparse

    from fashionchameleon.config import StreamConfig
    from fashionchameleon.eval.cli import add_arguments, stream_overrides

    p = argparse.ArgumentParser()
    add_arguments(p)
    base = StreamConfig(keep_recent=2, reference_mix=0.75)
    assert stream_overrides(p.parse_args([]), base) == base
    got = stream_overrides(p.parse_args(["--reference-mix", "0.5", "--withdraw-sink", "no", "--keep-recent", "0"]), base)
    assert (got.reference_mix, got.withdraw_sink, got.keep_recent, got.reanchor_after) == (0.5, False, 0, 1)
    assert stream_overrides(p.parse_args(["--reference-snap", "1.5"]), base).reference_snap == 1.5
    assert stream_overrides(p.parse_args(["--deblock", "0.5"]), base).deblock == 0.5
    for bad in (["--keep-recent", "-1"], ["--reanchor-mix", "nan"], ["--reference-gate", "-0.5"],
                ["--reference-snap", "inf"], ["--deblock", "-0.1"]):
        with pytest.raises(ValueError):
            stream_overrides(p.parse_args(bad), base)
