"""A tiny random-weight Qwen3-VL model with a locally trained tokenizer and its processor, saved like a hub model.

``build_tiny_vl_model(out_dir, TinyVLSpec(...))`` writes ``config.json``, the weights, ``generation_config.json``
(EOS ids ``<|im_end|>`` and ``<|endoftext|>``), the tokenizer (``tiny_model.train_tokenizer`` plus Qwen-VL's
vision tokens) and ``processor_config.json`` (the PIL image processor and the Qwen3-VL video processor), with one
Qwen-VL-style chat template shared by processor and tokenizer (``chat_template.jinja``). The default spec has
about 0.22 M parameters (about half of them in the vision tower); a 64×64 image becomes 4 image tokens.

Only Qwen3-VL: Qwen2-VL's video processor imports torchvision at module top, which the CPU build lacks. Without
torchvision, building (and later loading) the processor needs ``rlrt_recipe.cpu.vision.use_real_video_processor()``
first; this module does not call it, because ``testing`` sits below ``cpu`` in the house.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from rlrt_recipe.testing.tiny_model import END_OF_TEXT, IM_END, SPECIAL_TOKENS, train_tokenizer

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
VISION_TOKENS = [VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD]

# Qwen2-VL/Qwen3-VL style (without their default system prompt): ``content`` is a string or a list of
# ``{"type": "image" | "video" | "text"}`` blocks; a media block is one placeholder the processor expands to the
# image's token count.
QWEN_VL_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for block in message['content'] -%}"
    "{%- if block['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif block['type'] == 'video' -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif block['type'] == 'text' -%}{{- block['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class TinyVLSpec:
    """Size of a tiny Qwen3-VL model: the text decoder (``hidden_size`` … ``mrope_section``), the vision tower
    (``vision_*``, patching and merging) and the image processor's pixel budget. ``vocab_size`` is the embedding
    size; the trained BPE vocabulary may be smaller."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    mrope_section: tuple[int, int, int] = (4, 2, 2)  # rotary pairs for (t, h, w); sums to head_dim // 2
    vocab_size: int = 512
    max_position_embeddings: int = 2048
    vision_depth: int = 2
    vision_hidden_size: int = 32
    vision_num_heads: int = 2
    vision_num_position_embeddings: int = 64  # the tower's learned position grid: a perfect square
    deepstack_visual_indexes: tuple[int, ...] = (1,)  # vision layers whose features also feed the decoder
    patch_size: int = 16
    spatial_merge_size: int = 2  # 2×2 patches merge into one image token
    temporal_patch_size: int = 2
    min_pixels: int = 32 * 32
    max_pixels: int = 128 * 128
    seed: int = 0

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads or self.vision_hidden_size % self.vision_num_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads}) and "
                f"vision_hidden_size ({self.vision_hidden_size}) by vision_num_heads ({self.vision_num_heads})"
            )
        if any(not 0 <= i < self.vision_depth for i in self.deepstack_visual_indexes):
            raise ValueError(
                f"deepstack_visual_indexes must be vision layer indices in [0, {self.vision_depth}), "
                f"got {self.deepstack_visual_indexes}"
            )
        if math.isqrt(self.vision_num_position_embeddings) ** 2 != self.vision_num_position_embeddings:
            raise ValueError(
                f"vision_num_position_embeddings must be a perfect square, got {self.vision_num_position_embeddings}"
            )
        if self.vocab_size < 256 + len(SPECIAL_TOKENS) + len(VISION_TOKENS):
            raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS) + len(VISION_TOKENS)}")


def build_vl_tokenizer(spec: TinyVLSpec) -> PreTrainedTokenizerFast:
    """The tiny text model's byte-level BPE with the four vision tokens as special tokens and the Qwen-VL template."""
    return train_tokenizer(spec.vocab_size, QWEN_VL_TEMPLATE, model_max_length=spec.max_position_embeddings,
                           seed=spec.seed, extra_special_tokens=VISION_TOKENS)


