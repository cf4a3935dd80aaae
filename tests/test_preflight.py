"""The pre-flight (review E3): every unservable training row found before step 1, reported at once or dropped.

Rows are rendered by verl's continuous-token builder on the tiny model's locally trained tokenizer; the
dataset-level tests run verl's own ``RLHFDataset`` and ``PPOTrainer._init_dataloader`` in this process.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from rlrt_recipe import privileged
from rlrt_recipe.config import RlrtConfig
from rlrt_recipe.integration.preflight import (
    LISTED_ROWS,
    Problem,
    PromptLengths,
    TeacherPromptLengths,
    find_unservable_rows,
    format_problems,
)
from rlrt_recipe.integration.teacher import PromptRenderer, generation_prompt_tails, teacher_prompt_ids
from rlrt_recipe.testing import math_rows
from rlrt_recipe.testing.tiny_model import TinyModelSpec, build_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT_LENGTH, BUDGET = 64, 128  # recipes/env/cpu.yaml: max_prompt_length 64; opsd's default budget 2 × 64
TEMPLATES = privileged.validate_templates()
FILE = "data/train.parquet"
LONG_QUESTION = "What is 3 + 4? " * 7  # 71 tokens: over 64, while its solution teacher prompt (109) fits 128
LONG_SOLUTION = "3 + 4 = 7, so the answer is 7. " * 20  # a teacher prompt well over 128 tokens
NAN = float("nan")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def builder(tokenizer):
    """The agent loop's renderer, called row by row: the reference every length here is checked against."""
    return create_continuous_token_builder(tokenizer, hf_model_type="qwen2", chat_template_kwargs={})


@pytest.fixture(scope="module")
def lengths(tokenizer):
    return PromptLengths(tokenizer, hf_model_type="qwen2", chat_template_kwargs={})


def verl_row(question="What is 3 + 4?", ground_truth="7", solution="3 + 4 = 7.\n#### 7", data_source="tiny"):
    return {"data_source": data_source, "prompt": [{"role": "user", "content": question}],
            "reward_model": {"style": "rule", "ground_truth": ground_truth},
            "extra_info": {"index": 0, "solution": solution}}


# index: (row, why) — the dataset of the brief: one of each problem, and good rows around them.
ROWS = [
    (verl_row(), "good"),
    (verl_row(question=LONG_QUESTION), "student prompt over rollout.prompt_length"),
    (verl_row(solution=LONG_SOLUTION), "solution teacher prompt over budget"),
    (verl_row(ground_truth=NAN, solution=None), "NaN answer, no solution"),
    (verl_row(ground_truth=None, solution=None), "None solution, no answer"),
    (verl_row(ground_truth="   ", solution=None), "blank answer, no solution"),
    (verl_row(ground_truth="12", solution=None), "good: the solution context falls back to the answer"),
    (verl_row(ground_truth=12, solution=NAN), "good: numeric answer, NaN solution"),
]
BAD = [1, 2, 3, 4, 5]


def row_infos(rows):
    return [privileged.RowInfo.from_fields(i, raw_prompt=r["prompt"], reward_model=r["reward_model"],
                                           extra_info=r["extra_info"], data_source=r["data_source"], uid="")
            for i, r in enumerate(rows)]


def check(rows, lengths, *, context="solution", sibling_fallback="answer", budget=BUDGET, teacher_lengths=None):
    return find_unservable_rows(row_infos(rows), lengths, file=FILE, context=context,
                                sibling_fallback=sibling_fallback, templates=TEMPLATES, prompt_length=PROMPT_LENGTH,
                                budget=budget, teacher_prompt_lengths=teacher_lengths)


def report(problems, n_rows, **kw):
    settings = dict(context="solution", sibling_fallback="answer", prompt_length=PROMPT_LENGTH, budget=BUDGET)
    return format_problems(problems, n_rows=n_rows, **{**settings, **kw})


