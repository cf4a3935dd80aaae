"""Image prompts through verl's real main_ppo loop on CPU (two launches, issue 20): RLSD for two steps on the VL demo
(``VL=1 scripts/run_cpu_demo.sh``: the tiny Qwen3-VL model, the generated image-counting task, ``+env=cpu_vl``), every
row scored by the teacher.

With the identity template the teacher prompt is the student's, images and M-RoPE positions included, so Δ = τ − s
must vanish on every scored image row: the guard that image placeholders, pixels and positions line up between the
student's and the teacher's rows. With RLSD's answer template the teacher sees the reference answer after the
images, and Δ must not vanish.
"""

from __future__ import annotations

import math

import pytest

from rlrt_recipe.logs import read_metrics
from rlrt_recipe.privileged import IDENTITY_TEMPLATE, TEMPLATE_KINDS
from rlrt_recipe.testing.launch import run_script

pytestmark = pytest.mark.e2e

RLSD = ["algorithm.adv_estimator=rlsd", "+rlrt.score_all_rows=true"]  # the demo recipe's trainer mode: rlrt_sync
IDENTITY = [f"+rlrt.privileged_templates.{kind}='{IDENTITY_TEMPLATE}'" for kind in TEMPLATE_KINDS]
ROWS = 8  # the demo's 2 prompts × 4 rollouts


@pytest.fixture(scope="module")
def vl_runs(tmp_path_factory):
    """{template: {step: metrics}} of the identity and the answer-template launch (the first builds the model)."""
    root = tmp_path_factory.mktemp("e2e_vl")
    runs = {}
    for name, overrides in (("identity", RLSD + IDENTITY), ("answer", RLSD)):
        env = {"VL": "1", "MODEL_DIR": str(root / "model"), "DATA_DIR": str(root / "data"),
               "EXPERIMENT_DIR": str(root / name), "STEPS": "2"}
        run_script("run_cpu_demo.sh", overrides, env=env, timeout=900)
        runs[name] = read_metrics(root / name)
    return runs


def test_identity_template_gives_zero_gap_on_every_scored_image_row(vl_runs):
    for step, data in vl_runs["identity"].items():
        assert data["rlrt/teacher_calls"] == 1.0 and data["rlrt/scored_rows"] == ROWS, step
        assert data["rlrt/context/answer"] == ROWS, step
        assert data["rlrt/teacher_token_ratio"] == 1.0, step  # the same prompts, image tokens included
        assert abs(data["rlrt/teacher_logp_mean"] - data["rlrt/student_logp_mean"]) <= 1e-5, step
        if "rlrt/delta_abs_max" in data:  # rows with A ≠ 0 (a step whose groups all tie has none)
            assert data["rlrt/delta_abs_max"] <= 1e-5, step
        assert data["training/rollout_probs_diff_mean"] < 1e-6, step  # the actor's pixels are the rollout's
    assert sorted(vl_runs["identity"]) == [1, 2]


def test_answer_template_changes_the_teachers_log_probs(vl_runs):
    """Δ per token, not its mean: on a random model the reference answer moves each token's log-prob by up to ~0.1
    (measured) while the means of τ and s over a step can agree to ~5e-4."""
    gaps = []
    for step, data in vl_runs["answer"].items():
        assert data["rlrt/teacher_calls"] == 1.0 and data["rlrt/scored_rows"] == ROWS, step
        assert data["rlrt/teacher_token_ratio"] > 1.0, step  # the reference answer after the images
        assert data["rlrt/teacher_logp_mean"] != data["rlrt/student_logp_mean"], step
        assert all(math.isfinite(float(v)) for k, v in data.items() if k.startswith("rlrt/")), step
        if "rlrt/delta_abs_max" in data:  # rows with A ≠ 0
            gaps.append(data["rlrt/delta_abs_max"])
    assert sorted(vl_runs["answer"]) == [1, 2]
    assert gaps and min(gaps) > 1e-2, gaps
