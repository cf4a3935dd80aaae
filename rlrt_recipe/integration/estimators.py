"""The advantage estimators ``rlrt``, ``rlsd``, ``opsd``, ``grpo_opsd`` and ``grpo_eb``, registered with verl.

Each computes verl's GRPO outcome advantage A with verl's own ``compute_grpo_outcome_advantage`` (``opsd`` needs
none) and reshapes it per token with ``rlrt_recipe.signals``. Signatures (docs/methods.md, "Contracts"):

    fn(token_level_rewards, response_mask, index, config=None, *, old_log_probs, teacher_log_probs,
       correct, has_teacher, global_step, rlrt_cfg,
       [responses, span_tag_ids]          with rlrt.span thinking/answer
       [teacher_entropy, vocab_size]      with rlrt.confidence_min
       ) -> (advantages, returns)                                                    the teacher forms
    fn(token_level_rewards, response_mask, index, config=None, *, entropy, rlrt_cfg)  grpo_eb

verl's stock trainers pass only the first four arguments; the keyword inputs (``INPUTS_OF_FORM``) come from the
``rlrt_sync`` trainer's ``_compute_advantage``, so a missing keyword is an error that says which trainer mode to set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, compute_grpo_outcome_advantage, register_adv_est

from rlrt_recipe import signals
from rlrt_recipe.config import ESTIMATOR_FORMS, RlrtConfig
from rlrt_recipe.integration.registry import register_once


def grpo_advantages(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: np.ndarray, config: Any = None
) -> torch.Tensor:
    """A: verl's GRPO outcome advantage, ``norm_adv_by_std_in_grpo`` taken from the algorithm config."""
    norm_by_std = True if config is None else bool(config.get("norm_adv_by_std_in_grpo", True))
    advantages, _ = compute_grpo_outcome_advantage(
        token_level_rewards=token_level_rewards,
        response_mask=response_mask,
        index=index,
        norm_adv_by_std_in_grpo=norm_by_std,
        config=config,
    )
    return advantages


def grpo_row_advantages(token_level_rewards: torch.Tensor, index: np.ndarray, config: Any = None) -> torch.Tensor:
    """A per row [B, 1]: verl's GRPO outcome advantage computed on each row's summed reward, so that
    ``grpo_row_advantages(r, index, config) * response_mask`` is ``grpo_advantages(r, response_mask, index, config)``
    bit for bit (verl sums the rewards over the response, normalises per group, then multiplies by the mask) without
    the [B, T] pass; the token-weight family broadcasts it over the row."""
    scores = token_level_rewards.sum(dim=-1, keepdim=True)  # [B, 1], verl's own first step
    return grpo_advantages(scores, torch.ones_like(scores, dtype=torch.int64), index, config)  # [B, 1]


def _reweighted(delta, response_mask, grpo, *, correct, has_teacher, global_step, rlrt_cfg, index,
                tokens, confidence) -> torch.Tensor:
    """rlrt, rlsd: the token-weight family with the member's settings (docs/methods.md, "The token-weight family"):
    Â_t = A·m_t + S_t·λ_add·g(Δ_t), m_t = 1 + S_t·λ_k·(G_t·w_t − 1), S_t the rows of ``rlrt.gate`` and the tokens of
    ``rlrt.span``, G_t the teacher confidence (``rlrt.confidence_min``)."""
    adv = grpo()  # [B, 1]
    cfg = rlrt_cfg
    rows = signals.selected_rows(cfg.gate, correct=correct, has_teacher=has_teacher, adv_sign=adv[:, 0].sign(),
                                 group=list(index))  # [B]
    low, high = _box(cfg, correct)  # [B] each
    return signals.family_advantages(
        delta, adv, response_mask, rows=rows, tokens=tokens, direction=cfg.direction, low=low, high=high,
        lam=cfg.lambda_at(global_step), confidence=confidence,
        lam_add=cfg.distill_adv_coef if cfg.additive else 0.0, additive=cfg.additive, fused=cfg.fused_advantage,
    )  # [B, T]


def _opsd(delta, response_mask, grpo, *, rlrt_cfg, **_) -> torch.Tensor:
    """opsd (sampled-token OPSD): Â_t = Δ_t, no reward; rows without a teacher carry Δ = 0."""
    return signals.opsd_advantages(delta, response_mask)


