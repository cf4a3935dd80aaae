"""The exploration task (examples/rlrt_explore): verifier, problem generator, parquet rows, analysis, warm start.

Everything but the last section is pure and fast. The warm start (``warm`` fixture) trains the toy-sized model
once per module: about 2–3 minutes on 2 shared cores.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlrt_explore import analysis, task
from rlrt_explore.reward import (
    answer_path,
    canonical_path,
    compute_score,
    format_path,
    parse_moves,
    parse_path,
)
from rlrt_recipe import privileged

ROOT = Path(__file__).resolve().parents[1]
REWARD_FILE = ROOT / "examples" / "rlrt_explore" / "reward.py"

# 3 → 18 with *2, +1, +3 in at most 5 steps: 3 → 6 → 9 → 18 (+3 +3 *2) is a shortest path.
PROBLEM = task.Problem(start=3, target=18, moves=("*2", "+1", "+3"), max_moves=5)
ALL_PROBLEMS = [p for split in task.split_problems().values() for p in split]


def score(response: str, problem: task.Problem = PROBLEM) -> dict[str, float]:
    row = task.row(problem, 0, "test")
    return compute_score(row["data_source"], response, row["reward_model"]["ground_truth"], row["extra_info"])


# ---------------------------------------------------------------- verifier


@pytest.mark.parametrize("response", [
    "\\boxed{3 6 9 18}",
    "\\boxed{3, 6, 9, 18}",
    "\\boxed{ 3 6\n9  18 }",
    "The path is \\boxed{3 4 8 9 18}.",  # +1 *2 +1 *2: another correct path
    "\\boxed{1 2} then \\boxed{3 6 9 18}",  # the last box is the answer
])
def test_correct_paths_score_one(response):
    """A path that starts at S, ends at T, takes ≤ L allowed steps scores 1, whatever its separators."""
    assert score(response) == {"score": 1.0, "acc": 1.0, "has_answer": 1.0}


@pytest.mark.parametrize("response, why", [
    ("\\boxed{3 6 9 17}", "ends short of T"),
    ("\\boxed{3 5 10 20 18}", "3 → 5 is +2, not allowed"),
    ("\\boxed{6 9 18}", "does not start at S"),
    ("\\boxed{3 4 5 6 7 8 9 18}", "7 steps > L = 5"),
    ("\\boxed{3 6 9 18 19}", "reaches T and goes on"),
    ("\\boxed{3}", "no step"),
    ("\\boxed{3 6 9 18} \\boxed{3 4}", "the last box is wrong"),
])
def test_wrong_paths_score_zero_with_an_answer(response, why):
    """Each rule of the verifier rejects on its own; the answer was readable (has_answer = 1)."""
    assert score(response) == {"score": 0.0, "acc": 0.0, "has_answer": 1.0}, why


@pytest.mark.parametrize("response", [
    "3 6 9 18",  # no box
    "\\boxed{3 6 9 18",  # cut off
    "\\boxed{}",
    "\\boxed{3 6 nine 18}",
    "\\boxed{03 6 9 18}",  # "03" is not 0 then 3
    "\\boxed{3 6 9 18.0}",
    "\\boxed{+3 +3 *2}",  # moves, not the path
    "",
])
def test_unreadable_answers_score_zero_without_an_answer(response):
    assert score(response) == {"score": 0.0, "acc": 0.0, "has_answer": 0.0}


def test_canonical_path_ignores_separators():
    """Distinct-path counts must not split one path into several by spacing or commas."""
    assert canonical_path("\\boxed{3, 6,9   18}") == canonical_path("so \\boxed{3 6 9 18}") == "3 6 9 18"
    assert canonical_path("\\boxed{3 6 9 18") is None


def test_parsers():
    assert parse_moves("*2 +1 +3") == ("*2", "+1", "+3")
    assert parse_moves("*2 -1") is None
    assert parse_path("3, 6 9") == (3, 6, 9)
    assert parse_path("3 6 9x") is None
    assert parse_path("1" * 7) is None  # over MAX_NUMBER_DIGITS


@pytest.mark.parametrize("response, expected", [
    ("\\boxed{" + "9 " * 200_000 + "}", 0.0),
    ("\\boxed{3 " + "9" * 100_000 + "}", 0.0),
    ("\\boxed{" * 50_000, 0.0),
    ("{" * 100_000 + "\\boxed{3 6 9 18}", 1.0),
])
def test_verifier_is_fast_on_huge_responses(response, expected):
    """The reward thread never hangs: a runaway response is judged in well under a second."""
    start = time.perf_counter()
    assert score(response)["score"] == expected
    assert time.perf_counter() - start < 1.0


def test_data_errors_raise_naming_the_row():
    """A row without the problem, or with a ground truth that does not solve it, is a data error, not a 0."""
    row = task.row(PROBLEM, 7, "test")
    with pytest.raises(ValueError, match="extra_info has no start, target, moves, max_moves"):
        compute_score(row["data_source"], "\\boxed{3 6 9 18}", "3 6 9 18", None)
    info = dict(row["extra_info"], max_moves=None)
    with pytest.raises(ValueError, match=r"max_moves.*index=7"):
        compute_score(row["data_source"], "\\boxed{3 6 9 18}", "3 6 9 18", info)
    with pytest.raises(ValueError, match="does not solve its problem"):
        compute_score(row["data_source"], "\\boxed{3 6 9 18}", "3 6 9 17", row["extra_info"])


def test_reward_file_loads_alone_through_verl():
    """main_ppo loads the verifier by file path (reward.custom_reward_function.path): it must not need
    examples/ on sys.path."""
    from verl.utils.import_utils import load_extern_object

    loaded = load_extern_object(str(REWARD_FILE), "compute_score")
    row = task.row(PROBLEM, 0, "test")
    assert loaded(data_source=row["data_source"], solution_str="\\boxed{3 6 9 18}",
                  ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])["score"] == 1.0


@settings(max_examples=300, deadline=None)
@given(problem=st.sampled_from(ALL_PROBLEMS), choices=st.lists(st.integers(0, 2), min_size=1, max_size=8))
def test_verifier_agrees_with_walking_the_moves(problem, choices):
    """For any walk of allowed moves from S, the verdict is: it ends at T within L steps."""
    path = task.apply_moves(problem.start, [problem.moves[i] for i in choices])
    expected = path[-1] == problem.target and len(path) - 1 <= problem.max_moves
    assert score(task.response(path), problem)["score"] == float(expected)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_verifier_never_raises_on_any_text(text):
    for response in (text, "\\boxed{" + text + "}"):
        result = score(response)
        assert result["score"] in (0.0, 1.0) and result["has_answer"] in (0.0, 1.0)


# ---------------------------------------------------------------- problems


def test_correct_paths_are_exactly_the_winning_walks():
    """The enumeration (DFS with pruning) equals brute force over every move sequence of ≤ L steps."""
    for problem in ALL_PROBLEMS[::5]:
        brute = {task.apply_moves(problem.start, moves) for length in range(1, problem.max_moves + 1)
                 for moves in itertools.product(problem.moves, repeat=length)}
        winning = {path for path in brute if path[-1] == problem.target}
        paths = task.correct_paths(problem)
        assert set(paths) == winning and len(paths) == len(winning), problem
        assert [len(p) for p in paths] == sorted(len(p) for p in paths), problem


def test_generator_is_seeded_and_splits_are_disjoint():
    """The held-out claim: RL and pass@k problems are never warm-start problems, and reruns give the same sets."""
    splits = task.split_problems()
    assert splits == task.split_problems()
    assert {k: len(v) for k, v in splits.items()} == {
        "warm": task.NUM_PROBLEMS - task.NUM_RL - task.NUM_HELDOUT, "train": task.NUM_RL, "heldout": task.NUM_HELDOUT}
    keys = {name: {p[:3] for p in problems} for name, problems in splits.items()}
    assert sum(map(len, keys.values())) == task.NUM_PROBLEMS
    assert not (keys["warm"] & keys["train"] or keys["warm"] & keys["heldout"] or keys["train"] & keys["heldout"])
    assert task.generate_problems(20, seed=1) != task.generate_problems(20, seed=0)


def test_every_problem_allows_exploration():
    """Several correct paths, a reference among the shortest, and L = shortest + SLACK (capped)."""
    for problem in ALL_PROBLEMS:
        paths = task.correct_paths(problem)
        shortest = len(task.reference_path(problem)) - 1
        assert len(paths) >= task.MIN_CORRECT_PATHS, problem
        assert shortest == task.shortest_length(problem.start, problem.target, problem.moves), problem
        assert problem.max_moves == min(shortest + task.SLACK, task.MAX_MOVES), problem
        assert problem.start < problem.target < task.MAX_TARGET, problem
        assert score(task.response(task.reference_path(problem)), problem)["score"] == 1.0, problem


def test_worked_solution_names_each_move():
    """3 → 6 is both *2 and +3: the worked solution names the first allowed move in the problem's order."""
    assert task.worked_solution(PROBLEM) == "3 *2 = 6\n6 +3 = 9\n9 *2 = 18\n\\boxed{3 6 9 18}"


