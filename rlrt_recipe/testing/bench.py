"""Small pieces the benchmark scripts share (scripts/bench_*.py)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable


def timed(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, min) wall seconds of ``call()`` over ``repeats`` runs, after one warm-up run. The minimum is the
    figure least disturbed by other processes on a shared machine; the median is the headline."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def write_json(path: str | None, result: dict) -> None:
    """Write ``result`` to ``path`` (the scripts' ``--json``) and say where; nothing when no path was given."""
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
        print(f"json: {path}")
