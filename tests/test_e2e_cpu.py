"""verl's real main_ppo loop on CPU: two launches of scripts/run_cpu_demo.sh, the second resuming the first, and a
third that evaluates the second's checkpoint with scripts/evaluate.sh (avg@k and pass@k from verl's validation).

Both run under ``rlrt_sync`` on 2 FSDP ranks, with a tiny random model that has a Qwen3-style chat template,
the seeded test reward (about half of each group correct) and lr 1e-2, 5 prompts × 4 rollouts per step
(20 real rows; verl pads the batch for the 2 ranks):

- launch 1, step 1, saves a checkpoint: RLRT scored by the frozen θ₀ teacher in verl's reference model (our
  worker class, no LoRA) with the identity template ``"{question}"`` for every context,
  so the teacher prompt equals the student's and Δ must be 0 on every scored token (the end-to-end
  alignment guard, here across ranks and padding rows), under the GPU recipes' ``use_dynamic_bsz=true`` with
  a token budget small enough to split every pass into several micro-batches, and with the distillation
  loss on (``has_teacher`` must survive verl's micro-batch permutation); chat template with thinking on,
  siblings' thinking stripped;
- launch 2 resumes from that checkpoint, step 2: RLSD with the default answer template and the distillation
  loss (β_loss = 0.1), scored by a snapshot teacher (N = 2) that the resume refreshes from the loaded actor
  (step 2 is off its schedule: said in a warning); thinking off.

Every teacher step re-renders each real row's student prompt with verl's token builder and raises unless it
equals the stored prompt ids, so finishing both launches proves the builder matches the agent loop for the
Qwen3 template with thinking on and off. The four methods on one rank are test_e2e_methods.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from rlrt_recipe.logs import launch_files, read_metrics
from rlrt_recipe.privileged import IDENTITY_TEMPLATE, TEMPLATE_KINDS
from rlrt_recipe.signals import lambda_at
from rlrt_recipe.testing.data import math_rows
from rlrt_recipe.testing.launch import ROOT, run_cpu_demo, run_script

pytestmark = pytest.mark.e2e

REAL_ROWS = 5 * 4
# lr 1e-2 moves the tiny model visibly in one update: a rollout left on stale weights shows
# rollout_probs_diff_mean ~5e-4 (CPU_BACKEND.md); with the weight sync it stays ~1e-9.
COMMON = [
    "trainer.save_freq=1", "actor_rollout_ref.actor.optim.lr=1e-2", "trainer.v1.trainer_mode=rlrt_sync",
    "trainer.n_gpus_per_node=2", "data.train_batch_size=5", "actor_rollout_ref.actor.ppo_mini_batch_size=2",
]
# Rows are at most 64 + 16 tokens: a 128-token budget per rank packs 1–3 rows per micro-batch.
DYNAMIC_BSZ = ["actor_rollout_ref.actor.use_dynamic_bsz=true", "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=128"]
LAUNCH_1 = [
    *COMMON, "algorithm.adv_estimator=rlrt", "+data.apply_chat_template_kwargs.enable_thinking=true",
    *(f"+rlrt.privileged_templates.{kind}='{IDENTITY_TEMPLATE}'" for kind in TEMPLATE_KINDS),
    *DYNAMIC_BSZ, "actor_rollout_ref.actor.policy_loss.loss_mode=self_distill", "+rlrt.distill_loss_coef=0.1",
    "+rlrt.sibling_strip_thinking=true", "+rlrt.teacher=frozen",
]
LAUNCH_2 = [
    *COMMON, "algorithm.adv_estimator=rlsd", "+data.apply_chat_template_kwargs.enable_thinking=false",
    "actor_rollout_ref.actor.policy_loss.loss_mode=self_distill", "+rlrt.distill_loss_coef=0.1",
    "+rlrt.teacher=snapshot", "+rlrt.teacher_sync_steps=2",  # resumed at step 2, off the schedule (1, 3, …)
]


@pytest.fixture(scope="module")
def two_launches(tmp_path_factory, qwen3_model_dir, tiny_data_dir):
    """(experiment dir, {step: metrics}, output of launch 1, output of launch 2)."""
    experiment_dir = tmp_path_factory.mktemp("e2e_resume")
    first = run_cpu_demo(experiment_dir, qwen3_model_dir, tiny_data_dir, steps=1, overrides=LAUNCH_1)
    second = run_cpu_demo(experiment_dir, qwen3_model_dir, tiny_data_dir, steps=2, overrides=LAUNCH_2)
    return experiment_dir, read_metrics(experiment_dir), first, second


def test_steps_log_finite_actor_and_timing_metrics(two_launches):
    """main_ppo exits 0 and logs both steps with finite actor/*, timing_s/* and rlrt/* metrics; pg_loss is not 0
    (two updates per step: the second mini-batch is off-policy, and the seeded reward gives advantages)."""
    metrics = two_launches[1]
    assert sorted(metrics) == [1, 2]
    for step, data in metrics.items():
        checked = {key: value for key, value in data.items() if key.startswith(("actor/", "timing_s/", "rlrt/"))}
        assert {"actor/pg_loss", "actor/grad_norm", "timing_s/step", "timing_s/gen", "timing_s/update_actor",
                "timing_s/teacher", "rlrt/scored_row_frac"} <= set(checked)
        bad = {key: value for key, value in checked.items() if not math.isfinite(float(value))}
        assert not bad, f"step {step}: non-finite metrics {bad}"
        assert abs(data["actor/pg_loss"]) > 1e-4, f"step {step}: pg_loss {data['actor/pg_loss']} is ~0"
        assert data["critic/advantages/max"] > 0 > data["critic/advantages/min"], f"step {step}: no advantages"


def test_rollout_follows_the_actor_weights(two_launches):
    """With lr 1e-2, rollout and actor log-probs agree at every step, including the first step after a
    resume: the hf rollout receives the actor's weights after init, after each update and after loading."""
    for step, data in two_launches[1].items():
        assert data["training/rollout_probs_diff_valid"] == 1.0
        assert data["training/rollout_probs_diff_mean"] < 1e-4, f"step {step}: rollout uses stale weights"


def test_second_launch_resumes_from_the_step_1_checkpoint(two_launches):
    """Checkpoint/resume on CPU with 2 ranks: launch 1 saves global_step_1; launch 2 loads it and logs only step 2."""
    experiment_dir, _, first, second = two_launches
    checkpoints = experiment_dir / "checkpoints"
    assert (checkpoints / "global_step_1" / "actor").is_dir()
    assert (checkpoints / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert f"Resuming from {checkpoints / 'global_step_1'}" in second
    first_log, second_log = launch_files(experiment_dir)
    assert sorted(read_metrics(first_log)) == [1]
    assert sorted(read_metrics(second_log)) == [2]
    assert f"metrics log: {first_log}" in first


def test_lambda_is_read_at_the_restored_step(two_launches):
    """λ_k uses verl's global step: RLRT's constant λ at step 1, then RLSD's linear decay at the resumed step 2."""
    metrics = two_launches[1]
    assert metrics[1]["rlrt/lambda"] == pytest.approx(lambda_at(1, schedule="constant", lam0=0.5))
    assert metrics[2]["rlrt/lambda"] == pytest.approx(lambda_at(2, schedule="linear_decay", lam0=0.5, decay_steps=50))


def test_padding_rows_are_not_counted_on_two_ranks(two_launches):
    """20 real rows per step, whatever verl padded the batch to for 2 ranks."""
    for data in two_launches[1].values():
        assert sum(v for k, v in data.items() if k.startswith("rlrt/context/")) == REAL_ROWS


def test_rlrt_gates_on_correct_rollouts_and_gives_them_a_context(two_launches):
    """Launch 1: some but not all rollouts pass RLRT's gate, and they get a teacher context: a complete sibling
    or (the demo recipe's fallback) the answer. A random model seldom ends with EOS, so siblings are checked on
    the toy model (test_e2e_methods.py)."""
    data = two_launches[1][1]
    assert 0 < data["rlrt/gate_pass_frac"] < 1
    assert data["rlrt/context/sibling"] + data["rlrt/context/fallback_answer"] > 0


def test_identity_template_gives_zero_gap_end_to_end(two_launches):
    """Alignment guard: teacher prompt = student prompt ⇒ Δ = 0 on every scored token, on 2 ranks with padding
    rows and dynamic batch size (the teacher call's own token budget, verl's rearranged micro-batches)."""
    data = two_launches[1][1]
    assert data["rlrt/scored_row_frac"] > 0
    assert data.get("rlrt/delta_abs_max", 0.0) <= 1e-5  # Δ statistics exist where a scored row has A ≠ 0
    assert data["rlrt/teacher_logp_mean"] == pytest.approx(data["rlrt/student_logp_mean"], abs=1e-5)
    # the teacher is the frozen θ₀ in verl's reference model (no LoRA), equal to θ_old at step 1
    assert data["rlrt/teacher_age_steps"] == 0.0 and "timing_s/teacher_refresh" not in data


def test_dynamic_batch_size_with_the_distillation_loss(two_launches):
    """Launch 1 ran the update under use_dynamic_bsz with loss_mode=self_distill, β_loss = 0.1: every micro-batch carried
    teacher_log_probs and has_teacher through verl's permutation (a missing field raises). τ = s at θ_old, so the
    term is only what the first mini-batch's update (lr 1e-2) moved the second one: small (~0.01), not 0."""
    data = two_launches[1][1]
    assert "actor/distill_loss" in data
    assert 0.0 <= data["actor/distill_loss"] < 0.5
    assert math.isfinite(data["actor/pg_loss"]) and abs(data["actor/pg_loss"]) > 1e-4


def test_distillation_loss_term_reaches_the_actor_update(two_launches):
    """Launch 2: the answer reference moves Δ, and loss_mode=self_distill with β_loss = 0.1 saw teacher_log_probs in
    every micro-batch and logged its term."""
    data = two_launches[1][2]
    moved = data.get("rlrt/delta_abs_mean", abs(data["rlrt/teacher_logp_mean"] - data["rlrt/student_logp_mean"]))
    assert moved > 0  # Δ statistics where a scored row has A ≠ 0, else the means of τ and s over the scored tokens
    assert data["actor/distill_loss"] > 0 and math.isfinite(data["actor/distill_loss"])


def test_demo_ends_with_a_summary_a_person_reads(two_launches):
    """run_cpu_demo.sh ends with one line per step — reward, rows the teacher scored out of the real rows, Δ mean,
    the teacher's share of the step — and the path of the metrics log."""
    _, metrics, first, _ = two_launches
    header = next(line for line in first.splitlines() if "teacher share" in line)
    assert header.split() == ["step", "reward", "scored", "rows", "Δ", "mean", "teacher", "share"]
    row = first.splitlines()[first.splitlines().index(header) + 1].split()
    assert row[0] == "1" and float(row[1]) == pytest.approx(metrics[1]["critic/score/mean"], abs=1e-3)
    assert row[2:5] == [f"{metrics[1]['rlrt/scored_rows']:.0f}", "/", str(REAL_ROWS)]
    assert row[-1].endswith("%") and 0 < float(row[-1][:-1]) < 100


def test_a_resumed_snapshot_teacher_is_refreshed_from_the_loaded_actor(two_launches):
    """verl rebuilds the reference model from the model path on a restart: the first teacher step of launch 2
    copies the loaded actor into it (age 0) and warns that step 2 is off the N = 2 schedule, as does check_config
    for save_freq = 1, not a multiple of N."""
    _, metrics, _, second = two_launches
    assert metrics[2]["rlrt/teacher_age_steps"] == 0.0 and "timing_s/teacher_refresh" in metrics[2]
    assert "snapshot teacher refreshed at step 2 (first step of this launch)" in second
    assert "trainer.save_freq=1 not a multiple of rlrt.teacher_sync_steps=2" in second


# --- evaluation of launch 2's checkpoint: scripts/evaluate.sh through verl's validation (one more launch) ----------

EVAL_SAMPLES = 4


@pytest.fixture(scope="module")
def evaluation(two_launches, qwen3_model_dir, tmp_path_factory):
    """scripts/evaluate.sh on the step-2 checkpoint (2 ranks, as saved): verl's val_only pass with 4 sampled responses
    per problem on 4 problems stored as the ``math500`` benchmark, the seeded test reward; then make_table.py.
    Returns (eval dir, output, table markdown)."""
    data_dir = tmp_path_factory.mktemp("eval_data")
    rows = [{**row, "data_source": "math500"} for row in math_rows(4, seed=2, split="test")]
    pd.DataFrame(rows).to_parquet(data_dir / "math500.parquet")
    pd.DataFrame(math_rows(8, seed=3)).to_parquet(data_dir / "train.parquet")
    eval_dir = tmp_path_factory.mktemp("eval") / "rlrt"
    env = {"CKPT": str(two_launches[0] / "checkpoints" / "global_step_2"), "METHOD": "rlrt", "DATA_DIR": str(data_dir),
           "TRAIN_FILE": str(data_dir / "train.parquet"), "BENCHMARKS": "math500", "EVAL_DIR": str(eval_dir),
           "N_SAMPLES": str(EVAL_SAMPLES), "PASS_K": "1 2 4", "MAX_PROMPT_LENGTH": "64", "EVAL_RESPONSE_LENGTH": "16",
           "VERL_PLATFORM": "cpu"}
    overrides = ["+env=cpu", f"actor_rollout_ref.model.path={qwen3_model_dir}", "trainer.n_gpus_per_node=2",
                 "reward.custom_reward_function.path=pkg://rlrt_recipe.testing.reward",
                 "reward.custom_reward_function.name=compute_score"]
    output = run_script("evaluate.sh", overrides, env=env, timeout=900)
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_table.py"), "--backbone", "qwen3_4b_base", "--n", str(EVAL_SAMPLES),
         "--run", f"rlrt={eval_dir}", "--out", str(eval_dir.parent / "table")], capture_output=True, text=True, check=True)
    return eval_dir, output, (eval_dir.parent / "table.md").read_text()


def test_evaluation_reports_avg_and_unbiased_pass_at_k_from_verls_dump(evaluation):
    """evaluate.sh loads the step-2 checkpoint into verl's validation; pass_at_k.py reads the per-sample dump:
    avg@4 equals verl's own val-core metric, pass@1 equals avg@4, and pass@k is recomputed by hand from the dump's
    per-problem correct counts with 1 − C(n−c, k)/C(n, k)."""
    eval_dir, output, _ = evaluation
    assert "global_step_2" in output  # verl loaded the training run's step-2 checkpoint
    result = json.loads((eval_dir / "pass_at_k.json").read_text())
    bench = result["benchmarks"]["math500"]
    assert (bench["problems"], bench["samples_per_problem"], result["n"]) == (4, EVAL_SAMPLES, EVAL_SAMPLES)
    (values,) = read_metrics(eval_dir).values()
    assert bench["avg"] == pytest.approx(values[f"val-core/math500/acc/mean@{EVAL_SAMPLES}"], abs=1e-9)
    assert bench["pass@k"]["1"] == pytest.approx(bench["avg"], abs=1e-9)
    samples = [json.loads(line) for path in sorted((eval_dir / "samples").glob("*.jsonl"))
               for line in path.read_text().splitlines()]
    assert len(samples) == 4 * EVAL_SAMPLES
    correct: dict[str, int] = {}
    for sample in samples:
        problem = sample["uid"].rsplit("_", 2)[0]
        correct[problem] = correct.get(problem, 0) + int(sample["acc"] >= 0.5)
    assert len(correct) == 4
    for k in (2, 4):
        by_hand = sum(1 - math.comb(EVAL_SAMPLES - c, k) / math.comb(EVAL_SAMPLES, k) for c in correct.values()) / 4
        assert bench["pass@k"][str(k)] == pytest.approx(by_hand, abs=1e-9)
    assert 0 < bench["avg"] < 1  # the seeded reward marks about half correct


def test_evaluation_table_puts_ours_beside_the_papers(evaluation):
    """make_table.py --n 4: our "avg@4 / pass@4" cell for MATH500 from the evaluation, the five benchmarks not
    evaluated "— / —", beside the paper's Table 1/3 rows for Qwen3-4B-Base."""
    eval_dir, _, table = evaluation
    bench = json.loads((eval_dir / "pass_at_k.json").read_text())["benchmarks"]["math500"]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("method", "---"):
            rows[(cells[0], cells[1])] = cells
    ours = rows[("rlrt", "ours")]
    assert ours[2:7] == ["— / —"] * 5 and ours[8] == "—"  # the six-benchmark mean needs all six
    assert ours[7] == f"{100 * bench['avg']:.1f} / {100 * bench['pass@k'][str(EVAL_SAMPLES)]:.1f}"
    assert rows[("rlrt", "paper")][2] == "22.5 / 50.0"  # RLRT Tables 1/3: Qwen3-4B-Base, AIME24
