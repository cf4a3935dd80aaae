"""The token-weight family of rlrt_recipe.signals: each piece on hand-computed values, its invariants (hypothesis), the
existing members as presets, and an independent re-derivation of the official RLSD reweighting."""

import math
import random

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from rlrt_recipe.signals import (
    additive_term,
    clip_box,
    family_advantages,
    lambda_at,
    opsd_advantages,
    reweighted_advantages,
    selected_rows,
    span_mask,
    teacher_confidence,
)

e = math.exp


def _bits(x: torch.Tensor) -> torch.Tensor:
    """The float32 bit patterns, so that equality means bit for bit (−0.0 ≠ +0.0, NaN payloads count)."""
    return x.float().view(torch.int32)


# ---------------------------------------------------------------- S_row: selected_rows

# Group a: one right, one wrong (A = ±0.7071); group b: both right (A = 0); group c: a single wrong rollout (A = r = 0).
ROW_CORRECT = torch.tensor([True, False, True, True, False])
ROW_TEACHER = torch.tensor([True, True, True, False, True])
ROW_SIGN = torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0])
ROW_UIDS = ["a", "a", "b", "b", "c"]


@pytest.mark.parametrize(
    "gate, expected",
    [
        ("all", [True, True, True, False, True]),
        ("correct", [True, False, True, False, False]),
        ("negative", [False, True, False, False, False]),
        ("mixed", [True, True, False, False, False]),
    ],
)
def test_selected_rows_hand_computed(gate, expected):
    """Each gate on one batch; every gate drops row 3 (no teacher). Guards the meaning of each gate name."""
    rows = selected_rows(gate, correct=ROW_CORRECT, has_teacher=ROW_TEACHER, adv_sign=ROW_SIGN, group=ROW_UIDS)
    assert rows.tolist() == expected


def test_selected_rows_mixed_takes_int_groups_and_uid_arrays():
    """Integer group ids (any values) and verl's object array of uids give the same mixed rows as uid strings."""
    import numpy as np

    for group in (torch.tensor([7, 7, 3, 3, -1]), np.array(ROW_UIDS, dtype=object)):
        rows = selected_rows("mixed", correct=ROW_CORRECT, has_teacher=ROW_TEACHER, group=group)
        assert rows.tolist() == [True, True, False, False, False]


def test_selected_rows_errors():
    """A gate that needs adv_sign or group says so; a wrong group length or a float group is refused."""
    kw = dict(correct=ROW_CORRECT, has_teacher=ROW_TEACHER)
    with pytest.raises(ValueError, match="adv_sign"):
        selected_rows("negative", **kw)
    with pytest.raises(ValueError, match="needs group"):
        selected_rows("mixed", **kw)
    with pytest.raises(ValueError, match="one entry per row"):
        selected_rows("mixed", group=["a", "b"], **kw)
    with pytest.raises(ValueError, match="integer ids"):
        selected_rows("mixed", group=torch.zeros(5), **kw)
    with pytest.raises(ValueError, match="gate must be"):
        selected_rows("some", **kw)
    with pytest.raises(ValueError, match="correct must be"):
        selected_rows("all", correct=torch.tensor([True]), has_teacher=ROW_TEACHER)


# ---------------------------------------------------------------- S_tok: span_mask

OPEN, CLOSE = [5, 6], [7, 8]  # two-token tags, as "<think>" / "</think>" may tokenize
SPAN_IDS = torch.tensor(
    [
        [1, 5, 6, 2, 3, 7, 8, 4],  # a closed span: thinking 3-4, answer 7
        [5, 6, 2, 7, 9, 0, 0, 0],  # "7 9" is not the close tag: unclosed, thinking 2-4 to the end of the response
        [2, 7, 8, 5, 6, 3, 7, 8],  # a close tag before the open one: thinking 5, answer after the FIRST close: 3-7
        [1, 2, 3, 7, 8, 4, 0, 0],  # no open tag: no thinking, answer 5
        [5, 6, 2, 7, 8, 0, 0, 0],  # the close tag's second token is off the mask: unclosed, thinking 2-3
        [5, 6, 1, 5, 6, 2, 7, 8],  # a second open tag inside the span is just span: thinking 2-5
    ]
)
SPAN_MASK = torch.tensor([[1] * 8, [1] * 5 + [0] * 3, [1] * 8, [1] * 6 + [0] * 2, [1] * 4 + [0] * 4, [1] * 8])


def _rows_of(mask: torch.Tensor) -> list[list[int]]:
    return [row.nonzero().flatten().tolist() for row in mask]


