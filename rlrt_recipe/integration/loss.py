"""The policy losses of the ``rlrt_sync`` trainer: ``self_distill`` (verl's clipped surrogate plus RLSD's GRPO+OPSD
term) and the top-K losses ``sdpo`` and ``srpo`` (the RLRT comparison's logit-level baselines), each installed with
``set_loss_fn`` (``installed_loss_fn``).

``self_distill``:

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

``sdpo`` and ``srpo`` (Hübotter et al., arXiv 2601.20802; Li et al., arXiv 2604.02288; docs/methods.md), with
D_t = ``signals.topk_jsd`` of the live student and the stored teacher over θ_old's top-K ids plus a tail (``topk.py``),
ρ̄_t = min(π_θ(y_t)/π_old(y_t), c)_sg, w_t the ``topk_token_weights`` and r_t verl's rollout-IS weights (1 when off):

    sdpo:  L = Σ_{t ∈ D} D_t·ρ̄_t·r_t / |D|                        D = response tokens of rows with a demonstration
    srpo:  L = [Σ_{t ∉ D} ℓ^GRPO_t + Σ_{t ∈ D} w_t·D_t·ρ̄_t·r_t] / N   D = tokens of wrong rows routed to the teacher

with ℓ^GRPO verl's vanilla surrogate (plus its entropy and KL terms) and both denominators global over the mini-batch
and the data-parallel ranks: verl's ``batch_num_tokens``, the sum of ``loss_mask``, which the trainer sets to D's tokens
for ``sdpo`` and leaves at every response token (N) for ``srpo``.
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
from verl.utils.metric import AggregationType, Metric
from verl.workers.utils.losses import ppo_loss
from verl.workers.utils.padding import no_padding_2_padding

from rlrt_recipe import signals
from rlrt_recipe.config import DISTILL_LOSS_MODE, TOPK_LOSS_MODES
from rlrt_recipe.integration import topk
from rlrt_recipe.integration.registry import register_once

# True while self_distill_ppo_loss runs verl's ppo_loss: the registered loss is being called from inside it.
_INSIDE_SELF_DISTILL_LOSS = contextvars.ContextVar("inside_self_distill_ppo_loss", default=False)
# While topk_distill_loss runs verl's ppo_loss for srpo: the [b, T] tokens routed to the teacher (no GRPO term there).
_ROUTED_TOKENS: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("srpo_routed_tokens", default=None)


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
            "rlrt_sync trainer installs; set trainer.v1.trainer_mode=rlrt_sync, rlrt_colocate_async or rlrt_separate_async (or use loss_mode=vanilla)"
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


def _outside_topk_loss(name: str) -> RuntimeError:
    return RuntimeError(
        f"actor_rollout_ref.actor.policy_loss.loss_mode={name} needs the teacher pass and the loss function of the "
        "rlrt_sync trainer; set trainer.v1.trainer_mode=rlrt_sync (or rlrt_colocate_async, rlrt_separate_async)"
    )


@register_once(POLICY_LOSS_REGISTRY, register_policy_loss, "sdpo")
def compute_policy_loss_sdpo(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                             config=None, rollout_is_weights=None):
    """SDPO has no surrogate: its whole loss is ``topk_distill_loss``; verl never calls this inside it."""
    raise _outside_topk_loss("sdpo")


@register_once(POLICY_LOSS_REGISTRY, register_policy_loss, "srpo")
def compute_policy_loss_srpo(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                             config=None, rollout_is_weights=None):
    """SRPO's GRPO part: verl's vanilla surrogate on the response tokens not routed to the teacher, normalised by
    verl's global token count (every response token)."""
    routed = _ROUTED_TOKENS.get()
    if routed is None:
        raise _outside_topk_loss("srpo")
    return compute_policy_loss_vanilla(
        old_log_prob=old_log_prob, log_prob=log_prob, advantages=advantages, response_mask=response_mask & ~routed,
        loss_agg_mode=loss_agg_mode, config=config, rollout_is_weights=rollout_is_weights,
    )


