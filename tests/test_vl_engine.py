"""The multimodal spike: a tiny Qwen3-VL forward through verl's FSDP engine on CPU equals transformers'.

Rows are what verl's agent loop stores for training (``verl/trainer/ppo/v1/agent_loop_tq.py:185-202``): prompt ids
from verl's Qwen-VL token builder (processor chat template, image placeholders expanded) ‖ response ids, nested;
``multi_modal_inputs`` per row from ``AgentLoopWorker._compute_multi_modal_inputs``; (4, L) ``position_ids`` (text
positions, then M-RoPE t/h/w) from ``AgentLoopWorker._compute_position_ids``, nested with the ragged dimension last.
One batch mixes a one-image row, a two-image row, a non-square image and a text-only row; every row has its own
length, because verl 0.9.1 breaks 3-D position ids of equal-length rows (upstream verl#7899, guarded below).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from tensordict import NonTensorStack, TensorDict
from transformers import Qwen3VLForConditionalGeneration
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
from verl.utils import tensordict_utils as tu
from verl.utils.tokenizer import hf_processor, hf_tokenizer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from rlrt_recipe.integration import topk
from rlrt_recipe.integration.images import VisionInputs
from rlrt_recipe.testing.engine import infer_batch
from rlrt_recipe.testing.forward import response_log_probs, response_log_softmax
from rlrt_recipe.testing.tiny_model import SPECIAL_TOKENS
from rlrt_recipe.testing.tiny_vl_model import VISION_TOKENS

IMAGE = {"type": "image"}
# (user content, image sizes (width, height), response length); the rows' total lengths all differ.
ROWS = [
    ([IMAGE, {"type": "text", "text": "What shape is this?"}], [(64, 64)], 6),
    ([IMAGE, IMAGE, {"type": "text", "text": "Same colour?"}], [(64, 64), (96, 96)], 8),
    ([{"type": "text", "text": "Describe:"}, IMAGE], [(96, 64)], 10),
    ("What is 2 + 3?", [], 12),
]
TOLERANCE = 1e-5


@dataclass
class StoredRow:
    prompt: list[int]
    response: list[int]
    multi_modal_inputs: dict[str, torch.Tensor]  # pixel_values [N, 1536], image_grid_thw [n, 3], images_seqlens [n]
    position_ids: torch.Tensor  # [4, P + R]


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    """Random pixels: every patch differs, so a patch or position order mistake changes the features."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def stored_rows(tiny_vl_model_dir) -> list[StoredRow]:
    """ROWS as verl's agent loop stores them, with random (non-special) response tokens."""
    tokenizer, processor = hf_tokenizer(tiny_vl_model_dir), hf_processor(tiny_vl_model_dir)
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen3_vl", chat_template_kwargs={},
                                              processor=processor)
    # The agent loop worker's two helpers read only these attributes (verl's own CPU tests call them this way).
    worker = object.__new__(AgentLoopWorker)
    worker.processor, worker.tokenizer, worker.mm_processor_kwargs = processor, tokenizer, None
    generator = torch.Generator().manual_seed(0)
    first_plain_id = len(SPECIAL_TOKENS) + len(VISION_TOKENS)  # a sampled vision token would break verl's helpers
    rows = []
    for i, (content, sizes, response_len) in enumerate(ROWS):
        images = [noise_image(w, h, seed=10 * i + k) for k, (w, h) in enumerate(sizes)] or None
        prompt = builder.build_initial_tokens([{"role": "user", "content": content}], images=images)
        response = torch.randint(first_plain_id, len(tokenizer), (response_len,), generator=generator).tolist()
        ids = torch.tensor(prompt + response)  # [P + R]
        output = SimpleNamespace(multi_modal_data={"images": images} if images else {}, mm_processor_kwargs=None)
        multi_modal_inputs = AgentLoopWorker._compute_multi_modal_inputs(worker, output, ids)
        position_ids = AgentLoopWorker._compute_position_ids(
            worker, ids[None], torch.ones_like(ids)[None], multi_modal_inputs
        ).squeeze(0)  # [4, P + R]
        rows.append(StoredRow(prompt, response, multi_modal_inputs, position_ids))
    lengths = [len(r.prompt) + len(r.response) for r in rows]
    assert len(set(lengths)) == len(lengths), f"row lengths must differ (verl#7899), got {lengths}"
    return rows


