"""The teacher step in verl's asynchronous trainer modes, through verl's real main_ppo loop on CPU (two launches, one
per mode): RLRT, 3 steps, lr 1e-2, every row scored with the identity template (teacher prompt = student prompt), so
τ = s exactly when the teacher pass runs on the weights s was computed with.

- ``rlrt_colocate_async``: rollouts run beside training with a warm-up batch, so from step 2 on the consumed batch
  was sampled by the previous weights (staleness 1): s and τ are the actor's at consumption, ahead of the rollout.
- ``rlrt_separate_async``: a standalone rollout replica, weights pushed by the CPU checkpoint engine, and
  ``parameter_sync_step = 2`` local updates per step; verl computes s of the second mini-batch with π_old (swapped
  in from its CPU copy), and the teacher pass runs inside that window: Δ = 0 on both mini-batches. Had the π_old
  copy aliased the live weights, s would equal the current actor's log-probs and the update's PPO ratio would be
  exactly 1 (``actor/ppo_kl`` 0); it is not.
"""

from __future__ import annotations

import math

import pytest

from rlrt_recipe.logs import read_metrics
from rlrt_recipe.privileged import IDENTITY_TEMPLATE, TEMPLATE_KINDS
from rlrt_recipe.testing.launch import run_cpu_demo

pytestmark = pytest.mark.e2e

STEPS = 3
RLRT = [
    "algorithm.adv_estimator=rlrt", "actor_rollout_ref.actor.optim.lr=1e-2", "+rlrt.score_all_rows=true",
    *(f"+rlrt.privileged_templates.{kind}='{IDENTITY_TEMPLATE}'" for kind in TEMPLATE_KINDS),
]
COLOCATE = ["trainer.v1.trainer_mode=rlrt_colocate_async", *RLRT]
SEPARATE = [
    "trainer.v1.trainer_mode=rlrt_separate_async", *RLRT,
    # verl's asserts: train batch (2) = parameter_sync_step × mini-batch (1); a rollout pool of its own (one fake GPU
    # beside the trainer's); a checkpoint engine other than naive (ours, registered by recipes/env/cpu.yaml)
    "trainer.v1.separate_async.parameter_sync_step=2", "actor_rollout_ref.rollout.nnodes=1",
    "actor_rollout_ref.rollout.n_gpus_per_node=1", "ray_kwargs.ray_init.num_gpus=2",
    "actor_rollout_ref.rollout.checkpoint_engine.backend=object_store",
]
STALENESS = "training/off_policy/trajectory_staleness/max"


@pytest.fixture(scope="module")
def colocate_run(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    experiment = tmp_path_factory.mktemp("e2e_colocate_async")
    output = run_cpu_demo(experiment, tiny_model_dir, tiny_data_dir, steps=STEPS, overrides=COLOCATE)
    return read_metrics(experiment), output


@pytest.fixture(scope="module")
def separate_run(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    experiment = tmp_path_factory.mktemp("e2e_separate_async")
    output = run_cpu_demo(experiment, tiny_model_dir, tiny_data_dir, steps=STEPS, overrides=SEPARATE)
    return read_metrics(experiment), output


def check_teacher_steps(metrics: dict[int, dict]) -> None:
    """Every consumed batch: one teacher call scoring every real row, τ = s under the identity template, every
    rlrt/* metric finite."""
    assert sorted(metrics) == list(range(1, STEPS + 1))
    for step, data in metrics.items():
        ours = {k: v for k, v in data.items() if k.startswith("rlrt/")}
        assert all(math.isfinite(float(v)) for v in ours.values()), (step, ours)
        assert data["rlrt/teacher_calls"] == 1.0, step
        assert data["rlrt/scored_row_frac"] == 1.0, step
        # τ = s: their means over the scored tokens (every step: all rows are scored), and Δ's largest value where
        # some scored row has A ≠ 0 (a step whose groups are all degenerate has no Δ statistics)
        assert abs(data["rlrt/teacher_logp_mean"] - data["rlrt/student_logp_mean"]) <= 1e-5, step
        assert data.get("rlrt/delta_abs_max", 0.0) <= 1e-5, (step, data.get("rlrt/delta_abs_max"))


def test_colocate_async_scores_each_consumed_batch_on_the_actors_weights(colocate_run):
    metrics, output = colocate_run
    print({step: (data["timing_s/step"], data["timing_s/teacher"], data[STALENESS]) for step, data in metrics.items()})
    check_teacher_steps(metrics)
    assert all(STALENESS in data for data in metrics.values())
    assert max(data[STALENESS] for data in metrics.values()) >= 1  # the warm-up batch: sampled one update earlier


def test_separate_async_scores_each_mini_batch_inside_the_pi_old_window(separate_run):
    """Two mini-batches per step, each scored once (the step's metrics average them): Δ = 0 on both, so the teacher
    of the second saw π_old like s did; s is a copy, so the second update's ratio differs from 1 (ppo_kl ≠ 0); the
    standalone rollout replica lags the trainer (a stale trajectory)."""
    metrics, output = separate_run
    print({step: (data["timing_s/step"], data["timing_s/teacher"], data[STALENESS], data["actor/ppo_kl"])
           for step, data in metrics.items()})
    check_teacher_steps(metrics)
    assert all(data["actor/ppo_kl"] != 0.0 for data in metrics.values())
    assert max(data[STALENESS] for data in metrics.values()) >= 1
