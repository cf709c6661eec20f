"""Every docs command marked `# ci` runs (CPU-sized), so the docs cannot rot unnoticed."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [(p.name, line.split("# ci")[0].strip()) for p in sorted((ROOT / "docs").glob("*.md"))
            for line in p.read_text().splitlines() if line.rstrip().endswith("# ci")]


def test_docs_have_runnable_commands():
    assert len(COMMANDS) >= 4
    assert {p.name for p in (ROOT / "docs").glob("*.md")} >= {"run-demo.md", "render-cli.md", "train-tiny.md",
                                                               "train-at-scale.md", "real-checkpoints.md",
                                                               "publish-space.md"}


@pytest.fixture(scope="module")
def page_dirs(tmp_path_factory):
    """One working folder per page: a page's commands run in order and may use each other's output."""
    return {p: tmp_path_factory.mktemp(p.replace(".", "_")) for p, _ in COMMANDS}


@pytest.mark.parametrize("page,command", COMMANDS, ids=[f"{p}:{c[:40]}" for p, c in COMMANDS])
def test_docs_command_runs(page, command, page_dirs):
    tmp_path = page_dirs[page]
    argv = shlex.split(re.sub(r"^\.venv/bin/python", "python", command))
    assert argv[0] == "python"
    argv[0] = sys.executable
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, f"{page}: {command}\n{r.stderr[-2000:]}"
