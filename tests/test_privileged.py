"""The teacher prompt builder: templates, the sibling rule, fallbacks and the length budget (METHODS.md)."""

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlrt_recipe.privileged import (
    CASES,
    CUE_PHRASES,
    DEFAULT_TEMPLATES,
    MissingReference,
    RowInfo,
    TeacherContext,
    case_counts,
    default_privileged_budget,
    generation_prompt_tail,
    leak_cue_rate,
    reference_context,
    strip_thinking,
    teacher_contexts,
    teacher_messages,
    validate_template,
    validate_templates,
)

BIG = 10**9


def chars(messages):
    """A stand-in token counter: one token per character of content (the caller's tokenizer in real use)."""
    return sum(len(m["content"]) for m in messages)


def row(index=0, uid="g", question="What is 1+1?", ground_truth="2", solution=None, data_source="toy", messages=None):
    messages = messages if messages is not None else [{"role": "user", "content": question}]
    return RowInfo(index, data_source, uid, tuple(messages), ground_truth, solution)


def group(correct, uid="g", texts=None, start=0, **kw):
    """Rows of one uid group, with their correctness and response texts."""
    rows = [row(start + k, uid=uid, **kw) for k in range(len(correct))]
    texts = texts if texts is not None else [f"response {start + k} of {uid}" for k in range(len(correct))]
    return rows, list(correct), list(texts)


def rollout(rows, correct, texts, *, scored=None, step=1, budget=BIG, **kw):
    return teacher_contexts(rows, context="rollout", scored=scored if scored is not None else [True] * len(rows),
                            count_tokens=chars, budget=budget, sibling_candidates=correct, texts=texts, step=step, **kw)


def user_content(ctx):
    return [m for m in ctx.messages if m["role"] == "user"][-1]["content"]


# --- templates --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, text, expected", [
    ("answer", "2", "What is 1+1?\n\nThe reference final answer is: 2"),
    ("solution", "1+1=2.", "What is 1+1?\n\nHere is a reference solution:\n1+1=2."),
    ("rollout", "One plus one is 2.",
     "What is 1+1?\n\nA correct solution to this problem:\nOne plus one is 2.\n\nNow solve the original problem above."),
])
def test_each_template_kind_renders_the_spec_text(kind, text, expected):
    """Guards the exact METHODS.md template wording for each kind."""
    messages = teacher_messages(row(), kind, text, DEFAULT_TEMPLATES)
    assert messages == [{"role": "user", "content": expected}]