def test_every_unservable_row_is_found_with_file_index_and_lengths(builder, lengths):
    """Guards E3: all five kinds of bad row of one dataset are found in one pass, with the lengths the agent
    loop's builder gives; the good rows (including the answer fallback) are not reported."""
    rows = [r for r, _ in ROWS]
    student_len = len(builder.build_initial_tokens(rows[1]["prompt"]))
    info = row_infos(rows)[2]
    teacher_len = len(builder.build_initial_tokens(privileged.teacher_messages(info, "solution", LONG_SOLUTION,
                                                                               TEMPLATES)))
    assert student_len > PROMPT_LENGTH and teacher_len > BUDGET

    assert check(rows, lengths) == [
        Problem(FILE, 1, "tiny", "student_truncated", f"student prompt is {student_len} tokens > {PROMPT_LENGTH}",
                student_len, PROMPT_LENGTH),
        Problem(FILE, 2, "tiny", "teacher_over_budget", f"solution teacher prompt is {teacher_len} tokens > {BUDGET}",
                teacher_len, BUDGET),
        *[Problem(FILE, i, "tiny", "missing_reference",
                  "extra_info.solution and reward_model.ground_truth are both missing (null, NaN or blank)")
          for i in (3, 4, 5)],
    ]


def test_the_error_lists_all_rows_at_once_with_counts(lengths):
    """Guards the report: complete counts per kind, each row with file, index and lengths, and the way out."""
    problems = check([r for r, _ in ROWS], lengths)
    text = report(problems, n_rows=len(ROWS))
    assert text.startswith("rlrt pre-flight: 5 of 8 training rows cannot be served by the teacher step "
                           "(rlrt.context=solution):")
    assert f"1 student prompts over actor_rollout_ref.rollout.prompt_length={PROMPT_LENGTH}" in text
    assert f"1 teacher prompts of the solution context over rlrt.max_privileged_prompt_length={BUDGET}" in text
    assert "3 rows without the reference text the solution context needs" in text
    for p in problems:
        assert f"{FILE} row {p.index} (data_source='tiny'): {p.detail}" in text
    assert "rlrt.preflight_skip=true" in text and " more" not in text


def test_the_listing_is_capped_but_the_counts_are_complete(lengths):
    """Guards a huge dataset with many bad rows: the first rows are listed, then "and N more"; counts stay exact."""
    rows = [verl_row(ground_truth=None, solution=None) for _ in range(LISTED_ROWS + 5)]
    text = report(check(rows, lengths), n_rows=len(rows))
    assert f"{LISTED_ROWS + 5} of {LISTED_ROWS + 5} training rows" in text
    assert f"{LISTED_ROWS + 5} rows without the reference text" in text
    assert f"row {LISTED_ROWS - 1} " in text and f"row {LISTED_ROWS} " not in text
    assert text.count(f"{FILE} row ") == LISTED_ROWS and "  and 5 more" in text


def test_answer_context_needs_the_answer_even_with_a_solution(lengths):
    """Guards the answer context (RLSD): a NaN answer is missing although the row has a solution, and the
    teacher prompts measured never contain the text "nan"."""
    rows = [verl_row(ground_truth=NAN), verl_row(ground_truth="7", solution=NAN), verl_row()]
    seen = []

    def spy(batch):
        seen.extend(batch)
        return lengths(batch)

    problems = check(rows, spy, context="answer")
    assert [(p.index, p.kind, p.detail) for p in problems] == [
        (0, "missing_reference", "reward_model.ground_truth is missing (null, NaN or blank)")]
    assert len(seen) == 3 + 2  # three student prompts, two answer teacher prompts
    assert not any("nan" in m["content"].lower() for messages in seen for m in messages)


@pytest.mark.parametrize("fallback, expected", [
    ("none", [(1, "student_truncated")]),
    ("answer", [(1, "student_truncated"), (3, "missing_reference"), (4, "missing_reference"),
                (5, "missing_reference")]),
    ("solution", [(1, "student_truncated"), (2, "teacher_over_budget"), (3, "missing_reference"),
                  (4, "missing_reference"), (5, "missing_reference")]),
])
def test_rollout_context_checks_its_fallback(lengths, fallback, expected):
    """Guards RLRT: the sibling text cannot be pre-checked, its sibling_fallback context can; with
    sibling_fallback=none only the student prompt is."""
    problems = check([r for r, _ in ROWS], lengths, context="rollout", sibling_fallback=fallback)
    assert [(p.index, p.kind) for p in problems] == expected


