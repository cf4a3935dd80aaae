"""A seeded test reward: about half of the responses are "correct", decided by a hash of the text.

A random-weight model never solves a math problem, so a real verifier gives every response 0 and
GRPO's advantages vanish. This reward calls a response correct when a hash of (seed, response text) is
even, which marks about half of each group correct, deterministically, so the loss is non-zero.
Load it with ``reward.custom_reward_function.path=pkg://rlrt_recipe.testing.reward``.
"""

from __future__ import annotations

import hashlib
from typing import Any


def is_marked_correct(solution_str: str, seed: int = 0) -> bool:
    """True for about half of all texts; the same text and seed always give the same answer."""
    digest = hashlib.sha256(f"{seed}\x00{solution_str}".encode()).digest()
    return digest[0] % 2 == 0


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> dict[str, float]:
    """verl's custom-reward signature; ``seed`` comes from ``reward.custom_reward_function.reward_kwargs``."""
    correct = float(is_marked_correct(solution_str, seed))
    return {"score": correct, "acc": correct}
