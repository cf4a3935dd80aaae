"""The teacher step on image rows (issue 20): a tiny Qwen3-VL model, rows stored as verl's agent loop stores them, and
the teacher batch scored by verl's real FSDP engine in gloo processes (``rlrt_recipe.testing.engine.infer_batch``).

The rollout's images come through the configured dataset class (``images.dataset_images``): here the CPU backend's
``TorchvisionFreeRLHFDataset`` (``data.custom_cls`` of ``recipes/env/cpu_vl.yaml``), since verl's own ``RLHFDataset``
resizes images with qwen_vl_utils, which imports torchvision (absent on this machine). The 64×64, 96×64 and 96×96
images are multiples of 32 pixels, so neither it nor the image processor resizes them.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import verl
from omegaconf import OmegaConf
from PIL import Image
from tensordict import TensorDict
from transformers import AutoConfig, Qwen3VLForConditionalGeneration
from verl.utils import tensordict_utils as tu
from verl.utils.tokenizer import hf_processor, hf_tokenizer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from rlrt_recipe import privileged
from rlrt_recipe.config import RlrtConfig, load_rlrt_config
from rlrt_recipe.cpu.dataset import TorchvisionFreeRLHFDataset
from rlrt_recipe.integration.preflight import (
    ImageTeacherPromptLengths,
    PromptLengths,
    find_unservable_rows,
    preflight_train_dataset,
)
from rlrt_recipe.integration.images import ConversationImages, VisionInputs, dataset_images, render_key
from rlrt_recipe.integration.teacher import PromptRenderer, TeacherBatchLayout, TeacherStep, generation_prompt
from rlrt_recipe.testing.engine import infer_batch
from rlrt_recipe.testing.forward import response_log_probs
from rlrt_recipe.testing.tiny_model import SPECIAL_TOKENS
from rlrt_recipe.testing.tiny_vl_model import IMAGE_PAD, VISION_TOKENS

PROMPT_LENGTH = 128
TOLERANCE = 1e-5
IMAGE = object()  # stands for the row's next image in ROWS
# (user content, image sizes (width, height), response length, ground truth); every row's total length differs
# (verl 0.9.1 breaks 3-D position ids of equal-length rows, verl#7899).
ROWS = [
    ([IMAGE, "What shape is this?"], [(64, 64)], 6, "circle"),
    ([IMAGE, IMAGE, "Same colour?"], [(64, 64), (96, 96)], 8, "yes"),
    (["Describe:", IMAGE], [(96, 64)], 10, "a square"),
    ("What is 2 + 3?", [], 12, "5"),
]
IDENTITY = {"answer": "{question}", "solution": "{question}"}


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    """Random pixels: every patch differs, so a patch or position order mistake changes the features."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def user_message(content, images) -> dict:
    if isinstance(content, str):
        return {"role": "user", "content": content}
    images = iter(images)
    return {"role": "user", "content": [{"type": "image", "image": next(images)} if part is IMAGE
                                        else {"type": "text", "text": part} for part in content]}


@pytest.fixture(scope="module")
def vl(tiny_vl_model_dir):
    tokenizer, processor = hf_tokenizer(tiny_vl_model_dir), hf_processor(tiny_vl_model_dir)
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_vl_model_dir, dtype=torch.float32).eval()
    return SimpleNamespace(dir=tiny_vl_model_dir, tokenizer=tokenizer, processor=processor, model=model,
                           fetch=dataset_images(TorchvisionFreeRLHFDataset, OmegaConf.create({}), processor),
                           vision_ids=set(tokenizer.convert_tokens_to_ids(VISION_TOKENS)))


def direct_inputs(vl, ids: list[int], images) -> dict[str, torch.Tensor]:
    """A plain transformers forward's vision inputs, from the image processor itself (not verl's helpers)."""
    if not images:
        return {}
    pixels = vl.processor.image_processor(images=images, return_tensors="pt")
    return {"pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"],
            "mm_token_type_ids": (torch.tensor([ids]) == vl.model.config.image_token_id).long()}


@dataclass
class StoredRow:
    messages: list[dict]
    images: list[Image.Image] | None
    prompt: list[int]
    response: list[int]
    multi_modal_inputs: dict[str, torch.Tensor]  # as the agent loop stores the student's row
    position_ids: torch.Tensor  # [4, P + R]
    old_log_probs: torch.Tensor  # [R], a transformers forward (verl's engine equals it to 1e-6, test_vl_engine.py)


