"""The teacher step on a hand-built stored batch, with the tiny model's real forward behind compute_log_prob.

The stand-in worker group receives the real NO_PADDING TensorDict the trainer sends to
``actor_rollout_wg.compute_log_prob`` and returns what the engine returns (nested full-sequence
log-probs, entry j = log p(token j+1 | ≤ j)); no number is canned.
"""

import pytest
import torch
from tensordict import TensorDict
from torch.testing import assert_close
from transformers import AutoModelForCausalLM, AutoTokenizer
from verl.utils import tensordict_utils as tu
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from rlrt_recipe import privileged
from rlrt_recipe.config import RlrtConfig
from rlrt_recipe.integration.teacher import TeacherBatchLayout, TeacherStep
from rlrt_recipe.testing.forward import response_log_probs

QUESTIONS = ["What is 2 + 3?", "What is 12 * 4? Think first.", "What is 7 + 7?"]
ANSWERS = ["5", "48", "14"]
PROMPT_LENGTH = 64


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _sequence_log_probs(model, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Engine convention: entry j = log p(ids[j + 1] | ids[: j + 1]); the last entry is 0."""
    return torch.cat([response_log_probs(model, ids[:1].tolist(), ids[1:].tolist(), temperature), torch.zeros(1)])


def _sequence_entropy(model, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Engine convention, as the log-probs: entry j = the entropy of p(· | ids[: j + 1]); the last entry is 0."""
    with torch.no_grad():
        log_p = torch.log_softmax(model(ids[None]).logits[0].float() / temperature, dim=-1)  # [L, V]
    entropy = -(log_p.exp() * log_p).sum(-1)  # [L]
    return torch.cat([entropy[:-1], torch.zeros(1)])


class WorkerGroupStandIn:
    """compute_log_prob's TensorDict interface over the tiny model (log-probs, and entropy when asked, as verl's
    ``calculate_entropy``); records what it was sent."""

    def __init__(self, model, corrupt_row: int | None = None):
        self.model, self.corrupt_row, self.calls = model, corrupt_row, []

    def compute_log_prob(self, td: TensorDict) -> TensorDict:
        self.calls.append(td)
        assert tu.get_non_tensor_data(td, "compute_loss", True) is False
        temperature = tu.get_non_tensor_data(td, "temperature", None)
        rows = [_sequence_log_probs(self.model, ids, temperature) for ids in td["input_ids"].unbind()]
        if self.corrupt_row is not None:
            rows[self.corrupt_row][-2] = float("nan")  # the last response token's log-prob
        out = {"log_probs": torch.nested.as_nested_tensor(rows, layout=torch.jagged)}
        if tu.get_non_tensor_data(td, "calculate_entropy", False):
            entropy = [_sequence_entropy(self.model, ids, temperature) for ids in td["input_ids"].unbind()]
            out["entropy"] = torch.nested.as_nested_tensor(entropy, layout=torch.jagged)
        return TensorDict(out, batch_size=[len(rows)])


def _stored_batch(model, tokenizer, *, scores, response_lens, uids, n_padding=0, ground_truths=ANSWERS,
                  solutions=None, hf_model_type="qwen2", chat_kwargs=None):
    """What tq.kv_batch_get returns for a real step: prompts from verl's token builder (with the student's
    ``chat_kwargs``), sampled-like responses ending in EOS, old log-probs from the same model, verl-style padding
    rows copying row 0's columns."""
    builder = create_continuous_token_builder(tokenizer, hf_model_type=hf_model_type,
                                              chat_template_kwargs=chat_kwargs or {})
    gen = torch.Generator().manual_seed(1)
    n_real = len(scores)
    raw, prompts, responses, old, rm = [], [], [], [], []
    for i in range(n_real + n_padding):
        if i < n_real:
            q = i % len(QUESTIONS)
            messages = [{"role": "user", "content": QUESTIONS[q]}]
            prompt = torch.tensor(builder.build_initial_tokens(messages))
            body = torch.randint(10, 200, (response_lens[i] - 1,), generator=gen)
            response = torch.cat([body, torch.tensor([tokenizer.eos_token_id])])
            score = scores[i]
        else:  # verl's padding rows: EOS prompt and response, mask 0, reward 0, a copy of row 0's columns
            q, messages = 0, raw[0]
            prompt = torch.full((8,), tokenizer.eos_token_id)
            response = torch.tensor([tokenizer.eos_token_id])
            score = 0.0
        ids = torch.cat([prompt, response])
        old.append(_sequence_log_probs(model, ids)[len(prompt) - 1 : len(ids) - 1])
        reward = torch.zeros(len(response))
        reward[-1] = score
        raw.append(messages)
        prompts.append(prompt)
        responses.append(response)
        rm.append(reward)
    masks = [torch.ones(len(r), dtype=torch.int64) if i < n_real else torch.zeros(1, dtype=torch.int64)
             for i, r in enumerate(responses)]
    n = n_real + n_padding
    q_of = [i % len(QUESTIONS) if i < n_real else 0 for i in range(n)]
    data = tu.get_tensordict(
        {
            "prompts": tu.nested_tensor_from_tensor_list(prompts),
            "responses": tu.nested_tensor_from_tensor_list(responses),
            "response_mask": tu.nested_tensor_from_tensor_list(masks),
            "old_log_probs": tu.nested_tensor_from_tensor_list(old),
            "rm_scores": tu.nested_tensor_from_tensor_list(rm),
            "raw_prompt": raw,
            "reward_model": [{"style": "rule", "ground_truth": ground_truths[q]} for q in q_of],
            "extra_info": [{"solution": (solutions or {}).get(q)} for q in q_of],
            "data_source": ["tiny" for _ in range(n)],
            "uid": [uids[i] if i < n_real else "pad0" for i in range(n)],
        }
    )
    return data, [i >= n_real for i in range(n)]


def _step(tokenizer, estimator="rlsd", layout=None, *, hf_model_type="qwen2", chat_kwargs=None, **cfg):
    """The teacher step as the trainer builds it (``_build_teacher_step``): the rlrt keys ``cfg``, the student's
    ``chat_kwargs`` (data.apply_chat_template_kwargs) and rlrt.teacher_chat_template_kwargs passed on."""
    rlrt_cfg = RlrtConfig.from_section(cfg).resolved(estimator, max_prompt_length=PROMPT_LENGTH, max_response_length=16)
    return TeacherStep(
        rlrt_cfg=rlrt_cfg, adv_estimator=estimator, tokenizer=tokenizer, hf_model_type=hf_model_type,
        chat_template_kwargs=chat_kwargs or {}, prompt_length=PROMPT_LENGTH,
        layout=layout or TeacherBatchLayout(dp_size=1, micro_batch_size_per_gpu=1, max_token_len_per_gpu=None,
                                            temperature=1.0),
        teacher_chat_template_kwargs=rlrt_cfg.teacher_chat_template_kwargs,
    )


MIXED = dict(scores=[1.0, 0.0, 0.0, 1.0, 0.0, 0.0], response_lens=[3, 7, 5, 2, 9, 4], uids=["a", "a", "b", "b", "c", "c"])


def test_teacher_log_probs_equal_a_direct_forward(model_and_tokenizer):
    """Every scored row's τ equals a transformers forward of (privileged prompt + response), to 1e-5,
    with mixed prompt and response lengths; unscored rows carry s (Δ = 0)."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    fields, _ = _step(tokenizer, "rlsd").run(data, padding, step=1, compute_log_prob=WorkerGroupStandIn(model).compute_log_prob)
    teacher, old = fields["teacher_log_probs"].unbind(), data["old_log_probs"].unbind()
    assert fields["has_teacher"].tolist() == [True, True, True, True, False, False]  # group c is degenerate (A = 0)
    for i in range(6):
        if not fields["has_teacher"][i]:
            assert torch.equal(teacher[i], old[i])
            continue
        row = privileged.RowInfo.from_fields(i, raw_prompt=data["raw_prompt"][i], reward_model=data["reward_model"][i],
                                             extra_info={}, data_source="tiny", uid=data["uid"][i])
        messages = privileged.teacher_messages(row, "answer", row.ground_truth, privileged.DEFAULT_TEMPLATES)
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        response = data["responses"].unbind()[i]
        ids = torch.cat([torch.tensor(list(prompt)), response])
        expected = _sequence_log_probs(model, ids)[len(prompt) - 1 : len(ids) - 1]
        assert_close(teacher[i], expected, atol=1e-5, rtol=0)
        assert not torch.allclose(teacher[i], old[i])  # the privileged answer changed the prompt


def test_confidence_min_stores_the_teachers_entropy_from_the_same_pass(model_and_tokenizer):
    """rlrt.confidence_min: the one teacher forward also returns the entropy (calculate_entropy), stored per response
    token as teacher_entropy, equal to a direct forward's entropy over (privileged prompt + response) to 1e-5;
    unscored rows carry 0 (G = 1); rlrt/teacher_entropy is its mean over the scored tokens. Without the key the
    pass computes no entropy and stores no field."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    worker = WorkerGroupStandIn(model)
    fields, metrics = _step(tokenizer, "rlsd", confidence_min=0.2).run(data, padding, step=1,
                                                                        compute_log_prob=worker.compute_log_prob)
    assert len(worker.calls) == 1 and tu.get_non_tensor_data(worker.calls[0], "calculate_entropy", None) is True
    entropy, scored = fields["teacher_entropy"].unbind(), fields["has_teacher"].tolist()
    assert scored == [True, True, True, True, False, False]
    expected_all = []
    for i in range(6):
        assert len(entropy[i]) == len(data["responses"].unbind()[i])
        if not scored[i]:
            assert torch.equal(entropy[i], torch.zeros(len(entropy[i])))
            continue
        row = privileged.RowInfo.from_fields(i, raw_prompt=data["raw_prompt"][i], reward_model=data["reward_model"][i],
                                             extra_info={}, data_source="tiny", uid=data["uid"][i])
        messages = privileged.teacher_messages(row, "answer", row.ground_truth, privileged.DEFAULT_TEMPLATES)
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        ids = torch.cat([torch.tensor(list(prompt)), data["responses"].unbind()[i]])
        expected = _sequence_entropy(model, ids)[len(prompt) - 1 : len(ids) - 1]
        assert_close(entropy[i], expected, atol=1e-5, rtol=0)
        assert (expected > 0).all()
        expected_all.append(expected)
    assert metrics["rlrt/teacher_entropy"] == pytest.approx(torch.cat(expected_all).mean().item(), abs=1e-5)

    worker = WorkerGroupStandIn(model)
    fields, metrics = _step(tokenizer, "rlsd").run(data, padding, step=1, compute_log_prob=worker.compute_log_prob)
    assert tu.get_non_tensor_data(worker.calls[0], "calculate_entropy", None) is False
    assert "teacher_entropy" not in fields.keys() and "rlrt/teacher_entropy" not in metrics


def test_identity_template_gives_zero_gap(model_and_tokenizer):
    """Alignment guard: with the identity template the teacher row is the student row, so τ = s exactly."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    step = _step(tokenizer, "opsd", privileged_templates={"solution": "{question}", "answer": "{question}"})
    fields, _ = step.run(data, padding, step=1, compute_log_prob=WorkerGroupStandIn(model).compute_log_prob)
    assert fields["has_teacher"].all()
    for tau, s in zip(fields["teacher_log_probs"].unbind(), data["old_log_probs"].unbind()):
        assert_close(tau, s, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def qwen3_model_and_tokenizer(qwen3_model_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(qwen3_model_dir, torch_dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(qwen3_model_dir)


IDENTITY = {"solution": "{question}", "answer": "{question}"}
THINKING_OFF, THINKING_ON = {"enable_thinking": False}, {"enable_thinking": True}


def test_teacher_thinking_on_student_off_gets_the_students_tail_and_zero_gap(qwen3_model_and_tokenizer):
    """Issue 19 (OPSD #10, #16): a thinking teacher for a non-thinking Qwen3 student. With the identity template the
    teacher prompt, rendered with enable_thinking=true and followed by the student's generation-prompt tail (its
    empty think block), is the student's prompt token for token, so τ = s on every response token. Without the
    tail the first response token is predicted in another place and Δ is clearly non-zero: the test can fail."""
    model, tokenizer = qwen3_model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED, hf_model_type="qwen3", chat_kwargs=THINKING_OFF)
    wg = WorkerGroupStandIn(model)
    step = _step(tokenizer, "opsd", hf_model_type="qwen3", chat_kwargs=THINKING_OFF,
                 teacher_chat_template_kwargs=THINKING_ON, privileged_templates=IDENTITY)
    fields, metrics = step.run(data, padding, step=1, compute_log_prob=wg.compute_log_prob)
    assert fields["has_teacher"].all()
    stored = data["prompts"].unbind()
    sent = wg.calls[0]["prompts"].unbind()
    empty_think_block = tokenizer.encode("<think>\n\n</think>\n\n")
    for i, (tau, s) in enumerate(zip(fields["teacher_log_probs"].unbind(), data["old_log_probs"].unbind())):
        assert sent[i].tolist() == stored[i].tolist()
        assert stored[i].tolist()[-len(empty_think_block):] == empty_think_block
        assert (tau - s).abs().max() <= 1e-5
        # the same teacher prompt without the tail: the response follows "<|im_start|>assistant\n" directly
        untailed = tokenizer.apply_chat_template(list(data["raw_prompt"][i]), add_generation_prompt=True,
                                                 tokenize=True, return_dict=False, **THINKING_ON)
        assert list(untailed) + empty_think_block == stored[i].tolist()
        ids = torch.cat([torch.tensor(list(untailed)), data["responses"].unbind()[i]])
        untailed_tau = _sequence_log_probs(model, ids)[len(untailed) - 1 : len(ids) - 1]
        assert (untailed_tau - s).abs().max() > 1e-3, i  # 100 × the tolerance (a random tiny model: ~0.03 nats)
    assert metrics["rlrt/teacher_token_ratio"] == pytest.approx(1.0)


def test_equal_teacher_kwargs_give_todays_teacher_prompts(qwen3_model_and_tokenizer):
    """rlrt.teacher_chat_template_kwargs equal to the student's is the same run as null: the same teacher prompt ids
    and τ bit for bit, and the teacher renders with the student's renderer (no tail, no second render)."""
    model, tokenizer = qwen3_model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED, hf_model_type="qwen3", chat_kwargs=THINKING_OFF)
    runs = []
    for teacher_kwargs in (None, dict(THINKING_OFF)):
        wg = WorkerGroupStandIn(model)
        step = _step(tokenizer, "rlsd", hf_model_type="qwen3", chat_kwargs=THINKING_OFF,
                     teacher_chat_template_kwargs=teacher_kwargs)
        assert step.render_teacher is step.render
        fields, _ = step.run(data, padding, step=1, compute_log_prob=wg.compute_log_prob)
        runs.append(([p.tolist() for p in wg.calls[0]["input_ids"].unbind()], fields["teacher_log_probs"].unbind()))
    (ids_null, tau_null), (ids_equal, tau_equal) = runs
    assert ids_null == ids_equal
    assert all(torch.equal(a, b) for a, b in zip(tau_null, tau_equal))


