"""Cost of the math-verify reward per ordinary answer: judged in the calling thread (the code before issue 12)
against judged in a worker process (``rlrt_recipe.reward.compute_score`` now), on CPU.

    python scripts/bench_reward.py                      # 400 answers, 3 repeats, from 1 and 4 threads
    python scripts/bench_reward.py --tiny               # CI: 40 answers, 1 repeat
    python scripts/bench_reward.py --json out.json

    in-thread = last_boxed + is_equivalent(gold, answer) in the calling thread, no time limit: the old compute_score
    pool      = compute_score(...): the same judgement in a worker, plus one JSON line each way over a pipe
    ratio     = ms per answer (pool) / ms per answer (in-thread)

ms per answer = wall seconds to score every answer / answers. With ``--threads N`` the answers are scored from N
threads at once, as verl's reward loop does from its executor: in-thread judgements share one GIL, the pool's run
on up to ``POOL_WORKERS`` processes. Answers: responses ending in ``\\boxed{...}`` for typical competition golds
(integers, fractions, roots, π, intervals, negatives), about half in an equivalent form of the gold and half wrong.
Both paths must give the same score to every answer, or the script exits naming the first that differs. Times are
the median (and the minimum) of ``--repeats`` passes over all answers after one warm-up pass (which also starts the
pool's workers).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
from concurrent.futures import ThreadPoolExecutor

from rlrt_recipe.reward import MAX_ANSWER_CHARS, POOL_WORKERS, compute_score, is_equivalent, last_boxed
from rlrt_recipe.testing.bench import timed, write_json

# gold -> (equivalent forms, wrong answers), as models write them
ANSWERS = {
    "42": (["42", "42.0", "\\text{42}"], ["41", "-42", "24"]),
    "204": (["204", "2\\cdot 102"], ["240", "20.4"]),
    "\\frac{1}{2}": (["0.5", "\\dfrac{1}{2}", "1/2", "\\frac{2}{4}"], ["\\frac{1}{3}", "2"]),
    "-\\frac{7}{3}": (["-7/3", "-\\dfrac{7}{3}", "\\frac{-7}{3}"], ["\\frac{7}{3}", "-\\frac{3}{7}"]),
    "\\sqrt{2}": (["2^{1/2}", "\\sqrt{2}", "\\frac{2}{\\sqrt{2}}"], ["2", "\\sqrt{3}"]),
    "3\\sqrt{5}": (["\\sqrt{45}", "3\\sqrt{5}"], ["5\\sqrt{3}", "\\sqrt{15}"]),
    "\\frac{\\sqrt{3}}{2}": (["\\frac{\\sqrt{3}}{2}", "\\frac{3}{2\\sqrt{3}}"],
                             ["\\frac{\\sqrt{2}}{2}", "\\frac{1}{2}"]),
    "2\\pi": (["2\\pi", "\\pi \\cdot 2"], ["\\pi", "4\\pi"]),
    "(1, 2)": (["\\left(1, 2\\right)", "(1,2)"], ["[1, 2]", "(2, 1)"]),
    "[0, \\infty)": (["[0, \\infty)", "\\left[0, \\infty\\right)"], ["(0, \\infty)", "[1, \\infty)"]),
}
FULL_ANSWERS, TINY_ANSWERS = 400, 40
THREADS = 4  # verl's reward loop calls compute_score from an executor thread per pending rollout


def make_answers(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` (response, gold) pairs: a random gold of ``ANSWERS``, then a right form or a wrong answer (even
    odds)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        gold = rng.choice(sorted(ANSWERS))
        right, wrong = ANSWERS[gold]
        answer = rng.choice(right if rng.random() < 0.5 else wrong)
        pairs.append((f"Adding the two cases gives the result, so the answer is $\\boxed{{{answer}}}$.", gold))
    return pairs


def score_in_thread(response: str, gold: str) -> float:
    """The reward as it was before the worker pool: math-verify in the calling thread, no time limit."""
    answer = last_boxed(response)
    return float(bool(answer and answer.strip()) and len(answer) <= MAX_ANSWER_CHARS and is_equivalent(gold, answer))


def score_in_pool(response: str, gold: str) -> float:
    """The reward now: the same judgement in a worker process, under the default time limit."""
    return compute_score("bench", response, gold)["score"]


def score_all(score, pairs: list[tuple[str, str]], threads: int) -> list[float]:
    """``score(response, gold)`` of every pair, from ``threads`` threads at once (in order)."""
    if threads == 1:
        return [score(response, gold) for response, gold in pairs]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda pair: score(*pair), pairs))


def bench_threads(pairs: list[tuple[str, str]], threads: int, repeats: int) -> dict:
    """ms per answer of both paths from ``threads`` threads, and pool / in-thread."""
    row = {"threads": threads, "ms_per_answer": {}, "min_ms_per_answer": {}}
    for name, score in (("in_thread", score_in_thread), ("pool", score_in_pool)):
        median, minimum = timed(lambda: score_all(score, pairs, threads), repeats)
        row["ms_per_answer"][name] = 1e3 * median / len(pairs)
        row["min_ms_per_answer"][name] = 1e3 * minimum / len(pairs)
    row["ratio"] = row["ms_per_answer"]["pool"] / row["ms_per_answer"]["in_thread"]
    row["min_ratio"] = row["min_ms_per_answer"]["pool"] / row["min_ms_per_answer"]["in_thread"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help=f"CI mode: {TINY_ANSWERS} answers, 1 repeat")
    parser.add_argument("--answers", type=int, default=None,
                        help=f"answers per pass (default {FULL_ANSWERS}; {TINY_ANSWERS} with --tiny)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes per path (default 3; 1 with --tiny)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help="the second row's calling threads (the first row always uses 1)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    # math-verify warns that its own timeouts are off on the in-thread path: that is the old code being measured
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    count = args.answers or (TINY_ANSWERS if args.tiny else FULL_ANSWERS)
    repeats = args.repeats or (1 if args.tiny else 3)
    pairs = make_answers(count)

    old, new = score_all(score_in_thread, pairs, 1), score_all(score_in_pool, pairs, 1)
    for (response, gold), before, after in zip(pairs, old, new):
        if before != after:
            raise SystemExit(f"the paths disagree on {response!r} against gold {gold!r}: in-thread {before}, "
                             f"pool {after}; the pool must change the cost, never the score")
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "answers": count, "right_frac": sum(old) / count, "repeats": repeats, "pool_workers": POOL_WORKERS,
        "rows": [],
    }
    print(f"machine: {result['machine']}  answers={count} ({100 * result['right_frac']:.0f}% right) "
          f"repeats={repeats} pool_workers={POOL_WORKERS}")
    print("ms per answer (median pass); ratio = pool / in-thread; min-ratio = the same with the fastest passes")
    print(f"{'threads':>7} {'in-thread ms':>12} {'pool ms':>8} {'ratio':>6} {'min-ratio':>9}")
    for threads in sorted({1, args.threads}):
        row = bench_threads(pairs, threads, repeats)
        result["rows"].append(row)
        ms = row["ms_per_answer"]
        print(f"{threads:>7} {ms['in_thread']:>12.2f} {ms['pool']:>8.2f} {row['ratio']:>6.2f} {row['min_ratio']:>9.2f}",
              flush=True)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
