"""The advantage math of RLSD, RLRT, OPSD and GRPO+EB, and the SDPO/SRPO top-K losses: pure torch, no verl import
(docs/methods.md).

Symbols, per rollout i of a prompt's group and response position t:
    A      GRPO outcome advantage of the rollout (verl's output, broadcast over the response)
    Δ_t    sg(τ_t − s_t): teacher minus student log-prob of the sampled token ("privileged gain")
    d      direction: +1 follows the teacher (RLSD), −1 reverses it (RLRT)
    λ_k    mixing weight at verl's 1-based global step k;  ε_w  clip of the token weight
    H_t    the policy's token entropy (GRPO+EB);  α, κ  its bonus scale and cap

    w_t = clip( exp(d · sign(A) · Δ_t), 1 − ε_w, 1 + ε_w )
    Â_t = A · ((1 − λ_k) + λ_k · w_t)   for rows with a teacher that pass the gate, else A
    Â_t = A + min(α · sg(H_t), |A| / κ)  GRPO+EB (Cheng et al.)

Conventions shared by every function here: tensors are ``[B, T]`` (``correct`` and ``has_teacher`` are
bool ``[B]``), tensor arguments come first and scalars are keyword-only; ``mask`` may be bool, int or
float (nonzero = response token); computation and outputs are float32; masked positions are selected
with ``torch.where`` (never multiplied), so they hold exactly w = 1 and Â = 0 whatever the inputs hold
there, NaN and inf included. A non-finite Δ or H at a response position raises ``ValueError`` naming rows.
"""

from __future__ import annotations

import math

import torch

DIRECTIONS = (1, -1)
GATES = ("all", "correct")
LAMBDA_SCHEDULES = ("constant", "linear_decay")


def privileged_gain(teacher_log_probs: torch.Tensor, old_log_probs: torch.Tensor) -> torch.Tensor:
    """Δ_t = sg(τ_t − s_t) in float32: how much more likely the privileged teacher finds the sampled token."""
    return teacher_log_probs.detach().float() - old_log_probs.detach().float()  # [B, T]


def token_weights(
    delta: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, *, direction: int, eps_w: float
) -> torch.Tensor:
    """w_t = clip(exp(d · sign(A) · Δ_t), 1 − ε_w, 1 + ε_w); exactly 1 at masked positions and where A = 0."""
    _check_direction(direction)
    _check_eps_w(eps_w)
    response = _response_positions(mask, like=delta)  # [B, T] bool
    return _clipped_weights(_finite_delta(delta, response), adv, response, direction, eps_w)


def _clipped_weights(
    delta: torch.Tensor, adv: torch.Tensor, response: torch.Tensor, direction: int, eps_w: float
) -> torch.Tensor:
    """token_weights on a checked Δ (finite, 0 off the response). Where sign(A) = 0 or off the response the
    exponent is exactly 0, so w = exp(0) = 1 there."""
    sign = torch.where(response, torch.sign(adv.float()), 0.0)  # [B, T], 0 off the response
    return _unclipped_weights(delta, sign, direction).clamp(1.0 - eps_w, 1.0 + eps_w)  # [B, T]


def _unclipped_weights(delta: torch.Tensor, sign: torch.Tensor, direction: int) -> torch.Tensor:
    """exp(d · sign(A) · Δ_t), before the clip."""
    return torch.exp(direction * sign * delta)  # [..]