def test_lengths_with_the_tokenizer_verl_loads(tmp_path):
    """The tokenizer verl loads (``AutoTokenizer`` on the saved model: Qwen2's pre-tokenizer, which spells numbers
    digit by digit — not the in-memory BPE ``build_tokenizer`` returns, which keeps them whole) and the task's
    recommended lengths: every student prompt fits data.max_prompt_length = MAX_PROMPT_LENGTH and every teacher
    prompt rlrt's default privileged budget; but data.max_response_length = MAX_RESPONSE_LENGTH = 24 fits only the
    correct responses of ≤ 24 tokens with EOS — 2 051 of the 4 188 correct paths (296 of 1 046 held out), at least
    one per problem (the shortest always) — while the longest takes 29. The exploration experiment ran at 24
    (docs/toy_comparison.md), so its "distinct correct paths" have that smaller ceiling."""
    from rlrt_explore.warm_start import TOY_SPEC, response_ids, teacher_messages
    from rlrt_recipe.testing import build_tiny_model
    from rlrt_recipe.testing.tiny_model import build_tokenizer
    from rlrt_toy.warm_start import load

    _, tokenizer, render = load(build_tiny_model(tmp_path, TOY_SPEC))
    assert tokenizer.tokenize(" 17") == ["Ġ", "1", "7"]
    assert build_tokenizer(TOY_SPEC).tokenize(" 17") == ["Ġ17"]  # the in-memory tokenizer: not what verl runs
    lengths = {p: [len(response_ids(tokenizer, task.response(path))) for path in task.correct_paths(p)]
               for p in ALL_PROBLEMS}
    assert max(max(ls) for ls in lengths.values()) == 29
    fits = {p: sum(n <= task.MAX_RESPONSE_LENGTH for n in ls) for p, ls in lengths.items()}
    assert (sum(fits.values()), sum(len(ls) for ls in lengths.values())) == (2051, 4188)
    heldout = task.split_problems()["heldout"]
    assert (sum(fits[p] for p in heldout), sum(len(lengths[p]) for p in heldout)) == (296, 1046)
    assert min(fits.values()) >= 1 and all(
        len(response_ids(tokenizer, task.response(task.reference_path(p)))) <= task.MAX_RESPONSE_LENGTH
        for p in ALL_PROBLEMS)
    assert max(len(render([{"role": "user", "content": task.question(p)}])) for p in ALL_PROBLEMS) <= \
        task.MAX_PROMPT_LENGTH
    for kind in privileged.TEMPLATE_KINDS:
        budget = privileged.default_privileged_budget(kind, max_prompt_length=task.MAX_PROMPT_LENGTH,
                                                      max_response_length=task.MAX_RESPONSE_LENGTH)
        longest_teacher = max(len(render(teacher_messages(p, kind, task.correct_paths(p)[-1]))) for p in ALL_PROBLEMS)
        assert longest_teacher <= budget, (kind, longest_teacher, budget)


