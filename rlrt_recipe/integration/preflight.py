"""Pre-flight: before step 1, every training row the teacher step could not serve, reported at once.

The teacher step raises at step N, hours into a run, for the first row of a batch whose student prompt verl
left-truncated (over ``actor_rollout_ref.rollout.prompt_length``, where the agent loop cuts), whose
answer/solution teacher prompt is over ``rlrt.max_privileged_prompt_length``, or that lacks the ground truth
(or solution) its context needs. The pre-flight renders every row's student prompt and its reference teacher
prompt the way the teacher step does (verl's continuous-token builder, the same chat-template kwargs — the
teacher's ``rlrt.teacher_chat_template_kwargs`` plus the student's generation-prompt tail when they differ —,
``privileged.reference_text`` and the config's templates) and either raises one error listing every such row,
or, with ``rlrt.preflight_skip=true``, drops them from the training set before verl builds the sampler.

The ``rollout`` context's sibling text is a response of the step and cannot be checked here; its
``rlrt.sibling_fallback`` context is (with ``sibling_fallback=none`` only the student prompt is).

Image rows (a multimodal model; messages built by the dataset's own ``_build_messages``, as ``__getitem__`` builds
``raw_prompt``) cost no image processing unless their teacher prompt may be over budget. Their student prompt S is not
checked: verl never truncates a multimodal prompt (the agent loop refuses one over ``rollout.prompt_length``,
``data.filter_overlong_prompts`` drops it at load), so S ≤ ``prompt_length`` for every row that reaches the teacher
step. The teacher prompt T keeps the student's images, so their image tokens cancel in T − S, which the renders with
one placeholder per image (no pixels) give exactly, and ``prompt_length`` + (T − S) bounds T. Only a row whose bound is
over the budget is rendered with its images as the rollout gets them (``ImageTeacherPromptLengths``, the teacher
step's own renderer). Rows with video or audio blocks, and image rows under a template repeating ``{question}``, are
reported as ``unsupported_content``.

``find_unservable_rows`` and ``format_problems`` are pure; ``PromptLengths`` wraps verl's builder and
``TeacherPromptLengths`` adds the tail; the trainer calls ``preflight_train_dataset`` once, on verl's ``RLHFDataset``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from verl.utils.tokenizer.continuous_token import ContinuousTokenBuilder
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from rlrt_recipe import privileged
from rlrt_recipe.config import RlrtConfig
from rlrt_recipe.integration.images import ConversationImages, FetchImages
from rlrt_recipe.integration.teacher import (
    PromptRenderer,
    chat_template_kwargs,
    generation_prompt,
    resolved_teacher_kwargs,
    teacher_prompt_ids,
)

logger = logging.getLogger("rlrt_recipe")

#: The one agent loop whose stored prompt the teacher step can re-render (verl's default).
SINGLE_TURN_AGENT = "single_turn_agent"

Messages = privileged.Messages
#: Prompt lengths in tokens of a batch of chat message lists, as the agent loop renders them.
PromptLengthsFn = Callable[[Sequence[Messages]], list[int]]
#: Teacher prompt lengths in tokens of a batch of teacher message lists and their rows, as the teacher step renders
#: them (the rows give the student messages the generation-prompt tail is taken from).
TeacherPromptLengthsFn = Callable[[Sequence[Messages], Sequence[privileged.RowInfo]], list[int]]

#: Why a row cannot be served, in the order the report lists them.
PROBLEM_KINDS = ("student_truncated", "teacher_over_budget", "missing_reference", "unsupported_content")
PROMPT_LENGTH_KEY = "actor_rollout_ref.rollout.prompt_length"
BUDGET_KEY = "rlrt.max_privileged_prompt_length"
#: Rows listed in the error; the counts above the list are always complete.
LISTED_ROWS = 20
#: Training rows read (and held, images included) at a time.
READ_CHUNK_ROWS = 1024


@dataclass(frozen=True)
class Problem:
    """One reason one training row cannot be served.

    ``index`` is the row's position in verl's training set (``data.train_files`` concatenated, after verl's
    own ``data.filter_overlong_prompts`` and ``data.train_max_samples``); ``length`` and ``limit`` are token
    counts for the two length kinds; ``detail`` says what is wrong in words.
    """

    file: str
    index: int
    data_source: str
    kind: str
    detail: str
    length: int | None = None
    limit: int | None = None


def reference_kind(context: str, sibling_fallback: str) -> str | None:
    """The answer/solution context the teacher step may build for a row: the context itself, the rollout
    context's ``sibling_fallback``, or None (``sibling_fallback=none``: only the student prompt is checked)."""
    if context == "rollout":
        return None if sibling_fallback == "none" else sibling_fallback
    return context


