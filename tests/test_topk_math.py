"""SDPO / SRPO's logit-level math (rlrt_recipe.signals): the top-K tail bucket, the generalised JSD, the capped
importance ratio and SRPO's entropy-aware token weight, against hand-computed values and a float64 brute force."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from rlrt_recipe.signals import capped_is_ratio, generalized_jsd, srpo_token_weights, topk_jsd, with_tail

ln = math.log
e = math.exp
LN2 = ln(2.0)

# A full distribution over V = 3 tokens, K = 2 kept: the tail bucket is exactly the 3rd token.
P = (0.5, 0.3, 0.2)  # student
Q = (0.2, 0.5, 0.3)  # teacher
P_TOP2 = torch.tensor(P[:2]).log()
Q_TOP2 = torch.tensor(Q[:2]).log()


# ---------------------------------------------------------------- hand-computed, V = 3, K = 2


def test_with_tail_restores_the_third_token():
    """The tail of log p[:2] is log(1 − 0.5 − 0.3) = log 0.2 = log p[2]: the K+1 buckets are the full distribution."""
    assert_close(with_tail(P_TOP2), torch.tensor(P).log(), atol=1e-6, rtol=0)
    assert with_tail(P_TOP2).dtype == torch.float32


def test_topk_jsd_alpha_0_is_kl_teacher_student_by_hand():
    """α = 0 is KL(T ‖ S) = Σ q·ln(q/p), not its mirror: guards a swapped direction."""
    kl_q_p = 0.2 * ln(0.2 / 0.5) + 0.5 * ln(0.5 / 0.3) + 0.3 * ln(0.3 / 0.2)
    assert topk_jsd(P_TOP2, Q_TOP2, 0.0).item() == pytest.approx(kl_q_p, abs=1e-6)


def test_topk_jsd_alpha_1_is_kl_student_teacher_by_hand():
    """α = 1 is KL(S ‖ T) = Σ p·ln(p/q)."""
    kl_p_q = 0.5 * ln(0.5 / 0.2) + 0.3 * ln(0.3 / 0.5) + 0.2 * ln(0.2 / 0.3)
    assert topk_jsd(P_TOP2, Q_TOP2, 1.0).item() == pytest.approx(kl_p_q, abs=1e-6)
    # the two directions differ on this pair, so the α = 0 and α = 1 tests cannot both pass with a swap
    assert kl_p_q != pytest.approx(0.2 * ln(0.2 / 0.5) + 0.5 * ln(0.5 / 0.3) + 0.3 * ln(0.3 / 0.2), abs=1e-3)


def test_topk_jsd_alpha_half_is_the_jsd_by_hand():
    """α = 0.5 is 0.5·KL(p ‖ m) + 0.5·KL(q ‖ m) with m = (p + q)/2 = (0.35, 0.4, 0.25); ≤ ln 2 and symmetric."""
    kl_p_m = 0.5 * ln(0.5 / 0.35) + 0.3 * ln(0.3 / 0.4) + 0.2 * ln(0.2 / 0.25)
    kl_q_m = 0.2 * ln(0.2 / 0.35) + 0.5 * ln(0.5 / 0.4) + 0.3 * ln(0.3 / 0.25)
    jsd = 0.5 * kl_p_m + 0.5 * kl_q_m
    out = topk_jsd(P_TOP2, Q_TOP2, 0.5).item()
    assert out == pytest.approx(jsd, abs=1e-6)
    assert out <= LN2
    assert topk_jsd(Q_TOP2, P_TOP2, 0.5).item() == pytest.approx(out, abs=1e-7)


def test_topk_jsd_alpha_0_3_by_hand():
    """A generic α = 0.3: m = 0.7·p + 0.3·q = (0.41, 0.36, 0.23); loss = 0.7·KL(p ‖ m) + 0.3·KL(q ‖ m).
    Guards the weights of the two KLs being swapped (which only α = 0.5 cannot see)."""
    kl_p_m = 0.5 * ln(0.5 / 0.41) + 0.3 * ln(0.3 / 0.36) + 0.2 * ln(0.2 / 0.23)
    kl_q_m = 0.2 * ln(0.2 / 0.41) + 0.5 * ln(0.5 / 0.36) + 0.3 * ln(0.3 / 0.23)
    assert topk_jsd(P_TOP2, Q_TOP2, 0.3).item() == pytest.approx(0.7 * kl_p_m + 0.3 * kl_q_m, abs=1e-6)


def test_batched_shapes():
    """[..., K] x2 -> [...]: every leading position is its own divergence."""
    s = torch.stack([P_TOP2, Q_TOP2, P_TOP2]).reshape(3, 1, 2).expand(3, 4, 2)  # [3, 4, K]
    t = torch.stack([Q_TOP2, P_TOP2, P_TOP2]).reshape(3, 1, 2).expand(3, 4, 2)  # [3, 4, K]
    out = topk_jsd(s, t, 0.5)
    assert out.shape == (3, 4)
    assert_close(out[0], out[1])
    assert_close(out[2], torch.zeros(4), atol=1e-7, rtol=0)


# ---------------------------------------------------------------- gradients


def _topk_log_probs(student_logits, teacher_logits, k):
    """The student's top-K ids, and both models' full-vocabulary log-probs of those ids ([..., K] each)."""
    student = student_logits.log_softmax(-1)  # [B, V]
    ids = student.topk(k, dim=-1).indices  # [B, K]
    return student.gather(-1, ids), teacher_logits.log_softmax(-1).gather(-1, ids)


def test_gradient_flows_only_through_the_student():
    """With a detached teacher, backward reaches the student's logits (finite, non-zero) and never the teacher's."""
    gen = torch.Generator().manual_seed(0)
    student_logits = torch.randn(4, 9, generator=gen, requires_grad=True)
    teacher_logits = torch.randn(4, 9, generator=gen, requires_grad=True)
    s, t = _topk_log_probs(student_logits, teacher_logits, k=3)
    topk_jsd(s, t.detach(), 0.5).sum().backward()
    assert teacher_logits.grad is None
    assert torch.isfinite(student_logits.grad).all()
    assert student_logits.grad.abs().max() > 1e-3


def test_zero_loss_and_zero_gradient_when_student_is_teacher():
    """Student = teacher is the divergence's minimum: loss 0 and gradient 0 for every α."""
    gen = torch.Generator().manual_seed(1)
    for alpha in (0.0, 0.3, 0.5, 1.0):
        student_logits = torch.randn(4, 9, generator=gen, requires_grad=True)
        s, _ = _topk_log_probs(student_logits, student_logits, k=3)
        loss = topk_jsd(s, s.detach(), alpha).sum()
        loss.backward()
        assert abs(loss.item()) < 1e-6
        assert_close(student_logits.grad, torch.zeros(4, 9), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- brute force, float64, V = 7, K = 3


def _reference_topk_jsd(student_logits, teacher_logits, k, alpha):
    """Explicit (K+1)-bucket distributions built with python float64 loops, then the generalised JSD by its sums."""
    out = []
    for s_row, t_row in zip(student_logits.tolist(), teacher_logits.tolist()):
        p_full = np.exp(np.array(s_row, dtype=np.float64))
        p_full /= p_full.sum()
        q_full = np.exp(np.array(t_row, dtype=np.float64))
        q_full /= q_full.sum()
        ids = np.argsort(-p_full)[:k]
        p = [float(p_full[i]) for i in ids]
        q = [float(q_full[i]) for i in ids]
        p.append(1.0 - sum(p))
        q.append(1.0 - sum(q))
        if alpha == 0.0:
            value = sum(qc * ln(qc / pc) for pc, qc in zip(p, q))
        elif alpha == 1.0:
            value = sum(pc * ln(pc / qc) for pc, qc in zip(p, q))
        else:
            m = [(1 - alpha) * pc + alpha * qc for pc, qc in zip(p, q)]
            kl_p_m = sum(pc * ln(pc / mc) for pc, mc in zip(p, m))
            kl_q_m = sum(qc * ln(qc / mc) for qc, mc in zip(q, m))
            value = (1 - alpha) * kl_p_m + alpha * kl_q_m
        out.append(value)
    return torch.tensor(out, dtype=torch.float32)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_topk_jsd_matches_brute_force(alpha):
    """topk_jsd on top-3 of V = 7 equals the float64 reference on 16 random rows, for every α."""
    gen = torch.Generator().manual_seed(7)
    student_logits = 2.0 * torch.randn(16, 7, generator=gen, dtype=torch.float64)
    teacher_logits = 2.0 * torch.randn(16, 7, generator=gen, dtype=torch.float64)
    s, t = _topk_log_probs(student_logits, teacher_logits, k=3)
    expected = _reference_topk_jsd(student_logits, teacher_logits, 3, alpha)
    assert_close(topk_jsd(s, t, alpha), expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- edges: all the mass in the top K, zero probabilities


def test_top_k_holding_all_the_mass_stays_finite():
    """K = V: the tail is ~1e-7 (not 0, whose log is −inf); the loss and its gradient are finite for every α."""
    gen = torch.Generator().manual_seed(3)
    student_logits = torch.randn(2, 5, generator=gen, requires_grad=True)
    teacher_logits = torch.randn(2, 5, generator=gen)
    s, t = _topk_log_probs(student_logits, teacher_logits, k=5)
    tail = with_tail(s)[..., -1].exp()
    assert ((tail > 0.5e-7) & (tail < 2e-7)).all()
    for alpha in (0.0, 0.3, 0.5, 1.0):
        loss = topk_jsd(s, t, alpha).sum()
        (grad,) = torch.autograd.grad(loss, student_logits, retain_graph=True)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_top_k_summing_above_one_stays_finite():
    """A top-K mass rounded above 1 (0.6 + 0.41) is clamped: tail ~1e-7, finite loss and gradient."""
    s = torch.tensor([0.6, 0.41]).log().requires_grad_()
    t = torch.tensor([0.5, 0.3]).log()
    assert with_tail(s)[-1].exp().item() == pytest.approx(1e-7, rel=0.05)
    for alpha in (0.0, 0.5, 1.0):
        loss = topk_jsd(s, t, alpha)
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_zero_probability_categories():
    """S = (½, ½, 0), T = (½, 0, ½): the JSD is finite, M = (½, ¼, ¼) gives ½·ln 2, and gradients stay finite (no
    0·inf); a KL with mass where the other side has none is +inf, its true value; a category with zero mass in both
    adds nothing."""
    s = torch.tensor([ln(0.5), ln(0.5), -math.inf, -math.inf], requires_grad=True)
    t = torch.tensor([ln(0.5), -math.inf, ln(0.5), -math.inf], requires_grad=True)
    loss = generalized_jsd(s, t, 0.5)
    assert loss.item() == pytest.approx(0.5 * LN2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all()
    assert generalized_jsd(s, t, 0.0).item() == math.inf
    assert generalized_jsd(s, t, 1.0).item() == math.inf
    same = torch.tensor([ln(0.25), ln(0.75), -math.inf], requires_grad=True)
    kl = generalized_jsd(same, same.detach(), 0.0)
    kl.backward()
    assert kl.item() == 0.0 and torch.isfinite(same.grad).all()


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan])
def test_alpha_outside_unit_interval_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        topk_jsd(P_TOP2, Q_TOP2, alpha)


def test_shape_mismatch_refused():
    """Broadcasting [K] against [1, K] would silently pair the wrong rows: refused, naming both shapes."""
    with pytest.raises(ValueError, match=r"same shape.*\(2,\).*\(1, 2\)"):
        topk_jsd(P_TOP2, Q_TOP2[None], 0.5)


# ---------------------------------------------------------------- capped importance ratio


def test_capped_is_ratio_values():
    """ρ = min(π_θ/π_old, 2): 0.5 and 1.5 pass, 3 is capped at 2; ±100 nats are clamped to ±20 (finite); no grad."""
    old = torch.zeros(1, 5)
    log_prob = torch.tensor([[ln(0.5), ln(1.5), ln(3.0), 100.0, -100.0]], requires_grad=True)
    ratio = capped_is_ratio(log_prob, old, 2.0)
    assert_close(ratio, torch.tensor([[0.5, 1.5, 2.0, 2.0, e(-20.0)]]))
    assert torch.isfinite(ratio).all() and ratio[0, 4] > 0
    assert not ratio.requires_grad
    assert_close(capped_is_ratio(log_prob, old, 1e30)[0, 3], torch.tensor(e(20.0)))


@pytest.mark.parametrize("cap", [0.0, -1.0, math.nan])
def test_capped_is_ratio_cap_refused(cap):
    with pytest.raises(ValueError, match="cap"):
        capped_is_ratio(torch.zeros(1, 2), torch.zeros(1, 2), cap)


# ---------------------------------------------------------------- SRPO's entropy-aware token weight

# Row 0: three tokens, row 1: two (the third is masked and holds NaN, which must not matter).
H_T = torch.tensor([[0.0, 1.0, 2.0], [0.5, 3.0, math.nan]])
H_MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def test_srpo_weights_hand_computed():
    """β = 1: w = exp(−H) / mean over the 5 masked tokens of exp(−H); mean 1 on the mask, 0 off it, and a more
    uncertain teacher gets a smaller weight."""
    mean = (e(0.0) + e(-1.0) + e(-2.0) + e(-0.5) + e(-3.0)) / 5
    expected = torch.tensor([[1.0 / mean, e(-1.0) / mean, e(-2.0) / mean], [e(-0.5) / mean, e(-3.0) / mean, 0.0]])
    w = srpo_token_weights(H_T, H_MASK, 1.0)
    assert_close(w, expected)
    assert w.dtype == torch.float32
    assert w[H_MASK.bool()].mean().item() == pytest.approx(1.0, abs=1e-6)
    on_mask = w[H_MASK.bool()]  # H = 0, 1, 2, 0.5, 3
    assert on_mask[0] > on_mask[3] > on_mask[1] > on_mask[2] > on_mask[4] > 0


def test_srpo_weights_beta_zero_and_empty_mask():
    """β = 0 is plain SDPO: exactly 1 on the mask; an empty mask gives zeros (no 0/0)."""
    assert torch.equal(srpo_token_weights(H_T, H_MASK, 0.0), H_MASK.float())
    assert torch.equal(srpo_token_weights(H_T, torch.zeros_like(H_MASK), 1.0), torch.zeros(2, 3))


def test_srpo_weights_large_beta_entropy_stays_finite():
    """β·H ≈ 1000 would underflow every exp(−β·H) to 0 (0/0 = NaN) without the shift by the smallest β·H."""
    entropy = torch.tensor([[1000.0, 1001.0], [1002.0, 1000.0]])
    w = srpo_token_weights(entropy, torch.ones(2, 2), 1.0)
    mean = (2 + e(-1.0) + e(-2.0)) / 4
    assert_close(w, torch.tensor([[1.0 / mean, e(-1.0) / mean], [e(-2.0) / mean, 1.0 / mean]]))


def test_srpo_weights_detached_and_errors():
    """No gradient reaches the teacher's entropy; β < 0, a non-finite masked H and shape mismatches are refused."""
    entropy = H_T.nan_to_num().requires_grad_()
    assert not srpo_token_weights(entropy, H_MASK, 1.0).requires_grad
    with pytest.raises(ValueError, match="beta"):
        srpo_token_weights(H_T, H_MASK, -0.5)
    with pytest.raises(ValueError, match="beta"):
        srpo_token_weights(H_T, H_MASK, math.nan)
    bad = H_T.clone()
    bad[1, 0] = math.inf
    with pytest.raises(ValueError, match=r"non-finite teacher entropy .* rows \[1\]"):
        srpo_token_weights(bad, H_MASK, 1.0)
    with pytest.raises(ValueError, match="teacher_entropy"):
        srpo_token_weights(H_T[:, :2], H_MASK, 1.0)


# ---------------------------------------------------------------- properties (hypothesis)


@st.composite
def distribution_pairs(draw, allow_zero=False):
    """Student and teacher log-probs [C] over 2..6 categories, from logits in [−10, 10] (some −inf if allow_zero,
    at least one finite per side)."""
    size = draw(st.integers(2, 6))
    logit = st.floats(-10, 10, allow_nan=False, width=32)
    if allow_zero:
        logit = st.one_of(logit, st.just(-math.inf))

    def log_probs():
        logits = draw(st.lists(logit, min_size=size, max_size=size).filter(lambda xs: any(x > -math.inf for x in xs)))
        return torch.tensor(logits).log_softmax(-1)

    return log_probs(), log_probs()


alphas = st.floats(0, 1)
# The endpoints are KLs by convention while the mixture tends to 0 as α → 0 or 1, so an α within rounding of an
# endpoint (1 − 1e-171 == 1.0) would compare a mixture with a KL: keep α off the endpoints or exactly on them.
mirror_alphas = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(1e-3, 1 - 1e-3))