@pytest.mark.parametrize("chat_template, chat_kwargs", [
    ("chatml", {}), ("qwen3", {"enable_thinking": False}), ("qwen3", {"enable_thinking": True}),
])
def test_batched_lengths_equal_the_builder_row_by_row(chat_template, chat_kwargs):
    """Guards the fast path: measuring chunks of conversations with one apply_chat_template call gives exactly
    the lengths of verl's builder called per row (system turns, earlier assistant turns with <think>, long text)."""
    tokenizer = build_tokenizer(TinyModelSpec(chat_template=chat_template))
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen3", chat_template_kwargs=chat_kwargs)
    lengths = PromptLengths(tokenizer, hf_model_type="qwen3", chat_template_kwargs=chat_kwargs, chunk_size=3)
    conversations = [r["prompt"] for r in math_rows(5)] + [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": LONG_QUESTION}],
        [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "<think>easy</think>\n2"},
         {"role": "user", "content": "and 2+2? ünïcödé ✓"}],
        [{"role": "user", "content": LONG_SOLUTION * 5}],
    ]
    assert lengths.batched
    assert lengths(conversations) == [len(builder.build_initial_tokens(m)) for m in conversations]
    wheres = [f"row {i}" for i in range(len(conversations))]
    assert lengths.generation_prompts(conversations, wheres) == [
        builder.render_delta_token_id(m, [], add_generation_prompt=True) for m in conversations]


THINKING_OFF, THINKING_ON = {"enable_thinking": False}, {"enable_thinking": True}


def test_teacher_kwargs_lengths_count_the_tail_the_teacher_step_appends():
    """Issue 19: with the teacher's thinking on and the student's off, the pre-flight measures each teacher prompt as
    the teacher step builds it (teacher kwargs, then the student's 6-token empty think block), so a budget that
    the teacher's own render fits but the tail does not is reported."""
    tokenizer = build_tokenizer(TinyModelSpec(chat_template="qwen3"))
    student = PromptLengths(tokenizer, hf_model_type="qwen3", chat_template_kwargs=THINKING_OFF, chunk_size=3)
    teacher = PromptLengths(tokenizer, hf_model_type="qwen3", chat_template_kwargs=THINKING_ON, chunk_size=3)
    teacher_lengths = TeacherPromptLengths(student, teacher)
    good = [r for i, (r, _) in enumerate(ROWS) if i not in BAD]
    infos = row_infos(good)
    messages = [privileged.teacher_messages(info, *privileged.reference_text(info, "solution"), TEMPLATES)
                for info in infos]
    render = PromptRenderer(tokenizer, hf_model_type="qwen3", chat_template_kwargs=THINKING_OFF)
    render_teacher = PromptRenderer(tokenizer, hf_model_type="qwen3", chat_template_kwargs=THINKING_ON)
    prompts = [torch.tensor(render(list(info.messages))) for info in infos]
    tails = generation_prompt_tails(infos, prompts, torch.ones(len(infos), dtype=torch.bool), render, render_teacher,
                                    tokenizer.decode)
    sent = [teacher_prompt_ids(m, info, tail, render, render_teacher, tokenizer.decode)
            for m, info, tail in zip(messages, infos, tails)]
    assert teacher_lengths(messages, infos) == [len(ids) for ids in sent]
    assert [len(ids) for ids in sent] == [n + 6 for n in teacher(messages)]

    n = len(sent[0])
    untailed = check(good, student, budget=n - 1, teacher_lengths=lambda conversations, _: teacher(conversations))
    assert untailed == []  # the teacher's render alone fits
    assert check(good, student, budget=n, teacher_lengths=teacher_lengths) == []
    assert check(good, student, budget=n - 1, teacher_lengths=teacher_lengths) == [
        Problem(FILE, 0, "tiny", "teacher_over_budget", f"solution teacher prompt is {n} tokens > {n - 1}", n, n - 1)]


