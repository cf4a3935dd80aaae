"""verl's real main_ppo loop on CPU (RLSD under rlrt_sync, tiny random model, seeded reward), via scripts/run_cpu_demo.sh.

Two launches, ~45 s each: the first runs step 1 and saves a checkpoint, the second resumes from it and
runs step 2. Together they check that the loop runs, that its metrics are sane, that the rollout follows
the actor's weights (also right after a resume), and that checkpoint/resume works on CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rlrt_recipe.logs import launch_files, read_metrics
from rlrt_recipe.signals import lambda_at
from rlrt_recipe.testing.launch import run_cpu_demo

pytestmark = pytest.mark.e2e

# lr 1e-2 moves the tiny model visibly in one update: a rollout left on stale weights shows
# rollout_probs_diff_mean ~5e-4 (CPU_BACKEND.md); with the weight sync it stays ~1e-9. The pair runs
# RLSD under rlrt_sync, so the teacher step, its λ schedule and verl's checkpointing are resumed together.
OVERRIDES = [
    "trainer.save_freq=1", "actor_rollout_ref.actor.optim.lr=1e-2",
    "algorithm.adv_estimator=rlsd", "trainer.v1.trainer_mode=rlrt_sync",
]


def run_demo(experiment_dir: Path, model_dir: str, data_dir: str, steps: int) -> str:
    return run_cpu_demo(experiment_dir, model_dir, data_dir, steps=steps, overrides=OVERRIDES)


@pytest.fixture(scope="module")
def two_launches(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    """Launch 1: step 1 + checkpoint. Launch 2: resume, step 2. Returns (experiment dir, both outputs)."""
    experiment_dir = tmp_path_factory.mktemp("e2e_resume")
    first = run_demo(experiment_dir, tiny_model_dir, tiny_data_dir, steps=1)
    second = run_demo(experiment_dir, tiny_model_dir, tiny_data_dir, steps=2)
    return experiment_dir, first, second


def test_steps_log_finite_actor_and_timing_metrics(two_launches):
    """main_ppo exits 0 and logs both steps with finite actor/* and timing_s/* metrics; pg_loss is not 0
    (two updates per step: the second mini-batch is off-policy, and the seeded reward gives advantages)."""
    experiment_dir, _, _ = two_launches
    metrics = read_metrics(experiment_dir)
    assert sorted(metrics) == [1, 2]
    for step, data in metrics.items():
        checked = {key: value for key, value in data.items() if key.startswith(("actor/", "timing_s/"))}
        assert {"actor/pg_loss", "actor/grad_norm", "timing_s/step", "timing_s/gen", "timing_s/update_actor"} <= set(checked)
        bad = {key: value for key, value in checked.items() if not math.isfinite(float(value))}
        assert not bad, f"step {step}: non-finite metrics {bad}"
        assert abs(data["actor/pg_loss"]) > 1e-4, f"step {step}: pg_loss {data['actor/pg_loss']} is ~0"
        assert data["critic/advantages/max"] > 0 > data["critic/advantages/min"], f"step {step}: no advantages"


def test_rollout_follows_the_actor_weights(two_launches):
    """With lr 1e-2, rollout and actor log-probs agree at every step, including the first step after a
    resume: the hf rollout receives the actor's weights after init, after each update and after loading."""
    experiment_dir, _, _ = two_launches
    for step, data in read_metrics(experiment_dir).items():
        assert data["training/rollout_probs_diff_valid"] == 1.0
        assert data["training/rollout_probs_diff_mean"] < 1e-4, f"step {step}: rollout uses stale weights"


def test_second_launch_resumes_from_the_step_1_checkpoint(two_launches):
    """Checkpoint/resume on CPU: launch 1 saves global_step_1; launch 2 loads it and logs only step 2."""
    experiment_dir, first, second = two_launches
    checkpoints = experiment_dir / "checkpoints"
    assert (checkpoints / "global_step_1" / "actor").is_dir()
    assert (checkpoints / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert f"Resuming from {checkpoints / 'global_step_1'}" in second
    first_log, second_log = launch_files(experiment_dir)
    assert sorted(read_metrics(first_log)) == [1]
    assert sorted(read_metrics(second_log)) == [2]
    assert f"metrics log: {first_log}" in first


def test_resume_continues_the_lambda_schedule(two_launches):
    """λ_k is read at verl's restored global_steps: step 2 of the resumed launch logs λ₂ of linear_decay."""
    experiment_dir, _, _ = two_launches
    for step, data in read_metrics(experiment_dir).items():
        assert data["rlrt/lambda"] == pytest.approx(lambda_at(step, schedule="linear_decay", lam0=0.5, decay_steps=50))
