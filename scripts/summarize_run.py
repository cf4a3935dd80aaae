#!/usr/bin/env python3
"""Print a run's per-step summary (reward, scored rows, Δ mean, teacher share) and where its log is.

    python scripts/summarize_run.py artifacts/cpu_demo/run/launch-20261127-180000.jsonl

The argument is a verl file-logger .jsonl or a directory of launch files (``rlrt_recipe.logs.read_metrics``).
"""

from __future__ import annotations

import sys

from rlrt_recipe.logs import read_metrics, run_summary


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(run_summary(read_metrics(args[0]))))
    print(f"metrics log: {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
