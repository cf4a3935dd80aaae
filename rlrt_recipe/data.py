"""Convert math datasets to verl's RL parquet schema (pure Python; no verl import).

One row of output::

    data_source   "aime24"                      the benchmark; verl logs val-core/<data_source>/acc/mean@n
    prompt        [{"role": "user", "content": "<question>\\n\\n" + INSTRUCTION}]
    ability       "math"
    reward_model  {"style": "rule", "ground_truth": "<answer text>"}
    extra_info    {"split": "train"|"test", "index": <row index in the source>, "solution": <text>}
                  ("solution" only for sources that have reference solutions)

A source is a hub dataset (``datasets.load_dataset``) or a local ``.json`` (a list of objects),
``.jsonl`` or ``.parquet`` file. Column names are per source (``Source.question`` / ``answer`` /
``solution``): candidate names tried in order, each a plain key or a dotted path into nested columns
(``reward_model.ground_truth``, ``prompt.0.content``). Rows without a usable question or ground truth are
dropped and reported with their source index and the reason.

Image sets (RLSD's comparison: ``VISION_SOURCES``, MMFineReason-123K and five benchmarks) are written in verl's
multimodal schema, one small reader per source for the record layout we assume (``VisionSource.layout``)::

    data_source   "mmmu"                        (the file stem is VisionSource.name: mmmu_val.parquet)
    prompt        [{"role": "user", "content": "<image>...<question>[\\n\\nOptions:\\nA. ...]\\n\\n" + instruction}]
    images        [{"bytes": <png>, "path": None}, ...]   one per <image>, in placeholder order
    ability       "vision"
    reward_model  {"style": "rule", "ground_truth": "<option letter, or answer text>"}
    extra_info    {"split", "index", "answer_format": "multiple_choice"|"free_form", "options": [...],
                   "solution" (MMFineReason only: the verified reasoning trace, or None)}

``RLSD_EVALUATION`` says which split and which score each benchmark stands for.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rlrt_recipe.choices import (
    FREE_FORM,
    MULTIPLE_CHOICE,
    format_options,
    label_letter,
    letters,
    strip_labels,
    text_letter,
)

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")
# Conversions of at least this many rows show a progress bar.
PROGRESS_MIN_ROWS = 1000


@dataclass(frozen=True)
class Source:
    """Where one dataset comes from and which columns hold what.

    name: our short name, also the output file stem and the ``data_source`` column.
    label: the name tables print.
    hub: hub dataset id; config / split: its ``load_dataset`` config name and split.
    split: also written to ``extra_info.split`` ("train" for the training set, "test" for benchmarks).
    question / answer / solution: candidate column names (first present wins; dotted paths allowed);
    ``solution=()`` means the source has no reference solutions.
    """

    name: str
    label: str
    hub: str
    split: str
    hub_split: str = "train"
    config: str | None = None
    question: tuple[str, ...] = ("problem", "question")
    answer: tuple[str, ...] = ("answer",)
    solution: tuple[str, ...] = ()

    @property
    def layout(self) -> str:
        """The columns read, as errors name them."""
        return (f"columns: question {list(self.question)}, answer {list(self.answer)}, or set them with "
                f"--column {self.name}.answer=NAME")


# Hub ids and column names as published on the dataset cards (our defaults; override with --source /
# --column). DAPO-Math-17k: open-r1's de-duplicated English copy of BytedTsinghua-SIA/DAPO-Math-17k, whose
# "prompt" is the bare problem and whose "solution" column is the final answer, not a worked solution.
TRAIN_SOURCE = Source(
    name="dapo_math_17k",
    label="DAPO-Math-17k",
    hub="open-r1/DAPO-Math-17k-Processed",
    config="en",
    split="train",
    question=("prompt", "problem"),
    answer=("reward_model.ground_truth", "solution", "answer"),
)
EVAL_SOURCES = (
    Source("aime24", "AIME24", "HuggingFaceH4/aime_2024", "test", solution=("solution",)),
    Source("aime25", "AIME25", "MathArena/aime_2025", "test"),
    Source("aime26", "AIME26", "MathArena/aime_2026", "test"),
    Source("hmmt26_feb", "HMMT26 Feb", "MathArena/hmmt_feb_2026", "test"),
    Source("amc23", "AMC23", "math-ai/amc23", "test", hub_split="test"),
    Source("math500", "MATH500", "HuggingFaceH4/MATH-500", "test", hub_split="test", solution=("solution",)),
)
SOURCES: dict[str, Source] = {s.name: s for s in (TRAIN_SOURCE, *EVAL_SOURCES)}
COLUMN_FIELDS = ("question", "answer", "solution")


class SourceError(RuntimeError):
    """A source that cannot be read; the message names it and says how to supply a local file."""


@dataclass
class Conversion:
    """Result of converting one source: the verl rows kept (or only counted as ``written``, when
    ``convert_images`` wrote them straight to a file), ``(source index, reason)`` per dropped row, and notes
    the summary prints."""

    source: Source | VisionSource
    origin: str
    read: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[tuple[int, str]] = field(default_factory=list)
    written: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return len(self.rows) + self.written


def with_columns(source: Source, overrides: dict[str, str]) -> Source:
    """``source`` with some column candidates replaced: ``{"answer": "final"}`` -> ``answer=("final",)``.

    An empty value for ``solution`` turns reference solutions off.
    """
    unknown = sorted(set(overrides) - set(COLUMN_FIELDS))
    if unknown:
        raise ValueError(f"unknown column field(s) {unknown} for source {source.name!r}; use {COLUMN_FIELDS}")
    return replace(source, **{key: (value,) if value else () for key, value in overrides.items()})


def is_local(spec: str) -> bool:
    """A local file (existing path, or a json/jsonl/parquet name) rather than a hub dataset id."""
    return spec.endswith(LOCAL_SUFFIXES) or os.path.exists(spec)


def _unreadable(source: Source | VisionSource, origin: str, why: str) -> SourceError:
    return SourceError(
        f"cannot read source {source.name!r} from {origin}: {why}. "
        f"Download it where the hub is reachable and pass a local file: "
        f"--source {source.name}=path/to/file.jsonl (json, jsonl or parquet; {source.layout})"
    )


def read_local(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``.parquet`` file, or a ``.json`` / ``.jsonl`` file holding a JSON list of objects or
    one object per line."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix not in (".json", ".jsonl"):
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {LOCAL_SUFFIXES}")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a JSON list of row objects ({err})") from err
    # JSON Lines, also under a .json name (what datasets' to_json writes by default).
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not a JSON object ({err})") from err
    return rows


def load_rows(source: Source | VisionSource, spec: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The raw rows of ``source`` and a description of where they came from.

    ``spec`` is a local file path or a hub id (``owner/name[:config][@split]``, see ``parse_hub_spec``);
    None means ``source.hub``. Anything that fails raises ``SourceError`` naming the source and the ``--source`` fix.
    """
    spec = spec or source.hub
    if is_local(spec):
        try:
            return read_local(spec), spec
        except (OSError, ValueError) as err:
            raise _unreadable(source, spec, str(err)) from err
    name, config, split = parse_hub_spec(spec, source)
    origin = f"hub dataset {name!r} (config {config}, split {split!r})"
    try:
        import datasets

        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the hub client raises many unrelated types; all mean "not readable here"
        raise _unreadable(source, origin, f"{type(err).__name__}: {err}") from err
    return [dict(row) for row in dataset], origin


