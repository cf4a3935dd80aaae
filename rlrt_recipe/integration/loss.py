"""The ``self_distill`` policy loss: verl's clipped surrogate plus an optional self-distillation term (RLSD's
GRPO+OPSD in its loss form).

    L = L_verl + β_loss · agg_t( KL_est(log π_θ(y_t), τ_t) · [row has a teacher] )   over response tokens

``L_verl`` is verl's ``ppo_loss`` unchanged (vanilla surrogate with dual clip, entropy bonus, KL loss,
rollout-IS weights), ``KL_est`` one of verl's ``kl_penalty`` estimators (``rlrt.distill_kl_type``), ``agg``
verl's ``agg_loss`` with the actor's ``loss_agg_mode``, and τ the teacher log-probs, which never get a
gradient. β_loss = 0 returns ``ppo_loss``'s result untouched, i.e. verl's ``vanilla`` bit for bit.

The default estimator is ``k3+``: k3's value (logged) with k2's gradient, ∂KL_est/∂log π_θ(y_t) = −Δ_t where
Δ_t = τ_t − log π_θ(y_t) — the sampled-token gradient of KL(π_θ ‖ π_T) (RLSD Eq. 17), unclamped. Plain ``k3``
(``low_var_kl``) is clamped at 10 inside verl (``core_algos.kl_penalty_forward``), which makes its gradient
exactly 0 once Δ > ~2.6 nats: the tokens the teacher is surest of would be dropped. ``rlrt.distill_loss_max_clamp``
clamps the per-token term to [−c, c] like verl's own distillation loss (``trainer/distillation/losses.py``,
``distillation_loss.loss_max_clamp``); off by default.

verl calls a registered policy loss with a fixed argument list that cannot carry ``teacher_log_probs``, so
the term lives in ``self_distill_ppo_loss``, the loss function the ``rlrt_sync`` trainer installs with
``set_loss_fn``; the registered ``self_distill`` policy loss computes the surrogate and refuses to run outside it,
so the term can never be dropped silently.
"""

from __future__ import annotations

import contextvars
from functools import partial
from typing import Any

import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import (
    POLICY_LOSS_REGISTRY,
    agg_loss,
    compute_policy_loss_vanilla,
    kl_penalty,
    register_policy_loss,
)
from verl.utils.metric import Metric
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import no_padding_2_padding

from rlrt_recipe.config import DISTILL_LOSS_MODE
from rlrt_recipe.integration.registry import register_once

# True while self_distill_ppo_loss runs verl's ppo_loss: the registered loss is being called from inside it.
_INSIDE_SELF_DISTILL_LOSS = contextvars.ContextVar("inside_self_distill_ppo_loss", default=False)


@register_once(POLICY_LOSS_REGISTRY, register_policy_loss, DISTILL_LOSS_MODE)
def compute_policy_loss_self_distill(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """verl's vanilla surrogate min(ρ_t Â_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) Â_t), dual clip for Â_t < 0."""
    if not _INSIDE_SELF_DISTILL_LOSS.get():
        raise RuntimeError(
            f"actor.policy_loss.loss_mode={DISTILL_LOSS_MODE} adds the distillation term through the loss function that the "
            "rlrt_sync trainer installs; set trainer.v1.trainer_mode=rlrt_sync (or use loss_mode=vanilla)"
        )
    return compute_policy_loss_vanilla(
        old_log_prob=old_log_prob,
        log_prob=log_prob,
        advantages=advantages,
        response_mask=response_mask,
        loss_agg_mode=loss_agg_mode,
        config=config,
        rollout_is_weights=rollout_is_weights,
    )


def self_distill_ppo_loss(
    config: Any,
    model_output: dict[str, torch.Tensor],
    data: TensorDict,
    dp_group: Any = None,
    *,
    distill_loss_coef: float,
    distill_kl_type: str,
    distill_loss_max_clamp: float | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """verl's ``ppo_loss`` + β_loss · agg(KL_est(log π_θ, τ) on rows with ``has_teacher``, 0 elsewhere), the
    per-token KL_est clamped to [−c, c] when ``distill_loss_max_clamp = c`` is set; install with
    ``functools.partial(self_distill_ppo_loss, config=actor_config, distill_loss_coef=β, distill_kl_type=kind)``."""
    token = _INSIDE_SELF_DISTILL_LOSS.set(True)
    try:
        loss, metrics = ppo_loss(config, model_output, data, dp_group)
    finally:
        _INSIDE_SELF_DISTILL_LOSS.reset(token)
    if distill_loss_coef == 0.0:
        return loss, metrics

    for key in ("teacher_log_probs", "has_teacher"):
        if key not in data.keys():
            raise KeyError(f"the {DISTILL_LOSS_MODE} loss needs '{key}' in every micro-batch; the rlrt_sync teacher step writes it")
    log_prob = no_padding_2_padding(model_output["log_probs"], data)  # [b, T] with grad
    padded = data.select("teacher_log_probs", "response_mask").to_padded_tensor()
    teacher = padded["teacher_log_probs"].detach().to(log_prob.dtype)  # [b, T] τ, never differentiated
    response = padded["response_mask"].bool()  # [b, T]
    scored = response & data["has_teacher"].bool().reshape(-1, 1)  # [b, T] tokens of rows with a teacher
    kl = kl_penalty(logprob=log_prob, ref_logprob=teacher, kl_penalty=distill_kl_type)  # [b, T]
    if distill_loss_max_clamp is not None:
        kl = kl.clamp(-distill_loss_max_clamp, distill_loss_max_clamp)  # [b, T]; zero gradient outside the band
    kl = torch.where(scored, kl, 0.0)  # rows without a teacher hold τ = s: they contribute 0, not KL to θ_old
    # Aggregated over all response tokens, like the surrogate, so the term has the surrogate's normalisation;
    # ppo_loss above filled config.global_batch_info (dp size, token and batch counts) for this micro-batch.
    distill = agg_loss(loss_mat=kl, loss_mask=response, loss_agg_mode=config.loss_agg_mode, **config.global_batch_info)
    metrics["actor/distill_loss"] = Metric(value=distill, aggregation=metrics["actor/pg_loss"].aggregation)
    return loss + distill_loss_coef * distill, metrics


def installed_loss_fn(actor_config: Any, rlrt_cfg: Any) -> Any:
    """The loss function the ``rlrt_sync`` trainer installs with ``set_loss_fn``: ``self_distill_ppo_loss`` bound to
    the actor config and the ``rlrt:`` section's distillation settings."""
    return partial(
        self_distill_ppo_loss, config=actor_config, distill_loss_coef=rlrt_cfg.distill_loss_coef,
        distill_kl_type=rlrt_cfg.distill_kl_type, distill_loss_max_clamp=rlrt_cfg.distill_loss_max_clamp,
    )
