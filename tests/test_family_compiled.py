"""family_advantages(..., fused=True), the torch.compile'd path: the same values as the eager path on hand-made and
generated inputs in every variant, the same errors, one kernel per call, and no recompilation for a new [B, T]."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from rlrt_recipe.signals import additive_term, clip_box, family_advantages


def _no_compiler_reason() -> str | None:
    """Why inductor cannot build a CPU kernel here (no C++ compiler), or None."""
    from torch._inductor import exc
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except exc.InvalidCxxCompiler as error:
        return f"torch.compile (inductor) needs a C++ compiler for CPU kernels: {error}"
    return None


_REASON = _no_compiler_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

RTOL, ATOL = 1e-6, 1e-7  # float32: an ulp is 6e-8 to 1.2e-7 of a value


def _inputs(batch: int, length: int, seed: int, *, tokens: bool, confidence: bool, per_row_box: bool) -> tuple:
    """(Δ, A, mask, keyword arguments) with GRPO's shape of A (one value per row, some rows 0 exactly), Δ with exact
    zeros and NaN/±inf off the response, verl's int64 mask, and the box, S_row, S_tok and G asked for."""
    gen = torch.Generator().manual_seed(seed)
    mask = (torch.rand(batch, length, generator=gen) < 0.7).long()  # [B, T]
    delta = 6.0 * torch.randn(batch, length, generator=gen)  # [B, T]
    delta[torch.rand(batch, length, generator=gen) < 0.1] = 0.0
    off = mask == 0
    delta[off] = torch.tensor([math.nan, math.inf, -math.inf]).repeat(int(off.sum()) // 3 + 1)[: int(off.sum())]
    adv = torch.randn(batch, 1, generator=gen).expand(batch, length).clone()  # [B, T]
    adv[torch.rand(batch, generator=gen) < 0.25] = 0.0
    correct = torch.rand(batch, generator=gen) < 0.5  # [B]
    if per_row_box:
        low, high = clip_box(correct, correct_box=(0.8, 1.05), incorrect_box=(0.95, 1.2))
    else:
        low, high = clip_box(correct, eps_w=0.2)
    kw = dict(
        rows=torch.rand(batch, generator=gen) < 0.7,
        tokens=(torch.rand(batch, length, generator=gen) < 0.6) if tokens else None,
        low=low,
        high=high,
        confidence=torch.rand(batch, length, generator=gen) if confidence else None,
    )
    return delta, adv, mask, kw


def _assert_fused_matches_eager(delta, adv, mask, *, lam_add=0.0, additive=None, **kw) -> None:
    """fused = eager within ATOL + RTOL · (the size of the terms summed into Â) on the response; exactly +0.0 off it."""
    eager = family_advantages(delta, adv, mask, lam_add=lam_add, additive=additive, **kw)
    fused = family_advantages(delta, adv, mask, lam_add=lam_add, additive=additive, fused=True, **kw)
    assert fused.dtype == torch.float32 and fused.shape == delta.shape
    response = mask != 0  # [B, T]
    # inductor's exp and softplus can differ from ATen's (MKL's) in the last bit: an ulp of A · m or of λ_add · g,
    # which is many ulps of Â where the two nearly cancel
    g = additive_term(torch.where(response, delta, 0.0), additive=additive or "delta")  # [B, T]
    terms = 2.0 * adv.abs() + abs(lam_add) * g.abs()  # [B, T] ≥ |A · m| + |λ_add · g|, as m ≤ 1.2 here
    assert ((fused - eager).abs() <= ATOL + RTOL * terms)[response].all(), (fused - eager).abs().max()
    assert (fused[~response].view(torch.int32) == 0).all() and (eager[~response].view(torch.int32) == 0).all()


def test_one_kernel_per_call():
    """Each compiled variant is one C++ loop over [B, T], the checks' per-row reductions included (guards a change that
    splits it, e.g. a reduction over the whole batch, which inductor runs as a second pass)."""
    from torch._inductor.utils import run_and_get_code

    delta, adv, mask, kw = _inputs(5, 37, 0, tokens=True, confidence=True, per_row_box=True)
    for lam in (0.5, 0.0):
        with torch._inductor.config.patch(fx_graph_cache=False):  # a cached graph would not show its code
            _, codes = run_and_get_code(
                family_advantages, delta, adv, mask, direction=1, lam=lam, lam_add=0.3, additive="antisd", fused=True,
                **kw,
            )
        assert [code.count("async_compile.cpp_pybinding(") for code in codes] == [1]


def test_hand_made_batch():
    """Two rollouts of 4 tokens, rlrt-like (d = −1, λ = ½, ε_w = 0.2, second row not selected) with NaN and inf off
    the mask: the hand-computed Â, and the fused path equal to it and to the eager path."""
    delta = torch.tensor([[0.1, -0.4, 0.0, math.nan], [2.0, 0.3, math.inf, 1.0]])
    adv = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-0.5, -0.5, -0.5, -0.5]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    kw = dict(rows=torch.tensor([True, False]), tokens=None, direction=-1, low=torch.full((2,), 0.8),
              high=torch.full((2,), 1.2), lam=0.5, confidence=None)
    w = [math.exp(-0.1), 1.2, 1.0]  # exp(−1 · sign(1) · Δ), clipped to [0.8, 1.2]
    expected = torch.tensor([[1.0 + 0.5 * (w[0] - 1.0), 1.0 + 0.5 * (w[1] - 1.0), 1.0, 0.0], [-0.5, -0.5, 0.0, 0.0]])
    fused = family_advantages(delta, adv, mask, fused=True, **kw)
    assert_close(fused, expected)
    _assert_fused_matches_eager(delta, adv, mask, **kw)