def test_span_mask_thinking_hand_computed():
    """The first open tag to the next close tag after it, exclusive; to the end when unclosed; nothing without an open
    tag; a tag must lie on response tokens."""
    got = span_mask(SPAN_IDS, SPAN_MASK, span="thinking", open_ids=OPEN, close_ids=CLOSE)
    assert got.dtype == torch.bool and got.shape == SPAN_IDS.shape
    assert _rows_of(got) == [[3, 4], [2, 3, 4], [5], [], [2, 3], [2, 3, 4, 5]]


def test_span_mask_answer_and_all_hand_computed():
    """answer: strictly after the first close tag, every response token without one; all: the mask itself."""
    got = span_mask(SPAN_IDS, SPAN_MASK, span="answer", open_ids=OPEN, close_ids=CLOSE)
    assert _rows_of(got) == [[7], [0, 1, 2, 3, 4], [3, 4, 5, 6, 7], [5], [0, 1, 2, 3], []]
    assert torch.equal(span_mask(SPAN_IDS, SPAN_MASK, span="all", open_ids=OPEN, close_ids=CLOSE), SPAN_MASK.bool())


def test_span_mask_empty_open_tag_starts_at_the_response():
    """open_ids = [] (the open tag sits in the prompt): thinking runs from token 0 to the first close tag."""
    got = span_mask(SPAN_IDS, SPAN_MASK, span="thinking", open_ids=[], close_ids=CLOSE)
    assert _rows_of(got) == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [0], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]


def test_span_mask_list_input_matches_tensor_input():
    """A list of 1-D responses (no mask) gives the padded tensor's answer, width = the longest response."""
    rows = [ids[mask.bool()] for ids, mask in zip(SPAN_IDS, SPAN_MASK)]
    for span in ("all", "thinking", "answer"):
        from_list = span_mask(rows, span=span, open_ids=OPEN, close_ids=CLOSE)
        assert torch.equal(from_list, span_mask(SPAN_IDS, SPAN_MASK, span=span, open_ids=OPEN, close_ids=CLOSE))


def test_span_mask_single_token_tags_and_short_rows():
    """One-token tags work, and a tag longer than the response never matches."""
    ids = torch.tensor([[9, 1, 2, 8, 3]])
    mask = torch.ones_like(ids)
    assert _rows_of(span_mask(ids, mask, span="thinking", open_ids=[9], close_ids=[8])) == [[1, 2]]
    assert _rows_of(span_mask(ids[:, :1], mask[:, :1], span="answer", open_ids=OPEN, close_ids=[1, 2, 3])) == [[0]]


def test_span_mask_errors():
    with pytest.raises(ValueError, match="span must be"):
        span_mask(SPAN_IDS, SPAN_MASK, span="thought", open_ids=OPEN, close_ids=CLOSE)
    with pytest.raises(ValueError, match="needs its mask"):
        span_mask(SPAN_IDS, span="thinking", open_ids=OPEN, close_ids=CLOSE)
    with pytest.raises(ValueError, match="takes no mask"):
        span_mask(list(SPAN_IDS), SPAN_MASK, span="thinking", open_ids=OPEN, close_ids=CLOSE)
    with pytest.raises(ValueError, match="close_ids"):
        span_mask(SPAN_IDS, SPAN_MASK, span="answer", open_ids=OPEN, close_ids=[])


# ---------------------------------------------------------------- box, λ, confidence, additive term


def test_clip_box_hand_computed():
    """Symmetric (1 − ε, 1 + ε) on every row, or CAST's boxes by correctness: correct [0.8, 1.05], wrong [0.95, 1.2]."""
    correct = torch.tensor([True, False, True])
    low, high = clip_box(correct, eps_w=0.2)
    assert_close(low, torch.tensor([0.8, 0.8, 0.8]))
    assert_close(high, torch.tensor([1.2, 1.2, 1.2]))
    low, high = clip_box(correct, correct_box=(0.8, 1.05), incorrect_box=(0.95, 1.2))
    assert_close(low, torch.tensor([0.8, 0.95, 0.8]))
    assert_close(high, torch.tensor([1.05, 1.2, 1.05]))
    assert low.dtype == high.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "needs eps_w"),
        (dict(correct_box=(0.8, 1.05)), "needs eps_w"),
        (dict(eps_w=0.2, correct_box=(0.8, 1.05), incorrect_box=(0.95, 1.2)), "not both"),
        (dict(eps_w=1.5), "eps_w"),
        (dict(correct_box=(0.0, 1.05), incorrect_box=(0.95, 1.2)), "correct_box must be"),
        (dict(correct_box=(0.8, 1.05), incorrect_box=(0.9, 0.95)), "incorrect_box must be"),
        (dict(correct_box=(1.1, 1.2), incorrect_box=(0.95, 1.2)), "correct_box must be"),
        (dict(correct_box=(0.8, math.inf), incorrect_box=(0.95, 1.2)), "correct_box must be"),
    ],
)
def test_clip_box_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        clip_box(torch.tensor([True, False]), **kwargs)


