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


def test_imports_run_one_way():
    """config, media <- model <- data, streaming <- training <- eval <- app, bench, CLI: a layer never imports
    one above it or beside it (lazy imports inside functions included)."""
    import ast

    layer = {"config": 0, "media": 0, "model": 1, "data": 2, "streaming": 2, "training": 3, "eval": 4, "app": 5,
             "bench": 5, "gpu_check": 5, "__main__": 6, "__init__": 0}
    root = Path(__file__).resolve().parents[1] / "fashionchameleon"
    bad = []
    for f in root.rglob("*.py"):
        parts = f.relative_to(root).parts
        me = parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(parts[:-1])[: len(parts) - node.level] if node.level > 1 else list(parts[:-1])
                target = (base + (node.module or "").split("."))[0].removesuffix(".py")
                if target and target != me and layer.get(target, -1) >= layer[me]:
                    bad.append(f"{f.relative_to(root)} imports {node.module} ({me} -> {target})")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fashionchameleon."):
                target = node.module.split(".")[1]
                if target != me and layer.get(target, -1) >= layer[me]:
                    bad.append(f"{f.relative_to(root)} imports {node.module}")
    assert layer.keys() >= {p.name.removesuffix(".py") for p in root.iterdir() if p.suffix == ".py" or p.is_dir()
                            if p.name != "__pycache__"}, "a new top-level module needs a layer here"
    assert not bad, "\n".join(bad)