def parse_hub_spec(spec: str, source: Source | VisionSource) -> tuple[str, str | None, str]:
    """``"owner/name[:config][@split]"`` -> ``(name, config, split)``.

    Omitted parts default to ``source``'s config and split for its own hub id, else to no config and
    split "train".
    """
    spec, _, split = spec.partition("@")
    name, _, config = spec.partition(":")
    own = name == source.hub
    return name, config or (source.config if own else None), split or (source.hub_split if own else "train")


def lookup(row: dict[str, Any], path: str) -> Any:
    """``row`` at a dotted path (``"reward_model.ground_truth"``, ``"prompt.0.content"``); KeyError if absent."""
    value: Any = row
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def _first(row: dict[str, Any], candidates: Sequence[str]) -> tuple[str | None, Any]:
    """The first candidate column present in ``row``, and its value; ``(None, None)`` if none is."""
    for column in candidates:
        try:
            return column, lookup(row, column)
        except KeyError:
            continue
    return None, None


def answer_text(value: Any) -> str:
    """A ground truth as text: strings stripped, integers (also integral floats) without a decimal point.

    Raises ValueError with the reason for anything unusable (missing, empty, NaN, bool, list, dict ...).
    """
    if value is None:
        raise ValueError("answer is null")
    if isinstance(value, bool):
        raise ValueError("answer is a bool, expected a string or a number")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"answer is {value}")
        return str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        raise ValueError(f"answer is a {type(value).__name__}, expected a string or a number")
    text = value.strip()
    if not text:
        raise ValueError("answer is empty")
    return text


