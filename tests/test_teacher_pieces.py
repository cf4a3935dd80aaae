"""The teacher step's pure pieces, each on its own (the whole step with the tiny model's forward is
test_teacher_step.py): row selection, sibling and probe rows, the teacher batch, the metrics, the renderer, the
generation-prompt tail of separate teacher chat-template kwargs."""

import pytest
import torch
from transformers import AutoTokenizer
from verl.utils import tensordict_utils as tu

from rlrt_recipe import privileged
from rlrt_recipe.config import RlrtConfig
from rlrt_recipe.integration.teacher import (
    LEAK_PROBE_ROWS,
    PromptRenderer,
    TeacherBatchLayout,
    build_teacher_batch,
    generation_prompt_tails,
    leak_probe_rows,
    row_infos,
    select_rows,
    sibling_rows,
    teacher_metrics,
    teacher_prompt_ids,
)

UIDS = ["a", "a", "b", "b", "c", "c"]
REAL = torch.tensor([True, True, True, True, True, False])  # the last row is verl's padding copy
CORRECT = torch.tensor([True, False, True, True, False, False])
MASK = torch.ones(6, 3)  # [B, T]


def _rewards(correct):
    rm = torch.zeros(len(correct), 3)  # [B, T], the reward on the last token
    rm[:, -1] = correct.float()
    return rm


def _cfg(estimator, **section):
    return RlrtConfig.from_section(section).resolved(estimator, max_prompt_length=64, max_response_length=16)


def test_select_rows_gate_degenerate_groups_and_lambda_zero():
    """rlrt scores correct rows of mixed groups (A ≠ 0): group b is all-correct (A = 0); rlsd scores every row
    of a mixed group; opsd every real row; none at all once λ = 0 without a distillation loss."""
    rm = _rewards(CORRECT)
    pick = lambda est, step=1, **kw: select_rows(rm, MASK, UIDS, REAL, CORRECT, step, cfg=_cfg(est, **kw),  # noqa: E731
                                                  adv_estimator=est).tolist()
    assert pick("rlrt") == [True, False, False, False, False, False]
    assert pick("rlsd") == [True, True, False, False, False, False]
    assert pick("opsd") == [True, True, True, True, True, False]
    assert pick("rlsd", step=2, lambda_decay_steps=1) == [False] * 6
    assert pick("rlsd", step=2, lambda_decay_steps=1, distill_loss_coef=0.1) == [True, True, False, False, False, False]


def test_select_rows_for_the_topk_losses():
    """SDPO scores every real row (those without another success get no demonstration later); SRPO only the wrong
    rows, the ones it can route to the teacher."""
    rm = _rewards(CORRECT)
    pick = lambda loss_mode: select_rows(rm, MASK, UIDS, REAL, CORRECT, 1, adv_estimator="grpo",  # noqa: E731
                                         cfg=RlrtConfig().resolved("grpo", max_prompt_length=64, max_response_length=16,
                                                                   loss_mode=loss_mode), loss_mode=loss_mode).tolist()
    assert pick("sdpo") == [True, True, True, True, True, False]
    assert pick("srpo") == [False, True, False, False, True, False]


def test_sibling_rows_are_the_correct_rows_a_scored_row_can_draw():
    """Row 0 is scored in group a: its sibling can only be another correct row of a (none); group b has two
    correct rows and one scored, so the other one can be drawn; answer/solution contexts need no sibling."""
    scored = torch.tensor([True, False, True, False, False, False])
    assert sibling_rows(UIDS, CORRECT, scored, "rollout") == [3]
    assert sibling_rows(UIDS, CORRECT, torch.tensor([True, False, True, True, False, False]), "rollout") == [2, 3]
    assert sibling_rows(UIDS, CORRECT, scored, "answer") == []


def test_leak_probe_reads_every_real_row_up_to_the_cap_then_a_seeded_sample():
    assert leak_probe_rows(REAL, step=1) == [0, 1, 2, 3, 4]
    many = torch.ones(3 * LEAK_PROBE_ROWS, dtype=torch.bool)
    first, again, other = leak_probe_rows(many, 7), leak_probe_rows(many, 7), leak_probe_rows(many, 8)
    assert len(first) == LEAK_PROBE_ROWS == len(set(first)) and first == again and first != other


