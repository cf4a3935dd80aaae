"""The house's floors (STYLE.md): the math, prompt-building and config modules import no verl and nothing above
them, so they stay usable (and testable) without verl's heavy import."""

import subprocess
import sys

import pytest

FLOOR_1 = ["rlrt_recipe.signals", "rlrt_recipe.privileged", "rlrt_recipe.config", "rlrt_recipe.checks", "rlrt_recipe.evaluation"]


@pytest.mark.parametrize("module", FLOOR_1)
def test_floor_1_imports_no_verl_and_nothing_above(module):
    code = (
        f"import sys, {module}; "
        "bad = sorted(m for m in sys.modules if m == 'verl' or m.startswith(('verl.', 'rlrt_recipe.integration', "
        "'rlrt_recipe.cpu', 'rlrt_recipe.plugin'))); print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{module} pulls in {result.stdout.strip()} {result.stderr[-500:]}"
