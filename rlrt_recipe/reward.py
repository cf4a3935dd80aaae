"""Rule-based math reward for verl: math-verify on the last ``\\boxed{...}`` answer of a response.

Load it in any recipe with::

    reward.custom_reward_function.path=pkg://rlrt_recipe.reward
    reward.custom_reward_function.name=compute_score     # verl's default name

verl 0.9.1 imports the module by name (``verl.utils.import_utils.load_module``) and its reward loop calls
``compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)`` in an executor
thread (``experimental/reward_loop/reward_manager/naive.py``), plus any ``reward_kwargs`` from the config.
math-verify's own timeouts use ``signal.alarm``, which raises off the main thread, so both ``parse`` and
``verify`` are called with their timeout disabled and nothing here touches ``signal``. The price: no
per-call time limit; answers longer than ``MAX_ANSWER_CHARS`` are not parsed at all (score 0), which keeps
sympy away from the pathological inputs a runaway generation produces.

Every key of the returned dict becomes a reward-extra-info column; verl's validation reports the ``acc``
column as ``val-core/<data_source>/acc/mean@<n>`` (avg@n).
"""

from __future__ import annotations

from typing import Any

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

BOXED = "\\boxed{"
# The longest final answer we hand to sympy. Competition answers (AIME, AMC, MATH500) are far shorter.
MAX_ANSWER_CHARS = 512
_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text``, braces matched, or None.

    Nested braces are kept (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``). If the last ``\\boxed{`` is
    never closed (a response cut off at the length limit) there is no final answer: an earlier complete
    box is not used, because the model moved past it.
    """
    start = text.rfind(BOXED)
    if start < 0:
        return None
    depth = 1
    begin = start + len(BOXED)
    for pos in range(begin, len(text)):
        char = text[pos]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[begin:pos]
    return None


def _parse(answer: str) -> list:
    """math-verify ``parse`` of one bare answer, thread-safe (no signal-based timeout)."""
    return parse(BOXED + answer + "}", extraction_config=_EXTRACTION, parsing_timeout=None)


def _gold_text(ground_truth: Any, data_source: str, extra_info: dict | None) -> str:
    """The ground truth as answer text: numbers as written, ``$...$`` and a ``\\boxed{}`` wrapper removed."""
    if isinstance(ground_truth, bool) or not isinstance(ground_truth, (str, int, float)):
        raise TypeError(
            f"ground_truth must be a string or a number, got {type(ground_truth).__name__} "
            f"(data_source={data_source!r}, extra_info.index={(extra_info or {}).get('index')!r}); "
            "regenerate the parquet with scripts/prepare_data.py"
        )
    text = str(ground_truth).strip().strip("$").strip()
    text = last_boxed(text) or text
    if not text:
        raise ValueError(
            f"empty ground_truth (data_source={data_source!r}, extra_info.index="
            f"{(extra_info or {}).get('index')!r}); scripts/prepare_data.py drops such rows, regenerate the parquet"
        )
    return text


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Score one response against the ground truth (verl's custom-reward signature).

    Returns ``{"score": s, "acc": float(correct), "has_answer": float(bool)}`` where
    - ``has_answer`` = 1.0 iff the response ends its last ``\\boxed{`` with a closing brace and a non-empty
      answer;
    - ``acc`` = 1.0 iff that answer is equivalent to the ground truth under math-verify
      (``verify(gold, answer)``: symbolic / numeric equality, so ``\\frac{1}{2}`` equals ``0.5``);
    - ``score`` = ``acc``: 1.0 correct, 0.0 otherwise (wrong, no box, empty box, unparsable). No format
      bonus or penalty.
    ``kwargs`` (verl's ``reward_kwargs``, router addresses) are accepted and ignored. A missing or empty
    ground truth raises, naming the row: it is a data error, not a wrong answer.
    """
    gold = _parse(_gold_text(ground_truth, data_source, extra_info))
    answer = last_boxed(solution_str or "")
    has_answer = bool(answer and answer.strip())
    correct = False
    if has_answer and len(answer) <= MAX_ANSWER_CHARS:
        correct = bool(gold) and verify(gold, _parse(answer), timeout_seconds=None)
    return {"score": float(correct), "acc": float(correct), "has_answer": float(has_answer)}