def topk_distill_loss(
    config: Any,
    model_output: dict[str, torch.Tensor] | None = None,
    data: TensorDict | None = None,
    dp_group: Any = None,
    student_logits: torch.Tensor | None = None,
    *,
    loss_mode: str,
    alpha: float,
    is_cap: float,
) -> Any:
    """The ``sdpo``/``srpo`` loss (module docstring). verl's engine calls it twice per micro-batch: first as a logits
    processor (``student_logits``), returning the per-token divergence D_t with its gradient
    (``topk.live_divergence``), then as the loss, reading D_t back from ``model_output``."""
    if student_logits is not None:
        return {topk.DIVERGENCE: topk.live_divergence(student_logits[0], data, alpha).unsqueeze(0)}
    for key in (topk.TOPK_IDS, topk.TEACHER_TOPK_LOG_PROBS, topk.TOPK_TOKEN_WEIGHTS, "has_teacher"):
        if key not in data.keys():
            raise KeyError(f"the {loss_mode} loss needs '{key}' in every micro-batch; the rlrt_sync teacher pass writes it")
    if topk.DIVERGENCE not in model_output:
        raise RuntimeError(
            f"the {loss_mode} loss got no per-token divergence: verl's engine did not call it as a logits processor "
            "(distillation_use_topk was not set for this update, or actor_rollout_ref.model.use_fused_kernels=true)"
        )
    divergence = no_padding_2_padding(model_output[topk.DIVERGENCE], data)  # [b, T] D_t, with gradient
    log_prob = no_padding_2_padding(model_output["log_probs"], data)  # [b, T]
    fields = ["response_mask", "old_log_probs", topk.TOPK_TOKEN_WEIGHTS]
    if "rollout_is_weights" in data.keys():
        fields.append("rollout_is_weights")
    padded = data.select(*fields).to_padded_tensor()
    response = padded["response_mask"].bool()  # [b, T]
    routed = response & data["has_teacher"].bool().reshape(-1, 1)  # [b, T] the tokens D
    per_token = divergence * signals.capped_is_ratio(log_prob, padded["old_log_probs"], is_cap)  # [b, T]
    per_token = per_token * padded[topk.TOPK_TOKEN_WEIGHTS].to(per_token.dtype)
    if "rollout_is_weights" in padded.keys():
        per_token = per_token * padded["rollout_is_weights"].to(per_token.dtype)
    # verl's global count of loss_mask tokens over the mini-batch and ranks (the D tokens for sdpo); a mini-batch with
    # none gives 0 tokens, hence the floor (its loss is 0 either way)
    batch_num_tokens = max(int(data["batch_num_tokens"]), 1)
    distill = agg_loss(loss_mat=per_token, loss_mask=routed, loss_agg_mode="token-mean", dp_size=data["dp_size"],
                       batch_num_tokens=batch_num_tokens)
    if loss_mode == "srpo":
        token = _ROUTED_TOKENS.set(routed)
        try:
            loss, metrics = ppo_loss(config, model_output, data, dp_group)
        finally:
            _ROUTED_TOKENS.reset(token)
        loss = loss + distill
    else:
        metrics = {}
        loss = distill + 0.0 * log_prob.sum()  # keeps a graph when no row of the micro-batch has a demonstration
    n_routed = int(routed.sum())
    metrics["actor/topk_loss"] = Metric(value=distill, aggregation=AggregationType.SUM)
    if n_routed:
        metrics["actor/topk_divergence"] = Metric(
            value=float((divergence.detach() * routed).sum()) / n_routed, aggregation=AggregationType.MEAN)
    return loss, metrics


def installed_loss_fn(actor_config: Any, rlrt_cfg: Any) -> Any:
    """The loss function the ``rlrt_sync`` trainer installs with ``set_loss_fn``: ``topk_distill_loss`` for the
    ``sdpo``/``srpo`` loss modes, else ``self_distill_ppo_loss``, bound to the actor config and the ``rlrt:`` section."""
    loss_mode = actor_config.policy_loss.loss_mode
    if loss_mode in TOPK_LOSS_MODES:
        return partial(topk_distill_loss, config=actor_config, loss_mode=loss_mode, alpha=rlrt_cfg.distill_jsd_alpha,
                       is_cap=rlrt_cfg.distill_is_cap)
    return partial(
        self_distill_ppo_loss, config=actor_config, distill_loss_coef=rlrt_cfg.distill_loss_coef,
        distill_kl_type=rlrt_cfg.distill_kl_type, distill_loss_max_clamp=rlrt_cfg.distill_loss_max_clamp,
    )