@pytest.mark.parametrize("layout, rows_sent, budget", [
    (TeacherBatchLayout(dp_size=2, micro_batch_size_per_gpu=2, max_token_len_per_gpu=None, temperature=0.7), 4, None),
    (TeacherBatchLayout(dp_size=2, micro_batch_size_per_gpu=2, max_token_len_per_gpu=4, temperature=0.7), 2, 5),
    (TeacherBatchLayout(dp_size=2, micro_batch_size_per_gpu=2, max_token_len_per_gpu=64, temperature=0.7), 2, 64),
])
def test_teacher_batch_layout(layout, rows_sent, budget):
    """Rows prompt ‖ response with the mask over the response, minimal mask-0 rows up to the data-parallel
    multiple (dp × micro-batch without dynamic bsz, dp with it), the token budget raised to the longest row."""
    prompts, responses = [[5, 6, 7], [8]], [torch.tensor([1, 2]), torch.tensor([3, 4, 9, 9])]
    td = build_teacher_batch(prompts, responses, layout, pad_id=0)
    assert len(td) == rows_sent
    assert [x.tolist() for x in td["input_ids"].unbind()][:2] == [[5, 6, 7, 1, 2], [8, 3, 4, 9, 9]]
    assert [m.tolist() for m in td["response_mask"].unbind()] == [[1, 1], [1, 1, 1, 1]] + [[0]] * (rows_sent - 2)
    assert [p.tolist() for p in td["position_ids"].unbind()][1] == [0, 1, 2, 3, 4]
    assert tu.get_non_tensor_data(td, "temperature", None) == 0.7
    assert tu.get_non_tensor_data(td, "compute_loss", None) is False
    assert tu.get_non_tensor_data(td, "max_token_len_per_gpu", None) == budget
    assert "multi_modal_inputs" not in td.keys() and td["position_ids"].dim() == 2  # text-only: the rows of before


def test_teacher_metrics_hand_computed():
    """Real rows only: 5 real rows in 3 groups (c has one real row: not a degenerate group), b all-correct;
    2 scored rows; token counts Σ(P + R) and Σ(P + R)²; one of two probe texts carries the cue."""
    contexts = [privileged.TeacherContext([{"role": "user", "content": "x"}], "sibling"),
                privileged.TeacherContext(None, "none"), privileged.TeacherContext(None, "unscored"),
                privileged.TeacherContext([{"role": "user", "content": "y"}], "fallback_answer"),
                privileged.TeacherContext(None, "unscored"), privileged.TeacherContext(None, "unscored")]
    metrics = teacher_metrics(
        uids=UIDS, real=REAL, correct=CORRECT, scores=CORRECT.float(), gate="correct", contexts=contexts,
        teacher_rows=[0, 3], prompt_lens=[4, 4, 5, 5, 6, 6], teacher_prompt_lens=[10, 7], response_mask=MASK,
        probe_texts=["as the Correct Solution says", "plain"], cue="correct solution",
    )
    assert metrics["rlrt/real_rows"] == 5 and metrics["rlrt/scored_rows"] == 2
    assert metrics["rlrt/gate_pass_frac"] == pytest.approx(3 / 5)
    assert metrics["rlrt/degenerate_group_frac"] == pytest.approx(1 / 3)
    assert metrics["rlrt/student_tokens"] == 7 + 7 + 8 + 8 + 9
    assert metrics["rlrt/teacher_tokens"] == 13 + 10
    assert metrics["rlrt/teacher_sq_tokens"] == 13 ** 2 + 10 ** 2
    assert metrics["rlrt/leak_cue_rate"] == 0.5
    assert metrics["rlrt/context/sibling"] == 1 and metrics["rlrt/context/unscored"] == 2


def test_row_infos_read_each_column_once_and_match_the_rows(tiny_model_dir):
    data = tu.get_tensordict({
        "raw_prompt": [[{"role": "user", "content": f"q{i}"}] for i in range(3)],
        "reward_model": [{"ground_truth": str(i)} for i in range(3)],
        "extra_info": [{"solution": None} for _ in range(3)],
        "data_source": ["s"] * 3, "uid": ["u0", "u0", "u1"],
    })
    rows = row_infos(data, 3)
    assert [r.uid for r in rows] == ["u0", "u0", "u1"] and [r.ground_truth for r in rows] == ["0", "1", "2"]
    assert rows[2].messages[-1]["content"] == "q2"


