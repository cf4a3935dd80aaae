"""Workaround 3 of the CPU backend (rlrt_recipe/cpu/vision.py): Qwen3-VL processors without torchvision.

What is guarded runs in fresh interpreters, because the fix changes process-wide transformers state: one that has
not imported ``rlrt_recipe.cpu`` (plug-ins off) must still fail to load the processor until the fix is called, and
a process that imports ``rlrt_recipe.cpu`` the way the hf rollout server does must load it.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
import transformers.processing_utils as processing_utils
from PIL import Image
from test_cpu_backend import last_json_line, run_python
from transformers import AutoProcessor
from transformers.utils import is_torchvision_available

from rlrt_recipe.cpu import vision

PLUGINS_OFF = {"VERL_USE_EXTERNAL_PLUGINS": "none", "VERL_USE_EXTERNAL_MODULES": ""}

# How transformers' and verl's loaders fare on a model in this process.
LOAD_PROCESSOR = """
def load_processor(model_dir):
    import sys, warnings
    from transformers import AutoProcessor
    from verl.utils.tokenizer import hf_processor
    state = {"cpu_backend_imported": "rlrt_recipe.cpu" in sys.modules}
    try:
        state["auto"] = type(AutoProcessor.from_pretrained(model_dir)).__name__
    except ImportError as err:
        state["auto"] = f"ImportError: {err}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        processor = hf_processor(model_dir)
    state["verl"] = type(processor).__name__ if processor is not None else None
    state["verl_warning"] = next((str(w.message) for w in caught if "Failed to create processor" in str(w.message)), None)
    state["rope_index_bound"] = hasattr(processor, "get_rope_index")
    return state
"""

needs_the_fix = pytest.mark.skipif(is_torchvision_available(), reason="with torchvision there is nothing to fix")


def script(body: str) -> str:
    """``body`` after the definition of ``load_processor``."""
    return LOAD_PROCESSOR + textwrap.dedent(body)


@needs_the_fix
def test_without_the_fix_transformers_and_verl_still_fail_and_with_it_both_load(tiny_vl_model_dir):
    """Fails when transformers or verl change under the workaround: if the processor loads without it (transformers
    no longer replaces video processors by dummies without torchvision), remove vision.py; if verl stops swallowing
    the error into None, the failure mode named in vision.py's docstring changed."""
    result = run_python(
        script(f"""
        import json
        without = load_processor({tiny_vl_model_dir!r})
        from rlrt_recipe.cpu.vision import use_real_video_processor
        use_real_video_processor()
        use_real_video_processor()  # idempotent
        print(json.dumps({{"without": without, "with": load_processor({tiny_vl_model_dir!r})}}))
        """),
        VERL_PLATFORM="",
        **PLUGINS_OFF,
    )
    state = last_json_line(result)
    without = state["without"]
    assert without["cpu_backend_imported"] is False
    assert without["auto"].startswith("ImportError") and "requires the Torchvision library" in without["auto"]
    assert without["verl"] is None and "Torchvision" in without["verl_warning"]
    assert state["with"] == {"cpu_backend_imported": True, "auto": "Qwen3VLProcessor", "verl": "Qwen3VLProcessor",
                             "verl_warning": None, "rope_index_bound": True}


@needs_the_fix
def test_the_rollout_server_process_gets_the_fix_from_the_package_import(tiny_vl_model_dir):
    """The hf server runs with verl's plug-ins off (rollout.py _SERVER_ENV); Ray's import of rlrt_recipe.cpu.server
    runs rlrt_recipe/cpu/__init__.py, which applies the fix, so the server can load the processor."""
    result = run_python(
        script(f"""
        import json
        import rlrt_recipe.cpu.server
        print(json.dumps(load_processor({tiny_vl_model_dir!r})))
        """),
        **PLUGINS_OFF,
    )
    state = last_json_line(result)
    assert (state["auto"], state["verl"], state["rope_index_bound"]) == ("Qwen3VLProcessor", "Qwen3VLProcessor", True)


def test_the_fix_is_a_no_op_when_torchvision_is_importable(monkeypatch):
    """With torchvision transformers' own classes are real: the fix must not touch them."""
    def refuse(*args, **kwargs):
        raise AssertionError("registered a video processor although torchvision is importable")

    sentinel = object()
    monkeypatch.setattr(vision, "is_torchvision_available", lambda: True)
    monkeypatch.setattr(processing_utils.transformers_module, "BaseVideoProcessor", sentinel)
    monkeypatch.setattr(vision.AutoVideoProcessor, "register", refuse)
    vision.use_real_video_processor()
    assert processing_utils.transformers_module.BaseVideoProcessor is sentinel


@pytest.mark.parametrize(("size", "grid"), [((64, 64), [1, 4, 4]), ((96, 64), [1, 4, 6])])
def test_the_processor_turns_an_image_into_merged_patch_tokens(tiny_vl_model_dir, size, grid):
    """16-px patches, 2×2 merged into one token: 64×64 gives a 4×4 patch grid and 4 image tokens, 96×64 (width ×
    height) a 4×6 grid and 6 tokens, with the processor as verl loads it (chat template included)."""
    processor = AutoProcessor.from_pretrained(tiny_vl_model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|>\n<|im_start|>assistant\n"
    inputs = processor(text=[text], images=[Image.new("RGB", size, (200, 30, 30))], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [grid]
    n_tokens = grid[1] * grid[2] // 4
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == n_tokens
    assert inputs["pixel_values"].shape == (grid[1] * grid[2], 3 * 2 * 16 * 16)  # one row per patch: C × T × 16 × 16
    assert torch.equal(inputs["mm_token_type_ids"][0].bool(), inputs["input_ids"][0] == processor.image_token_id)
