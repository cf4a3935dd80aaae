"""The advantage math of RLSD, RLRT, OPSD and GRPO+EB, and the SDPO/SRPO top-K losses: pure torch, no verl import
(docs/methods.md).

Symbols, per rollout i of a prompt's group and response position t:
    A      GRPO outcome advantage of the rollout (verl's output, broadcast over the response)
    Δ_t    sg(τ_t − s_t): teacher minus student log-prob of the sampled token ("privileged gain")
    d      direction: +1 follows the teacher (RLSD), −1 reverses it (RLRT)
    λ_k    mixing weight at verl's 1-based global step k;  ε_w  clip of the token weight
    H_t    the policy's token entropy (GRPO+EB);  α, κ  its bonus scale and cap

The token-weight family (``family_advantages``; RLSD, RLRT, their ablations and grpo_opsd are presets of it):
    w_t = clip( exp(d · sign(A) · Δ_t), low_i, high_i )   box per row: (1 − ε_w, 1 + ε_w), or CAST's by correctness
    m_t = 1 + S_t · λ_k · (G_t · w_t − 1)                 G_t ∈ [g_min, 1] the teacher's confidence, or 1
    Â_t = A · m_t + S_t · λ_add · g(Δ_t)                  g = Δ (grpo_opsd) or AntiSD's −½(softplus(Δ) − log 2)
    S_t = S_row,i · S_tok,t ∈ {0, 1}                      a gate on rows (all | correct | negative | mixed), a span
                                                          on tokens (all | thinking | answer)
GRPO+EB (Cheng et al.):
    Â_t = A + min(α · sg(H_t), |A| / κ)

Conventions shared by every function here: tensors are ``[B, T]`` (``correct`` and ``has_teacher`` are
bool ``[B]``), tensor arguments come first and scalars are keyword-only; ``mask`` may be bool, int or
float (nonzero = response token); computation and outputs are float32; masked positions are selected
with ``torch.where`` (never multiplied), so they hold exactly w = 1 and Â = 0 whatever the inputs hold
there, NaN and inf included. A non-finite Δ or H at a response position raises ``ValueError`` naming rows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.fx.experimental._config
import torch.nn.functional as F

DIRECTIONS = (1, -1)
#: Row gates S_row: every row with a teacher, the correct ones, those with A < 0 (the official RLSD code's
#: ``negative_only``), or those whose group holds both a correct and an incorrect rollout (CAST's mixed groups).
GATES = ("all", "correct", "negative", "mixed")
LAMBDA_SCHEDULES = ("constant", "linear_decay", "warmup_decay")
#: Token spans S_tok: every response token, the thinking span, or what follows it.
SPANS = ("all", "thinking", "answer")
#: Additive terms g(Δ): grpo_opsd's Δ, AntiSD's bounded −½(softplus(Δ) − log 2).
ADDITIVE_TERMS = ("delta", "antisd")


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
    adv = torch.where(response, adv.float(), 0.0)  # [B, T]
    return _clipped_weights(_finite_delta(delta, response), adv, direction, 1.0 - eps_w, 1.0 + eps_w)  # [B, T]


def _clipped_weights(
    delta: torch.Tensor, adv: torch.Tensor, direction: int, low: float | torch.Tensor, high: float | torch.Tensor
) -> torch.Tensor:
    """w_t = clip(exp(d · sign(A) · Δ_t), low, high) on a checked Δ (0 off the response); where A = 0 the exponent is
    exactly 0 and w = 1 (low ≤ 1 ≤ high), off the response too when A is 0 there. ``low``/``high``: floats or [B, 1].

    Computed in place in one [B, T] buffer: sign(A), ±1 or 0, makes every product exact, so the value is the same as
    exp((d · sign(A)) · Δ_t) bit for bit.
    """
    sign = torch.sign(adv)  # [B, T] or [B, 1]
    if direction == -1:
        sign.neg_()
    exponent = sign.mul_(delta) if sign.shape == delta.shape else delta * sign  # [B, T]
    return exponent.exp_().clamp_(low, high)  # [B, T]


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
    group: torch.Tensor | Sequence[str] | None = None,
) -> torch.Tensor:
    """Â_t = A · ((1 − λ) + λ · w_t) on rows with a teacher that pass the gate, Â_t = A elsewhere, 0 off mask.

    The family's preset for rlrt and rlsd: S_row = ``selected_rows(gate, …)``, every token, the symmetric box
    (1 − ε_w, 1 + ε_w), no confidence factor, no additive term. ``gate="negative"`` reads the sign of the row's
    summed A (as the official RLSD code's ``negative_only``); ``gate="mixed"`` needs ``group`` (the rows' uids).
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    adv_sign = None
    if gate == "negative":
        response = _response_positions(mask, like=delta)  # [B, T]
        adv_sign = torch.where(response, adv.float(), 0.0).sum(dim=1).sign()  # [B]
    _check_flags("has_teacher", has_teacher, delta.shape[0])
    rows = selected_rows(gate, correct=correct, has_teacher=has_teacher, adv_sign=adv_sign, group=group)  # [B]
    low, high = clip_box(correct, eps_w=eps_w)  # [B] each
    return family_advantages(
        delta, adv, mask, rows=rows, tokens=None, direction=direction, low=low, high=high, lam=lam, confidence=None
    )  # [B, T]


