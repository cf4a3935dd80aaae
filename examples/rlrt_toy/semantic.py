"""Semantic check of the privileged teacher on held-out toy problems (teacher-forced on the correct answer).

For each held-out problem, the response y = "\\boxed{a+b}" <|im_end|> is scored twice by the same model:

    s_t = log π(y_t | x, y_<t)        student prompt x (the problem)
    τ_t = log π(y_t | x', y_<t)       teacher prompt x' = the answer template with a reference answer

both at temperature T (log_softmax(logits / T), as verl's actor), and

    Δ̄ = mean over the answer tokens (the digits inside \\boxed{}) of all problems of (τ_t − s_t).

A teacher that reads its context gives Δ̄ > 0 with the right reference, Δ̄ < 0 with a wrong one, and Δ̄ = 0
exactly with the identity template "{question}" (teacher prompt = student prompt). Prompts are built as
the trainer builds them: ``rlrt_recipe.privileged.teacher_messages`` rendered by verl's continuous-token
builder, the response ids appended unchanged.
"""

from __future__ import annotations

import random
from typing import Any

from rlrt_recipe.integration.teacher import PromptRenderer
from rlrt_recipe.privileged import IDENTITY_TEMPLATE
from rlrt_recipe.testing.forward import response_log_probs
from rlrt_toy import task
from rlrt_toy.warm_start import privileged_messages, response_ids

#: The three cases: (template overrides, which reference answer goes into the prompt).
CASES = {
    "right": (None, "right"),
    "wrong": (None, "wrong"),
    "identity": ({"answer": IDENTITY_TEMPLATE}, "right"),
}


def wrong_answer(problem: task.Problem, rng: random.Random) -> str:
    """A sum in {0, …, 18} other than the correct one, drawn uniformly."""
    correct = problem[0] + problem[1]
    return str(rng.choice([s for s in range(19) if s != correct]))


def answer_positions(tokenizer: Any, problem: task.Problem) -> list[int]:
    """Indices in ``response_ids`` of the tokens that overlap the answer's characters inside ``\\boxed{}``."""
    text = task.response(problem)
    start = text.index("{") + 1
    end = start + len(task.answer(problem))
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    positions = [k for k, (lo, hi) in enumerate(offsets) if lo < end and hi > start]
    if not positions:
        raise ValueError(f"no token covers the answer of {problem} in {text!r}")
    return positions


def answer_gaps(model: Any, tokenizer: Any, render: PromptRenderer, problems: list[task.Problem], *,
                temperature: float = 1.0, seed: int = 0) -> dict[str, float]:
    """Δ̄ (nats) for each case of ``CASES``: ``{"right": …, "wrong": …, "identity": …}``."""
    rng = random.Random(seed)
    wrong = {p: wrong_answer(p, rng) for p in problems}
    gaps: dict[str, list[float]] = {case: [] for case in CASES}
    for problem in problems:
        response = response_ids(tokenizer, task.response(problem))
        positions = answer_positions(tokenizer, problem)
        student = response_log_probs(model, render([{"role": "user", "content": task.question(problem)}]),
                                     response, temperature)  # [R] s
        for case, (templates, reference) in CASES.items():
            text = task.answer(problem) if reference == "right" else wrong[problem]
            prompt = render(privileged_messages(problem, "answer", text, templates))
            teacher = response_log_probs(model, prompt, response, temperature)  # [R] τ
            gaps[case] += (teacher - student)[positions].tolist()  # Δ on the answer tokens
    return {case: sum(values) / len(values) for case, values in gaps.items()}


#: The bounds the check asserts (nats): right ≥ 0.5, wrong ≤ −0.5, |identity| ≤ 1e-5.
MIN_RIGHT_GAP, MAX_WRONG_GAP, MAX_IDENTITY_GAP = 0.5, -0.5, 1e-5


def failures(gaps: dict[str, float]) -> list[str]:
    """Human-readable violations of the three bounds (empty when the teacher reads its context as intended)."""
    out = []
    if not gaps["right"] >= MIN_RIGHT_GAP:
        out.append(f"right reference: mean Δ {gaps['right']:.3f} < {MIN_RIGHT_GAP} (the teacher ignores its context)")
    if not gaps["wrong"] <= MAX_WRONG_GAP:
        out.append(f"wrong reference: mean Δ {gaps['wrong']:.3f} > {MAX_WRONG_GAP} (the teacher does not follow it)")
    if not abs(gaps["identity"]) <= MAX_IDENTITY_GAP:
        out.append(f"identity template: |mean Δ| {abs(gaps['identity']):.2e} > {MAX_IDENTITY_GAP} "
                   "(teacher and student prompts differ)")
    return out
