"""The ``cpu`` platform for verl's ``PlatformRegistry``, selected with ``VERL_PLATFORM=cpu``.

verl 0.9.1 auto-detects only NVIDIA, Ascend and ROCm (``verl/plugin/platform/platform_manager.py:97-114``)
and falls back to CUDA, so a CPU run must name this platform explicitly. ``is_platform_available`` is
False without ``VERL_PLATFORM=cpu``: on a GPU cluster a CPU-only Ray actor must never pick it.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from types import ModuleType

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from rlrt_recipe.cpu import device as cpu_device

PLATFORM_NAME = "cpu"


def cpu_platform_requested() -> bool:
    """True when the user selected this platform (``VERL_PLATFORM=cpu``)."""
    return os.getenv("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


class PlatformCPU(PlatformBase):
    """Host CPU as verl's accelerator: device ``cpu``, collectives over gloo, one fake Ray GPU per rank."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> ModuleType:
        return sys.modules[cpu_device.__name__]

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        return cpu_platform_requested()

    def current_device(self) -> str:
        # FSDP2 moves the model with ``model.to(get_device_id())``; "cpu" is a valid target, 0 is not.
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        """One device: nothing to select."""

    def synchronize(self, device_index=None) -> None:
        """CPU ops are synchronous."""

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        """No configurable allocator on CPU."""

    def empty_cache(self) -> None:
        """No caching allocator on CPU."""

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets CUDA_VISIBLE_DEVICES for the fake GPUs a CPU run declares; verl only copies it around.
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        """No device profiler on CPU."""

    def profiler_stop(self) -> None:
        """No device profiler on CPU."""

    def ray_resource_name(self) -> str:
        # verl counts only GPU/NPU resources (verl/single_controller/ray/base.py:230), so a CPU run
        # declares fake Ray GPUs (ray_init.num_gpus) and every rank takes one.
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None


def register_platform() -> None:
    """Register ``PlatformCPU`` as ``cpu`` (re-registering the same class is harmless)."""
    if PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)