def test_prompt_renderer_matches_the_chat_template_and_caches(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    render = PromptRenderer(tokenizer, hf_model_type="qwen2", chat_template_kwargs={})
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert render(messages) == list(expected) and render.count_tokens(messages) == len(expected)
    assert render(messages) is render(messages)  # cached within a step
    render.clear()
    assert render(messages) == list(expected)


def _qwen3_renderer(tokenizer, **chat_kwargs):
    return PromptRenderer(tokenizer, hf_model_type="qwen3", chat_template_kwargs=chat_kwargs)


def test_generation_prompt_is_what_add_generation_prompt_adds(qwen3_model_dir):
    """G(M) of the Qwen3-style template: the assistant header, plus the empty think block with thinking off; a
    system turn or an earlier assistant turn does not change it."""
    tokenizer = AutoTokenizer.from_pretrained(qwen3_model_dir)
    header, block = tokenizer.encode("<|im_start|>assistant\n"), tokenizer.encode("<think>\n\n</think>\n\n")
    conversations = [
        [{"role": "user", "content": "What is 2 + 3?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"},
         {"role": "assistant", "content": "<think>easy</think>\n2"}, {"role": "user", "content": "and 2+2?"}],
    ]
    for messages in conversations:
        assert _qwen3_renderer(tokenizer, enable_thinking=True).generation_prompt(messages, where="x") == header
        assert _qwen3_renderer(tokenizer, enable_thinking=False).generation_prompt(messages, where="x") == header + block
        assert _qwen3_renderer(tokenizer).generation_prompt(messages, where="x") == header  # the template's default


def test_generation_prompt_tails_and_teacher_prompt_ids(qwen3_model_dir):
    """The tail is taken for the wanted rows only, and the teacher prompt (thinking on) plus the tail is the student's
    prompt (thinking off) for the same messages; with the student's renderer there is no tail and the teacher prompt
    is the render itself (the cached list, as before the key existed)."""
    tokenizer = AutoTokenizer.from_pretrained(qwen3_model_dir)
    student, teacher = _qwen3_renderer(tokenizer, enable_thinking=False), _qwen3_renderer(tokenizer, enable_thinking=True)
    rows = [privileged.RowInfo(i, "tiny", "u", ({"role": "user", "content": f"What is {i} + 1?"},), str(i + 1))
            for i in range(3)]
    prompts = [torch.tensor(student(list(row.messages))) for row in rows]
    wanted = torch.tensor([True, False, True])
    tails = generation_prompt_tails(rows, prompts, wanted, student, teacher, tokenizer.decode)
    block = tokenizer.encode("<think>\n\n</think>\n\n")
    assert tails == [block, [], block]
    for i in (0, 2):
        assert teacher_prompt_ids(list(rows[i].messages), rows[i], tails[i], student, teacher,
                                  tokenizer.decode) == prompts[i].tolist()
    assert generation_prompt_tails(rows, prompts, wanted, student, student, tokenizer.decode) == [[], [], []]
    ids = teacher_prompt_ids(list(rows[0].messages), rows[0], [], student, student, tokenizer.decode)
    assert ids is student(list(rows[0].messages))


def test_a_stored_prompt_without_the_students_generation_prompt_is_refused(qwen3_model_dir):
    """The tail is what the student's response follows, so the stored prompt must end with G_S: one rendered with
    other kwargs than data.apply_chat_template_kwargs is refused, naming the row and the key."""
    tokenizer = AutoTokenizer.from_pretrained(qwen3_model_dir)
    student, teacher = _qwen3_renderer(tokenizer, enable_thinking=False), _qwen3_renderer(tokenizer, enable_thinking=True)
    row = privileged.RowInfo(4, "tiny", "u4", ({"role": "user", "content": "What is 2 + 3?"},), "5")
    stored = torch.tensor(teacher(list(row.messages)))  # thinking on: no empty think block
    with pytest.raises(ValueError, match=r"row 4 .*the student prompt ends with .*not with the generation prompt "
                                         r".*rlrt\.teacher_chat_template_kwargs"):
        generation_prompt_tails([row], [stored], torch.tensor([True]), student, teacher, tokenizer.decode)