@pytest.mark.parametrize("step, expected", [(1, 0.0), (2, 0.125), (4, 0.375), (5, 0.5), (6, 0.45), (10, 0.25),
                                            (14, 0.05), (15, 0.0), (100, 0.0)])
def test_lambda_warmup_decay_hand_computed(step, expected):
    """λ₀ = 0.5, W = 4, K = 10: 0 at step 1, λ₀ at step W + 1 = 5, then down by λ₀/K a step, 0 from step W + K + 1."""
    got = lambda_at(step, schedule="warmup_decay", lam0=0.5, decay_steps=10, warmup_steps=4)
    assert got == pytest.approx(expected, abs=1e-12)


def test_lambda_linear_decay_is_warmup_decay_without_warmup():
    """linear_decay = warmup_decay with W = 0, the same floats at every step (RLSD K = 50, the official code's K = 60)."""
    for decay_steps in (50, 60, 7):
        for step in range(1, 80):
            assert lambda_at(step, schedule="warmup_decay", lam0=0.5, decay_steps=decay_steps, warmup_steps=0) == \
                lambda_at(step, schedule="linear_decay", lam0=0.5, decay_steps=decay_steps)


def test_lambda_warmup_decay_is_the_official_schedule_one_step_later():
    """The official RLSD schedule (verl/trainer/opsd_trainer.py, _augment_batch_with_grpo_opsd) at its 1-based step k,
    re-derived here: λ₀·k/W while k < W, else λ₀·max(1 − (k − W)/K, 0). Ours at step k + 1 is the same number."""

    def official(step, warmup, decay, target):
        if warmup > 0 and step < warmup:
            return target * (step / warmup)
        return target * max(1.0 - (step - warmup) / decay, 0.0)

    for warmup in (0, 1, 5):
        for step in range(1, 90):
            ours = lambda_at(step + 1, schedule="warmup_decay", lam0=0.5, decay_steps=60, warmup_steps=warmup)
            assert ours == pytest.approx(official(step, warmup, 60, 0.5), abs=1e-12)


def test_lambda_warmup_decay_errors():
    with pytest.raises(ValueError, match="warmup_steps"):
        lambda_at(1, schedule="warmup_decay", lam0=0.5, decay_steps=10)
    with pytest.raises(ValueError, match="no warm-up"):
        lambda_at(1, schedule="linear_decay", lam0=0.5, decay_steps=10, warmup_steps=3)
    with pytest.raises(ValueError, match="decay_steps"):
        lambda_at(1, schedule="warmup_decay", lam0=0.5, warmup_steps=3)