def test_the_tail_counts_in_the_teacher_budget(qwen3_model_and_tokenizer):
    """The budget counts the teacher prompt as it is sent, tail included: a budget that fits the teacher's own render
    but not its tail is an over-budget answer context."""
    model, tokenizer = qwen3_model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED, hf_model_type="qwen3", chat_kwargs=THINKING_OFF)
    student_lens = [len(p) for p in data["prompts"].unbind()]
    settings = dict(hf_model_type="qwen3", chat_kwargs=THINKING_OFF, teacher_chat_template_kwargs=THINKING_ON,
                    privileged_templates=IDENTITY)
    fits = _step(tokenizer, "opsd", max_privileged_prompt_length=max(student_lens), **settings)
    fits.run(data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)
    with pytest.raises(ValueError, match=rf"row \d .*is {max(student_lens)} tokens, over "
                                         rf"rlrt\.max_privileged_prompt_length={max(student_lens) - 1}"):
        _step(tokenizer, "opsd", max_privileged_prompt_length=max(student_lens) - 1, **settings).run(
            data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)


def test_teacher_thinking_off_student_on_is_refused_naming_the_key(qwen3_model_and_tokenizer):
    """The student's response opens a thinking block the teacher's generation prompt has closed: no tail can align
    them, so the step refuses, naming rlrt.teacher_chat_template_kwargs and both generation prompts."""
    model, tokenizer = qwen3_model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED, hf_model_type="qwen3", chat_kwargs=THINKING_ON)
    step = _step(tokenizer, "opsd", hf_model_type="qwen3", chat_kwargs=THINKING_ON,
                 teacher_chat_template_kwargs=THINKING_OFF)
    with pytest.raises(ValueError, match=r"row 0 .*generation prompt '<\|im_start\|>assistant\\n<think>.*"
                                         r"rlrt\.teacher_chat_template_kwargs\) does not begin the student's"):
        step.run(data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)