# ---------------------------------------------------------------- parquet rows


def test_rl_parquet_rows_judge_and_build_every_teacher_context(tmp_path):
    """Rows as verl reads them (parquet round trip, numpy scalars) score their reference 1.0, and the privileged
    module finds the answer (ground truth) and the worked solution (extra_info.solution) it templates."""
    paths = task.write_rl_data(tmp_path, repeat=2)
    train, heldout = pd.read_parquet(paths["train"]), pd.read_parquet(paths["heldout"])
    assert len(train) == 2 * task.NUM_RL and len(heldout) == task.NUM_HELDOUT
    assert list(train.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    for i, row in heldout.iterrows():
        reference = row["reward_model"]["ground_truth"]
        assert compute_score(row["data_source"], task.response(reference), reference, row["extra_info"])["score"] == 1.0
        info = privileged.RowInfo.from_fields(i, raw_prompt=list(row["prompt"]), reward_model=row["reward_model"],
                                              extra_info=row["extra_info"], data_source=row["data_source"], uid=str(i))
        assert privileged.reference_text(info, "answer") == ("answer", reference)
        assert privileged.reference_text(info, "solution") == ("solution", row["extra_info"]["solution"])
        assert row["extra_info"]["solution"].endswith(task.response(reference))


# ---------------------------------------------------------------- analysis


def test_pass_at_k_curve_by_hand():
    """n = 4, c = 1: pass@1 = 1/4, pass@2 = 1 − C(3,2)/C(4,2) = 1/2, pass@4 = 1."""
    assert analysis.pass_at_k_curve(4, 1, [1, 2, 4]) == [0.25, 0.5, 1.0]
    assert analysis.mean_pass_at_k([(4, 1), (4, 0)], [1, 2]) == [0.125, 0.25]


def test_distinct_correct_paths_by_hand():
    """Correct samples count once per canonical path; wrong ones never; a problem without a correct one has 0."""
    records = [
        ("a", "\\boxed{3 6 9 18}", True),
        ("a", "\\boxed{3, 6, 9, 18}", True),  # the same path, other separators
        ("a", "\\boxed{3 4 8 9 18}", True),
        ("a", "\\boxed{3 4 5}", False),
        ("b", "\\boxed{1 2}", False),
    ]
    assert analysis.distinct_correct_paths(records) == {"a": 2, "b": 0}
    assert analysis.correct_counts(records) == {"a": (4, 3), "b": (1, 0)}
    with pytest.raises(ValueError, match="marked correct but has no canonical path"):
        analysis.distinct_correct_paths([("a", "no box", True)])


def test_policy_summary_by_hand():
    records = [("a", "\\boxed{3 6 9 18}", True), ("a", "\\boxed{3 4}", False),
               ("b", "\\boxed{1 2}", False), ("b", "\\boxed{1 3}", False)]
    summary = analysis.policy_summary(records, [1, 2])
    assert summary == {"pass_rate": 0.25, "pass_at_k": {1: 0.25, 2: 0.5}, "distinct_correct_paths": 0.5,
                       "solved_fraction": 0.5, "problems": 2, "samples": 2}
    with pytest.raises(ValueError, match="same number of samples"):
        analysis.policy_summary(records[:3], [1])


def test_dump_records_read_verl_validation_dumps():
    """The comparison reads held-out samples from verl's validation dump: one record per session (its last
    output), keyed by prompt uuid, correct from ``acc``."""
    dump = [
        {"uid": "p1_s0_0", "output": "\\boxed{3 6 9 18}", "acc": 1.0, "score": 1.0},
        {"uid": "p1_s1_0", "output": "\\boxed{3 4}", "acc": 0.0, "score": 0.0},
        {"uid": "p2_s0_0", "output": "\\boxed{1 2}", "acc": 0.0, "score": 0.0},
        {"uid": "p2_s0_1", "output": "\\boxed{1 2 4}", "score": 1.0},  # a later output of the same session
    ]
    assert analysis.dump_records(dump) == [("p1", "\\boxed{3 6 9 18}", True), ("p1", "\\boxed{3 4}", False),
                                          ("p2", "\\boxed{1 2 4}", True)]
    with pytest.raises(ValueError, match="needs a text 'output'"):
        analysis.dump_records([{"uid": "p1_s0_0", "acc": 1.0}])


@pytest.mark.parametrize("df, quantile", [(1, 12.7062047), (2, 4.30265273), (4, 2.77644511), (9, 2.26215716),
                                          (30, 2.04227246)])
def test_student_t_quantiles_match_tables(df, quantile):
    """t_{0.975, df} from standard tables: the interval's width rests on it."""
    assert analysis.student_t_quantile(0.95, df) == pytest.approx(quantile, abs=1e-6)


def test_t_interval_by_hand():
    """Values 1, 2, 3: mean 2, s = 1, half-width t_{0.975,2} · 1/√3 = 4.30265 / 1.73205 = 2.48414."""
    mean, low, high = analysis.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(2.48414, abs=1e-5) and mean - low == pytest.approx(2.48414, abs=1e-5)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        analysis.t_interval([1.0])
    seeds = [{1: 0.1, 2: 0.2, 64: 0.5}, {1: 0.3, 2: 0.4, 64: 0.7}, {1: 0.2, 2: 0.3}]
    intervals = analysis.intervals_across_seeds(seeds)
    assert list(intervals) == [1, 2]  # k = 64 is missing from the third seed
    assert intervals[1][0] == pytest.approx(0.2)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 64), data=st.data())
