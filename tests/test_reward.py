"""The math-verify reward: last \\boxed{} answer, exact scores, safe in verl's reward-loop worker threads, and never
stuck on an answer sympy cannot finish (time limit in a worker process, stuck workers killed and replaced)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlrt_recipe import reward
from rlrt_recipe.reward import MAX_ANSWER_CHARS, compute_score, last_boxed

KEYS = {"score", "acc", "has_answer", "timeout"}
T = 2.0  # the time limit the tests pass as timeout_seconds (small, so a timed-out answer costs 2 s)
DEADLINE = 3 * T + 30  # wall seconds any call may take, worker start-up included

# (response, ground truth, expected score == acc, expected has_answer)
CASES = [
    ("So the answer is \\boxed{42}.", "42", 1.0, 1.0),
    ("\\boxed{42}", 42, 1.0, 1.0),  # integer ground truth, as MathArena stores AIME answers
    ("Thus $x = \\boxed{\\frac{1}{2}}$.", "0.5", 1.0, 1.0),
    ("Thus $x = \\boxed{0.5}$.", "\\frac{1}{2}", 1.0, 1.0),
    ("\\boxed{\\dfrac{3}{4}}", "3/4", 1.0, 1.0),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", 1.0, 1.0),  # nested braces
    ("\\boxed{2^{1/2}}", "\\sqrt{2}", 1.0, 1.0),
    ("\\boxed{\\left(1, 2\\right)}", "(1,2)", 1.0, 1.0),
    ("\\boxed{\\text{10}}", "$10$", 1.0, 1.0),
    ("First \\boxed{3}, no wait: \\boxed{5}", "5", 1.0, 1.0),  # the last box counts
    ("First \\boxed{5}, no wait: \\boxed{3}", "5", 0.0, 1.0),
    ("\\boxed{41}", "42", 0.0, 1.0),  # wrong
    ("\\boxed{\\frac{1}{3}}", "0.5", 0.0, 1.0),  # wrong
    ("\\boxed{[1, 2]}", "(1,2)", 0.0, 1.0),  # wrong: closed interval against open
    ("The answer is 42.", "42", 0.0, 0.0),  # no box
    ("", "42", 0.0, 0.0),  # empty response
    ("\\boxed{}", "42", 0.0, 0.0),  # empty box
    ("\\boxed{42} then cut off at \\boxed{\\frac{4", "42", 0.0, 0.0),  # unclosed last box
    ("\\boxed{" + "1" * (MAX_ANSWER_CHARS + 1) + "}", "1" * (MAX_ANSWER_CHARS + 1), 0.0, 1.0),  # too long
]

NESTED_FRACTION = "1"
for _ in range(200):
    NESTED_FRACTION = "\\frac{1}{1+" + NESTED_FRACTION + "}"  # 2401 characters, 200 levels

# (id, answer, lift the MAX_ANSWER_CHARS guard, expected timeout). Unguarded: the guard lifted, so the time limit
# alone bounds the answer. None = depends on the machine (parse takes 0.4-2.7 s on 2 cores against T = 2 s):
# only the deadline and the score are fixed then.
ADVERSARIAL = [
    ("power_tower", "9^{9^{9^{9}}}", False, 1.0),
    ("power_of_power", "10^{10^{10}}", False, 1.0),
    ("huge_factorial", "(10^{10})!", False, 1.0),
    ("nested_fractions", NESTED_FRACTION, False, 0.0),
    ("nested_fractions_unguarded", NESTED_FRACTION, True, None),
    ("100k_digits", "1" * 100_000, False, 0.0),
    ("100k_digits_unguarded", "1" * 100_000, True, None),
    ("100k_sum", "1+" * 50_000 + "1", False, 0.0),
    ("100k_sum_unguarded", "1+" * 50_000 + "1", True, 1.0),  # parse alone takes ~14 s
]


def _timed_score(response: str, gold, **kwargs) -> tuple[dict, float]:
    start = time.monotonic()
    result = compute_score("aime24", response, gold, {"index": 3}, **kwargs)
    return result, time.monotonic() - start


def _worker_pids() -> set[int]:
    # private state: the only way to see which process was killed
    return {worker.process.pid for worker in reward._pool()._workers}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a \\boxed{1} b \\boxed{\\frac{1}{\\sqrt{2}}} c", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{{a}{b}}", "{a}{b}"),
        ("no box", None),
        ("\\boxed{1} \\boxed{2", None),
    ],
)
def test_last_boxed(text, expected):
    """Guards the brace matcher: nested braces kept, the last box wins, an unclosed last box is no answer."""
    assert last_boxed(text) == expected


def _score(case):
    text, gold, _, _ = case
    return compute_score("aime24", text, gold, {"index": 0}), threading.current_thread() is threading.main_thread()


def test_scores_from_worker_threads(monkeypatch):
    """verl calls compute_score in executor threads: with 8 threads at once (more than the pool's workers) every
    case, right or wrong, gives its exact score, and the calling process never installs a signal handler or
    alarm (math-verify's own timeouts would raise off the main thread; only worker processes use signals)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the reward must not use signal in the calling process (it runs in worker threads)")

    monkeypatch.setattr(signal, "signal", forbidden)
    monkeypatch.setattr(signal, "alarm", forbidden)
    monkeypatch.setattr(signal, "setitimer", forbidden)
    cases = CASES * 3
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(_score, cases))
    for (text, gold, score, has_answer), (result, on_main) in zip(cases, results):
        assert not on_main
        assert result == {"score": score, "acc": score, "has_answer": has_answer, "timeout": 0.0}, (text, gold)
    assert len(_worker_pids()) <= reward.POOL_WORKERS


def test_plain_thread():
    """A bare threading.Thread (no executor) works too."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(compute_score("math500", "\\boxed{\\frac12}", "0.5")))
    thread.start()
    thread.join()
    assert out == {"score": 1.0, "acc": 1.0, "has_answer": 1.0, "timeout": 0.0}


def test_extra_kwargs_are_accepted():
    """verl passes reward_kwargs and router addresses as keyword arguments; timeout_seconds is read, the rest
    ignored."""
    result = compute_score("aime24", "\\boxed{7}", "7", extra_info=None, reward_router_address=None, foo=1,
                           timeout_seconds=3)
    assert result == {"score": 1.0, "acc": 1.0, "has_answer": 1.0, "timeout": 0.0}


@pytest.mark.parametrize("timeout_seconds", [0, -1.0, float("inf"), float("nan")])
def test_timeout_seconds_must_be_positive_and_finite(timeout_seconds):
    """A zero, negative or endless limit from the config is an error naming the config key, not a silent
    'always timed out' or a worker that can hang again."""
    with pytest.raises(ValueError, match=r"reward_kwargs\.timeout_seconds must be > 0"):
        compute_score("aime24", "\\boxed{7}", "7", timeout_seconds=timeout_seconds)


@pytest.mark.parametrize("gold", ["", "  ", None, ["1"], True])
def test_unusable_ground_truth_raises_naming_the_row(gold):
    """A bad ground truth is a data error naming data_source and index, not a silent zero reward."""
    with pytest.raises((ValueError, TypeError), match=r"data_source='aime25'.*index=7"):
        compute_score("aime25", "\\boxed{1}", gold, {"index": 7})


@pytest.mark.parametrize(("answer", "lift_guard", "expected"), [case[1:] for case in ADVERSARIAL],
                         ids=[case[0] for case in ADVERSARIAL])
def test_adversarial_answer_returns_in_time(monkeypatch, answer, lift_guard, expected):
    """Guards the hang of issue 12: math-verify never finishes 9^{9^{9^{9}}} (nor 10^{10^{10}}, (10^{10})!) with
    its timeouts off. Each call now returns within 3·T + 30 s with score 0; an answer stopped at T has
    timeout = 1 (and took at least T), an answer over MAX_ANSWER_CHARS is never judged (timeout = 0)."""
    if lift_guard:
        monkeypatch.setattr(reward, "MAX_ANSWER_CHARS", 10**6)
    result, seconds = _timed_score("Therefore \\boxed{" + answer + "}.", "5", timeout_seconds=T)
    assert seconds < DEADLINE
    assert set(result) == KEYS
    assert result["score"] == result["acc"] == 0.0
    assert result["has_answer"] == 1.0
    if expected is not None:
        assert result["timeout"] == expected
    if result["timeout"]:
        assert seconds >= 0.9 * T  # the flag means the time was used up, not a failure reported as a timeout


def test_stuck_worker_is_killed_and_replaced(monkeypatch, caplog):
    """A worker that misses the caller's deadline (here: a deadline 1 s before the worker's own timer, so the
    kill path runs for sure) is killed, the answer scores 0 with timeout = 1 and a warning naming the row, and
    the pool still answers: the next ordinary answers are scored right by a fresh worker."""
    assert compute_score("aime24", "\\boxed{1}", "1")["score"] == 1.0  # a warm worker to be the victim
    before = _worker_pids()
    monkeypatch.setattr(reward, "KILL_GRACE_SECONDS", -1.0)
    with caplog.at_level(logging.WARNING, logger="rlrt_recipe.reward"):
        result, seconds = _timed_score("\\boxed{9^{9^{9^{9}}}}", "5", timeout_seconds=T)
    monkeypatch.undo()
    assert result == {"score": 0.0, "acc": 0.0, "has_answer": 1.0, "timeout": 1.0}
    assert T - 1.0 <= seconds < DEADLINE
    assert "killed" in caplog.text and "data_source='aime24', extra_info.index=3" in caplog.text
    killed = before - _worker_pids()
    assert len(killed) == 1
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running or as a zombie
        os.kill(killed.pop(), 0)
    for text, gold, score, has_answer in CASES[:4] + CASES[10:14]:
        result, seconds = _timed_score(text, gold, timeout_seconds=T)
        assert result == {"score": score, "acc": score, "has_answer": has_answer, "timeout": 0.0}, (text, gold)


def test_worker_imports_neither_torch_nor_verl():
    """A worker runs this module and math-verify only: it must not pay torch's or verl's import (seconds, and GPU
    state in a verl process). Checked the way the worker starts: import the module, judge one answer."""
    code = ("import sys, rlrt_recipe.reward as r; assert r.is_equivalent('1', '1'); "
            "print(sorted(m for m in ('torch', 'verl', 'ray', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


# Multiple-choice rows (extra_info.answer_format, rlrt_recipe.data's image sets): (response, options, gold, score,
# has_answer). Options as the parquet stores them: texts without labels; [] when the question holds them inline.
OPTIONS = ["10", "12", "the triangle", "15"]
CHOICE_CASES = [
    ("So \\boxed{B}.", OPTIONS, "B", 1.0, 1.0),
    ("\\boxed{(B)}", OPTIONS, "B", 1.0, 1.0),
    ("\\boxed{B. 12}", OPTIONS, "B", 1.0, 1.0),
    ("\\boxed{B. 15}", OPTIONS, "B", 1.0, 1.0),  # the letter wins, the text after it is not checked (ours)
    ("\\boxed{\\text{B}}", OPTIONS, "B", 1.0, 1.0),
    ("$\\boxed{B)}$", OPTIONS, "B", 1.0, 1.0),
    ("\\boxed{12}", OPTIONS, "B", 1.0, 1.0),  # the option's text, verbatim (ours)
    ("\\boxed{The Triangle.}", OPTIONS, "C", 1.0, 1.0),  # text compared ignoring case and a final full stop
    ("\\boxed{A triangle}", OPTIONS, "A", 0.0, 1.0),  # no separator after the letter: not a label
    ("\\boxed{C}", OPTIONS, "B", 0.0, 1.0),  # wrong letter
    ("\\boxed{E}", OPTIONS, "B", 0.0, 1.0),  # beyond the options
    ("\\boxed{b}", OPTIONS, "B", 0.0, 1.0),  # capitals only
    ("\\boxed{A} no, wait: \\boxed{B}", OPTIONS, "B", 1.0, 1.0),  # the last box counts
    ("\\boxed{B} then cut off at \\boxed{C", OPTIONS, "B", 0.0, 0.0),  # unclosed last box: no answer, no fallback
    ("\\boxed{}", OPTIONS, "B", 0.0, 0.0),
    ("The answer is B because the bar is taller.", OPTIONS, "B", 0.0, 0.0),  # no box, no answer statement
    ("It is the second bar.\n**Answer: (B)**", OPTIONS, "B", 1.0, 1.0),  # no box: our fallback, last line
    ("Reasoning...\nThe final answer is B.", OPTIONS, "B", 1.0, 1.0),
    ("", OPTIONS, "B", 0.0, 0.0),
    ("\\boxed{B}", [], "B", 1.0, 1.0),  # options inside the question (WeMath): letters only
    ("\\boxed{12}", [], "B", 0.0, 1.0),
    ("\\boxed{B}", ("10", "12"), "B", 1.0, 1.0),  # any sequence of options
]


def _choice(options) -> dict:
    return {"index": 5, "answer_format": "multiple_choice", "options": options}


@pytest.mark.parametrize(("response", "options", "gold", "score", "has_answer"), CHOICE_CASES)
def test_multiple_choice(monkeypatch, response, options, gold, score, has_answer):
    """Guards the multiple-choice judge: the last box read as a letter or an option's text, our no-box fallback, the
    same four keys as every row, and no math-verify worker involved (timeout always 0)."""

    def no_pool():
        raise AssertionError("multiple choice must not reach the math-verify pool")

    monkeypatch.setattr(reward, "_pool", no_pool)
    result = compute_score("mmmu", response, gold, _choice(options))
    assert result == {"score": score, "acc": score, "has_answer": has_answer, "timeout": 0.0}


@pytest.mark.parametrize("gold", ["12", "(B)", "E", "", None, 1])
def test_multiple_choice_ground_truth_must_be_one_listed_letter(gold):
    """A multiple-choice ground truth that is not a bare letter of the listed options is a data error naming the
    row, not a zero reward."""
    with pytest.raises(ValueError, match=r"multiple-choice ground_truth must be one option letter of 4 options.*"
                                         r"data_source='mmmu', extra_info.index=5"):
        compute_score("mmmu", "\\boxed{B}", gold, _choice(OPTIONS))


def test_free_form_rows_use_math_verify_within_the_time_limit():
    """answer_format free_form is the text sets' judge: math-verify equivalence, and a pathological answer stops at
    the time limit (timeout = 1) instead of hanging."""
    info = {"index": 2, "answer_format": "free_form", "options": []}
    assert compute_score("mathvista", "\\boxed{0.5}", "\\frac{1}{2}", info) == {
        "score": 1.0, "acc": 1.0, "has_answer": 1.0, "timeout": 0.0}
    assert compute_score("mathvista", "\\boxed{7}", "12", info)["score"] == 0.0
    start = time.monotonic()
    result = compute_score("zerobench", "\\boxed{9^{9^{9^{9}}}}", "5", info, timeout_seconds=T)
    assert result == {"score": 0.0, "acc": 0.0, "has_answer": 1.0, "timeout": 1.0}
    assert T * 0.9 <= time.monotonic() - start < DEADLINE


def test_unknown_answer_format_raises_naming_the_row():
    """A misspelt answer_format is a data error naming the row, not a silent fall back to math-verify."""
    with pytest.raises(ValueError, match=r"answer_format must be one of \['free_form', 'multiple_choice'\].*"
                                         r"data_source='wemath', extra_info.index=3"):
        compute_score("wemath", "\\boxed{B}", "B", {"index": 3, "answer_format": "letter"})