def reweighted_advantages(
    delta: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    *,
    correct: torch.Tensor,
    has_teacher: torch.Tensor,
    direction: int,
    gate: str,
    lam: float,
    eps_w: float,
) -> torch.Tensor:
    """Â_t = A · ((1 − λ) + λ · w_t) on rows with a teacher that pass the gate, Â_t = A elsewhere, 0 off mask.

    Written as A + A · λ · (w_t − 1), the same value, so that λ = 0 or w_t = 1 (τ = s) return A bit for bit.
    ``gate="correct"`` reweights only rows with ``correct``; ``gate="all"`` every row with a teacher.
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    _check_lambda(lam)
    _check_direction(direction)
    _check_eps_w(eps_w)
    response = _response_positions(mask, like=delta)  # [B, T]
    for name, flags in (("correct", correct), ("has_teacher", has_teacher)):
        if flags.shape != delta.shape[:1]:
            raise ValueError(f"{name} must be a bool [B] tensor with B = {delta.shape[0]}, got {tuple(flags.shape)}")
    weight = _clipped_weights(_finite_delta(delta, response), adv, response, direction, eps_w)  # [B, T]
    adv = torch.where(response, adv.float(), 0.0)  # [B, T]
    reweighted_rows = has_teacher.bool() & (correct.bool() if gate == "correct" else True)  # [B]
    # A·((1 − λ) + λ·w) written as A + A·λ·(w − 1): the same value, and exactly A when λ = 0 or w = 1 (τ = s).
    reweighted = adv + adv * (lam * (weight - 1.0))  # [B, T]; 0 off the response
    return torch.where(reweighted_rows[:, None], reweighted, adv)  # [B, T]


def opsd_advantages(
    delta: torch.Tensor, mask: torch.Tensor, *, adv: torch.Tensor | None = None, beta: float | None = None
) -> torch.Tensor:
    """Sampled-token OPSD: Â_t = Δ_t; with ``adv`` and ``beta`` (grpo_opsd): Â_t = A + β · Δ_t; 0 off mask.

    Δ_t as an advantage is the score-function gradient that lowers KL(π_θ ‖ π_T) on the student's own tokens.
    """
    if (adv is None) != (beta is None):
        raise ValueError("opsd_advantages takes adv and beta together (grpo_opsd) or neither (opsd)")
    response = _response_positions(mask, like=delta)  # [B, T]
    delta = _finite_delta(delta, response)  # [B, T]
    if adv is None:
        return delta
    if not math.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta}")
    return torch.where(response, adv.float() + beta * delta, 0.0)  # [B, T]


def entropy_bonus_advantages(
    adv: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor, *, alpha: float, kappa: float
) -> torch.Tensor:
    """GRPO+EB (Cheng et al., arXiv 2506.14758): Â_t = A_t + ψ_t, ψ_t = min(α · sg(H_t), |A_t| / κ); 0 off mask.

    H_t is the policy's token entropy, detached (a negative H from float rounding counts as 0). ψ ≥ 0, ψ = 0 where
    A = 0, and |Â − A| ≤ |A|/κ < |A| since κ > 1: the bonus never flips the sign of A.
    """
    _, adv, entropy = _entropy_bonus_inputs(adv, entropy, mask, alpha, kappa)  # [B, T] each
    return adv + _entropy_bonus(adv, entropy, alpha, kappa)  # [B, T]; 0 off the response


def entropy_bonus_statistics(
    adv: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor, *, alpha: float, kappa: float
) -> dict[str, float]:
    """Mean ψ_t over response tokens, and over response tokens with A ≠ 0 the fraction where the cap binds
    (|A_t|/κ < α·H_t, so ψ_t = |A_t|/κ).

    Keys ``eb_bonus_mean`` (empty without response tokens) and ``eb_capped_frac`` (left out without a response
    token with A ≠ 0: a step of degenerate groups has no cap to bind).
    """
    response, adv, entropy = _entropy_bonus_inputs(adv, entropy, mask, alpha, kappa)  # [B, T] each
    if not response.any():
        return {}
    stats = {"eb_bonus_mean": _entropy_bonus(adv, entropy, alpha, kappa)[response].mean().item()}
    scored = response & (adv != 0)  # [B, T]
    if scored.any():
        stats["eb_capped_frac"] = (adv.abs() / kappa < alpha * entropy)[scored].float().mean().item()
    return stats


def _entropy_bonus_inputs(
    adv: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor, alpha: float, kappa: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked α, κ and shapes; the response positions, A and H (finite, ≥ 0) in float32 with zeros off them."""
    if not (math.isfinite(alpha) and alpha >= 0.0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if not (math.isfinite(kappa) and kappa > 1.0):
        raise ValueError(f"kappa must be a finite number > 1 (so the bonus never flips the sign of A), got {kappa}")
    if entropy.shape != adv.shape:
        raise ValueError(f"entropy and adv must both be [B, T], got {tuple(entropy.shape)} and {tuple(adv.shape)}")
    response = _response_positions(mask, like=adv)  # [B, T]
    adv = torch.where(response, adv.float(), 0.0)  # [B, T]
    # An entropy is ≥ 0; a slightly negative one is the rounding of a near-deterministic token.
    entropy = _finite_on_response(entropy, response, "token entropy").clamp(min=0.0)  # [B, T]
    return response, adv, entropy


def _entropy_bonus(adv: torch.Tensor, entropy: torch.Tensor, alpha: float, kappa: float) -> torch.Tensor:
    """ψ_t = min(α·H_t, |A_t|/κ) on a checked H (finite, ≥ 0) and A, both 0 off the response."""
    return torch.minimum(alpha * entropy, adv.abs() / kappa)  # [B, T]


def lambda_at(step: int, *, schedule: str, lam0: float, decay_steps: int | None = None) -> float:
    """λ_k at verl's 1-based ``global_steps`` k: λ₀ ("constant") or λ₀ · max(0, 1 − (k − 1)/K) ("linear_decay")."""
    if step < 1:
        raise ValueError(f"step is verl's 1-based global_steps and must be >= 1, got {step}")
    _check_lambda(lam0)
    if schedule == "constant":
        return float(lam0)
    if schedule == "linear_decay":
        if decay_steps is None or decay_steps < 1:
            raise ValueError(f"linear_decay needs decay_steps >= 1, got {decay_steps}")
        return float(lam0) * max(0.0, 1.0 - (step - 1) / decay_steps)
    raise ValueError(f"schedule must be one of {LAMBDA_SCHEDULES}, got {schedule!r}")


def _response_positions(mask: torch.Tensor, *, like: torch.Tensor, name: str = "delta") -> torch.Tensor:
    if mask.shape != like.shape or mask.dim() != 2:
        raise ValueError(f"mask and {name} must both be [B, T], got {tuple(mask.shape)} and {tuple(like.shape)}")
    return mask != 0


def gap_statistics(
    delta: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    rows: torch.Tensor,
    *,
    direction: int | None = None,
    eps_w: float | None = None,
) -> dict[str, float]:
    """Summary of Δ (and of w when ``direction``/``eps_w`` are given) over response tokens of the selected
    ``rows`` [B] with A ≠ 0: Δ mean, std, mean and max |Δ|, fraction Δ > 0; w mean and the fractions at 1 − ε_w and 1 + ε_w.

    Keys: ``delta_mean``, ``delta_std``, ``delta_abs_mean``, ``delta_abs_max``, ``delta_pos_frac``, ``w_mean``, ``w_clip_low_frac``,
    ``w_clip_high_frac``; empty when no token is selected (a step without scored tokens has no statistic,
    and logging 0 would drag averages over steps down).
    """
    response = _response_positions(mask, like=delta)  # [B, T]
    selected = response & rows.bool()[:, None] & (torch.where(response, adv.float(), 0.0) != 0)  # [B, T]
    gaps = _finite_delta(delta, response)[selected]  # [N]
    if not gaps.numel():
        return {}
    stats = {
        "delta_mean": gaps.mean().item(),
        "delta_std": gaps.std(unbiased=False).item(),
        "delta_abs_mean": gaps.abs().mean().item(),
        "delta_abs_max": gaps.abs().max().item(),
        "delta_pos_frac": (gaps > 0).float().mean().item(),
    }
    if direction is not None and eps_w is not None:
        _check_direction(direction)
        _check_eps_w(eps_w)
        unclipped = _unclipped_weights(gaps, torch.sign(adv.float()[selected]), direction)  # [N]
        stats.update(
            w_mean=unclipped.clamp(1.0 - eps_w, 1.0 + eps_w).mean().item(),
            w_clip_low_frac=(unclipped < 1.0 - eps_w).float().mean().item(),
            w_clip_high_frac=(unclipped > 1.0 + eps_w).float().mean().item(),
        )
    return stats


def scored_log_prob_means(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor,
                          rows: torch.Tensor) -> dict[str, float]:
    """Mean τ_t and mean s_t over the same tokens: response positions of ``mask`` [B, T] in the ``rows`` [B].

    A teacher that lost its weights scores −ln V on every token, far below the student's mean; keys
    ``teacher_logp_mean``, ``student_logp_mean``; empty when no token is selected.
    """
    selected = _response_positions(mask, like=teacher) & rows.bool()[:, None]  # [B, T]
    if not selected.any():
        return {}
    return {
        "teacher_logp_mean": teacher.float()[selected].mean().item(),
        "student_logp_mean": student.float()[selected].mean().item(),
    }


def nonfinite_rows(values: torch.Tensor, mask: torch.Tensor) -> list[int]:
    """Indices of the rows of ``values`` [B, T] that hold NaN or ±inf at a response position of ``mask``."""
    bad = (mask != 0) & ~torch.isfinite(values)  # [B, T]
    return bad.any(dim=1).nonzero().flatten().tolist()


def _finite_delta(delta: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """Δ in float32 with zeros off the response; raises if Δ is NaN or ±inf at a response position."""
    return _finite_on_response(delta, response, "teacher/student log-prob gap")


def _finite_on_response(values: torch.Tensor, response: torch.Tensor, what: str) -> torch.Tensor:
    """``values`` detached in float32 with zeros off the response; raises naming the rows that hold NaN or ±inf
    at a response position."""
    values = torch.where(response, values.detach().float(), 0.0)  # [B, T]; stop-gradient: a signal, never a path
    # One reduction catches any NaN/±inf (a huge finite sum could overflow too: then the rows decide).
    rows = [] if torch.isfinite(values.sum()) else nonfinite_rows(values, response)
    if rows:
        raise ValueError(
            f"non-finite {what} at response positions of rows {rows[:10]}"
            + (f" (and {len(rows) - 10} more)" if len(rows) > 10 else "")
        )
    return values


def _check_direction(direction: int) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be +1 (follow the teacher) or -1 (reverse it), got {direction!r}")


def _check_eps_w(eps_w: float) -> None:
    if not 0.0 < eps_w <= 1.0:
        raise ValueError(f"eps_w must be in (0, 1], got {eps_w}")


def _check_lambda(lam: float) -> None:
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")


# ---------------------------------------------------------------- SDPO / SRPO: logit-level self-distillation
# SDPO (Hübotter et al., arXiv 2601.20802) matches the student's distribution to the teacher's over the student's
# top-K token ids plus one tail bucket, with a generalised Jensen–Shannon divergence weighted by a capped importance
# ratio; SRPO (Li et al., arXiv 2604.02288) further weights each token by exp(−β·H^T), trusting a confident teacher
# more. Categories are the last dim ``[..., C]``; values are computed in float32; the divergences keep the gradient
# (of whichever input requires it), the ratio and the weight are detached.


def with_tail(topk_log_probs: torch.Tensor) -> torch.Tensor:
    """[..., K] log-probs of K tokens -> [..., K+1]: the K values plus log(1 − Σ_k p_k), the tail bucket (not renormalised).

    log Σ_k p_k is a logsumexp clamped to <= −1e-7 before log(−expm1(·)), so the tail is >= ~1e-7 even when the K tokens
    hold all the mass (or, after rounding, more than 1); where the clamp binds, the tail passes no gradient to the K values.
    """
    log_topk = topk_log_probs.float()  # [..., K]
    log_mass = torch.logsumexp(log_topk, dim=-1, keepdim=True).clamp(max=-1e-7)  # [..., 1]
    log_tail = torch.log(-torch.expm1(log_mass))  # [..., 1]; log(1 − e^x), accurate for x near 0
    return torch.cat([log_topk, log_tail], dim=-1)  # [..., K+1]


def generalized_jsd(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Generalised JSD per position over the last dim (categories), [..., C] x2 -> [...]:
    α = 0: KL(T ‖ S) = Σ T·(log T − log S);  α = 1: KL(S ‖ T);
    else (1 − α)·KL(S ‖ M) + α·KL(T ‖ M) with M = (1 − α)·S + α·T, log M by logaddexp.
    The endpoints are KLs by convention (GKD, SDPO): the mixture form itself tends to 0 as α → 0 or 1.

    A −inf log-prob (zero probability) is allowed in either input: its category adds exactly 0 to the value and to
    both gradients (0·log 0 = 0, computed on finite stand-ins, so no 0·inf NaN reaches backward). For 0 < α < 1 the
    result is therefore always finite; a KL (α ∈ {0, 1}) is +inf where its first distribution has mass on a category
    the second gives −inf, which is its true value.
    """
    _check_alpha(alpha)
    _check_same_shape(student_log_probs, teacher_log_probs)
    student, teacher = student_log_probs.float(), teacher_log_probs.float()  # [..., C] each
    # A category neither distribution holds is 0 in every term; finite stand-ins keep −inf out of logaddexp's backward.
    absent = (student == -math.inf) & (teacher == -math.inf)  # [..., C]
    student = torch.where(absent, 0.0, student)  # [..., C]
    teacher = torch.where(absent, 0.0, teacher)  # [..., C]
    if alpha == 0.0:
        terms = _kl_terms(teacher, student)  # [..., C]
    elif alpha == 1.0:
        terms = _kl_terms(student, teacher)  # [..., C]
    else:
        log_mix = torch.logaddexp(student + math.log(1.0 - alpha), teacher + math.log(alpha))  # [..., C]
        terms = (1.0 - alpha) * _kl_terms(student, log_mix) + alpha * _kl_terms(teacher, log_mix)  # [..., C]
    return torch.where(absent, 0.0, terms).sum(dim=-1)  # [...]


def topk_jsd(student_topk_log_probs: torch.Tensor, teacher_topk_log_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """SDPO's top-K divergence: generalized_jsd(with_tail(s), with_tail(t), α), [..., K] x2 -> [...].

    Both inputs are log-probs of the SAME K token ids (the student's top-K) under each model's full-vocabulary softmax,
    so the teacher's tail is its mass outside the student's top-K.
    """
    _check_same_shape(student_topk_log_probs, teacher_topk_log_probs)
    return generalized_jsd(with_tail(student_topk_log_probs), with_tail(teacher_topk_log_probs), alpha)  # [...]


def capped_is_ratio(log_prob: torch.Tensor, old_log_prob: torch.Tensor, cap: float) -> torch.Tensor:
    """ρ_t = min(π_θ(y_t) / π_old(y_t), cap) = min(exp(clamp(log π_θ − log π_old, −20, 20)), cap), detached:
    SDPO's importance ratio on the divergence (cap 2)."""
    if not cap > 0.0:
        raise ValueError(f"cap must be > 0, got {cap}")
    log_ratio = (log_prob.detach().float() - old_log_prob.detach().float()).clamp(-20.0, 20.0)  # [B, T]
    return torch.exp(log_ratio).clamp(max=cap)  # [B, T]


def srpo_token_weights(teacher_entropy: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """SRPO's entropy-aware weight: w_t = exp(−β·H^T_t) / mean_{mask} exp(−β·H^T), detached, float32, 0 off mask.

    The mean runs over every masked token of the batch (not per row), so w averages exactly 1 there; β = 0 gives 1
    on the mask, an empty mask all zeros. exp is taken of β·H minus its smallest masked value (the ratio is
    unchanged), so the largest term is exp(0) = 1 and a large β·H underflows to 0 instead of 0/0. A non-finite H^T
    at a masked position raises ``ValueError`` naming rows.
    """
    if not (math.isfinite(beta) and beta >= 0.0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta}")
    response = _response_positions(mask, like=teacher_entropy, name="teacher_entropy")  # [B, T]
    entropy = _finite_on_response(teacher_entropy, response, "teacher entropy")  # [B, T], 0 off the response
    if not response.any():
        return torch.zeros_like(entropy)
    scaled = beta * entropy  # [B, T]
    shift = torch.where(response, scaled, math.inf).amin()  # []: the smallest β·H on the response
    unnormalised = torch.where(response, torch.exp(shift - scaled), 0.0)  # [B, T], in [0, 1]
    return unnormalised * (response.sum() / unnormalised.sum())  # [B, T]; the sum is >= 1 (its largest term is 1)


def _kl_terms(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """p·(log p − log q) per category, exactly 0 (in value and gradient) where log p = −inf."""
    empty = log_p == -math.inf  # [..., C]
    log_p = torch.where(empty, 0.0, log_p)  # [..., C]; finite stand-ins so backward never sees 0·inf
    log_q = torch.where(empty, 0.0, log_q)  # [..., C]
    return torch.where(empty, 0.0, log_p.exp() * (log_p - log_q))  # [..., C]


def _check_same_shape(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher log-probs must have the same shape [..., C], got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}"
        )


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0 = KL(T || S), 1 = KL(S || T)), got {alpha}")