def test_pass_at_k_curve_rises_from_c_over_n_to_one(n, data):
    """pass@1 = c/n, pass@k never falls as k grows, and pass@n = 1 iff some sample is correct."""
    c = data.draw(st.integers(0, n))
    curve = analysis.pass_at_k_curve(n, c, range(1, n + 1))
    assert curve[0] == pytest.approx(c / n)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(curve))
    assert curve[-1] == (1.0 if c else 0.0)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=10), shift=st.floats(-1e3, 1e3))
def test_t_interval_is_centred_and_shift_equivariant(values, shift):
    mean, low, high = analysis.t_interval(values)
    assert low <= mean <= high
    assert high - mean == pytest.approx(mean - low, rel=1e-9, abs=1e-9)
    moved = analysis.t_interval([v + shift for v in values])
    assert moved[1] - low - shift == pytest.approx(0.0, abs=1e-6)
    assert moved[2] - high - shift == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(df=st.integers(1, 60), t=st.floats(0.0, 50.0))
def test_student_t_mass_is_a_probability_inverted_by_the_quantile(df, t):
    mass = analysis.student_t_two_sided_mass(t, df)
    assert 0.0 <= mass <= 1.0
    assert analysis.student_t_two_sided_mass(t + 0.5, df) >= mass - 1e-12  # rounding near 1
    if 1e-6 < mass < 1 - 1e-9:
        assert analysis.student_t_quantile(mass, df) == pytest.approx(t, rel=1e-6, abs=1e-6)