def stored_batch(rows: list[StoredRow]) -> TensorDict:
    """The ``compute_log_prob`` input the V1 trainer sends for these rows (NO_PADDING layout, T = 1)."""
    ids = [torch.tensor(r.prompt + r.response) for r in rows]
    masks = [torch.ones(len(r.response), dtype=torch.int64) for r in rows]
    batch = TensorDict(
        {
            "input_ids": tu.nested_tensor_from_tensor_list(ids),  # [B, j]
            "position_ids": tu.nested_tensor_from_tensor_list([r.position_ids for r in rows], ragged_idx=2),  # [B, 4, j]
            "prompts": tu.nested_tensor_from_tensor_list([torch.tensor(r.prompt) for r in rows]),
            "responses": tu.nested_tensor_from_tensor_list([torch.tensor(r.response) for r in rows]),
            "response_mask": tu.nested_tensor_from_tensor_list(masks),
            "loss_mask": tu.nested_tensor_from_tensor_list(masks),
            "multi_modal_inputs": NonTensorStack(*[r.multi_modal_inputs for r in rows]),
        },
        batch_size=[len(rows)],
    )
    tu.assign_non_tensor(batch, temperature=1.0, compute_loss=False, calculate_entropy=False)
    return batch


def vision_inputs(model, row: StoredRow) -> dict[str, torch.Tensor]:
    """What a transformers forward of the row needs besides its ids (nothing for a text row)."""
    if "pixel_values" not in row.multi_modal_inputs:
        return {}
    ids = torch.tensor([row.prompt + row.response])  # [1, P + R]
    return {
        "pixel_values": row.multi_modal_inputs["pixel_values"],
        "image_grid_thw": row.multi_modal_inputs["image_grid_thw"],
        "mm_token_type_ids": (ids == model.config.image_token_id).long(),  # required with pixels (transformers 5)
    }


@pytest.fixture(scope="module")
def transformers_log_probs(tiny_vl_model_dir, stored_rows) -> list[torch.Tensor]:
    """Per row, log p(response token | prefix) from one plain transformers forward (its own M-RoPE positions)  [R]."""
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_vl_model_dir, dtype=torch.float32).eval()
    return [response_log_probs(model, r.prompt, r.response, **vision_inputs(model, r)) for r in stored_rows]


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("use_remove_padding", [True, False], ids=["rmpad", "padded"])
def test_engine_log_probs_equal_transformers(tiny_vl_model_dir, stored_rows, transformers_log_probs, world_size,
                                             use_remove_padding):
    """Guards the whole multimodal training forward on CPU: verl's nested 3-D positions, the per-row vision inputs
    concatenated across a packed micro-batch (text row included), verl's patched Qwen3-VL forward and FSDP2 on 1
    and 2 gloo ranks give the same response log-probs as transformers, to 1e-5."""
    output = infer_batch(tiny_vl_model_dir, stored_batch(stored_rows), world_size=world_size,
                         use_remove_padding=use_remove_padding)
    diffs = []
    for row, expected, full in zip(stored_rows, transformers_log_probs, output["log_probs"], strict=True):
        engine = full[len(row.prompt) - 1 : -1]  # [R]: entry j of the engine's row predicts token j + 1
        diffs.append((engine - expected).abs().max().item())
    assert max(diffs) <= TOLERANCE, f"max |engine - transformers| per row: {diffs}"


def test_the_tolerance_sees_m_rope(tiny_vl_model_dir, stored_rows, transformers_log_probs):
    """The 1e-5 check is not vacuous: verl's stored positions reproduce transformers' own M-RoPE, and plain text
    positions on every axis move the image rows' log-probs far beyond the tolerance."""
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_vl_model_dir, dtype=torch.float32).eval()
    for row, expected in zip(stored_rows[:3], transformers_log_probs[:3]):  # the image rows
        inputs = vision_inputs(model, row)
        stored = response_log_probs(model, row.prompt, row.response, position_ids=row.position_ids[:, None], **inputs)
        torch.testing.assert_close(stored, expected, atol=TOLERANCE, rtol=0)
        text_positions = row.position_ids[:1, None].expand(3, 1, -1)  # [3, 1, L]: no image geometry
        flat = response_log_probs(model, row.prompt, row.response, position_ids=text_positions, **inputs)
        assert (flat - expected).abs().max() > 100 * TOLERANCE