def opsd_advantages(
    delta: torch.Tensor, mask: torch.Tensor, *, adv: torch.Tensor | None = None, beta: float | None = None
) -> torch.Tensor:
    """Sampled-token OPSD: Â_t = Δ_t; with ``adv`` and ``beta`` (grpo_opsd): Â_t = A + β · Δ_t; 0 off mask.

    Δ_t as an advantage is the score-function gradient that lowers KL(π_θ ‖ π_T) on the student's own tokens.
    grpo_opsd is the family's preset with every row and token selected, λ = 0, λ_add = β and g = Δ; opsd is that
    preset at A = 0, β = 1, which is Δ itself.
    """
    if (adv is None) != (beta is None):
        raise ValueError("opsd_advantages takes adv and beta together (grpo_opsd) or neither (opsd)")
    if adv is None:
        return _finite_delta(delta, _response_positions(mask, like=delta))  # [B, T]
    if not math.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta}")
    rows = torch.ones(delta.shape[0], dtype=torch.bool)  # [B]
    box = torch.ones(delta.shape[0])  # [B]: with λ = 0 the weight is never formed; (1, 1) is a valid box
    return family_advantages(
        delta, adv, mask, rows=rows, tokens=None, direction=1, low=box, high=box, lam=0.0, confidence=None,
        lam_add=beta, additive="delta",
    )  # [B, T]


# ---------------------------------------------------------------- the token-weight family and its pieces


