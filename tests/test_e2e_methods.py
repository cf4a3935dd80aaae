"""Every teacher-based method through verl's real main_ppo loop on CPU (rlrt_sync, fp32, seeded reward).

Six launches of scripts/run_cpu_demo.sh, 2 steps each: a grpo baseline, rlrt, rlsd on 2 FSDP ranks with
verl's padding rows, opsd and grpo_opsd on a Qwen3-style chat template with thinking off and on, and rlsd
with the identity template (the end-to-end alignment guard). Every teacher step re-renders each real
row's student prompt with verl's token builder and raises unless it equals the stored prompt ids, so a
run that finishes proves the builder matches the agent loop's rendering for that template.
"""

from __future__ import annotations

import math

import pytest

from rlrt_recipe.logs import read_metrics
from rlrt_recipe.signals import lambda_at
from rlrt_recipe.testing.launch import run_cpu_demo

pytestmark = pytest.mark.e2e

TEACHER = ["trainer.v1.trainer_mode=rlrt_sync"]
RUNS = {
    "grpo": [],
    # 4 prompts × 4 rollouts: groups with two correct rollouts (siblings) are all but certain
    "rlrt": ["algorithm.adv_estimator=rlrt", *TEACHER, "data.train_batch_size=4"],
    # 2 ranks; 12 rows padded by verl to a multiple of lcm(2, 2 × 4) = 8, i.e. 4 padding rows
    "rlsd_2ranks": ["algorithm.adv_estimator=rlsd", *TEACHER, "trainer.n_gpus_per_node=2",
                    "data.train_batch_size=3", "actor_rollout_ref.actor.ppo_mini_batch_size=2"],
    # Qwen3-style template (enable_thinking off / on): the student-prompt check covers both renderings
    "opsd": ["algorithm.adv_estimator=opsd", *TEACHER, "+data.apply_chat_template_kwargs.enable_thinking=false"],
    # ... and the rlrt policy loss with the distillation term (teacher_log_probs must reach every micro-batch)
    "grpo_opsd": ["algorithm.adv_estimator=grpo_opsd", *TEACHER, "+data.apply_chat_template_kwargs.enable_thinking=true",
                  "actor_rollout_ref.actor.policy_loss.loss_mode=rlrt", "+rlrt.distill_loss_coef=0.1"],
    "identity": ["algorithm.adv_estimator=rlsd", *TEACHER, "+rlrt.privileged_templates.answer='{question}'"],
}


QWEN3_TEMPLATE_RUNS = ("opsd", "grpo_opsd")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, qwen3_model_dir, tiny_data_dir):
    """{name: {step: metrics}} for every launch in RUNS (same data and seed; model per QWEN3_TEMPLATE_RUNS)."""
    out = {}
    for name, overrides in RUNS.items():
        experiment = tmp_path_factory.mktemp(f"e2e_{name}")
        model = qwen3_model_dir if name in QWEN3_TEMPLATE_RUNS else tiny_model_dir
        run_cpu_demo(experiment, model, tiny_data_dir, steps=2, overrides=overrides)
        out[name] = read_metrics(experiment)
    return out


@pytest.mark.parametrize("name", ["rlrt", "rlsd_2ranks", "opsd", "grpo_opsd"])
def test_teacher_methods_run_and_log(runs, name):
    """Both steps logged; every rlrt/* metric and timing_s/teacher finite; the teacher moved Δ; the loss
    differs from the grpo run's."""
    metrics = runs[name]
    assert sorted(metrics) == [1, 2]
    for step, data in metrics.items():
        ours = {k: v for k, v in data.items() if k.startswith("rlrt/") or k in ("timing_s/teacher",)}
        assert "timing_s/teacher" in ours and "rlrt/scored_row_frac" in ours
        assert all(math.isfinite(float(v)) for v in ours.values()), ours
    # Δ statistics exist on steps with scored tokens (a step of degenerate groups has none)
    assert max(data.get("rlrt/delta_abs_mean", 0.0) for data in metrics.values()) > 0
    assert [d["actor/pg_loss"] for d in metrics.values()] != [d["actor/pg_loss"] for d in runs["grpo"].values()]


@pytest.mark.parametrize("name, estimator", [("rlrt", "rlrt"), ("rlsd_2ranks", "rlsd")])
def test_logged_lambda_follows_the_schedule(runs, name, estimator):
    schedule = {"rlrt": dict(schedule="constant", lam0=0.5), "rlsd": dict(schedule="linear_decay", lam0=0.5, decay_steps=50)}
    for step, data in runs[name].items():
        assert data["rlrt/lambda"] == pytest.approx(lambda_at(step, **schedule[estimator]))


def test_rlrt_gates_on_correct_rollouts_and_uses_siblings(runs):
    metrics = runs["rlrt"].values()
    assert all(0 < data["rlrt/gate_pass_frac"] < 1 for data in metrics)
    assert sum(data["rlrt/context/sibling"] for data in metrics) > 0


def test_padding_rows_are_not_counted_on_two_ranks(runs):
    """rlsd on 2 ranks: 12 real rows per step, whatever verl padded the batch to."""
    for data in runs["rlsd_2ranks"].values():
        assert sum(v for k, v in data.items() if k.startswith("rlrt/context/")) == 12


def test_identity_template_gives_zero_gap_end_to_end(runs):
    """Alignment guard: teacher prompt = student prompt ⇒ Δ = 0 on every scored token, through the real loop."""
    scored_steps = [data for data in runs["identity"].values() if data["rlrt/scored_row_frac"] > 0]
    assert scored_steps
    for data in scored_steps:
        assert data["rlrt/delta_abs_mean"] <= 1e-5


def test_distillation_loss_term_reaches_the_actor_update(runs):
    """loss_mode=rlrt with β_loss = 0.1: the installed loss saw teacher_log_probs and logged its term."""
    for data in runs["grpo_opsd"].values():
        assert data["actor/distill_loss"] > 0
        assert math.isfinite(data["actor/distill_loss"])


def test_grpo_baseline_logs_finite_actor_and_timing_metrics(runs):
    """Plain GRPO through main_ppo: both steps with finite actor/* and timing_s/* metrics, pg_loss ≠ 0, and no
    teacher step (the stock sync trainer)."""
    metrics = runs["grpo"]
    assert sorted(metrics) == [1, 2]
    for step, data in metrics.items():
        checked = {k: v for k, v in data.items() if k.startswith(("actor/", "timing_s/"))}
        assert {"actor/pg_loss", "actor/grad_norm", "timing_s/gen", "timing_s/update_actor"} <= set(checked)
        assert all(math.isfinite(float(v)) for v in checked.values()), checked
        assert data["actor/pg_loss"] != 0
        assert "timing_s/teacher" not in data and not any(k.startswith("rlrt/") for k in data)