def test_teacher_thinking_off_student_on_is_refused_before_step_1():
    """The pre-flight applies the same rule as the teacher step: a teacher generation prompt the student's does not
    extend is refused at once, naming the key (not reported as a row problem)."""
    tokenizer = build_tokenizer(TinyModelSpec(chat_template="qwen3"))
    student = PromptLengths(tokenizer, hf_model_type="qwen3", chat_template_kwargs=THINKING_ON)
    teacher = PromptLengths(tokenizer, hf_model_type="qwen3", chat_template_kwargs=THINKING_OFF)
    with pytest.raises(ValueError, match=r"row 0 .*rlrt\.teacher_chat_template_kwargs\) does not begin the student's"):
        check([r for r, _ in ROWS], student, teacher_lengths=TeacherPromptLengths(student, teacher))


# --- the dataset-level hook: verl's RLHFDataset and _init_dataloader ---------------------------------------


def test_verl_builds_the_sampler_after_assigning_train_dataset():
    """Fails when verl changes what the RlrtSyncTrainer.train_dataset setter hooks into: _init_dataloader must
    assign self.train_dataset before building the sampler and dataloader on it (trainer_base.py:710-749)."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    source = inspect.getsource(PPOTrainer._init_dataloader)
    assigned = source.index("self.train_dataset = create_rl_dataset(")
    assert assigned < source.index("create_rl_sampler(self.config.data, self.train_dataset)")
    assert assigned < source.index("dataset=self.train_dataset,")
    assert assigned < source.index("self.steps_per_epoch = len(self.train_dataset)")


@pytest.fixture(scope="module")
def bad_data_dir(tmp_path_factory):
    """train.parquet with ROWS (pandas turns the NaN answer into a parquet null; arrow needs one type, so the
    numeric answer is written as text) and a small test.parquet."""
    data_dir = tmp_path_factory.mktemp("preflight_data")
    rows = []
    for i, (r, _) in enumerate(ROWS):
        answer = r["reward_model"]["ground_truth"]
        rows.append(dict(r, reward_model=dict(r["reward_model"], ground_truth=str(answer) if isinstance(answer, int)
                                              else answer), extra_info=dict(r["extra_info"], index=i)))
    pd.DataFrame(rows).to_parquet(data_dir / "train.parquet")
    pd.DataFrame(math_rows(4, split="test")).to_parquet(data_dir / "test.parquet")
    return data_dir


def init_dataloader(tiny_model_dir, data_dir, *overrides):
    """An RlrtSyncTrainer (opsd: the solution context) on the CPU recipe, after verl's own _init_tokenizer and
    _init_dataloader: the training set and dataloader exactly as training would start with them."""
    from rlrt_recipe.integration.trainer import RlrtSyncTrainer

    with initialize_config_dir(config_dir=os.path.join(ROOT, "recipes"), version_base=None):
        cfg = compose(config_name="cpu_demo", overrides=[
            "+env=cpu", f"data.train_files={data_dir}/train.parquet", f"data.val_files={data_dir}/test.parquet",
            f"actor_rollout_ref.model.path={tiny_model_dir}", "algorithm.adv_estimator=opsd",
            "trainer.v1.trainer_mode=rlrt_sync", "data.filter_overlong_prompts=false", *overrides,
        ])
    trainer = RlrtSyncTrainer(cfg)
    trainer._init_tokenizer()
    trainer._init_dataloader()
    return trainer


def test_verl_dataset_refuses_to_start_naming_file_rows_and_lengths(tiny_model_dir, bad_data_dir):
    """Guards the trainer hook: with bad rows, building verl's dataloader fails before step 1, listing every
    bad row of the parquet file with its index."""
    with pytest.raises(ValueError) as err:
        init_dataloader(tiny_model_dir, bad_data_dir)
    text = str(err.value)
    assert text.startswith("rlrt pre-flight: 5 of 8 training rows cannot be served")
    for i in BAD:
        assert f"{bad_data_dir}/train.parquet row {i} (data_source='tiny'): " in text
    assert "tokens > 64" in text and "tokens > 128" in text


def test_verl_dataset_keeps_exactly_the_good_rows_with_preflight_skip(tiny_model_dir, bad_data_dir, capsys):
    """Guards rlrt.preflight_skip: the bad rows leave verl's dataframe before the sampler exists, so the
    dataloader, steps per epoch and the agent loop's raw_prompt see only the good rows; the count is printed."""
    trainer = init_dataloader(tiny_model_dir, bad_data_dir, "+rlrt.preflight_skip=true", "data.train_batch_size=1")
    good = [i for i in range(len(ROWS)) if i not in BAD]
    assert trainer.preflight_dropped_rows == len(BAD)
    assert [trainer.train_dataset[k]["extra_info"]["index"] for k in range(len(trainer.train_dataset))] == good
    assert trainer.steps_per_epoch == len(good) // trainer.config.data.train_batch_size
    seen = sorted(int(i) for batch in trainer.train_dataloader for i in batch["index"])
    assert seen == good
    assert f"rlrt pre-flight: dropped {len(BAD)} of {len(ROWS)} training rows, {len(good)} left" in capsys.readouterr().out


