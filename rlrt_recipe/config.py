"""The top-level ``rlrt:`` section of a verl config, as one validated dataclass (no verl import).

``algorithm.adv_estimator`` is the one source of truth for the method; the method-dependent fields below
default to null and ``resolved`` fills them from the member table of docs/methods.md:

    estimator   direction  gate     eps_w                                   λ schedule                   context
    rlsd        +1         all      0.2                                     linear_decay 0.5, K = 50     answer
    rlrt        −1         correct  1.0 base / 0.5 instruct / 0.2 thinking  base: constant 0.5;          rollout
                                                                            instruct, thinking:
                                                                            linear_decay 0.5, K = 30
    opsd, grpo_opsd, and the distillation loss on any other estimator:                                   solution
    the sdpo and srpo policy losses (on verl's grpo estimator):                                         rollout

(RLRT Table 5: λ_init 0.5, best ε_w per backbone, λ decay over 50 steps for RLSD, none on base backbones and
over 30 steps on instruct and thinking for RLRT — linear like RLSD's is our reading of the shape.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlrt_recipe.checks import check_choice
from rlrt_recipe.privileged import (
    CONTEXTS,
    DEFAULT_TEMPLATES,
    SIBLING_CHOICES,
    SIBLING_FALLBACKS,
    default_privileged_budget,
    validate_templates,
)
from rlrt_recipe.signals import ADDITIVE_TERMS, DIRECTIONS, GATES, LAMBDA_SCHEDULES, SPANS, lambda_at

#: The advantage estimators this package registers with verl, each with the form of its advantage
#: (docs/methods.md). The one list of method names: registrations, config checks and the per-node probe read it.
ESTIMATOR_FORMS: dict[str, str] = {
    "rlrt": "reweighted",  # Â = A·((1 − λ) + λ·w), w reversing the teacher on correct rollouts
    "rlsd": "reweighted",  # the same form, w following the teacher on every rollout
    "opsd": "gain",  # Â = Δ
    "grpo_opsd": "grpo_plus_gain",  # Â = A + β·Δ
    "grpo_eb": "entropy_bonus",  # Â = A + min(α·H, |A|/κ), H the token entropy (Cheng et al.); no teacher
}
#: Estimators whose advantage reads the teacher (all of ours but the entropy bonus).
TEACHER_ESTIMATORS = tuple(name for name, form in ESTIMATOR_FORMS.items() if form != "entropy_bonus")
#: Estimators that add the entropy bonus ψ to A (they use eb_alpha, eb_kappa).
ENTROPY_BONUS_ESTIMATORS = tuple(name for name, form in ESTIMATOR_FORMS.items() if form == "entropy_bonus")
#: Estimators that reweight A with the token weight w_t (they use direction, gate, eps_w, lambda_*).
WEIGHTED_ESTIMATORS = tuple(name for name, form in ESTIMATOR_FORMS.items() if form == "reweighted")
#: The policy loss this package registers: verl's surrogate plus the self-distillation term (RLSD's GRPO+OPSD).
DISTILL_LOSS_MODE = "self_distill"
#: The logit-level baselines of the RLRT comparison, registered as policy losses on verl's grpo estimator: SDPO's
#: top-K Jensen–Shannon loss on every rollout with a demonstration, and SRPO's routing of wrong rollouts to it.
TOPK_LOSS_MODES = ("sdpo", "srpo")

BACKBONE_KINDS = ("base", "instruct", "thinking")
TEACHERS = ("live", "frozen", "snapshot")
#: Teachers scored by a reference model (verl's, built from actor_rollout_ref.model.path) instead of the actor.
REFERENCE_TEACHERS = ("frozen", "snapshot")
# verl's kl_penalty estimators (core_algos.kl_penalty_forward); a trailing "+" adds the k2 straight-through.
KL_TYPES = ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "k1+", "k3+", "low_var_kl+")

# RLRT Table 5: the best ε_w per backbone kind, and λ decay none on base, over 30 steps on instruct and thinking.
_RLRT_EPS_W = {"base": 1.0, "instruct": 0.5, "thinking": 0.2}
_RLRT_LAMBDA = {
    "base": dict(lambda_schedule="constant"),
    "instruct": dict(lambda_schedule="linear_decay", lambda_decay_steps=30),
    "thinking": dict(lambda_schedule="linear_decay", lambda_decay_steps=30),
}
# Member defaults for the null fields; rlrt's eps_w and λ schedule come from backbone_kind.
_MEMBER_DEFAULTS: dict[str, dict[str, Any]] = {
    "rlsd": dict(direction=1, gate="all", eps_w=0.2, lambda_schedule="linear_decay", lambda_0=0.5,
                 lambda_decay_steps=50, context="answer"),
    "rlrt": dict(direction=-1, gate="correct", lambda_0=0.5, context="rollout"),
    # SDPO's and SRPO's demonstration: another successful rollout of the group (RLRT Table 4)
    "sdpo": dict(context="rollout"),
    "srpo": dict(context="rollout"),
}
_WEIGHT_FIELDS = ("direction", "gate", "eps_w", "correct_box", "incorrect_box", "lambda_schedule", "lambda_0",
                  "lambda_decay_steps", "lambda_warmup_steps", "confidence_min")
#: Estimators that take the family's additive term (``additive``, λ_add = ``distill_adv_coef``).
ADDITIVE_ESTIMATORS = ("rlrt", "rlsd", "grpo_opsd")
_ENTROPY_BONUS_FIELDS = ("eb_alpha", "eb_kappa")
_TOPK_FIELDS = ("distill_topk", "distill_jsd_alpha", "distill_is_cap", "srpo_beta")


@dataclass
class RlrtConfig:
    """Settings of the self-distillation methods; every default reproduces the papers (or says "ours").

    Outcome: ``correct_threshold``.
    Token weights (rlrt, rlsd): ``direction``, ``gate``, ``eps_w`` or ``correct_box``/``incorrect_box``,
    ``backbone_kind``, ``lambda_schedule``, ``lambda_0``, ``lambda_decay_steps``, ``lambda_warmup_steps``,
    ``confidence_min``; with grpo_opsd also ``span``, ``span_tags``, ``additive``; ``fused_advantage``.
    Distillation (opsd, grpo_opsd, the self_distill loss): ``distill_adv_coef``, ``distill_loss_coef``, ``distill_kl_type``,
    ``distill_loss_max_clamp``.
    Entropy bonus (grpo_eb): ``eb_alpha``, ``eb_kappa``.
    Top-K distillation (the sdpo and srpo losses): ``distill_topk``, ``distill_jsd_alpha``, ``distill_is_cap``, ``srpo_beta``.
    Teacher: ``teacher``, ``context``, ``privileged_templates``, ``teacher_chat_template_kwargs``,
    ``max_privileged_prompt_length``, ``sibling_choice``, ``sibling_fallback``, ``sibling_strip_thinking``,
    ``score_all_rows``, ``preflight_skip``.
    """

    correct_threshold: float = 0.5
    """A rollout is correct iff its summed reward >= this."""

    direction: int | None = None
    """+1 follows the teacher (RLSD), -1 reverses it (RLRT); null = the estimator's."""
    gate: str | None = None
    """Which rows are reweighted: all | correct | negative (A < 0: the official RLSD code's negative_only) | mixed (groups
    with both outcomes, CAST's); null = the estimator's."""
    eps_w: float | None = None
    """Clip of the token weight w to [1 - eps_w, 1 + eps_w], in (0, 1]; null = the estimator's (rlrt: by backbone_kind)."""
    correct_box: list[float] | None = None
    """[low, high] clip box of w on correct rows, with incorrect_box instead of eps_w (CAST, arXiv 2606.00172)."""
    incorrect_box: list[float] | None = None
    """[low, high] clip box of w on incorrect rows, with correct_box (CAST: [0.8, 1.05] and [0.95, 1.2])."""
    span: str | None = None
    """Which tokens are reweighted: all | thinking (strictly inside the first span_tags pair, to the end if unclosed) |
    answer (after the first close tag; every token without one); null = all (the official RLSD code's thought_only is
    thinking with span_tags [<thought>, </thought>])."""
    span_tags: list[str] = field(default_factory=lambda: ["<think>", "</think>"])
    """[open, close] tag strings of the thinking span, each tokenized without special additions; "" as open tag opens
    the span at the first response token (templates that put <think> in the prompt, e.g. Qwen3-2507 thinking)."""
    fused_advantage: bool = False
    """Compute the family's Â in one torch.compile'd CPU kernel (signals.family_advantages(fused=True)): the same
    numbers to float rounding, compiled once per run in seconds; off by default (ours; docs/performance.md)."""
    confidence_min: float | None = None
    """g_min of the teacher-confidence factor G_t = max(g_min, 1 − H_T,t/log|V|) on the weight (GUI-SD's form), in
    [0, 1]; the teacher's entropy comes from the same teacher pass; null = off (G_t = 1)."""
    backbone_kind: str = "base"
    """base | instruct | thinking: picks rlrt's eps_w (1.0 / 0.5 / 0.2) and λ schedule (constant / decay over 30 steps)."""
    lambda_schedule: str | None = None
    """constant | linear_decay; null = the estimator's."""
    lambda_0: float | None = None
    """λ at step 1, in [0, 1]; null = 0.5."""
    lambda_decay_steps: int | None = None
    """K of linear_decay: λ reaches 0 at step K + 1; null = 50 (rlsd), 30 (rlrt on instruct and thinking)."""
    lambda_warmup_steps: int | None = None
    """W of warmup_decay: λ rises from 0 at step 1 to λ₀ at step W + 1, then decays over lambda_decay_steps (the
    official RLSD code and ms-swift have a warm-up; ours: the schedule's 1-based form, docs/methods.md)."""

    distill_adv_coef: float = 0.1
    """λ_add of the additive term: grpo_opsd's Â = A + β·Δ (ours), and any estimator's rlrt.additive."""
    additive: str | None = None
    """The family's additive term S_t·λ_add·g(Δ_t): delta (g = Δ) | antisd (g = −½(softplus(Δ) − log 2), AntiSD); null =
    the estimator's (grpo_opsd: delta; rlrt, rlsd: none)."""
    distill_loss_coef: float = 0.0
    """β_loss of the self_distill policy loss; 0 = verl's vanilla loss bit for bit."""
    distill_kl_type: str = "k3+"
    """verl kl_penalty estimator of the distillation loss term; k3+ has the unclamped gradient −Δ (ours; docs/methods.md)."""
    distill_loss_max_clamp: float | None = None
    """Clamp of the per-token distillation term to [−c, c], as verl's distillation loss_max_clamp; null = off (ours)."""

    eb_alpha: float = 0.4
    """α of grpo_eb's bonus ψ = min(α·H, |A|/κ), >= 0: Cheng et al.'s value for GRPO (arXiv 2506.14758)."""
    eb_kappa: float = 2.0
    """κ of grpo_eb's cap |A|/κ, > 1 so the sign of A never flips: Cheng et al.'s value (arXiv 2506.14758)."""

    distill_topk: int = 100
    """sdpo, srpo: K, the student's top-K token ids the divergence runs over, plus one tail bucket (RLRT Table 5)."""
    distill_jsd_alpha: float = 0.5
    """sdpo, srpo: α of the generalised Jensen–Shannon divergence, in [0, 1]; 0 = KL(T‖S), 1 = KL(S‖T) (RLRT Table 5)."""
    distill_is_cap: float = 2.0
    """sdpo, srpo: cap of the per-token importance ratio π_θ(y_t)/π_old(y_t) on the divergence (SDPO's code, is_clip 2)."""
    srpo_beta: float = 1.0
    """srpo: β of the entropy-aware weight exp(−β·H^T), normalised to mean 1 over the routed tokens; SRPO's own default
    (RLRT swept {0, 0.5, 1} and does not report the best)."""

    teacher: str = "live"
    """live = the actor's current shards (θ_old of the step); frozen = θ₀; snapshot = a copy of the actor refreshed
    every teacher_sync_steps steps and frozen in between (RLSD Sec. 5.1)."""
    teacher_sync_steps: int = 10
    """snapshot: N, the teacher is refreshed before the teacher pass of steps k with (k − 1) mod N = 0 (RLSD: every
    10 steps; its official code: 20)."""
    context: str | None = None
    """Privileged context: answer | solution | rollout; null = the estimator's (rlsd answer, rlrt rollout, else solution)."""
    privileged_templates: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    """str.format templates per context kind; a partial mapping overrides only the kinds it names."""
    teacher_chat_template_kwargs: dict[str, Any] | None = None
    """Chat-template kwargs the teacher prompt is rendered with (e.g. {enable_thinking: true}); null = the student's,
    data.apply_chat_template_kwargs. When they differ, the student's generation-prompt tail is appended (ours;
    docs/methods.md, "Privileged context")."""
    max_privileged_prompt_length: int | None = None
    """Teacher prompt budget in tokens; null = max_prompt_length + max_response_length + 256 (rollout), else 2 × max_prompt_length."""
    sibling_choice: str = "random"
    """rlrt: which other correct rollout is the context: random (seeded by uid and step; ours) | shortest."""
    sibling_fallback: str = "none"
    """rlrt: context when no other correct, finished rollout fits: none (no teacher, Â = A; RLRT's base code masks
    such rows) | answer | solution (ours)."""
    sibling_strip_thinking: bool = False
    """rlrt: drop <think>…</think> from the sibling's text."""
    score_all_rows: bool = False
    """Score every real row with the teacher (diagnostics), not only those whose Â depends on it."""
    preflight_skip: bool = False
    """Drop the training rows the pre-flight finds unservable (truncated, over budget, no reference) instead of refusing to start (ours)."""

    def __post_init__(self) -> None:
        _check_number("correct_threshold", self.correct_threshold)
        check_choice("rlrt.direction", self.direction, DIRECTIONS, nullable=True)
        check_choice("rlrt.gate", self.gate, GATES, nullable=True)
        if self.eps_w is not None and not (_is_number(self.eps_w) and 0.0 < self.eps_w <= 1.0):
            raise ValueError(f"rlrt.eps_w must be in (0, 1], got {self.eps_w!r}")
        for key in ("correct_box", "incorrect_box"):
            setattr(self, key, _check_box(key, getattr(self, key)))
        if (self.correct_box is None) != (self.incorrect_box is None):
            raise ValueError("rlrt.correct_box and rlrt.incorrect_box go together (CAST's two boxes); set both or neither")
        if self.correct_box is not None and self.eps_w is not None:
            raise ValueError("rlrt.eps_w and rlrt.correct_box/incorrect_box are two clip boxes; set one of them")
        check_choice("rlrt.span", self.span, SPANS, nullable=True)
        self.span_tags = _check_tags("span_tags", self.span_tags)
        if self.confidence_min is not None and not (_is_number(self.confidence_min) and 0.0 <= self.confidence_min <= 1.0):
            raise ValueError(f"rlrt.confidence_min must be in [0, 1] or null, got {self.confidence_min!r}")
        check_choice("rlrt.additive", self.additive, ADDITIVE_TERMS, nullable=True)
        check_choice("rlrt.backbone_kind", self.backbone_kind, BACKBONE_KINDS)
        check_choice("rlrt.lambda_schedule", self.lambda_schedule, LAMBDA_SCHEDULES, nullable=True)
        if self.lambda_0 is not None and not (_is_number(self.lambda_0) and 0.0 <= self.lambda_0 <= 1.0):
            raise ValueError(f"rlrt.lambda_0 must be in [0, 1], got {self.lambda_0!r}")
        _check_positive_int("lambda_decay_steps", self.lambda_decay_steps, nullable=True)
        _check_positive_int("lambda_warmup_steps", self.lambda_warmup_steps, nullable=True)
        if (self.lambda_schedule == "warmup_decay") != (self.lambda_warmup_steps is not None):
            raise ValueError("rlrt.lambda_warmup_steps goes with rlrt.lambda_schedule=warmup_decay (and is required there)")
        for key in ("distill_adv_coef", "distill_loss_coef"):
            value = getattr(self, key)
            if not (_is_number(value) and math.isfinite(value) and value >= 0.0):
                raise ValueError(f"rlrt.{key} must be a finite number >= 0, got {value!r}")
        check_choice("rlrt.distill_kl_type", self.distill_kl_type, KL_TYPES)
        clamp = self.distill_loss_max_clamp
        if clamp is not None and not (_is_number(clamp) and math.isfinite(clamp) and clamp > 0.0):
            raise ValueError(f"rlrt.distill_loss_max_clamp must be a finite number > 0 or null, got {clamp!r}")
        if not (_is_number(self.eb_alpha) and math.isfinite(self.eb_alpha) and self.eb_alpha >= 0.0):
            raise ValueError(f"rlrt.eb_alpha must be a finite number >= 0, got {self.eb_alpha!r}")
        if not (_is_number(self.eb_kappa) and math.isfinite(self.eb_kappa) and self.eb_kappa > 1.0):
            raise ValueError(f"rlrt.eb_kappa must be a finite number > 1, got {self.eb_kappa!r}")
        _check_positive_int("distill_topk", self.distill_topk)
        if not (_is_number(self.distill_jsd_alpha) and 0.0 <= self.distill_jsd_alpha <= 1.0):
            raise ValueError(f"rlrt.distill_jsd_alpha must be in [0, 1], got {self.distill_jsd_alpha!r}")
        cap = self.distill_is_cap
        if not (_is_number(cap) and math.isfinite(cap) and cap > 0.0):
            raise ValueError(f"rlrt.distill_is_cap must be a finite number > 0, got {cap!r}")
        if not (_is_number(self.srpo_beta) and math.isfinite(self.srpo_beta) and self.srpo_beta >= 0.0):
            raise ValueError(f"rlrt.srpo_beta must be a finite number >= 0, got {self.srpo_beta!r}")
        check_choice("rlrt.teacher", self.teacher, TEACHERS)
        _check_positive_int("teacher_sync_steps", self.teacher_sync_steps)
        check_choice("rlrt.context", self.context, CONTEXTS, nullable=True)
        self.privileged_templates = validate_templates(_to_plain_dict(self.privileged_templates))
        self.teacher_chat_template_kwargs = _check_kwargs("teacher_chat_template_kwargs",
                                                          self.teacher_chat_template_kwargs)
        _check_positive_int("max_privileged_prompt_length", self.max_privileged_prompt_length, nullable=True)
        check_choice("rlrt.sibling_choice", self.sibling_choice, SIBLING_CHOICES)
        check_choice("rlrt.sibling_fallback", self.sibling_fallback, SIBLING_FALLBACKS)
        for key in ("fused_advantage", "sibling_strip_thinking", "score_all_rows", "preflight_skip"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"rlrt.{key} must be true or false, got {getattr(self, key)!r}")

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> RlrtConfig:
        """Build from the ``rlrt:`` mapping (a dict or an OmegaConf node); unknown keys are an error."""
        values = _to_plain_dict(section)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown key(s) rlrt.{', rlrt.'.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return cls(**values)

    def resolved(self, adv_estimator: str, *, max_prompt_length: int, max_response_length: int,
                 loss_mode: str = "vanilla") -> RlrtConfig:
        """A copy with every null field filled for ``adv_estimator`` and the actor's ``loss_mode``; rejects weight,
        entropy-bonus and top-K settings it would ignore (a weight key set at all, the others set off their default)."""
        defaults_of = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                       for f in dataclasses.fields(self)}
        for users, used, ignored in (
            (WEIGHTED_ESTIMATORS, adv_estimator, [k for k in _WEIGHT_FIELDS if getattr(self, k) is not None]),
            (ENTROPY_BONUS_ESTIMATORS, adv_estimator,
             [k for k in _ENTROPY_BONUS_FIELDS if getattr(self, k) != defaults_of[k]]),
            (TOPK_LOSS_MODES, loss_mode, [k for k in _TOPK_FIELDS if getattr(self, k) != defaults_of[k]]),
        ):
            if used not in users and ignored:
                what = "actor_rollout_ref.actor.policy_loss.loss_mode" if users is TOPK_LOSS_MODES else "algorithm.adv_estimator"
                raise ValueError(
                    f"rlrt.{ignored[0]} only applies to {what} in {users}, got {what.rsplit('.', 1)[-1]}={used!r}; "
                    "remove the key"
                )
        if loss_mode in TOPK_LOSS_MODES and adv_estimator in TEACHER_ESTIMATORS:
            raise ValueError(
                f"actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode} is a baseline on verl's grpo estimator; "
                f"got algorithm.adv_estimator={adv_estimator!r}: set algorithm.adv_estimator=grpo"
            )
        if self.additive is not None and adv_estimator not in ADDITIVE_ESTIMATORS:
            raise ValueError(f"rlrt.additive only applies to algorithm.adv_estimator in {ADDITIVE_ESTIMATORS}, "
                             f"got adv_estimator={adv_estimator!r}; remove the key")
        if self.fused_advantage and adv_estimator not in ADDITIVE_ESTIMATORS:
            raise ValueError(f"rlrt.fused_advantage only applies to algorithm.adv_estimator in {ADDITIVE_ESTIMATORS} "
                             f"(the token-weight family), got adv_estimator={adv_estimator!r}; remove the key")
        if self.span is not None and adv_estimator not in ADDITIVE_ESTIMATORS:
            raise ValueError(f"rlrt.span only applies to algorithm.adv_estimator in {ADDITIVE_ESTIMATORS}, "
                             f"got adv_estimator={adv_estimator!r}; remove the key")
        if self.span_tags != defaults_of["span_tags"] and self.span not in ("thinking", "answer"):
            raise ValueError(f"rlrt.span_tags={self.span_tags} only applies with rlrt.span=thinking or answer, "
                             f"got rlrt.span={self.span!r}")
        member = loss_mode if loss_mode in TOPK_LOSS_MODES else adv_estimator
        defaults = dict(_MEMBER_DEFAULTS.get(member, {"context": "solution"}))
        if self.correct_box is not None:
            defaults.pop("eps_w", None)  # CAST's boxes replace the symmetric one
        if adv_estimator == "rlrt":
            defaults.update(**_RLRT_LAMBDA[self.backbone_kind])
            if self.correct_box is None:
                defaults["eps_w"] = _RLRT_EPS_W[self.backbone_kind]
        if adv_estimator == "grpo_opsd":
            defaults["additive"] = "delta"
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.max_privileged_prompt_length is None:
            filled["max_privileged_prompt_length"] = default_privileged_budget(
                self.context or defaults["context"],
                max_prompt_length=max_prompt_length,
                max_response_length=max_response_length,
            )
        return dataclasses.replace(self, **filled)

    def lambda_at(self, step: int) -> float:
        """λ_k of this (resolved) config at verl's 1-based global step k."""
        return lambda_at(step, schedule=self.lambda_schedule, lam0=self.lambda_0, decay_steps=self.lambda_decay_steps,
                         warmup_steps=self.lambda_warmup_steps)

    def refreshes_teacher_at(self, step: int) -> bool:
        """True when the snapshot teacher is refreshed before the teacher pass of verl's 1-based step k:
        (k − 1) mod N = 0, i.e. steps 1, N + 1, 2N + 1, … (the teacher equals θ_old exactly there)."""
        return self.teacher == "snapshot" and (step - 1) % self.teacher_sync_steps == 0

    def needs_teacher(self, adv_estimator: str, loss_mode: str = "vanilla") -> bool:
        """True when the advantage or the loss reads the teacher."""
        return adv_estimator in TEACHER_ESTIMATORS or self.distill_loss_coef > 0.0 or loss_mode in TOPK_LOSS_MODES


