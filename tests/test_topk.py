"""The top-K teacher pass and the sdpo/srpo losses on hand-built batches and a tiny transformers model: the logits
processors against a plain log_softmax, the alignment of ids and positions, the live divergence (zero when the teacher
is the student, gradient only through the student), SRPO's routing and both losses' normalisation."""

from dataclasses import replace

import pytest
import torch
from tensordict import TensorDict
from torch.testing import assert_close
from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla
from verl.utils import tensordict_utils as tu
from verl.workers.config import FSDPActorConfig

from rlrt_recipe import signals
from rlrt_recipe.integration import topk
from rlrt_recipe.integration.loss import compute_policy_loss_sdpo, compute_policy_loss_srpo, topk_distill_loss

K, V = 3, 11


def _logits(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, V, generator=torch.Generator().manual_seed(seed)) * 2.0


def test_select_processor_returns_the_top_k_ids_as_columns():
    logits = _logits(6)
    columns = topk.select_processor(K)(student_logits=logits.unsqueeze(0), data=None)
    assert sorted(columns) == [f"{topk.ID_COLUMN}{j}" for j in range(K)]
    ids = torch.stack([columns[f"{topk.ID_COLUMN}{j}"][0] for j in range(K)], dim=-1)  # [6, K]
    assert torch.equal(ids, torch.topk(logits, K, dim=-1).indices)
    loss, metrics = topk.select_processor(K)(model_output={}, data=None, dp_group=None)  # verl's loss call
    assert float(loss) == 0.0 and metrics == {}


def test_gather_processor_is_log_softmax_at_the_given_ids_with_the_mass():
    logits = _logits(5, seed=1)
    ids = torch.randint(0, V, (5, K), generator=torch.Generator().manual_seed(2))
    data = TensorDict({topk.GATHER_IDS: topk.nested_rows([ids[:2], ids[2:]])}, batch_size=[2])
    columns = topk.gather_processor(K)(student_logits=logits.unsqueeze(0), data=data)
    values = torch.stack([columns[f"{topk.VALUE_COLUMN}{j}"][0] for j in range(K)], dim=-1)
    expected = torch.log_softmax(logits, dim=-1).gather(-1, ids)
    assert_close(values, expected)
    assert_close(columns[topk.MASS_COLUMN][0], expected.exp().sum(-1))


def test_gather_ids_sit_on_the_positions_that_predict_the_response():
    """A teacher row of prompt P = 4 and response R = 2: position p predicts token p + 1, so the ids of response
    token t sit at position P − 1 + t; response_windows reads the same positions back."""
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    nested = topk.gather_ids([4], [ids])
    row = nested.unbind()[0]
    assert row.shape == (6, K)
    assert torch.equal(row[3:5], ids) and not row[:3].any() and not row[5:].any()
    assert torch.equal(topk.response_windows(nested, [2])[0], ids)


def test_stack_columns_and_windows_over_rows_of_different_lengths():
    full = [torch.arange(5), torch.arange(10, 17)]
    output = TensorDict({f"c{j}": torch.nested.as_nested_tensor([r + 100 * j for r in full], layout=torch.jagged)
                         for j in range(2)}, batch_size=[2])
    stacked = topk.stack_columns(output, "c", 2)
    windows = topk.response_windows(stacked, [2, 3])
    assert torch.equal(windows[0], torch.tensor([[2, 102], [3, 103]]))
    assert torch.equal(windows[1], torch.tensor([[13, 113], [14, 114], [15, 115]]))


def test_balanced_order_deals_work_round_robin_in_equal_chunks():
    order = topk.balanced_order([5, 0, 9, 0, 7, 1], dp_size=2)
    assert sorted(order) == list(range(6))
    first, second = order[:3], order[3:]
    assert first == [2, 0, 1] and second == [4, 5, 3]  # 9, 5, 0 | 7, 1, 0
    with pytest.raises(ValueError, match="do not split evenly"):
        topk.balanced_order([1, 2, 3], dp_size=2)


# ---------------------------------------------------------------------------------- the live divergence


