#!/usr/bin/env python3
"""Reproduction table: avg@16 / pass@16 per benchmark beside the paper's numbers (markdown and CSV).

    python scripts/make_table.py --backbone qwen3_4b_base --run base_model=outputs/eval/base \\
        --run grpo=outputs/eval/grpo --run rlrt=outputs/eval/rlrt --out results/table

Each --run METHOD=PATH is one evaluated experiment: a verl file-logger .jsonl or a directory of launch
files (all launches read, last value per step). Repeat a METHOD for several seeds (mean ± sample std); the
untrained model is the method base_model. avg@N is val-core/<data_source>/acc/mean@N (last logged value);
pass@N comes from PATH/pass_at_k.json when PATH is a directory holding one, else it is shown as "—".
The paper's rows (source "paper": RLRT Table 1 / Table 3) are those of --backbone. Writes <out>.md and
<out>.csv; the markdown, which ends with RLRT's relative gain over the best baseline, is also printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrt_recipe.report import (
    DEFAULT_BACKBONE,
    PAPER_TABLES,
    load_pass_at_k,
    load_runs,
    parse_runs,
    table_rows,
    to_csv,
    to_markdown,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="METHOD=PATH", help="one evaluated run")
    parser.add_argument("--out", required=True, help="output path without suffix: writes <out>.md and <out>.csv")
    parser.add_argument("--n", type=int, default=16, help="samples per prompt of the validation (avg@N, pass@N; default 16)")
    parser.add_argument(
        "--backbone", default=DEFAULT_BACKBONE, choices=list(PAPER_TABLES),
        help=f"whose paper rows go beside ours (default {DEFAULT_BACKBONE})",
    )
    args = parser.parse_args(argv)
    try:
        runs = parse_runs(args.run)
    except ValueError as err:
        parser.error(str(err))
    rows = table_rows(load_runs(runs), n=args.n, backbone=args.backbone, method_pass=load_pass_at_k(runs, k=args.n))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows, n=args.n, backbone=args.backbone)
    out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    out.with_suffix(".csv").write_text(to_csv(rows), encoding="utf-8")
    print(markdown)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
