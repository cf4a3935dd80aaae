"""The teacher's prompt: a row's chat messages with privileged context appended (METHODS.md "Privileged context").

Pure Python, no verl import. The verl glue extracts each row's fields into a ``RowInfo``, decodes the
responses, decides which rows are scored, and calls ``teacher_contexts`` once per step; it tokenises the
returned messages itself and hands this module only a token-count function for the length budget.

The rule, per row i of the batch:
- the teacher's messages are the row's ``raw_prompt`` with the content of the **last user message**
  replaced by ``template.format(question=<that content>, <field>=<context text>)``; system messages,
  earlier turns and any assistant turn are copied unchanged, so the privileged block never lands inside
  an assistant turn; content that is a list of text and image blocks keeps the student's blocks unchanged, with
  the template's text before and after ``{question}`` around them (``teacher_messages``);
- the context text is chosen by ``context`` (the column "privileged context c" of METHODS.md):
    ``answer``    ``reward_model.ground_truth``                                   (RLSD)
    ``solution``  ``extra_info.solution`` if the row has one, else the answer     (OPSD, grpo_opsd)
    ``rollout``   the text of another correct rollout of the same ``uid`` group   (RLRT; sibling rule)
- nothing is ever truncated: an answer/solution prompt over ``rlrt.max_privileged_prompt_length`` raises,
  an over-budget sibling falls back per ``rlrt.sibling_fallback``;
- with ``rlrt.teacher_chat_template_kwargs`` other than the student's, the caller appends the student's
  generation-prompt tail to each rendered teacher prompt (``generation_prompt_tail``) and passes its length
  here (``appended_tokens``), so the budget counts it.

Every row gets a ``TeacherContext(messages, case)``; ``messages is None`` means "no teacher" (Â = A).
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Number
from typing import Any

from rlrt_recipe.checks import check_choice

Messages = list[dict[str, Any]]
CountTokens = Callable[[Messages], int]
TokenIds = Sequence[int]

TEMPLATE_KINDS = ("answer", "solution", "rollout")
DEFAULT_TEMPLATES: dict[str, str] = {
    "answer": "{question}\n\nThe reference final answer is: {answer}",
    "solution": "{question}\n\nHere is a reference solution:\n{solution}",
    # In the shape of the RLRT authors' base code (PAPERS.md): the question, the demonstration labelled as a correct
    # solution, then an instruction to solve the original question; the wording is ours.
    "rollout": "{question}\n\nA correct solution to this problem:\n{rollout}\n\nNow solve the original problem above.",
}
# The identity template makes the teacher prompt equal the student's (the e2e alignment guard: Δ = 0).
IDENTITY_TEMPLATE = "{question}"
# What a student that learned to lean on an invisible reference writes (RLSD's OPSD symptom); the probe
# looks for the default templates' wording, also when a template is overridden.
CUE_PHRASES: dict[str, str] = {
    "answer": "reference final answer",
    "solution": "reference solution",
    "rollout": "correct solution",
}
CONTEXTS = TEMPLATE_KINDS
SIBLING_CHOICES = ("random", "shortest")
SIBLING_FALLBACKS = ("answer", "solution", "none")
# Every value of TeacherContext.case, so the trainer logs a stable set of counts.
CASES = ("answer", "solution", "sibling", "fallback_answer", "fallback_solution", "none", "unscored")
FALLBACK_REASONS = ("no_sibling", "over_budget")

_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)
_BUDGET_KEY = "rlrt.max_privileged_prompt_length"
TEACHER_KWARGS_KEY = "rlrt.teacher_chat_template_kwargs"


@dataclass(frozen=True)
class RowInfo:
    """The fields of one batch row the teacher prompt is built from.

    ``index`` is the row's position in the batch and, with ``data_source`` and ``uid``, names the row in
    every error. ``messages`` is ``raw_prompt``; ``ground_truth`` and ``solution`` are strings or None
    (missing). ``unusable_ground_truth`` is the type name of a ground truth that cannot fill the answer
    template (list, dict, bool; ``ground_truth`` is then None): an error only where the answer is needed.
    """

    index: int
    data_source: str
    uid: str
    messages: tuple[Mapping[str, Any], ...]
    ground_truth: str | None
    solution: str | None = None
    unusable_ground_truth: str | None = None

    @classmethod
    def from_fields(cls, index: int, *, raw_prompt: Sequence[Mapping[str, Any]], reward_model: Mapping | None,
                    extra_info: Mapping | None, data_source: str, uid: str) -> RowInfo:
        """A row from verl's per-row columns (``reward_model.ground_truth``, ``extra_info.solution``).

        Null and NaN (what a pandas-built parquet holds for a missing value) are missing in both fields, never
        the text "nan". A numeric ground truth is rendered with ``str``; a list, dict or bool one is recorded in
        ``unusable_ground_truth`` and raises only when the answer context is built (``reference_text``), so rows
        that never need the answer (padding rows, RLRT with ``sibling_fallback=none``) pass.
        """
        ground_truth, unusable = (reward_model or {}).get("ground_truth"), None
        if _is_missing(ground_truth):
            ground_truth = None
        elif not isinstance(ground_truth, str):
            if isinstance(ground_truth, Number) and not isinstance(ground_truth, bool):
                ground_truth = str(ground_truth)
            else:
                ground_truth, unusable = None, type(ground_truth).__name__
        solution = (extra_info or {}).get("solution")
        return cls(index, str(data_source), str(uid), tuple(dict(m) for m in raw_prompt), ground_truth,
                   None if _is_missing(solution) else str(solution), unusable)

    def where(self) -> str:
        """``row 3 (data_source='gsm8k', uid='ab12')``: how every error names the row."""
        return _where(self.index, self.data_source, self.uid)


def _where(index: int, data_source: str, uid: str) -> str:
    return f"row {index} (data_source={data_source!r}, uid={uid!r})"


def _is_missing(value: Any) -> bool:
    # NaN is the one value not equal to itself (float, numpy and Decimal NaN alike).
    return value is None or (isinstance(value, Number) and value != value)


@dataclass(frozen=True)
class TeacherContext:
    """The teacher's chat messages for one row, or None (no teacher: Â = A), and which case fired.

    ``case`` is one of ``CASES``. ``sibling`` is the batch position of the rollout whose text is the
    context (case ``sibling`` only); ``fallback_reason`` is ``no_sibling`` or ``over_budget`` for the
    ``fallback_*`` and ``none`` cases of the rollout context.
    """

    messages: Messages | None
    case: str
    sibling: int | None = None
    fallback_reason: str | None = None


def validate_templates(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The three templates: ``DEFAULT_TEMPLATES`` updated with ``overrides`` (None values keep the default).

    A template may use only plain named fields (no positional ``{}``, attribute, index, conversion or
    format spec), only ``{question}`` and its own field (``{answer}``, ``{solution}`` or ``{rollout}``),
    and must contain both — except the identity template ``"{question}"`` exactly, which omits its own
    field on purpose (teacher = student). Literal braces are written ``{{`` and ``}}``. Errors name the
    key ``rlrt.privileged_templates.<kind>``.
    """
    templates = dict(DEFAULT_TEMPLATES)
    for kind, template in (overrides or {}).items():
        key = f"rlrt.privileged_templates.{kind}"
        if kind not in TEMPLATE_KINDS:
            raise ValueError(f"{key}: unknown template kind; allowed kinds are {', '.join(TEMPLATE_KINDS)}")
        if template is None:
            continue
        if not isinstance(template, str):
            raise ValueError(f"{key} must be a string, got {type(template).__name__}")
        templates[kind] = template
    for kind, template in templates.items():
        validate_template(kind, template)
    return templates


