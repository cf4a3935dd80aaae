"""The CPU backend's torchvision-free dataset class (rlrt_recipe/cpu/dataset.py): verl's image rows without torchvision.

The reference is qwen_vl_utils itself, the code verl 0.9.1 calls for a row's images: its image path needs only PIL,
but its module imports torchvision at the top, so the fixture executes it under a throw-away ``torchvision`` stand-in
(test-only, never in sys.modules outside the fixture's import).
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image
from transformers.utils import is_torchvision_available
from verl.experimental.agent_loop.agent_loop import AgentLoopBase
from verl.utils.dataset.rl_dataset import RLHFDataset, get_dataset_class
from verl.utils.tokenizer import hf_processor, hf_tokenizer

from rlrt_recipe.cpu import dataset as cpu_dataset
from rlrt_recipe.cpu.dataset import TorchvisionFreeRLHFDataset, smart_resize
from rlrt_recipe.testing.image_data import write_image_parquet

needs_no_torchvision = pytest.mark.skipif(is_torchvision_available(), reason="with torchvision verl's own path runs")

# (width, height) -> the size qwen_vl_utils' rule gives for 16-px patches (factor 32, at least 4·32² pixels),
# worked by hand: 50×70 rounds both sides to 64; 300×200 rounds to 288×192; 20×20 rounds up to 32×32, below
# 4096 px, so both sides scale by √(4096/400) = 3.2 and ceil to 64.
SIZES = {(64, 64): (64, 64), (96, 64): (96, 64), (50, 70): (64, 64), (300, 200): (288, 192), (20, 20): (64, 64)}
CUSTOM_CLS = {"path": "pkg://rlrt_recipe.cpu.dataset", "name": "TorchvisionFreeRLHFDataset"}


@pytest.fixture(scope="module")
def qwen_vl_utils():
    """qwen_vl_utils' ``vision_process`` module, executed with a stand-in for the names it imports from torchvision
    (only its video path uses them)."""
    path = Path(importlib.util.find_spec("qwen_vl_utils").origin).with_name("vision_process.py")
    stand_in = types.ModuleType("torchvision")
    stand_in.__version__ = "0.0"
    stand_in.io = types.ModuleType("torchvision.io")
    stand_in.transforms = types.ModuleType("torchvision.transforms")
    stand_in.transforms.InterpolationMode = None
    modules = {"torchvision": stand_in, "torchvision.io": stand_in.io, "torchvision.transforms": stand_in.transforms}
    with pytest.MonkeyPatch.context() as patch:
        for name, module in modules.items():
            patch.setitem(sys.modules, name, module)
        spec = importlib.util.spec_from_file_location("_qwen_vl_utils_reference", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def noise_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Random pixels, so any resampling difference shows; RGBA with a random alpha channel."""
    shape = {"RGB": (height, width, 3), "RGBA": (height, width, 4), "L": (height, width)}[mode]
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))
    assert image.mode == mode
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def user_message(*blocks: dict) -> list[dict]:
    return [{"role": "user", "content": [*blocks, {"type": "text", "text": "How many?"}]}]


def assert_same_images(ours: list[Image.Image], reference: list[Image.Image]) -> None:
    assert len(ours) == len(reference)
    for mine, theirs in zip(ours, reference):
        assert (mine.mode, mine.size) == (theirs.mode, theirs.size)
        assert np.array_equal(np.asarray(mine), np.asarray(theirs))


@needs_no_torchvision
def test_qwen_vl_utils_still_imports_torchvision():
    """Guards why the class exists: if qwen_vl_utils imports without torchvision, verl's own path works on CPU."""
    with pytest.raises(ModuleNotFoundError, match="torchvision"):
        importlib.import_module("qwen_vl_utils")


@pytest.mark.parametrize(("size", "expected"), SIZES.items(), ids=[f"{w}x{h}" for w, h in SIZES])
def test_smart_resize_matches_the_hand_worked_sizes_and_qwen_vl_utils(qwen_vl_utils, size, expected):
    """The resize rule (sides rounded to the factor, area clamped to [4, 16384]·factor²) gives the sizes worked by
    hand above, and qwen_vl_utils' own function agrees."""
    width, height = size
    assert smart_resize(height, width, factor=32)[::-1] == expected
    assert smart_resize(height, width, factor=32) == qwen_vl_utils.smart_resize(height, width, factor=32)