@settings(max_examples=100, deadline=None)
@given(distribution_pairs())
def test_property_jsd_bounded_and_symmetric(pair):
    """α = 0.5: 0 ≤ JSD ≤ ln 2 and JSD(S, T) = JSD(T, S)."""
    s, t = pair
    jsd = generalized_jsd(s, t, 0.5).item()
    assert -1e-6 <= jsd <= LN2 + 1e-5
    assert generalized_jsd(t, s, 0.5).item() == pytest.approx(jsd, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(distribution_pairs(), mirror_alphas)
def test_property_generalized_jsd_nonnegative_and_mirrored(pair, alpha):
    """Any α: the divergence is ≥ 0, and swapping S and T is the same as α → 1 − α."""
    s, t = pair
    value = generalized_jsd(s, t, alpha).item()
    assert value >= -1e-6
    assert generalized_jsd(t, s, 1.0 - alpha).item() == pytest.approx(value, rel=1e-4, abs=1e-5)


@settings(max_examples=100, deadline=None)
@given(distribution_pairs(allow_zero=True), st.floats(0.01, 0.99))
def test_property_mixture_finite_with_zero_probabilities(pair, alpha):
    """0 < α < 1 with −inf log-probs on either side: finite value in [0, ·], finite gradients for both inputs."""
    s, t = (x.clone().requires_grad_() for x in pair)
    value = generalized_jsd(s, t, alpha)
    value.backward()
    assert math.isfinite(value.item()) and value.item() >= -1e-6
    assert torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 7), st.data(), alphas)
def test_property_topk_jsd_zero_when_equal(k, data, alpha):
    """The top-K divergence of a distribution with itself is 0 for every K ≤ V and α."""
    vocab = data.draw(st.integers(k, 8))
    logits = torch.tensor(data.draw(st.lists(st.floats(-10, 10, width=32), min_size=vocab, max_size=vocab)))
    s = logits.log_softmax(-1).topk(k).values  # [K]
    assert abs(topk_jsd(s, s, alpha).item()) < 1e-6
