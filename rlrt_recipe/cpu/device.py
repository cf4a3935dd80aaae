"""``torch.cpu`` plus the CUDA-only helpers verl calls through ``get_torch_device()``.

verl reaches the device module as ``get_platform().device_module`` and calls functions that only
``torch.cuda`` has (``empty_cache``, ``mem_get_info``, ``get_rng_state`` ...). This module is that
device module on the CPU platform: everything ``torch.cpu`` offers, plus the missing helpers with their
CPU meaning (no caching allocator, one device, the CPU generator is the device generator).
"""

from __future__ import annotations

import os
import resource

import psutil
import torch
from torch.cpu import (  # noqa: F401  (re-exported: this module stands in for torch.cpu)
    Event,
    Stream,
    StreamContext,
    current_device,
    current_stream,
    device_count,
    is_available,
    set_device,
    stream,
    synchronize,
)


def get_device_name(device=None) -> str:
    return "cpu"


def empty_cache() -> None:
    """No caching allocator on CPU: nothing to release."""


def ipc_collect() -> None:
    """No CUDA IPC handles on CPU: nothing to collect."""


def set_per_process_memory_fraction(fraction: float, device=None) -> None:
    """CPU memory is not partitioned per process; verl's call is a no-op here."""


def mem_get_info(device=None) -> tuple[int, int]:
    """``(free, total)`` bytes of host memory, as ``torch.cuda.mem_get_info`` reports for a GPU."""
    memory = psutil.virtual_memory()
    return memory.available, memory.total


def memory_allocated(device=None) -> int:
    """Resident memory of this process (verl logs it as the 'allocated' memory)."""
    return psutil.Process(os.getpid()).memory_info().rss


def max_memory_allocated(device=None) -> int:
    """Peak resident memory of this process (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


memory_reserved = memory_allocated
max_memory_reserved = max_memory_allocated


def reset_peak_memory_stats(device=None) -> None:
    """The kernel's peak-RSS counter cannot be reset; the peak stays the process peak."""


def get_rng_state(device=None) -> torch.Tensor:
    """The CPU generator is the device generator: checkpoints save and restore it here too."""
    return torch.get_rng_state()


def set_rng_state(new_state: torch.Tensor, device=None) -> None:
    torch.set_rng_state(new_state)


def manual_seed(seed: int) -> None:
    torch.manual_seed(seed)


manual_seed_all = manual_seed
