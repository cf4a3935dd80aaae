"""The "reach the target" task: many distinct correct paths per problem, in verl's RL parquet schema.

Problem (S, T, M, L): start S, target T, three allowed moves M (``+k`` and ``*k``), step limit L. Prompt:
"S to T using M in at most L steps." (S first: it is then spelled as the path's first number is);
response: the numbers the path visits in ``\\boxed{}``, e.g. ``\\boxed{3 6 9 18}`` (3 +3 → 6 +3 → 9 *2 → 18);
correct iff it goes from S to T in at most L allowed moves (``rlrt_explore.reward``).

Why exploration can matter: L is the shortest path's length plus ``SLACK``, and every problem has at least
``MIN_CORRECT_PATHS`` correct paths (21.8 on average over the held-out problems): other moves, or the same
moves in another order — for 3 → 18 with *2, +1, +3 in at most 5 steps, 3 6 9 18 (+3 +3 *2), 3 4 8 9 18
(+1 *2 +1 *2) and 3 6 12 15 18 (*2 *2 +3 +3) are three of 13. A policy can keep many of them or collapse onto
one, and a problem it solves one way may be unsolved in the way it prefers elsewhere. Every move strictly
increases the number (k ≥ 1 for ``+k``, k ≥ 2 for ``*k``, S ≥ 1), so the correct paths of a problem are
enumerated exactly (``correct_paths``, at most 3^L walks) and the number of distinct correct paths a policy
finds has a known ceiling.

Why the response lists the numbers rather than the moves (``\\boxed{+3 +3 *2}``): the running value is then
written out, each step a relation between adjacent numbers, which the 2-layer model picks up within the warm
start; with moves only, it would have to carry the running value in its hidden state. (The tokenizer verl
loads from the saved model spells every number digit by digit, Qwen2's pre-tokenizer: a number is one to two
tokens.) (A first try with moves only, a different move set per problem, stayed below a random guesser: 0.5 % vs
3.7 % correct — at lr 5e-3, which also stalls this format, so that number does not separate the two formats.)

Problems come from a seeded generator (``generate_problems``) and are split by problem into ``warm`` (the
supervised warm start), ``train`` (RL) and ``heldout`` (validation, pass@k). The reference solution
(``reward_model.ground_truth``, the RLSD teacher's answer; its worked form ``extra_info.solution``, the OPSD
teacher's) is the first shortest path in numeric order.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
from typing import Any, NamedTuple

from rlrt_explore.reward import Move, Path, apply_move, apply_moves, format_moves, format_path

DATA_SOURCE = "rlrt/reach_target"
#: The move sets a problem's allowed moves are drawn from (uniformly); each is sorted as ``format_moves`` shows it.
MOVE_SETS: tuple[tuple[Move, ...], ...] = (("*2", "+1", "+3"),)
START_RANGE = (1, 15)  # S is drawn uniformly from these, inclusive
MAX_TARGET = 40  # T < 40: targets of one or two digits
WALK_LENGTHS = (2, 3, 4)  # T is where a uniformly random walk of one of these lengths from S ends
SLACK = 2  # L = shortest path length + SLACK: longer, different paths are correct too
MAX_MOVES = 6  # cap on L: the longest correct response is then 29 tokens with EOS
MIN_CORRECT_PATHS = 4  # problems with fewer correct paths are not generated
#: main_ppo's data.max_prompt_length and data.max_response_length in the exploration experiment (ours), in the
#: tokens of the tokenizer verl loads: every student prompt (≤ 40 tokens) fits, and every teacher prompt fits
#: rlrt's default privileged budget; 24 response tokens fit 2 051 of the 4 188 correct paths (296 of 1 046
#: held out; the shortest path of every problem always) — the longest correct response is 29 tokens with EOS,
#: so a longer path is cut and scored wrong (tests/test_explore_task.py, test_lengths_with_the_tokenizer_verl_loads).
MAX_PROMPT_LENGTH = 64
MAX_RESPONSE_LENGTH = 24
NUM_PROBLEMS = 300  # of the 313 problems these settings allow
NUM_RL = 32  # problems RL trains on
NUM_HELDOUT = 48  # problems pass@k is measured on
SEED = 0


class Problem(NamedTuple):
    start: int
    target: int
    moves: tuple[Move, ...]  # the allowed moves, sorted
    max_moves: int  # L


def successors(value: int, moves: tuple[Move, ...]) -> list[int]:
    """The distinct numbers one allowed move takes ``value`` to, ascending (1 +1 and 1 *2 are one step to 2)."""
    return sorted({apply_move(value, move) for move in moves})


@functools.cache
def correct_paths(problem: Problem) -> tuple[Path, ...]:
    """Every correct path of ``problem`` (the numbers it visits, S first), shortest first, then in numeric order.

    Depth-first over paths of at most L steps; a branch stops once its value reaches T (moves only increase
    the value, so nothing beyond T comes back to it, and a path that reaches T and goes on is wrong).
    """
    found: list[Path] = []

    def extend(path: Path) -> None:
        if path[-1] == problem.target and len(path) > 1:
            found.append(path)
            return
        if path[-1] > problem.target or len(path) - 1 == problem.max_moves:
            return
        for value in successors(path[-1], problem.moves):
            extend(path + (value,))

    extend((problem.start,))
    return tuple(sorted(found, key=lambda p: (len(p), p)))


def reference_path(problem: Problem) -> Path:
    """The reference solution: the first of ``correct_paths`` (a shortest one)."""
    return correct_paths(problem)[0]


def shortest_length(start: int, target: int, moves: tuple[Move, ...], limit: int = MAX_MOVES) -> int | None:
    """Number of steps of a shortest path from ``start`` to ``target`` (breadth-first up to ``limit``), or None."""
    frontier = {start}
    for length in range(1, limit + 1):
        frontier = {v for u in frontier for v in successors(u, moves) if v <= target}
        if target in frontier:
            return length
    return None


def draw_problem(rng: random.Random) -> Problem | None:
    """One candidate problem from ``rng``: S uniform in ``START_RANGE``, moves from ``MOVE_SETS``, T the end of a
    uniformly random walk of a length from ``WALK_LENGTHS``, L = shortest + ``SLACK`` capped at ``MAX_MOVES``.
    None if T ≥ ``MAX_TARGET`` or the problem has fewer than ``MIN_CORRECT_PATHS`` correct paths."""
    start = rng.randint(*START_RANGE)
    moves = rng.choice(MOVE_SETS)
    target = apply_moves(start, [rng.choice(moves) for _ in range(rng.choice(WALK_LENGTHS))])[-1]
    if target >= MAX_TARGET:
        return None
    shortest = shortest_length(start, target, moves)
    if shortest is None:
        return None
    problem = Problem(start, target, moves, min(shortest + SLACK, MAX_MOVES))
    return problem if len(correct_paths(problem)) >= MIN_CORRECT_PATHS else None


def generate_problems(count: int = NUM_PROBLEMS, seed: int = SEED) -> list[Problem]:
    """``count`` distinct problems (no two with the same S, T and moves) in the order ``seed``'s draws first
    produce them."""
    rng = random.Random(seed)
    problems: dict[tuple[int, int, tuple[Move, ...]], Problem] = {}
    for attempt in itertools.count(1):
        problem = draw_problem(rng)
        if problem is not None:
            problems.setdefault(problem[:3], problem)
            if len(problems) == count:
                return list(problems.values())
        if attempt == 1000 * count:
            raise ValueError(f"only {len(problems)} distinct problems in {attempt} draws: ask for fewer than {count}, "
                             "or widen START_RANGE, MAX_TARGET or MOVE_SETS")
    raise AssertionError("unreachable")


def split_problems(num_problems: int = NUM_PROBLEMS, num_rl: int = NUM_RL, num_heldout: int = NUM_HELDOUT,
                   seed: int = SEED) -> dict[str, list[Problem]]:
    """``{"warm": [...], "train": [...], "heldout": [...]}``, disjoint: ``generate_problems(num_problems, seed)``
    (already in random order) cut into the warm start's problems, then ``num_rl`` RL problems, then
    ``num_heldout`` held-out ones. RL trains on problems the warm start never saw, so its reward starts where
    the held-out pass rate does, rather than at what the warm start memorised."""
    problems = generate_problems(num_problems, seed)
    if num_rl + num_heldout >= num_problems:
        raise ValueError(f"num_rl ({num_rl}) + num_heldout ({num_heldout}) must leave warm-start problems out of "
                         f"num_problems ({num_problems})")
    warm = num_problems - num_rl - num_heldout
    return {"warm": problems[:warm], "train": problems[warm:warm + num_rl], "heldout": problems[warm + num_rl:]}


def question(problem: Problem) -> str:
    moves = format_moves(problem.moves)
    return f"{problem.start} to {problem.target} using {moves} in at most {problem.max_moves} steps."


def response(path: Path | str) -> str:
    """The response naming ``path``: ``\\boxed{3 6 9 18}`` (a string is boxed as it is)."""
    return "\\boxed{" + (path if isinstance(path, str) else format_path(path)) + "}"


def answer(problem: Problem) -> str:
    """``reward_model.ground_truth``: the reference path's text, e.g. ``3 6 9 18``."""
    return format_path(reference_path(problem))


