"""The dependency rules of docs/architecture.md hold, and the tool that checks them in
`make lint` (import-linter, contracts in pyproject.toml) catches a forbidden import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _tree(tmp_path: Path) -> Path:
    """A copy of the sources and the contracts, to break without touching the checkout."""
    for package in ("feedback", "training", "api", "config"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_every_contract(tmp_path):
    result = _lint(_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("feedback/views.py", "from training import services", "feedback never imports"),
        ("training/ml/tiny.py", "import django", "training.ml imports neither"),
        ("training/ml/tiny.py", "from training import selectors", "training.ml imports neither"),
        ("api/views.py", "import torch", "web code imports no ML library"),
        ("training/services/runs.py", "import transformers", "web code imports no ML library"),
    ],
)
def test_a_forbidden_import_breaks_the_lint(tmp_path, module, line, broken):
    tree = _tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tree)
    assert result.returncode == 1
    assert "Contracts: 2 kept, 1 broken." in result.stdout
    assert broken in result.stdout.split("BROKEN")[0].rsplit("KEPT", 1)[-1]