def test_t_mass_tends_to_the_normal():
    """df → ∞: P(|T| ≤ 1.959964) → 0.95."""
    assert analysis.student_t_two_sided_mass(1.959964, 4001) == pytest.approx(0.95, abs=1e-4)
    assert math.isclose(analysis.student_t_two_sided_mass(0.0, 3), 0.0)


# ---------------------------------------------------------------- warm start


def test_warm_start_examples_teach_context_reading_and_diversity():
    """70 % of examples hold a correct context whose path is the target (the teacher learns to read it); student
    examples target a uniformly drawn correct path (the policy starts out spread over many)."""
    from rlrt_explore.warm_start import draw_example

    rng = random.Random(0)
    warm = task.split_problems()["warm"]
    examples = [draw_example(rng, warm, 0.7) for _ in range(2000)]
    student = [(m, y) for m, y in examples if len(m) == 1 and "reference" not in m[0]["content"]
               and "correct solution" not in m[0]["content"]]
    assert 0.25 < len(student) / len(examples) < 0.35
    for messages, target in examples:
        assert target.startswith("\\boxed{")
        if (messages, target) not in student:
            assert task.response(answer_path(target)) in messages[-1]["content"] or \
                format_path(answer_path(target)) in messages[-1]["content"]
    distinct_targets = {(m[0]["content"], y) for m, y in student}
    assert len(distinct_targets) > len({m[0]["content"] for m, _ in student})  # several targets per prompt


