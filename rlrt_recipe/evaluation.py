"""avg@n and the unbiased pass@k per benchmark from verl's validation dump (no verl import).

verl 0.9.1 run with ``trainer.validation_data_dir=DIR`` writes ``DIR/<global_step>.jsonl`` after each
validation (``trainer/ppo/v1/trainer_base.py``: ``_validate``, ``_write_generations``): one JSON object per
generated sample with ``input`` (the decoded prompt, special tokens skipped), ``output``, ``gts``, ``score``,
``step``, every reward-extra-info key (``rlrt_recipe.reward`` returns ``score``, ``acc``, ``has_answer``,
``timeout``; verl adds ``reward``) and ``uid``, the TransferQueue key ``"{prompt_uuid}_{session}_{index}"``:
the samples of one problem share ``prompt_uuid``, a session is one of the n samples, and an agent loop with
several outputs per session writes one line per output (``index``), each carrying the session's final score.

The dump has no ``data_source``. A problem's benchmark is recovered from the validation parquet files
(``rlrt_recipe.data`` layout): the problem belongs to the benchmark whose rows' last user message occurs
verbatim in its dumped ``input`` (the decoded chat prompt contains it); no match, or matches in several
benchmarks, is an error.

pass@k is the unbiased estimator of Chen et al. 2021 (arXiv 2107.03374) from n samples of which c are
correct, averaged over problems. It is not verl's ``best@k/mean``, a bootstrap over resampled subsets
(``trainer/ppo/metric_utils.py``). avg@n is the mean over problems of c / n (equal to pass@1).
"""

from __future__ import annotations

import math
import operator
import os
import re
import statistics
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rlrt_recipe.logs import jsonl_records

# problem uuid -> (dumped input, samples n, correct samples c)
Problems = dict[str, tuple[str, int, int]]
SHOWN_CHARS = 80  # characters of a problem's input that errors show


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: 1 − C(n−c, k) / C(n, k).

    The probability that a size-k subset drawn without replacement from the n samples holds a correct one.
    Exact integer binomials, one correctly rounded division: no overflow or cancellation for any n.
    """
    n, c, k = _count("n", n), _count("c", c), _count("k", k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"k must be <= n (the samples per problem), got k={k}, n={n}")
    if c > n:
        raise ValueError(f"c (correct samples) must be <= n, got c={c}, n={n}")
    if n - c < k:  # every size-k subset holds a correct sample
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value}")
    return value


def dump_file(path: str | os.PathLike) -> Path:
    """The JSONL that ``read_dump`` reads: ``path`` itself if a file, else the ``<step>.jsonl`` of ``path``
    with the highest step (a training run dumps every validation; the last one is the final model's)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"no validation dump at {path} (expected a <step>.jsonl file or the trainer.validation_data_dir "
            "directory holding them)"
        )
    steps = {int(file.stem): file for file in path.glob("*.jsonl") if file.stem.isdigit()}
    if not steps:
        raise FileNotFoundError(
            f"no <step>.jsonl validation dump in {path}; run the validation with trainer.validation_data_dir={path}"
        )
    return steps[max(steps)]


def read_dump(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The samples of a validation dump: one dict per line of ``dump_file(path)`` (the last step's file when
    ``path`` is a directory)."""
    return list(iter_dump(dump_file(path)))


def iter_dump(file: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The samples of one dump file, one at a time (a 16-sample dump of long responses runs to gigabytes)."""
    for line_no, sample in jsonl_records(file):
        if not isinstance(sample, dict):
            raise ValueError(f"{file}:{line_no}: expected a JSON object, got {type(sample).__name__}")
        yield sample


def split_uid(uid: Any) -> tuple[str, str, int]:
    """``"{prompt_uuid}_{session}_{index}"`` -> ``(prompt_uuid, session, index)``."""
    parts = uid.rsplit("_", 2) if isinstance(uid, str) else []
    if len(parts) != 3 or not parts[2].isdigit():
        raise ValueError(
            f"uid {uid!r} is not a verl 0.9 validation key '<prompt_uuid>_<session>_<index>'; dump the "
            "validation with verl 0.9.1's trainer.validation_data_dir"
        )
    return parts[0], parts[1], int(parts[2])


def _correct(sample: dict[str, Any], correct_key: str, threshold: float) -> bool:
    value = sample.get(correct_key)
    if value is None:
        value = sample.get("score")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"sample {sample.get('uid')!r} has no numeric {correct_key!r} or 'score' (got {value!r}); pass the "
            "reward-extra-info key that holds correctness"
        )
    return value >= threshold


