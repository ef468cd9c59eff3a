"""training/ml must run on a GPU worker without Django: importing it never imports Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_training_ml_imports_without_django() -> None:
    code = (
        "import training.ml, training.ml.errors, training.ml.data, training.ml.tiny, "
        "training.ml.loading, training.ml.generate, training.ml.reward, training.ml.evaluate, "
        "training.ml.trl_stage, training.ml.sft, training.ml.dpo, training.ml.job\n"
        "import sys\n"
        "leaked = sorted(m for m in sys.modules if m.startswith('django'))\n"
        "assert not leaked, leaked\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )

    assert completed.returncode == 0, completed.stderr


def test_importing_training_ml_stays_cheap() -> None:
    code = (
        "import sys, training.ml, training.ml.trl_stage, training.ml.sft, training.ml.dpo, "
        "training.ml.job\n"
        "heavy = sorted({'torch', 'transformers', 'trl', 'peft', 'datasets'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )

    assert completed.returncode == 0, completed.stderr