@needs_no_torchvision
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("patch_size", [16, 14])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_images_are_pixel_identical_to_qwen_vl_utils(qwen_vl_utils, size, patch_size, mode):
    """The image every consumer of a row gets (length filter, rollout, actor, teacher) is what verl's own
    qwen_vl_utils call would give: same size, same pixels, for square, non-square, down- and up-scaled images, the
    Qwen3-VL patch size and verl's config default 14, RGBA composited on white and grey converted to RGB."""
    image = noise_image(*size, mode=mode, seed=size[0])
    messages = user_message({"type": "image", "image": image}, {"type": "image", "image": noise_image(96, 64, seed=7)})
    config = OmegaConf.create()
    ours, videos, audios = TorchvisionFreeRLHFDataset._process_multi_modal_info(messages, patch_size, config)
    reference, reference_videos = qwen_vl_utils.process_vision_info(messages, image_patch_size=patch_size,
                                                                     return_video_metadata=True)
    assert_same_images(ours, reference)
    assert (videos, audios, reference_videos) == (None, None, None)
    if patch_size == 16:
        assert ours[0].size == SIZES[size]


@needs_no_torchvision
def test_every_image_source_and_size_option_matches_qwen_vl_utils(qwen_vl_utils, tmp_path):
    """verl's bytes rows (``{"bytes", "path", "image"}`` after ``_build_messages``), a local path, ``file://``, a base64
    data URI, per-image ``min_pixels``/``max_pixels`` and ``resized_height``/``resized_width``: all as qwen_vl_utils."""
    image = noise_image(300, 200, seed=3)
    data = png(image)
    (tmp_path / "img.png").write_bytes(data)
    blocks = [
        {"type": "image", "bytes": data, "path": None, "image": Image.open(io.BytesIO(data))},
        {"type": "image", "image": str(tmp_path / "img.png")},
        {"type": "image", "image": f"file://{tmp_path / 'img.png'}"},
        {"type": "image", "image": "data:image/png;base64," + base64.b64encode(data).decode()},
        {"type": "image", "image": image, "min_pixels": 256 * 256, "max_pixels": 512 * 512},
        {"type": "image", "image": image, "max_pixels": 64 * 64},
        {"type": "image", "image": image, "resized_height": 100, "resized_width": 50},
    ]
    ours, _, _ = TorchvisionFreeRLHFDataset._process_multi_modal_info(user_message(*blocks), 16, OmegaConf.create())
    reference, _ = qwen_vl_utils.process_vision_info(user_message(*blocks), image_patch_size=16)
    assert_same_images(ours, reference)
    assert [im.size for im in ours[4:]] == [(320, 224), (64, 32), (64, 96)]  # the options did change the size


def test_text_rows_have_no_images():
    """A text row gets (None, None, None), as verl's own path returns it, so the agent loop sends no image data."""
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    assert TorchvisionFreeRLHFDataset._process_multi_modal_info(messages, 16, OmegaConf.create()) == (None, None, None)


@needs_no_torchvision
@pytest.mark.parametrize("block", [{"type": "video", "video": "clip.mp4"}, {"type": "audio", "audio": "a.wav"}],
                         ids=["video", "audio"])
def test_video_and_audio_blocks_are_refused(block):
    """A video or audio block that reaches the agent loop is refused with the reason, not dropped or half-served."""
    messages = user_message({"type": "image", "image": noise_image(64, 64)}, block)
    with pytest.raises(ValueError, match=f"a prompt has {block['type']} blocks; .* image prompts only"):
        TorchvisionFreeRLHFDataset._process_multi_modal_info(messages, 16, OmegaConf.create())


def test_defers_to_verl_when_torchvision_is_importable(monkeypatch):
    """With torchvision, verl's own qwen_vl_utils path runs unchanged (GPU machines)."""
    calls = []
    monkeypatch.setattr(cpu_dataset, "is_torchvision_available", lambda: True)
    monkeypatch.setattr(RLHFDataset, "_process_multi_modal_info",
                        classmethod(lambda cls, messages, image_patch_size, config: calls.append(cls) or "verl's"))
    assert TorchvisionFreeRLHFDataset._process_multi_modal_info([], 16, OmegaConf.create()) == "verl's"
    assert calls == [TorchvisionFreeRLHFDataset]


def data_config(**overrides) -> dict:
    """The keys of verl's ``data`` section the dataset reads, with the length filter on."""
    return OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 256,
                             "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1,
                             "image_patch_size": None, "custom_cls": CUSTOM_CLS, **overrides})