def test_teacher_confidence_hand_computed():
    """|V| = 4: H = 0 → 1, H = ½ log 4 → 0.5, H = log 4 → 0 floored to g_min = 0.1; a rounding-negative H counts as 0;
    the masked position holds 1 although its entropy is NaN."""
    log_v = math.log(4)
    entropy = torch.tensor([[0.0, 0.5 * log_v, log_v], [-1e-4, 0.25 * log_v, float("nan")]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    got = teacher_confidence(entropy, mask, vocab_size=4, g_min=0.1)
    assert_close(got, torch.tensor([[1.0, 0.5, 0.1], [1.0, 0.75, 1.0]]))
    assert got.dtype == torch.float32


def test_teacher_confidence_errors():
    entropy = torch.tensor([[0.1, float("inf")]])
    with pytest.raises(ValueError, match=r"non-finite teacher entropy .* rows \[0\]"):
        teacher_confidence(entropy, torch.ones(1, 2), vocab_size=4, g_min=0.1)
    with pytest.raises(ValueError, match="vocab_size"):
        teacher_confidence(entropy, torch.zeros(1, 2), vocab_size=1, g_min=0.1)
    with pytest.raises(ValueError, match="g_min"):
        teacher_confidence(entropy, torch.zeros(1, 2), vocab_size=4, g_min=1.5)


def test_additive_terms_hand_computed():
    """g = Δ; AntiSD's g = −½(softplus(Δ) − log 2): Δ = log 3 → −½ log 2, Δ = −log 3 → ½ log 1.5, and exactly 0 at Δ = 0."""
    delta = torch.tensor([[0.0, math.log(3), -math.log(3)]])
    assert torch.equal(additive_term(delta, additive="delta"), delta)
    got = additive_term(delta, additive="antisd")
    assert_close(got, torch.tensor([[0.0, -0.5 * math.log(2), 0.5 * math.log(1.5)]]))
    assert torch.equal(additive_term(torch.zeros(2, 3), additive="antisd").abs(), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="additive must be"):
        additive_term(delta, additive="pmi")


# ---------------------------------------------------------------- the composed family, hand-computed

# Row 0: A = +1, correct; row 1: A = −1, wrong. CAST boxes, λ = 0.5, d = +1, a confidence factor, token 2 of row 0 unselected.
F_DELTA = torch.tensor([[0.5, -0.5, 0.0], [0.2, -1.0, 0.3]])
F_ADV = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
F_MASK = torch.ones(2, 3, dtype=torch.bool)
F_CORRECT = torch.tensor([True, False])
F_TOKENS = torch.tensor([[True, True, False], [True, True, True]])
F_CONF = torch.tensor([[1.0, 0.5, 1.0], [0.2, 1.0, 1.0]])


def _family(**overrides):
    low, high = clip_box(F_CORRECT, correct_box=(0.8, 1.05), incorrect_box=(0.95, 1.2))
    kw = dict(rows=torch.tensor([True, True]), tokens=F_TOKENS, direction=1, low=low, high=high, lam=0.5,
              confidence=F_CONF)
    kw.update(overrides)
    return family_advantages(kw.pop("delta", F_DELTA), kw.pop("adv", F_ADV), kw.pop("mask", F_MASK), **kw)


def test_family_multiplicative_hand_computed():
    """w = clip(exp(sign(A)·Δ)) in the row's box: row 0 (correct, [0.8, 1.05]): e^0.5 → 1.05, e^−0.5 → 0.8;
    row 1 (wrong, [0.95, 1.2]): e^−0.2 → 0.95, e^1 → 1.2, e^−0.3 → 0.95. G·w = [1.05, 0.4, ·], [0.19, 1.2, 0.95];
    m = 1 + 0.5·(G·w − 1); the unselected token keeps A."""
    expected = torch.tensor([[1.025, 0.7, 1.0], [-0.595, -1.1, -0.975]])
    assert_close(_family(), expected)


def test_family_additive_hand_computed():
    """Â = A·m + S·λ_add·g(Δ): with g = Δ, λ_add = 0.1 the selected tokens move by 0.1·Δ (token 2 of row 0 does not);
    with AntiSD's g, λ_add = 1, by −½(softplus(Δ) − log 2)."""
    expected = torch.tensor([[1.025 + 0.05, 0.7 - 0.05, 1.0], [-0.595 + 0.02, -1.1 - 0.1, -0.975 + 0.03]])
    assert_close(_family(lam_add=0.1, additive="delta"), expected)

    def g(x):
        return -0.5 * (math.log1p(e(x)) - math.log(2))

    expected = torch.tensor([[1.025 + g(0.5), 0.7 + g(-0.5), 1.0], [-0.595 + g(0.2), -1.1 + g(-1.0), -0.975 + g(0.3)]])
    assert_close(_family(lam_add=1.0, additive="antisd"), expected)


def test_family_reverse_direction_and_masked_hand_computed():
    """d = −1 on the same boxes: row 0 w = [e^−0.5 → 0.8, e^0.5 → 1.05]; row 1 w = [e^0.2 → 1.2, e^−1 → 0.95];
    no confidence; the masked position is 0 although Δ and A there are NaN."""
    delta, adv = F_DELTA.clone(), F_ADV.clone()
    delta[1, 2], adv[1, 2] = float("nan"), float("nan")
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    got = _family(delta=delta, adv=adv, mask=mask, direction=-1, confidence=None, tokens=None)
    expected = torch.tensor([[0.9, 1.025, 1.0], [-1.1, -0.975, 0.0]])
    assert_close(got, expected)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(lam_add=0.1), "lam_add"),
        (dict(lam_add=math.nan, additive="delta"), "lam_add"),
        (dict(additive="pmi", lam_add=0.1), "additive must be"),
        (dict(rows=torch.tensor([True])), "rows must be"),
        (dict(tokens=F_TOKENS[:, :2]), "tokens must be"),
        (dict(low=torch.tensor([0.8, -0.1])), r"clip box .* rows \[1\]"),
        (dict(high=torch.tensor([0.9, 1.2])), r"clip box .* rows \[0\]"),
        (dict(confidence=torch.tensor([[1.0, 1.5, 1.0], [0.2, 1.0, 1.0]])), r"confidence .* rows \[0\]"),
        (dict(confidence=torch.tensor([[1.0, 1.0, 1.0], [0.2, math.nan, 1.0]])), r"confidence .* rows \[1\]"),
        (dict(lam=1.5), "lambda"),
        (dict(direction=0), "direction"),
    ],
)
def test_family_argument_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        _family(**overrides)


