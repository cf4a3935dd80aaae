"""GRPO, GRPO+EB, RLSD, RLRT, SDPO and SRPO (the RLRT comparison's methods) through verl's real main_ppo loop: the
comparison script's ``--quick`` mode (scripts/compare_methods_cpu.sh) on its two tasks, which is also every
method's end-to-end run.

Six launches, 2 steps each (RLSD 3). GRPO, RLSD and RLRT run the exploration experiment's quick mode
(``TASK=explore``: the session's ``explore_warm_start`` model on "reach the target", 4 prompts × 8 rollouts, verl's
validation sampling 4 held-out problems 8 times after the last step, then the experiment's report: pass@k,
distinct correct paths, one figure per claim). GRPO+EB, SDPO and SRPO run the toy's (the session's
``toy_warm_start`` model on single-digit sums with the math-verify reward, 2 prompts × 4 rollouts, then the toy's
table and PNG). The resume pair in test_e2e_cpu.py covers 2 ranks with verl's padding rows, the identity template,
the Qwen3 template and the distillation loss; this file covers each method's own behaviour under the trainer.
SDPO runs with the identity template and the live teacher in one mini-batch, where its divergence must vanish;
SRPO with its recipe's frozen θ₀ teacher and two mini-batches. (OPSD, RLSD's baseline, is not in the RLRT
comparison.)
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from rlrt_explore import task as explore_task

from rlrt_recipe.evaluation import read_dump, split_uid
from rlrt_recipe.integration.topk import stored_topk_bytes
from rlrt_recipe.logs import read_metrics
from rlrt_recipe.signals import lambda_at
from rlrt_recipe.testing.launch import run_script

pytestmark = pytest.mark.e2e

EXPLORE_METHODS = ("grpo", "rlsd", "rlrt")  # the exploration experiment's three
TOY_METHODS = ("grpo_eb", "sdpo", "srpo")
METHODS = EXPLORE_METHODS + TOY_METHODS
TEACHER_METHODS = ("rlsd", "rlrt", "sdpo", "srpo")
# real rows per step: 4 prompts × 8 rollouts on the exploration task (twice the quick mode's prompts: at its 15 %
# pass rate, 2 steps × 4 groups hold two correct rollouts somewhere ~97 % of the time, RLRT's teacher's cue), 2 × 4
# on the toy (the quick mode's sizes)
EXPLORE_PROMPTS, EXPLORE_ROWS, TOY_ROWS = 4, 4 * 8, 2 * 4
ROWS = {**{method: EXPLORE_ROWS for method in EXPLORE_METHODS}, **{method: TOY_ROWS for method in TOY_METHODS}}
EXPLORE_EVAL_N, EXPLORE_HELDOUT = 8, 4  # the quick mode's validation: pass@k for k = 1, 2, 4, 8
# RLSD runs 3 steps with K = 1, so λ is 0.5, 0, 0: the teacher pass must stop once λ is 0 (issue 13).
RLSD_DECAY_STEPS, RLSD_STEPS = 1, 3
STEPS = {method: list(range(1, (RLSD_STEPS if method == "rlsd" else 2) + 1)) for method in METHODS}
# RLRT as on the instruct backbone (RLRT Table 5: ε_w 0.5, λ decaying over 30 steps; scaled down to 2 steps here)
# with rollout importance sampling on (token level, clip 2), as every method of the RLRT comparison runs; verl's
# rollout dump shows which rollouts were correct in which group.
RLRT_DECAY_STEPS = 2
RLRT_INSTRUCT = ["+rlrt.backbone_kind=instruct", f"+rlrt.lambda_decay_steps={RLRT_DECAY_STEPS}",
                 "algorithm.rollout_correction.rollout_is=token", "algorithm.rollout_correction.rollout_is_threshold=2.0"]
# The top-K losses with K = 16 of the toy's 512-row vocabulary (K = 100 in the recipes). SDPO: the identity template,
# the live teacher and one mini-batch per step (the whole batch), so the teacher is the student exactly; SRPO: its
# recipe's frozen teacher, two mini-batches and rollout importance sampling.
TOPK_K = 16
SDPO_IDENTITY = [f"+rlrt.distill_topk={TOPK_K}", "++rlrt.teacher=live", "+rlrt.privileged_templates.rollout='{question}'",
                 "actor_rollout_ref.actor.ppo_mini_batch_size=2"]
SRPO = [f"+rlrt.distill_topk={TOPK_K}", "algorithm.rollout_correction.rollout_is=token",
        "algorithm.rollout_correction.rollout_is_threshold=2.0"]


def _quick(out, warm_start: dict, methods: tuple[str, ...], **env: str) -> tuple:
    """(output dir, {method: {step: metrics}}, script output) of ``compare_methods_cpu.sh --quick``."""
    env = {"OUT": str(out), "MODEL_DIR": warm_start["model_dir"], "DATA_DIR": warm_start["data_dir"],
           "METHODS": " ".join(methods), **env}
    output = run_script("compare_methods_cpu.sh", ["--quick"], env=env, timeout=2400)
    return out, {method: read_metrics(out / "runs" / method / "seed1") for method in methods}, output


@pytest.fixture(scope="module")
def explore(tmp_path_factory, explore_warm_start):
    """The exploration experiment's quick mode: GRPO, RLSD, RLRT."""
    out = tmp_path_factory.mktemp("explore_quick")
    return _quick(out, explore_warm_start, EXPLORE_METHODS, TASK="explore", BATCH=str(EXPLORE_PROMPTS),
                  LAMBDA_DECAY=str(RLSD_DECAY_STEPS),
                  ARGS_rlsd=f"trainer.total_training_steps={RLSD_STEPS} trainer.test_freq={RLSD_STEPS}",
                  ARGS_rlrt=" ".join([*RLRT_INSTRUCT, f"trainer.rollout_data_dir={out / 'rlrt_rollouts'}"]))