def _micro_batch(prompt_lens, response_lens, has_teacher, ids_rows, teacher_rows) -> TensorDict:
    input_ids = [torch.zeros(p + r, dtype=torch.long) for p, r in zip(prompt_lens, response_lens)]
    return TensorDict(
        {
            "input_ids": torch.nested.as_nested_tensor(input_ids, layout=torch.jagged),
            "response_mask": torch.nested.as_nested_tensor([torch.ones(r, dtype=torch.long) for r in response_lens],
                                                           layout=torch.jagged),
            "has_teacher": torch.tensor(has_teacher),
            topk.TOPK_IDS: topk.nested_rows(ids_rows),
            topk.TEACHER_TOPK_LOG_PROBS: topk.nested_rows(teacher_rows),
        },
        batch_size=[len(prompt_lens)],
    )


def test_live_divergence_is_zero_when_the_teacher_is_the_student_and_only_on_scored_response_positions():
    """Row 0 (P 3, R 2) has a teacher equal to the student at θ_old's ids; row 1 (P 2, R 3) is a placeholder row.
    The divergence is 0 everywhere, with zero gradient; a different teacher makes it positive on exactly row 0's
    two response positions (packed 2 and 3), the gradient reaching the student's logits only there."""
    logits = _logits(5 + 5, seed=3).requires_grad_(True)  # packed rows of 5 and 5 tokens
    positions = torch.tensor([2, 3])  # P − 1 … P + R − 2 of row 0
    ids = torch.topk(logits[positions].detach(), K, dim=-1).indices  # [2, K] θ_old's ids (θ = θ_old here)
    same = torch.log_softmax(logits.detach()[positions], -1).gather(-1, ids)
    data = _micro_batch([3, 2], [2, 3], [True, False], [ids, torch.zeros(1, K, dtype=torch.long)],
                        [same, torch.zeros(1, K)])
    zero = topk.live_divergence(logits, data, alpha=0.5)
    assert zero.shape == (10,)
    assert_close(zero, torch.zeros(10), atol=1e-6, rtol=0)
    zero.sum().backward()
    assert_close(logits.grad, torch.zeros_like(logits), atol=1e-6, rtol=0)

    logits.grad = None
    other = torch.log_softmax(_logits(2, seed=4), -1).gather(-1, ids)
    data = _micro_batch([3, 2], [2, 3], [True, False], [ids, torch.zeros(1, K, dtype=torch.long)],
                        [other, torch.zeros(1, K)])
    divergence = topk.live_divergence(logits, data, alpha=0.5)
    expected = signals.topk_jsd(torch.log_softmax(logits.detach()[positions], -1).gather(-1, ids), other, 0.5)
    assert_close(divergence[positions].detach(), expected)
    assert (divergence[positions] > 0).all() and not divergence[[0, 1, 4, 5, 6, 7, 8, 9]].any()
    divergence.sum().backward()
    touched = logits.grad.abs().sum(-1) > 0
    assert touched.tolist() == [i in (2, 3) for i in range(10)]


def test_live_divergence_refuses_fields_of_another_length():
    ids = torch.zeros(3, K, dtype=torch.long)
    data = _micro_batch([2], [2], [True], [ids], [torch.zeros(3, K)])
    with pytest.raises(ValueError, match="row 0 of the micro-batch has 2 response tokens"):
        topk.live_divergence(_logits(4), data, alpha=0.5)


# ---------------------------------------------------------------------------------- the losses

RESPONSE_LENS = [3, 2, 2]
PROMPT_LENS = [2, 2, 1]
LOG_PROB = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0], [-0.2, -0.4, 0.0]])  # [3, 3] π_θ
OLD = torch.tensor([[-1.0, -2.5, -0.5], [-0.3, -0.7, 0.0], [-0.9, -0.4, 0.0]])  # π_old: ratios e^0.5 and e^0.7 > 2
ADVANTAGES = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0], [0.5, 0.5, 0.0]])
DIVERGENCE = torch.tensor([[0.2, 0.4, 0.1], [0.3, 0.6, 0.0], [0.5, 0.7, 0.0]])
WEIGHTS = torch.tensor([[1.2, 0.6, 1.2], [0.0, 0.0, 0.0], [0.9, 1.1, 0.0]])


def _nested(rows):
    return torch.nested.as_nested_tensor(list(rows), layout=torch.jagged)


