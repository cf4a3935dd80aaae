"""The verifier of the "reach the target" task (``rlrt_explore.task``), in verl's custom-reward form.

A problem is (start S, target T, allowed moves M, step limit L); a move is ``+k`` (add k) or ``*k``
(multiply by k). A response's answer is the path in its last ``\\boxed{...}``: the numbers it visits, start
first, separated by spaces and/or commas, e.g. ``\\boxed{3 6 9 18}`` for 3 +3 → 6 +3 → 9 *2 → 18. With the
path p_0, …, p_n the answer is correct iff

    p_0 = S,  p_n = T,  1 ≤ n ≤ L,  and every p_j = m(p_{j−1}) for some allowed move m ∈ M.

Load it in main_ppo by file path (it imports nothing from ``rlrt_explore``, so it needs no ``sys.path``)::

    reward.custom_reward_function.path=<repo>/examples/rlrt_explore/reward.py
    reward.custom_reward_function.name=compute_score

verl passes the row's ``extra_info``, which holds the problem (``start``, ``target``, ``moves``,
``max_moves``; written by ``rlrt_explore.task.row``). ``ground_truth`` is the reference path (a shortest
one): the RLSD teacher's "reference final answer", not needed to judge, but checked against the problem so
a corrupt row fails loudly. Judging is a bounded parse (at most ``MAX_ANSWER_CHARS`` characters, numbers of
at most ``MAX_NUMBER_DIGITS`` digits) and at most L · |M| additions or multiplications: it cannot hang.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rlrt_recipe.reward import last_boxed

#: One move of a problem statement: an operator and a positive integer, e.g. ``+3``, ``*2``.
MOVE = re.compile(r"([+*])([1-9][0-9]{0,2})")
#: One number of a path (leading zeros are not a number of ours).
NUMBER = re.compile(r"0|[1-9][0-9]*")
#: What may stand between two numbers of a path, or two moves of a move list.
SEPARATOR = re.compile(r"[\s,]*")
#: Longer answers are wrong without being parsed (a correct one is at most ~25 characters).
MAX_ANSWER_CHARS = 128
#: Longer numbers make the answer unparsable (targets are two-digit).
MAX_NUMBER_DIGITS = 6
#: The ``extra_info`` keys that hold the problem.
PROBLEM_KEYS = ("start", "target", "moves", "max_moves")

Move = str  # "+3", "*2": operator then a positive integer, no space
Path = tuple[int, ...]  # the numbers a path visits, start first


def _items(text: str, item: re.Pattern) -> list[str] | None:
    """The ``item`` matches that make up ``text`` whole, with a non-empty ``SEPARATOR`` between two of them (so
    ``"012"`` is not 0 then 12); None if anything else is in it, if it is over ``MAX_ANSWER_CHARS`` or if it
    holds no item."""
    if len(text) > MAX_ANSWER_CHARS:
        return None
    items: list[str] = []
    position = SEPARATOR.match(text).end()
    while position < len(text):
        match = item.match(text, position)
        if match is None:
            return None
        items.append(match.group(0))
        position = SEPARATOR.match(text, match.end()).end()
        if position == match.end() < len(text):  # the next item would touch this one
            return None
    return items or None


def parse_moves(text: str) -> tuple[Move, ...] | None:
    """The moves of a move list (``"+1 +3 *2"`` -> ``("+1", "+3", "*2")``), or None if ``text`` is not one."""
    items = _items(text, MOVE)
    return None if items is None else tuple(items)


def parse_path(text: str) -> Path | None:
    """The numbers of a path (``"3, 6 9 18"`` -> ``(3, 6, 9, 18)``), or None if ``text`` is not a list of
    non-negative integers of at most ``MAX_NUMBER_DIGITS`` digits separated by spaces and commas."""
    items = _items(text, NUMBER)
    if items is None or any(len(item) > MAX_NUMBER_DIGITS for item in items):
        return None
    return tuple(int(item) for item in items)


def format_moves(moves: Sequence[Move]) -> str:
    """The canonical text of a move list: moves joined by one space (``"+1 +3 *2"``)."""
    return " ".join(moves)


def format_path(path: Sequence[int]) -> str:
    """The canonical text of a path: its numbers joined by one space (``"3 6 9 18"``)."""
    return " ".join(str(number) for number in path)


def apply_move(value: int, move: Move) -> int:
    """``value + k`` for ``+k``, ``value · k`` for ``*k``."""
    operator, amount = move[0], int(move[1:])
    if operator == "+":
        return value + amount
    if operator == "*":
        return value * amount
    raise ValueError(f"unknown move {move!r}: a move is '+k' or '*k'")


def apply_moves(start: int, moves: Sequence[Move]) -> Path:
    """The path that ``moves`` take from ``start``: (start, m_1(start), m_2(m_1(start)), …)."""
    path = [start]
    for move in moves:
        path.append(apply_move(path[-1], move))
    return tuple(path)


def is_solution(start: int, target: int, allowed: Sequence[Move], max_moves: int, path: Sequence[int]) -> bool:
    """Whether ``path`` solves the problem: it starts at ``start``, ends at ``target``, takes 1 to ``max_moves``
    steps, and each step is an allowed move. The length check comes first, so the arithmetic is bounded."""
    return (2 <= len(path) <= max_moves + 1 and path[0] == start and path[-1] == target
            and all(any(apply_move(a, move) == b for move in allowed) for a, b in itertools.pairwise(path)))


def answer_path(solution_str: str) -> Path | None:
    """The path of a response's last closed ``\\boxed{...}`` (``parse_path``), or None without one."""
    answer = last_boxed(solution_str or "")
    return None if answer is None else parse_path(answer)