def test_padding_rows_never_scored_or_counted_and_dp_padding(model_and_tokenizer):
    """verl's padding rows get no privileged text and no teacher; the teacher batch is padded to
    dp_size × micro_batch with rows that are never read back; metrics count real rows only."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED, n_padding=2)
    wg = WorkerGroupStandIn(model)
    layout = TeacherBatchLayout(dp_size=2, micro_batch_size_per_gpu=2, max_token_len_per_gpu=None, temperature=1.0)
    fields, metrics = _step(tokenizer, "opsd", layout=layout).run(data, padding, 1, wg.compute_log_prob)
    assert fields["has_teacher"].tolist() == [True] * 6 + [False] * 2
    assert len(wg.calls) == 1 and len(wg.calls[0]) == 8  # 6 scored rows padded to a multiple of 4
    assert metrics["rlrt/scored_row_frac"] == 1.0
    assert metrics["rlrt/context/unscored"] == 0.0  # padding rows are not counted at all
    assert fields["correct"].tolist() == [True, False, False, True, False, False, False, False]


def test_rlrt_siblings_and_fallback(model_and_tokenizer):
    """RLRT scores only correct rows of mixed groups; a lone correct row gets no teacher by default (RLRT's base
    code masks it) and falls back to the answer with rlrt.sibling_fallback=answer."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, scores=[1.0, 1.0, 0.0, 1.0, 0.0, 0.0],
                                  response_lens=[4, 6, 3, 5, 2, 2], uids=["a", "a", "a", "b", "b", "b"])
    fields, metrics = _step(tokenizer, "rlrt").run(data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)
    assert fields["has_teacher"].tolist() == [True, True, False, False, False, False]
    assert metrics["rlrt/context/sibling"] == 2.0 and metrics["rlrt/context/none"] == 1.0
    fields, metrics = _step(tokenizer, "rlrt", sibling_fallback="answer").run(
        data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)
    assert fields["has_teacher"].tolist() == [True, True, False, True, False, False]
    assert metrics["rlrt/context/sibling"] == 2.0 and metrics["rlrt/context/fallback_answer"] == 1.0
    assert metrics["rlrt/gate_pass_frac"] == pytest.approx(0.5)


