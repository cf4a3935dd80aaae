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
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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
    """Result of converting one source: the verl rows kept and ``(source index, reason)`` per dropped row."""

    source: Source
    origin: str
    read: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[tuple[int, str]] = field(default_factory=list)


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


def _unreadable(source: Source, origin: str, why: str) -> SourceError:
    return SourceError(
        f"cannot read source {source.name!r} from {origin}: {why}. "
        f"Download it where the hub is reachable and pass a local file: "
        f"--source {source.name}=path/to/file.jsonl (json, jsonl or parquet; columns: question "
        f"{list(source.question)}, answer {list(source.answer)}, or set them with --column {source.name}.answer=NAME)"
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


def load_rows(source: Source, spec: str | None = None) -> tuple[list[dict[str, Any]], str]:
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


def parse_hub_spec(spec: str, source: Source) -> tuple[str, str | None, str]:
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
    yield f"{c.source.name}: read {c.read}, kept {len(c.rows)}, dropped {len(c.dropped)}  ({c.origin})"
    for index, reason in c.dropped[:max_listed]:
        yield f"  dropped row {index}: {reason}"
    if len(c.dropped) > max_listed:
        yield f"  ... and {len(c.dropped) - max_listed} more dropped rows"