def test_family_nonfinite_delta_on_response_raises_even_at_lambda_zero():
    """A NaN gap on a response token is an error naming its row whatever λ is (the check does not depend on the step)."""
    delta = F_DELTA.clone()
    delta[1, 0] = float("nan")
    for lam in (0.0, 0.5):
        with pytest.raises(ValueError, match=r"rows \[1\]"):
            _family(delta=delta, lam=lam)


# ---------------------------------------------------------------- properties (hypothesis)

finite = st.floats(-20, 20, allow_nan=False, width=32)
special = st.sampled_from([float("nan"), float("inf"), -float("inf")])


@st.composite
def family_batches(draw):
    """A random [B, T] batch with every family setting: rows, tokens, per-row boxes, G ≥ g_min, λ, an additive term."""
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    grid = lambda elements: torch.tensor(  # noqa: E731
        draw(st.lists(st.lists(elements, min_size=cols, max_size=cols), min_size=rows, max_size=rows)))
    row_adv = draw(st.lists(st.one_of(st.just(0.0), st.floats(-3, 3, width=32)), min_size=rows, max_size=rows))
    flags = lambda: torch.tensor(draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))  # noqa: E731
    g_min = draw(st.floats(0.0625, 1, width=32))  # bounds exact in float32
    settings_ = dict(
        rows=flags(),
        tokens=draw(st.one_of(st.none(), st.just(grid(st.booleans())))),
        direction=draw(st.sampled_from([1, -1])),
        low=torch.tensor(draw(st.lists(st.floats(0, 1, width=32), min_size=rows, max_size=rows))),
        high=torch.tensor(draw(st.lists(st.floats(1, 3, width=32), min_size=rows, max_size=rows))),
        lam=draw(st.floats(0, 1)),
        confidence=draw(st.one_of(st.none(), st.just(grid(st.floats(g_min, 1, width=32))))),
    )
    additive = draw(st.sampled_from([None, "delta", "antisd"]))
    lam_add = 0.0 if additive is None else draw(st.floats(-2, 2))
    delta, mask = grid(finite), grid(st.booleans())
    adv = torch.tensor(row_adv)[:, None].expand(rows, cols).clone()
    return delta, adv, mask, g_min, settings_, dict(additive=additive, lam_add=lam_add)


@settings(max_examples=300, deadline=None)
@given(family_batches())
def test_property_multiplicative_part_keeps_the_sign(batch):
    """With λ_add = 0, λ ∈ [0, 1], 0 ≤ low_i ≤ 1 and G ∈ [g_min, 1]: m_t ≥ 1 − λ·(1 − g_min·low_i) ≥ 0, so A·Â_t ≥ 0
    and |Â_t| ≥ (1 − λ·(1 − g_min·low_i))·|A| on response tokens; the bound is > 0, i.e. sign(Â_t) = sign(A) for
    A ≠ 0, exactly when λ·(1 − g_min·low_i) < 1 (always unless λ = 1 and g_min·low_i = 0). (G = None counts as
    g_min = 1.)"""
    delta, adv, mask, g_min, s, _ = batch
    adv_hat = family_advantages(delta, adv, mask, **s)
    m = mask.bool()
    assert (adv[m] * adv_hat[m] >= 0).all()
    floor = 1.0 if s["confidence"] is None else g_min
    factor = (1 - s["lam"] * (1 - floor * s["low"]))[:, None].expand_as(adv)  # [B, T]
    bound = factor[m] * adv[m].abs()
    assert (adv_hat[m].abs() >= bound - 1e-5 * (1 + adv[m].abs())).all()
    strict = m & (factor > 1e-3) & (adv.abs() > 1e-20)  # a subnormal A times a small m may round to 0
    assert (torch.sign(adv_hat[strict]) == torch.sign(adv[strict])).all()


@settings(max_examples=300, deadline=None)
@given(family_batches(), st.data())
def test_property_masked_positions_exact(batch, data):
    """Positions off the mask are exactly 0 and change nothing elsewhere, whatever NaN/inf Δ, A and G hold there."""
    delta, adv, mask, _, s, add = batch
    m = mask.bool()
    assume((~m).any())
    noisy = dict(s)
    noisy_delta, noisy_adv = delta.clone(), adv.clone()
    noisy_delta[~m], noisy_adv[~m] = data.draw(special), data.draw(special)
    if s["confidence"] is not None:
        noisy["confidence"] = s["confidence"].clone()
        noisy["confidence"][~m] = data.draw(special)
    clean = family_advantages(delta, adv, mask, **s, **add)
    got = family_advantages(noisy_delta, noisy_adv, mask, **noisy, **add)
    assert torch.equal(_bits(got), _bits(clean))
    assert torch.equal(_bits(got[~m]), torch.zeros(int((~m).sum()), dtype=torch.int32))