def convert_row(source: Source, index: int, row: dict[str, Any]) -> dict[str, Any]:
    """One source row as a verl row; ValueError with the reason if it has no usable question or answer."""
    if not isinstance(row, dict):
        raise ValueError(f"row is a {type(row).__name__}, expected an object")
    q_column, question = _first(row, source.question)
    if q_column is None:
        raise ValueError(f"no question column (tried {list(source.question)})")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question column {q_column!r} is not a non-empty string")
    a_column, answer = _first(row, source.answer)
    if a_column is None:
        raise ValueError(f"no answer column (tried {list(source.answer)})")
    ground_truth = answer_text(answer)
    extra_info: dict[str, Any] = {"split": source.split, "index": index}
    if source.solution:
        _, solution = _first(row, source.solution)
        extra_info["solution"] = solution.strip() if isinstance(solution, str) and solution.strip() else None
    return {
        "data_source": source.name,
        "prompt": [{"role": "user", "content": f"{question.strip()}\n\n{INSTRUCTION}"}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": extra_info,
    }


def _progress(rows: Sequence[Any], desc: str) -> Iterable[Any]:
    if len(rows) < PROGRESS_MIN_ROWS:
        return rows
    from tqdm import tqdm

    return tqdm(rows, desc=desc, unit="row")


def convert(source: Source, rows: Sequence[dict[str, Any]], origin: str = "") -> Conversion:
    """Convert every row of ``source``; unusable rows go to ``Conversion.dropped`` with their reason."""
    result = Conversion(source=source, origin=origin, read=len(rows))
    for index, row in enumerate(_progress(rows, source.name)):
        try:
            result.rows.append(convert_row(source, index, row))
        except ValueError as err:
            result.dropped.append((index, str(err)))
    return result


def write_parquet(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write verl rows to ``path`` (parent directories created)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def summary(conversion: Conversion, max_listed: int = 20) -> Iterator[str]:
    """Report lines: counts, then each dropped row (``max_listed`` of them) with its reason."""
    c = conversion
    yield f"{c.source.name}: read {c.read}, kept {c.kept}, dropped {len(c.dropped)}  ({c.origin})"
    for index, reason in c.dropped[:max_listed]:
        yield f"  dropped row {index}: {reason}"
    if len(c.dropped) > max_listed:
        yield f"  ... and {len(c.dropped) - max_listed} more dropped rows"
    for note in c.notes:
        yield f"  {note}"


# --- Image sets: RLSD's training set and its five benchmarks (RLSD Table 2) in verl's multimodal schema ------------

# Our wording (the RLSD paper prints no prompt); free-form rows end with INSTRUCTION, like the text sets.
MC_INSTRUCTION = "Please reason step by step, and put only the letter of the correct option within \\boxed{}."
PLACEHOLDER = "<image>"
# A source's own image references in its text: "<image>", "<image 1>" (MMMU), "<image1>" (MathVision).
_IMAGE_REFERENCE = re.compile(r"<image\s*(\d*)>")
# verl splits prompts on these too (rl_dataset.py, _build_messages): literal ones in a question would break the row.
_OTHER_PLACEHOLDERS = ("<video>", "<audio>")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_MODES = ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA")  # modes PIL writes as PNG without conversion
MMMU_IMAGES = 7  # image_1 ... image_7
TRACE_COLUMN = "qwen3vl_235b_thinking_response"
WRITE_BATCH_ROWS = 256  # image rows per parquet row group: what one conversion holds in memory


@dataclass
class VisionItem:
    """One record as its benchmark's reader returns it, before images are encoded and the prompt is built.

    question: the text, possibly with the source's own image references (``<image 1>``).
    images: image references (anything ``png_bytes`` reads; None = missing), ``images[k - 1]`` being ``<image k>``.
    answer: as stored: text or a number; for multiple choice an option letter or an option's text.
    options: option texts, labels stripped ([] for free-form rows and for options written inside the question).
    letter_first: read a multiple-choice answer as a letter before as option text (False where the source stores
    the option's text: MathVista). solution: the reasoning trace (MMFineReason) or None. hint: a sentence of ours
    put before the instruction (MathVista's decimal places).
    """

    question: str
    images: list[Any]
    answer: Any
    options: list[str] = field(default_factory=list)
    multiple_choice: bool = False
    letter_first: bool = True
    solution: str | None = None
    hint: str = ""


@dataclass(frozen=True)
class VisionSource:
    """An image set: where it comes from, how its records read, and (benchmarks) what we score.

    name: the CLI name and output file stem (``mmmu_val``); data_source: the ``data_source`` column (``mmmu``).
    hub / config / hub_split: ``load_dataset`` arguments (untested: no hub here); split: ``extra_info.split``.
    read: record -> ``VisionItem`` (ValueError naming what is missing). layout: the record schema we assume.
    questions / score / basis: the benchmark's size, what we report, and why this split (``RLSD_EVALUATION``).
    solutions: rows carry ``extra_info.solution``; needs_image: a row without an image is refused.
    """

    name: str
    data_source: str
    label: str
    hub: str
    hub_split: str
    split: str
    read: Callable[[dict[str, Any]], VisionItem]
    layout: str
    config: str | None = None
    questions: int | None = None
    score: str = ""
    basis: str = ""
    solutions: bool = False
    needs_image: bool = True


def _column(row: dict[str, Any], names: Sequence[str]) -> tuple[str, Any]:
    column, value = _first(row, names)
    if column is None:
        raise ValueError(f"no {names[0]} column (tried {list(names)})")
    return column, value


def _text(row: dict[str, Any], names: Sequence[str]) -> str:
    column, value = _column(row, names)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"column {column!r} is not a non-empty string")
    return value.strip()


def _options(row: dict[str, Any], name: str) -> list[str]:
    """Option texts from a list, or from the text of a Python/JSON list (MMMU stores ``"['1', '2']"``); an
    absent, null or empty column gives []. Labels the options carry themselves (``"A. 1"``) are stripped."""
    value = row.get(name)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = ast.literal_eval(text) if text else []
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"column {name!r} is text but not a list: {text[:80]!r}") from err
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"column {name!r} is a {type(value).__name__}, expected a list of option texts")
    options = []
    for number, option in enumerate(value, start=1):
        if isinstance(option, bool) or not isinstance(option, (str, int, float)) or not str(option).strip():
            raise ValueError(f"option {number} of column {name!r} is {option!r}, expected a non-empty text")
        options.append(str(option).strip())
    letters(len(options))  # refuses more than 26
    return strip_labels(options)


