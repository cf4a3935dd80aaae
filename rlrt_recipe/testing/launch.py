"""Run the project's shell scripts (verl's real main_ppo on CPU) from tests, benchmarks and scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, args: Sequence[str] = (), *, env: Mapping[str, str] = {}, timeout: int = 900) -> str:
    """Run ``bash scripts/<name>`` with ``args`` and ``env`` over this process's environment, ``PYTHON`` set to
    this interpreter; return the combined output.

    Raises ``RuntimeError`` with the tail of stderr when the script exits non-zero.
    """
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args],
        env={**os.environ, "PYTHON": sys.executable, **env}, capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {result.returncode}) with {list(args)}:\n{result.stderr[-6000:]}")
    return result.stdout + result.stderr


def run_cpu_demo(
    experiment_dir: str | os.PathLike,
    model_dir: str,
    data_dir: str,
    *,
    steps: int,
    overrides: Sequence[str] = (),
    timeout: int = 900,
) -> str:
    """Run ``steps`` training steps of scripts/run_cpu_demo.sh with extra Hydra ``overrides``; return the output."""
    env = {"MODEL_DIR": str(model_dir), "DATA_DIR": str(data_dir), "EXPERIMENT_DIR": str(experiment_dir),
           "STEPS": str(steps)}
    return run_script("run_cpu_demo.sh", overrides, env=env, timeout=timeout)
