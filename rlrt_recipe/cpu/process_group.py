"""Workaround 1 of 3: a gloo-only default process group on the CPU platform.

``verl.utils.distributed.initialize_global_process_group_ray`` (verl 0.9.1, ``utils/distributed.py:83``)
defaults its backend to ``f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"``, which on the CPU platform
is ``"cpu:gloo,cpu:gloo"``, and torch rejects it: ``Duplicate device type cpu in backend string``.
verl has no hook for this, so we wrap the function to default to ``"gloo"``. ``engine_workers.py:38``
imports the function by name, so the wrapper must be in place before ``verl.workers.engine_workers`` is
imported: ``rlrt_recipe.cpu`` applies it before it imports anything under ``verl.workers``.
``tests/test_cpu_backend.py`` fails if verl changes the default string or how engine_workers imports it.
"""

from __future__ import annotations

import functools
import sys

import verl.utils.distributed as verl_distributed

CPU_BACKEND = "gloo"


def apply_gloo_default() -> None:
    """Make ``initialize_global_process_group_ray`` default to gloo. Idempotent; only for VERL_PLATFORM=cpu."""
    original = verl_distributed.initialize_global_process_group_ray
    if getattr(original, "rlrt_gloo_default", False):
        return
    if "verl.workers.engine_workers" in sys.modules:
        raise RuntimeError(
            "rlrt_recipe.cpu was imported after verl.workers.engine_workers, which already holds verl's "
            "process-group function (CUDA backend string). Import rlrt_recipe.cpu first: the rlrt-recipe "
            "plug-in does this when VERL_PLATFORM=cpu is set before `import verl`."
        )

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or CPU_BACKEND)

    initialize_global_process_group_ray.rlrt_gloo_default = True
    verl_distributed.initialize_global_process_group_ray = initialize_global_process_group_ray