def _image_list(row: dict[str, Any], names: Sequence[str]) -> list[Any]:
    """A column holding a list of images, or one image."""
    _, value = _column(row, names)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _read_mmfinereason(row: dict[str, Any]) -> VisionItem:
    options = _options(row, "options")
    kind = " ".join(str(row.get("problem_type") or "").lower().replace("_", " ").replace("-", " ").split())
    trace = row.get(TRACE_COLUMN)
    return VisionItem(
        question=_text(row, ("problem", "question")),
        images=_image_list(row, ("images", "image")),
        answer=_column(row, ("answer",))[1],
        options=options,
        multiple_choice=bool(options) or kind in ("multiple choice", "multi choice"),
        solution=trace.strip() if isinstance(trace, str) and trace.strip() else None,
    )


def _read_mmmu(row: dict[str, Any]) -> VisionItem:
    images = [row.get(f"image_{k}") for k in range(1, MMMU_IMAGES + 1)]
    while images and images[-1] is None:
        images.pop()
    _column(row, ("options",))  # required: without it a multiple-choice question would pass as free-form
    options = _options(row, "options")
    return VisionItem(_text(row, ("question",)), images, _column(row, ("answer",))[1], options, bool(options))


def _read_mathvista(row: dict[str, Any]) -> VisionItem:
    options = _options(row, "choices")
    kind = row.get("question_type")
    multiple_choice = kind == "multi_choice" if kind is not None else bool(options)
    if multiple_choice and not options:
        raise ValueError("question_type is multi_choice but choices is empty")
    precision = row.get("precision")
    hint = ""
    if not multiple_choice and row.get("answer_type") == "float" and isinstance(precision, (int, float)) \
            and math.isfinite(precision):
        places = int(precision)
        hint = f"Give the final number with {places} decimal place{'' if places == 1 else 's'}."
    return VisionItem(_text(row, ("question",)), _image_list(row, ("decoded_image", "image")),
                      _column(row, ("answer",))[1], options if multiple_choice else [], multiple_choice,
                      letter_first=False, hint=hint)