def family_advantages(
    delta: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    *,
    rows: torch.Tensor,
    tokens: torch.Tensor | None,
    direction: int,
    low: torch.Tensor,
    high: torch.Tensor,
    lam: float,
    confidence: torch.Tensor | None,
    lam_add: float = 0.0,
    additive: str | None = None,
    fused: bool = False,
) -> torch.Tensor:
    """Â_t = A · m_t + S_t · λ_add · g(Δ_t),  m_t = 1 + S_t · λ · (G_t · w_t − 1),
    w_t = clip(exp(d · sign(A) · Δ_t), low_i, high_i);  0 off the mask.

    ``adv``: A [B, T], or [B, 1] for one A per row (GRPO's; broadcast over the row, and cheaper: no [B, T] A is read).
    S_t = ``rows`` [B] (S_row, e.g. ``selected_rows``) and ``tokens`` [B, T] (S_tok, e.g. ``span_mask``; None = every
    token); ``low``/``high`` [B] the row's box (``clip_box``); ``confidence`` [B, T] G_t ∈ [0, 1]
    (``teacher_confidence``; None = 1); ``additive`` in ADDITIVE_TERMS or None (no additive term, ``lam_add`` must be 0).

    S_t = 0, or λ = 0 with λ_add = 0, gives Â_t = A bit for bit: the reweighted value is only selected with
    ``torch.where``, and at λ = 0 it is never formed. Written as A + A · λ · (G·w − 1), the same value as
    A · ((1 − λ) + λ · G · w), so that w = 1 (τ = s) also returns A.
    Sign: for λ ∈ [0, 1], low ≥ 0 and G ≥ 0, m_t = (1 − λ) + λ · G_t · w_t ≥ 1 − λ · (1 − G_min · low_i) ≥ 0
    (G_min the smallest G_t), so with λ_add = 0, A · Â_t ≥ 0 and |Â_t| ≥ (1 − λ · (1 − G_min · low_i)) · |A|:
    the sign of A is kept when λ · (1 − G_min · low_i) < 1, i.e. unless λ = 1 and G_min · low_i = 0.
    An additive term can flip it.

    ``fused=True`` computes the same in one ``torch.compile``'d CPU kernel (``_family_kernel``, ``_additive_kernel``
    at λ = 0): one pass over [B, T] instead of about ten, after the same checks, raising the same errors. Its values
    match the eager path to float rounding (the skipped selections above are arithmetic there, A + 0 · x, so a −0.0
    may come back as +0.0); masked positions are exactly 0 in both. Each variant (λ = 0 or not, tokens and confidence
    given or not, g, the dtypes) compiles once per process on first use, in seconds; a new [B, T] never recompiles.
    An empty batch takes the eager path.
    """
    _check_direction(direction)
    _check_lambda(lam)
    if additive is not None and additive not in ADDITIVE_TERMS:
        raise ValueError(f"additive must be one of {ADDITIVE_TERMS} or None, got {additive!r}")
    if not math.isfinite(lam_add) or (additive is None and lam_add != 0.0):
        raise ValueError(
            f"lam_add must be finite, and 0 without an additive term; got {lam_add} with additive={additive!r}"
        )
    _check_mask(mask, like=delta)
    batch = delta.shape[0]
    _check_flags("rows", rows, batch)
    box = _checked_box(low, high, batch)  # floats, or [B, 1] when the rows' boxes differ
    if tokens is not None and tokens.shape != delta.shape:
        raise ValueError(
            f"tokens must be a bool [B, T] tensor like delta {tuple(delta.shape)}, got {tuple(tokens.shape)}"
        )
    if confidence is not None and confidence.shape != delta.shape:
        raise ValueError(f"confidence must be [B, T] like delta {tuple(delta.shape)}, got {tuple(confidence.shape)}")
    if adv.shape not in (delta.shape, (batch, 1)):
        raise ValueError(f"adv must be [B, T] like delta {tuple(delta.shape)} or [B, 1] (one A per row), "
                         f"got {tuple(adv.shape)}")
    if fused and delta.numel():
        return _fused_family_advantages(
            delta, adv, mask, rows, tokens, low, high, confidence, direction=direction, lam=lam, lam_add=lam_add,
            additive=additive,
        )  # [B, T]
    low, high = box
    response = mask != 0  # [B, T]
    delta = _finite_delta(delta, response)  # [B, T], 0 off the response
    adv = adv.float()  # [B, T]; off the response it may hold anything: the last torch.where sets 0 there
    selected = rows.bool()[:, None]  # [B, 1] S_row; S_t needs no AND with the mask, for the same reason
    if tokens is not None:
        selected = tokens.bool() & selected  # [B, T] S_t
    every = tokens is None and bool(rows.all())  # S_t = 1 everywhere: selecting would copy the buffer onto itself
    if confidence is not None:
        _check_confidence(confidence, response)
    # Every step below writes into a [B, T] buffer this call allocated (A, the caller's, is only read): on CPU a fresh
    # [B, T] tensor costs more in page faults than the arithmetic on it (scripts/bench_signals.py).
    adv_hat = adv  # [B, T]
    if lam != 0.0:
        weight = _clipped_weights(delta, adv, direction, low, high)  # [B, T]
        if confidence is not None:
            weight.mul_(confidence.float())  # G_t · w_t
        # A + A · (λ · (G·w − 1)): the operations as written, in the weight's buffer.
        reweighted = weight.sub_(1.0).mul_(lam).mul_(adv).add_(adv)  # [B, T]
        adv_hat = reweighted if every else torch.where(selected, reweighted, adv, out=reweighted)  # [B, T]
    if additive is not None and lam_add != 0.0:
        term = additive_term(delta, additive=additive).mul(lam_add).add_(adv_hat)  # [B, T]: λ_add · g(Δ_t) + Â_t
        adv_hat = term if every else torch.where(selected, term, adv_hat, out=term)  # [B, T]
    zero = torch.zeros((), dtype=adv_hat.dtype)  # where(..., out=) takes no Python scalar
    return torch.where(response, adv_hat, zero, out=None if adv_hat is adv else adv_hat)  # [B, T]


