"""The CPU toy task: warm start, the teacher's semantic check, and the comparison script.

The warm start runs once per session with the defaults (seeded, one torch thread: deterministic) and
takes 45–140 s on 2 shared cores; the semantic check on its 20 held-out problems takes about a second.
"""

from __future__ import annotations

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
