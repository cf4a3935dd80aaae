"""The public math API (rlrt_recipe.signals): hand-computed values and the invariants of docs/methods.md."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from rlrt_recipe.signals import (
    entropy_bonus_advantages,
    entropy_bonus_statistics,
    lambda_at,
    opsd_advantages,
    reweighted_advantages,
    token_weights,
)

# Two rollouts of one group (A = +1 and −1), three tokens each.
DELTA = torch.tensor([[0.5, -0.5, 0.0], [0.2, -1.0, 0.3]])
ADV = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
MASK = torch.ones(2, 3, dtype=torch.bool)
CORRECT = torch.tensor([True, False])
TEACHER = torch.tensor([True, True])
e = math.exp


def _adv_hat(direction, gate, eps_w, lam=0.5, delta=DELTA, adv=ADV, mask=MASK, correct=CORRECT, has_teacher=TEACHER):
    return reweighted_advantages(
        delta, adv, mask, correct=correct, has_teacher=has_teacher, direction=direction, gate=gate, lam=lam, eps_w=eps_w
    )


def test_rlsd_hand_computed():
    """RLSD (d = +1, all rows, ε_w = 0.2): w = clip(exp(sign(A)·Δ)); Â = A·(0.5 + 0.5·w)."""
    expected = torch.tensor(
        [[0.5 + 0.5 * 1.2, 0.5 + 0.5 * 0.8, 1.0], [-(0.5 + 0.5 * e(-0.2)), -(0.5 + 0.5 * 1.2), -(0.5 + 0.5 * 0.8)]]
    )
    assert_close(_adv_hat(1, "all", 0.2), expected)


def test_rlrt_hand_computed():
    """RLRT (d = −1, correct rows only, ε_w = 1): the correct row is pushed where the teacher disagrees."""
    expected = torch.tensor([[0.5 + 0.5 * e(-0.5), 0.5 + 0.5 * e(0.5), 1.0], [-1.0, -1.0, -1.0]])
    assert_close(_adv_hat(-1, "correct", 1.0), expected)


def test_rlrt_all_ablation_hand_computed():
    """RLRT-all: the incorrect row is reweighted too, by exp(d·sign(A)·Δ) = exp(Δ)."""
    expected = torch.tensor(
        [[0.5 + 0.5 * e(-0.5), 0.5 + 0.5 * e(0.5), 1.0], [-(0.5 + 0.5 * e(0.2)), -(0.5 + 0.5 * e(-1.0)), -(0.5 + 0.5 * e(0.3))]]
    )
    assert_close(_adv_hat(-1, "all", 1.0), expected)


def test_teacher_up_on_correct_ablation_hand_computed():
    """Teacher-up on correct rows (d = +1, gate correct): the mirror image of RLRT on the correct row."""
    expected = torch.tensor([[0.5 + 0.5 * e(0.5), 0.5 + 0.5 * e(-0.5), 1.0], [-1.0, -1.0, -1.0]])
    assert_close(_adv_hat(1, "correct", 1.0), expected)


def test_token_weights_hand_computed_and_masked():
    """w is clipped, and exactly 1 at masked positions even when Δ there is NaN."""
    delta = torch.tensor([[0.5, float("nan")], [-3.0, 0.1]])
    adv = torch.tensor([[2.0, 2.0], [-0.5, -0.5]])
    mask = torch.tensor([[1, 0], [1, 1]])
    w = token_weights(delta, adv, mask, direction=1, eps_w=0.5)
    assert_close(w, torch.tensor([[1.5, 1.0], [1.5, e(-0.1)]]))
    assert w.dtype == torch.float32


def test_opsd_and_grpo_opsd_hand_computed():
    """opsd: Â = Δ; grpo_opsd: Â = A + β·Δ; both 0 off the mask."""
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert_close(opsd_advantages(DELTA, mask), torch.tensor([[0.5, -0.5, 0.0], [0.2, -1.0, 0.3]]))
    expected = torch.tensor([[1.05, 0.95, 0.0], [-0.98, -1.1, -0.97]])
    assert_close(opsd_advantages(DELTA, mask, adv=ADV, beta=0.1), expected)


def test_opsd_needs_adv_and_beta_together():
    with pytest.raises(ValueError, match="together"):
        opsd_advantages(DELTA, MASK, adv=ADV)


@pytest.mark.parametrize("step, expected", [(1, 0.5), (26, 0.25), (51, 0.0), (500, 0.0)])
def test_lambda_linear_decay(step, expected):
    """λ_k = λ₀·max(0, 1 − (k − 1)/K) with λ₀ = 0.5, K = 50: λ₁ = λ₀, zero from step K + 1 on."""
    assert lambda_at(step, schedule="linear_decay", lam0=0.5, decay_steps=50) == pytest.approx(expected)


def test_lambda_constant_and_errors():
    assert lambda_at(7, schedule="constant", lam0=0.5) == 0.5
    with pytest.raises(ValueError, match="1-based"):
        lambda_at(0, schedule="constant", lam0=0.5)
    with pytest.raises(ValueError, match="schedule"):
        lambda_at(1, schedule="cosine", lam0=0.5)
    with pytest.raises(ValueError, match="decay_steps"):
        lambda_at(1, schedule="linear_decay", lam0=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lambda_at(1, schedule="constant", lam0=1.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(direction=0, gate="all", lam=0.5, eps_w=0.2), "direction"),
        (dict(direction=1, gate="some", lam=0.5, eps_w=0.2), "gate"),
        (dict(direction=1, gate="all", lam=1.5, eps_w=0.2), "lambda"),
        (dict(direction=1, gate="all", lam=0.5, eps_w=0.0), "eps_w"),
        (dict(direction=1, gate="all", lam=0.5, eps_w=1.5), "eps_w"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        reweighted_advantages(DELTA, ADV, MASK, correct=CORRECT, has_teacher=TEACHER, **kwargs)


def test_nonfinite_delta_at_response_position_names_the_row():
    """Property 5: a NaN/inf gap on a response token is an error naming the row, never a silent NaN."""
    delta = DELTA.clone()
    delta[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        _adv_hat(1, "all", 0.2, delta=delta)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        opsd_advantages(delta, MASK)


def test_int_and_float_masks_agree_with_bool():
    for mask in (MASK.int(), MASK.float()):
        assert torch.equal(_adv_hat(-1, "all", 1.0, mask=mask), _adv_hat(-1, "all", 1.0))


def test_flag_shapes_checked():
    with pytest.raises(ValueError, match="correct must be"):
        _adv_hat(1, "all", 0.2, correct=torch.tensor([True]))


# ---------------------------------------------------------------- properties (hypothesis)

finite = st.floats(-20, 20, allow_nan=False, width=32)
special = st.sampled_from([float("nan"), float("inf"), -float("inf")])


@st.composite
def batches(draw):
    """A random [B, T] batch: per-row advantages (zero allowed), gaps, a mask, flags and method settings."""
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    row_adv = draw(st.lists(st.one_of(st.just(0.0), st.floats(-3, 3, width=32)), min_size=rows, max_size=rows))
    delta = torch.tensor(draw(st.lists(st.lists(finite, min_size=cols, max_size=cols), min_size=rows, max_size=rows)))
    mask = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=cols, max_size=cols), min_size=rows, max_size=rows)))
    adv = torch.tensor(row_adv)[:, None].expand(rows, cols).clone()
    flags = lambda: torch.tensor(draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))  # noqa: E731
    settings_ = dict(
        direction=draw(st.sampled_from([1, -1])),
        gate=draw(st.sampled_from(["all", "correct"])),
        lam=draw(st.floats(0, 1)),
        eps_w=draw(st.floats(0.01, 1)),
    )
    return delta, adv, mask, flags(), flags(), settings_


@settings(max_examples=200, deadline=None)
@given(batches())
def test_property_sign_kept_and_magnitude_bounded(batch):
    """Property 1: A·Â ≥ 0, and |Â| ≥ (1 − λ·ε_w)·|A| on response tokens."""
    delta, adv, mask, correct, has_teacher, s = batch
    adv_hat = reweighted_advantages(delta, adv, mask, correct=correct, has_teacher=has_teacher, **s)
    m = mask.bool()
    assert (adv[m] * adv_hat[m] >= 0).all()
    bound = (1 - s["lam"] * s["eps_w"]) * adv[m].abs()
    assert (adv_hat[m].abs() >= bound - 1e-5 * (1 + adv[m].abs())).all()


@settings(max_examples=200, deadline=None)
@given(batches())
def test_property_reduces_to_grpo_exactly(batch):
    """Property 2: λ = 0, τ = s, a failed gate or no teacher give Â = A bit for bit (0 off the mask)."""
    delta, adv, mask, correct, has_teacher, s = batch
    grpo = torch.where(mask.bool(), adv, 0.0)
    run = lambda **kw: reweighted_advantages(  # noqa: E731
        kw.pop("delta", delta), adv, mask, **{"correct": correct, "has_teacher": has_teacher, **s, **kw}
    )
    assert torch.equal(run(lam=0.0), grpo)
    assert torch.equal(run(delta=torch.zeros_like(delta)), grpo)
    assert torch.equal(run(has_teacher=torch.zeros_like(has_teacher)), grpo)
    assert torch.equal(run(gate="correct", correct=torch.zeros_like(correct)), grpo)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_property_zero_advantage_stays_zero(batch):
    """Property 3: a degenerate group (A = 0) gets Â = 0 and w = 1 whatever the teacher says."""
    delta, adv, mask, correct, has_teacher, s = batch
    zero = torch.zeros_like(adv)
    assert torch.equal(reweighted_advantages(delta, zero, mask, correct=correct, has_teacher=has_teacher, **s), zero)
    w = token_weights(delta, zero, mask, direction=s["direction"], eps_w=s["eps_w"])
    assert torch.equal(w, torch.ones_like(w))


@settings(max_examples=200, deadline=None)
@given(batches(), st.data())
def test_property_masked_positions_inert(batch, data):
    """Property 4: masked positions get w = 1 and Â = 0 and change nothing elsewhere, even holding NaN/inf."""
    delta, adv, mask, correct, has_teacher, s = batch
    m = mask.bool()
    assume((~m).any())
    noisy_delta, noisy_adv = delta.clone(), adv.clone()
    noisy_delta[~m] = data.draw(special)
    noisy_adv[~m] = data.draw(special)
    kw = dict(correct=correct, has_teacher=has_teacher, **s)
    clean = reweighted_advantages(delta, adv, mask, **kw)
    noisy = reweighted_advantages(noisy_delta, noisy_adv, mask, **kw)
    assert torch.equal(clean, noisy)
    assert (noisy[~m] == 0).all()
    w = token_weights(noisy_delta, noisy_adv, mask, direction=s["direction"], eps_w=s["eps_w"])
    assert (w[~m] == 1).all() and torch.isfinite(w).all()
    assert torch.equal(opsd_advantages(noisy_delta, mask), opsd_advantages(delta, mask))


@settings(max_examples=100, deadline=None)
@given(batches(), st.data())
def test_property_nonfinite_on_response_raises(batch, data):
    """Property 5: NaN or ±inf in Δ on a response token raises ValueError naming that row."""
    delta, adv, mask, correct, has_teacher, s = batch
    positions = mask.bool().nonzero().tolist()
    assume(positions)
    row, col = data.draw(st.sampled_from(positions))
    delta = delta.clone()
    delta[row, col] = data.draw(special)
    with pytest.raises(ValueError, match=rf"rows \[.*\b{row}\b.*\]"):
        reweighted_advantages(delta, adv, mask, correct=correct, has_teacher=has_teacher, **s)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_property_weights_inside_clip(batch):
    """w_t ∈ [1 − ε_w, 1 + ε_w] everywhere, float32."""
    delta, adv, mask, _, _, s = batch
    w = token_weights(delta, adv, mask, direction=s["direction"], eps_w=s["eps_w"])
    assert w.dtype == torch.float32
    assert ((w >= 1 - s["eps_w"] - 1e-6) & (w <= 1 + s["eps_w"] + 1e-6)).all()


def test_half_precision_inputs_computed_in_float32():
    """bf16 log-prob gaps are promoted: outputs are float32 whatever the input dtype."""
    out = _adv_hat(1, "all", 0.2, delta=DELTA.bfloat16(), adv=ADV.bfloat16())
    assert out.dtype == torch.float32


def test_gap_statistics_hand_computed():
    """Stats cover response tokens of selected rows with A ≠ 0 only: here row 0's first two tokens."""
    from rlrt_recipe.signals import gap_statistics

    delta = torch.tensor([[0.5, -1.0, 9.0], [3.0, 3.0, 3.0]])
    adv = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    stats = gap_statistics(delta, adv, mask, torch.tensor([True, True]), direction=1, eps_w=0.2)
    assert stats["delta_mean"] == pytest.approx(-0.25)
    assert stats["delta_std"] == pytest.approx(0.75)
    assert stats["delta_abs_mean"] == pytest.approx(0.75)
    assert stats["delta_pos_frac"] == pytest.approx(0.5)
    assert stats["w_mean"] == pytest.approx((1.2 + 0.8) / 2)
    assert (stats["w_clip_low_frac"], stats["w_clip_high_frac"]) == (0.5, 0.5)
    assert gap_statistics(delta, adv, mask, torch.tensor([False, False]), direction=1, eps_w=0.2) == {}