def test_verl_dataset_preflight_renders_the_teacher_with_its_own_kwargs(qwen3_model_dir, bad_data_dir):
    """Guards the wiring of rlrt.teacher_chat_template_kwargs into the pre-flight of verl's training set (and its
    Hydra override): the over-budget solution row's teacher prompt is measured with the teacher's kwargs plus the
    student's generation-prompt tail."""
    with pytest.raises(ValueError) as err:
        init_dataloader(qwen3_model_dir, bad_data_dir, "+data.apply_chat_template_kwargs.enable_thinking=false",
                        "+rlrt.teacher_chat_template_kwargs={enable_thinking:true}")
    tokenizer = AutoTokenizer.from_pretrained(qwen3_model_dir)
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2", chat_template_kwargs=THINKING_ON)
    info = row_infos([r for r, _ in ROWS])[2]
    n = len(builder.build_initial_tokens(privileged.teacher_messages(info, "solution", LONG_SOLUTION, TEMPLATES))) + 6
    text = str(err.value)
    assert text.startswith("rlrt pre-flight: 5 of 8 training rows cannot be served")
    assert f"row 2 (data_source='tiny'): solution teacher prompt is {n} tokens > {BUDGET}" in text


def test_grpo_without_teacher_runs_no_preflight(tiny_model_dir, bad_data_dir):
    """Guards the scope: without a teacher (grpo, no distillation loss) the training set is left as verl built it."""
    trainer = init_dataloader(tiny_model_dir, bad_data_dir, "algorithm.adv_estimator=grpo")
    assert len(trainer.train_dataset) == len(ROWS) and trainer.preflight_dropped_rows == 0


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_preflight_skip_must_be_a_bool(value):
    """Guards the config key: like the other rlrt switches, only true or false, named in the error."""
    with pytest.raises(ValueError, match=rf"rlrt\.preflight_skip must be true or false, got {value!r}"):
        RlrtConfig(preflight_skip=value)
    assert RlrtConfig().preflight_skip is False


def test_bench_preflight_runs_and_checks_its_fast_path(tmp_path):
    """scripts/bench_preflight.py at CI size: exits 0 (it raises if the batched lengths ever differ from the
    builder row by row) and reports seconds and µs/row. No timing is asserted."""
    out = tmp_path / "preflight.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "bench_preflight.py"), "--rows", "120", "--sample", "40",
         "--tokenizers", "tiny", "--json", str(out)], capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "µs/row" in result.stdout
    run = json.loads(out.read_text())["runs"]["tiny"]
    assert run["rows"] == 120 and run["total_s"] > 0 and run["problem_rows"] <= 120


def test_an_agent_name_column_naming_another_loop_is_refused():
    """Issue 12: an agent_name column that routes a row to another agent loop (tools, multi-turn) is refused at
    start, naming the file and the row; verl's single-turn loop (or no value) passes."""
    from datasets import Dataset

    from rlrt_recipe.integration.preflight import check_agent_names

    check_agent_names(Dataset.from_dict({"agent_name": ["single_turn_agent", None]}), ["train.parquet"])
    check_agent_names(Dataset.from_dict({"prompt": ["x"]}), ["train.parquet"])
    with pytest.raises(ValueError, match=r"train\.parquet, row 1: agent_name='tool_agent'"):
        check_agent_names(Dataset.from_dict({"agent_name": ["single_turn_agent", "tool_agent"]}), ["train.parquet"])
