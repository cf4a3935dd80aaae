#!/usr/bin/env python3
"""Reproduction table: avg@16 per benchmark beside the paper's numbers (markdown and CSV).

    python scripts/make_table.py --run grpo=outputs/eval/grpo --run rlrt=outputs/eval/rlrt --out results/table

Each --run METHOD=PATH is one evaluated experiment: a verl file-logger .jsonl or a directory of launch
files (all launches read, last value per step). Repeat a METHOD for several seeds (mean ± sample std).
Reads val-core/<data_source>/acc/mean@N (last logged value) and writes <out>.md and <out>.csv; the
markdown is also printed. Paper rows are labelled "paper (unverified)".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrt_recipe.report import load_runs, parse_runs, table_rows, to_csv, to_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="METHOD=PATH", help="one evaluated run")
    parser.add_argument("--out", required=True, help="output path without suffix: writes <out>.md and <out>.csv")
    parser.add_argument("--n", type=int, default=16, help="samples per prompt of the validation (avg@N; default 16)")
    args = parser.parse_args(argv)
    try:
        runs = parse_runs(args.run)
    except ValueError as err:
        parser.error(str(err))
    rows = table_rows(load_runs(runs), n=args.n)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows, n=args.n)
    out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    out.with_suffix(".csv").write_text(to_csv(rows), encoding="utf-8")
    print(markdown)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