@settings(max_examples=300, deadline=None)
@given(family_batches())
def test_property_unselected_or_zero_lambda_is_grpo_bit_for_bit(batch):
    """S_t = 0 (no row, or no token selected), or λ = 0 with λ_add = 0, give Â = A bit for bit (0 off the mask)."""
    delta, adv, mask, _, s, add = batch
    grpo = _bits(torch.where(mask.bool(), adv, 0.0))
    no_rows = {**s, "rows": torch.zeros_like(s["rows"])}
    no_tokens = {**s, "tokens": torch.zeros_like(mask, dtype=torch.bool)}
    assert torch.equal(_bits(family_advantages(delta, adv, mask, **no_rows, **add)), grpo)
    assert torch.equal(_bits(family_advantages(delta, adv, mask, **no_tokens, **add)), grpo)
    assert torch.equal(_bits(family_advantages(delta, adv, mask, **{**s, "lam": 0.0})), grpo)
    assert torch.equal(_bits(family_advantages(delta, adv, mask, **{**s, "lam": 0.0}, additive="antisd")), grpo)


# ---------------------------------------------------------------- the existing members as presets

PRESETS = {  # member: (direction, gate, eps_w), as docs/methods.md's table
    "rlsd": (1, "all", 0.2),
    "rlrt": (-1, "correct", 1.0),
    "rlrt_all": (-1, "all", 1.0),
    "rlrt_teacher_up": (1, "correct", 1.0),
}


def _random_batch(seed, rows=6, cols=9):
    """Two groups of three rollouts with per-row A (zero allowed), right-padded masks, NaN off the mask in Δ."""
    gen = torch.Generator().manual_seed(seed)
    delta = 3 * torch.randn(rows, cols, generator=gen)
    lengths = torch.randint(1, cols + 1, (rows,), generator=gen)
    mask = (torch.arange(cols)[None, :] < lengths[:, None]).long()
    delta[mask == 0] = float("nan")
    row_adv = torch.randn(rows, generator=gen)
    row_adv[2] = 0.0
    adv = torch.where(mask.bool(), row_adv[:, None], 0.0)  # verl's GRPO output: 0 off the mask
    correct = torch.rand(rows, generator=gen) < 0.5
    has_teacher = torch.rand(rows, generator=gen) < 0.8
    return delta, adv, mask, correct, has_teacher


@pytest.mark.parametrize("member", PRESETS)
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("seed", range(5))
def test_presets_are_the_pre_family_formula_bit_for_bit(member, lam, seed):
    """reweighted_advantages (now the family with S_row = gate, every token, box (1 ± ε_w), no G) and the family called
    directly give, bit for bit, the formula reweighted_advantages computed before the family existed, written out
    here out of place: A + A·(λ·(clip(exp(d·sign(A)·Δ), 1 − ε_w, 1 + ε_w) − 1)) on gated rows, else A."""
    direction, gate, eps_w = PRESETS[member]
    delta, adv, mask, correct, has_teacher = _random_batch(seed)
    response = mask.bool()
    clean_delta = torch.where(response, delta, 0.0)
    weight = torch.exp(direction * torch.sign(adv) * clean_delta).clamp(1.0 - eps_w, 1.0 + eps_w)
    gated = has_teacher & (correct if gate == "correct" else True)
    expected = torch.where(gated[:, None], adv + adv * (lam * (weight - 1.0)), adv)

    via_member = reweighted_advantages(delta, adv, mask, correct=correct, has_teacher=has_teacher, direction=direction,
                                       gate=gate, lam=lam, eps_w=eps_w)
    low, high = clip_box(correct, eps_w=eps_w)
    rows = selected_rows(gate, correct=correct, has_teacher=has_teacher)
    via_family = family_advantages(delta, adv, mask, rows=rows, tokens=None, direction=direction, low=low, high=high,
                                   lam=lam, confidence=None)
    # (No −0.0 in A here: at λ = 0 the old A + A·0 turned −0.0 into +0.0, where the family returns A itself.)
    assert torch.equal(_bits(via_member), _bits(expected)) and torch.equal(_bits(via_family), _bits(expected))


