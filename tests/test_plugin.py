"""The verl.plugins entry point: registrations appear after a bare `import verl`, idempotently, never raising."""

import importlib
import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, verl
from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, POLICY_LOSS_REGISTRY
print(json.dumps({"adv": sorted(ADV_ESTIMATOR_REGISTRY), "loss": sorted(POLICY_LOSS_REGISTRY)}))
"""
OURS = {"rlrt", "rlsd", "opsd", "grpo_opsd", "grpo_eb"}


def _probe(**env):
    """Run PROBE in a fresh interpreter (so verl's import-time plug-in loading really happens)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=full_env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_entry_point_registers_on_bare_import_verl():
    """`import verl` loads our entry point: every estimator and the loss exist, with one INFO line."""
    names, stderr = _probe()
    assert OURS <= set(names["adv"])
    assert {"self_distill", "sdpo", "srpo"} <= set(names["loss"])
    assert "rlrt-recipe plug-in loaded: estimators, policy loss, trainer" in stderr


@pytest.mark.parametrize("module", ["rlrt_recipe.integration.teacher", "rlrt_recipe.integration.topk"])
def test_importing_a_glue_module_before_verl_loads_every_piece(module):
    """Importing one of our verl-glue modules first (as the warm starts and benchmarks do) imports verl, whose
    entry point then loads the plug-in: every piece loads, none is half-initialized (before the fix, the trainer
    failed with a circular ImportError logged as a warning)."""
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")})
    assert out.returncode == 0, out.stderr
    assert "rlrt-recipe plug-in loaded: estimators, policy loss, trainer" in out.stderr
    assert "could not load" not in out.stderr


def test_external_modules_fallback():
    """VERL_USE_EXTERNAL_MODULES=rlrt_recipe.plugin registers the same names with entry points disabled."""
    names, _ = _probe(VERL_USE_EXTERNAL_PLUGINS="none", VERL_USE_EXTERNAL_MODULES="rlrt_recipe.plugin")
    assert OURS <= set(names["adv"]) and "self_distill" in names["loss"]


def test_disabled_plugins_register_nothing():
    """Control for the two tests above: with plug-ins off, none of our names exist."""
    names, _ = _probe(VERL_USE_EXTERNAL_PLUGINS="none")
    assert not OURS & set(names["adv"]) and "self_distill" not in names["loss"]


def test_reimport_is_idempotent():
    """A second execution of the registering modules must not raise verl's 'already registered'."""
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    import rlrt_recipe.integration.estimators as estimators
    import rlrt_recipe.integration.loss as loss

    before = get_adv_estimator_fn("rlrt")
    importlib.reload(estimators)
    importlib.reload(loss)
    assert get_adv_estimator_fn("rlrt") is before


def test_plugin_never_raises_and_names_the_broken_piece(monkeypatch):
    """A piece that fails to import is logged and recorded; require_registrations then names it."""
    import pytest

    from rlrt_recipe import plugin

    monkeypatch.setattr(plugin, "_PIECES", [("broken piece", "rlrt_recipe.no_such_module")])
    monkeypatch.setattr(plugin, "LOAD_ERRORS", {})
    assert plugin._load() == []
    with pytest.raises(RuntimeError, match="broken piece: ModuleNotFoundError"):
        plugin.require_registrations()