# ---------------------------------------------------------------- GRPO+EB (Cheng et al.): Â = A + min(α·H, |A|/κ)

# α = 0.4, κ = 2 (the paper's GRPO values). Row 0: A = +1, row 1: A = −1, row 2: a degenerate group (A = 0).
# Token 0: α·H = 0.2 < |A|/κ = 0.5 (α·H binds); token 1: α·H = 1.2 > 0.5 (the cap |A|/κ binds).
EB_ADV = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
EB_ENTROPY = torch.tensor([[0.5, 3.0, float("nan")], [0.5, 3.0, 0.0], [2.0, 2.0, 2.0]])
EB_MASK = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 1, 1]])


def test_entropy_bonus_hand_computed():
    """ψ = α·H where it is below |A|/κ, else |A|/κ; a negative A shrinks and keeps its sign; H = 0 and A = 0 give
    ψ = 0; the masked position is 0 although its entropy is NaN."""
    expected = torch.tensor([[1.0 + 0.2, 1.0 + 0.5, 0.0], [-1.0 + 0.2, -1.0 + 0.5, -1.0], [0.0, 0.0, 0.0]])
    out = entropy_bonus_advantages(EB_ADV, EB_ENTROPY, EB_MASK, alpha=0.4, kappa=2.0)
    assert_close(out, expected)
    assert out.dtype == torch.float32


