"""The token-weight family's pieces together through verl's real main_ppo loop on CPU (one launch, issue 19):
RLSD's weight with the negative gate, a thinking span, CAST's boxes, the teacher-confidence factor, AntiSD's
additive term and a λ warm-up, on the warm-started toy model.

The toy answers ``\\boxed{<digits>}``, so with ``rlrt.span_tags=['{', '}']`` the "thinking" span is the answer's
digits: a span that matches part of every response. The seeded test reward of the CPU demo marks about half of the
distinct responses correct, so most groups have both outcomes. λ warms up from 0 (step 1) to 0.5 (step 2): at
step 1 only the additive term reads the teacher, and the teacher pass must still run.
"""

from __future__ import annotations

import math
import os

import pytest

from rlrt_recipe.logs import read_metrics
from rlrt_recipe.testing.launch import run_cpu_demo

pytestmark = pytest.mark.e2e

STEPS, CONFIDENCE_MIN = 2, 0.1
ROWS = 4 * 8  # prompts × rollouts per step
FAMILY = [
    "algorithm.adv_estimator=rlsd", "trainer.v1.trainer_mode=rlrt_sync",
    "data.train_batch_size=4", "actor_rollout_ref.rollout.n=8",
    "actor_rollout_ref.actor.ppo_mini_batch_size=4",
    "+rlrt.gate=negative",  # the official RLSD code's negative_only
    "+rlrt.span=thinking", "+rlrt.span_tags=['{','}']",  # the toy's answer digits
    "+rlrt.correct_box=[0.8,1.05]", "+rlrt.incorrect_box=[0.95,1.2]",  # CAST's boxes
    f"+rlrt.confidence_min={CONFIDENCE_MIN}",  # G_t = max(g_min, 1 − H_T/log|V|)
    "+rlrt.additive=antisd",  # λ_add = rlrt.distill_adv_coef = 0.1
    "+rlrt.lambda_schedule=warmup_decay", "+rlrt.lambda_warmup_steps=1", "+rlrt.lambda_decay_steps=4",
]


@pytest.fixture(scope="module")
def family_run(tmp_path_factory, toy_warm_start):
    data_dir = tmp_path_factory.mktemp("toy_data")  # run_cpu_demo.sh reads train.parquet and test.parquet
    os.symlink(os.path.join(toy_warm_start["data_dir"], "train.parquet"), data_dir / "train.parquet")
    os.symlink(os.path.join(toy_warm_start["data_dir"], "heldout.parquet"), data_dir / "test.parquet")
    experiment = tmp_path_factory.mktemp("e2e_family")
    output = run_cpu_demo(experiment, toy_warm_start["model_dir"], str(data_dir), steps=STEPS, overrides=FAMILY)
    return read_metrics(experiment), output


def test_every_piece_reaches_the_step(family_run):
    """λ follows the warm-up; the negative gate passes exactly the incorrect rows; on steps with rows to score the
    teacher runs (at λ = 0 too: the additive term reads it), the span covers part of the scored tokens, and the
    teacher's entropy gives G in [g_min, 1); every rlrt/* metric is finite."""
    metrics, _ = family_run
    assert sorted(metrics) == [1, 2]
    scored_steps = 0
    for step, data in metrics.items():
        ours = {k: v for k, v in data.items() if k.startswith("rlrt/")}
        assert all(math.isfinite(float(v)) for v in ours.values()), (step, ours)
        assert data["rlrt/lambda"] == (0.0 if step == 1 else 0.5)
        incorrect = 1.0 - data["critic/score/mean"]  # binary rewards: the share of incorrect rows
        assert data["rlrt/gate_pass_frac"] == pytest.approx(incorrect)
        assert data["rlrt/scored_rows"] <= round(incorrect * ROWS)  # rows with A < 0 only
        if data["rlrt/degenerate_group_frac"] == 1.0:  # no group with both outcomes: A = 0, nothing to score
            assert data["rlrt/teacher_calls"] == 0.0
            continue
        scored_steps += 1
        assert data["rlrt/teacher_calls"] == 1.0 and data["rlrt/scored_rows"] > 0
        assert 0.0 < data["rlrt/span_token_frac"] < 1.0
        assert data["rlrt/teacher_entropy"] > 0.0
        assert CONFIDENCE_MIN <= data["rlrt/confidence_mean"] < 1.0
    assert scored_steps >= 1, "no step had a group with both outcomes: the pieces were never exercised"
