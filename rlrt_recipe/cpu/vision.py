"""Workaround 3 of 3: transformers' real Qwen3-VL video processor when torchvision is missing.

Without torchvision (the CPU build has none: the reachable wheels are CUDA builds), transformers 5.10 maps every
video processor to nothing (``transformers/models/auto/video_processing_auto.py:70-77``) and exports dummies for
``BaseVideoProcessor`` and ``AutoVideoProcessor``. ``Qwen3VLProcessor`` needs a video processor even for images, so
``AutoProcessor.from_pretrained`` raises "Qwen3VLVideoProcessor requires the Torchvision library", which verl's
``hf_processor`` swallows into ``None`` with a warning (``verl/utils/tokenizer/tokenizer.py:242-246``); the dataset
then asserts "processor is needed" (``verl/utils/dataset/rl_dataset.py:323``). ``Qwen3VLVideoProcessor`` itself only needs torchvision to process
videos, so images work once transformers can find the real classes:

* register the real class with ``AutoVideoProcessor`` (the real one, from its module: the top-level name is a dummy);
* set the real ``BaseVideoProcessor`` on ``processing_utils.transformers_module``, the class a processor's
  ``video_processor`` argument is checked against. That module object is a second execution of transformers'
  ``__init__`` (``transformers/processing_utils.py:94`` via ``direct_transformers_import``), which also replaces
  ``sys.modules["transformers"]``; setting the class on an earlier-imported ``transformers`` is silently lost.

Needed in every process that loads a Qwen3-VL processor (the TaskRunner, FSDP ranks, agent-loop workers, the hf
rollout server); ``rlrt_recipe.cpu`` applies it on import. ``tests/test_cpu_vision.py`` fails when transformers or
verl no longer need it.
"""

from __future__ import annotations

import transformers.processing_utils as processing_utils
from transformers import Qwen3VLConfig
from transformers.models.auto.video_processing_auto import AutoVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.utils import is_torchvision_available
from transformers.video_processing_utils import BaseVideoProcessor


def use_real_video_processor() -> None:
    """Let transformers load and build Qwen3-VL processors without torchvision. No-op with torchvision; idempotent."""
    if is_torchvision_available():
        return
    AutoVideoProcessor.register(Qwen3VLConfig, Qwen3VLVideoProcessor, exist_ok=True)
    processing_utils.transformers_module.BaseVideoProcessor = BaseVideoProcessor