def test_entropy_bonus_statistics_hand_computed():
    """eb_bonus_mean: ψ over all 8 response tokens (0.2 + 0.5 + 0.2 + 0.5 + 0 · 4) / 8; eb_capped_frac: the cap
    binds on token 1 of rows 0 and 1, 2 of the 5 response tokens with A ≠ 0 (row 2 has A = 0)."""
    stats = entropy_bonus_statistics(EB_ADV, EB_ENTROPY, EB_MASK, alpha=0.4, kappa=2.0)
    assert stats == {"eb_bonus_mean": pytest.approx(1.4 / 8), "eb_capped_frac": pytest.approx(2 / 5)}
    assert entropy_bonus_statistics(EB_ADV[2:], EB_ENTROPY[2:], EB_MASK[2:], alpha=0.4, kappa=2.0) == {
        "eb_bonus_mean": 0.0
    }
    assert entropy_bonus_statistics(EB_ADV, EB_ENTROPY, torch.zeros_like(EB_MASK), alpha=0.4, kappa=2.0) == {}


def test_entropy_bonus_errors():
    """A non-finite entropy on a response token names its row; α < 0, κ ≤ 1 (which could flip the sign of A) and
    mismatched shapes are refused."""
    entropy = EB_ENTROPY.clone()
    entropy[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite token entropy .* rows \[1\]"):
        entropy_bonus_advantages(EB_ADV, entropy, EB_MASK, alpha=0.4, kappa=2.0)
    with pytest.raises(ValueError, match="alpha"):
        entropy_bonus_advantages(EB_ADV, EB_ENTROPY, EB_MASK, alpha=-0.1, kappa=2.0)
    with pytest.raises(ValueError, match="kappa"):
        entropy_bonus_advantages(EB_ADV, EB_ENTROPY, EB_MASK, alpha=0.4, kappa=1.0)
    with pytest.raises(ValueError, match="entropy and adv"):
        entropy_bonus_advantages(EB_ADV, EB_ENTROPY[:, :2], EB_MASK, alpha=0.4, kappa=2.0)


@st.composite
def entropy_batches(draw):
    """A random [B, T] batch: per-row advantages (zero allowed), entropies ≥ 0, a mask, α ≥ 0 and κ > 1."""
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    row_adv = draw(st.lists(st.one_of(st.just(0.0), st.floats(-3, 3, width=32)), min_size=rows, max_size=rows))
    adv = torch.tensor(row_adv)[:, None].expand(rows, cols).clone()
    entropy = torch.tensor(draw(st.lists(st.lists(st.floats(0, 12, width=32), min_size=cols, max_size=cols),
                                         min_size=rows, max_size=rows)))
    mask = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=cols, max_size=cols), min_size=rows, max_size=rows)))
    alpha = draw(st.floats(0, 5))
    kappa = draw(st.floats(1, 10, exclude_min=True))
    return adv, entropy, mask, alpha, kappa