def find_unservable_rows(
    rows: Sequence[privileged.RowInfo],
    prompt_lengths: PromptLengthsFn,
    *,
    file: str,
    context: str,
    sibling_fallback: str,
    templates: Mapping[str, str],
    prompt_length: int,
    budget: int,
    teacher_prompt_lengths: TeacherPromptLengthsFn | None = None,
    image_teacher_prompt_lengths: TeacherPromptLengthsFn | None = None,
) -> list[Problem]:
    """Every problem of every row, sorted by row: a student prompt over ``prompt_length`` tokens, a reference
    teacher prompt over ``budget`` tokens, a missing (null, NaN, blank) or unusable reference text, content the
    teacher cannot serve (``privileged.UnsupportedContent``).

    ``prompt_lengths`` measures the student prompts, then the teacher prompts unless ``teacher_prompt_lengths``
    (separate teacher chat-template kwargs: ``TeacherPromptLengths``) is given; each is called once on the batch. For
    image rows these are the lengths with one placeholder per image (``PromptLengths`` gets no images); the student's
    is not checked, the teacher's is bounded by ``prompt_length`` + (teacher − student), and only a row whose bound is
    over ``budget`` is measured by ``image_teacher_prompt_lengths`` (with its images; needed when such a row exists).
    """
    problems: list[Problem] = []
    servable = []
    for row in rows:
        try:
            privileged.check_blocks(row)
            if context == "rollout" and privileged.has_images(row.messages):  # the sibling's template, text unknown
                privileged.teacher_messages(row, "rollout", "", templates)
        except privileged.UnsupportedContent as err:
            problems.append(Problem(file, row.index, row.data_source, "unsupported_content", err.reason))
            continue
        servable.append(row)
    student_lengths = prompt_lengths([list(row.messages) for row in servable])
    with_images = [privileged.has_images(row.messages) for row in servable]
    problems += [
        Problem(file, row.index, row.data_source, "student_truncated", f"student prompt is {n} tokens > {prompt_length}",
                n, prompt_length)
        for row, n, images in zip(servable, student_lengths, with_images) if not images and n > prompt_length
    ]
    kind = reference_kind(context, sibling_fallback)
    if kind is not None:
        teacher_rows, teacher_messages = [], []
        for row, n_student, images in zip(servable, student_lengths, with_images):
            try:
                used, text = privileged.reference_text(row, kind)
                teacher_messages.append(privileged.teacher_messages(row, used, text, templates))
            except privileged.MissingReference as err:
                problems.append(Problem(file, row.index, row.data_source, "missing_reference", err.reason))
                continue
            except privileged.UnsupportedContent as err:
                problems.append(Problem(file, row.index, row.data_source, "unsupported_content", err.reason))
                continue
            teacher_rows.append((row, used, n_student, images))
        teacher_lengths = (prompt_lengths(teacher_messages) if teacher_prompt_lengths is None
                           else teacher_prompt_lengths(teacher_messages, [row for row, *_ in teacher_rows]))
        exact = [k for k, ((_, _, n_student, images), n) in enumerate(zip(teacher_rows, teacher_lengths))
                 if images and prompt_length + n - n_student > budget]  # the rest fit: S ≤ prompt_length
        if exact:
            if image_teacher_prompt_lengths is None:
                raise ValueError("image rows whose teacher prompt may be over budget need image_teacher_prompt_lengths")
            measured = image_teacher_prompt_lengths([teacher_messages[k] for k in exact],
                                                    [teacher_rows[k][0] for k in exact])
            for k, n in zip(exact, measured):
                teacher_lengths[k] = n
        measured_rows = set(exact)
        for k, ((row, used, _, images), n) in enumerate(zip(teacher_rows, teacher_lengths)):
            if (k in measured_rows or not images) and n > budget:
                problems.append(Problem(file, row.index, row.data_source, "teacher_over_budget",
                                        f"{used} teacher prompt is {n} tokens > {budget}", n, budget))
    return sorted(problems, key=lambda p: (p.file, p.index, PROBLEM_KINDS.index(p.kind)))