@pytest.fixture(scope="module")
def image_parquet(tmp_path_factory) -> str:
    return write_image_parquet(tmp_path_factory.mktemp("image_data") / "train.parquet", 6, seed=0)


def build(dataset_cls, parquet: str, model_dir: str, config=None):
    return dataset_cls(data_files=parquet, tokenizer=hf_tokenizer(model_dir), processor=hf_processor(model_dir),
                       config=config or data_config())


@needs_no_torchvision
def test_verls_dataset_drops_image_rows_on_cpu_and_ours_keeps_them(image_parquet, tiny_vl_model_dir):
    """verl's length filter catches qwen_vl_utils' ImportError and drops every image row (rl_dataset.py:237-243);
    the class ``data.custom_cls`` names keeps all of them, each with its image block."""
    assert len(build(RLHFDataset, image_parquet, tiny_vl_model_dir)) == 0
    dataset_cls = get_dataset_class(data_config())
    assert dataset_cls is TorchvisionFreeRLHFDataset
    ours = build(dataset_cls, image_parquet, tiny_vl_model_dir)
    assert len(ours) == 6
    blocks = ours[0]["raw_prompt"][0]["content"]
    assert [b["type"] for b in blocks] == ["image", "text"] and isinstance(blocks[0]["image"], Image.Image)


@needs_no_torchvision
def test_the_rollout_gets_the_dataset_images(image_parquet, tiny_vl_model_dir, qwen_vl_utils):
    """What verl's agent loop extracts before the rollout (``AgentLoopBase.process_multi_modal_info``, which resolves
    the class from ``data.custom_cls`` and uses the processor's patch size) equals qwen_vl_utils on the same row, and
    the same call the teacher step must make (``get_dataset_class(config.data)._process_multi_modal_info``) agrees."""
    config = data_config()
    row = build(TorchvisionFreeRLHFDataset, image_parquet, tiny_vl_model_dir, config)[1]
    processor = hf_processor(tiny_vl_model_dir)
    loop = types.SimpleNamespace(processor=processor, dataset_cls=get_dataset_class(config), data_config=config)
    rollout = asyncio.run(AgentLoopBase.process_multi_modal_info(loop, row["raw_prompt"]))
    assert set(rollout) == {"images"}
    reference, _ = qwen_vl_utils.process_vision_info(row["raw_prompt"], image_patch_size=16)
    assert_same_images(rollout["images"], reference)
    teacher, _, _ = get_dataset_class(config)._process_multi_modal_info(
        row["raw_prompt"], image_patch_size=processor.image_processor.patch_size, config=config)
    assert_same_images(teacher, reference)


@needs_no_torchvision
@pytest.mark.parametrize("column", ["videos", "audios"])
def test_a_video_or_audio_column_is_refused_naming_it_and_the_row(image_parquet, tiny_vl_model_dir, tmp_path, column):
    """Rows with videos or audio fail when the dataset is built, naming the column, its config key, how many rows,
    the first row, its data_source and extra_info.index, instead of being dropped by the length filter."""
    frame = png(noise_image(64, 64))
    table = pd.read_parquet(image_parquet)
    table[column] = [[], [], [{"bytes": frame, "path": None}], [], [{"bytes": frame, "path": None}], []]
    path = tmp_path / "with_media.parquet"
    table.to_parquet(path)
    with pytest.raises(ValueError, match=rf"column '{column}' \(data\.{column[:-1]}_key\) is non-empty in 2 row\(s\), "
                                         r"first at row 2 \(data_source 'rlrt/tiny_shapes', extra_info\.index 2\)"):
        build(TorchvisionFreeRLHFDataset, str(path), tiny_vl_model_dir)


@needs_no_torchvision
def test_image_rows_without_a_processor_name_the_cpu_model_families(image_parquet, tiny_vl_model_dir):
    """A model whose processor transformers cannot load without torchvision (Qwen2-VL, Qwen2.5-VL: verl's
    hf_processor returns None) is refused when the dataset is built, naming the families, instead of verl's bare
    "processor is needed" assertion at the first image row."""
    with pytest.raises(ValueError, match=r"could not load the model's processor without torchvision.*Qwen3-VL only: "
                                         r"Qwen2-VL and Qwen2\.5-VL"):
        TorchvisionFreeRLHFDataset(data_files=image_parquet, tokenizer=hf_tokenizer(tiny_vl_model_dir), processor=None,
                                   config=data_config())