def load_rlrt_config(cfg: Mapping[str, Any]) -> RlrtConfig:
    """The resolved ``rlrt:`` section of a full verl config (``algorithm.adv_estimator``, ``data.*`` lengths,
    ``actor_rollout_ref.actor.policy_loss.loss_mode``)."""
    section = cfg.get("rlrt") if hasattr(cfg, "get") else None
    algorithm, data = cfg["algorithm"], cfg["data"]
    return RlrtConfig.from_section(section).resolved(
        str(algorithm["adv_estimator"]),
        max_prompt_length=int(data["max_prompt_length"]),
        max_response_length=int(data["max_response_length"]),
        loss_mode=policy_loss_mode(cfg),
    )


def policy_loss_mode(cfg: Mapping[str, Any]) -> str:
    """``actor_rollout_ref.actor.policy_loss.loss_mode`` of a full verl config ("vanilla" when absent)."""
    actor = (cfg.get("actor_rollout_ref") or {}).get("actor") or {}
    return str((actor.get("policy_loss") or {}).get("loss_mode", "vanilla"))


def _to_plain_dict(section: Any) -> dict[str, Any]:
    if section is None:
        return {}
    if isinstance(section, DictConfig):
        return OmegaConf.to_container(section, resolve=True)
    if isinstance(section, Mapping):
        return dict(section)
    raise ValueError(f"the rlrt section must be a mapping, got {type(section).__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_number(key: str, value: Any) -> None:
    if not (_is_number(value) and math.isfinite(value)):
        raise ValueError(f"rlrt.{key} must be a finite number, got {value!r}")


def _check_box(key: str, value: Any) -> list[float] | None:
    """A [low, high] clip box with 0 < low <= 1 <= high, as a list of two floats, or None."""
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(_is_number(v) and math.isfinite(v) for v in value) and 0.0 < value[0] <= 1.0 <= value[1]):
        raise ValueError(f"rlrt.{key} must be [low, high] with 0 < low <= 1 <= high, got {value!r}")
    return [float(v) for v in value]


def _check_tags(key: str, value: Any) -> list[str]:
    """[open, close] tag strings, the close tag non-empty, as a list of two str."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value)
            and value[1]):
        raise ValueError(f"rlrt.{key} must be [open, close] tag strings with a non-empty close tag, got {value!r}")
    return list(value)


def _check_kwargs(key: str, value: Any) -> dict[str, Any] | None:
    """A mapping of keyword arguments (string keys) as a plain dict, or None."""
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"rlrt.{key} must be a mapping of chat-template keyword arguments (e.g. "
                         f"{{enable_thinking: true}}) or null, got {value!r}")
    return dict(value)


def _check_positive_int(key: str, value: Any, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"rlrt.{key} must be an integer >= 1, got {value!r}")