def format_problems(problems: Sequence[Problem], *, n_rows: int, context: str, sibling_fallback: str,
                    prompt_length: int, budget: int, dropped: bool = False, listed: int = LISTED_ROWS) -> str:
    """The report: complete counts per kind, the first ``listed`` problems (file, row, lengths), "and N more",
    and what to do. ``dropped`` words it for ``rlrt.preflight_skip=true`` (the rows were removed)."""
    kind = reference_kind(context, sibling_fallback)
    n_bad = len({(p.file, p.index) for p in problems})
    counts = Counter(p.kind for p in problems)
    where = f"rlrt.context={context}" + (f", rlrt.sibling_fallback={sibling_fallback}" if context == "rollout" else "")
    verb = "dropped by rlrt.preflight_skip=true" if dropped else "cannot be served by the teacher step"
    lines = [f"rlrt pre-flight: {n_bad} of {n_rows} training rows {verb} ({where}):"]
    labels = {
        "student_truncated": f"student prompts over {PROMPT_LENGTH_KEY}={prompt_length} (verl would left-truncate them)",
        "teacher_over_budget": f"teacher prompts of the {kind} context over {BUDGET_KEY}={budget} (never truncated)",
        "missing_reference": f"rows without the reference text the {kind} context needs",
        "unsupported_content": "rows whose content the teacher cannot serve (video or audio blocks; an image row "
                               "under a template repeating {question})",
    }
    lines += [f"  {counts[k]} {labels[k]}" for k in PROBLEM_KINDS if counts[k]]
    lines.append("rows (position in verl's training set, after data.filter_overlong_prompts):")
    lines += [f"  {p.file} row {p.index} (data_source={p.data_source!r}): {p.detail}" for p in problems[:listed]]
    if len(problems) > listed:
        lines.append(f"  and {len(problems) - listed} more")
    if not dropped:
        lines.append("Fix or filter these rows in the data, raise data.max_prompt_length or "
                     f"{BUDGET_KEY}, or set rlrt.preflight_skip=true to drop them before step 1.")
    return "\n".join(lines)


