"""The math-verify reward: last \\boxed{} answer, exact scores, safe in verl's reward-loop worker threads."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlrt_recipe.reward import MAX_ANSWER_CHARS, compute_score, last_boxed

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
    ("The answer is 42.", "42", 0.0, 0.0),  # no box
    ("", "42", 0.0, 0.0),  # empty response
    ("\\boxed{}", "42", 0.0, 0.0),  # empty box
    ("\\boxed{42} then cut off at \\boxed{\\frac{4", "42", 0.0, 0.0),  # unclosed last box
    ("\\boxed{" + "1" * (MAX_ANSWER_CHARS + 1) + "}", "1" * (MAX_ANSWER_CHARS + 1), 0.0, 1.0),
]


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
    """verl calls compute_score in executor threads: every case gives its exact score there, and no signal
    handler or alarm is ever installed (math-verify's default timeouts would raise off the main thread)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the reward must not use signal (it runs in worker threads)")

    monkeypatch.setattr(signal, "signal", forbidden)
    monkeypatch.setattr(signal, "alarm", forbidden)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_score, CASES))
    for (text, gold, score, has_answer), (result, on_main) in zip(CASES, results):
        assert not on_main
        assert result == {"score": score, "acc": score, "has_answer": has_answer}, (text, gold)


def test_plain_thread():
    """A bare threading.Thread (no executor) works too."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(compute_score("math500", "\\boxed{\\frac12}", "0.5")))
    thread.start()
    thread.join()
    assert out == {"score": 1.0, "acc": 1.0, "has_answer": 1.0}


def test_extra_kwargs_are_accepted():
    """verl passes reward_kwargs and router addresses as keyword arguments."""
    result = compute_score("aime24", "\\boxed{7}", "7", extra_info=None, reward_router_address=None, foo=1)
    assert result == {"score": 1.0, "acc": 1.0, "has_answer": 1.0}


@pytest.mark.parametrize("gold", ["", "  ", None, ["1"], True])
def test_unusable_ground_truth_raises_naming_the_row(gold):
    """A bad ground truth is a data error naming data_source and index, not a silent zero reward."""
    with pytest.raises((ValueError, TypeError), match=r"data_source='aime25'.*index=7"):
        compute_score("aime25", "\\boxed{1}", gold, {"index": 7})