def build_vl_config(spec: TinyVLSpec, tokenizer: PreTrainedTokenizerFast) -> Qwen3VLConfig:
    """``Qwen3VLConfig`` for the spec, its special token ids taken from ``tokenizer`` (the processor expands
    ``<|image_pad|>`` by the tokenizer's id and the model scatters image features by ``config.image_token_id``)."""
    ids = dict(zip(VISION_TOKENS, tokenizer.convert_tokens_to_ids(VISION_TOKENS)))
    eos_id, pad_id = tokenizer.convert_tokens_to_ids([IM_END, END_OF_TEXT])
    text_config = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=2 * spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        rope_parameters=dict(rope_type="default", rope_theta=500000.0, mrope_section=list(spec.mrope_section),
                             mrope_interleaved=True),
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    vision_config = dict(
        depth=spec.vision_depth,
        hidden_size=spec.vision_hidden_size,
        intermediate_size=2 * spec.vision_hidden_size,
        num_heads=spec.vision_num_heads,
        patch_size=spec.patch_size,
        spatial_merge_size=spec.spatial_merge_size,
        temporal_patch_size=spec.temporal_patch_size,
        out_hidden_size=spec.hidden_size,  # merged image features replace token embeddings
        num_position_embeddings=spec.vision_num_position_embeddings,
        deepstack_visual_indexes=list(spec.deepstack_visual_indexes),
    )
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=True,
    )


def build_vl_processor(spec: TinyVLSpec, tokenizer: PreTrainedTokenizerFast) -> Qwen3VLProcessor:
    """``Qwen3VLProcessor`` with the PIL image processor (no torchvision needed) and the Qwen3-VL video processor
    (constructible without torchvision; only processing videos needs it), carrying the chat template."""
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=spec.patch_size,
        merge_size=spec.spatial_merge_size,
        temporal_patch_size=spec.temporal_patch_size,
        min_pixels=spec.min_pixels,
        max_pixels=spec.max_pixels,
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=spec.patch_size, merge_size=spec.spatial_merge_size, temporal_patch_size=spec.temporal_patch_size
    )
    try:
        return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                                chat_template=QWEN_VL_TEMPLATE)
    except TypeError as err:  # "... but a BaseVideoProcessor was expected": the dummy class of a torchvision-less install
        raise RuntimeError(
            "transformers cannot build a Qwen3VLProcessor without torchvision: call "
            "rlrt_recipe.cpu.vision.use_real_video_processor() (or import rlrt_recipe.cpu) before building the model"
        ) from err


def build_tiny_vl_model(out_dir: str | os.PathLike, spec: TinyVLSpec = TinyVLSpec()) -> str:
    """Write a random-weight Qwen3-VL model, its processor, tokenizer and generation config to ``out_dir``."""
    out_dir = os.fspath(out_dir)
    tokenizer = build_vl_tokenizer(spec)
    config = build_vl_config(spec, tokenizer)
    text = config.text_config
    # transformers does not check this: a wrong sum silently leaves part of each head with 1-D rotary.
    assert sum(text.rope_parameters["mrope_section"]) == text.head_dim // 2, (
        f"mrope_section {text.rope_parameters['mrope_section']} must sum to head_dim // 2 = {text.head_dim // 2}"
    )
    processor = build_vl_processor(spec, tokenizer)  # before writing anything: it fails without the video fix
    torch.manual_seed(spec.seed)
    model = Qwen3VLForConditionalGeneration(config)
    eos_ids = tokenizer.convert_tokens_to_ids([IM_END, END_OF_TEXT])
    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=eos_ids[1], bos_token_id=eos_ids[1])
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "tiny_vl_model_spec.txt"), "w", encoding="utf-8") as fh:
        fh.write(repr(dataclasses.asdict(spec)) + "\n")
    return out_dir