def problem_correctness(
    samples: Iterable[dict[str, Any]], correct_key: str = "acc", threshold: float = 0.5
) -> Problems:
    """``{prompt_uuid: (input, n, c)}`` in order of first appearance: n sessions (samples) per problem, c of
    them correct.

    A sample is correct iff its ``correct_key`` value (our reward's ``acc``, 1.0 or 0.0), or ``score`` where
    that key is absent or null, is >= ``threshold``. A session with several outputs (multi-turn agent loops)
    counts once, with its highest-index output. ``input`` is the first dumped input of the problem.
    """
    sessions: dict[tuple[str, str], tuple[int, bool]] = {}
    inputs: dict[str, str] = {}
    for sample in samples:
        problem, session, index = split_uid(sample.get("uid"))
        if not isinstance(sample.get("input"), str):
            raise ValueError(f"sample {sample.get('uid')!r} has no 'input' text")
        inputs.setdefault(problem, sample["input"])
        if (problem, session) not in sessions or index > sessions[problem, session][0]:
            sessions[problem, session] = (index, _correct(sample, correct_key, threshold))
    counts = {problem: [0, 0] for problem in inputs}
    for (problem, _), (_, correct) in sessions.items():
        counts[problem][0] += 1
        counts[problem][1] += correct
    return {problem: (inputs[problem], n, c) for problem, (n, c) in counts.items()}


def last_user_content(prompt: Any) -> str:
    """The content of the last ``user`` message of a chat prompt (a list of ``{"role", "content"}``)."""
    if isinstance(prompt, (list, tuple)) or hasattr(prompt, "tolist"):  # parquet lists load as numpy arrays
        for message in reversed(list(prompt)):
            if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
                return message["content"]
    raise ValueError(f"prompt has no user message with text content: {prompt!r:.200}")