def test_verl_still_breaks_equal_length_3d_position_ids():
    """Guards why every fixture row has its own length (verl#7899, open for verl 0.9.1): TransferQueue packs per-row
    (4, L) ids with ``torch.nested.as_nested_tensor`` (``transfer_queue/storage/managers/simple_storage_manager.py``),
    which makes the 4 ragged when all L are equal, and ``maybe_fix_3d_position_ids``
    (``verl/utils/tensordict_utils.py:910-915``) then forces ragged index 2, so the engine gets a (2·4, 1, L) tensor
    instead of (4, 1, 2·L). If this fails, upstream fixed it: equal-length rows may then be tested too."""
    rows = [torch.arange(4 * 6).view(4, 6) for _ in range(2)]  # two rows of length 6
    batch = TensorDict({"position_ids": torch.nested.as_nested_tensor(rows, layout=torch.jagged)}, batch_size=[2])
    tu.maybe_fix_3d_position_ids(batch)
    assert batch["position_ids"].values().shape == (8, 6)  # what the engine unsqueezes; (4, 12) would be right


K = 5  # top-K of the SDPO/SRPO passes (100 in the recipes; 5 of the tiny vocabulary shows the alignment as well)


def teacher_row(tiny_vl_model_dir, index: int, row: StoredRow) -> tuple[list[int], dict, torch.Tensor]:
    """A privileged prompt for ROWS[index]: text before the student's content (so every image token sits at another
    position than in the student's prompt) with the same images; its ``multi_modal_inputs`` and (4, L) positions over
    teacher prompt ‖ the row's response, as the driver computes them (``VisionInputs``)."""
    tokenizer, processor = hf_tokenizer(tiny_vl_model_dir), hf_processor(tiny_vl_model_dir)
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen3_vl", chat_template_kwargs={},
                                              processor=processor)
    content, sizes, _ = ROWS[index]
    content = content if isinstance(content, list) else [{"type": "text", "text": content}]
    images = [noise_image(w, h, seed=10 * index + k) for k, (w, h) in enumerate(sizes)] or None
    messages = [{"role": "user", "content": [{"type": "text", "text": "The answer is 5. Solve it:"}, *content]}]
    prompt = builder.build_initial_tokens(messages, images=images)
    inputs, positions = VisionInputs(processor, tokenizer, None)(torch.tensor(prompt + row.response), images)
    return prompt, inputs, positions