def _read_mathvision(row: dict[str, Any]) -> VisionItem:
    options = _options(row, "options")
    return VisionItem(_text(row, ("question",)), _image_list(row, ("decoded_image", "image")),
                      _column(row, ("answer",))[1], options, bool(options))


def _read_zerobench(row: dict[str, Any]) -> VisionItem:
    return VisionItem(_text(row, ("question_text",)), _image_list(row, ("question_images_decoded",)),
                      _column(row, ("question_answer",))[1])


def _read_wemath(row: dict[str, Any]) -> VisionItem:
    question = _text(row, ("question",))
    inline = row.get("option")  # a separate option string, if a copy has one, goes under the question
    if isinstance(inline, str) and inline.strip():
        question = f"{question}\n{inline.strip()}"
    return VisionItem(question, _image_list(row, ("image", "image_path")), _column(row, ("answer",))[1],
                      multiple_choice=True)


TRAIN_IMAGE_SOURCE = VisionSource(
    "mmfinereason_123k", "mmfinereason", "MMFineReason-123K", "iieycx/rlsd-train-MMFineReason-123K", "train",
    "train", _read_mmfinereason,
    "records: problem (or question), answer, images (a list; or image), problem_type (\"multiple choice\" "
    f"or other), optional problem_id, options, {TRACE_COLUMN}; images as files in a folder",
    solutions=True, needs_image=False,
)
RLSD_BENCHMARKS = (
    VisionSource(
        "mmmu_val", "mmmu", "MMMU", "lmms-lab/MMMU", "validation", "test", _read_mmmu,
        "records: question (with <image k> references), options (a list, or its Python text; empty for open "
        "questions), answer (the option letter; free text for open questions), image_1 ... image_7",
        questions=900,
        score="accuracy over the 900 validation questions: multiple choice by option letter, open questions by "
              "math-verify",
        basis="5 of Table 2's 6 MMMU values are k/900 (PAPERS.md: the validation split)",
    ),
    VisionSource(
        "mathvista_testmini", "mathvista", "MathVista", "AI4Math/MathVista", "testmini", "test", _read_mathvista,
        "records: question, choices (a list, or null), answer (the choice's text for multi_choice), "
        "question_type (multi_choice / free_form), optional answer_type and precision, decoded_image (or "
        "image)",
        questions=1000,
        score="accuracy over the 1000 testmini questions: multi_choice by option letter, free_form by math-verify "
              "on the boxed answer (no LLM answer extraction as in MathVista's own scorer)",
        basis="Table 2's values are k/1000 (PAPERS.md: testmini)",
    ),
    VisionSource(
        "mathvision_test", "mathvision", "MathVision", "MathLLMs/MathVision", "test", "test", _read_mathvision,
        "records: question, options (a list; empty for free-form), answer (the option letter, or free text), "
        "decoded_image (or image)",
        questions=3040,
        score="accuracy over the full test set, 3040 questions (not the 304 of testmini)",
        basis="Table 2's values are k/3040 (PAPERS.md: the full test set)",
    ),
    VisionSource(
        "zerobench", "zerobench", "ZeroBench", "jonathan-roberts1/zerobench", "zerobench", "test", _read_zerobench,
        "records: question_text, question_answer, question_images_decoded (a list)",
        questions=100,
        score="accuracy over the 100 main questions by math-verify on the boxed answer (ours; not ZeroBench's own "
              "answer parsing)",
        basis="ours: not pinned. Table 2's values are not k/100, so not one sample per main question; 4 of 6 are "
              "k/334, the subquestions (--source zerobench=jonathan-roberts1/zerobench@zerobench_subquestions)",
    ),
    VisionSource(
        "wemath", "wemath", "WeMath", "We-Math/We-Math", "testmini", "test", _read_wemath,
        "records: question (options written inside it; a separate option text, if present, is appended), answer "
        "(the option letter), image (or image_path)",
        questions=1740,
        score="per-question accuracy over the 1740 testmini questions (ours). WeMath's strict and loose scores "
              "group one-step and multi-step problems into four dimensions (IK, IG, CM, RM): not implemented",
        basis="ours: not pinned (Table 2's values fit no split we know)",
    ),
)
VISION_SOURCES: dict[str, VisionSource] = {s.name: s for s in (TRAIN_IMAGE_SOURCE, *RLSD_BENCHMARKS)}