def _full(values):  # response values embedded in full rows as the engine returns them (shifted by one)
    return _nested(torch.cat([torch.full((p - 1,), -9.0), values[i, :r], torch.full((1,), -9.0)])
                   for i, (p, r) in enumerate(zip(PROMPT_LENS, RESPONSE_LENS)))


def _loss_inputs(has_teacher, batch_num_tokens):
    cut = lambda t: [t[i, :r] for i, r in enumerate(RESPONSE_LENS)]  # noqa: E731
    log_prob = LOG_PROB.clone().requires_grad_(True)
    divergence = DIVERGENCE.clone().requires_grad_(True)
    model_output = {"log_probs": _full(log_prob), topk.DIVERGENCE: _full(divergence)}
    data = TensorDict(
        {
            "prompts": _nested(torch.ones(p, dtype=torch.long) for p in PROMPT_LENS),
            "responses": _nested(torch.ones(r, dtype=torch.long) for r in RESPONSE_LENS),
            "response_mask": _nested(torch.ones(r, dtype=torch.long) for r in RESPONSE_LENS),
            "old_log_probs": _nested(cut(OLD)),
            "advantages": _nested(cut(ADVANTAGES)),
            topk.TOPK_TOKEN_WEIGHTS: _nested(cut(WEIGHTS)),
            topk.TOPK_IDS: topk.nested_rows([torch.zeros(r, K, dtype=torch.int32) for r in RESPONSE_LENS]),
            topk.TEACHER_TOPK_LOG_PROBS: topk.nested_rows([torch.zeros(r, K) for r in RESPONSE_LENS]),
            "has_teacher": torch.tensor(has_teacher),
        },
        batch_size=[3],
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=batch_num_tokens, global_batch_size=3)
    return model_output, data, log_prob, divergence


def _actor(loss_mode):
    config = FSDPActorConfig(strategy="fsdp", ppo_micro_batch_size_per_gpu=1, rollout_n=1)
    return replace(config, policy_loss=replace(config.policy_loss, loss_mode=loss_mode))


def _capped_ratio():
    return torch.exp(LOG_PROB - OLD).clamp(max=2.0)


def test_sdpo_loss_is_the_capped_divergence_token_mean_over_rows_with_a_demonstration():
    """Rows 0 and 2 have a demonstration (5 tokens: the trainer's loss_mask count); row 1 has none and no loss.
    L = Σ_D D·min(ρ, 2)·w / 5, hand-computed; the gradient reaches only D's tokens of the divergence."""
    model_output, data, log_prob, divergence = _loss_inputs([True, False, True], batch_num_tokens=5)
    loss, metrics = topk_distill_loss(_actor("sdpo"), model_output, data, loss_mode="sdpo", alpha=0.5, is_cap=2.0)
    ratio = _capped_ratio()
    terms = [DIVERGENCE[0, t] * ratio[0, t] * WEIGHTS[0, t] for t in range(3)]
    terms += [DIVERGENCE[2, t] * ratio[2, t] * WEIGHTS[2, t] for t in range(2)]
    assert_close(loss, sum(terms) / 5)
    assert float(ratio[2, 0]) == 2.0  # e^0.7 > 2: the cap binds on one token
    assert_close(torch.as_tensor(metrics["actor/topk_divergence"].values[0]),
                 torch.tensor((0.2 + 0.4 + 0.1 + 0.5 + 0.7) / 5))
    loss.backward()
    assert divergence.grad[1].abs().sum() == 0 and (divergence.grad[0] != 0).all()
    assert_close(log_prob.grad, torch.zeros_like(log_prob))  # ρ is detached: no gradient through π_θ(y_t)