class PromptLengths:
    """Prompt lengths in tokens, as the agent loop and the teacher step render prompts: verl's continuous-token
    builder (``build_initial_tokens``, generation prefix included) for ``hf_model_type`` and the chat-template
    kwargs. Builders whose initial tokens are the plain chat template (the default, Qwen, GLM, MiniMax, Gemma
    and GPT-OSS families) are measured in chunks through the same ``apply_chat_template`` call with a batch of
    conversations: token for token the same, and one parallel fast-tokenizer call per chunk. Other builders
    (DeepSeek V4, multimodal) are called row by row. A multimodal model's builder renders through its ``processor``
    but gets no images: each image counts as its one placeholder (``find_unservable_rows``)."""

    def __init__(self, tokenizer: Any, *, hf_model_type: str | None, chat_template_kwargs: Mapping[str, Any],
                 chunk_size: int = 512, processor: Any = None, mm_processor_kwargs: Mapping[str, Any] | None = None):
        self.builder = create_continuous_token_builder(
            tokenizer, hf_model_type=hf_model_type, chat_template_kwargs=dict(chat_template_kwargs),
            processor=processor, mm_processor_kwargs=mm_processor_kwargs,
        )
        builder_cls = type(self.builder)
        self.batched = (builder_cls.build_initial_tokens is ContinuousTokenBuilder.build_initial_tokens
                        and builder_cls._render_tokens is ContinuousTokenBuilder._render_tokens)
        self.chunk_size = chunk_size

    def __call__(self, conversations: Sequence[Messages]) -> list[int]:
        if not self.batched:
            return [len(self.builder.build_initial_tokens(list(m))) for m in conversations]
        lengths: list[int] = []
        for _, chunk in self._chunks(conversations):
            try:
                ids = self._render(chunk, add_generation_prompt=True)
            except TemplateError:
                # A template that needs a user message (Qwen3.5) rejects a row without one; the builder
                # renders such rows with a dummy prefix (verl's apply_chat_template), so ask it row by row.
                ids = [self.builder.build_initial_tokens(m) for m in chunk]
            lengths.extend(len(x) for x in ids)
        return lengths

    def generation_prompts(self, conversations: Sequence[Messages], wheres: Sequence[str]) -> list[list[int]]:
        """G(M) of each conversation (``teacher.generation_prompt``: what the generation prompt adds), batched like
        the lengths: each chunk rendered with and without the generation prompt. A row the batched renders do not
        diff (or a builder they do not reproduce) goes to ``generation_prompt`` row by row, which diffs or refuses
        naming ``wheres[i]``."""
        if not self.batched:
            return [generation_prompt(self.builder, m, where=w) for m, w in zip(conversations, wheres)]
        prompts: list[list[int]] = []
        for start, chunk in self._chunks(conversations):
            try:
                fulls = self._render(chunk, add_generation_prompt=True)
                bodies = self._render(chunk, add_generation_prompt=False)
            except TemplateError:
                fulls = bodies = None
            for k, messages in enumerate(chunk):
                if fulls is not None and list(fulls[k][:len(bodies[k])]) == list(bodies[k]):
                    prompts.append(list(fulls[k][len(bodies[k]):]))
                else:
                    prompts.append(generation_prompt(self.builder, messages, where=wheres[start + k]))
        return prompts

    def _chunks(self, conversations: Sequence[Messages]) -> list[tuple[int, list[Messages]]]:
        """(position of the first, the conversations) per chunk of ``chunk_size``."""
        return [(start, [list(m) for m in conversations[start:start + self.chunk_size]])
                for start in range(0, len(conversations), self.chunk_size)]

    def _render(self, chunk: Sequence[Messages], *, add_generation_prompt: bool) -> list[list[int]]:
        return self.builder.tokenizer.apply_chat_template(
            list(chunk), tokenize=True, add_generation_prompt=add_generation_prompt, tools=None, return_dict=False,
            **self.builder.chat_template_kwargs,
        )


class TeacherPromptLengths:
    """Teacher prompt lengths in tokens as the teacher step renders them under ``rlrt.teacher_chat_template_kwargs``:
    the teacher messages measured with the teacher's kwargs (``teacher``), plus each row's student generation-prompt
    tail (``privileged.generation_prompt_tail`` of G_S and G_T, both on the row's student messages). A pair of kwargs
    whose generation prompts the rule cannot align is refused at the first row, naming the key."""

    def __init__(self, student: PromptLengths, teacher: PromptLengths):
        self.student, self.teacher = student, teacher

    def __call__(self, conversations: Sequence[Messages], rows: Sequence[privileged.RowInfo]) -> list[int]:
        student_messages, wheres = [list(row.messages) for row in rows], [row.where() for row in rows]
        decode = self.teacher.builder.tokenizer.decode
        tails = [privileged.generation_prompt_tail(student, teacher, where=where, decode=decode)
                 for student, teacher, where in zip(self.student.generation_prompts(student_messages, wheres),
                                                    self.teacher.generation_prompts(student_messages, wheres), wheres)]
        return [n + len(tail) for n, tail in zip(self.teacher(conversations), tails)]


