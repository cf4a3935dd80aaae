"""The self_distill policy loss: verl's ppo_loss unchanged plus β_loss · agg(KL_est(log π_θ, τ)), on hand-built batches."""

import math
from dataclasses import replace

import pytest
import torch
from tensordict import TensorDict
from torch.testing import assert_close
from verl.utils import tensordict_utils as tu
from verl.workers.config import FSDPActorConfig
from verl.workers.utils.losses import ppo_loss

from rlrt_recipe.integration.loss import self_distill_ppo_loss

PROMPT_LENS, RESPONSE_LENS = [2, 1], [3, 2]
LOG_PROB = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]])  # [2, 3] response log-probs of π_θ
TEACHER = torch.tensor([[-1.5, -1.0, -0.5], [-0.1, -0.2, 0.0]])  # [2, 3] τ
ADVANTAGES = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]])


def _nested(rows):
    return torch.nested.as_nested_tensor(list(rows), layout=torch.jagged)


def _inputs(log_prob_leaf, teacher_leaf, has_teacher=(True, False)):
    """A 2-row micro-batch in verl's NO_PADDING layout, with old log-probs equal to π_θ's (ratio 1)."""
    full_rows = []  # log-probs over prompt + response, shifted by one as the engine returns them
    for i, (p, r) in enumerate(zip(PROMPT_LENS, RESPONSE_LENS)):
        full_rows.append(torch.cat([torch.full((p - 1,), -9.0), log_prob_leaf[i, :r], torch.full((1,), -9.0)]))
    model_output = {"log_probs": _nested(full_rows)}
    cut = lambda t: [t[i, :r] for i, r in enumerate(RESPONSE_LENS)]  # noqa: E731
    data = TensorDict(
        {
            "prompts": _nested(torch.ones(p, dtype=torch.long) for p in PROMPT_LENS),
            "responses": _nested(torch.ones(r, dtype=torch.long) for r in RESPONSE_LENS),
            "response_mask": _nested(torch.ones(r, dtype=torch.long) for r in RESPONSE_LENS),
            "old_log_probs": _nested(cut(LOG_PROB)),
            "advantages": _nested(cut(ADVANTAGES)),
            "teacher_log_probs": _nested(cut(teacher_leaf)),
            "has_teacher": torch.tensor(has_teacher),
        },
        batch_size=[2],
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=None, global_batch_size=None)
    return model_output, data


def _actor(loss_mode):
    config = FSDPActorConfig(strategy="fsdp", ppo_micro_batch_size_per_gpu=1, rollout_n=1)
    return replace(config, policy_loss=replace(config.policy_loss, loss_mode=loss_mode))


def _loss(beta, loss_mode="self_distill", **kw):
    log_prob = LOG_PROB.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    model_output, data = _inputs(log_prob, teacher, **kw)
    loss, metrics = self_distill_ppo_loss(_actor(loss_mode), model_output, data, distill_loss_coef=beta,
                                  distill_kl_type="low_var_kl")
    return loss, metrics, log_prob, teacher


def test_zero_beta_is_bit_identical_to_vanilla_ppo_loss():
    """β_loss = 0: the self_distill loss is verl's vanilla ppo_loss to the bit, metrics included."""
    loss, metrics, _, _ = _loss(0.0)
    model_output, data = _inputs(LOG_PROB.clone().requires_grad_(True), TEACHER.clone())
    ref_loss, ref_metrics = ppo_loss(_actor("vanilla"), model_output, data)
    assert torch.equal(loss, ref_loss)
    assert set(metrics) == set(ref_metrics)
    for key, metric in ref_metrics.items():
        assert torch.equal(torch.as_tensor(metrics[key].values), torch.as_tensor(metric.values)), key


def test_positive_beta_hand_computed():
    """β_loss = 0.1, low_var_kl on the 3 tokens of the one row with a teacher, token-mean over all 5 tokens:
    pg = token-mean(−A·1) = (−3 + 2)/5 = −0.2;  k3 = e^(τ−lp) − (τ−lp) − 1 on Δ = (−0.5, 1, 0)."""
    k3 = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1, 0.0]
    loss, metrics, _, _ = _loss(0.1)
    assert_close(loss, torch.tensor(-0.2 + 0.1 * sum(k3) / 5))
    assert_close(torch.as_tensor(metrics["actor/distill_loss"].values[0]), torch.tensor(sum(k3) / 5))
    assert_close(torch.as_tensor(metrics["actor/pg_loss"].values[0]), torch.tensor(-0.2))


def test_teacher_never_gets_a_gradient():
    """τ is a stop-gradient target: backward reaches log π_θ only."""
    loss, _, log_prob, teacher = _loss(0.1)
    loss.backward()
    assert teacher.grad is None
    assert log_prob.grad is not None and log_prob.grad[0].abs().sum() > 0


def test_rows_without_teacher_add_nothing():
    """With no row marked has_teacher the distillation term is zero (τ = s rows stay out of the sum)."""
    loss, metrics, _, _ = _loss(0.1, has_teacher=(False, False))
    assert_close(loss, torch.tensor(-0.2))


