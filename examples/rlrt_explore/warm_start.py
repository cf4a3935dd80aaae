"""A seeded supervised warm start of the toy's 0.56 M-parameter model on the "reach the target" task (CPU).

The model is ``build_tiny_model(TOY_SPEC)`` (the toy's size, random Qwen2 weights, the package's locally
trained tokenizer, loaded back as verl loads it: numbers spelled digit by digit, a correct response 13–29
tokens with EOS), trained with next-token cross-entropy on the response tokens (uncut: the warm start also
teaches the paths longer than the RL runs' 24 response tokens, ``task.MAX_RESPONSE_LENGTH``):

    L(θ) = − (1 / Σ_i |y_i|) · Σ_i Σ_t log π_θ(y_{i,t} | x_i, y_{i,<t})        y_i = "\\boxed{<path>}" <|im_end|>

Each example is drawn afresh from a random warm-start problem (``task.split_problems()["warm"]``, disjoint
from the RL and held-out problems):
- with probability 1 − ``privileged_frac``: x = the student prompt, y = a correct path drawn uniformly from
  *all* the problem's correct paths, so the warm-started policy spreads its mass over many solutions (what
  exploration can keep or lose);
- otherwise x = a teacher prompt (``rlrt_recipe.privileged`` templates, kind drawn uniformly) holding a correct
  context, and y = the path that context names: the reference path for ``answer`` and ``solution``, a uniformly
  drawn correct path shown as a response for ``rollout`` (an RLRT sibling). The model learns to read context:
  a teacher shown path c puts its mass on c (``teacher_gaps``).

Prompts are rendered with verl's continuous-token builder, as the trainer renders them. Pass rates and
distinct correct paths are measured by sampling with transformers at temperature 1 (``sample_responses``).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Qwen2ForCausalLM

from rlrt_explore import analysis, task
from rlrt_explore.reward import Path, compute_score
from rlrt_recipe import privileged
from rlrt_recipe.integration.teacher import PromptRenderer
from rlrt_recipe.testing.forward import response_log_probs
from rlrt_toy.warm_start import (TOY_SPEC, _batch, build_and_train, fit, response_ids, sample_responses,
                                 torch_threads)


@dataclass(frozen=True)
class ExploreWarmStartConfig:
    """Warm-start hyper-parameters and the measurement's sample sizes. The defaults leave the student right on
    a few to ~15 % of samples at temperature 1 on the RL and held-out problems (``PASS_RATE_BAND``)."""

    steps: int = 800  # optimizer steps
    batch_size: int = 16  # examples per step
    lr: float = 1e-3  # AdamW, linear warm-up over the first 10 % of steps, then constant (the toy's 5e-3 stalls here)
    privileged_frac: float = 0.7  # share of examples whose prompt holds a correct reference
    seed: int = 0
    threads: int = 1  # torch CPU threads (one is fastest on cores shared with other jobs; the toy measured it)
    samples: int = 64  # samples per RL and per held-out problem (pass@k up to k = 64, distinct correct paths)


def row_info(problem: task.Problem, index: int = 0) -> privileged.RowInfo:
    """The ``RowInfo`` the trainer would extract from this problem's dataset row."""
    row = task.row(problem, index, "explore")
    return privileged.RowInfo.from_fields(index, raw_prompt=row["prompt"], reward_model=row["reward_model"],
                                          extra_info=row["extra_info"], data_source=row["data_source"],
                                          uid=str(index))


def student_messages(problem: task.Problem) -> list[dict[str, Any]]:
    return [{"role": "user", "content": task.question(problem)}]


def teacher_messages(problem: task.Problem, kind: str, path: Path | None = None) -> list[dict[str, Any]]:
    """The teacher messages of ``problem`` with context ``kind`` and the default templates: ``answer`` and
    ``solution`` show the reference path (as ``reward_model.ground_truth`` and ``extra_info.solution``),
    ``rollout`` shows ``path`` (default: the reference) as a response, ``\\boxed{...}``."""
    context = {"answer": task.answer(problem), "solution": task.worked_solution(problem),
               "rollout": task.response(task.reference_path(problem) if path is None else tuple(path))}[kind]
    return privileged.teacher_messages(row_info(problem), kind, context, privileged.validate_templates())