def test_topk_passes_on_image_rows_give_transformers_numbers(tiny_vl_model_dir, stored_rows):
    """SDPO/SRPO on image prompts. The select pass (θ_old's top-K ids from the old-log-prob forward of the stored
    rows) and the teacher pass (rows built on the worker by ``topk.teacher_pass_batch`` from what the driver writes
    to TransferQueue: teacher prompt ids, ``has_teacher``, the ids, and each row's pixels and positions) give, on two
    FSDP ranks, transformers' own numbers: the ids are its top-K under the student prompt; under the teacher prompt
    (text before the images: other positions, same pixels) the values are its log-softmax at those ids, the mass
    their sum, τ its log-prob of the sampled token. Rows 0–2 (images) are scored; row 3 (text) is not and is
    forwarded as the minimal row, with zero ids."""
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_vl_model_dir, dtype=torch.float32).eval()
    select = infer_batch(tiny_vl_model_dir, stored_batch(stored_rows), world_size=2,
                         processor=("select_processor", K))
    student_ids = []
    for i, row in enumerate(stored_rows):
        ids = torch.stack([select[f"{topk.ID_COLUMN}{j}"][i] for j in range(K)], dim=-1)  # [P + R, K]
        window = ids[len(row.prompt) - 1:-1]  # the positions that predict the response
        expected = response_log_softmax(model, row.prompt, row.response, **vision_inputs(model, row)).topk(K).indices
        assert torch.equal(window.to(torch.int64), expected), f"row {i}: select ids are not transformers' top-{K}"
        student_ids.append(window.to(torch.int32))

    scored = [True, True, True, False]
    rows = [teacher_row(tiny_vl_model_dir, i, row) if h else None for i, (row, h) in enumerate(zip(stored_rows, scored))]
    minimal = VisionInputs(hf_processor(tiny_vl_model_dir), hf_tokenizer(tiny_vl_model_dir), None)(
        torch.cat(topk.MINIMAL_ROW), None)  # what the trainer writes for an unscored row
    vision = [(r[1], r[2]) if r else minimal for r in rows]
    data = TensorDict({
        "prompts": tu.nested_tensor_from_tensor_list([torch.tensor(r.prompt) for r in stored_rows]),
        "responses": tu.nested_tensor_from_tensor_list([torch.tensor(r.response) for r in stored_rows]),
        topk.TEACHER_PROMPT_IDS: tu.nested_tensor_from_tensor_list(
            [torch.tensor(r[0]) if r else torch.tensor([0]) for r in rows]),
        "has_teacher": torch.tensor(scored),
        topk.TOPK_IDS: topk.nested_rows(student_ids),
        topk.TEACHER_MULTI_MODAL_INPUTS: NonTensorStack(*[v[0] for v in vision]),
        topk.TEACHER_POSITION_IDS: tu.nested_tensor_from_tensor_list([v[1] for v in vision], ragged_idx=2),
    }, batch_size=[4])
    tu.assign_non_tensor(data, temperature=1.0)
    gather, response_lens = topk.teacher_pass_batch(data, K)
    assert response_lens == [len(r.response) for r in stored_rows[:3]] + [1]
    out = infer_batch(tiny_vl_model_dir, gather, world_size=2, processor=("gather_processor", K))
    for i, (row, teacher) in enumerate(zip(stored_rows[:3], rows[:3])):
        prompt, inputs, _ = teacher
        ids = torch.tensor(prompt + row.response)[None]
        log_softmax = response_log_softmax(model, prompt, row.response, pixel_values=inputs["pixel_values"],
                                           image_grid_thw=inputs["image_grid_thw"],
                                           mm_token_type_ids=(ids == model.config.image_token_id).long())  # [R, V]
        window = slice(len(prompt) - 1, -1)
        values = torch.stack([out[f"{topk.VALUE_COLUMN}{j}"][i][window] for j in range(K)], dim=-1)  # [R, K]
        expected = log_softmax.gather(-1, student_ids[i].to(torch.int64))
        torch.testing.assert_close(values, expected, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(out[topk.MASS_COLUMN][i][window], expected.exp().sum(-1), atol=TOLERANCE, rtol=0)
        tau = log_softmax.gather(-1, torch.tensor(row.response)[:, None])[:, 0]
        torch.testing.assert_close(out["log_probs"][i][window], tau, atol=TOLERANCE, rtol=0)
    assert len(out["log_probs"][3]) == len(torch.cat(topk.MINIMAL_ROW))


def test_teacher_pass_refuses_positions_written_for_another_row(stored_rows):
    """The worker checks the driver's positions against the row it forwards: a scored row's stored (4, L) positions of
    the student prompt (shorter than the teacher prompt) are an error naming the row."""
    row = stored_rows[0]
    data = TensorDict({
        "prompts": tu.nested_tensor_from_tensor_list([torch.tensor(row.prompt)]),
        "responses": tu.nested_tensor_from_tensor_list([torch.tensor(row.response)]),
        topk.TEACHER_PROMPT_IDS: tu.nested_tensor_from_tensor_list([torch.tensor([7, 8] + row.prompt)]),
        "has_teacher": torch.tensor([True]),
        topk.TOPK_IDS: topk.nested_rows([torch.zeros(len(row.response), K, dtype=torch.int32)]),
        topk.TEACHER_MULTI_MODAL_INPUTS: NonTensorStack(row.multi_modal_inputs),
        topk.TEACHER_POSITION_IDS: tu.nested_tensor_from_tensor_list([row.position_ids], ragged_idx=2),
    }, batch_size=[1])
    tu.assign_non_tensor(data, temperature=1.0)
    with pytest.raises(ValueError, match=r"teacher pass row 0: \d+ stored positions for a row of \d+ tokens"):
        topk.teacher_pass_batch(data, K)