@settings(max_examples=200, deadline=None)
@given(entropy_batches())
def test_property_entropy_bonus_keeps_sign_and_bounds(batch):
    """A·Â ≥ 0 and |Â − A| ≤ |A|/κ on response tokens: the bonus never flips the sign of A."""
    adv, entropy, mask, alpha, kappa = batch
    adv_hat = entropy_bonus_advantages(adv, entropy, mask, alpha=alpha, kappa=kappa)
    m = mask.bool()
    assert (adv[m] * adv_hat[m] >= 0).all()
    assert ((adv_hat[m] - adv[m]).abs() <= adv[m].abs() / kappa + 1e-6 * (1 + adv[m].abs())).all()
    assert (adv_hat[~m] == 0).all()


@settings(max_examples=100, deadline=None)
@given(entropy_batches())
def test_property_entropy_bonus_zero_entropy_is_grpo(batch):
    """H = 0 (or α = 0) gives Â = A bit for bit, and A = 0 gives Â = 0 whatever H is."""
    adv, entropy, mask, alpha, kappa = batch
    grpo = torch.where(mask.bool(), adv, 0.0)
    assert torch.equal(entropy_bonus_advantages(adv, torch.zeros_like(entropy), mask, alpha=alpha, kappa=kappa), grpo)
    assert torch.equal(entropy_bonus_advantages(adv, entropy, mask, alpha=0.0, kappa=kappa), grpo)
    zero = torch.zeros_like(adv)
    assert torch.equal(entropy_bonus_advantages(zero, entropy, mask, alpha=alpha, kappa=kappa), zero)


@settings(max_examples=100, deadline=None)
@given(entropy_batches(), st.data())
def test_property_entropy_bonus_masked_positions_inert(batch, data):
    """Masked positions hold Â = 0 and change nothing elsewhere, even holding NaN/inf in A or H."""
    adv, entropy, mask, alpha, kappa = batch
    m = mask.bool()
    assume((~m).any())
    noisy_adv, noisy_entropy = adv.clone(), entropy.clone()
    noisy_adv[~m] = data.draw(special)
    noisy_entropy[~m] = data.draw(special)
    clean = entropy_bonus_advantages(adv, entropy, mask, alpha=alpha, kappa=kappa)
    assert torch.equal(entropy_bonus_advantages(noisy_adv, noisy_entropy, mask, alpha=alpha, kappa=kappa), clean)