class ImageTeacherPromptLengths:
    """Exact teacher prompt lengths of image rows, as the teacher step renders them (``teacher.teacher_prompt_ids``):
    the teacher messages through the teacher's ``PromptRenderer`` with the rollout's images (every placeholder expanded
    to its image tokens), plus the student's generation-prompt tail when the teacher's kwargs differ."""

    def __init__(self, student: PromptRenderer, teacher: PromptRenderer):
        self.student, self.teacher = student, teacher

    def __call__(self, conversations: Sequence[Messages], rows: Sequence[privileged.RowInfo]) -> list[int]:
        decode = self.teacher.builder.tokenizer.decode
        self.student.prefetch_images([list(row.messages) for row in rows])
        lengths = []
        for messages, row in zip(conversations, rows, strict=True):
            tail = [] if self.teacher is self.student else privileged.generation_prompt_tail(
                self.student.generation_prompt(list(row.messages), where=row.where()),
                self.teacher.generation_prompt(list(row.messages), where=row.where()), where=row.where(), decode=decode)
            lengths.append(len(teacher_prompt_ids(messages, row, tail, self.student, self.teacher, decode)))
        self.student.clear()
        self.teacher.clear()
        return lengths


def dataset_rows(dataframe: Any, prompt_key: str, *, first_index: int = 0,
                 build_messages: Callable[[dict, str], Messages] | None = None) -> list[privileged.RowInfo]:
    """One ``RowInfo`` per row of verl's ``RLHFDataset.dataframe`` (a ``datasets.Dataset``), numbered from
    ``first_index``: ``raw_prompt`` is the ``prompt_key`` column, as ``RLHFDataset`` hands text-only rows to the agent
    loop, or ``build_messages(row, prompt_key)`` of the whole row (``RLHFDataset._build_messages``: the prompt's
    ``<image>`` placeholders become image blocks of the row's images, as ``__getitem__`` builds ``raw_prompt``)."""
    n = len(dataframe)
    names = [name for name in (prompt_key, "reward_model", "extra_info", "data_source") if name in dataframe.column_names]
    if prompt_key not in names:
        raise ValueError(f"the training set has no {prompt_key!r} column (data.prompt_key); columns: "
                         f"{dataframe.column_names}")
    columns = (dataframe if build_messages is not None else dataframe.select_columns(names))[:]
    reward_model, extra_info = columns.get("reward_model", [None] * n), columns.get("extra_info", [None] * n)
    data_source = columns.get("data_source", [""] * n)
    prompts = (columns[prompt_key] if build_messages is None else
               [build_messages({name: values[i] for name, values in columns.items()}, prompt_key) for i in range(n)])
    return [
        privileged.RowInfo.from_fields(first_index + i, raw_prompt=prompts[i], reward_model=reward_model[i],
                                       extra_info=extra_info[i], data_source=data_source[i], uid="")
        for i in range(n)
    ]


def check_agent_names(dataframe: Any, files: Sequence[str]) -> None:
    """An ``agent_name`` column naming a loop other than verl's single-turn one is refused, naming the row: the
    teacher step re-renders only single-turn prompts (the trainer refuses the config keys the same way)."""
    if "agent_name" not in dataframe.column_names:
        return
    for index, name in enumerate(dataframe["agent_name"]):
        if name not in (None, SINGLE_TURN_AGENT):
            raise ValueError(
                f"{' + '.join(files)}, row {index}: agent_name={name!r}; the teacher step serves only "
                f"{SINGLE_TURN_AGENT!r} rollouts (it re-renders the row's raw_prompt): drop the agent_name column "
                "or set it to single_turn_agent"
            )