@pytest.fixture(scope="module")
def stored_rows(vl) -> list[StoredRow]:
    """ROWS as the rollout produced them: the images through the dataset class, the prompt from verl's Qwen-VL builder
    with them, random non-special response tokens ending with EOS."""
    builder = create_continuous_token_builder(vl.tokenizer, hf_model_type="qwen3_vl", chat_template_kwargs={},
                                              processor=vl.processor)
    vision = VisionInputs(vl.processor, vl.tokenizer, {})
    generator = torch.Generator().manual_seed(0)
    first_plain_id = len(SPECIAL_TOKENS) + len(VISION_TOKENS)  # a sampled vision token would break verl's helpers
    rows = []
    for i, (content, sizes, response_len, _) in enumerate(ROWS):
        messages = [user_message(content, [noise_image(w, h, seed=10 * i + k) for k, (w, h) in enumerate(sizes)])]
        images = vl.fetch([messages])[0]  # the agent loop's process_multi_modal_info
        prompt = builder.build_initial_tokens(messages, images=images)
        body = torch.randint(first_plain_id, len(vl.tokenizer), (response_len - 1,), generator=generator).tolist()
        response = body + [vl.tokenizer.eos_token_id]
        inputs, positions = vision(torch.tensor(prompt + response), images)
        old = response_log_probs(vl.model, prompt, response, **direct_inputs(vl, prompt + response, images))
        rows.append(StoredRow(messages, images, prompt, response, inputs, positions, old))
    lengths = [len(r.prompt) + len(r.response) for r in rows]
    assert len(set(lengths)) == len(lengths), f"row lengths must differ (verl#7899), got {lengths}"
    return rows


def stored_batch(vl, rows: list[StoredRow], *, raw_prompts=None) -> tuple[TensorDict, list[bool]]:
    """What ``tq.kv_batch_get`` returns for the step (``teacher.INPUT_FIELDS``): the rows, then one verl padding row
    (EOS prompt and response, mask 0, a deep copy of row 0's columns, images included)."""
    eos = vl.tokenizer.eos_token_id
    raw = raw_prompts or [r.messages for r in rows]
    prompts = [torch.tensor(r.prompt) for r in rows] + [torch.full((8,), eos)]
    responses = [torch.tensor(r.response) for r in rows] + [torch.tensor([eos])]
    rewards = []
    for k, response in enumerate(responses):
        reward = torch.zeros(len(response))
        reward[-1] = float(k % 2 == 0 and k < len(rows))
        rewards.append(reward)
    answers = [answer for *_, answer in ROWS]
    data = tu.get_tensordict({
        "prompts": tu.nested_tensor_from_tensor_list(prompts),
        "responses": tu.nested_tensor_from_tensor_list(responses),
        "response_mask": tu.nested_tensor_from_tensor_list(
            [torch.ones(len(r.response), dtype=torch.int64) for r in rows] + [torch.zeros(1, dtype=torch.int64)]),
        "old_log_probs": tu.nested_tensor_from_tensor_list([r.old_log_probs for r in rows] + [torch.zeros(1)]),
        "rm_scores": tu.nested_tensor_from_tensor_list(rewards),
        "raw_prompt": list(raw) + [copy.deepcopy(raw[0])],
        "reward_model": [{"style": "rule", "ground_truth": a} for a in answers] + [{"ground_truth": answers[0]}],
        "extra_info": [{} for _ in range(len(rows) + 1)],
        "data_source": ["shapes"] * (len(rows) + 1),
        "uid": ["a", "a", "b", "b", "pad0"],
    })
    return data, [False] * len(rows) + [True]


