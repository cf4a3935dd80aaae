"""The registered estimators against verl's own GRPO estimator and the keyword contract."""

import inspect
import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage, get_adv_estimator_fn

from rlrt_recipe.config import ESTIMATOR_FORMS, TEACHER_ESTIMATORS, RlrtConfig
from rlrt_recipe import signals
from rlrt_recipe.integration.estimators import estimator_inputs, grpo_row_advantages  # registers the estimators

NAMES = ("rlrt", "rlsd", "opsd", "grpo_opsd")


def _batch(seed=0):
    """Three groups (sizes 3, 2, 1) with mixed rewards, variable response lengths and a random teacher."""
    gen = torch.Generator().manual_seed(seed)
    lengths = [4, 2, 5, 3, 1, 4]
    mask = torch.zeros(6, 5, dtype=torch.int64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    scores = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    rewards = torch.zeros(6, 5)
    rewards[torch.arange(6), torch.tensor(lengths) - 1] = scores
    index = np.array(["a", "a", "a", "b", "b", "c"], dtype=object)
    old = -torch.rand(6, 5, generator=gen) * 3
    teacher = -torch.rand(6, 5, generator=gen) * 3
    return rewards, mask, index, old, teacher, scores >= 0.5


def _call(name, rewards, mask, index, norm, **kw):
    rlrt_cfg = RlrtConfig().resolved(name, max_prompt_length=16, max_response_length=16)
    kw = dict(dict(correct=torch.ones(6, dtype=torch.bool), has_teacher=torch.ones(6, dtype=torch.bool),
                   global_step=1, rlrt_cfg=rlrt_cfg), **kw)
    return get_adv_estimator_fn(name)(rewards, mask, index, AlgoConfig(norm_adv_by_std_in_grpo=norm), **kw)


def _verl_grpo(rewards, mask, index, norm):
    return compute_grpo_outcome_advantage(rewards, mask, index, norm_adv_by_std_in_grpo=norm)[0]


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("name", ["rlrt", "rlsd"])
def test_equals_verl_grpo_when_lambda_zero(name, norm):
    """λ = 0 must reproduce verl's grpo estimator exactly (both std settings)."""
    rewards, mask, index, old, teacher, correct = _batch()
    cfg = RlrtConfig(lambda_0=0.0).resolved(name, max_prompt_length=16, max_response_length=16)
    adv, ret = _call(name, rewards, mask, index, norm, old_log_probs=old, teacher_log_probs=teacher,
                     correct=correct, rlrt_cfg=cfg)
    assert torch.equal(adv, _verl_grpo(rewards, mask, index, norm))
    assert torch.equal(ret, adv)


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("name", ["rlrt", "rlsd", "grpo_opsd"])
def test_equals_verl_grpo_when_teacher_equals_student(name, norm):
    """τ = s (Δ = 0) must reproduce verl's grpo estimator exactly."""
    rewards, mask, index, old, _, correct = _batch()
    adv, _ = _call(name, rewards, mask, index, norm, old_log_probs=old, teacher_log_probs=old.clone(), correct=correct)
    assert torch.equal(adv, _verl_grpo(rewards, mask, index, norm))


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("name", ["rlrt", "rlsd"])
def test_equals_verl_grpo_for_rows_without_teacher(name, norm):
    """Rows with has_teacher = False keep verl's A; rows with a teacher change (Δ ≠ 0)."""
    rewards, mask, index, old, teacher, correct = _batch()
    has_teacher = torch.tensor([False, True, False, True, False, True])
    adv, _ = _call(name, rewards, mask, index, norm, old_log_probs=old, teacher_log_probs=teacher,
                   correct=correct, has_teacher=has_teacher)
    grpo = _verl_grpo(rewards, mask, index, norm)
    assert torch.equal(adv[~has_teacher], grpo[~has_teacher])
    changed = has_teacher & (grpo.abs().sum(1) > 0)
    assert not torch.equal(adv[changed], grpo[changed])


@pytest.mark.parametrize("norm", [True, False])
def test_one_a_per_row_is_verls_grpo_bit_for_bit(norm):
    """grpo_row_advantages × mask is verl's GRPO advantage exactly, also with rewards on every token (KL in the
    reward); and the family gives the same Â, bit for bit, from A [B, 1] as from verl's A [B, T]."""
    rewards, mask, index, old, teacher, correct = _batch()
    rewards = rewards - 0.01 * torch.rand(rewards.shape, generator=torch.Generator().manual_seed(3)) * mask
    row = grpo_row_advantages(rewards, index, AlgoConfig(norm_adv_by_std_in_grpo=norm))  # [B, 1]
    full = _verl_grpo(rewards, mask, index, norm)  # [B, T]
    assert row.shape == (6, 1) and torch.equal(row * mask, full)
    delta = teacher - old  # [B, T]
    low, high = signals.clip_box(correct, correct_box=(0.8, 1.05), incorrect_box=(0.95, 1.2))
    for lam, additive, lam_add in ((0.5, None, 0.0), (1.0, "antisd", 0.1), (0.0, "delta", 0.2)):
        kwargs = dict(rows=correct, tokens=None, direction=-1, low=low, high=high, lam=lam, confidence=None,
                      lam_add=lam_add, additive=additive)
        assert torch.equal(signals.family_advantages(delta, row, mask, **kwargs),
                           signals.family_advantages(delta, full, mask, **kwargs))


@pytest.mark.parametrize("name, section", [
    ("rlrt", {}), ("rlsd", {"gate": "negative", "additive": "antisd"}), ("grpo_opsd", {}),
    ("rlsd", {"correct_box": [0.8, 1.05], "incorrect_box": [0.95, 1.2], "gate": "mixed"}),
])
def test_fused_advantage_is_the_eager_one_to_float_rounding(name, section):
    """rlrt.fused_advantage: the same Â through verl's registry (the compiled kernel's exp differs by an ulp or two),
    0 exactly off the mask; the key is refused on estimators outside the family."""
    rewards, mask, index, old, teacher, correct = _batch()
    eager = RlrtConfig(**section).resolved(name, max_prompt_length=16, max_response_length=16)
    fused = RlrtConfig(**section, fused_advantage=True).resolved(name, max_prompt_length=16, max_response_length=16)
    kw = dict(old_log_probs=old, teacher_log_probs=teacher, correct=correct)
    expected, _ = _call(name, rewards, mask, index, True, rlrt_cfg=eager, **kw)
    got, _ = _call(name, rewards, mask, index, True, rlrt_cfg=fused, **kw)
    assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(got[mask == 0], torch.zeros(int((mask == 0).sum())))
    with pytest.raises(ValueError, match=r"rlrt\.fused_advantage only applies"):
        RlrtConfig(fused_advantage=True).resolved("opsd", max_prompt_length=16, max_response_length=16)


def test_verl_grpo_facts():
    """verl's std is unbiased (G = 2, [1, 0] → ±0.7071) and a singleton group gets A = r, not 0."""
    mask = torch.ones(3, 1)
    adv = _verl_grpo(torch.tensor([[1.0], [0.0], [1.0]]), mask, np.array(["g", "g", "s"], dtype=object), True)
    assert_close(adv.flatten(), torch.tensor([1 / math.sqrt(2), -1 / math.sqrt(2), 1.0]), atol=1e-5, rtol=0)


def test_rlsd_uses_step_for_lambda():
    """The rlsd λ schedule is read at global_step: at step 51 (K = 50) λ = 0, so Â = A."""
    rewards, mask, index, old, teacher, correct = _batch()
    kw = dict(old_log_probs=old, teacher_log_probs=teacher, correct=correct)
    grpo = _verl_grpo(rewards, mask, index, True)
    assert torch.equal(_call("rlsd", rewards, mask, index, True, global_step=51, **kw)[0], grpo)
    assert not torch.equal(_call("rlsd", rewards, mask, index, True, global_step=1, **kw)[0], grpo)


def test_opsd_is_delta_and_grpo_opsd_adds_beta_delta():
    rewards, mask, index, old, teacher, correct = _batch()
    kw = dict(old_log_probs=old, teacher_log_probs=teacher, correct=correct)
    delta = torch.where(mask.bool(), teacher - old, 0.0)
    assert_close(_call("opsd", rewards, mask, index, True, **kw)[0], delta)
    expected = _verl_grpo(rewards, mask, index, True) + 0.1 * delta
    assert_close(_call("grpo_opsd", rewards, mask, index, True, **kw)[0], expected)


@pytest.mark.parametrize("name", NAMES)
def test_stock_call_names_the_trainer_mode(name):
    """Called the way verl's stock compute_advantage calls it, the error says to set rlrt_sync."""
    rewards, mask, index, *_ = _batch()
    with pytest.raises(ValueError, match=r"old_log_probs.*trainer\.v1\.trainer_mode=rlrt_sync"):
        get_adv_estimator_fn(name)(token_level_rewards=rewards, response_mask=mask, index=index, config=AlgoConfig())


def test_unresolved_config_rejected():
    rewards, mask, index, old, teacher, correct = _batch()
    with pytest.raises(TypeError, match="resolved RlrtConfig"):
        _call("rlrt", rewards, mask, index, True, old_log_probs=old, teacher_log_probs=teacher, rlrt_cfg=RlrtConfig())


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("alpha, kappa", [(0.4, 2.0), (0.1, 4.0)])
def test_grpo_eb_is_verl_grpo_plus_the_entropy_bonus(norm, alpha, kappa):
    """grpo_eb through verl's registry: Â = A + min(α·H, |A|/κ) on response tokens with A from verl's GRPO (both std
    settings) and α, κ from rlrt.eb_alpha, rlrt.eb_kappa; 0 off the mask; returns = advantages."""
    rewards, mask, index, *_ = _batch()
    entropy = torch.rand(6, 5, generator=torch.Generator().manual_seed(1)) * 4  # [B, T]
    cfg = RlrtConfig(eb_alpha=alpha, eb_kappa=kappa).resolved("grpo_eb", max_prompt_length=16, max_response_length=16)
    adv, ret = get_adv_estimator_fn("grpo_eb")(
        rewards, mask, index, AlgoConfig(norm_adv_by_std_in_grpo=norm), entropy=entropy, rlrt_cfg=cfg
    )
    grpo = _verl_grpo(rewards, mask, index, norm)  # [B, T]
    expected = torch.where(mask.bool(), grpo + torch.minimum(alpha * entropy, grpo.abs() / kappa), 0.0)  # [B, T]
    assert_close(adv, expected)
    assert torch.equal(ret, adv)
    assert not torch.equal(adv, grpo)


def test_grpo_eb_stock_call_names_the_entropy_and_the_trainer_mode():
    """Called the way verl's stock compute_advantage calls it, grpo_eb names the missing entropy and rlrt_sync."""
    rewards, mask, index, *_ = _batch()
    with pytest.raises(ValueError, match=r"without entropy.*trainer\.v1\.trainer_mode=rlrt_sync"):
        get_adv_estimator_fn("grpo_eb")(token_level_rewards=rewards, response_mask=mask, index=index, config=AlgoConfig())


@pytest.mark.parametrize("name", ESTIMATOR_FORMS)
def test_keyword_inputs_are_the_signature(name):
    """The trainer passes estimator_inputs(name) and rlrt_cfg as keywords: they must be exactly the registered
    function's keyword-only parameters (a drift would be a TypeError mid-run, or an input never passed)."""
    parameters = inspect.signature(get_adv_estimator_fn(name)).parameters.values()
    keywords = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    every_piece = RlrtConfig(span="thinking", confidence_min=0.1)  # turns on the optional inputs
    expected = estimator_inputs(name, every_piece) if name in TEACHER_ESTIMATORS else estimator_inputs(name)
    assert sorted(keywords) == sorted([*expected, "rlrt_cfg"])
    assert set(estimator_inputs(name)) <= set(expected)


def _written_out(adv, delta, mask, rows, low, high, lam, direction=1, lam_add=0.0, g=None):
    """The family written out per element in float64 Python, independent of signals.py: Â = A·m + S·λ_add·g(Δ),
    m = 1 + S·λ·(clip(exp(d·sign(A)·Δ), low_i, high_i) − 1), 0 off the mask."""
    out = torch.zeros(adv.shape, dtype=torch.float64)
    for i in range(adv.shape[0]):
        for t in range(adv.shape[1]):
            if not mask[i, t]:
                continue
            a, d = float(adv[i, t]), float(delta[i, t])
            sign = (a > 0) - (a < 0)
            w = min(max(math.exp(direction * sign * d), low[i]), high[i])
            s = 1.0 if rows[i] else 0.0
            out[i, t] = a * (1 + s * lam * (w - 1)) + (s * lam_add * g(d) if g else 0.0)
    return out.float()


@pytest.mark.parametrize("case", ["negative", "mixed", "cast", "antisd", "warmup"])
def test_family_settings_through_verls_registry(case):
    """rlsd with the family's settings, called through verl's registry, against the family written out by hand:
    the official RLSD code's negative_only (rows with A < 0), CAST's mixed-group gate with its two boxes, AntiSD's
    additive term, and a λ warm-up (λ at step 2 of W = 2, K = 4 is λ₀/2)."""
    rewards, mask, index, old, teacher, correct = _batch()
    grpo = _verl_grpo(rewards, mask, index, True)
    delta = teacher - old
    section, rows, low, high, lam, lam_add, g, step = {}, [True] * 6, [0.8] * 6, [1.2] * 6, 0.5, 0.0, None, 1
    if case == "negative":
        section = {"gate": "negative"}
        rows = [bool(grpo[i, 0] < 0) for i in range(6)]
    elif case == "mixed":
        section = {"gate": "mixed"}
        rows = [u in ("a", "b") for u in index]  # a: 1, 0, 1 and b: 1, 0 are mixed; c is a single row
    elif case == "cast":
        section = {"gate": "mixed", "correct_box": [0.8, 1.05], "incorrect_box": [0.95, 1.2]}
        rows = [u in ("a", "b") for u in index]
        low = [0.8 if c else 0.95 for c in correct.tolist()]
        high = [1.05 if c else 1.2 for c in correct.tolist()]
    elif case == "antisd":
        section = {"additive": "antisd", "distill_adv_coef": 0.3}
        lam_add, g = 0.3, (lambda d: -0.5 * (math.log1p(math.exp(d)) - math.log(2.0)))
    else:
        section = {"lambda_schedule": "warmup_decay", "lambda_warmup_steps": 2, "lambda_decay_steps": 4}
        lam, step = 0.25, 2
    cfg = RlrtConfig.from_section(section).resolved("rlsd", max_prompt_length=16, max_response_length=16)
    adv, _ = _call("rlsd", rewards, mask, index, True, old_log_probs=old, teacher_log_probs=teacher, correct=correct,
                   rlrt_cfg=cfg, global_step=step)
    expected = _written_out(grpo, delta, mask, rows, low, high, lam, lam_add=lam_add, g=g)
    assert_close(adv, expected, atol=1e-6, rtol=1e-6)
    if case in ("negative", "mixed"):  # the unselected rows keep verl's A exactly
        kept = [i for i in range(6) if not rows[i]]
        assert kept and torch.equal(adv[kept], grpo[kept])


def test_grpo_opsd_takes_antisds_term():
    """grpo_opsd with rlrt.additive=antisd: Â = A + λ_add·(−½(softplus(Δ) − log 2)) on every response token."""
    rewards, mask, index, old, teacher, correct = _batch(1)
    cfg = RlrtConfig(additive="antisd", distill_adv_coef=0.2).resolved("grpo_opsd", max_prompt_length=16,
                                                                        max_response_length=16)
    adv, _ = _call("grpo_opsd", rewards, mask, index, True, old_log_probs=old, teacher_log_probs=teacher, rlrt_cfg=cfg)
    grpo = _verl_grpo(rewards, mask, index, True)
    expected = _written_out(grpo, teacher - old, mask, [True] * 6, [1.0] * 6, [1.0] * 6, 0.0, lam_add=0.2,
                            g=lambda d: -0.5 * (math.log1p(math.exp(d)) - math.log(2.0)))
    assert_close(adv, expected, atol=1e-6, rtol=1e-6)
