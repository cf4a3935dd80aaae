"""Opt-in CPU backend for verl 0.9.1: a ``cpu`` platform, the FSDP2 engine on CPU and the ``hf`` rollout.

Used with ``VERL_PLATFORM=cpu`` (``recipes/env/cpu.yaml``, ``docs/cpu.md``); a GPU run never imports it.
The registrations are inert without that variable (the platform is not selected, nothing asks for device
``cpu`` or rollout ``hf``), so tests may import the server in any process; the process-group wrapper is
installed only when the CPU platform is selected.
Order matters: verl's FSDP engine module calls ``get_device_name()`` at import
(``verl/workers/engine/fsdp/transformer_impl.py:89``) and ``engine_workers`` binds the process-group
function at import (``verl/workers/engine_workers.py:38``), so the platform and the gloo default must
be in place before anything under ``verl.workers`` is imported: the first two steps below.
Without torchvision (no CPU wheel exists) transformers cannot load a Qwen3-VL processor; ``use_real_video_processor``
fixes that in every process that imports this package, the hf rollout server's included (``vision.py``).
``dataset.py`` (image rows without torchvision) is not imported here: verl loads it from ``data.custom_cls``
(``recipes/env/cpu_vl.yaml``).
"""

from rlrt_recipe.cpu.platform import PlatformCPU, cpu_platform_requested, register_platform
from rlrt_recipe.cpu.process_group import apply_gloo_default
from rlrt_recipe.cpu.vision import use_real_video_processor

register_platform()
if cpu_platform_requested():
    apply_gloo_default()
use_real_video_processor()

from rlrt_recipe.cpu.engine import register_engine  # noqa: E402  (imports verl.workers: after the two above)
from rlrt_recipe.cpu.rollout import ROLLOUT_NAME, register_rollout  # noqa: E402

register_engine()
register_rollout()

__all__ = ["PlatformCPU", "ROLLOUT_NAME", "cpu_platform_requested"]