def teacher_step(vl, *, templates=None, layout=None) -> TeacherStep:
    """The teacher step as ``_build_teacher_step`` builds it for a Qwen3-VL model; opsd scores every real row with the
    answer template (no row has a solution)."""
    section = {"privileged_templates": templates} if templates else {}
    rlrt_cfg = RlrtConfig.from_section(section).resolved("opsd", max_prompt_length=PROMPT_LENGTH, max_response_length=16)
    return TeacherStep(
        rlrt_cfg=rlrt_cfg, adv_estimator="opsd", tokenizer=vl.tokenizer, hf_model_type="qwen3_vl",
        chat_template_kwargs={}, prompt_length=PROMPT_LENGTH, processor=vl.processor, mm_processor_kwargs={},
        images=vl.fetch,
        layout=layout or TeacherBatchLayout(dp_size=1, micro_batch_size_per_gpu=1, max_token_len_per_gpu=None,
                                            temperature=1.0),
    )


class EngineWorkerGroup:
    """``actor_rollout_wg.compute_log_prob`` served by verl's ``TrainingWorker.infer_batch`` (FSDP2, fp32) on
    ``world_size`` gloo ranks, each taking its contiguous data-parallel chunk as verl's dispatch does; records what it
    was sent."""

    def __init__(self, model_dir: str, world_size: int):
        self.model_dir, self.world_size, self.calls = model_dir, world_size, []

    def compute_log_prob(self, td: TensorDict) -> TensorDict:
        self.calls.append(td)
        rows = infer_batch(self.model_dir, td, world_size=self.world_size)["log_probs"]
        return TensorDict({"log_probs": torch.nested.as_nested_tensor(rows, layout=torch.jagged)}, batch_size=[len(rows)])


