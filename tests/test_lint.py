"""ruff and mypy are part of the test command: a lint error fails CI like a test does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.exists() else shutil.which(name)
    assert found, f"{name} is not installed (it is in the dev extra)"
    return found


def test_ruff_clean() -> None:
    r = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_clean() -> None:
    r = subprocess.run(
        [_tool("mypy"), "core", "adapters", "daemon", "perf"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_imports_flow_daemon_to_adapters_to_core() -> None:
    """core imports neither adapters nor daemon; adapters do not import daemon."""
    import ast

    forbidden = {"core": ("adapters", "daemon"), "adapters": ("daemon",)}
    bad = []
    for pkg, others in forbidden.items():
        for path in sorted((REPO / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom)
                         and node.level == 0 else [])
                bad += [f"{path.relative_to(REPO)}: {n}" for n in names
                        if n.split(".")[0] in others]
    assert not bad, bad