# What the RLSD comparison evaluates, per data_source, for recipes/rlsd_paper.yaml and docs/reproduce.md to cite.
# The paper states accuracy (%) with 4096-token prompts and responses and nothing else; decoding (temperature,
# top-p, samples per question) is set in recipes/rlsd_paper.yaml, not here.
RLSD_EVALUATION: dict[str, dict[str, Any]] = {
    s.data_source: {"file": f"{s.name}.parquet", "label": s.label, "hub": f"{s.hub}@{s.hub_split}",
                    "questions": s.questions, "score": s.score, "basis": s.basis}
    for s in RLSD_BENCHMARKS
}


def place_images(text: str, images: Sequence[Any]) -> tuple[str, list[Any]]:
    """``text`` with one ``<image>`` per image, and the images in placeholder order.

    A text without image references gets one ``<image>`` per image in front. Numbered references (``<image 2>``,
    ``<image2>``) become ``<image>`` where they stand, each followed by image k (a repeated reference repeats
    it); plain ``<image>`` references take the images in order. ValueError for a reference to an image that is
    not there, an image no reference names, a count mismatch, or numbered and plain references mixed.
    """
    numbers = [match.group(1) for match in _IMAGE_REFERENCE.finditer(text)]
    if not numbers:
        return PLACEHOLDER * len(images) + text, list(images)
    if all(numbers):
        order = [int(number) for number in numbers]
        missing = sorted({k for k in order if not 1 <= k <= len(images) or images[k - 1] is None})
        if missing:
            raise ValueError(f"the text refers to image(s) {missing}, which the row does not have")
        unused = [k for k, image in enumerate(images, start=1) if image is not None and k not in order]
        if unused:
            raise ValueError(f"image(s) {unused} given but the text never refers to them")
        return _IMAGE_REFERENCE.sub(PLACEHOLDER, text), [images[k - 1] for k in order]
    if any(numbers):
        raise ValueError("the text mixes numbered (<image 1>) and plain <image> references")
    if len(numbers) != len(images):
        raise ValueError(f"{len(images)} image(s) but {len(numbers)} <image> placeholder(s) in the text")
    return text, list(images)