@pytest.fixture(scope="module")
def warm(explore_warm_start):
    """The default warm start's summary (the session's, shared with the comparison's quick run)."""
    return explore_warm_start["summary"]


def test_warm_start_pass_rates_are_low_but_not_zero(warm):
    """RL needs mixed groups and room to improve: 5–25 % correct at temperature 1 on the RL problems and the
    held-out ones (neither seen by the warm start), and some held-out problems solved more than one way."""
    from rlrt_explore.warm_start import PASS_RATE_BAND

    low, high = PASS_RATE_BAND
    assert warm["loss_last"] < warm["loss_first"]
    assert low <= warm["train"]["pass_rate"] <= high, warm["train"]
    assert low <= warm["heldout"]["pass_rate"] <= high, warm["heldout"]
    assert warm["heldout"]["distinct_correct_paths"] > 1.0, warm["heldout"]


def test_warm_start_teacher_reads_its_sibling(warm):
    """RLRT's signal exists: shown the rollout's own path the teacher gains (Δ̄ > 0), shown another correct
    path it loses — w = exp(−Δ) lifts the tokens where a correct rollout departs from its sibling."""
    from rlrt_explore.warm_start import failures

    assert warm["teacher_delta"]["same"] > 0.0 > warm["teacher_delta"]["other"], warm["teacher_delta"]
    assert failures(warm) == []


# --- examples/rlrt_explore/report.py: the experiment's table from run directories ------------------------------


def write_run(run_dir, rewards, samples, lambdas=None):
    """A run directory as ``TASK=explore scripts/compare_methods_cpu.sh`` leaves it: verl's file-logger JSONL and
    the last step's dump."""
    import json

    os.makedirs(os.path.join(run_dir, "val"), exist_ok=True)
    with open(os.path.join(run_dir, "launch-1.jsonl"), "w") as fh:
        for step, reward in enumerate(rewards, start=1):
            data = {"critic/score/mean": reward, **({"rlrt/lambda": lambdas[step - 1]} if lambdas else {})}
            fh.write(json.dumps({"step": step, "data": data}) + "\n")
    with open(os.path.join(run_dir, "val", f"{len(rewards)}.jsonl"), "w") as fh:
        for prompt, output, score in samples:
            fh.write(json.dumps({"input": prompt, "output": output, "score": score, "step": len(rewards)}) + "\n")


def test_report_summarizes_seeds_with_intervals(tmp_path):
    """Two seeds of one method, two problems × 2 samples each: pass@k, distinct correct paths and reward figures
    by hand, the interval a t-interval over the two seeds."""
    from rlrt_explore import report

    seed_1 = [("p", "\\boxed{1 2 4}", 1.0), ("p", "\\boxed{1 3 4}", 1.0), ("q", "\\boxed{2 4}", 0.0), ("q", "x", 0.0)]
    seed_2 = [("p", "\\boxed{1 2 4}", 1.0), ("p", "\\boxed{1, 2, 4}", 1.0), ("q", "\\boxed{2 3}", 1.0), ("q", "y", 0.0)]
    write_run(tmp_path / "s1", [0.0, 0.5, 1.0], seed_1)
    write_run(tmp_path / "s2", [0.5, 0.5, 0.5], seed_2)
    summary = report.summarize([("grpo", str(tmp_path / "s1")), ("grpo", str(tmp_path / "s2"))])["grpo"]
    assert summary["seeds"] == 2 and summary["n"] == 2 and summary["problems"] == 2
    # pass@1 = mean over problems of c/n: seed 1 (1 + 0)/2, seed 2 (1 + 0.5)/2; pass@2: seed 1 0.5, seed 2 1.0
    assert summary["pass_at_k"][1]["mean"] == pytest.approx((0.5 + 0.75) / 2)
    assert summary["pass_at_k"][2]["mean"] == pytest.approx(0.75)
    # distinct correct paths: seed 1 (2 + 0)/2 = 1, seed 2 (1 + 1)/2 = 1 (separators do not make a new path)
    assert summary["distinct_correct_paths"]["mean"] == pytest.approx(1.0)
    assert summary["distinct_correct_paths"]["low"] == pytest.approx(1.0)
    assert summary["early_reward"]["mean"] == pytest.approx((0.5 + 0.5) / 2)
    mean, low, high = analysis.t_interval([0.5, 0.75])
    assert (summary["pass_at_k"][1]["low"], summary["pass_at_k"][1]["high"]) == pytest.approx((low, high))
    assert summary["reward"][1]["mean"] == pytest.approx(0.25)
    # trailing means over ≤ 5 steps: seed 1 0, 0.25, 0.5; seed 2 0.5 throughout
    assert [summary["reward_smoothed"][step]["mean"] for step in (1, 2, 3)] == pytest.approx([0.25, 0.375, 0.5])
    assert summary["lambda_zero_from"] is None
    assert "| grpo | 2 |" in report.table({"grpo": summary})