def preflight_train_dataset(dataset: Any, *, config: Any, rlrt_cfg: RlrtConfig, tokenizer: Any,
                            hf_model_type: str | None, processor: Any = None,
                            mm_processor_kwargs: Mapping[str, Any] | None = None,
                            images: FetchImages | None = None) -> int:
    """Check every row of verl's training ``RLHFDataset`` (``config`` is the full verl config); raise one
    ``ValueError`` listing the unservable rows, or with ``rlrt.preflight_skip`` drop them from
    ``dataset.dataframe`` (replaced, as verl's ``filter_overlong_prompts`` does) and return how many. A multimodal
    model passes its ``processor``, ``data.mm_processor_kwargs`` and the rollout's ``images`` of a row
    (``images.dataset_images``); rows are then read ``READ_CHUNK_ROWS`` at a time, their messages built by the
    dataset (``_build_messages``) when it has an image, video or audio column."""
    if not hasattr(dataset, "dataframe"):
        logger.warning("rlrt pre-flight skipped: the training set (%s) has no dataframe to read rows from; an "
                       "unservable row will stop the teacher step when it is drawn", type(dataset).__name__)
        return 0
    start = time.perf_counter()
    data = config.data
    files = [data.train_files] if isinstance(data.train_files, str) else list(data.train_files)
    settings = dict(context=rlrt_cfg.context, sibling_fallback=rlrt_cfg.sibling_fallback,
                    prompt_length=int(config.actor_rollout_ref.rollout.prompt_length),
                    budget=rlrt_cfg.max_privileged_prompt_length)
    dataframe = dataset.dataframe
    check_agent_names(dataframe, files)
    student_kwargs = chat_template_kwargs(data)
    teacher_kwargs = resolved_teacher_kwargs(student_kwargs, rlrt_cfg.teacher_chat_template_kwargs)
    vision = dict(processor=processor, mm_processor_kwargs=mm_processor_kwargs)
    lengths = PromptLengths(tokenizer, hf_model_type=hf_model_type, chat_template_kwargs=student_kwargs, **vision)
    teacher_lengths = None if teacher_kwargs == student_kwargs else TeacherPromptLengths(
        lengths, PromptLengths(tokenizer, hf_model_type=hf_model_type, chat_template_kwargs=teacher_kwargs, **vision))
    image_lengths = None
    if images is not None:
        renderer = dict(hf_model_type=hf_model_type, images=ConversationImages(images), **vision)
        student = PromptRenderer(tokenizer, chat_template_kwargs=student_kwargs, **renderer)
        image_lengths = ImageTeacherPromptLengths(student, student if teacher_lengths is None else PromptRenderer(
            tokenizer, chat_template_kwargs=teacher_kwargs, **renderer))
    media = [getattr(dataset, f"{kind}_key", None) for kind in ("image", "video", "audio")]
    build_messages = dataset._build_messages if any(key in dataframe.column_names for key in media) else None
    problems = []
    for first in range(0, len(dataframe), READ_CHUNK_ROWS):
        chunk = dataframe.select(range(first, min(first + READ_CHUNK_ROWS, len(dataframe))))
        rows = dataset_rows(chunk, dataset.prompt_key, first_index=first, build_messages=build_messages)
        problems += find_unservable_rows(rows, lengths, file=" + ".join(files), templates=rlrt_cfg.privileged_templates,
                                         teacher_prompt_lengths=teacher_lengths,
                                         image_teacher_prompt_lengths=image_lengths, **settings)
    seconds = time.perf_counter() - start
    n_rows = len(dataframe)
    if not problems:
        logger.info("rlrt pre-flight: all %d training rows servable (%.1f s)", n_rows, seconds)
        return 0
    bad = {p.index for p in problems}
    skip = rlrt_cfg.preflight_skip and len(bad) < n_rows
    report = format_problems(problems, n_rows=n_rows, dropped=skip, **settings)
    if not skip:
        raise ValueError(report + ("\nrlrt.preflight_skip=true would drop every row." if rlrt_cfg.preflight_skip else ""))
    dataset.dataframe = dataframe.select([i for i in range(n_rows) if i not in bad])
    print(f"rlrt pre-flight: dropped {len(bad)} of {n_rows} training rows, {n_rows - len(bad)} left "
          f"({seconds:.1f} s)")
    logger.warning(report)
    return len(bad)