def canonical_path(solution_str: str) -> str | None:
    """The canonical text of a response's answer (``format_path(answer_path(...))``), or None without one: two
    responses name the same path iff their canonical texts are equal, whatever their spacing or commas."""
    path = answer_path(solution_str)
    return None if path is None else format_path(path)


def problem_of(extra_info: Mapping[str, Any] | None, data_source: str = "?") -> tuple[int, int, tuple[Move, ...], int]:
    """``(start, target, allowed moves, max_moves)`` of a row from its ``extra_info``; ValueError naming the row
    and the missing or bad key otherwise (a data error: regenerate the parquet with ``rlrt_explore.task``)."""
    info = dict(extra_info or {})
    where = f"data_source={data_source!r}, extra_info.index={info.get('index')!r}"
    missing = [key for key in PROBLEM_KEYS if info.get(key) is None]
    if missing:
        raise ValueError(f"extra_info has no {', '.join(missing)} ({where}): this verifier needs the problem's "
                         f"{', '.join(PROBLEM_KEYS)}; write the parquet with rlrt_explore.task.write_rl_data")
    allowed = parse_moves(str(info["moves"]))
    if allowed is None:
        raise ValueError(f"extra_info.moves={info['moves']!r} is not a move list like '+1 +3 *2' ({where})")
    try:
        start, target, max_moves = int(info["start"]), int(info["target"]), int(info["max_moves"])
    except (TypeError, ValueError):
        raise ValueError(f"extra_info.start, target and max_moves must be integers, got {info['start']!r}, "
                         f"{info['target']!r}, {info['max_moves']!r} ({where})") from None
    return start, target, allowed, max_moves


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  **kwargs: Any) -> dict[str, float]:
    """Score one response (verl's custom-reward signature): ``{"score": s, "acc": s, "has_answer": h}`` with

        s = 1.0 iff the path in the last ``\\boxed{}`` solves the row's problem (``is_solution``), else 0.0
        h = 1.0 iff that box holds a parsable path (right or wrong), else 0.0

    No format bonus or penalty. A row whose ``extra_info`` lacks the problem, or whose ``ground_truth`` does not
    solve it, raises (a data error, not a wrong answer). Other ``kwargs`` are accepted and ignored.
    """
    start, target, allowed, max_moves = problem_of(extra_info, data_source)
    reference = parse_path(str(ground_truth))
    if reference is None or not is_solution(start, target, allowed, max_moves, reference):
        raise ValueError(f"ground_truth {ground_truth!r} does not solve its problem (start={start}, target={target}, "
                         f"moves={format_moves(allowed)!r}, max_moves={max_moves}; data_source={data_source!r}, "
                         f"extra_info.index={(extra_info or {}).get('index')!r}): regenerate the parquet")
    path = answer_path(solution_str)
    correct = path is not None and is_solution(start, target, allowed, max_moves, path)
    return {"score": float(correct), "acc": float(correct), "has_answer": float(path is not None)}
