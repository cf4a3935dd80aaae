"""The advantage estimators ``rlrt``, ``rlsd``, ``opsd``, ``grpo_opsd`` and ``grpo_eb``, registered with verl.

Each computes verl's GRPO outcome advantage A with verl's own ``compute_grpo_outcome_advantage`` (``opsd`` needs
none) and reshapes it per token with ``rlrt_recipe.signals``. Signatures (docs/methods.md, "Contracts"):

    fn(token_level_rewards, response_mask, index, config=None, *, old_log_probs, teacher_log_probs,
       correct, has_teacher, global_step, rlrt_cfg) -> (advantages, returns)       the teacher forms
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


def _reweighted(delta, response_mask, grpo, *, correct, has_teacher, global_step, rlrt_cfg, index) -> torch.Tensor:
    """rlrt, rlsd: the token-weight family with the member's settings (docs/methods.md, "The token-weight family"):
    Â_t = A·m_t + S_t·λ_add·g(Δ_t), m_t = 1 + S_t·λ_k·(w_t − 1), S_t the rows of ``rlrt.gate``."""
    adv = grpo()  # [B, T]
    cfg = rlrt_cfg
    rows = signals.selected_rows(cfg.gate, correct=correct, has_teacher=has_teacher, adv_sign=_row_sign(adv, response_mask),
                                 group=list(index))  # [B]
    low, high = _box(cfg, correct)  # [B] each
    return signals.family_advantages(
        delta, adv, response_mask, rows=rows, tokens=None, direction=cfg.direction, low=low, high=high,
        lam=cfg.lambda_at(global_step), confidence=None,
        lam_add=cfg.distill_adv_coef if cfg.additive else 0.0, additive=cfg.additive,
    )  # [B, T]


def _opsd(delta, response_mask, grpo, *, rlrt_cfg, **_) -> torch.Tensor:
    """opsd (sampled-token OPSD): Â_t = Δ_t, no reward; rows without a teacher carry Δ = 0."""
    return signals.opsd_advantages(delta, response_mask)


def _grpo_opsd(delta, response_mask, grpo, *, rlrt_cfg, has_teacher, **_) -> torch.Tensor:
    """grpo_opsd: the family's additive member, Â_t = A + λ_add·g(Δ_t) with λ_add = rlrt.distill_adv_coef and g =
    Δ (the default, ``rlrt.additive=delta``) or AntiSD's term; rows without a teacher carry Δ = 0, so g = 0 there."""
    adv = grpo()  # [B, T]
    box = torch.ones(delta.shape[0])  # [B]: with λ = 0 no weight is formed
    rows = torch.ones(delta.shape[0], dtype=torch.bool)  # [B]
    return signals.family_advantages(
        delta, adv, response_mask, rows=rows, tokens=None, direction=1, low=box, high=box, lam=0.0, confidence=None,
        lam_add=rlrt_cfg.distill_adv_coef, additive=rlrt_cfg.additive,
    )  # [B, T]


def _row_sign(adv: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """sign of each row's A  [B] (GRPO's A is one value per row, broadcast over its response)."""
    return torch.where(response_mask.bool(), adv.float(), 0.0).sum(dim=1).sign()


def _box(cfg: RlrtConfig, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' clip box: symmetric ``rlrt.eps_w``, or CAST's ``rlrt.correct_box``/``incorrect_box``."""
    if cfg.correct_box is not None:
        return signals.clip_box(correct, correct_box=tuple(cfg.correct_box), incorrect_box=tuple(cfg.incorrect_box))
    return signals.clip_box(correct, eps_w=cfg.eps_w)


_ADVANTAGE_OF_FORM = {"reweighted": _reweighted, "gain": _opsd, "grpo_plus_gain": _grpo_opsd}

#: The keyword inputs of each form of advantage besides ``rlrt_cfg``: each is a TransferQueue field of the same name,
#: which the rlrt_sync trainer reads and passes, except ``global_step`` (``STEP_INPUT``, verl's step counter).
STEP_INPUT = "global_step"
_TEACHER_INPUTS = ("old_log_probs", "teacher_log_probs", "correct", "has_teacher", STEP_INPUT)
INPUTS_OF_FORM: dict[str, tuple[str, ...]] = {
    **{form: _TEACHER_INPUTS for form in _ADVANTAGE_OF_FORM},
    "entropy_bonus": ("entropy",),  # θ_old's token entropy, stored by verl's old-log-prob pass
}


def estimator_inputs(name: str) -> tuple[str, ...]:
    """The keyword inputs of our estimator ``name`` besides ``rlrt_cfg`` (``INPUTS_OF_FORM``)."""
    return INPUTS_OF_FORM[ESTIMATOR_FORMS[name]]


def _check_inputs(name: str, given: dict[str, Any], needs: str) -> None:
    """Raise naming the missing keywords and ``trainer.v1.trainer_mode=rlrt_sync``, or an unresolved ``rlrt_cfg``."""
    missing = [key for key, value in given.items() if value is None]
    if missing:
        raise ValueError(
            f"advantage estimator '{name}' was called without {', '.join(missing)}: it needs {needs}, "
            "set trainer.v1.trainer_mode=rlrt_sync"
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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        given = dict(old_log_probs=old_log_probs, teacher_log_probs=teacher_log_probs, correct=correct,
                     has_teacher=has_teacher, global_step=global_step, rlrt_cfg=rlrt_cfg)
        _check_inputs(name, given, "the teacher step")
        delta = signals.privileged_gain(teacher_log_probs, old_log_probs)  # [B, T]

        def grpo() -> torch.Tensor:
            return grpo_advantages(token_level_rewards, response_mask, index, config)  # [B, T]

        adv_hat = advantage_of(
            delta, response_mask, grpo, correct=correct.bool(), has_teacher=has_teacher.bool(),
            global_step=global_step, rlrt_cfg=rlrt_cfg, index=index,
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
