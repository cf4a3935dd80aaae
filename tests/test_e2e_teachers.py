"""Teachers beyond the live actor through verl's real main_ppo loop on CPU (one launch): the snapshot teacher,
copied from the actor into verl's reference model by our worker every N = 2 steps, over 4 steps with lr 1e-2.

RLRT with the identity template for every context, so the teacher prompt is the student's and Δ = τ − s
measures only the teacher's weights: Δ = 0 where the snapshot was just refreshed (steps 1 and 3, teacher =
θ_old), Δ ≠ 0 in between (steps 2 and 4, teacher = θ_old of the step before). A snapshot that aliased the
actor's weights instead of copying them would give Δ = 0 everywhere. The frozen θ₀ teacher (no LoRA) runs on
launch 1 of test_e2e_cpu.py (2 ranks, dynamic batch size).
"""

from __future__ import annotations

import pytest

from rlrt_recipe.logs import read_metrics
from rlrt_recipe.privileged import IDENTITY_TEMPLATE, TEMPLATE_KINDS
from rlrt_recipe.testing.launch import run_cpu_demo

pytestmark = pytest.mark.e2e

SYNC_STEPS, STEPS = 2, 4
SNAPSHOT = [
    "algorithm.adv_estimator=rlrt", "trainer.v1.trainer_mode=rlrt_sync", "actor_rollout_ref.actor.optim.lr=1e-2",
    "+rlrt.teacher=snapshot", f"+rlrt.teacher_sync_steps={SYNC_STEPS}",
    "+rlrt.score_all_rows=true", "data.train_batch_size=4",  # every row scored, 4 groups: Δ statistics every step
    *(f"+rlrt.privileged_templates.{kind}='{IDENTITY_TEMPLATE}'" for kind in TEMPLATE_KINDS),
]


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory, tiny_model_dir, tiny_data_dir):
    experiment = tmp_path_factory.mktemp("e2e_snapshot")
    output = run_cpu_demo(experiment, tiny_model_dir, tiny_data_dir, steps=STEPS, overrides=SNAPSHOT)
    return read_metrics(experiment), output


def test_snapshot_equals_the_actor_on_refresh_steps_and_lags_in_between(snapshot_run):
    metrics, _ = snapshot_run
    assert sorted(metrics) == [1, 2, 3, 4]
    for step, data in metrics.items():
        refreshed = (step - 1) % SYNC_STEPS == 0
        assert data["rlrt/teacher_age_steps"] == (0.0 if refreshed else 1.0), step
        assert ("timing_s/teacher_refresh" in data) == refreshed, step
        # every real row is scored (score_all_rows), so the means of τ and s over the scored tokens exist on every
        # step; the Δ statistics only where some scored row has A ≠ 0 (not on a step whose groups are all degenerate)
        mean_gap = abs(data["rlrt/teacher_logp_mean"] - data["rlrt/student_logp_mean"])
        if refreshed:
            assert mean_gap <= 1e-5 and data.get("rlrt/delta_abs_max", 0.0) <= 1e-5, step
        else:  # a copy, not an alias: the teacher is one update behind
            assert mean_gap > 1e-6 and data.get("rlrt/delta_abs_max", 1.0) > 1e-3, step