def position_rows(position_ids: torch.Tensor) -> list[torch.Tensor]:
    """Each row [4, L] of nested position ids ragged in the last dimension (``unbind`` splits the wrong dimension of
    3-D jagged tensors, pytorch#153238)."""
    values, offsets = position_ids.values(), position_ids.offsets().tolist()
    return [values[:, a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def vision_tokens(vl, ids) -> list[int]:
    return [t for t in ids if t in vl.vision_ids]


def test_identity_template_gives_the_students_rows_and_zero_gap(vl, stored_rows):
    """Guards the alignment on image rows: with the identity template every real row's teacher prompt is the student's
    prompt token for token (images expanded as the rollout expanded them), its positions and vision inputs are the
    ones verl stored for the student, and verl's engine scores it as the student: |τ − s| ≤ 1e-5 on every token."""
    data, padding = stored_batch(vl, stored_rows)
    wg = EngineWorkerGroup(vl.dir, world_size=1)
    fields, metrics = teacher_step(vl, templates=IDENTITY).run(data, padding, 1, wg.compute_log_prob)
    assert fields["has_teacher"].tolist() == [True] * 4 + [False]  # verl's padding row is never scored
    sent = wg.calls[0]
    assert len(sent) == 4 and metrics["rlrt/teacher_token_ratio"] == pytest.approx(1.0)
    assert [p.tolist() for p in sent["prompts"].unbind()] == [r.prompt for r in stored_rows]
    for row, positions, inputs in zip(stored_rows, position_rows(sent["position_ids"]),
                                      list(sent["multi_modal_inputs"]), strict=True):
        assert torch.equal(positions, row.position_ids)
        assert inputs.keys() == row.multi_modal_inputs.keys()
        assert all(torch.equal(inputs[k], row.multi_modal_inputs[k]) for k in inputs)
    gaps = [(tau - row.old_log_probs).abs().max().item()
            for tau, row in zip(fields["teacher_log_probs"].unbind(), stored_rows)]
    print(f"identity template: max |τ − s| per row {gaps}")
    assert max(gaps) <= TOLERANCE


def test_answer_template_keeps_the_images_and_equals_a_direct_forward(vl, stored_rows):
    """Guards the answer context on image rows through two data-parallel ranks: each teacher prompt holds the
    student's image tokens in the same order plus the reference answer; the padding rows added for the split carry
    no images and (4, L) positions; τ of every row equals a plain transformers forward of (teacher prompt + response)
    with the image processor's pixels to 1e-5, and differs from s (the answer moves the log-probs)."""
    data, padding = stored_batch(vl, stored_rows)
    wg = EngineWorkerGroup(vl.dir, world_size=2)
    layout = TeacherBatchLayout(dp_size=2, micro_batch_size_per_gpu=3, max_token_len_per_gpu=None, temperature=1.0)
    fields, _ = teacher_step(vl, layout=layout).run(data, padding, 1, wg.compute_log_prob)
    assert fields["has_teacher"].tolist() == [True] * 4 + [False]
    sent = wg.calls[0]
    assert len(sent) == 6  # 4 teacher rows + 2 rows for the split: rank 1 holds the text row and both
    assert list(sent["multi_modal_inputs"])[4:] == [{}, {}]
    assert [p.shape for p in position_rows(sent["position_ids"])[4:]] == [(4, 2), (4, 2)]
    gaps, direct = [], []
    for i, (row, prompt, tau) in enumerate(zip(stored_rows, sent["prompts"].unbind(),
                                               fields["teacher_log_probs"].unbind())):
        prompt = prompt.tolist()
        assert vision_tokens(vl, prompt) == vision_tokens(vl, row.prompt), i
        assert f"The reference final answer is: {ROWS[i][3]}" in vl.tokenizer.decode(prompt)
        expected = response_log_probs(vl.model, prompt, row.response,
                                      **direct_inputs(vl, prompt + row.response, row.images))
        direct.append((tau - expected).abs().max().item())
        gaps.append((tau - row.old_log_probs).abs().max().item())
    print(f"answer template: max |τ − s| per row {gaps}; max |τ − direct forward| per row {direct}")
    assert max(direct) <= TOLERANCE
    assert min(gaps) > 100 * TOLERANCE
    two_images = sent["prompts"].unbind()[1].tolist()
    assert two_images.count(vl.tokenizer.convert_tokens_to_ids(IMAGE_PAD)) == 4 + 9  # 64×64 and 96×96


def test_a_stored_prompt_rendered_from_other_images_names_the_row(vl, stored_rows):
    """Guards the re-render check on image rows: raw_prompt whose second image is not the one the rollout saw (another
    size, so another number of image tokens) is refused before any teacher row is built, naming the row."""
    raw = [r.messages for r in stored_rows]
    swapped = copy.deepcopy(raw[1])
    swapped[0]["content"][1]["image"] = noise_image(64, 64, seed=99)
    data, padding = stored_batch(vl, stored_rows, raw_prompts=[raw[0], swapped, *raw[2:]])
    stored = len(stored_rows[1].prompt)
    with pytest.raises(ValueError, match=rf"row 1 \(data_source='shapes', uid='a'\): re-rendering raw_prompt with its "
                                         rf"images .*gives {stored - 5} tokens that differ from the {stored} stored"):
        teacher_step(vl).run(data, padding, 1, compute_log_prob=None)  # 96×96 is 9 image tokens, 64×64 is 4


def test_multimodal_step_needs_the_rollouts_images(vl, stored_rows):
    """Guards the wiring: a multimodal model without the images function cannot render its rows, so it is refused at
    construction; G(M) of an image row, taken without pixels, equals verl's diff of the two renders with them."""
    rlrt_cfg = RlrtConfig().resolved("opsd", max_prompt_length=PROMPT_LENGTH, max_response_length=16)
    with pytest.raises(ValueError, match=r"multimodal model needs the rollout's images"):
        TeacherStep(rlrt_cfg=rlrt_cfg, adv_estimator="opsd", tokenizer=vl.tokenizer, hf_model_type="qwen3_vl",
                    chat_template_kwargs={}, prompt_length=PROMPT_LENGTH, processor=vl.processor,
                    layout=TeacherBatchLayout(dp_size=1, micro_batch_size_per_gpu=1, max_token_len_per_gpu=None,
                                              temperature=1.0))
    builder = teacher_step(vl).render.builder
    messages = stored_rows[1].messages
    assert generation_prompt(builder, messages, where="row 1") == list(
        builder.render_delta_token_id(messages, [], add_generation_prompt=True))


def test_sdpo_step_hands_the_topk_pass_each_teacher_rows_pixels_and_positions(vl, stored_rows):
    """SDPO on image rows (RLSD's comparison): the step picks the wrong rows with a correct sibling (rows 1 and 3; rows 0
    and 2 are correct, a group each with a wrong row) and hands the top-K pass, besides their prompts, each row's
    ``multi_modal_inputs`` (the student's pixels: the demonstration adds text only) and (4, L) positions over teacher
    prompt ‖ response, as ``VisionInputs`` computes them for that row (the M-RoPE of the longer prompt, not the
    student's). The worker side of these fields is checked against transformers in test_vl_engine.py."""
    rlrt_cfg = RlrtConfig().resolved("grpo", max_prompt_length=PROMPT_LENGTH, max_response_length=16, loss_mode="sdpo")
    step = TeacherStep(rlrt_cfg=rlrt_cfg, adv_estimator="grpo", loss_mode="sdpo", tokenizer=vl.tokenizer,
                       hf_model_type="qwen3_vl", chat_template_kwargs={}, prompt_length=PROMPT_LENGTH,
                       processor=vl.processor, mm_processor_kwargs={}, images=vl.fetch,
                       layout=TeacherBatchLayout(dp_size=1, micro_batch_size_per_gpu=1, max_token_len_per_gpu=None,
                                                 temperature=1.0))
    calls = []

    def score_rows(teacher_rows, teacher_prompts, vision_rows):
        calls.append((list(teacher_rows), [list(p) for p in teacher_prompts], vision_rows))
        return [torch.zeros(len(stored_rows[i].response)) for i in teacher_rows], len(teacher_rows)

    data, padding = stored_batch(vl, stored_rows)
    fields, _ = step.run(data, padding, 1, compute_log_prob=None, score_rows=score_rows)
    (rows, prompts, vision), = calls
    assert rows == [1, 3] and fields["has_teacher"].tolist() == [False, True, False, True, False]
    vision_inputs = VisionInputs(vl.processor, vl.tokenizer, {})
    for i, prompt, (inputs, positions) in zip(rows, prompts, vision, strict=True):
        row = stored_rows[i]
        assert vision_tokens(vl, prompt) == vision_tokens(vl, row.prompt) and len(prompt) > len(row.prompt)
        assert inputs.keys() == row.multi_modal_inputs.keys()
        assert all(torch.equal(inputs[k], row.multi_modal_inputs[k]) for k in inputs)  # {} for the text row 3
        expected_inputs, expected_positions = vision_inputs(torch.tensor(prompt + row.response), row.images)
        assert positions.shape == (4, len(prompt) + len(row.response))
        assert torch.equal(positions, expected_positions)
    assert "pixel_values" in vision[0][0]


def test_image_cache_keys_on_pixels_not_on_the_object():
    """Guards the render and image caches: two different images of one size get different keys (``str(image)`` would
    name only the size and an address), a copy of an image hits the cached images, text keys are plain JSON."""
    calls = []

    def fetch(conversations):  # the images of the blocks, as they are
        calls.append(len(conversations))
        return [[b["image"] for m in c for b in m["content"] if b["type"] == "image"] for c in conversations]

    images = ConversationImages(fetch)
    first, other = noise_image(64, 64, seed=1), noise_image(64, 64, seed=2)
    message = {"role": "user", "content": [{"type": "image", "image": first}, {"type": "text", "text": "x"}]}
    other_message = {"role": "user", "content": [{"type": "image", "image": other}, {"type": "text", "text": "x"}]}
    assert render_key([message]) != render_key([other_message])
    assert images([message])[0] is first and images([other_message])[0] is other
    copied = copy.deepcopy(message)
    assert images([copied])[0] is first and calls == [1, 1]  # the copy's pixels are cached
    text = [{"role": "user", "content": "What is 2 + 3?"}]
    assert render_key(text) == '[{"content": "What is 2 + 3?", "role": "user"}]' and images(text) is None
    assert calls == [1, 1]  # a conversation without image blocks is not fetched


def test_build_teacher_step_reads_the_text_config_and_the_configured_dataset_class(vl):
    """Guards the trainer wiring for a Qwen3-VL model: the teacher-row length bound reads the text config's
    max_position_embeddings (the top level has none), and the step renders with the processor and takes the rollout's
    images from data.custom_cls."""
    from rlrt_recipe.integration.trainer import RlrtSyncTrainer

    cfg = OmegaConf.load(Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml")
    cfg.algorithm.adv_estimator = "rlsd"
    cfg.data.custom_cls = {"path": "pkg://rlrt_recipe.cpu.dataset", "name": "TorchvisionFreeRLHFDataset"}
    trainer = object.__new__(RlrtSyncTrainer)
    trainer.config, trainer.adv_estimator, trainer.loss_mode, trainer.teacher_on_reference = cfg, "rlsd", "vanilla", False
    trainer.tokenizer, trainer.processor, trainer.generation_config = vl.tokenizer, vl.processor, None
    trainer.hf_config = AutoConfig.from_pretrained(vl.dir)
    trainer.actor_rollout_wg = SimpleNamespace(_dispatch_info={"actor": [0]})
    assert getattr(trainer.hf_config, "max_position_embeddings", None) is None
    cfg.rlrt = {"max_privileged_prompt_length": 1537}
    trainer.rlrt_cfg = load_rlrt_config(cfg)
    with pytest.raises(ValueError, match=r"max_privileged_prompt_length \+ data\.max_response_length = 2049 tokens, over the model's "
                                         r"max_position_embeddings=2048"):
        trainer._build_teacher_step()
    cfg.rlrt = {"max_privileged_prompt_length": 1536}
    trainer.rlrt_cfg = load_rlrt_config(cfg)
    step = trainer._build_teacher_step()
    assert step.vision is not None and step.render.builder.supports_multimodal()
    image = noise_image(64, 64, seed=3)
    (fetched,) = step.images([{"role": "user", "content": [{"type": "image", "image": image}]}])
    assert np.array_equal(np.asarray(fetched), np.asarray(image))  # verl's default class would need torchvision


# --- the pre-flight on image rows ----------------------------------------------------------------------------------

LONG_SOLUTION = "The two circles are both red, so yes. " * 16


def image_row_info(index, content, sizes, *, ground_truth="yes", solution=None, seed=0):
    images = [noise_image(w, h, seed=seed + k) for k, (w, h) in enumerate(sizes)]
    return privileged.RowInfo.from_fields(index, raw_prompt=[user_message(content, images)],
                                          reward_model={"ground_truth": ground_truth},
                                          extra_info={"solution": solution}, data_source="shapes", uid="")


def preflight_lengths(vl):
    """The pre-flight's two measures: placeholders only (no images), and exact with the rollout's images (counting the
    conversations whose images it fetched)."""
    fetched = []

    def fetch(conversations):
        fetched.extend(conversations)
        return vl.fetch(conversations)

    renderer = PromptRenderer(vl.tokenizer, hf_model_type="qwen3_vl", chat_template_kwargs={}, processor=vl.processor,
                              mm_processor_kwargs={}, images=ConversationImages(fetch))
    lengths = PromptLengths(vl.tokenizer, hf_model_type="qwen3_vl", chat_template_kwargs={}, processor=vl.processor)
    return lengths, ImageTeacherPromptLengths(renderer, renderer), renderer, fetched


def test_preflight_measures_image_rows_with_pixels_only_near_the_budget(vl):
    """Guards the pre-flight's image rows: a short solution fits by the bound prompt_length + (teacher − student) and
    costs no image processing; a long one is rendered exactly with its images (the teacher step's own render) and
    reported with that length; a row whose bound is over but whose exact prompt fits passes; a video row is reported
    as unsupported, the text row as before."""
    rows = [
        image_row_info(0, [IMAGE, "Same colour?"], [(64, 64)], solution="Yes."),
        image_row_info(1, [IMAGE, IMAGE, "Same colour?"], [(64, 64), (96, 96)], solution=LONG_SOLUTION, seed=10),
        image_row_info(2, [IMAGE, "Same colour?"], [(64, 64)], solution=LONG_SOLUTION, seed=20),
        privileged.RowInfo.from_fields(3, raw_prompt=[{"role": "user", "content": [{"type": "video", "video": "v.mp4"},
                                                                                   {"type": "text", "text": "Why?"}]}],
                                       reward_model={"ground_truth": "1"}, extra_info={}, data_source="shapes", uid=""),
        privileged.RowInfo.from_fields(4, raw_prompt=[{"role": "user", "content": "What is 2 + 3?"}],
                                       reward_model={"ground_truth": "5"}, extra_info={}, data_source="shapes", uid=""),
    ]
    lengths, exact_lengths, renderer, fetched = preflight_lengths(vl)
    templates = privileged.validate_templates()
    teacher = {i: privileged.teacher_messages(rows[i], "solution", rows[i].solution, templates) for i in (0, 1, 2)}
    exact = {i: len(renderer(teacher[i])) for i in (1, 2)}
    bound = {i: PROMPT_LENGTH + lengths([teacher[i]])[0] - lengths([list(rows[i].messages)])[0] for i in (0, 1, 2)}
    renderer.clear()  # the images and renders measured above
    fetched.clear()
    budget = exact[1] - 1  # row 1 is over; row 2 (one 64×64 image fewer) fits, though its bound does not
    assert bound[0] <= budget and exact[2] <= budget < bound[2]
    problems = find_unservable_rows(rows, lengths, file="shapes.parquet", context="solution", sibling_fallback="none",
                                    templates=templates, prompt_length=PROMPT_LENGTH, budget=budget,
                                    image_teacher_prompt_lengths=exact_lengths)
    assert [(p.index, p.kind, p.length) for p in problems] == [(1, "teacher_over_budget", exact[1]),
                                                               (3, "unsupported_content", None)]
    assert "'video' content block" in problems[1].detail
    assert [render_key(m) for m in fetched] == [render_key(list(rows[i].messages)) for i in (1, 2)]  # not row 0


def test_preflight_of_a_verl_dataset_with_image_rows_drops_the_unservable_ones(vl, tmp_path, capsys, caplog):
    """Guards the dataset-level pre-flight on image rows: verl's dataset builds each row's messages from ``<image>``
    placeholders and the images column (PNG bytes, as parquet stores them), the over-budget image row is found with
    its exact length and dropped by rlrt.preflight_skip, the others stay."""
    def png(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    table = [
        {"prompt": [{"role": "user", "content": "<image>Same colour?"}], "images": [png(noise_image(64, 64, 1))],
         "solution": "Yes."},
        {"prompt": [{"role": "user", "content": "<image><image>Same colour?"}],
         "images": [png(noise_image(64, 64, 2)), png(noise_image(96, 96, 3))], "solution": LONG_SOLUTION * 3},
        {"prompt": [{"role": "user", "content": "What is 2 + 3?"}], "images": None, "solution": "5"},
    ]
    pd.DataFrame([dict(prompt=r["prompt"], images=r["images"], data_source="shapes",
                       reward_model={"style": "rule", "ground_truth": "yes"},
                       extra_info={"index": i, "solution": r["solution"]}) for i, r in enumerate(table)]
                 ).to_parquet(tmp_path / "train.parquet")
    data = OmegaConf.create({"train_files": str(tmp_path / "train.parquet"), "max_prompt_length": PROMPT_LENGTH,
                             "filter_overlong_prompts": False, "mm_processor_kwargs": {}})
    dataset = TorchvisionFreeRLHFDataset(str(tmp_path / "train.parquet"), vl.tokenizer, data, processor=vl.processor)
    config = OmegaConf.create({"data": data, "actor_rollout_ref": {"rollout": {"prompt_length": PROMPT_LENGTH}}})
    rlrt_cfg = RlrtConfig.from_section({"preflight_skip": True}).resolved(
        "opsd", max_prompt_length=PROMPT_LENGTH, max_response_length=16)
    row_1 = privileged.RowInfo.from_fields(1, raw_prompt=dataset[1]["raw_prompt"], reward_model={},
                                           extra_info={"solution": LONG_SOLUTION * 3}, data_source="shapes", uid="")
    _, _, renderer, _ = preflight_lengths(vl)
    exact = len(renderer(privileged.teacher_messages(row_1, "solution", row_1.solution, privileged.DEFAULT_TEMPLATES)))
    fetched = []

    def fetch(conversations):
        fetched.extend(conversations)
        return dataset_images(TorchvisionFreeRLHFDataset, data, vl.processor)(conversations)

    with caplog.at_level("WARNING", logger="rlrt_recipe"):
        dropped = preflight_train_dataset(dataset, config=config, rlrt_cfg=rlrt_cfg, tokenizer=vl.tokenizer,
                                          hf_model_type="qwen3_vl", processor=vl.processor, mm_processor_kwargs={},
                                          images=fetch)
    assert dropped == 1 and len(fetched) == 1  # only row 1 was rendered with its images
    assert f"row 1 (data_source='shapes'): solution teacher prompt is {exact} tokens > {2 * PROMPT_LENGTH}" in caplog.text
    assert [dataset[k]["extra_info"]["index"] for k in range(len(dataset))] == [0, 2]
    assert "dropped 1 of 3 training rows" in capsys.readouterr().out