def draw_example(rng: random.Random, problems: Sequence[task.Problem], privileged_frac: float
                 ) -> tuple[list[dict[str, Any]], str]:
    """One (prompt messages, response text) warm-start example (module docstring: the three cases)."""
    problem = rng.choice(problems)
    paths = task.correct_paths(problem)
    if rng.random() >= privileged_frac:
        return student_messages(problem), task.response(rng.choice(paths))
    kind = rng.choice(privileged.TEMPLATE_KINDS)
    path = rng.choice(paths) if kind == "rollout" else task.reference_path(problem)
    return teacher_messages(problem, kind, path), task.response(path)


def response_token_loss(model: Qwen2ForCausalLM, examples: list[tuple[list[int], list[int]]], pad_id: int,
                        micro_batches: int = 2) -> torch.Tensor:
    """L(θ) of the module docstring over ``examples`` (prompt ids, response ids), gradients accumulated: the
    examples are sorted by length and cut into ``micro_batches`` pieces, each padded only to its own longest
    (student prompts are a third as long as teacher prompts: a quarter less compute), and each piece's summed
    token loss is divided by the batch's total response tokens, so the gradient is that of one batch. Returns
    the loss (detached)."""
    examples = sorted(examples, key=lambda e: len(e[0]) + len(e[1]))
    tokens = sum(len(response) for _, response in examples)
    size = -(-len(examples) // micro_batches)
    total = torch.zeros(())
    for first in range(0, len(examples), size):
        ids, mask, labels = _batch(examples[first:first + size], pad_id)  # [b, L] each
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # [b, L − 1, V]: t predicts t + 1
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100,
                                                 reduction="sum") / tokens
        loss.backward()
        total += loss.detach()
    return total


def train(model: Qwen2ForCausalLM, tokenizer: Any, render: PromptRenderer, cfg: ExploreWarmStartConfig,
          problems: Sequence[task.Problem], log_every: int = 0) -> list[float]:
    """The toy's ``fit`` (AdamW, warm-up) with ``response_token_loss`` on ``cfg.batch_size`` fresh
    ``draw_example`` examples per step; returns the loss of every step."""

    def step_loss(rng: random.Random) -> torch.Tensor:
        batch = []
        for _ in range(cfg.batch_size):
            messages, text = draw_example(rng, problems, cfg.privileged_frac)
            batch.append((render(messages), response_ids(tokenizer, text)))
        return response_token_loss(model, batch, tokenizer.pad_token_id)

    return fit(model, steps=cfg.steps, lr=cfg.lr, seed=cfg.seed, step_loss=step_loss, log_every=log_every)


def sample_records(model: Qwen2ForCausalLM, tokenizer: Any, render: PromptRenderer,
                   problems: Sequence[task.Problem], *, samples: int, temperature: float = 1.0,
                   seed: int = 0) -> list[analysis.Record]:
    """``samples`` student responses per problem sampled at ``temperature`` (``sample_responses``: plain
    ancestral sampling, as verl's rollout), each as ``(problem index, response text, correct)`` with
    correctness from ``rlrt_explore.reward.compute_score``."""
    prompts = [render(student_messages(p)) for p in problems] * samples
    texts = sample_responses(model, tokenizer, prompts, temperature=temperature,
                             max_new_tokens=task.MAX_RESPONSE_LENGTH, seed=seed)
    rows = [task.row(p, i, "eval") for i, p in enumerate(problems)] * samples
    return [(r["extra_info"]["index"], text,
             compute_score(r["data_source"], text, r["reward_model"]["ground_truth"], r["extra_info"])["score"] == 1.0)
            for r, text in zip(rows, texts, strict=True)]