def png_bytes(image: Any, image_dir: str | os.PathLike | None = None) -> bytes:
    """An image reference as PNG bytes: PNG data unchanged, other formats PIL reads re-encoded (lossless).

    References: a PIL image (hub rows); bytes; ``{"bytes": ..., "path": ...}`` (bytes, or base64 text from a
    JSON file; else the path); a ``data:image/...;base64,`` URI; a file path, a relative one under
    ``image_dir``. ValueError saying what is wrong for anything else, a missing file or undecodable data.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return _encode_png(image)
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            data = image["bytes"]
            data = base64.b64decode(data, validate=True) if isinstance(data, str) else data
        elif image.get("path"):
            return png_bytes(image["path"], image_dir)
        else:
            raise ValueError("an image entry has neither bytes nor a path")
    elif isinstance(image, (bytes, bytearray)):
        data = image
    elif isinstance(image, str) and image.startswith("data:image") and "base64," in image:
        data = base64.b64decode(image.split("base64,", 1)[1], validate=True)
    elif isinstance(image, str) and image.startswith(("http://", "https://")):
        raise ValueError(f"image URLs are not fetched ({image[:80]!r}); download the images and give paths")
    elif isinstance(image, str) and image.strip():
        path = Path(image)
        if not path.is_absolute():
            if image_dir is None:
                raise ValueError(f"relative image path {image!r} and no image folder (rows from the hub); download "
                                 "the dataset with its images and pass --source NAME=FILE --image-dir NAME=DIR")
            path = Path(image_dir) / path
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read image file {path}: {err.strerror}") from err
    else:
        raise ValueError(f"image is {'missing' if image is None else repr(image)[:80]}")
    data = bytes(data)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()  # decodes all of it: a truncated file fails here, not in training
            return data if data.startswith(_PNG_SIGNATURE) else _encode_png(opened)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"image data PIL cannot decode ({len(data)} bytes): {err}") from err


def _encode_png(image: Any) -> bytes:
    if image.mode not in _PNG_MODES:  # CMYK JPEGs and the like
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _gold_letter(item: VisionItem) -> str:
    """The ground-truth option letter of a multiple-choice item; ValueError if the answer names no option."""
    text = answer_text(item.answer)
    by_label = label_letter(text, len(item.options) or None)
    by_text = text_letter(text, item.options) if item.options else None
    letter = (by_label or by_text) if item.letter_first else (by_text or by_label)
    if letter is None:
        listed = f" ({letters(len(item.options))[0]}-{letters(len(item.options))[-1]})" if item.options else ""
        raise ValueError(f"answer {text[:80]!r} is neither an option letter{listed} nor the text of exactly one option")
    return letter


def vision_row(source: VisionSource, index: int, row: dict[str, Any],
               image_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """One record of an image set as a verl row; ValueError with the reason if it is unusable.

    The prompt is one user message: the question (and, for listed options, ``Options:`` then ``A. …`` lines) with
    one ``<image>`` per image (see ``place_images``), then ``MC_INSTRUCTION`` or ``INSTRUCTION``.
    """
    if not isinstance(row, dict):
        raise ValueError(f"row is a {type(row).__name__}, expected an object")
    item = source.read(row)
    if item.multiple_choice:
        ground_truth, answer_format, instruction = _gold_letter(item), MULTIPLE_CHOICE, MC_INSTRUCTION
        body = f"{item.question}\n\nOptions:\n{format_options(item.options)}" if item.options else item.question
    else:
        ground_truth, answer_format, instruction = answer_text(item.answer), FREE_FORM, INSTRUCTION
        body = item.question
    text, images = place_images(f"{body}\n\n{item.hint + ' ' if item.hint else ''}{instruction}", item.images)
    if source.needs_image and not images:
        raise ValueError("no image")
    for other in _OTHER_PLACEHOLDERS:
        if other in text:
            raise ValueError(f"the text contains {other!r}, which verl would read as a placeholder")
    encoded = []
    for number, image in enumerate(images, start=1):
        try:
            encoded.append({"bytes": png_bytes(image, image_dir), "path": None})
        except ValueError as err:
            raise ValueError(f"image {number}: {err}") from err
    extra_info: dict[str, Any] = {"split": source.split, "index": index, "answer_format": answer_format,
                                  "options": list(item.options) if item.multiple_choice else []}
    if source.solutions:
        extra_info["solution"] = item.solution
    return {
        "data_source": source.data_source,
        "prompt": [{"role": "user", "content": text}],
        "images": encoded,
        "ability": "vision",
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": extra_info,
    }


def vision_schema(source: VisionSource) -> Any:
    """The parquet schema of ``source``'s rows, fixed so that files whose options or solutions happen to be all
    empty still concatenate with the others (verl's ``RLHFDataset`` concatenates ``data.val_files``)."""
    import pyarrow as pa

    extra = [("split", pa.string()), ("index", pa.int64()), ("answer_format", pa.string()),
             ("options", pa.list_(pa.string()))]
    if source.solutions:
        extra.append(("solution", pa.string()))
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct(extra)),
    ])


