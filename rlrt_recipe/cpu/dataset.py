"""verl's ``RLHFDataset`` with image rows that work without torchvision: ``data.custom_cls`` for image prompts on CPU.

verl 0.9.1 turns a row's image blocks into PIL images with ``qwen_vl_utils.process_vision_info``
(``verl/utils/dataset/rl_dataset.py:479-499``), and ``qwen_vl_utils`` imports torchvision at module top
(``qwen_vl_utils/vision_process.py:16``), which the CPU build lacks. The dataset's length filter then catches the
ImportError and drops every image row ("Error processing one of the samples, skipping...",
``rl_dataset.py:237-243``), and the agent loop fails on the first image prompt. ``TorchvisionFreeRLHFDataset``
overrides that one classmethod with qwen_vl_utils' image path (``fetch_image``: RGB, ``smart_resize``, PIL
resize) redone in PIL; with torchvision importable it is plain ``RLHFDataset``.

verl resolves the class from ``data.custom_cls`` (``get_dataset_class``, ``rl_dataset.py:570-595``) in every place
that extracts a row's images, so all of them get the same images:

* the dataset's length filter (``maybe_filter_out_long_prompts``, ``rl_dataset.py:217``);
* the agent loop before the rollout (``AgentLoopBase.process_multi_modal_info``, ``agent_loop.py:288-316``, via the
  dataset class's async ``process_multi_modal_info``, ``rl_dataset.py:502-512``), whose images also become the
  stored ``multi_modal_inputs`` the actor trains on (``agent_loop.py:868-918``);
* anything else that calls ``get_dataset_class(config.data)._process_multi_modal_info`` the same way (the
  teacher step must: same messages, the processor's ``patch_size``, ``config.data``).

Only images: video and audio need decoders the CPU build lacks. Rows with a non-empty video or audio column are
refused when the dataset is built, naming the column and the row; video or audio blocks that reach
``_process_multi_modal_info`` anyway are refused there.
"""

from __future__ import annotations

import base64
import io
import math
import os
from typing import Any

from omegaconf import DictConfig
from PIL import Image
from transformers.utils import is_torchvision_available
from verl.utils.dataset.rl_dataset import RLHFDataset

# qwen_vl_utils 0.0.14's constants (vision_process.py:24-27): the merge of 2×2 patches into one token, the token
# budget of an image, and the largest aspect ratio it accepts.
SPATIAL_MERGE_SIZE = 2
IMAGE_MIN_TOKEN_NUM = 4
IMAGE_MAX_TOKEN_NUM = 16384
MAX_RATIO = 200