def _fused_family_advantages(
    delta: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    rows: torch.Tensor,
    tokens: torch.Tensor | None,
    low: torch.Tensor,
    high: torch.Tensor,
    confidence: torch.Tensor | None,
    *,
    direction: int,
    lam: float,
    lam_add: float,
    additive: str | None,
) -> torch.Tensor:
    """``family_advantages(..., fused=True)`` on checked arguments: one compiled kernel, then the eager checks, run
    only to raise their errors, when the kernel's reductions show a non-finite Δ or a G outside [0, 1]."""
    # d, λ, λ_add and the box go in as tensors, so that new values are new inputs, not a recompilation. No additive
    # term is g = Δ with λ_add = 0 (checked above): one variant fewer.
    scalars = torch.tensor([direction, lam, lam_add], dtype=torch.float32)  # [3]
    if adv.shape[1] == 1:
        # [B]: one A per row; the kernel adds the size-1 dim (its input sizes are symbols, never 1). A fresh copy: a
        # size-1 view may keep any stride, and dynamo guards on strides.
        adv = adv[:, 0].clone(memory_format=torch.contiguous_format)
    selections = (rows.bool()[:, None], None if tokens is None else tokens.bool())  # [B, 1] S_row, [B, T] S_tok
    outside = None  # [B] from _family_kernel when it reads G
    if lam == 0.0:  # no weight to form (grpo_opsd, a schedule at 0): the kernel without exp, and without G
        adv_hat, delta_max = _run_compiled(
            _additive_kernel, delta, adv, mask, *selections, scalars, additive=additive or "delta"
        )  # [B, T], [B]
    else:
        adv_hat, delta_max, outside = _run_compiled(
            _family_kernel, delta, adv, mask, *selections, low.float()[:, None], high.float()[:, None], confidence,
            scalars, additive=additive or "delta",
        )  # [B, T], [B], [B] or None
    if not torch.isfinite(delta_max).all():
        _finite_delta(delta, mask != 0)  # raises naming the rows
    if confidence is not None and (outside is None or outside.any()):
        _check_confidence(confidence, mask != 0)  # raises naming the rows (the whole check when the kernel had no G)
    return adv_hat  # [B, T]