@pytest.mark.parametrize("tokens, confidence", list(itertools.product((False, True), repeat=2)))
@pytest.mark.parametrize("additive, lam_add", [(None, 0.0), ("delta", 0.0), ("delta", 0.7), ("antisd", 0.0),
                                               ("antisd", -1.3)])
@pytest.mark.parametrize("per_row_box", [False, True])
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("direction", [1, -1])
def test_every_variant_matches_eager(tokens, confidence, additive, lam_add, per_row_box, lam, direction):
    """Every combination of S_tok and G given or not, g (none, Δ, AntiSD's) with λ_add zero or not, a scalar or
    per-row box, λ ∈ {0, 0.3, 1} and both directions: fused = eager to float rounding, exactly 0 off the mask, on a
    [5, 37] batch (37: a row is not a whole number of 8-float vectors)."""
    delta, adv, mask, kw = _inputs(5, 37, 1, tokens=tokens, confidence=confidence, per_row_box=per_row_box)
    _assert_fused_matches_eager(delta, adv, mask, direction=direction, lam=lam, lam_add=lam_add, additive=additive,
                                **kw)


@settings(max_examples=80, deadline=None)
@given(
    batch=st.integers(1, 6),
    length=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
    tokens=st.booleans(),
    confidence=st.booleans(),
    per_row_box=st.booleans(),
    lam=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)),
    additive=st.sampled_from([None, "delta", "antisd"]),
    lam_add=st.floats(-2.0, 2.0),
    direction=st.sampled_from([1, -1]),
)
def test_generated_inputs_match_eager(batch, length, seed, tokens, confidence, per_row_box, lam, additive, lam_add,
                                      direction):
    """Random shapes (sizes of 1 included), inputs and settings: fused = eager to float rounding, 0 off the mask."""
    delta, adv, mask, kw = _inputs(batch, length, seed, tokens=tokens, confidence=confidence, per_row_box=per_row_box)
    _assert_fused_matches_eager(delta, adv, mask, direction=direction, lam=lam,
                                lam_add=0.0 if additive is None else lam_add, additive=additive, **kw)


@pytest.mark.parametrize("row_adv", [False, True])
@pytest.mark.parametrize("lam", [0.5, 0.0])
def test_no_recompilation_for_a_new_shape(lam, row_adv):
    """After the first call, new [B, T] shapes (a square one, B = 1, T = 1) run the compiled kernel as it is:
    a recompilation is an error here (guards against dynamo specialising a size, or tying B to T); with A [B, T] and
    with one A per row [B, 1], as the estimators pass it."""
    kw = dict(direction=-1, lam=lam, lam_add=0.2, additive="delta")

    def inputs_of(batch, length, seed):
        delta, adv, mask, inputs = _inputs(batch, length, seed, tokens=False, confidence=False, per_row_box=True)
        return delta, adv[:, :1].clone() if row_adv else adv, mask, inputs

    for batch, length in ((4, 9), (2, 1)):  # compiles, unless an earlier test did; A [B, 1] is always one A per row
        delta, adv, mask, inputs = inputs_of(batch, length, 2)
        family_advantages(delta, adv, mask, fused=True, **inputs, **kw)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for batch, length in ((7, 3), (6, 6), (1, 40), (3, 1), (64, 515)):
            delta, adv, mask, inputs = inputs_of(batch, length, 3)
            _assert_fused_matches_eager(delta, adv, mask, **inputs, **kw)


