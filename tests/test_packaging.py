"""The files a fresh machine and a Space read: pins, system packages, the README's two commands, CI."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_torch_is_pinned_exactly_and_flash_attn_is_optional():
    reqs = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", reqs, re.M), "torch must be pinned to the release on local disk"
    assert "flash" not in reqs
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("flash-attn") for d in meta["optional-dependencies"]["gpu"])
    assert {"pytest", "diffusers", "playwright"} <= {re.split(r"[<>=\[]", d)[0] for d in meta["optional-dependencies"]["dev"]}
    assert meta["scripts"]["fashionchameleon"] == "fashionchameleon.__main__:main"


def test_space_files():
    assert "ffmpeg" in (ROOT / "packages.txt").read_text().split()
    readme = (ROOT / "README.md").read_text()
    front = readme.split("---")[1]
    for key in ("sdk: gradio", "app_file: app.py", "sdk_version:"):
        assert key in front


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    after_front = readme.split("---", 2)[2]
    commands = [ln.strip() for ln in after_front.splitlines() if ln.startswith("    ")][:2]
    assert commands[0] == "bash scripts/setup.sh && .venv/bin/python app.py"
    assert commands[1] == "bash scripts/setup.sh --dev && .venv/bin/python -m pytest -q"
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