def test_report_refuses_unequal_samples_per_problem(tmp_path):
    from rlrt_explore import report

    write_run(tmp_path / "s1", [0.0], [("p", "a", 1.0), ("p", "b", 0.0), ("q", "c", 0.0)])
    with pytest.raises(ValueError, match=r"sampled \[1, 2\] times; pass@k needs one n"):
        report.seed_figures(str(tmp_path / "s1"))


def test_report_pairs_methods_by_seed(tmp_path):
    """Differences from GRPO are taken seed by seed (runs paired by directory name), over the seeds both ran:
    pass@1 GRPO 0.25 / 0.5, RLRT 0.75 / 0.5 on seeds 1 / 2 → differences 0.5, 0 (RLRT's seed 3 has no partner)."""
    from rlrt_explore import report

    def samples(p, q):
        return [("p", f"\\boxed{{{i}}}", s) for i, s in enumerate(p)] + [("q", f"\\boxed{{{i}}}", s) for i, s in enumerate(q)]

    write_run(tmp_path / "grpo" / "seed1", [0.0, 0.5], samples([1.0, 0.0], [0.0, 0.0]), lambdas=[0.0, 0.0])
    write_run(tmp_path / "grpo" / "seed2", [0.5, 0.5], samples([1.0, 1.0], [0.0, 0.0]))
    write_run(tmp_path / "rlrt" / "seed1", [0.5, 0.5], samples([1.0, 1.0], [1.0, 0.0]), lambdas=[0.5, 0.0])
    write_run(tmp_path / "rlrt" / "seed2", [0.5, 1.0], samples([1.0, 1.0], [0.0, 0.0]))
    write_run(tmp_path / "rlrt" / "seed3", [1.0, 1.0], samples([1.0, 1.0], [1.0, 1.0]))
    runs = [(method, str(tmp_path / method / seed)) for method, seed in
            [("grpo", "seed1"), ("grpo", "seed2"), ("rlrt", "seed1"), ("rlrt", "seed2"), ("rlrt", "seed3")]]
    differences = report.paired_differences(runs)
    assert list(differences) == ["rlrt"]
    rlrt = differences["rlrt"]
    mean, low, high = analysis.t_interval([0.5, 0.0])
    assert (rlrt["pass@1"]["mean"], rlrt["pass@1"]["low"], rlrt["pass@1"]["high"]) == pytest.approx((mean, low, high))
    assert rlrt["pass@1"]["seeds"] == 2
    assert rlrt["early_reward"]["mean"] == pytest.approx(((0.5 - 0.25) + (0.75 - 0.5)) / 2)
    assert "| rlrt | 2 |" in report.differences_table(differences, n=2)
    # λ reaching 0 after a step with λ > 0 is RLSD's decay; λ = 0 throughout is no decay
    assert report.seed_figures(str(tmp_path / "rlrt" / "seed1"))["lambda_zero_from"] == 2
    assert report.seed_figures(str(tmp_path / "grpo" / "seed1"))["lambda_zero_from"] is None
    with pytest.raises(ValueError, match="a second grpo run named 'seed1'"):
        report.paired_differences(runs + [("grpo", str(tmp_path / "rlrt" / "seed1"))])