def test_registered_loss_refuses_to_run_outside_the_rlrt_sync_trainer():
    """loss_mode=self_distill through verl's stock ppo_loss fails naming the trainer mode, never drops the term."""
    model_output, data = _inputs(LOG_PROB.clone(), TEACHER.clone())
    with pytest.raises(RuntimeError, match=r"trainer\.v1\.trainer_mode=rlrt_sync"):
        ppo_loss(_actor("self_distill"), model_output, data)


def test_missing_teacher_field_is_named():
    model_output, data = _inputs(LOG_PROB.clone(), TEACHER.clone())
    del data["teacher_log_probs"]
    with pytest.raises(KeyError, match="teacher_log_probs"):
        self_distill_ppo_loss(_actor("self_distill"), model_output, data, distill_loss_coef=0.1, distill_kl_type="low_var_kl")


def _one_token_batch(delta: float):
    """One row, one response token with A = 0 and τ = log π_θ + Δ: the loss is the distillation term alone."""
    log_prob = torch.tensor([[-4.0]], requires_grad=True)  # [1, 1]
    model_output = {"log_probs": _nested([torch.cat([log_prob[0], torch.full((1,), -9.0)])])}
    data = TensorDict(
        {
            "prompts": _nested([torch.ones(1, dtype=torch.long)]),
            "responses": _nested([torch.ones(1, dtype=torch.long)]),
            "response_mask": _nested([torch.ones(1, dtype=torch.long)]),
            "old_log_probs": _nested([log_prob[0].detach()]),
            "advantages": _nested([torch.zeros(1)]),
            "teacher_log_probs": _nested([log_prob[0].detach() + delta]),
            "has_teacher": torch.tensor([True]),
        },
        batch_size=[1],
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=None, global_batch_size=None)
    return log_prob, model_output, data


@pytest.mark.parametrize("delta", [3.0, 5.0, 8.0])
def test_default_distillation_gradient_survives_where_the_teacher_is_confident(delta):
    """Issue 12 / review A2: through the installed loss function with the rlrt: defaults (k3+), a token the teacher
    finds e^Δ times likelier keeps the gradient −Δ (pulls log π_θ up, |∂L/∂log π| ≥ 1); verl's clamped
    low_var_kl gives exactly 0 there."""
    from rlrt_recipe.config import RlrtConfig
    from rlrt_recipe.integration.loss import installed_loss_fn

    log_prob, model_output, data = _one_token_batch(delta)
    loss_fn = installed_loss_fn(_actor("self_distill"), RlrtConfig(distill_loss_coef=1.0))
    loss, metrics = loss_fn(model_output=model_output, data=data)
    loss.backward()
    grad = float(log_prob.grad[0, 0])
    assert grad < 0 and abs(grad) >= 1.0
    assert grad == pytest.approx(-delta)
    k3 = min(math.exp(delta) - delta - 1, 10.0)  # the logged value is k3's, clamped by verl
    assert float(torch.as_tensor(metrics["actor/distill_loss"].values[0])) == pytest.approx(k3)

    log_prob, model_output, data = _one_token_batch(delta)
    clamped, _ = self_distill_ppo_loss(_actor("self_distill"), model_output, data, distill_loss_coef=1.0, distill_kl_type="low_var_kl")
    clamped.backward()
    assert float(log_prob.grad[0, 0]) == 0.0


def test_clamp_option_bounds_the_term_like_verls_distillation_loss():
    """distill_loss_max_clamp = c clamps the per-token term to [−c, c] (verl's loss_max_clamp); off by default."""
    log_prob, model_output, data = _one_token_batch(3.0)
    loss, metrics = self_distill_ppo_loss(_actor("self_distill"), model_output, data, distill_loss_coef=1.0, distill_kl_type="k2",
                                  distill_loss_max_clamp=1.0)
    assert float(loss.detach()) == pytest.approx(1.0)  # k2 = ½·3² = 4.5, clamped to 1
    loss.backward()
    assert float(log_prob.grad[0, 0]) == 0.0


def test_installed_loss_with_zero_beta_is_vanilla_without_teacher_fields():
    """loss_mode=self_distill with β_loss = 0 under rlrt_sync (no teacher step: the fields are absent) runs and is verl's
    vanilla loss bit for bit (review A5: it used to raise at the first update)."""
    from rlrt_recipe.config import RlrtConfig
    from rlrt_recipe.integration.loss import installed_loss_fn

    model_output, data = _inputs(LOG_PROB.clone().requires_grad_(True), TEACHER.clone())
    del data["teacher_log_probs"], data["has_teacher"]
    loss, _ = installed_loss_fn(_actor("self_distill"), RlrtConfig(distill_loss_coef=0.0))(model_output=model_output, data=data)
    ref_loss, _ = ppo_loss(_actor("vanilla"), model_output, data)
    assert torch.equal(loss, ref_loss)
