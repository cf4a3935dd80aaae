"""The CPU toy task: warm start, the teacher's semantic check, and the comparison script.

The warm start runs once per session with the defaults (seeded, one torch thread: deterministic) and
takes 45–140 s on 2 shared cores; the semantic check on its 20 held-out problems takes about a second.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from rlrt_toy import semantic, task
from rlrt_toy.warm_start import load

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "compare_methods_cpu.sh"


@pytest.fixture(scope="module")
def warm(toy_warm_start):
    """(summary, model, tokenizer, renderer) of the default warm start."""
    return (toy_warm_start["summary"], *load(toy_warm_start["model_dir"]))


@pytest.fixture(scope="module")
def gaps(warm):
    _, model, tokenizer, render = warm
    return semantic.answer_gaps(model, tokenizer, render, task.split_problems()["heldout"])


def test_split_is_disjoint_and_covers_every_problem():
    """Guards the held-out claim: the semantic check never scores a problem the warm start trained on."""
    split = task.split_problems()
    assert not set(split["train"]) & set(split["heldout"])
    assert sorted(split["train"] + split["heldout"]) == task.all_problems()


def test_reference_response_gets_full_reward():
    """The toy's response format is what the math-verify reward reads (last \\boxed{})."""
    from rlrt_recipe.reward import compute_score

    for problem in task.all_problems():
        assert compute_score(task.DATA_SOURCE, task.response(problem), task.answer(problem))["score"] == 1.0


def test_warm_start_leaves_the_policy_partly_right(warm):
    """RL needs mixed groups: a pass rate of 0 or 1 at temperature 1 gives GRPO nothing to learn from."""
    summary = warm[0]
    assert summary["loss_last"] < summary["loss_first"]
    assert 0.0 < summary["pass_rate_train"] < 1.0


def test_teacher_gains_with_the_right_reference(gaps):
    """The privileged prompt reaches the model: the right reference raises log π of the answer tokens."""
    assert gaps["right"] >= semantic.MIN_RIGHT_GAP, gaps


def test_teacher_loses_with_a_wrong_reference(gaps):
    """The teacher follows its context, not a memorised answer: a wrong reference lowers the right answer."""
    assert gaps["wrong"] <= semantic.MAX_WRONG_GAP, gaps


def test_identity_template_gives_zero_gap(gaps):
    """Alignment: with the template "{question}" teacher and student prompts are the same ids, Δ = 0."""
    assert abs(gaps["identity"]) <= semantic.MAX_IDENTITY_GAP, gaps
    assert semantic.failures(gaps) == []


def test_answer_positions_cover_exactly_the_answer_digits(warm):
    """Δ is averaged over the answer tokens only, never over the constant "\\boxed{" scaffold."""
    tokenizer = warm[2]
    for problem in [(3, 5), (9, 9), (0, 0)]:
        ids = tokenizer.encode(task.response(problem), add_special_tokens=False)
        positions = semantic.answer_positions(tokenizer, problem)
        assert tokenizer.decode([ids[k] for k in positions]) == task.answer(problem)


def test_comparison_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_fit_runs_seeded_adamw_with_warmup():
    """The warm-start loop both tasks share: one step_loss call per step with the seeded rng, the lr ramped over the
    first 10 % of steps, a falling loss on a quadratic, and the model left in eval mode."""
    import random

    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from rlrt_toy.warm_start import fit

    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.constant_(model.weight, 1.0)
    draws, lrs = [], []  # the rng's draws; the lr of every optimizer step

    def step_loss(rng):
        draws.append(rng.random())
        loss = (model.weight ** 2).sum()
        loss.backward()
        return loss.detach()

    hook = register_optimizer_step_pre_hook(lambda optimizer, *_: lrs.append(optimizer.param_groups[0]["lr"]))
    try:
        losses = fit(model, steps=20, lr=0.1, seed=3, step_loss=step_loss)
    finally:
        hook.remove()
    reference = random.Random(3)
    assert draws == [reference.random() for _ in range(20)]
    assert len(losses) == 20 and losses[-1] < losses[0] and not model.training
    assert lrs[:3] == pytest.approx([0.05, 0.1, 0.1])  # warm-up over max(1, 20 // 10) = 2 steps


def test_warm_start_options_fill_only_their_config_fields():
    """--steps/--batch-size/--lr/--privileged-frac/--seed reach the config; its other fields keep their defaults."""
    import argparse

    from rlrt_explore.warm_start import ExploreWarmStartConfig
    from rlrt_toy.warm_start import WarmStartConfig, add_warm_start_arguments, config_from_arguments

    for config_class in (WarmStartConfig, ExploreWarmStartConfig):
        parser = add_warm_start_arguments(argparse.ArgumentParser(), config_class())
        args = parser.parse_args(["--out", "m", "--steps", "7", "--lr", "0.5", "--batch-size", "3"])
        cfg = config_from_arguments(config_class, args)
        assert (cfg.steps, cfg.lr, cfg.batch_size) == (7, 0.5, 3)
        assert cfg == dataclasses.replace(config_class(), steps=7, lr=0.5, batch_size=3)
