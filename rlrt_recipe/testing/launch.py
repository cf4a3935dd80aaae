"""Launch scripts/run_cpu_demo.sh (verl's real main_ppo on CPU) from tests, benchmarks and scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cpu_demo(
    experiment_dir: str | os.PathLike,
    model_dir: str,
    data_dir: str,
    *,
    steps: int,
    overrides: Sequence[str] = (),
    timeout: int = 900,
) -> str:
    """Run ``steps`` training steps with extra Hydra ``overrides``; return the combined output.

    Raises ``RuntimeError`` with the tail of stderr when main_ppo exits non-zero.
    """
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "MODEL_DIR": str(model_dir),
        "DATA_DIR": str(data_dir),
        "EXPERIMENT_DIR": str(experiment_dir),
        "STEPS": str(steps),
    }
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "run_cpu_demo.sh"), *overrides],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"main_ppo failed (exit {result.returncode}) with {list(overrides)}:\n{result.stderr[-6000:]}")
    return result.stdout + result.stderr