@pytest.mark.parametrize("beta", [0.0, 0.1, 2.0])
@pytest.mark.parametrize("seed", range(5))
def test_grpo_opsd_preset_bit_for_bit(beta, seed):
    """grpo_opsd = the family with every row and token, λ = 0, λ_add = β, g = Δ: bit for bit the pre-family
    where(mask, A + β·Δ, 0)."""
    delta, adv, mask, _, _ = _random_batch(seed)
    response = mask.bool()
    expected = torch.where(response, adv + beta * torch.where(response, delta, 0.0), 0.0)
    ones = torch.ones(adv.shape[0])
    via_family = family_advantages(delta, adv, mask, rows=ones.bool(), tokens=None, direction=1, low=ones, high=ones,
                                   lam=0.0, confidence=None, lam_add=beta, additive="delta")
    assert torch.equal(_bits(opsd_advantages(delta, mask, adv=adv, beta=beta)), _bits(expected))
    assert torch.equal(_bits(via_family), _bits(expected))


def test_reweighted_advantages_takes_the_new_gates():
    """gate "negative" reweights only rows whose summed A is < 0; "mixed" needs the rows' uids."""
    delta, adv, mask, correct, has_teacher = _random_batch(0)
    kw = dict(correct=correct, has_teacher=has_teacher, direction=1, lam=0.5, eps_w=0.2)
    negative = reweighted_advantages(delta, adv, mask, gate="negative", **kw)
    every = reweighted_advantages(delta, adv, mask, gate="all", **kw)
    grpo = torch.where(mask.bool(), adv, 0.0)
    for i in range(adv.shape[0]):
        assert torch.equal(negative[i], every[i] if adv[i].sum() < 0 else grpo[i])
    with pytest.raises(ValueError, match="needs group"):
        reweighted_advantages(delta, adv, mask, gate="mixed", **kw)
    uids = ["p", "p", "p", "q", "q", "q"]
    assert reweighted_advantages(delta, adv, mask, gate="mixed", group=uids, **kw).shape == adv.shape


# ---------------------------------------------------------------- the official RLSD reweighting, re-derived


def official_rlsd_reference(teacher, student, adv, mask, *, lam, clip_range, negative_only, thought=None):
    """The official RLSD token reweighting written out per token in plain Python floats, from its formula as read in
    iie-ycx/RLSD, verl/workers/actor/dp_opsd_actor.py, DataParallelOPSDActor._build_stgca_advantages (and its caller
    update_policy_grpo_opsd): w = exp(sign(A)·(τ − s)); Â = A·((1 − λ) + λ·clip(w, 1 − c, 1 + c)) on response tokens;
    with negative_only, rows whose summed A is ≥ 0 keep A; with a thought mask, tokens outside it keep A; 0 off the mask.
    """
    out = []
    for i in range(len(adv)):
        row_sum = sum(adv[i][t] for t in range(len(adv[i])) if mask[i][t])
        out_row = []
        for t in range(len(adv[i])):
            a = adv[i][t]
            if not mask[i][t]:
                out_row.append(0.0)
                continue
            sign = (a > 0) - (a < 0)
            w = min(max(math.exp(sign * (teacher[i][t] - student[i][t])), 1.0 - clip_range), 1.0 + clip_range)
            reweight = (1.0 - lam) + lam * w
            if negative_only and not row_sum < 0:
                reweight = 1.0
            if thought is not None and not thought[i][t]:
                reweight = 1.0
            out_row.append(a * reweight)
        out.append(out_row)
    return torch.tensor(out, dtype=torch.float64)


def official_thought_mask(ids, mask, open_ids, close_ids):
    """The official thought span (opsd_trainer.py, _build_thought_span_mask) re-derived: scan each row, mark tokens
    between an open and a close tag (every such span), then AND with the response mask."""
    out = []
    for row, row_mask in zip(ids, mask):
        marks, inside, t = [False] * len(row), False, 0
        while t < len(row):
            tag = close_ids if inside else open_ids
            if row[t: t + len(tag)] == tag:
                inside, t = not inside, t + len(tag)
                continue
            marks[t] = inside
            t += 1
        out.append([m and bool(v) for m, v in zip(marks, row_mask)])
    return out


THOUGHT_OPEN, THOUGHT_CLOSE = [11, 12], [13, 12, 14]  # "<thought>", "</thought>" as multi-token tags