@pytest.mark.parametrize("lam", [0.5, 0.0])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_delta_raises_as_eager(lam, bad):
    """A non-finite Δ at a response position raises the eager path's error, naming the same rows; off the mask it is
    ignored (the inputs hold NaN and ±inf there already)."""
    delta, adv, mask, kw = _inputs(4, 11, 4, tokens=False, confidence=False, per_row_box=False)
    mask[2, 5] = 1
    delta[2, 5] = bad
    kw.update(direction=1, lam=lam, lam_add=0.1, additive="antisd")
    with pytest.raises(ValueError) as eager:
        family_advantages(delta, adv, mask, **kw)
    with pytest.raises(ValueError) as fused:
        family_advantages(delta, adv, mask, fused=True, **kw)
    assert str(fused.value) == str(eager.value) and "rows [2]" in str(fused.value)


@pytest.mark.parametrize("lam", [0.5, 0.0])
@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan])
def test_confidence_outside_unit_interval_raises_as_eager(lam, bad):
    """A G outside [0, 1] (or NaN) at a response position raises the eager path's error, at λ = 0 too (where G is not
    used); off the mask it is ignored."""
    delta, adv, mask, kw = _inputs(4, 11, 5, tokens=True, confidence=True, per_row_box=False)
    mask[1, 3], mask[3, 4] = 1, 0
    delta[1, 3] = 0.5  # finite: it may have been off the mask
    kw["confidence"][1, 3] = bad
    kw["confidence"][3, 4] = 7.0  # off the mask
    kw.update(direction=-1, lam=lam)
    with pytest.raises(ValueError) as eager:
        family_advantages(delta, adv, mask, **kw)
    with pytest.raises(ValueError) as fused:
        family_advantages(delta, adv, mask, fused=True, **kw)
    assert str(fused.value) == str(eager.value) and "rows [1]" in str(fused.value)
    kw["confidence"][1, 3] = 0.5
    _assert_fused_matches_eager(delta, adv, mask, **kw)


def test_argument_checks_are_shared():
    """The fused path refuses what the eager path refuses, with the same message, before anything is compiled."""
    delta, adv, mask, kw = _inputs(3, 5, 6, tokens=False, confidence=False, per_row_box=False)
    wrong = [
        dict(direction=2, lam=0.5),
        dict(direction=1, lam=1.5),
        dict(direction=1, lam=0.5, additive="other", lam_add=0.1),
        dict(direction=1, lam=0.5, lam_add=0.1),
        dict(direction=1, lam=0.5, tokens=torch.ones(3, 4, dtype=torch.bool)),
        dict(direction=1, lam=0.5, confidence=torch.ones(2, 5)),
        dict(direction=1, lam=0.5, low=torch.full((3,), 1.1)),
        dict(direction=1, lam=0.5, rows=torch.ones(2, dtype=torch.bool)),
    ]
    for case in wrong:
        args = {**kw, **case}
        with pytest.raises(ValueError) as eager:
            family_advantages(delta, adv, mask, **args)
        with pytest.raises(ValueError) as fused:
            family_advantages(delta, adv, mask, fused=True, **args)
        assert str(fused.value) == str(eager.value)
    with pytest.raises(ValueError, match="mask and delta"):
        family_advantages(delta, adv, mask[:, :4], fused=True, direction=1, lam=0.5, **kw)


def test_empty_batch():
    """B = 0 takes the eager path (an empty tensor has nothing to fuse) and returns an empty [0, T]."""
    empty = torch.zeros(0, 6)
    out = family_advantages(empty, empty, empty.long(), rows=torch.zeros(0, dtype=torch.bool), tokens=None, direction=1,
                            low=torch.zeros(0), high=torch.zeros(0), lam=0.5, confidence=None, fused=True)
    assert out.shape == (0, 6)