def _grpo_opsd(delta, response_mask, grpo, *, rlrt_cfg, has_teacher, tokens, **_) -> torch.Tensor:
    """grpo_opsd: the family's additive member, Â_t = A + S_t·λ_add·g(Δ_t) with λ_add = rlrt.distill_adv_coef, g =
    Δ (the default, ``rlrt.additive=delta``) or AntiSD's term and S_t the tokens of ``rlrt.span``; rows without a
    teacher carry Δ = 0, so g = 0 there."""
    adv = grpo()  # [B, 1]
    box = torch.ones(delta.shape[0])  # [B]: with λ = 0 no weight is formed
    rows = torch.ones(delta.shape[0], dtype=torch.bool)  # [B]
    return signals.family_advantages(
        delta, adv, response_mask, rows=rows, tokens=tokens, direction=1, low=box, high=box, lam=0.0, confidence=None,
        lam_add=rlrt_cfg.distill_adv_coef, additive=rlrt_cfg.additive, fused=rlrt_cfg.fused_advantage,
    )  # [B, T]


def span_tokens(cfg: RlrtConfig, responses: torch.Tensor | None, response_mask: torch.Tensor,
                span_tag_ids: tuple[list[int], list[int]] | None) -> torch.Tensor | None:
    """S_tok [B, T] of ``rlrt.span`` over the response ids (``signals.span_mask``), None for every token."""
    if cfg.span in (None, "all"):
        return None
    open_ids, close_ids = span_tag_ids
    return signals.span_mask(responses, response_mask, span=cfg.span, open_ids=open_ids, close_ids=close_ids)


def confidence_factor(cfg: RlrtConfig, teacher_entropy: torch.Tensor | None, response_mask: torch.Tensor,
                      vocab_size: int | None) -> torch.Tensor | None:
    """G_t [B, T] = max(g_min, 1 − H_T,t/log|V|) with g_min = ``rlrt.confidence_min``, None when it is off."""
    if cfg.confidence_min is None:
        return None
    return signals.teacher_confidence(teacher_entropy, response_mask, vocab_size=vocab_size, g_min=cfg.confidence_min)