def _official_case(seed, *, with_thought):
    """Random log-probs, per-row A of both signs (and 0), right-padded masks; optionally one <thought>…</thought> span
    per row (sometimes unclosed or absent), the case where the official all-spans mask and our first span agree."""
    rng = random.Random(seed)
    rows, cols = rng.randint(1, 6), rng.randint(1, 16)
    teacher = [[-5 * rng.random() for _ in range(cols)] for _ in range(rows)]
    student = [[-5 * rng.random() for _ in range(cols)] for _ in range(rows)]
    lengths = [rng.randint(1, cols) for _ in range(rows)]
    mask = [[int(t < n) for t in range(cols)] for n in lengths]
    row_adv = [rng.choice([0.0, rng.uniform(-2, 2)]) for _ in range(rows)]
    adv = [[row_adv[i] * mask[i][t] for t in range(cols)] for i in range(rows)]
    ids = [[rng.randint(1, 9) for _ in range(cols)] for _ in range(rows)]
    if with_thought:
        for row in ids:
            start = rng.randint(0, cols)
            row[start: start + 2] = THOUGHT_OPEN[: cols - start]
            end = rng.randint(start + 2, cols + 3)
            row[end: end + 3] = THOUGHT_CLOSE[: max(cols - end, 0)]
    ids = [[token if t < n else 0 for t, token in enumerate(row)] for row, n in zip(ids, lengths)]  # pad id 0
    return teacher, student, adv, mask, ids


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("negative_only", [False, True])
@pytest.mark.parametrize("with_thought", [False, True])
def test_family_matches_the_official_rlsd_reweighting(lam, negative_only, with_thought):
    """The family (d = +1, box 1 ± c, S_row = "negative" when negative_only else "all", S_tok = the thinking span when
    thought_only) agrees to 1e-6 with the re-derived official formula on 40 random batches. The official semantics
    were read in iie-ycx/RLSD: verl/workers/actor/dp_opsd_actor.py, DataParallelOPSDActor._build_stgca_advantages
    (negative_only: advantages.sum(-1) < 0; thought_mask: keep A outside), and verl/trainer/opsd_trainer.py,
    _build_thought_span_mask. Guards the claim that rlsd is RLSD's published code, switches included."""
    clip_range = 0.2
    for seed in range(40):
        teacher, student, adv, mask, ids = _official_case(seed, with_thought=with_thought)
        t_teacher, t_student, t_adv, t_mask = (torch.tensor(x) for x in (teacher, student, adv, mask))
        # The reference reads the float32 inputs the family gets, so only the arithmetic differs (float32 vs double).
        teacher, student, adv = t_teacher.tolist(), t_student.tolist(), t_adv.tolist()
        delta = t_teacher - t_student
        thought = official_thought_mask(ids, mask, THOUGHT_OPEN, THOUGHT_CLOSE) if with_thought else None
        expected = official_rlsd_reference(teacher, student, adv, mask, lam=lam, clip_range=clip_range,
                                           negative_only=negative_only, thought=thought)
        has_teacher = torch.ones(len(adv), dtype=torch.bool)
        rows = selected_rows("negative" if negative_only else "all", correct=has_teacher, has_teacher=has_teacher,
                             adv_sign=torch.where(t_mask.bool(), t_adv, 0.0).sum(dim=1).sign())
        tokens = span_mask(torch.tensor(ids), t_mask, span="thinking", open_ids=THOUGHT_OPEN,
                           close_ids=THOUGHT_CLOSE) if with_thought else None
        low, high = clip_box(has_teacher, eps_w=clip_range)
        got = family_advantages(delta, t_adv, t_mask, rows=rows, tokens=tokens, direction=1, low=low, high=high,
                                lam=lam, confidence=None)
        assert_close(got.double(), expected, rtol=1e-6, atol=1e-6, msg=f"seed {seed}")


def test_per_row_clip_matches_the_shared_clip_bit_for_bit():
    """The family clips with Python floats when every row has the same box and with a [B, 1] tensor otherwise; on rows
    with the same box both give the same bits (row 1's different box only changes row 1)."""
    delta, adv, mask, correct, _ = _random_batch(3)
    rows = torch.ones(adv.shape[0], dtype=torch.bool)
    shared = torch.full((adv.shape[0],), 0.8), torch.full((adv.shape[0],), 1.2)
    per_row = shared[0].clone(), shared[1].clone()
    per_row[0][1], per_row[1][1] = 0.5, 1.5
    kw = dict(rows=rows, tokens=None, direction=-1, lam=0.7, confidence=None)
    a = family_advantages(delta, adv, mask, low=shared[0], high=shared[1], **kw)
    b = family_advantages(delta, adv, mask, low=per_row[0], high=per_row[1], **kw)
    keep = torch.arange(adv.shape[0]) != 1
    assert torch.equal(_bits(a[keep]), _bits(b[keep]))