@pytest.fixture(scope="module")
def toy(tmp_path_factory, toy_warm_start):
    """The toy comparison's quick mode: GRPO+EB, SDPO, SRPO."""
    return _quick(tmp_path_factory.mktemp("toy_comparison_quick"), toy_warm_start, TOY_METHODS,
                  ARGS_sdpo=" ".join(SDPO_IDENTITY), ARGS_srpo=" ".join(SRPO))


def metrics_of(request, method: str) -> dict:
    """{step: metrics} of ``method``'s launch, from the quick run of its task (started on first use)."""
    return request.getfixturevalue("explore" if method in EXPLORE_METHODS else "toy")[1][method]


def test_toy_quick_mode_reuses_the_warm_start_and_writes_table_and_plot(toy):
    """The script skips the warm start when the model exists, and reports every method in its table and PNG."""
    out, _, output = toy
    assert "warm_start.py" not in output
    assert _row_names((out / "summary.md").read_text()) == list(TOY_METHODS)
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explore_quick_mode_reports_pass_at_k_paths_and_one_figure_per_claim(explore):
    """The exploration report from verl's validation dump: every method's row and both figures; pass@1 is verl's
    own validation accuracy (``val-core/<source>/acc/mean@8``, computed by verl from the same samples), pass@k
    rises with k up to the share of problems solved at all, and a problem has at most n distinct correct paths."""
    import json

    out, runs, output = explore
    assert "-m rlrt_explore" not in output  # the session's warm start, reused
    methods_table, paired_table = (out / "summary.md").read_text().split("\n\n")
    assert _row_names(methods_table) == list(EXPLORE_METHODS)
    assert _row_names(paired_table) == ["rlsd", "rlrt"]  # each method − GRPO, seed by seed
    summary, paired = (json.loads((out / f"summary{part}.json").read_text()) for part in ("", "_paired"))
    pass_at_1 = {method: summary[method]["pass_at_k"]["1"]["mean"] for method in EXPLORE_METHODS}
    assert paired["rlrt"]["pass@1"]["mean"] == pytest.approx(pass_at_1["rlrt"] - pass_at_1["grpo"])  # one seed
    for figure in ("summary_reward.png", "summary_pass_at_k.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    accuracy = f"val-core/{explore_task.DATA_SOURCE}/acc/mean@{EXPLORE_EVAL_N}"
    for method in EXPLORE_METHODS:
        figures, last = summary[method], runs[method][max(runs[method])]
        assert (figures["seeds"], figures["n"], figures["problems"]) == (1, EXPLORE_EVAL_N, EXPLORE_HELDOUT)
        pass_at = [figures["pass_at_k"][str(k)]["mean"] for k in (1, 2, 4, 8)]
        assert pass_at[0] == pytest.approx(last[accuracy], abs=1e-9)
        assert all(0.0 <= a <= b <= 1.0 for a, b in zip(pass_at, pass_at[1:])), pass_at
        solved = sum(c > 0 for c in _correct_per_group(out / "runs" / method / "seed1" / "val").values())
        assert pass_at[-1] == pytest.approx(solved / EXPLORE_HELDOUT)  # pass@n: solved at least once
        assert 0.0 <= figures["distinct_correct_paths"]["mean"] <= EXPLORE_EVAL_N
        assert [int(step) for step in figures["reward"]] == STEPS[method]


def _row_names(table: str) -> list[str]:
    """The first column of a markdown table's body rows."""
    return [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:]


def _correct_per_group(dump) -> Counter:
    """{prompt text: correct samples} of verl's validation dump (the last step's file of the directory)."""
    counts: Counter = Counter()
    for sample in read_dump(dump):
        counts[sample["input"]] += float(sample["score"]) >= 1.0
    return counts


def test_grpo_runs_on_the_stock_trainer(explore):
    """Plain GRPO: both steps with finite actor/* and timing_s/* metrics, pg_loss ≠ 0, and no teacher step."""
    metrics = explore[1]["grpo"]
    assert sorted(metrics) == [1, 2]
    for data in metrics.values():
        checked = {k: v for k, v in data.items() if k.startswith(("actor/", "timing_s/"))}
        assert {"actor/pg_loss", "actor/grad_norm", "timing_s/gen", "timing_s/update_actor"} <= set(checked)
        assert all(math.isfinite(float(v)) for v in checked.values()), checked
        assert "timing_s/teacher" not in data and not any(k.startswith("rlrt/") for k in data)


@pytest.mark.parametrize("method", TEACHER_METHODS)
def test_teacher_methods_log_finite_signals_every_step(request, method):
    """rlrt_sync runs the teacher step on every step; every rlrt/* metric and timing_s/teacher is finite and the
    context counts add up to the step's real rows."""
    metrics = metrics_of(request, method)
    assert sorted(metrics) == STEPS[method]
    for step, data in metrics.items():
        ours = {k: v for k, v in data.items() if k.startswith("rlrt/") or k == "timing_s/teacher"}
        assert {"timing_s/teacher", "rlrt/scored_row_frac", "rlrt/degenerate_group_frac"} <= set(ours)
        assert all(math.isfinite(float(v)) for v in ours.values()), (step, ours)
        assert sum(v for k, v in data.items() if k.startswith("rlrt/context/")) == ROWS[method]
        if method in TOY_METHODS:  # math-verify's timeout key, read back from the batch
            assert data["rlrt/reward_timeout_frac"] == 0.0
        else:  # the exploration verifier has no timeout: no key, no metric
            assert "rlrt/reward_timeout_frac" not in data


@pytest.mark.parametrize("method, schedule", [
    ("rlsd", dict(schedule="linear_decay", lam0=0.5, decay_steps=RLSD_DECAY_STEPS)),
    ("rlrt", dict(schedule="linear_decay", lam0=0.5, decay_steps=RLRT_DECAY_STEPS)),  # instruct's schedule
])
def test_logged_lambda_follows_the_methods_schedule(explore, method, schedule):
    for step, data in explore[1][method].items():
        assert data["rlrt/lambda"] == pytest.approx(lambda_at(step, **schedule))


def test_rlsd_runs_no_teacher_pass_once_lambda_is_zero(explore):
    """Issue 13: with K = 1, λ = 0.5, 0, 0 and no distillation loss, so the teacher is called on step 1 only —
    when step 1 has a group with both outcomes (A ≠ 0 somewhere; CPU rollouts differ between launches, and a step
    whose groups all tie has no row whose Â reads the teacher); the fields are still written for every row (the
    advantage step reads them: the run would fail otherwise)."""
    rlsd = explore[1]["rlsd"]
    step_one_scores = rlsd[1]["rlrt/degenerate_group_frac"] < 1.0
    assert [rlsd[step]["rlrt/teacher_calls"] for step in STEPS["rlsd"]] == [float(step_one_scores), 0.0, 0.0]
    assert (rlsd[1]["rlrt/scored_rows"] > 0) == step_one_scores
    assert [rlsd[step]["rlrt/scored_rows"] for step in STEPS["rlsd"]][1:] == [0.0, 0.0]


def _stored_topk_bytes(data: dict) -> float:
    """What the step's top-K fields occupy for its real rows (topk.stored_topk_bytes, from the logged lengths)."""
    response_tokens = data["response_length/mean"] * TOY_ROWS
    return stored_topk_bytes(TOPK_K, response_tokens=response_tokens,
                             routed_tokens=data["rlrt/routed_token_frac"] * response_tokens,
                             placeholder_rows=TOY_ROWS - data["rlrt/context/sibling"])


def test_sdpo_with_the_student_as_teacher_has_zero_divergence_and_gradient(toy):
    """SDPO's loss through the whole top-K path (θ_old's ids from the actor, the teacher's log-probs gathered there,
    the live student's at the same ids in the update) is zero when the teacher is the student: identity template,
    live teacher, one mini-batch. Only the bf16 storage of the teacher's values remains (~1e-5); a misaligned id or
    position would give the divergence of unrelated distributions (~0.04 on this model, seen with a frozen teacher)."""
    sdpo = toy[1]["sdpo"]
    first = sdpo[1]
    assert first["rlrt/scored_rows"] > 0 and first["rlrt/routed_token_frac"] > 0
    assert first["rlrt/teacher_logp_mean"] == pytest.approx(first["rlrt/student_logp_mean"], abs=1e-6)
    assert 0.0 <= first["actor/topk_divergence"] < 1e-4
    assert first["actor/grad_norm"] < 1e-3
    for step, data in sdpo.items():
        assert "actor/pg_loss" not in data  # no surrogate: the divergence is the whole loss
        assert data["rlrt/topk_bytes"] == pytest.approx(_stored_topk_bytes(data), rel=1e-6), step
        assert (data["rlrt/routed_token_frac"] > 0) == (data["rlrt/context/sibling"] > 0), step


def test_srpo_routes_wrong_rollouts_to_the_frozen_teacher_and_the_rest_to_grpo(toy):
    """SRPO with θ₀ frozen in verl's reference model: only wrong rollouts with a correct sibling get a
    demonstration, the GRPO part and the weighted divergence are both finite, the teacher's top-K mass on θ_old's
    ids is a probability, and the stored bytes follow the per-token layout."""
    srpo = toy[1]["srpo"]
    assert sorted(srpo) == STEPS["srpo"]
    assert any(data["rlrt/context/sibling"] > 0 for data in srpo.values())
    for step, data in srpo.items():
        wrong_rows = round(TOY_ROWS * (1.0 - data["critic/score/mean"]))
        assert data["rlrt/context/sibling"] <= wrong_rows, step
        assert data["rlrt/teacher_age_steps"] == step - 1  # frozen: θ₀
        assert math.isfinite(data["actor/pg_loss"]) and data["actor/topk_loss"] >= 0.0
        assert data["rlrt/topk_bytes"] == pytest.approx(_stored_topk_bytes(data), rel=1e-6), step
        if data["rlrt/context/sibling"] > 0:
            assert 0.0 < data["rlrt/teacher_topk_mass"] <= 1.0 + 1e-6
            assert 0.0 < data["rlrt/routed_token_frac"] < 1.0
            assert data["actor/topk_divergence"] > 1e-4  # θ₀ reading a sibling is not the student
        else:
            assert data["rlrt/routed_token_frac"] == 0.0 and data["actor/topk_loss"] == 0.0


def _rows_with_a_complete_correct_sibling(groups: dict[str, list[tuple[bool, bool]]]) -> int:
    """RLRT's sibling rule, counted: the correct rows with another correct, complete row in their group, from
    ``{group: [(correct, complete), ...]}``."""
    return sum(ok and sum(o and c for o, c in rows) - (ok and complete) > 0
               for rows in groups.values() for ok, complete in rows)


def test_rlrt_teacher_reads_only_correct_rollouts_with_a_complete_correct_sibling(explore, explore_warm_start):
    """RLRT's gate and sibling rule, group by group, against verl's own rollout dump (uid groups, verl's scores):
    the gate passes exactly the correct rollouts, and a correct rollout gets a sibling context iff another
    correct rollout of its group ended with EOS, else no teacher. The dump has text, not tokens: a response
    re-tokenized (the tokenizer verl loads) to ≤ 21 tokens surely ended before the 24-token limit and one of
    ≥ 26 surely did not; between, a sampled non-canonical token split could tip it, so the count is bounded by
    both readings — equal whenever no correct response is that long."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(explore_warm_start["model_dir"])
    out, runs, _ = explore
    for step, data in runs["rlrt"].items():
        groups: dict[str, list[tuple[bool, int]]] = {}  # uid group → (correct, re-tokenized length) per rollout
        for sample in read_dump(out / "rlrt_rollouts" / f"{step}.jsonl"):
            length = len(tokenizer.encode(sample["output"], add_special_tokens=False))
            groups.setdefault(split_uid(sample["uid"])[0], []).append((float(sample["score"]) >= 1.0, length))
        correct = sum(ok for rows in groups.values() for ok, _ in rows)
        surely, maybe = (_rows_with_a_complete_correct_sibling(
            {group: [(ok, n <= longest) for ok, n in rows] for group, rows in groups.items()}) for longest in (21, 25))
        assert sum(len(rows) for rows in groups.values()) == ROWS["rlrt"]
        assert data["rlrt/gate_pass_frac"] == pytest.approx(correct / ROWS["rlrt"]) == \
            pytest.approx(data["critic/score/mean"])
        assert surely <= data["rlrt/context/sibling"] <= maybe, (step, surely, maybe)
        assert data["rlrt/context/sibling"] + data["rlrt/context/none"] == correct, step
        assert data["rlrt/scored_rows"] == data["rlrt/context/sibling"]


def test_rlrt_runs_the_instruct_settings_with_rollout_importance_sampling(explore):
    """The RLRT launch resolves instruct's ε_w 0.5 (every clipped weight inside [0.5, 1.5]) and decaying λ, and
    verl's rollout correction runs beside the teacher step: IS weights (rollout_corr/rollout_is_*) on every step."""
    for step, data in explore[1]["rlrt"].items():
        assert math.isfinite(data["rollout_corr/rollout_is_mean"]), f"step {step}: no rollout IS weights"
        if "rlrt/w_mean" in data:
            assert 0.5 <= data["rlrt/w_mean"] <= 1.5
    # verl logs its off-policy diagnostics (rollout_corr/*) always; the IS weights only where rollout_is is set
    assert not any("rollout_corr/rollout_is_mean" in data for data in explore[1]["rlsd"].values())


def test_grpo_eb_reads_the_old_log_prob_entropy_without_a_teacher(toy):
    """GRPO+EB under rlrt_sync: no teacher pass, the entropy bonus is logged (ψ ≥ 0, the cap bound is a fraction)
    and every step trains with finite metrics."""
    metrics = toy[1]["grpo_eb"]
    assert sorted(metrics) == STEPS["grpo_eb"]
    for step, data in metrics.items():
        assert "timing_s/teacher" not in data and "rlrt/scored_row_frac" not in data
        assert data["rlrt/eb_bonus_mean"] >= 0.0 and math.isfinite(data["actor/pg_loss"])
        if "rlrt/eb_capped_frac" in data:
            assert 0.0 <= data["rlrt/eb_capped_frac"] <= 1.0
    assert max(data["rlrt/eb_bonus_mean"] for data in metrics.values()) > 0.0