def smart_resize(height: int, width: int, factor: int, min_pixels: int | None = None,
                 max_pixels: int | None = None) -> tuple[int, int]:
    """qwen_vl_utils' target size: each side rounded to a multiple of ``factor``, the area then scaled into
    [``min_pixels``, ``max_pixels``] (default 4·factor² and 16384·factor²) keeping the aspect ratio."""
    max_pixels = max_pixels if max_pixels is not None else IMAGE_MAX_TOKEN_NUM * factor**2
    min_pixels = min_pixels if min_pixels is not None else IMAGE_MIN_TOKEN_NUM * factor**2
    if max_pixels < min_pixels:
        raise ValueError(f"max_pixels ({max_pixels}) must be at least min_pixels ({min_pixels})")
    if max(height, width) / min(height, width) > MAX_RATIO:
        ratio = max(height, width) / min(height, width)
        raise ValueError(f"absolute aspect ratio must be smaller than {MAX_RATIO}, got {ratio}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _open(image: Any) -> Image.Image:
    """A PIL image, a local path (optionally ``file://``) or a base64 ``data:image`` URI, opened."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        raise ValueError(f"image URLs are not fetched on CPU ({image[:80]!r}); store the image bytes or a local path")
    if isinstance(image, str) and image.startswith("data:image") and "base64," in image:
        return Image.open(io.BytesIO(base64.b64decode(image.split("base64,", 1)[1])))
    if isinstance(image, str | os.PathLike):
        path = os.fspath(image)
        return Image.open(path[len("file://"):] if path.startswith("file://") else path)
    raise ValueError(f"unrecognized image input (a PIL image, a local path or a base64 data URI), got {type(image)}")


def fetch_image(block: dict[str, Any], image_patch_size: int) -> Image.Image:
    """One image block as qwen_vl_utils' ``fetch_image`` returns it: RGB (RGBA composited on white), resized by
    PIL's default filter to ``smart_resize``'s size (``resized_height``/``resized_width`` or the block's
    ``min_pixels``/``max_pixels`` when given)."""
    image = _open(block["image"] if "image" in block else block["image_url"])
    if image.mode == "RGBA":
        rgb = Image.new("RGB", image.size, (255, 255, 255))
        rgb.paste(image, mask=image.split()[3])
    else:
        rgb = image.convert("RGB")
    factor = image_patch_size * SPATIAL_MERGE_SIZE
    if "resized_height" in block and "resized_width" in block:
        height, width = smart_resize(block["resized_height"], block["resized_width"], factor)
    else:
        height, width = smart_resize(rgb.height, rgb.width, factor,
                                     block.get("min_pixels", IMAGE_MIN_TOKEN_NUM * factor**2),
                                     block.get("max_pixels", IMAGE_MAX_TOKEN_NUM * factor**2))
    return rgb.resize((width, height))


def _is_vision_block(block: Any) -> bool:
    """qwen_vl_utils' ``extract_vision_info`` rule for a content block."""
    return isinstance(block, dict) and (
        "image" in block or "image_url" in block or "video" in block
        or block.get("type", "text") in ("image", "image_url", "video")
    )


class TorchvisionFreeRLHFDataset(RLHFDataset):
    """``RLHFDataset`` whose image extraction needs no torchvision (module docstring); images only."""

    @classmethod
    def _process_multi_modal_info(cls, messages: list[dict], image_patch_size: int,
                                  config: DictConfig) -> tuple[list[Image.Image] | None, None, None]:
        """(images, videos, audios) of ``messages``, the images exactly as ``RLHFDataset`` returns them."""
        if is_torchvision_available():
            return super()._process_multi_modal_info(messages, image_patch_size, config)
        blocks = [block for message in messages if isinstance(message.get("content"), list)
                  for block in message["content"] if _is_vision_block(block)]
        media = sorted({"video" for block in blocks if "video" in block or block.get("type") == "video"}
                       | ({"audio"} if cls._extract_audio_info(messages) else set()))
        if media:
            raise ValueError(
                f"a prompt has {' and '.join(media)} blocks; without torchvision the CPU backend serves image "
                "prompts only: drop those rows, or run on a GPU machine with torchvision"
            )
        # verl calls qwen_vl_utils only when a block's type is image or video (rl_dataset.py:484-488).
        if not any(block.get("type") in ("image", "video") for block in blocks):
            return None, None, None
        return [fetch_image(block, image_patch_size) for block in blocks], None, None

    def maybe_filter_out_long_prompts(self, dataframe=None):
        """Refuse video and audio rows (naming the column and the row), then verl's length filter.

        Checked here because verl calls this on the freshly read table (``rl_dataset.py:196``): the filter itself
        would drop such rows with a traceback per row, and the message would not say which rows or why.
        """
        if not is_torchvision_available():
            images = self.image_key in dataframe.column_names and any(dataframe[self.image_key])
            if images and self.processor is None:
                raise ValueError(
                    f"{self.data_files}: column {self.image_key!r} (data.image_key) holds images, but transformers "
                    "could not load the model's processor without torchvision (verl's hf_processor warned and "
                    "returned None). On CPU, image rows run with Qwen3-VL only: Qwen2-VL and Qwen2.5-VL processors "
                    "import torchvision, and verl runs their attention with flash-attn"
                )
            for option, key in (("data.video_key", self.video_key), ("data.audio_key", self.audio_key)):
                if key not in dataframe.column_names:
                    continue
                bad = [row for row, value in enumerate(dataframe[key]) if value]
                if bad:
                    first = dataframe[bad[0]]
                    raise ValueError(
                        f"{self.data_files}: column {key!r} ({option}) is non-empty in {len(bad)} row(s), first at "
                        f"row {bad[0]} (data_source {first.get('data_source')!r}, extra_info.index "
                        f"{(first.get('extra_info') or {}).get('index')!r}); without torchvision the CPU backend "
                        "serves image prompts only: drop the column or those rows"
                    )
        return super().maybe_filter_out_long_prompts(dataframe)