def test_context_goes_into_the_last_user_message_only():
    """Guards appending to the last user turn: system, earlier turns and assistant turns stay unchanged,
    and the row's own messages are not mutated."""
    history = [
        {"role": "system", "content": "Reason step by step."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second question", "name": "alice"},
        {"role": "assistant", "content": "Let me think"},
    ]
    r = row(messages=history)
    messages = teacher_messages(r, "answer", "42", DEFAULT_TEMPLATES)
    assert messages[3] == {"role": "user", "content": "Second question\n\nThe reference final answer is: 42",
                           "name": "alice"}
    assert [m for k, m in enumerate(messages) if k != 3] == [m for k, m in enumerate(history) if k != 3]
    assert r.messages[3]["content"] == "Second question"


def test_row_without_a_user_message_raises_naming_the_row():
    """Guards prompts without a user turn: an error, never a context in the wrong turn."""
    with pytest.raises(ValueError, match=r"row 4 \(data_source='toy', uid='u'\).*no user message"):
        teacher_messages(row(4, uid="u", messages=[{"role": "system", "content": "s"}]), "answer", "1",
                         DEFAULT_TEMPLATES)


# --- list content (image rows) ------------------------------------------------------------------------------

IMAGE_A, IMAGE_B = {"type": "image", "image": "a.png"}, {"type": "image", "image": "b.png"}
ANSWER_SUFFIX = "\n\nThe reference final answer is: 2"


def text(value):
    return {"type": "text", "text": value}


def image_row(*blocks, index=0):
    return row(index, messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": list(blocks)}])


@pytest.mark.parametrize("blocks, expected", [
    # images first: the suffix joins the trailing text block
    ([IMAGE_A, text("What shape?")], [IMAGE_A, text("What shape?" + ANSWER_SUFFIX)]),
    # text, image, text: the blocks in their order, the suffix in the last text block
    ([text("Compare"), IMAGE_A, text("with this.")], [text("Compare"), IMAGE_A, text("with this." + ANSWER_SUFFIX)]),
    # two images, no text block after them: the suffix becomes its own trailing text block
    ([text("Same colour?"), IMAGE_A, IMAGE_B], [text("Same colour?"), IMAGE_A, IMAGE_B, text(ANSWER_SUFFIX)]),
    ([IMAGE_A, IMAGE_B], [IMAGE_A, IMAGE_B, text(ANSWER_SUFFIX)]),
])
def test_answer_template_keeps_the_students_blocks_in_order(blocks, expected):
    """Guards image rows (issue 20): the teacher sees exactly the student's image blocks (the same objects) in their
    order, with the privileged text after them where the template puts it; other messages and the row are unchanged."""
    r = image_row(*blocks)
    messages = teacher_messages(r, "answer", "2", DEFAULT_TEMPLATES)
    assert messages[0] == {"role": "system", "content": "sys"}
    assert messages[1]["content"] == expected
    assert [b for b in messages[1]["content"] if b["type"] == "image"] == [b for b in blocks if b["type"] == "image"]
    assert all(any(b is s for s in blocks) for b in messages[1]["content"] if b["type"] == "image")
    assert r.messages[1]["content"] == blocks  # the row's own blocks are not mutated


def test_text_around_question_merges_into_the_first_and_last_text_blocks():
    """Guards the split at {question}: the text before it joins a leading text block (or leads as its own block when
    the content starts with an image), the text after it a trailing one; literal braces come out unescaped."""
    templates = validate_templates({"answer": "Q{{1}}: {question} [answer: {answer}]"})
    assert teacher_messages(image_row(text("Look:"), IMAGE_A, text("what?")), "answer", "2", templates)[1][
        "content"] == [text("Q{1}: Look:"), IMAGE_A, text("what? [answer: 2]")]
    assert teacher_messages(image_row(IMAGE_A, IMAGE_B), "answer", "2", templates)[1]["content"] == [
        text("Q{1}: "), IMAGE_A, IMAGE_B, text(" [answer: 2]")]


@pytest.mark.parametrize("blocks", [
    [IMAGE_A, text("What shape?")], [text("Compare"), IMAGE_A, text("with this.")], [IMAGE_A, IMAGE_B], [IMAGE_A],
])
def test_identity_template_returns_the_students_messages_for_list_content(blocks):
    """Guards the alignment check on image rows: "{question}" adds no block and changes none, so the teacher's
    messages equal the student's and their renders are the same tokens."""
    r = image_row(*blocks)
    templates = validate_templates({kind: "{question}" for kind in DEFAULT_TEMPLATES})
    for kind in DEFAULT_TEMPLATES:
        assert teacher_messages(r, kind, "anything", templates) == list(r.messages)


def test_list_content_of_text_blocks_renders_as_string_content():
    """Guards the merge rule: a row whose content is one text block gets the same text as the string-content row."""
    as_string = teacher_messages(row(question="What is 1+1?"), "solution", "1+1=2.", DEFAULT_TEMPLATES)[0]["content"]
    as_block = teacher_messages(row(messages=[{"role": "user", "content": [text("What is 1+1?")]}]), "solution",
                                "1+1=2.", DEFAULT_TEMPLATES)[0]["content"]
    assert as_block == [text(as_string)]


def test_question_twice_is_refused_for_list_content_only():
    """Guards the images appearing once: a template repeating {question} is refused for an image row, naming the key
    and the row; string content keeps str.format's repetition, as before."""
    templates = validate_templates({"answer": "{question}\nAgain: {question}\nAnswer: {answer}"})
    assert teacher_messages(row(), "answer", "2", templates)[0]["content"] == (
        "What is 1+1?\nAgain: What is 1+1?\nAnswer: 2")
    with pytest.raises(ValueError, match=r"row 3 .*rlrt\.privileged_templates\.answer uses \{question\} 2 times"):
        teacher_messages(image_row(IMAGE_A, text("what?"), index=3), "answer", "2", templates)


@pytest.mark.parametrize("block", [{"type": "video", "video": "v.mp4"}, {"type": "audio", "audio": "a.wav"}])
def test_video_and_audio_blocks_are_refused_naming_the_type_and_the_row(block):
    """Guards the images-only scope: video and audio rows raise naming the block type and the row (in any message)."""
    with pytest.raises(ValueError, match=rf"row 2 \(data_source='toy', uid='g'\): a '{block['type']}' content block"):
        teacher_messages(image_row(IMAGE_A, block, text("what?"), index=2), "answer", "2", DEFAULT_TEMPLATES)
    earlier = [{"role": "user", "content": [block]}, {"role": "assistant", "content": "ok"},
               {"role": "user", "content": "and now?"}]
    with pytest.raises(ValueError, match=rf"row 5 .*'{block['type']}' content block in a 'user' message"):
        teacher_messages(row(5, messages=earlier), "answer", "2", DEFAULT_TEMPLATES)


def test_values_with_braces_are_inserted_verbatim():
    """Guards str.format semantics: braces in the question or the answer (LaTeX) are never re-parsed."""
    r = row(question=r"Compute \frac{1}{2} + {x}", ground_truth=r"\boxed{1}")
    assert teacher_messages(r, "answer", r.ground_truth, DEFAULT_TEMPLATES)[0]["content"] == (
        "Compute \\frac{1}{2} + {x}\n\nThe reference final answer is: \\boxed{1}")


@settings(max_examples=200, deadline=None)
@given(question=st.text(), text=st.text(), kind=st.sampled_from(["answer", "solution", "rollout"]))
def test_rendering_is_question_then_block_for_any_text(question, text, kind):
    """Property: the default templates always produce question + fixed separator + context, whatever the text."""
    content = teacher_messages(row(question=question), kind, text, DEFAULT_TEMPLATES)[0]["content"]
    prefix, suffix = DEFAULT_TEMPLATES[kind].split("{" + kind + "}")
    assert content == prefix.replace("{question}", question) + text + suffix


def test_templates_default_and_overrides():
    """Guards merging: None keeps the default, an override replaces its kind only, escaped braces are literal."""
    assert validate_templates() == DEFAULT_TEMPLATES
    assert validate_templates({"answer": None}) == DEFAULT_TEMPLATES
    templates = validate_templates({"answer": "{question}\nAnswer: $\\boxed{{{answer}}}$"})
    assert templates["solution"] == DEFAULT_TEMPLATES["solution"]
    assert teacher_messages(row(), "answer", "2", templates)[0]["content"] == "What is 1+1?\nAnswer: $\\boxed{2}$"


def test_identity_template_is_allowed_and_reproduces_the_student_prompt():
    """Guards the e2e alignment test: "{question}" alone is a valid template and yields the student messages."""
    templates = validate_templates({kind: "{question}" for kind in DEFAULT_TEMPLATES})
    history = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Q"}]
    r = row(messages=history)
    for kind in DEFAULT_TEMPLATES:
        assert teacher_messages(r, kind, "anything", templates) == history


@pytest.mark.parametrize("kind, template, message", [
    ("answer", "The answer is {answer}", "must contain {question} and {answer}"),
    ("solution", "{question}\n\nA solution follows.", "{solution} missing"),
    ("rollout", "{question}\n", "{rollout} missing"),
    ("answer", "{question} {answer} {", "unescaped braces"),
    ("answer", "{question} {answer} }", "unescaped braces"),
    ("answer", "{question} \\boxed{answer}}", "unescaped braces"),
    ("answer", "{question} {answr}", "may use only the plain fields"),
    ("answer", "{question} {solution}", "may use only the plain fields"),
    ("answer", "{question} {}", "may use only the plain fields"),
    ("answer", "{question} {0}", "may use only the plain fields"),
    ("answer", "{question.upper} {answer}", "may use only the plain fields"),
    ("answer", "{question} {answer!r}", "may use only the plain fields"),
    ("answer", "{question} {answer:>10}", "may use only the plain fields"),
])
def test_bad_template_is_rejected_naming_the_key(kind, template, message):
    """Guards config-time template validation: each mistake is named with rlrt.privileged_templates.<kind>."""
    with pytest.raises(ValueError, match=rf"rlrt\.privileged_templates\.{kind}") as err:
        validate_templates({kind: template})
    assert message in str(err.value)
    with pytest.raises(ValueError, match=rf"rlrt\.privileged_templates\.{kind}"):
        validate_template(kind, template)


def test_unknown_template_kind_and_non_string_are_rejected():
    """Guards typos in the override keys and non-string values."""
    with pytest.raises(ValueError, match=r"rlrt\.privileged_templates\.hint: unknown template kind"):
        validate_templates({"hint": "{question}"})
    with pytest.raises(ValueError, match=r"rlrt\.privileged_templates\.hint: unknown template kind"):
        validate_template("hint", "{question} {hint}")
    with pytest.raises(ValueError, match=r"rlrt\.privileged_templates\.answer must be a string"):
        validate_templates({"answer": 3})


def test_teacher_contexts_validates_its_templates():
    """Guards that a bad template cannot reach rendering through teacher_contexts."""
    with pytest.raises(ValueError, match=r"rlrt\.privileged_templates\.answer"):
        teacher_contexts([row()], context="answer", scored=[True], count_tokens=chars, budget=BIG,
                         templates={"answer": "{answer}"})


# --- answer / solution contexts ------------------------------------------------------------------------------

def test_answer_context_and_unscored_rows():
    """Guards RLSD's context for scored rows and "no teacher" for unscored rows (e.g. verl padding rows)."""
    rows = [row(0), row(1, ground_truth=None)]
    ctxs = teacher_contexts(rows, context="answer", scored=[True, False], count_tokens=chars, budget=BIG)
    assert ctxs[0].case == "answer" and user_content(ctxs[0]).endswith("The reference final answer is: 2")
    assert ctxs[1] == TeacherContext(None, "unscored")


def test_solution_context_uses_the_solution_else_the_answer():
    """Guards OPSD's context: the reference solution when the row has one, else the ground-truth answer."""
    rows = [row(0, solution="Add them: 2."), row(1, solution=None), row(2, solution="  ")]
    ctxs = teacher_contexts(rows, context="solution", scored=[True] * 3, count_tokens=chars, budget=BIG)
    assert [c.case for c in ctxs] == ["solution", "answer", "answer"]
    assert user_content(ctxs[0]).endswith("Here is a reference solution:\nAdd them: 2.")
    assert user_content(ctxs[1]).endswith("The reference final answer is: 2")


def test_over_budget_answer_raises_naming_row_lengths_and_key():
    """Guards the no-truncation policy: an answer prompt over budget is an error with everything to fix it."""
    r = row(7, uid="u7", data_source="math", question="x" * 50)
    n = chars(teacher_messages(r, "answer", "2", DEFAULT_TEMPLATES))
    with pytest.raises(ValueError) as err:
        reference_context(r, "answer", templates=DEFAULT_TEMPLATES, count_tokens=chars, budget=n - 1)
    text = str(err.value)
    for needle in ("row 7", "'math'", "'u7'", f"{n} tokens", f"={n - 1}", "rlrt.max_privileged_prompt_length"):
        assert needle in text
    assert reference_context(r, "answer", templates=DEFAULT_TEMPLATES, count_tokens=chars, budget=n).case == "answer"


@pytest.mark.parametrize("ground_truth", [None, "", "   "])
def test_missing_ground_truth_raises_naming_row_and_key(ground_truth):
    """Guards rows without ground truth: an error naming the row and reward_model.ground_truth, never "None"."""
    r = row(3, uid="u3", ground_truth=ground_truth)
    for context in ("answer", "solution"):
        with pytest.raises(ValueError, match=r"row 3 \(data_source='toy', uid='u3'\).*reward_model\.ground_truth"):
            teacher_contexts([r], context=context, scored=[True], count_tokens=chars, budget=BIG)


def test_row_info_from_verl_fields():
    """Guards field extraction: ground_truth from reward_model, solution from extra_info, numbers as text."""
    r = RowInfo.from_fields(2, raw_prompt=[{"role": "user", "content": "q"}], reward_model={"ground_truth": 12},
                            extra_info={"solution": "s", "index": 5}, data_source="gsm8k", uid="abc")
    assert r == RowInfo(2, "gsm8k", "abc", ({"role": "user", "content": "q"},), "12", "s")
    bare = RowInfo.from_fields(0, raw_prompt=[], reward_model=None, extra_info=None, data_source="d", uid="u")
    assert bare.ground_truth is None and bare.solution is None


@pytest.mark.parametrize("missing", [None, float("nan"), np.float64("nan"), Decimal("NaN")])
def test_nan_ground_truth_and_solution_are_missing_never_the_text_nan(missing):
    """Guards review A7: NaN (pandas' missing value) in either field is missing, so a teacher prompt never
    says "reference final answer is: nan"; the solution context then falls back to the answer, and with
    neither the error names both fields."""
    def from_fields(ground_truth, solution):
        return RowInfo.from_fields(4, raw_prompt=[{"role": "user", "content": "q"}],
                                   reward_model={"ground_truth": ground_truth}, extra_info={"solution": solution},
                                   data_source="d", uid="u")

    r = from_fields(missing, missing)
    assert r.ground_truth is None and r.solution is None and r.unusable_ground_truth is None
    for context, fields in (("answer", r"reward_model\.ground_truth is missing"),
                            ("solution", r"extra_info\.solution and reward_model\.ground_truth are both missing")):
        with pytest.raises(MissingReference, match=rf"row 4 \(data_source='d', uid='u'\): {fields} \(null, NaN"):
            teacher_contexts([r], context=context, scored=[True], count_tokens=chars, budget=BIG)
    fallback = teacher_contexts([from_fields("7", missing)], context="solution", scored=[True],
                                count_tokens=chars, budget=BIG)[0]
    assert fallback.case == "answer" and "nan" not in user_content(fallback).lower()
    assert user_content(fallback).endswith("The reference final answer is: 7")


@pytest.mark.parametrize("ground_truth, type_name", [(["1", "2"], "list"), ({"a": 1}, "dict"), (True, "bool")])
def test_unusable_ground_truth_raises_only_where_the_answer_is_built(ground_truth, type_name):
    """Guards review A7: a list/dict/bool ground truth no longer fails every row at extraction (padding rows,
    RLRT with sibling_fallback=none never need it); it raises, naming row and type, when the answer is built."""
    r = RowInfo.from_fields(1, raw_prompt=[{"role": "user", "content": "q"}], reward_model={"ground_truth": ground_truth},
                            extra_info={"solution": "worked"}, data_source="d", uid="u")
    assert r.ground_truth is None and r.unusable_ground_truth == type_name
    assert teacher_contexts([r], context="solution", scored=[True], count_tokens=chars, budget=BIG)[0].case == "solution"
    assert teacher_contexts([r], context="answer", scored=[False], count_tokens=chars, budget=BIG)[0].case == "unscored"
    with pytest.raises(MissingReference, match=rf"row 1 \(data_source='d', uid='u'\): reward_model\.ground_truth "
                                               rf"is a {type_name}, not a string or a number"):
        teacher_contexts([r], context="answer", scored=[True], count_tokens=chars, budget=BIG)


def test_default_budget():
    """Guards the METHODS.md defaults of rlrt.max_privileged_prompt_length."""
    assert default_privileged_budget("rollout", max_prompt_length=512, max_response_length=1024) == 1792
    for context in ("answer", "solution"):
        assert default_privileged_budget(context, max_prompt_length=512, max_response_length=1024) == 1024
    with pytest.raises(ValueError, match="context must be one of"):
        default_privileged_budget("sibling", max_prompt_length=1, max_response_length=1)


# --- RLRT's sibling rule -----------------------------------------------------------------------------------

def test_sibling_is_another_correct_rollout_of_the_group():
    """Guards the sibling rule: a correct row gets the text of a different correct row of its own group."""
    rows_a, correct_a, texts_a = group([True, True, False, True], uid="a")
    rows_b, correct_b, texts_b = group([True, True], uid="b", start=4)
    ctxs = rollout(rows_a + rows_b, correct_a + correct_b, texts_a + texts_b,
                   scored=correct_a + correct_b)
    for i, ctx in enumerate(ctxs):
        if not (correct_a + correct_b)[i]:
            assert ctx == TeacherContext(None, "unscored")
            continue
        assert ctx.case == "sibling" and ctx.sibling != i
        assert (correct_a + correct_b)[ctx.sibling] and (rows_a + rows_b)[ctx.sibling].uid == (rows_a + rows_b)[i].uid
        assert user_content(ctx) == (f"What is 1+1?\n\nA correct solution to this problem:\n{(texts_a + texts_b)[ctx.sibling]}"
                                     "\n\nNow solve the original problem above.")
    assert ctxs[4].sibling == 5 and ctxs[5].sibling == 4


def test_random_choice_is_deterministic_per_uid_and_step_and_varies_across_steps():
    """Guards the seeded random choice: same (uid, step) → same sibling; over steps every sibling shows up."""
    rows, correct, texts = group([True] * 5)
    first = [c.sibling for c in rollout(rows, correct, texts, step=3)]
    assert first == [c.sibling for c in rollout(rows, correct, texts, step=3)]
    seen = {c.sibling for step in range(1, 60) for c in rollout(rows, correct, texts, step=step)[:1]}
    assert seen == {1, 2, 3, 4}


def test_random_choice_of_a_row_does_not_depend_on_which_other_rows_are_scored():
    """Guards per-row seeding: scoring one more row must not change the siblings drawn for the others."""
    rows, correct, texts = group([True, True, True, True, False])
    all_scored = rollout(rows, correct, texts, step=2, scored=[True] * 5)
    some_scored = rollout(rows, correct, texts, step=2, scored=[True, False, True, True, False])
    assert [all_scored[i].sibling for i in (0, 2, 3)] == [some_scored[i].sibling for i in (0, 2, 3)]


def test_shortest_choice():
    """Guards sibling_choice=shortest: the shortest text among the others, lowest index on ties."""
    rows, correct, texts = group([True, True, True, True], texts=["short", "a bit longer", "tiny", "tiny"])
    ctxs = rollout(rows, correct, texts, sibling_choice="shortest", step=None)
    assert [c.sibling for c in ctxs] == [2, 2, 3, 2]


@pytest.mark.parametrize("fallback, case, tail", [
    ("answer", "fallback_answer", "The reference final answer is: 2"),
    ("solution", "fallback_solution", "Here is a reference solution:\nsol"),
])
def test_only_correct_rollout_falls_back(fallback, case, tail):
    """Guards the lone-correct case: no sibling exists, so the configured fallback context is used."""
    rows, correct, texts = group([False, True, False], solution="sol")
    ctx = rollout(rows, correct, texts, scored=correct, sibling_fallback=fallback)[1]
    assert (ctx.case, ctx.fallback_reason, ctx.sibling) == (case, "no_sibling", None)
    assert user_content(ctx).endswith(tail)


def test_only_correct_rollout_with_fallback_none_has_no_teacher():
    """Guards sibling_fallback=none: the row gets no teacher (Â = A)."""
    rows, correct, texts = group([True, False])
    assert rollout(rows, correct, texts, sibling_fallback="none")[0] == TeacherContext(None, "none", None,
                                                                                       "no_sibling")


def test_solution_fallback_without_a_solution_uses_the_answer():
    """Guards the shared "solution else answer" rule for the sibling fallback, and that the case says so."""
    rows, correct, texts = group([True], solution=None)
    assert rollout(rows, correct, texts, sibling_fallback="solution")[0].case == "fallback_answer"


def test_over_budget_sibling_falls_back_and_an_over_budget_fallback_raises():
    """Guards the length policy for the rollout context: a too-long sibling falls back, nothing is truncated;
    the fallback answer itself over budget is an error."""
    rows, correct, texts = group([True, True], texts=["x" * 500, "ok"])
    ctxs = rollout(rows, correct, texts, budget=100, sibling_fallback="answer")
    assert (ctxs[0].case, ctxs[0].sibling) == ("sibling", 1)
    assert (ctxs[1].case, ctxs[1].fallback_reason) == ("fallback_answer", "over_budget")
    assert rollout(rows, correct, texts, budget=100, sibling_fallback="none")[1] == TeacherContext(
        None, "none", None, "over_budget")
    with pytest.raises(ValueError, match=r"row 0 .*the answer teacher prompt is \d+ tokens, over "
                                         r"rlrt\.max_privileged_prompt_length=20"):
        rollout(rows, correct, texts, budget=20, sibling_fallback="answer")


def test_appended_tokens_count_in_the_budget():
    """The student's generation-prompt tail the caller appends counts against the budget: a sibling that fits
    alone falls back with it, an answer prompt that fits alone raises with it (the tail is never dropped)."""
    rows, correct, texts = group([True, True], texts=["x" * 50, "ok"])
    sibling_len = chars(teacher_messages(rows[0], "rollout", "ok", DEFAULT_TEMPLATES))
    fits = rollout(rows, correct, texts, budget=sibling_len, sibling_fallback="none")
    assert fits[0].case == "sibling"
    tailed = rollout(rows, correct, texts, budget=sibling_len, sibling_fallback="none", appended_tokens=[1, 0])
    assert (tailed[0].case, tailed[0].fallback_reason) == ("none", "over_budget")
    r = row(2, question="x" * 10)
    n = chars(teacher_messages(r, "answer", "2", DEFAULT_TEMPLATES))
    assert teacher_contexts([r], context="answer", scored=[True], count_tokens=chars, budget=n)[0].case == "answer"
    with pytest.raises(ValueError, match=rf"row 2 .*the answer teacher prompt is {n + 3} tokens, over "
                                         rf"rlrt\.max_privileged_prompt_length={n}"):
        teacher_contexts([r], context="answer", scored=[True], count_tokens=chars, budget=n, appended_tokens=[3])
    with pytest.raises(ValueError, match="`appended_tokens` has 2 entries for a batch of 1 rows"):
        teacher_contexts([r], context="answer", scored=[True], count_tokens=chars, budget=n, appended_tokens=[0, 0])


def _ids_as_text(ids):
    return " ".join(map(str, ids))


@pytest.mark.parametrize("student, teacher, tail", [
    ([1, 2, 3, 4], [1, 2], [3, 4]),  # the student's generation prompt extends the teacher's: its rest
    ([1, 2], [1, 2], []),  # equal generation prompts (equal kwargs): nothing appended
    ([1, 2], [], [1, 2]),  # a template with no generation prompt for the teacher: all of the student's
])
def test_generation_prompt_tail_is_what_the_students_adds(student, teacher, tail):
    assert generation_prompt_tail(student, teacher, where="row 0", decode=_ids_as_text) == tail


@pytest.mark.parametrize("student, teacher", [([1, 2], [1, 2, 3, 4]), ([1, 5, 3], [1, 2])])
def test_generation_prompt_tail_refuses_what_appending_cannot_align(student, teacher):
    """The teacher's generation prompt longer than the student's (teacher thinking off, student on) or diverging
    from it: no appended tokens make the teacher prompt end as the student's; the error names the key and both."""
    with pytest.raises(ValueError, match=r"row 7: the teacher's generation prompt '1 2.*' \(rlrt\.teacher_chat_template"
                                         r"_kwargs\) does not begin the student's '1 .*' \(data\.apply_chat_template"):
        generation_prompt_tail(student, teacher, where="row 7", decode=_ids_as_text)


def test_incorrect_rows():
    """Guards incorrect rows: under the correct gate the caller does not score them and they get no context;
    if scored (gate=all, score_all_rows) any correct member is their sibling; a group with no correct rollout
    falls back."""
    rows, correct, texts = group([False, True, False])
    gated = rollout(rows, correct, texts, scored=correct, sibling_fallback="answer")
    assert gated[0] == gated[2] == TeacherContext(None, "unscored")
    assert gated[1].case == "fallback_answer"
    ungated = rollout(rows, correct, texts)
    assert (ungated[0].case, ungated[0].sibling) == ("sibling", 1)
    assert (ungated[2].case, ungated[2].sibling) == ("sibling", 1)
    none_correct = rollout(*group([False, False]), sibling_fallback="answer")
    assert [(c.case, c.fallback_reason) for c in none_correct] == [("fallback_answer", "no_sibling")] * 2


def test_padding_rows_neither_get_nor_give_privileged_text():
    """Guards verl's padding rows (passed with scored and correct false): never a context, never a sibling."""
    rows, correct, texts = group([True, True])
    pad = row(2, uid="g")  # a copy of the first real row's columns, same uid in the worst case
    ctxs = rollout(rows + [pad], correct + [False], texts + ["padding"], scored=[True, True, False])
    assert ctxs[2] == TeacherContext(None, "unscored")
    assert ctxs[0].sibling == 1 and ctxs[1].sibling == 0


def test_strip_thinking():
    """Guards thinking-block removal: closed blocks, a dangling close (prompt-side <think>), an unclosed open."""
    assert strip_thinking("<think>hmm</think>\nThe answer is 2.") == "The answer is 2."
    assert strip_thinking("a <think>x\ny</think> b <think>z</think> c") == "a  b  c"
    assert strip_thinking("reasoning without open tag</think>\n\nFinal: 2") == "Final: 2"
    assert strip_thinking("Final: 2 <think>cut off") == "Final: 2"
    assert strip_thinking("no thinking") == "no thinking"


def test_sibling_strip_thinking_flag():
    """Guards sibling_strip_thinking: thinking kept by default, stripped when set; an empty remainder is no
    sibling at all."""
    rows, correct, texts = group([True, True, True], texts=["<think>a</think>A", "<think>b</think>B", "<think>c"])
    kept = rollout(rows, correct, texts, sibling_choice="shortest")
    assert "problem:\n<think>c\n\nNow solve" in user_content(kept[0])
    stripped = rollout(rows, correct, texts, sibling_choice="shortest", sibling_strip_thinking=True)
    assert "problem:\nB\n\nNow solve" in user_content(stripped[0])
    assert stripped[1].sibling == 0 and stripped[2].sibling == 0


def test_rollout_context_argument_errors():
    """Guards the caller contract: lengths must match the batch, random needs a step, enums are checked."""
    rows, correct, texts = group([True, True])
    with pytest.raises(ValueError, match="`texts` has 1 entries for a batch of 2 rows"):
        rollout(rows, correct, texts[:1])
    with pytest.raises(ValueError, match="needs the step"):
        rollout(rows, correct, texts, step=None)
    with pytest.raises(ValueError, match="rlrt.sibling_fallback must be one of answer, solution, none"):
        rollout(rows, correct, texts, sibling_fallback="rollout")
    with pytest.raises(ValueError, match="rlrt.sibling_choice must be one of random, shortest"):
        rollout(rows, correct, texts, sibling_choice="longest")
    with pytest.raises(ValueError, match="needs `sibling_candidates` and `texts`"):
        teacher_contexts(rows, context="rollout", scored=[True, True], count_tokens=chars, budget=BIG, step=1)


@settings(max_examples=300, deadline=None)
@given(
    spec=st.lists(st.tuples(st.sampled_from("abc"), st.booleans(), st.booleans(), st.text(max_size=12)),
                  min_size=1, max_size=16),
    step=st.integers(1, 1000),
    choice=st.sampled_from(["random", "shortest"]),
    fallback=st.sampled_from(["answer", "solution", "none"]),
)
def test_sibling_invariants(spec, step, choice, fallback):
    """Property: a sibling is always a correct, different member of the same group with non-empty text;
    a fallback fires only when no such member exists (infinite budget); unscored rows get nothing;
    the result is deterministic."""
    rows = [row(k, uid=uid) for k, (uid, _, _, _) in enumerate(spec)]
    correct = [c for _, c, _, _ in spec]
    scored = [s for _, _, s, _ in spec]
    texts = [t for _, _, _, t in spec]
    ctxs = rollout(rows, correct, texts, scored=scored, step=step, sibling_choice=choice, sibling_fallback=fallback)
    assert ctxs == rollout(rows, correct, texts, scored=scored, step=step, sibling_choice=choice,
                           sibling_fallback=fallback)
    for i, ctx in enumerate(ctxs):
        usable = [j for j in range(len(rows)) if j != i and correct[j] and rows[j].uid == rows[i].uid
                  and texts[j].strip()]
        if not scored[i]:
            assert ctx == TeacherContext(None, "unscored")
        elif usable:
            assert ctx.case == "sibling" and ctx.sibling in usable
        else:
            assert ctx.fallback_reason == "no_sibling"
            assert ctx.case == {"answer": "fallback_answer", "solution": "fallback_answer", "none": "none"}[fallback]
            assert (ctx.messages is None) == (fallback == "none")
    assert sum(case_counts(ctxs).values()) == len(rows)


def test_case_counts_lists_every_case():
    """Guards stable metric keys: every case is present, zeros included."""
    counts = case_counts([TeacherContext(None, "unscored"), TeacherContext([], "sibling", 0)])
    assert set(counts) == set(CASES) and counts["sibling"] == counts["unscored"] == 1 and counts["none"] == 0


# --- leakage probe -----------------------------------------------------------------------------------------

def test_leak_cue_rate():
    """Guards the rlrt/leak_cue_rate probe: case-insensitive containment of the template's cue phrase."""
    assert CUE_PHRASES == {"answer": "reference final answer", "solution": "reference solution",
                           "rollout": "correct solution"}
    for kind, cue in CUE_PHRASES.items():
        assert cue in DEFAULT_TEMPLATES[kind].lower()
    texts = ["By the Reference Final Answer, 2.", "1+1=2", "the reference final answer is 2", "reference answer"]
    assert leak_cue_rate(texts, CUE_PHRASES["answer"]) == 0.5
    assert leak_cue_rate(texts, CUE_PHRASES["rollout"]) == 0.0
    with pytest.raises(ValueError, match="at least one text"):
        leak_cue_rate([], "cue")
    with pytest.raises(ValueError, match="non-empty cue"):
        leak_cue_rate(["x"], " ")


def test_a_rollout_cut_at_the_length_limit_is_never_a_sibling():
    """RLRT's c is a complete correct rollout: a correct row the caller marks as no candidate (it did not end with
    EOS) is never drawn, and with no other candidate the row gets no teacher (the default fallback, none)."""
    rows, correct, texts = group([True, True, True], texts=["complete", "cut at the limit", "also complete"])
    candidates = [True, False, True]
    for _ in range(3):
        ctxs = rollout(rows, candidates, texts, scored=correct, step=_ + 1)
        assert ctxs[0].sibling == 2 and ctxs[2].sibling == 0 and ctxs[1].sibling in (0, 2)
    lone = rollout(rows, [True, False, False], texts, scored=correct)
    assert lone[0] == TeacherContext(None, "none", None, "no_sibling")
