"""The teacher's image inputs for a multimodal model (Qwen3-VL): the row's images as the rollout got them, render
cache keys that hash pixels, and the per-row pixel inputs and M-RoPE positions of a ``compute_log_prob`` row, all
through verl's own dataset class and agent-loop helpers (``docs/methods.md``, "Privileged context";
``design/multimodal.md``). The teacher step (``teacher.py``) uses them; text-only models never reach them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from PIL import Image
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

from rlrt_recipe import privileged

#: The images of each of a batch of chat message lists, as verl's agent loop hands them to the rollout (None for a
#: conversation without images): ``dataset_images``.
FetchImages = Callable[[Sequence[privileged.Messages]], list[list[Any] | None]]


def is_multimodal(processor: Any) -> bool:
    """Whether ``processor`` is a multimodal one (it has an image processor): verl then builds a VL token builder,
    and the agent loop stores ``multi_modal_inputs`` and the processor's position ids with every row."""
    return processor is not None and getattr(processor, "image_processor", None) is not None


def render_key(value: Any) -> str:
    """A cache key for chat messages (or any JSON-like value) that holds images: JSON with each PIL image and each
    ``bytes`` value replaced by the sha256 of its content (mode, size and pixels for an image). Not ``str(image)``:
    that names the object's address and size, not its pixels, so a freed image's address can come back as another
    image's within the cache's lifetime, and equal images never share a key. Text-only values give the same key as
    a plain ``json.dumps``."""
    return json.dumps(value, sort_keys=True, default=_content_digest)


def _content_digest(value: Any) -> str:
    if isinstance(value, Image.Image):
        return _image_digest(value)
    if isinstance(value, (bytes, bytearray)):
        return f"bytes sha256:{hashlib.sha256(value).hexdigest()}"
    return str(value)


# Digests of live images by id(): a step keys each row's images several times (re-render check, image fetch, teacher
# renders), and hashing a 1024×768 image takes ~2 ms. An entry leaves when its image is freed, before the id can be
# reused.
_IMAGE_DIGESTS: dict[int, tuple[weakref.ref, str]] = {}


def _image_digest(image: Image.Image) -> str:
    key = id(image)
    entry = _IMAGE_DIGESTS.get(key)
    if entry is None or entry[0]() is not image:
        digest = hashlib.sha256(f"{image.mode} {image.size}".encode())
        digest.update(image.tobytes())
        entry = (weakref.ref(image, lambda _, key=key: _IMAGE_DIGESTS.pop(key, None)),
                 f"image sha256:{digest.hexdigest()}")
        _IMAGE_DIGESTS[key] = entry
    return entry[1]


def dataset_images(dataset_cls: Any, data_config: Any, processor: Any) -> FetchImages:
    """The images of chat messages exactly as verl's agent loop gets them for the rollout
    (``AgentLoopWorker.process_multi_modal_info``, ``verl/experimental/agent_loop/agent_loop.py:288-316``): the
    configured dataset class's ``process_multi_modal_info(messages, image_patch_size=<the image processor's
    patch_size>, config=data)`` (``dataset_cls`` = ``verl.utils.dataset.rl_dataset.get_dataset_class(data)``,
    ``data.custom_cls`` when set). A batch of conversations runs in one event loop, concurrently, as the agent loop's
    workers run them; a conversation with no images gets None."""
    patch_size = getattr(processor.image_processor, "patch_size", 14)  # agent_loop.py:297

    async def process(conversations: list[privileged.Messages]) -> list[tuple]:
        return await asyncio.gather(*(
            dataset_cls.process_multi_modal_info(messages, image_patch_size=patch_size, config=data_config)
            for messages in conversations
        ))

    def fetch(conversations: Sequence[privileged.Messages]) -> list[list[Any] | None]:
        return [images or None for images, _, _ in asyncio.run(process([list(m) for m in conversations]))]

    return fetch


class ConversationImages:
    """Per chat message list, its images as the rollout got them (``fetch``, e.g. ``dataset_images``), fetched once per
    distinct list of image blocks until ``clear()``. The teacher's messages keep the student's image blocks
    (``privileged.teacher_messages``), so they get the student's images, the same list; a conversation without image
    blocks gets None without a fetch."""

    def __init__(self, fetch: FetchImages):
        self.fetch = fetch
        self._images: dict[str, list[Any] | None] = {}

    def __call__(self, messages: privileged.Messages) -> list[Any] | None:
        return self.prefetch([messages])[0]

    def prefetch(self, conversations: Sequence[privileged.Messages]) -> list[list[Any] | None]:
        """The images of each conversation; the ones not cached are fetched in one call."""
        keys = [render_key(_image_blocks(m)) if privileged.has_images(m) else None for m in conversations]
        missing = {key: m for key, m in zip(keys, conversations) if key is not None and key not in self._images}
        if missing:
            self._images.update(zip(missing, self.fetch(list(missing.values()))))
        return [None if key is None else self._images[key] for key in keys]

    def clear(self) -> None:
        self._images.clear()


def without_image_data(messages: privileged.Messages) -> privileged.Messages:
    """``messages`` with each image block reduced to its type (a placeholder without pixels); text unchanged."""
    return [dict(m, content=[{"type": block["type"]} if _is_image(block) else block for block in m["content"]])
            if isinstance(m.get("content"), list) else m for m in messages]


def _image_blocks(messages: privileged.Messages) -> list[Any]:
    return [block for m in messages if isinstance(m.get("content"), list) for block in m["content"] if _is_image(block)]


def _is_image(block: Any) -> bool:
    return isinstance(block, Mapping) and block.get("type") in privileged.IMAGE_BLOCKS


class VisionInputs:
    """A multimodal model's per-row inputs of a ``compute_log_prob`` row, as verl's agent loop stores them with the
    student's rows (``verl/trainer/ppo/v1/agent_loop_tq.py:185-202``): ``multi_modal_inputs`` from
    ``AgentLoopWorker._compute_multi_modal_inputs`` (the processor's features of the row's images: ``pixel_values``,
    ``image_grid_thw``, ``images_seqlens``; ``{}`` for a row without images) and ``position_ids`` from
    ``AgentLoopWorker._compute_position_ids`` ((4, L) for a processor with ``get_rope_index``: text positions, then
    M-RoPE t/h/w). verl's own helpers, called unbound on a worker holding only the attributes they read (as verl's CPU
    tests do), so M-RoPE is never re-derived here."""

    def __init__(self, processor: Any, tokenizer: Any, mm_processor_kwargs: dict[str, Any] | None):
        self.worker = object.__new__(AgentLoopWorker)
        self.worker.processor, self.worker.tokenizer = processor, tokenizer
        self.worker.mm_processor_kwargs = dict(mm_processor_kwargs or {})  # AgentLoopWorker: data.mm_processor_kwargs

    def __call__(self, ids: torch.Tensor, images: list[Any] | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(``multi_modal_inputs``, ``position_ids`` [4, L]) of the row ``ids`` [L] showing ``images``."""
        output = SimpleNamespace(multi_modal_data={"images": images} if images else {}, mm_processor_kwargs=None)
        inputs = AgentLoopWorker._compute_multi_modal_inputs(self.worker, output, ids)
        # pops mm_token_type_ids from ``inputs``: what remains is what the agent loop stores
        positions = AgentLoopWorker._compute_position_ids(self.worker, ids[None], torch.ones_like(ids)[None], inputs)
        return inputs, positions.squeeze(0)
