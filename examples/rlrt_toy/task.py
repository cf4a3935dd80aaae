"""The toy task: single-digit sums with the answer in ``\\boxed{}``, in verl's RL parquet schema.

Problem (a, b), a, b ∈ {0, …, 9}: prompt "What is a + b?", reference response ``\\boxed{a+b}`` (the
answer appears once, so "the answer tokens" of a response are unambiguous). The prompt carries no format
instruction: the warm start teaches the format, and a short prompt keeps a CPU step cheap. The 100 problems are split once, seeded, into ``train`` (warm start and RL) and
``heldout`` (the semantic check), so the check scores problems the model never saw.
"""

from __future__ import annotations

import os
import random
from typing import Any

DATA_SOURCE = "rlrt/toy_sums"
NUM_HELDOUT = 20
SPLIT_SEED = 0

Problem = tuple[int, int]


def all_problems() -> list[Problem]:
    """Every (a, b) with a, b ∈ {0, …, 9}, in order."""
    return [(a, b) for a in range(10) for b in range(10)]


def split_problems(num_heldout: int = NUM_HELDOUT, seed: int = SPLIT_SEED) -> dict[str, list[Problem]]:
    """``{"train": [...], "heldout": [...]}``: a seeded shuffle of ``all_problems``, the last ``num_heldout`` held out."""
    problems = all_problems()
    random.Random(seed).shuffle(problems)
    return {"train": problems[:-num_heldout], "heldout": problems[-num_heldout:]}


def answer(problem: Problem) -> str:
    return str(problem[0] + problem[1])


def question(problem: Problem) -> str:
    a, b = problem
    return f"What is {a} + {b}?"


def response(problem: Problem, answer_text: str | None = None) -> str:
    """The reference response ``\\boxed{<answer>}`` (``answer_text`` overrides the correct answer)."""
    return "\\boxed{" + (answer(problem) if answer_text is None else answer_text) + "}"


def solution(problem: Problem) -> str:
    """The worked solution (``extra_info.solution``, the OPSD teacher's context): ``a + b = s``."""
    a, b = problem
    return f"{a} + {b} = {answer(problem)}"


def row(problem: Problem, index: int, split: str) -> dict[str, Any]:
    """One row of verl's RL schema (``prompt``, ``reward_model.ground_truth``, ``extra_info.solution``)."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": question(problem)}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer(problem)},
        "extra_info": {"index": index, "split": split, "solution": solution(problem)},
    }


def write_parquet(path: str | os.PathLike, split: str, repeat: int = 1, limit: int | None = None) -> str:
    """Write the first ``limit`` (default all) ``split`` problems, each ``repeat`` times, to parquet.

    A short RL run sees each prompt a few times only if the set is small: 15 steps × 4 prompts over 8
    problems visit each ~7 times, over 80 problems less than once.
    """
    import pandas as pd

    problems = split_problems()[split][:limit] * repeat
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pd.DataFrame([row(p, i, split) for i, p in enumerate(problems)]).to_parquet(path)
    return path


def write_rl_data(data_dir: str | os.PathLike, rl_problems: int = 8, repeat: int = 16) -> None:
    """The RL run's files in ``data_dir``: ``train.parquet`` (the first ``rl_problems`` train problems, each
    ``repeat`` times) and ``heldout.parquet`` (every held-out problem once, the validation set)."""
    write_parquet(os.path.join(data_dir, "train.parquet"), "train", repeat=repeat, limit=rl_problems)
    write_parquet(os.path.join(data_dir, "heldout.parquet"), "heldout")