def validate_template(kind: str, template: str) -> None:
    """Raise unless ``template`` is a valid ``kind`` template (the rule of ``validate_templates``)."""
    key = f"rlrt.privileged_templates.{kind}"
    if kind not in TEMPLATE_KINDS:
        raise ValueError(f"{key}: unknown template kind; allowed kinds are {', '.join(TEMPLATE_KINDS)}")
    allowed = ("question", kind)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"{key} has unescaped braces ({err}); write literal braces as {{{{ and }}}}: "
                         f"{template!r}") from err
    fields = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            raise ValueError(f"{key} may use only the plain fields {{question}} and {{{kind}}}, found "
                             f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} "
                             f"in {template!r}; write literal braces as {{{{ and }}}}")
        fields.add(name)
    if template == IDENTITY_TEMPLATE:
        return
    missing = [f"{{{name}}}" for name in allowed if name not in fields]
    if missing:
        raise ValueError(f"{key} must contain {{question}} and {{{kind}}} (or be exactly {IDENTITY_TEMPLATE!r}); "
                         f"{' and '.join(missing)} missing in {template!r}")


def teacher_messages(row: RowInfo, kind: str, text: str, templates: Mapping[str, str]) -> Messages:
    """``row.messages`` with the last user message's content C replaced by ``templates[kind]`` rendered
    with ``question=C`` and ``<kind>=text``; every other message is copied unchanged.

    Content that is a list of blocks (a multimodal row: ``{"type": "image", ...}`` and ``{"type": "text", "text":
    ...}``) keeps the student's blocks, in their order and unchanged: the template is split at its one ``{question}``
    into a prefix P and a suffix S (each rendered with ``<kind>=text``), and the content becomes
    ``[P] + blocks + [S]``, P merged into a leading text block and S into a trailing one when there is one (Qwen-VL
    chat templates concatenate adjacent text blocks, so a text-only row renders as with string content), empty
    parts dropped. The identity template ``{question}`` then returns the student's messages, and the teacher sees
    exactly the student's images. Refused naming the row (``UnsupportedContent``): a block that is not text or an
    image (video, audio) in any message, and list content with a template that uses ``{question}`` more than once.
    """
    last_user = max((k for k, m in enumerate(row.messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        raise ValueError(f"{row.where()}: raw_prompt has no user message to append the privileged context to")
    check_blocks(row)
    question = row.messages[last_user].get("content")
    messages = [dict(m) for m in row.messages]
    if isinstance(question, str):
        messages[last_user]["content"] = templates[kind].format_map({"question": question, kind: text})
        return messages
    if not isinstance(question, list):
        raise UnsupportedContent(row, f"the last user message's content is {type(question).__name__}, neither text "
                                      "nor a list of content blocks")
    parts = _around_question(templates[kind], {kind: text})
    if len(parts) != 2:
        raise UnsupportedContent(
            row, f"rlrt.privileged_templates.{kind} uses {{question}} {len(parts) - 1} times, but the row's last user "
                 "message is a list of content blocks (images), which can appear only once in the teacher prompt; use "
                 f"{{question}} once in the template: {templates[kind]!r}"
        )
    prefix, suffix = parts
    content = list(question)
    if prefix:
        if content and _is_text(content[0]):
            content[0] = {**content[0], "text": prefix + content[0]["text"]}
        else:
            content.insert(0, {"type": "text", "text": prefix})
    if suffix:
        if content and _is_text(content[-1]):
            content[-1] = {**content[-1], "text": content[-1]["text"] + suffix}
        else:
            content.append({"type": "text", "text": suffix})
    messages[last_user]["content"] = content
    return messages


#: Content block types the privileged teacher serves (verl's VL token builder reads images from these).
IMAGE_BLOCKS = ("image", "image_url")


class UnsupportedContent(ValueError):
    """A row whose content the privileged teacher cannot serve (a video or audio block, or list content with a
    template that repeats ``{question}``); the message names the row, ``reason`` says what is wrong."""

    def __init__(self, row: RowInfo, reason: str):
        super().__init__(f"{row.where()}: {reason}")
        self.reason = reason


def check_blocks(row: RowInfo) -> None:
    """Raise ``UnsupportedContent`` naming the row and the block type if any message of ``row`` holds a content block
    that is neither text nor an image (video and audio rows are not supported by the privileged teacher)."""
    for message in row.messages:
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            kind = block.get("type") if isinstance(block, Mapping) else type(block).__name__
            if kind != "text" and kind not in IMAGE_BLOCKS:
                raise UnsupportedContent(
                    row, f"a {kind!r} content block in a {message.get('role')!r} message; the privileged teacher "
                         "serves text and image blocks only (video and audio rows are not supported): drop such rows "
                         "from the dataset (rlrt.preflight_skip=true drops them before step 1)"
                )


def has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any message's content is a list holding an image block."""
    return any(isinstance(block, Mapping) and block.get("type") in IMAGE_BLOCKS
               for m in messages if isinstance(m.get("content"), list) for block in m["content"])


def _is_text(block: Any) -> bool:
    return isinstance(block, Mapping) and block.get("type") == "text" and isinstance(block.get("text"), str)


def _around_question(template: str, fields: Mapping[str, str]) -> list[str]:
    """The rendered text between the ``{question}`` fields of ``template`` (other fields filled from ``fields``,
    ``{{``/``}}`` unescaped as ``str.format`` does): one more part than ``{question}`` occurrences."""
    parts, current = [], []
    for literal, name, _, _ in string.Formatter().parse(template):
        current.append(literal)
        if name == "question":
            parts.append("".join(current))
            current = []
        elif name is not None:
            current.append(fields[name])
    parts.append("".join(current))
    return parts


def generation_prompt_tail(student: TokenIds, teacher: TokenIds, *, where: str,
                           decode: Callable[[TokenIds], str]) -> list[int]:
    """The student's generation-prompt tail t, with G_S = G_T ‖ t: what the student's generation prompt adds beyond
    the teacher's (``student`` = G_S, ``teacher`` = G_T, token ids).

    G_k(M) is what ``add_generation_prompt=True`` adds to the render of messages M with chat-template kwargs k (the
    render without it must be a token prefix of the render with it); both are taken on the row's student messages,
    S = ``data.apply_chat_template_kwargs``, T = ``rlrt.teacher_chat_template_kwargs``. The teacher prompt ‖ t then
    ends with G_S, the tokens the student's response follows, so the response's first token is predicted in the
    same place. Equal generation prompts (always for equal kwargs) give t = []. G_T not a token prefix of G_S (e.g.
    Qwen3 with the teacher's thinking off and the student's on) cannot be aligned by appending and raises naming
    ``rlrt.teacher_chat_template_kwargs`` and ``where``; ``decode`` shows the two prompts as text.
    """
    student, teacher = list(student), list(teacher)
    if student[:len(teacher)] != teacher:
        raise ValueError(
            f"{where}: the teacher's generation prompt {decode(teacher)!r} ({TEACHER_KWARGS_KEY}) does not begin the "
            f"student's {decode(student)!r} (data.apply_chat_template_kwargs), so no tokens appended to the teacher "
            "prompt can make it end as the student's prompt, where the response starts. Use teacher kwargs whose "
            "generation prompt the student's extends (e.g. Qwen3: enable_thinking=true for the teacher, false for the "
            f"student), or {TEACHER_KWARGS_KEY}=null (the student's)"
        )
    return student[len(teacher):]


def strip_thinking(text: str) -> str:
    """``text`` without ``<think>…</think>`` blocks, surrounding whitespace trimmed.

    A leading ``…</think>`` with no opening tag (templates that put ``<think>`` in the generation prompt)
    and an unclosed trailing ``<think>…`` (truncated thought) are removed too.
    """
    opening, closing = text.find("<think>"), text.find("</think>")
    if closing != -1 and (opening == -1 or closing < opening):
        text = text[closing + len("</think>"):]
    return _THINK_BLOCK.sub("", text).strip()


def default_privileged_budget(context: str, *, max_prompt_length: int, max_response_length: int) -> int:
    """Default ``rlrt.max_privileged_prompt_length``: ``max_prompt_length + max_response_length + 256`` for
    the rollout context (a sibling is at most one response long), ``2 * max_prompt_length`` otherwise."""
    check_choice("context", context, CONTEXTS)
    if context == "rollout":
        return max_prompt_length + max_response_length + 256
    return 2 * max_prompt_length


class MissingReference(ValueError):
    """A row has no usable text for the answer/solution context it needs; ``reason`` names the field and why."""

    def __init__(self, row: RowInfo, kind: str, reason: str):
        super().__init__(f"{row.where()}: {reason}, but the {kind} context needs it; fix the dataset or drop the "
                         "row (rlrt.preflight_skip=true drops such rows before step 1)")
        self.reason = reason


def reference_text(row: RowInfo, kind: str) -> tuple[str, str]:
    """``(kind actually used, context text)`` of a row's ``answer`` or ``solution`` context.

    ``solution`` uses ``row.solution`` when it is non-blank, else the ground-truth answer. A ground truth that
    is missing (null, NaN, blank) or unusable (list, dict, bool) where the answer is needed raises
    ``MissingReference`` naming the row.
    """
    if kind not in ("answer", "solution"):
        raise ValueError(f"reference_context kind must be 'answer' or 'solution', got {kind!r}")
    if kind == "solution" and row.solution is not None and row.solution.strip():
        return "solution", row.solution
    if row.unusable_ground_truth is not None:
        raise MissingReference(row, kind, f"reward_model.ground_truth is a {row.unusable_ground_truth}, not a "
                                          "string or a number (convert it in data prep)")
    if row.ground_truth is None or not row.ground_truth.strip():
        fields = ("reward_model.ground_truth is" if kind == "answer"
                  else "extra_info.solution and reward_model.ground_truth are both")
        raise MissingReference(row, kind, f"{fields} missing (null, NaN or blank)")
    return "answer", row.ground_truth


def reference_context(row: RowInfo, kind: str, *, templates: Mapping[str, str], count_tokens: CountTokens,
                      budget: int, appended: int = 0) -> TeacherContext:
    """The ``answer`` or ``solution`` context of one row (case = the kind actually used, ``reference_text``).

    A missing ground truth where the answer is needed (``MissingReference``), or a prompt over ``budget``
    tokens (``appended`` tokens added by the caller included), raises naming the row.
    """
    kind, text = reference_text(row, kind)
    messages = teacher_messages(row, kind, text, templates)
    n_tokens = count_tokens(messages) + appended
    if n_tokens > budget:
        raise ValueError(f"{row.where()}: the {kind} teacher prompt is {n_tokens} tokens, over "
                         f"{_BUDGET_KEY}={budget}; raise {_BUDGET_KEY} or filter long rows from the dataset "
                         "(nothing is truncated)")
    return TeacherContext(messages, kind)


def teacher_contexts(
    rows: Sequence[RowInfo],
    *,
    context: str,
    scored: Sequence[bool],
    count_tokens: CountTokens,
    budget: int,
    templates: Mapping[str, str | None] | None = None,
    sibling_candidates: Sequence[bool] | None = None,
    texts: Sequence[str] | None = None,
    step: int | None = None,
    sibling_choice: str = "random",
    sibling_fallback: str = "none",
    sibling_strip_thinking: bool = False,
    appended_tokens: Sequence[int] | None = None,
) -> list[TeacherContext]:
    """One ``TeacherContext`` per row of the batch; rows with ``scored[i]`` false get ``(None, "unscored")``.

    A row's teacher prompt counts ``count_tokens(messages)`` plus ``appended_tokens[i]`` (the tokens the caller
    appends to it: the student's generation-prompt tail; none when not given) against ``budget``.

    ``context="answer"`` / ``"solution"``: ``reference_context`` for every scored row.
    ``context="rollout"`` (RLRT's sibling rule), per scored row i of ``uid`` group g:
      candidates = the rows j ≠ i of g with ``sibling_candidates[j]`` (the caller passes the correct rollouts that
        ended with EOS: RLRT's c is a complete correct rollout, never one cut at the length limit) whose sibling
        text is non-empty;
      the sibling = one of them by ``sibling_choice``: ``random`` (uniform, from a ``random.Random`` seeded
        with sha256(uid, step, rank of i in its group): deterministic for a given batch, independent of
        which other rows are scored, different across steps) or ``shortest`` (fewest characters of sibling
        text, lowest index on ties);
      c = the sibling's text (``texts[j]``, decoded up to and excluding EOS with special tokens skipped;
        thinking blocks stripped if ``sibling_strip_thinking``);
      no candidate (``no_sibling``) or a prompt over ``budget`` (``over_budget``) → ``sibling_fallback``:
        ``answer`` / ``solution`` (``reference_context``, which raises if that is over budget too) or
        ``none`` (no teacher).
    An incorrect row gets a sibling only if the caller scores it (gate ``all`` or ``rlrt.score_all_rows``):
    then every candidate of its group can be drawn. Padding rows must be passed with ``scored`` and
    ``sibling_candidates`` false, so they neither get nor give privileged text.
    """
    check_choice("context", context, CONTEXTS)
    templates = validate_templates(templates)
    _check_length("scored", scored, rows)
    appended_tokens = [0] * len(rows) if appended_tokens is None else appended_tokens
    _check_length("appended_tokens", appended_tokens, rows)
    if context != "rollout":
        return [reference_context(row, context, templates=templates, count_tokens=count_tokens, budget=budget,
                                  appended=appended)
                if is_scored else TeacherContext(None, "unscored")
                for row, is_scored, appended in zip(rows, scored, appended_tokens)]

    check_choice("rlrt.sibling_choice", sibling_choice, SIBLING_CHOICES)
    check_choice("rlrt.sibling_fallback", sibling_fallback, SIBLING_FALLBACKS)
    if sibling_candidates is None or texts is None:
        raise ValueError("the rollout context needs `sibling_candidates` and `texts` for every row of the batch")
    _check_length("sibling_candidates", sibling_candidates, rows)
    _check_length("texts", texts, rows)
    if sibling_choice == "random" and step is None:
        raise ValueError("rlrt.sibling_choice=random needs the step (verl's global_steps) to seed the choice")

    groups: dict[str, list[int]] = {}
    for k, row in enumerate(rows):
        groups.setdefault(row.uid, []).append(k)
    out: list[TeacherContext] = [TeacherContext(None, "unscored")] * len(rows)
    for uid, members in groups.items():
        sibling_texts = {j: strip_thinking(texts[j]) if sibling_strip_thinking else texts[j]
                         for j in members if sibling_candidates[j]}
        sibling_texts = {j: text for j, text in sibling_texts.items() if text.strip()}
        for rank, i in enumerate(members):
            if not scored[i]:
                continue
            candidates = [j for j in sibling_texts if j != i]
            reason = "no_sibling"
            if candidates:
                if sibling_choice == "random":
                    j = random.Random(_seed(uid, step, rank)).choice(candidates)
                else:
                    j = min(candidates, key=lambda c: (len(sibling_texts[c]), c))
                messages = teacher_messages(rows[i], "rollout", sibling_texts[j], templates)
                if count_tokens(messages) + appended_tokens[i] <= budget:
                    out[i] = TeacherContext(messages, "sibling", sibling=j)
                    continue
                reason = "over_budget"
            out[i] = _fallback(rows[i], sibling_fallback, reason, templates, count_tokens, budget, appended_tokens[i])
    return out


def _fallback(row: RowInfo, fallback: str, reason: str, templates: Mapping[str, str], count_tokens: CountTokens,
              budget: int, appended: int) -> TeacherContext:
    if fallback == "none":
        return TeacherContext(None, "none", fallback_reason=reason)
    ctx = reference_context(row, fallback, templates=templates, count_tokens=count_tokens, budget=budget,
                            appended=appended)
    return TeacherContext(ctx.messages, f"fallback_{ctx.case}", fallback_reason=reason)


def _seed(uid: str, step: int | None, rank: int) -> int:
    # hashlib, not hash(): deterministic for a given batch (uid, step, rank) in any process. verl draws a fresh
    # uuid4 uid per prompt per step, so a rerun or a resume draws other siblings anyway (review A10).
    return int.from_bytes(hashlib.sha256(f"{uid}\x00{step}\x00{rank}".encode()).digest()[:8], "big")


def case_counts(contexts: Sequence[TeacherContext]) -> dict[str, int]:
    """How many rows hit each case of ``CASES`` (zeros included, so the logged keys are stable)."""
    counts = dict.fromkeys(CASES, 0)
    for ctx in contexts:
        counts[ctx.case] += 1
    return counts


def leak_cue_rate(texts: Sequence[str], cue: str) -> float:
    """Fraction of ``texts`` that contain ``cue`` (case-insensitive): the ``rlrt/leak_cue_rate`` probe.

    The caller passes the decoded texts of the real rollouts and ``CUE_PHRASES[context]``.
    """
    if not cue.strip():
        raise ValueError("leak_cue_rate needs a non-empty cue phrase")
    if not texts:
        raise ValueError("leak_cue_rate needs at least one text (the real rollouts of the step)")
    cue = cue.casefold()
    return sum(cue in text.casefold() for text in texts) / len(texts)


def _check_length(name: str, values: Sequence, rows: Sequence[RowInfo]) -> None:
    if len(values) != len(rows):
        raise ValueError(f"`{name}` has {len(values)} entries for a batch of {len(rows)} rows")
