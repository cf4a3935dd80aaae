"""Multiple-choice questions: the option labels A, B, … as our prompts list them and as answers name them.

One module for both ends (pure Python, no verl, no math-verify): ``rlrt_recipe.data`` lists a question's options
as ``A. …`` lines and turns a source's answer into the ground-truth letter; ``rlrt_recipe.reward`` turns a
model's boxed answer into a letter and compares the two. ``extra_info.answer_format`` says which kind a row is.

What counts as naming an option (all ours; the RLSD paper does not say how it judged multiple choice):

* a label: ``B``, ``(B)``, ``B.``, ``B:``, ``B)``, optionally followed by text (``B. 12``: the letter wins, the
  text after it is not checked), optionally inside ``\\text{}`` / ``\\textbf{}`` / ``\\mathrm{}`` or ``$…$``;
  capital letters only, and ``B 12`` (no separator) is not a label: ``A triangle`` must not read as option A;
* otherwise the option's own text, compared after dropping ``\\text{}``-style wrappers and ``$``, collapsing
  whitespace, dropping a final full stop and ignoring case; it must match exactly one option.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

MULTIPLE_CHOICE = "multiple_choice"
FREE_FORM = "free_form"
ANSWER_FORMATS = (FREE_FORM, MULTIPLE_CHOICE)
LETTERS = string.ascii_uppercase

_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
# "(B)" or "B" followed by the end, or by ".", ":" or ")" and anything.
_LABEL = re.compile(r"\(([A-Z])\)(?:[\s.:].*)?|([A-Z])(?:[.:)].*)?", re.DOTALL)
# A last line that is only an answer statement: "B", "(B)", "Answer: B", "The final answer is (B)."
_STATEMENT = re.compile(r"(?i:(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*:?\s*)?\(?([A-Z])\)?")


def _plain(text: str) -> str:
    """``text`` without ``\\text{}``-style wrappers and ``$``, whitespace collapsed, stripped."""
    previous = None
    while previous != text:  # nested wrappers: \textbf{\text{B}}
        previous, text = text, _WRAPPER.sub(r"\1", text)
    return " ".join(text.replace("$", " ").split())


def _same_text(text: str) -> str:
    return _plain(text).rstrip(".").strip().casefold()


def letters(count: int) -> str:
    """The labels of ``count`` options: ``letters(4) == "ABCD"``; more than 26 options is an error."""
    if not 0 <= count <= len(LETTERS):
        raise ValueError(f"{count} options; at most {len(LETTERS)} can be labelled A-Z")
    return LETTERS[:count]


def label_letter(text: str, count: int | None = None) -> str | None:
    """The letter ``text`` names as a label (``B``, ``(B)``, ``B. 12``, ``\\text{B}``), or None.

    With ``count`` options only ``letters(count)`` are labels; without (options not listed separately) any
    capital letter is.
    """
    match = _LABEL.fullmatch(_plain(text))
    if not match:
        return None
    letter = match.group(1) or match.group(2)
    return letter if count is None or letter in letters(count) else None


def text_letter(text: str, options: Sequence[str]) -> str | None:
    """The letter of the one option whose text ``text`` is (see the module docstring), or None."""
    wanted = _same_text(text)
    found = [letter for letter, option in zip(letters(len(options)), options) if _same_text(option) == wanted]
    return found[0] if len(found) == 1 and wanted else None


def answer_letter(answer: str, options: Sequence[str]) -> str | None:
    """The letter a (boxed) answer names: a label first, else an option's text; None if it names none."""
    return label_letter(answer, len(options) or None) or (text_letter(answer, options) if options else None)


def statement_letter(response: str) -> str | None:
    """Our fallback for a response without ``\\boxed{``: the letter of its last non-empty line when that line is
    only an answer statement (``B``, ``(B)``, ``Answer: B``, ``The answer is (B).``, markdown bold allowed)."""
    lines = [line for line in response.splitlines() if line.strip()]
    if not lines:
        return None
    match = _STATEMENT.fullmatch(lines[-1].replace("*", "").strip().rstrip(".").strip())
    return match.group(1) if match else None


def strip_labels(options: Sequence[str]) -> list[str]:
    """Options without their own labels when every option carries the label of its position (``"A. 12"``,
    ``"(B) 15"``); otherwise unchanged. ``["A. 1", "B. 2"] -> ["1", "2"]``, ``["A. 1", "C. 2"]`` unchanged."""
    stripped = []
    for letter, option in zip(letters(len(options)), options):
        match = re.fullmatch(rf"\s*(?:\({letter}\)|{letter}[.:)])\s*(.*\S)\s*", option, re.DOTALL)
        if not match:
            return list(options)
        stripped.append(match.group(1))
    return stripped


def format_options(options: Sequence[str]) -> str:
    """``A. …`` lines, one per option."""
    return "\n".join(f"{letter}. {option}" for letter, option in zip(letters(len(options)), options))