def _box(cfg: RlrtConfig, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' clip box: symmetric ``rlrt.eps_w``, or CAST's ``rlrt.correct_box``/``incorrect_box``."""
    if cfg.correct_box is not None:
        return signals.clip_box(correct, correct_box=tuple(cfg.correct_box), incorrect_box=tuple(cfg.incorrect_box))
    return signals.clip_box(correct, eps_w=cfg.eps_w)


_ADVANTAGE_OF_FORM = {"reweighted": _reweighted, "gain": _opsd, "grpo_plus_gain": _grpo_opsd}

#: The keyword inputs of each form of advantage besides ``rlrt_cfg``: each is a TransferQueue field of the same name,
#: which the rlrt_sync trainer reads and passes, except the ``TRAINER_INPUTS`` it holds itself.
STEP_INPUT = "global_step"  # verl's step counter
#: Inputs the trainer passes from its own state: the step, the span's tag ids (``rlrt.span_tags`` tokenized) and the
#: model's vocabulary size |V| (the entropy's range).
TRAINER_INPUTS = (STEP_INPUT, "span_tag_ids", "vocab_size")
_TEACHER_INPUTS = ("old_log_probs", "teacher_log_probs", "correct", "has_teacher", STEP_INPUT)
INPUTS_OF_FORM: dict[str, tuple[str, ...]] = {
    **{form: _TEACHER_INPUTS for form in _ADVANTAGE_OF_FORM},
    "entropy_bonus": ("entropy",),  # θ_old's token entropy, stored by verl's old-log-prob pass
}
#: Extra inputs of the family's optional pieces: the response ids for ``rlrt.span``, the teacher's token entropy
#: (written by the teacher step) for ``rlrt.confidence_min``.
SPAN_INPUTS = ("responses", "span_tag_ids")
CONFIDENCE_INPUTS = ("teacher_entropy", "vocab_size")


def estimator_inputs(name: str, rlrt_cfg: RlrtConfig | None = None) -> tuple[str, ...]:
    """The keyword inputs of our estimator ``name`` besides ``rlrt_cfg`` (``INPUTS_OF_FORM``), with those of the
    optional pieces ``rlrt_cfg`` turns on."""
    inputs = INPUTS_OF_FORM[ESTIMATOR_FORMS[name]]
    if rlrt_cfg is not None and rlrt_cfg.span not in (None, "all"):
        inputs += SPAN_INPUTS
    if rlrt_cfg is not None and rlrt_cfg.confidence_min is not None:
        inputs += CONFIDENCE_INPUTS
    return inputs


def _check_inputs(name: str, given: dict[str, Any], needs: str) -> None:
    """Raise naming the missing keywords and ``trainer.v1.trainer_mode=rlrt_sync``, or an unresolved ``rlrt_cfg``."""
    missing = [key for key, value in given.items() if value is None]
    if missing:
        raise ValueError(
            f"advantage estimator '{name}' was called without {', '.join(missing)}: it needs {needs}, "
            "set trainer.v1.trainer_mode=rlrt_sync (or rlrt_colocate_async, rlrt_separate_async)"
        )
    rlrt_cfg = given["rlrt_cfg"]
    if not isinstance(rlrt_cfg, RlrtConfig) or rlrt_cfg.max_privileged_prompt_length is None:
        raise TypeError(f"advantage estimator '{name}' needs a resolved RlrtConfig, got {rlrt_cfg!r}")


def _teacher_estimator(name: str):
    """The verl-registrable estimator ``name``: checks the teacher fields, forms Δ, applies its advantage."""
    advantage_of = _ADVANTAGE_OF_FORM[ESTIMATOR_FORMS[name]]

    def estimator(
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: np.ndarray,
        config: Any = None,
        *,
        old_log_probs: torch.Tensor | None = None,
        teacher_log_probs: torch.Tensor | None = None,
        correct: torch.Tensor | None = None,
        has_teacher: torch.Tensor | None = None,
        global_step: int | None = None,
        rlrt_cfg: RlrtConfig | None = None,
        responses: torch.Tensor | None = None,
        span_tag_ids: tuple[list[int], list[int]] | None = None,
        teacher_entropy: torch.Tensor | None = None,
        vocab_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        given = dict(old_log_probs=old_log_probs, teacher_log_probs=teacher_log_probs, correct=correct,
                     has_teacher=has_teacher, global_step=global_step, rlrt_cfg=rlrt_cfg)
        _check_inputs(name, given, "the teacher step")
        optional = dict(responses=responses, span_tag_ids=span_tag_ids, teacher_entropy=teacher_entropy,
                        vocab_size=vocab_size)
        needed = estimator_inputs(name, rlrt_cfg)
        _check_inputs(name, {**{k: v for k, v in optional.items() if k in needed}, "rlrt_cfg": rlrt_cfg},
                      "the inputs of rlrt.span and rlrt.confidence_min")
        delta = signals.privileged_gain(teacher_log_probs, old_log_probs)  # [B, T]

        def grpo() -> torch.Tensor:
            return grpo_row_advantages(token_level_rewards, index, config)  # [B, 1]

        adv_hat = advantage_of(
            delta, response_mask, grpo, correct=correct.bool(), has_teacher=has_teacher.bool(),
            global_step=global_step, rlrt_cfg=rlrt_cfg, index=index,
            tokens=span_tokens(rlrt_cfg, responses, response_mask, span_tag_ids),
            confidence=confidence_factor(rlrt_cfg, teacher_entropy, response_mask, vocab_size),
        )  # [B, T]
        return adv_hat, adv_hat

    return _named(estimator, name, advantage_of.__doc__)


def _entropy_bonus_estimator(name: str):
    """The verl-registrable estimator ``name`` (grpo_eb): verl's GRPO A plus the entropy bonus ψ."""

    def estimator(
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: np.ndarray,
        config: Any = None,
        *,
        entropy: torch.Tensor | None = None,
        rlrt_cfg: RlrtConfig | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_inputs(name, dict(entropy=entropy, rlrt_cfg=rlrt_cfg), "the token entropy of the old-log-prob pass")
        adv = grpo_advantages(token_level_rewards, response_mask, index, config)  # [B, T]
        adv_hat = signals.entropy_bonus_advantages(
            adv, entropy, response_mask, alpha=rlrt_cfg.eb_alpha, kappa=rlrt_cfg.eb_kappa
        )  # [B, T]
        return adv_hat, adv_hat

    return _named(estimator, name, "Â_t = A_t + min(α·H_t, |A_t|/κ), α = rlrt.eb_alpha, κ = rlrt.eb_kappa, "
                  "H θ_old's token entropy (Cheng et al., arXiv 2506.14758).")


def _named(estimator, name: str, doc: str):
    estimator.__name__ = estimator.__qualname__ = f"compute_{name}_advantage"
    estimator.__doc__ = f"verl advantage estimator '{name}': {doc}"
    return estimator


def _estimator(name: str):
    """The verl-registrable estimator ``name``, built for its form."""
    if ESTIMATOR_FORMS[name] == "entropy_bonus":
        return _entropy_bonus_estimator(name)
    return _teacher_estimator(name)


for _name in ESTIMATOR_FORMS:
    register_once(ADV_ESTIMATOR_REGISTRY, register_adv_est, _name)(_estimator(_name))