def move_between(a: int, b: int, moves: tuple[Move, ...]) -> Move:
    """The first allowed move (in ``moves`` order) that takes ``a`` to ``b``."""
    for move in moves:
        if apply_move(a, move) == b:
            return move
    raise ValueError(f"no move of {format_moves(moves)!r} takes {a} to {b}")


def worked_solution(problem: Problem, path: Path | None = None) -> str:
    """``path`` (default: the reference) one step a line (``3 +3 = 6``), then its box: the OPSD teacher's context
    ``extra_info.solution``."""
    path = reference_path(problem) if path is None else path
    steps = [f"{a} {move_between(a, b, problem.moves)} = {b}" for a, b in itertools.pairwise(path)]
    return "\n".join(steps + [response(path)])


def row(problem: Problem, index: int, split: str) -> dict[str, Any]:
    """One row of verl's RL schema; ``extra_info`` carries the problem (for the verifier), the worked solution
    and how many correct paths the problem has."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": question(problem)}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": answer(problem)},
        "extra_info": {
            "index": index,
            "split": split,
            "solution": worked_solution(problem),
            "start": problem.start,
            "target": problem.target,
            "moves": format_moves(problem.moves),
            "max_moves": problem.max_moves,
            "num_correct_paths": len(correct_paths(problem)),
        },
    }


def write_parquet(path: str | os.PathLike, problems: list[Problem], split: str, repeat: int = 1) -> str:
    """Write ``problems`` ``repeat`` times over (all once, then all again, …) to parquet; ``extra_info.index``
    numbers the rows."""
    import pandas as pd

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pd.DataFrame([row(p, i, split) for i, p in enumerate(problems * repeat)]).to_parquet(path)
    return path


def write_rl_data(data_dir: str | os.PathLike, rl_problems: int | None = None, repeat: int = 16,
                  heldout_problems: int | None = None) -> dict[str, str]:
    """The RL run's files in ``data_dir``: ``train.parquet`` (the first ``rl_problems`` RL problems, default all
    ``NUM_RL``, each ``repeat`` times: 512 rows, so 50 steps × 8 prompts stay in one epoch and each problem
    recurs ~12 times) and ``heldout.parquet`` (the first ``heldout_problems`` held-out problems, default all
    ``NUM_HELDOUT``, once each: the validation set, sampled n times per problem for pass@k). Returns
    ``{"train": path, "heldout": path}``."""
    splits = split_problems()
    return {
        "train": write_parquet(os.path.join(data_dir, "train.parquet"), splits["train"][:rl_problems], "train",
                               repeat),
        "heldout": write_parquet(os.path.join(data_dir, "heldout.parquet"), splits["heldout"][:heldout_problems],
                                 "heldout"),
    }