def _family_kernel(
    delta: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    rows: torch.Tensor,
    tokens: torch.Tensor | None,
    low: torch.Tensor,
    high: torch.Tensor,
    confidence: torch.Tensor | None,
    scalars: torch.Tensor,
    *,
    additive: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``family_advantages`` at λ ≠ 0, written for ``torch.compile``: the eager path's arithmetic in its order, every
    selection a ``torch.where`` (none skipped), so that inductor emits one loop over [B, T].

    ``adv`` A [B, T], or [B] for one A per row; ``rows`` [B, 1] S_row; ``tokens`` [B, T] bool S_tok or None;
    ``low``/``high`` [B, 1]; ``scalars`` [3] = (d, λ, λ_add). Returns Â [B, T]; per row the largest |Δ| on the response [B] (NaN or inf iff a Δ there is); per row
    whether a G on the response is outside [0, 1] or NaN [B] (None without ``confidence``).
    """
    direction, lam, lam_add = scalars.unbind()  # [] each
    response, delta, selected = _kernel_selections(delta, mask, rows, tokens)  # [B, T], [B, T], [B, 1] or [B, T]
    adv = (adv[:, None] if adv.dim() == 1 else adv).float()  # [B, 1] or [B, T]
    weight = torch.exp(direction * torch.sign(adv) * delta).clamp(low, high)  # [B, T] w_t
    outside = None
    if confidence is not None:
        confidence = confidence.detach().float()  # [B, T]
        outside = (response & ~((confidence >= 0.0) & (confidence <= 1.0))).any(dim=1)  # [B]
        weight = weight * confidence  # [B, T] G_t · w_t
    reweighted = adv + (weight - 1.0) * lam * adv  # [B, T] A · m_t where S_t = 1
    adv_hat = torch.where(selected, additive_term(delta, additive=additive) * lam_add + reweighted, adv)  # [B, T]
    return torch.where(response, adv_hat, 0.0), delta.abs().amax(dim=1), outside


def _additive_kernel(
    delta: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    rows: torch.Tensor,
    tokens: torch.Tensor | None,
    scalars: torch.Tensor,
    *,
    additive: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``family_advantages`` at λ = 0, Â_t = A + S_t · λ_add · g(Δ_t), written for ``torch.compile`` like
    ``_family_kernel`` (same arguments without the box and G; same first two outputs)."""
    lam_add = scalars[2]  # []
    response, delta, selected = _kernel_selections(delta, mask, rows, tokens)  # [B, T], [B, T], [B, 1] or [B, T]
    adv = (adv[:, None] if adv.dim() == 1 else adv).float()  # [B, 1] or [B, T]
    adv_hat = torch.where(selected, additive_term(delta, additive=additive) * lam_add + adv, adv)  # [B, T]
    return torch.where(response, adv_hat, 0.0), delta.abs().amax(dim=1)


def _kernel_selections(
    delta: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inside a kernel: the response positions [B, T], Δ in float32 with 0 off them [B, T], and S_t [B, 1] or [B, T]."""
    # verl's mask is int64: inductor's AVX2 code runs _family_kernel in ~12 ms converting it to float64 first against
    # ~22 ms comparing int64 lanes (512 x 8192, one thread). 0 and nonzero stay apart in float64 for any dtype.
    response = mask.double() != 0  # [B, T]
    delta = torch.where(response, delta.detach().float(), 0.0)  # [B, T]
    selected = rows if tokens is None else tokens & rows  # [B, 1] or [B, T]
    return response, delta, selected


def _run_compiled(kernel, *args, **kwargs):
    """``kernel(*args, **kwargs)`` compiled by inductor: once per process and variant (None-ness of an optional tensor,
    a dtype, ``additive``), with B and T as symbols, so that a new [B, T] never recompiles (an empty batch never gets
    here). Without the two shape settings dynamo would specialise a size of 1 and give equal sizes (B = T) one symbol,
    then recompile at the next shape; without the limit, the 9th variant of one kernel would be an error."""
    with (
        torch._dynamo.config.patch(recompile_limit=64),
        torch.fx.experimental._config.patch(use_duck_shape=False, backed_size_oblivious=True),
    ):
        return _compiled(kernel)(*args, **kwargs)


@functools.cache
def _compiled(kernel):
    """``torch.compile(kernel)``, made on first use: importing this module stays free of dynamo. ``fullgraph``: a
    graph break, which would split the kernel, is an error."""
    return torch.compile(kernel, dynamic=True, fullgraph=True)


def selected_rows(
    gate: str,
    *,
    correct: torch.Tensor,
    has_teacher: torch.Tensor,
    adv_sign: torch.Tensor | None = None,
    group: torch.Tensor | Sequence[str] | None = None,
) -> torch.Tensor:
    """S_row [B] bool: which rows the family reweights. Every gate requires ``has_teacher``, then
    "all": nothing more;  "correct": ``correct``;  "negative": ``adv_sign`` < 0 (the sign of the row's A; the official
    RLSD code's ``negative_only``);  "mixed": the row's ``group`` holds both a correct and an incorrect row.

    ``group`` [B] is the group of each row: integer ids, or the uid strings verl passes as ``index``. Every row given
    counts as a group member, so a caller with padding rows (never correct) gives them groups of their own.
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    batch = has_teacher.numel()
    _check_flags("has_teacher", has_teacher, batch)
    _check_flags("correct", correct, batch)
    rows = has_teacher.bool()  # [B]
    if gate == "correct":
        return rows & correct.bool()
    if gate == "negative":
        if adv_sign is None or adv_sign.shape != (batch,):
            raise ValueError(f"gate 'negative' needs adv_sign, the sign of each row's A as a [{batch}] tensor")
        return rows & (adv_sign < 0)
    if gate == "mixed":
        ids = _group_ids(group, batch)  # [B], 0 … n_groups − 1
        members = torch.bincount(ids)  # [n_groups]
        correct_members = torch.bincount(ids, weights=correct.float())  # [n_groups]
        mixed = (correct_members > 0) & (correct_members < members)  # [n_groups]
        return rows & mixed[ids]
    return rows


def _group_ids(group: torch.Tensor | Sequence[str] | None, batch: int) -> torch.Tensor:
    """Dense group ids 0 … n_groups − 1, [B] int64, from integer ids or uid strings."""
    if group is None:
        raise ValueError("gate 'mixed' needs group: each row's group index (ints) or uid (strings)")
    if len(group) != batch:
        raise ValueError(f"group must hold one entry per row ({batch}), got {len(group)}")
    if isinstance(group, torch.Tensor):
        if group.dim() != 1 or group.is_floating_point() or group.dtype == torch.bool:
            raise ValueError(f"a group tensor must be [B] integer ids, got {group.dtype} of shape {tuple(group.shape)}")
        return torch.unique(group, return_inverse=True)[1]
    first_seen: dict = {}
    return torch.tensor([first_seen.setdefault(uid, len(first_seen)) for uid in group], dtype=torch.long)


def span_mask(
    response_ids: torch.Tensor | Sequence[torch.Tensor],
    mask: torch.Tensor | None = None,
    *,
    span: str,
    open_ids: Sequence[int],
    close_ids: Sequence[int],
) -> torch.Tensor:
    """S_tok [B, T] bool: the response tokens a span covers (``SPANS``). A tag is a sequence of token ids (the
    caller tokenizes ``<think>``/``</think>``; multi-token tags work), matched on consecutive response tokens.
        "all":      every response token;
        "thinking": the tokens strictly between the FIRST open tag and the next close tag after it, to the end of
                    the response when unclosed, none without an open tag. Empty ``open_ids`` opens the span at the
                    first response token (templates that put the open tag in the prompt, e.g. Qwen3-2507 thinking);
        "answer":   the tokens strictly after the FIRST close tag (wherever the open tag is); every token without one.
    The tags themselves and the tokens before the open tag belong to neither span.

    ``response_ids``: a [B, T] id tensor with its ``mask`` (nonzero = response token; a tag must lie on response
    tokens), or a list of B 1-D id tensors (no mask), then T = the longest. Unlike the official RLSD code's
    ``_build_thought_span_mask``, which marks every <thought>…</thought> span, "thinking" is the first span only.
    """
    if span not in SPANS:
        raise ValueError(f"span must be one of {SPANS}, got {span!r}")
    ids, valid = _padded_ids(response_ids, mask)  # [B, T] int64, [B, T] bool
    if span == "all":
        return valid
    if not close_ids:
        raise ValueError("close_ids must hold the close tag's token ids, got none")
    length = ids.shape[1]
    positions = torch.arange(length)[None, :]  # [1, T]
    if span == "answer":
        close_start = _first_start(_tag_starts(ids, valid, close_ids), length)  # [B], T without a close tag
        after_close = torch.where(close_start < length, close_start + len(close_ids), 0)  # [B]
        return valid & (positions >= after_close[:, None])
    if open_ids:
        # The first token after the open tag; without one the start is T, so the span begins past the end: empty.
        open_end = _first_start(_tag_starts(ids, valid, open_ids), length) + len(open_ids)  # [B]
    else:
        open_end = torch.zeros(ids.shape[0], dtype=torch.long)  # [B]: the span opens at the first response token
    closes = _tag_starts(ids, valid, close_ids) & (positions >= open_end[:, None])  # [B, T]
    close_start = _first_start(closes, length)  # [B], T when unclosed
    return valid & (positions >= open_end[:, None]) & (positions < close_start[:, None])


def _padded_ids(
    response_ids: torch.Tensor | Sequence[torch.Tensor], mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, T] int64 ids, [B, T] bool response positions) from a tensor and its mask or a list of 1-D tensors."""
    if isinstance(response_ids, torch.Tensor):
        if mask is None:
            raise ValueError("span_mask on a [B, T] id tensor needs its mask (nonzero = response token)")
        _response_positions(mask, like=response_ids, name="response_ids")
        return response_ids.long(), mask != 0
    if mask is not None:
        raise ValueError("span_mask on a list of 1-D id tensors takes no mask: each tensor is one whole response")
    if any(row.dim() != 1 for row in response_ids):
        raise ValueError("span_mask needs a [B, T] id tensor or a list of 1-D id tensors")
    lengths = torch.tensor([row.numel() for row in response_ids], dtype=torch.long)  # [B]
    width = int(lengths.max()) if len(response_ids) else 0
    ids = torch.zeros(len(response_ids), width, dtype=torch.long)  # [B, T]
    for i, row in enumerate(response_ids):
        ids[i, : row.numel()] = row
    return ids, torch.arange(width)[None, :] < lengths[:, None]


def _tag_starts(ids: torch.Tensor, valid: torch.Tensor, tag: Sequence[int]) -> torch.Tensor:
    """[B, T] bool: True where the id sequence ``tag`` begins on response tokens."""
    width, size = ids.shape[1], len(tag)
    starts = torch.zeros_like(valid)  # [B, T]
    fits = width - size + 1  # start positions at which the whole tag fits
    if fits <= 0:
        return starts
    hit = valid[:, :fits].clone()  # [B, fits]
    for offset, token in enumerate(tag):
        hit &= valid[:, offset: offset + fits] & (ids[:, offset: offset + fits] == token)
    starts[:, :fits] = hit
    return starts


def _first_start(starts: torch.Tensor, none: int) -> torch.Tensor:
    """[B] int64: the first True column of each row of ``starts`` [B, T], ``none`` for a row without one."""
    first = starts.to(torch.uint8).argmax(dim=1)  # [B]; argmax returns the first of equal maxima
    return torch.where(starts.any(dim=1), first, none)


def clip_box(
    correct: torch.Tensor,
    *,
    eps_w: float | None = None,
    correct_box: tuple[float, float] | None = None,
    incorrect_box: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(low_i, high_i), float32 [B] each: the clip box of w_t per row. Either ``eps_w``: (1 − ε_w, 1 + ε_w) on every
    row (RLSD, RLRT; ε_w = 1 gives low = 0); or CAST's correctness-dependent boxes (arXiv 2606.00172; correct
    [0.8, 1.05], incorrect [0.95, 1.2] there): ``correct_box`` on correct rows, ``incorrect_box`` on the others, each
    (low, high) with 0 < low ≤ 1 ≤ high.

    Only CAST's boxes: its base advantage ±fallback_scale for zero-variance groups (all rollouts right or all wrong)
    is not part of this family (A comes from verl's GRPO, 0 for such groups).
    """
    _check_flags("correct", correct, correct.numel())
    boxes = (correct_box, incorrect_box)
    if eps_w is not None:
        if boxes != (None, None):
            raise ValueError("clip_box takes eps_w (a symmetric box) or correct_box and incorrect_box, not both")
        _check_eps_w(eps_w)
        return torch.full(correct.shape, 1.0 - eps_w), torch.full(correct.shape, 1.0 + eps_w)
    if None in boxes:
        raise ValueError("clip_box needs eps_w, or both correct_box and incorrect_box as (low, high)")
    for name, (low, high) in zip(("correct_box", "incorrect_box"), boxes):
        if not (math.isfinite(high) and 0.0 < low <= 1.0 <= high):
            raise ValueError(f"{name} must be (low, high) with 0 < low <= 1 <= high, got {(low, high)}")
    correct = correct.bool()  # [B]
    low = torch.where(correct, float(correct_box[0]), float(incorrect_box[0]))  # [B]
    high = torch.where(correct, float(correct_box[1]), float(incorrect_box[1]))  # [B]
    return low, high


def teacher_confidence(
    teacher_entropy: torch.Tensor, mask: torch.Tensor, *, vocab_size: int, g_min: float
) -> torch.Tensor:
    """G_t = max(g_min, 1 − H_T,t / log|V|) in float32 [B, T], 1 off the mask: GUI-SD's entropy confidence (arXiv
    2605.00642, mode ``linear-entropy``) with a floor g_min, so no token's weight vanishes.

    H_T,t is the teacher's entropy at position t over its |V| = ``vocab_size`` logits (a slightly negative H from
    rounding counts as 0). EGRSD (arXiv 2605.13255) describes such a teacher-entropy gate with a nonzero lower bound,
    but its exact formula was not found; this is GUI-SD's form, not a claim to be EGRSD's.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
    if not 0.0 <= g_min <= 1.0:
        raise ValueError(f"g_min must be in [0, 1], got {g_min}")
    response = _response_positions(mask, like=teacher_entropy, name="teacher_entropy")  # [B, T]
    entropy = _finite_on_response(teacher_entropy, response, "teacher entropy").clamp(min=0.0)  # [B, T]
    confidence = (1.0 - entropy / math.log(vocab_size)).clamp(min=g_min)  # [B, T]
    return torch.where(response, confidence, 1.0)  # [B, T]


def additive_term(delta: torch.Tensor, *, additive: str) -> torch.Tensor:
    """g(Δ_t), float32, same shape: "delta": Δ_t (grpo_opsd: Â = A + β·Δ); "antisd": −½(softplus(Δ_t) − log 2),
    AntiSD's PMI term (arXiv 2605.11609; δ_t = −φ(u_t), u_t = Δ_t): g(0) = 0, g < 0 where the teacher is surer than
    the student; bounded above by ½ log 2 (as Δ → −∞), not below (≈ −½ Δ for large Δ).

    AntiSD switches its λ on and off with a stateful Schmitt trigger on the teacher entropy; that trigger is out of
    scope here: λ_add is a constant (or the caller's schedule).
    """
    if additive == "delta":
        return delta.float()
    if additive == "antisd":
        return -0.5 * (F.softplus(delta.float()) - math.log(2.0))
    raise ValueError(f"additive must be one of {ADDITIVE_TERMS}, got {additive!r}")


def _checked_box(
    low: torch.Tensor, high: torch.Tensor, batch: int
) -> tuple[float | torch.Tensor, float | torch.Tensor]:
    """The rows' boxes as floats when every row has the same box (a scalar clip is a third of the cost of a [B, 1]
    one), else as [B, 1] float32; raises unless 0 <= low <= 1 <= high and high is finite on every row."""
    for name, bound in (("low", low), ("high", high)):
        if bound.shape != (batch,):
            raise ValueError(f"{name} must be a [B] tensor with B = {batch}, got {tuple(bound.shape)}")
    low, high = low.float(), high.float()  # [B] each
    bad = ~((low >= 0.0) & (low <= 1.0) & (high >= 1.0) & torch.isfinite(high))  # [B]
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(f"clip box must satisfy 0 <= low <= 1 <= high (finite) on every row; rows {rows[:10]} do not")
    if batch and bool((low == low[0]).all()) and bool((high == high[0]).all()):
        return low[0].item(), high[0].item()
    return low[:, None], high[:, None]


def _check_confidence(confidence: torch.Tensor, response: torch.Tensor) -> None:
    """Raise naming rows unless G [B, T] (shape checked) is finite and in [0, 1] at every response position."""
    confidence = torch.where(response, confidence.detach().float(), 1.0)  # [B, T]
    low, high = torch.aminmax(confidence)
    if not (0.0 <= low.item() and high.item() <= 1.0):  # False for NaN too
        rows = ((confidence < 0.0) | ~(confidence <= 1.0)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"confidence must be finite and in [0, 1] on the response; rows {rows[:10]} are not")


def _check_flags(name: str, flags: torch.Tensor, batch: int) -> None:
    if flags.shape != (batch,):
        raise ValueError(f"{name} must be a bool [B] tensor with B = {batch}, got {tuple(flags.shape)}")


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


def lambda_at(
    step: int, *, schedule: str, lam0: float, decay_steps: int | None = None, warmup_steps: int | None = None
) -> float:
    """λ_k at verl's 1-based ``global_steps`` k, with j = k − 1 steps done, W = ``warmup_steps``, K = ``decay_steps``:
        "constant":     λ₀
        "warmup_decay": λ₀ · j / W                       for j < W   (λ₁ = 0, rising linearly over W steps)
                        λ₀ · max(0, 1 − (j − W) / K)    for j ≥ W   (λ₀ at step W + 1, 0 from step W + K + 1)
        "linear_decay": "warmup_decay" with W = 0, the same numbers: λ₀ · max(0, 1 − (k − 1)/K), λ₁ = λ₀.
    The official RLSD code (``verl/trainer/opsd_trainer.py``) has the same shape at its own 1-based step k in place
    of j, so it runs one step ahead: its λ at step k is ours at step k + 1 (without warm-up it starts at
    λ₀ · (1 − 1/K), ours at λ₀).
    """
    if step < 1:
        raise ValueError(f"step is verl's 1-based global_steps and must be >= 1, got {step}")
    _check_lambda(lam0)
    if schedule == "constant":
        return float(lam0)
    if schedule not in ("linear_decay", "warmup_decay"):
        raise ValueError(f"schedule must be one of {LAMBDA_SCHEDULES}, got {schedule!r}")
    if decay_steps is None or decay_steps < 1:
        raise ValueError(f"{schedule} needs decay_steps >= 1, got {decay_steps}")
    if schedule == "linear_decay":
        if warmup_steps:
            raise ValueError(f"linear_decay has no warm-up (use warmup_decay), got warmup_steps={warmup_steps}")
        warmup_steps = 0
    elif warmup_steps is None or warmup_steps < 0:
        raise ValueError(f"warmup_decay needs warmup_steps >= 0, got {warmup_steps}")
    done = step - 1  # j
    if done < warmup_steps:
        return float(lam0) * done / warmup_steps
    return float(lam0) * max(0.0, 1.0 - (done - warmup_steps) / decay_steps)


def _response_positions(mask: torch.Tensor, *, like: torch.Tensor, name: str = "delta") -> torch.Tensor:
    _check_mask(mask, like=like, name=name)
    return mask != 0


def _check_mask(mask: torch.Tensor, *, like: torch.Tensor, name: str = "delta") -> None:
    if mask.shape != like.shape or mask.dim() != 2:
        raise ValueError(f"mask and {name} must both be [B, T], got {tuple(mask.shape)} and {tuple(like.shape)}")


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
