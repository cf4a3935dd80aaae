"""Read verl's file-logger JSONL metrics across every launch of one experiment.

verl's ``FileLogger`` opens its file with mode ``"wb"``, so a resumed run that reuses the path erases the
steps logged before it. Our scripts therefore give every launch its own file
(``VERL_FILE_LOGGER_PATH=<experiment dir>/launch-<timestamp>.jsonl``) and every reader goes through
``read_metrics``: all files of the experiment, oldest launch first, and for each step and key the value
logged last (a resumed launch re-logging a step wins over the launch it replaced).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def launch_files(experiment: str | os.PathLike) -> list[Path]:
    """The JSONL files of an experiment (a directory of launches, or one file), oldest launch first."""
    path = Path(experiment)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no metrics log at {path} (expected a .jsonl file or a directory of them)")
    files = sorted(path.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
    if not files:
        raise FileNotFoundError(f"no *.jsonl metrics files in {path}")
    return files


def jsonl_records(file: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON value)`` for each non-blank line of a JSONL file, read one line at a time; a line
    that is not JSON raises ``ValueError`` naming ``file:line``."""
    with open(file, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{file}:{line_no}: not a JSON value ({err})") from err


def read_metrics(experiment: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[int, dict[str, float]]:
    """``{step: {metric: value}}`` merged over every launch; the value logged last wins per step and key."""
    paths = [experiment] if isinstance(experiment, (str, os.PathLike)) else list(experiment)
    steps: dict[int, dict[str, float]] = {}
    for path in paths:
        for file in launch_files(path):
            for line_no, record in jsonl_records(file):
                try:
                    step, data = int(record["step"]), record["data"]
                except (ValueError, KeyError, TypeError) as err:
                    raise ValueError(f"{file}:{line_no}: not a verl file-logger record ({err})") from err
                steps.setdefault(step, {}).update(data)
    return dict(sorted(steps.items()))


def metric_series(steps: dict[int, dict[str, float]], key: str) -> tuple[list[int], list[float]]:
    """The (steps, values) at which ``key`` was logged, in step order."""
    pairs = [(step, data[key]) for step, data in steps.items() if key in data]
    return [s for s, _ in pairs], [float(v) for _, v in pairs]


def run_summary(steps: dict[int, dict[str, float]]) -> list[str]:
    """A few lines a person reads after a run: per step the reward, the rows the teacher scored, Δ mean and
    the teacher pass's share of the step time (``timing_s/teacher`` / ``timing_s/step``); "—" where not logged
    (a GRPO run has no teacher; a step without scored tokens has no Δ)."""

    def shown(value: float | None, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    lines = [f"{'step':>4}  {'reward':>6}  {'scored rows':>11}  {'Δ mean':>8}  {'teacher share':>13}"]
    for step, data in steps.items():
        scored = data.get("rlrt/scored_rows")
        rows = None if scored is None else f"{scored:.0f} / {data.get('rlrt/real_rows', 0):.0f}"
        teacher, total = data.get("timing_s/teacher"), data.get("timing_s/step")
        share = None if teacher is None or not total else teacher / total
        lines.append(
            f"{step:>4}  {shown(data.get('critic/score/mean'), '.3f'):>6}  {rows or '—':>11}  "
            f"{shown(data.get('rlrt/delta_mean'), '+.4f'):>8}  {shown(share, '.1%'):>13}"
        )
    return lines
