"""Tiny arithmetic problems in verl's RL parquet schema.

Each row: ``data_source``, ``prompt`` (chat messages), ``ability``, ``reward_model`` (``style: rule``,
``ground_truth``), ``extra_info`` (``index``, ``split``, ``solution``: a worked solution text, the
privileged context the self-distillation methods show their teacher).
"""

from __future__ import annotations

import os
import random
from typing import Any

DATA_SOURCE = "rlrt/tiny_math"
INSTRUCTION = "Let's think step by step and output the final answer after \"####\"."


def math_rows(num_rows: int, seed: int = 0, split: str = "train") -> list[dict[str, Any]]:
    """``num_rows`` addition/multiplication problems, reproducible from ``seed``."""
    rng = random.Random(seed)
    rows = []
    for index in range(num_rows):
        a, b = rng.randint(2, 49), rng.randint(2, 49)
        op, answer = ("+", a + b) if rng.random() < 0.5 else ("*", a * b)
        rows.append(
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": f"What is {a} {op} {b}? {INSTRUCTION}"}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": str(answer)},
                "extra_info": {
                    "index": index,
                    "split": split,
                    "solution": f"{a} {op} {b} = {answer}.\n#### {answer}",
                },
            }
        )
    return rows


def write_math_parquet(path: str | os.PathLike, num_rows: int, seed: int = 0, split: str = "train") -> str:
    """Write ``math_rows`` to a parquet file (parent directories created); return its path."""
    import pandas as pd

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pd.DataFrame(math_rows(num_rows, seed=seed, split=split)).to_parquet(path)
    return path