def test_srpo_loss_is_grpo_on_unrouted_tokens_plus_weighted_divergence_on_routed_over_all_tokens():
    """Row 1 (a wrong rollout with a correct sibling) is routed to the teacher; rows 0 and 2 get verl's vanilla
    surrogate. Both parts share verl's global count of all 7 response tokens."""
    model_output, data, _, _ = _loss_inputs([False, True, False], batch_num_tokens=7)
    actor = _actor("srpo")
    loss, metrics = topk_distill_loss(actor, model_output, data, loss_mode="srpo", alpha=0.5, is_cap=2.0)
    response = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 0]], dtype=torch.bool)
    routed = torch.tensor([[0, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    expected_pg, _ = compute_policy_loss_vanilla(
        old_log_prob=OLD, log_prob=LOG_PROB, advantages=ADVANTAGES, response_mask=response & ~routed,
        loss_agg_mode="token-mean", config=actor)
    ratio = _capped_ratio()
    expected_distill = sum(DIVERGENCE[1, t] * ratio[1, t] * WEIGHTS[1, t] for t in range(2)) / 7
    assert_close(loss, expected_pg + expected_distill)
    assert_close(torch.as_tensor(metrics["actor/topk_loss"].values[0]), expected_distill)
    assert "actor/pg_loss" in metrics


def test_srpo_with_nothing_routed_is_verls_vanilla_loss():
    model_output, data, _, _ = _loss_inputs([False, False, False], batch_num_tokens=7)
    loss, metrics = topk_distill_loss(_actor("srpo"), model_output, data, loss_mode="srpo", alpha=0.5, is_cap=2.0)
    response = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 0]], dtype=torch.bool)
    expected, _ = compute_policy_loss_vanilla(old_log_prob=OLD, log_prob=LOG_PROB, advantages=ADVANTAGES,
                                              response_mask=response, loss_agg_mode="token-mean",
                                              config=_actor("srpo"))
    assert_close(loss, expected)
    assert float(metrics["actor/topk_loss"].values[0]) == 0.0 and "actor/topk_divergence" not in metrics


def test_sdpo_micro_batch_without_a_demonstration_has_zero_loss_and_a_graph():
    model_output, data, log_prob, _ = _loss_inputs([False, False, False], batch_num_tokens=0)
    loss, _ = topk_distill_loss(_actor("sdpo"), model_output, data, loss_mode="sdpo", alpha=0.5, is_cap=2.0)
    assert float(loss.detach()) == 0.0 and loss.requires_grad
    loss.backward()


def test_losses_refuse_a_missing_processor_output_or_field_and_outside_the_trainer():
    model_output, data, _, _ = _loss_inputs([True, False, True], batch_num_tokens=5)
    with pytest.raises(RuntimeError, match="did not call it as a logits processor"):
        topk_distill_loss(_actor("sdpo"), {"log_probs": model_output["log_probs"]}, data, loss_mode="sdpo",
                          alpha=0.5, is_cap=2.0)
    del data[topk.TOPK_TOKEN_WEIGHTS]
    with pytest.raises(KeyError, match="topk_token_weights"):
        topk_distill_loss(_actor("sdpo"), model_output, data, loss_mode="sdpo", alpha=0.5, is_cap=2.0)
    for registered in (compute_policy_loss_sdpo, compute_policy_loss_srpo):
        with pytest.raises(RuntimeError, match="trainer_mode=rlrt_sync"):
            registered(OLD, LOG_PROB, ADVANTAGES, torch.ones(3, 3, dtype=torch.bool))


def test_stored_bytes_are_ids_on_every_token_and_teacher_values_on_rows_with_a_demonstration():
    """K = 100: 4K = 400 B of ids on every response token, 2K + 12 = 212 B on each token of a row with a
    demonstration (612 B in all there), 2K + 12·R on a placeholder row: as the placeholders' own sizes say."""
    assert topk.stored_topk_bytes(100, response_tokens=10, routed_tokens=10, placeholder_rows=0) == 6120
    assert topk.stored_topk_bytes(100, response_tokens=13, routed_tokens=10, placeholder_rows=1) == 6120 + 3 * 412 + 200
    placeholder = topk.placeholder_outputs(4, response_len=3)
    assert set(placeholder) == set(topk.TEACHER_PASS_OUTPUTS)
    assert placeholder[topk.TEACHER_TOPK_LOG_PROBS].shape == (1, 4) and placeholder[topk.TEACHER_ENTROPY].shape == (3,)
    placeholder_bytes = sum(t.numel() * t.element_size() for t in placeholder.values())
    assert placeholder_bytes == topk.stored_topk_bytes(4, response_tokens=3, routed_tokens=0, placeholder_rows=1) - 4 * 4 * 3