def benchmark_prompts(val_files: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[str, set[str]]:
    """``{last user message content: {data_source, ...}}`` over every row of the validation parquet files,
    in file and row order (so benchmarks keep the order of ``val_files``)."""
    import pandas as pd

    files = [val_files] if isinstance(val_files, (str, os.PathLike)) else list(val_files)
    if not files:
        raise ValueError("no validation parquet files given")
    prompts: dict[str, set[str]] = {}
    for file in files:
        frame = pd.read_parquet(file, columns=["data_source", "prompt"])
        for row, (data_source, prompt) in enumerate(zip(frame["data_source"], frame["prompt"])):
            try:
                content = last_user_content(prompt)
            except ValueError as err:
                raise ValueError(f"{file}: row {row} (data_source={data_source!r}): {err}") from None
            prompts.setdefault(content, set()).add(str(data_source))
    return prompts


#: verl's media placeholders in a prompt's text: the dumped input is decoded with special tokens skipped, so an image
#: leaves no text behind and only the text around the placeholders can be found.
MEDIA_PLACEHOLDER = re.compile(r"<image>|<video>|<audio>")


def occurs_in(content: str, text: str) -> bool:
    """Whether the prompt ``content`` occurs in the dumped ``text``: verbatim, or for a multimodal prompt its text
    pieces between the placeholders (each stripped, as verl's message builder may strip them), in order."""
    if not MEDIA_PLACEHOLDER.search(content):
        return content in text
    position = 0
    for piece in (p.strip() for p in MEDIA_PLACEHOLDER.split(content)):
        if piece:
            found = text.find(piece, position)
            if found < 0:
                return False
            position = found + len(piece)
    return True


def match_benchmark(text: str, prompts: dict[str, set[str]]) -> str:
    """The one data_source whose prompts occur in ``text``; ValueError naming the candidates otherwise."""
    matched = {content: sources for content, sources in prompts.items() if occurs_in(content, text)}
    found = set().union(*matched.values())
    if len(found) == 1:
        return found.pop()
    if not found:
        benchmarks = sorted(set().union(*prompts.values()))
        raise ValueError(
            f"problem {text[:SHOWN_CHARS]!r}: no prompt of the validation files (benchmarks {benchmarks}) occurs in "
            "its dumped input; pass the parquet files this validation ran on"
        )
    candidates = {content[:SHOWN_CHARS]: sorted(sources) for content, sources in matched.items()}
    raise ValueError(
        f"problem {text[:SHOWN_CHARS]!r}: matches prompts of several benchmarks {sorted(found)}: {candidates}; "
        "evaluate those benchmarks from separate validation runs"
    )


def evaluate(
    dump: str | os.PathLike,
    val_files: str | os.PathLike | Iterable[str | os.PathLike],
    ks: Iterable[int] | None = (16,),
    correct_key: str = "acc",
    threshold: float = 0.5,
) -> dict[str, Any]:
    """avg@n and pass@k per benchmark of a validation dump (``dump_file(dump)``).

    Returns ``{"n": n, "benchmarks": {data_source: {"problems": P, "samples_per_problem": n, "avg": a,
    "pass@k": {k: p}}}, "dump": "<jsonl read>"}``, fractions in [0, 1], benchmarks in ``val_files`` order
    (those without problems in the dump left out). ``ks=None`` means every k from 1 to n. Every problem must
    have the same n (a failed session is missing from the dump, while verl's val-core counts it as acc 0).
    """
    file = dump_file(dump)
    problems = problem_correctness(iter_dump(file), correct_key, threshold)
    if not problems:
        raise ValueError(f"{file}: no samples")
    sizes: dict[int, list[str]] = {}
    for problem, (text, n, _) in problems.items():
        sizes.setdefault(n, []).append(f"{problem} ({text[:SHOWN_CHARS]!r})")
    if len(sizes) > 1:
        counts = {n: len(names) for n, names in sorted(sizes.items())}
        usual = max(sizes, key=lambda n: len(sizes[n]))
        odd = "; ".join(f"problem {names[0]} has {n}" for n, names in sizes.items() if n != usual)
        raise ValueError(
            f"{file}: problems have different sample counts (samples: problems = {counts}), e.g. {odd}; avg@n and "
            "pass@k need the same n for every problem (was a session lost, or val_kwargs.n overridden per row?)"
        )
    (n,) = sizes
    ks = range(1, n + 1) if ks is None else list(ks)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise ValueError(f"k must be an integer in [1, n={n}] (samples per problem in {file}), got {k!r}")
    ks = sorted(set(ks))

    prompts = benchmark_prompts(val_files)
    order = list(dict.fromkeys(source for sources in prompts.values() for source in sorted(sources)))
    by_source: dict[str, list[int]] = {}
    for text, _, c in problems.values():
        by_source.setdefault(match_benchmark(text, prompts), []).append(c)
    benchmarks = {
        source: {
            "problems": len(by_source[source]),
            "samples_per_problem": n,
            "avg": statistics.fmean(c / n for c in by_source[source]),
            "pass@k": {k: statistics.fmean(pass_at_k(n, c, k) for c in by_source[source]) for k in ks},
        }
        for source in order
        if source in by_source
    }
    return {"n": n, "benchmarks": benchmarks, "dump": str(file)}


def table_lines(result: dict[str, Any]) -> list[str]:
    """``evaluate``'s result as a text table, in percent: one line per benchmark."""
    n = result["n"]
    ks = list(dict.fromkeys(k for bench in result["benchmarks"].values() for k in bench["pass@k"]))
    header = f"{'benchmark':<12}  {'problems':>8}  {f'avg@{n}':>7}" + "".join(f"  {f'pass@{k}':>8}" for k in ks)
    lines = [header]
    for source, bench in result["benchmarks"].items():
        cells = "".join(f"  {100 * bench['pass@k'][k]:>8.1f}" for k in ks)
        lines.append(f"{source:<12}  {bench['problems']:>8}  {100 * bench['avg']:>7.1f}{cells}")
    return lines
