#!/usr/bin/env python3
"""Reproduction table: ours per benchmark beside a paper's published numbers (markdown and CSV).

    python scripts/make_table.py --backbone qwen3_4b_base --run base_model=outputs/eval/base \\
        --run grpo=outputs/eval/grpo --run rlrt=outputs/eval/rlrt --out results/table
    python scripts/make_table.py --paper rlsd --run base_model=outputs/rlsd_paper/paper/base_model/eval \\
        --run rlsd=outputs/rlsd_paper/paper/rlsd/eval --out results/rlsd_table

--paper rlrt (default): RLRT Tables 1/3, avg@16 / pass@16 on its six math benchmarks, --n 16.
--paper rlsd: RLSD Table 2, accuracy on MMMU, MathVista, MathVision, ZeroBench and WeMath, --n 1 (ours: one sample).

Each --run METHOD=PATH is one evaluated experiment: a verl file-logger .jsonl or a directory of launch
files (all launches read, last value per step). Repeat a METHOD for several seeds (mean ± sample std); the
untrained model is the method base_model. avg@N is val-core/<data_source>/acc/mean@N (last logged value);
for RLRT, pass@N comes from PATH/pass_at_k.json when PATH is a directory holding one, else it is shown as "—".
The paper's rows (source "paper") are those of --backbone (default: the paper's first). Writes <out>.md and
<out>.csv; the markdown, which ends with the paper's method's gain over the best baseline, is also printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrt_recipe.report import (
    DEFAULT_PAPER,
    PAPERS,
    load_pass_at_k,
    load_runs,
    paper_backbone_label,
    parse_runs,
    table_rows,
    to_csv,
    to_markdown,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="METHOD=PATH", help="one evaluated run")
    parser.add_argument("--out", required=True, help="output path without suffix: writes <out>.md and <out>.csv")
    parser.add_argument(
        "--paper", default=DEFAULT_PAPER, choices=list(PAPERS),
        help=f"whose published table goes beside ours (default {DEFAULT_PAPER})",
    )
    parser.add_argument(
        "--n", type=int, default=None,
        help="samples per prompt of the validation (avg@N, pass@N; default: the paper's, rlrt 16, rlsd 1)",
    )
    backbones = list(dict.fromkeys(b for paper in PAPERS.values() for b in paper.rows))
    parser.add_argument(
        "--backbone", default=None, choices=backbones,
        help="whose paper rows go beside ours (default: the paper's first, " + ", ".join(
            f"{name} {paper.default_backbone}" for name, paper in PAPERS.items()) + ")",
    )
    args = parser.parse_args(argv)
    paper = PAPERS[args.paper]
    n = paper.n if args.n is None else args.n
    backbone = paper.default_backbone if args.backbone is None else args.backbone
    try:
        paper_backbone_label(backbone, args.paper)  # a backbone of another paper fails here, before any reading
        runs = parse_runs(args.run)
    except ValueError as err:
        parser.error(str(err))
    method_pass = load_pass_at_k(runs, k=n) if paper.with_pass else None
    rows = table_rows(load_runs(runs), n=n, backbone=backbone, method_pass=method_pass, paper=args.paper)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows, n=n, backbone=backbone, paper=args.paper)
    out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    out.with_suffix(".csv").write_text(to_csv(rows), encoding="utf-8")
    print(markdown)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