def teacher_gaps(model: Qwen2ForCausalLM, tokenizer: Any, render: PromptRenderer,
                 problems: Sequence[task.Problem], *, temperature: float = 1.0, seed: int = 0) -> dict[str, float]:
    """Does the teacher read its sibling? For each problem, y = a random correct path P as a response, and

        Δ̄_same  = mean_t [log π(y_t | x, c = P, y_<t) − log π(y_t | x, y_<t)]
        Δ̄_other = mean_t [log π(y_t | x, c = Q, y_<t) − log π(y_t | x, y_<t)]     Q ≠ P another correct path

    over all response tokens of all problems (rollout template, the RLRT context). A context-reading teacher
    gives Δ̄_same > 0 > Δ̄_other: RLRT's w = exp(−Δ) then lifts the tokens where a correct rollout departs from
    its sibling, which is the exploration the method claims."""
    rng = random.Random(seed)
    gaps: dict[str, list[float]] = {"same": [], "other": []}
    for problem in problems:
        own, other = rng.sample(task.correct_paths(problem), 2)
        response = response_ids(tokenizer, task.response(own))
        student = response_log_probs(model, render(student_messages(problem)), response, temperature)  # [R] s
        for case, context in (("same", own), ("other", other)):
            teacher = response_log_probs(model, render(teacher_messages(problem, "rollout", context)), response,
                                         temperature)  # [R] τ
            gaps[case] += (teacher - student).tolist()  # Δ_t on every response token
    return {case: sum(values) / len(values) for case, values in gaps.items()}


def measure(model: Qwen2ForCausalLM, tokenizer: Any, render: PromptRenderer, splits: dict[str, list[task.Problem]],
            cfg: ExploreWarmStartConfig) -> dict[str, Any]:
    """``analysis.policy_summary`` (k = 1, 8, 64) of the student at temperature 1 on the RL problems and on the
    held-out problems (``cfg.samples`` each; neither split seen by the warm start), with the mean number of correct
    paths the problems have, and the ``teacher_gaps`` on the held-out problems."""
    out: dict[str, Any] = {}
    for split in ("train", "heldout"):
        records = sample_records(model, tokenizer, render, splits[split], samples=cfg.samples, seed=cfg.seed)
        out[split] = analysis.policy_summary(records, [k for k in (1, 8, 64) if k <= cfg.samples])
        out[split]["correct_paths_available"] = statistics.fmean(len(task.correct_paths(p)) for p in splits[split])
    out["teacher_delta"] = teacher_gaps(model, tokenizer, render, splits["heldout"], seed=cfg.seed)
    return out


def warm_start(out_dir: str | os.PathLike, cfg: ExploreWarmStartConfig = ExploreWarmStartConfig(),
               log_every: int = 0) -> dict[str, Any]:
    """Build ``TOY_SPEC`` in ``out_dir``, warm-start it on the warm problems, save it there; return a summary
    (parameters, first/last loss, ``measure``'s figures, seconds of training and of measuring)."""
    splits = task.split_problems()
    with torch_threads(cfg.threads):
        start = time.perf_counter()
        model, tokenizer, render, summary = build_and_train(
            out_dir, TOY_SPEC, cfg, lambda m, t, r: train(m, t, r, cfg, splits["warm"], log_every))
        trained = time.perf_counter()
        summary.update(measure(model, tokenizer, render, splits, cfg))
        summary["train_s"] = round(trained - start, 1)
        summary["measure_s"] = round(time.perf_counter() - trained, 1)
        return summary


#: The band the default warm start is meant to leave the student's pass rate in (train and held-out, T = 1).
PASS_RATE_BAND = (0.05, 0.25)


def failures(summary: dict[str, Any]) -> list[str]:
    """Human-readable reasons the warm start is unfit for the comparison (empty when fit): a pass rate outside
    ``PASS_RATE_BAND``, or a teacher that does not read its sibling (Δ̄_same ≤ 0 or Δ̄_other ≥ Δ̄_same)."""
    out = []
    low, high = PASS_RATE_BAND
    for split in ("train", "heldout"):
        rate = summary[split]["pass_rate"]
        if not low <= rate <= high:
            side = "low" if rate < low else "high"
            out.append(f"{split} pass rate {rate:.3f} is outside [{low}, {high}] (too {side} for RL on this task: "
                       "change --steps)")
    delta = summary["teacher_delta"]
    if not delta["same"] > 0.0 or not delta["other"] < delta["same"]:
        out.append(f"teacher Δ̄ same {delta['same']:.3f}, other {delta['other']:.3f}: the teacher does not read its "
                   "sibling (expected same > 0 and other < same)")
    return out