def convert_images(source: VisionSource, rows: Sequence[dict[str, Any]], origin: str = "",
                   image_dir: str | os.PathLike | None = None, path: str | os.PathLike | None = None) -> Conversion:
    """Convert every record of an image set; unusable ones go to ``Conversion.dropped`` with their reason.

    With ``path`` the rows are written there (parent directories created) ``WRITE_BATCH_ROWS`` at a time and not
    kept (``Conversion.written`` counts them): 123K rows of PNG bytes do not fit in memory at once. Notes: rows
    kept without a reasoning trace (kept, ``extra_info.solution = None``: OPSD's solution context falls back to
    the answer for them, and every method trains on the same rows), and a benchmark whose row count is not its
    published size.
    """
    result = Conversion(source=source, origin=origin, read=len(rows))
    writer = batch = None
    no_trace = 0
    if path is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = pq.ParquetWriter(path, vision_schema(source))
        batch = []
    try:
        for index, row in enumerate(_progress(rows, source.name)):
            try:
                converted = vision_row(source, index, row, image_dir)
            except ValueError as err:
                result.dropped.append((index, str(err)))
                continue
            if source.solutions and converted["extra_info"]["solution"] is None:
                no_trace += 1
            if writer is None:
                result.rows.append(converted)
                continue
            batch.append(converted)
            if len(batch) == WRITE_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=writer.schema))
                result.written += len(batch)
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=writer.schema))
            result.written += len(batch)
    finally:
        if writer is not None:
            writer.close()
    if no_trace:
        result.notes.append(f"{no_trace} kept rows have no reasoning trace ({TRACE_COLUMN}): kept with "
                            "extra_info.solution = None (OPSD's solution context uses the answer for them)")
    if source.questions is not None and result.kept != source.questions:
        result.notes.append(f"warning: {result.kept} rows, but {source.label} has {source.questions} questions: "
                            "scores are not over the whole benchmark")
    return result