def test_nonfinite_teacher_log_prob_names_the_row(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    with pytest.raises(ValueError, match=r"non-finite teacher log-prob .* row 1 \(data_source='tiny', uid='a'\)"):
        _step(tokenizer, "opsd").run(data, padding, 1, WorkerGroupStandIn(model, corrupt_row=1).compute_log_prob)


def test_over_budget_answer_context_raises(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    with pytest.raises(ValueError, match=r"row 0 .*over rlrt\.max_privileged_prompt_length=10"):
        _step(tokenizer, "opsd", max_privileged_prompt_length=10).run(data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)


def test_missing_ground_truth_raises(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED, ground_truths=["5", "", "14"])
    with pytest.raises(ValueError, match=r"row 1 .*reward_model\.ground_truth is missing"):
        _step(tokenizer, "rlsd").run(data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)


def test_truncated_student_prompt_is_refused(model_and_tokenizer):
    """verl left-truncates over-long prompts silently; the step refuses, naming the row and the key."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    step = _step(tokenizer, "rlsd")
    step.prompt_length = 5
    with pytest.raises(ValueError, match=r"row 0 .*over rollout\.prompt_length=5"):
        step.run(data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)


def test_empty_response_rows_are_not_scored(model_and_tokenizer):
    """A row whose response mask is empty has nothing to score: no teacher, Δ = 0."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    masks = data["response_mask"].unbind()
    masks = [torch.zeros_like(m) if i == 0 else m for i, m in enumerate(masks)]
    data["response_mask"] = tu.nested_tensor_from_tensor_list(masks)
    fields, _ = _step(tokenizer, "opsd").run(data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)
    assert fields["has_teacher"].tolist() == [False] + [True] * 5


def test_no_teacher_pass_once_lambda_is_zero(model_and_tokenizer):
    """Issue 13: RLSD with K = 1 has λ_2 = 0, so step 2 scores no row (no compute_log_prob call) but still writes
    τ = s, has_teacher = False and correct for every row; the distillation loss keeps the pass."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    for step_k, expected_calls in ((1, 1), (2, 0), (3, 0)):
        wg = WorkerGroupStandIn(model)
        fields, metrics = _step(tokenizer, "rlsd", lambda_decay_steps=1).run(data, padding, step_k, wg.compute_log_prob)
        assert len(wg.calls) == expected_calls and metrics["rlrt/teacher_calls"] == expected_calls
        assert set(fields.keys()) == {"teacher_log_probs", "has_teacher", "correct"}
        assert fields["correct"].tolist() == [True, False, False, True, False, False]
        if expected_calls == 0:
            assert not fields["has_teacher"].any()
            for tau, s in zip(fields["teacher_log_probs"].unbind(), data["old_log_probs"].unbind()):
                assert torch.equal(tau, s)
    wg = WorkerGroupStandIn(model)
    _step(tokenizer, "rlsd", lambda_decay_steps=1, distill_loss_coef=0.1).run(data, padding, 2, wg.compute_log_prob)
    assert len(wg.calls) == 1


def test_teacher_that_lost_its_weights_is_visible(model_and_tokenizer):
    """A teacher with uniform logits scores −ln V on every token; rlrt/teacher_logp_mean shows it next to
    rlrt/student_logp_mean over the same scored tokens."""
    import copy
    import math

    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.get_output_embeddings().weight.zero_()  # logits ≡ 0: uniform over the vocabulary
    fields, metrics = _step(tokenizer, "opsd").run(data, padding, 1, WorkerGroupStandIn(broken).compute_log_prob)
    vocab = broken.get_output_embeddings().weight.shape[0]
    assert metrics["rlrt/teacher_logp_mean"] == pytest.approx(-math.log(vocab), abs=1e-5)
    scored = fields["has_teacher"]
    old = [s for s, keep in zip(data["old_log_probs"].unbind(), scored) if keep]
    assert metrics["rlrt/student_logp_mean"] == pytest.approx(float(torch.cat(old).mean()), abs=1e-6)
    teacher = [t for t, keep in zip(fields["teacher_log_probs"].unbind(), scored) if keep]
    assert torch.cat(teacher).sub(-math.log(vocab)).abs().max() < 1e-5  # every scored token, not just the mean


def test_16_bit_log_probs_warn_once(model_and_tokenizer, caplog):
    """bf16 old log-probs (verl without flash-attn's cross-entropy kernel) are taken, with one warning per run
    that names the consequence and the fix."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    data["old_log_probs"] = tu.nested_tensor_from_tensor_list([s.bfloat16() for s in data["old_log_probs"].unbind()])
    step = _step(tokenizer, "rlsd")
    with caplog.at_level("WARNING", logger="rlrt_recipe"):
        for _ in range(2):
            fields, _ = step.run(data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)
    warnings = [r.getMessage() for r in caplog.records if "log-probs" in r.getMessage()]
    assert len(warnings) == 1
    assert "bfloat16" in warnings[0] and "quantised" in warnings[0] and "VERL_DISABLE_FLASH_ATTN_CE" in warnings[0]
    assert fields["teacher_log_probs"].dtype == torch.bfloat16  # τ takes s's dtype, as before
    caplog.clear()
    with caplog.at_level("WARNING", logger="rlrt_recipe"):
        _step(tokenizer, "rlsd").run(*_stored_batch(model, tokenizer, **MIXED), 1, WorkerGroupStandIn(model).compute_log_prob)
    assert not [r for r in caplog.records if "log-probs" in r.getMessage()]


@pytest.mark.parametrize("strip", [False, True])
def test_sibling_thinking_is_kept_or_stripped_through_the_step(model_and_tokenizer, strip):
    """The tiny tokenizer registers <think>/</think> as plain added tokens, as Qwen3 does, so the step's decode
    (skip_special_tokens=True) keeps them and rlrt.sibling_strip_thinking decides what the teacher sees."""
    model, tokenizer = model_and_tokenizer
    sibling = tokenizer.encode("<think>\nsecret scratch work\n</think>\n\nThe answer is 5") + [tokenizer.eos_token_id]
    data, padding = _stored_batch(model, tokenizer, scores=[1.0, 1.0, 0.0], response_lens=[3, len(sibling), 4],
                                  uids=["a", "a", "a"])
    responses = data["responses"].unbind()
    data["responses"] = tu.nested_tensor_from_tensor_list([responses[0], torch.tensor(sibling), responses[2]])
    wg = WorkerGroupStandIn(model)
    _step(tokenizer, "rlrt", sibling_strip_thinking=strip).run(data, padding, 1, wg.compute_log_prob)
    teacher_prompt_of_row_0 = tokenizer.decode(wg.calls[0]["prompts"].unbind()[0])
    assert "The answer is 5" in teacher_prompt_of_row_0
    assert ("secret scratch work" in teacher_prompt_of_row_0) is not strip
    assert ("<think>" in teacher_prompt_of_row_0) is not strip


def test_run_times_each_driver_part(model_and_tokenizer):
    """timing_s/teacher/<part>: every driver part and the forward, each ≥ 0; the forward is
    rlrt/teacher_forward_s; a step that scores nothing has no batch and no forward."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, **MIXED)
    _, metrics = _step(tokenizer, "rlsd").run(data, padding, 1, WorkerGroupStandIn(model).compute_log_prob)
    parts = {k.split("/")[-1] for k in metrics if k.startswith("timing_s/teacher/")}
    assert parts == {"rows", "select", "decode", "contexts", "batch", "forward", "outputs", "metrics"}
    assert all(metrics[f"timing_s/teacher/{p}"] >= 0 for p in parts)
    assert metrics["rlrt/teacher_forward_s"] == metrics["timing_s/teacher/forward"]
    _, idle = _step(tokenizer, "rlsd", lambda_decay_steps=1).run(data, padding, 2, WorkerGroupStandIn(model).compute_log_prob)
    assert "timing_s/teacher/forward" not in idle and "timing_s/teacher/batch" not in idle


def test_a_correct_rollout_cut_at_the_length_limit_is_never_a_sibling(model_and_tokenizer):
    """Group a has three correct rollouts; row 1 did not end with EOS (cut at the length limit), so it is neither
    decoded nor drawn as a sibling: rows 0 and 2 take each other, row 1 takes one of them."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, scores=[1.0, 1.0, 1.0, 0.0], response_lens=[3, 5, 4, 2],
                                  uids=["a", "a", "a", "a"])
    responses = data["responses"].unbind()
    cut = responses[1].clone()
    cut[-1] = 7  # an ordinary token where EOS was
    data["responses"] = tu.nested_tensor_from_tensor_list([responses[0], cut, responses[2], responses[3]])
    for step_k in (1, 2, 3):
        wg = WorkerGroupStandIn(model)
        _, metrics = _step(tokenizer, "rlrt").run(data, padding, step_k, wg.compute_log_prob)
        prompts = [tokenizer.decode(p) for p in wg.calls[0]["prompts"].unbind()[:3]]
        body_of_row_1 = tokenizer.decode(cut[:-1])
        assert all(body_of_row_1 not in prompt for prompt in prompts)
        assert metrics["rlrt/context/sibling"] == 3.0


@pytest.mark.parametrize("loss_mode, expected", [
    # groups a (1 correct of 3), b (2 of 2), c (none): SDPO gives every row with another success a demonstration
    # (a's wrong rows; both of b), SRPO routes only a's wrong rows (b has no wrong row, c no correct one)
    ("sdpo", [False, True, True, True, True, False, False]),
    ("srpo", [False, True, True, False, False, False, False]),
])
def test_topk_losses_route_rows_by_group_outcome(model_and_tokenizer, loss_mode, expected):
    """The teacher step for the sdpo/srpo losses on hand-built groups: which rows get a demonstration (has_teacher),
    each a correct sibling's text from its own group, scored through ``score_rows`` (the top-K pass)."""
    model, tokenizer = model_and_tokenizer
    data, padding = _stored_batch(model, tokenizer, scores=[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0],
                                  response_lens=[3, 7, 5, 2, 6, 4, 3], uids=["a", "a", "a", "b", "b", "c", "c"])
    rlrt_cfg = RlrtConfig().resolved("grpo", max_prompt_length=PROMPT_LENGTH, max_response_length=16,
                                     loss_mode=loss_mode)
    step = TeacherStep(rlrt_cfg=rlrt_cfg, adv_estimator="grpo", tokenizer=tokenizer, hf_model_type="qwen2",
                       chat_template_kwargs={}, prompt_length=PROMPT_LENGTH, loss_mode=loss_mode,
                       layout=TeacherBatchLayout(dp_size=1, micro_batch_size_per_gpu=1, max_token_len_per_gpu=None,
                                                 temperature=1.0))
    sent = {}

    def score_rows(rows, prompts, vision_rows):
        assert vision_rows is None  # a text model's rows carry no pixels
        sent.update(zip(rows, prompts))
        return [torch.full((len(data["responses"][i]),), -1.0) for i in rows], len(rows)

    fields, metrics = step.run(data, padding, 1, compute_log_prob=None, score_rows=score_rows)
    assert fields["has_teacher"].tolist() == expected
    assert sorted(sent) == [i for i, e in enumerate(expected) if e]
    responses = data["responses"].unbind()
    for i, prompt in sent.items():  # the demonstration is a correct rollout of the row's own group, not itself
        text = tokenizer.decode(prompt)
        own_group = {"a": [0], "b": [3, 4]}[["a", "a", "a", "b", "b"][i]]
        siblings = [j for j in own_group if j != i]
        assert any(tokenizer.decode(responses[j], skip_special_tokens=True) in text for j in siblings), i
    teacher = fields["teacher_log_probs"].unbind()
    assert all(bool((teacher[i] == -1.0).all()) == e for i, e in enumerate(expected))
    assert metrics["rlrt/scored_rows"] == sum(expected)
