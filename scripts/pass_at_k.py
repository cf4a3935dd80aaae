#!/usr/bin/env python3
"""avg@n and the unbiased pass@k per benchmark from verl's validation dump (the RLRT paper's evaluation).

    python scripts/pass_at_k.py --dump outputs/eval/generations --val-files data/aime24.parquet,data/aime25.parquet \\
        --k 1 --k 16 --out results/pass_at_k.json
    python scripts/pass_at_k.py --dump outputs/eval/generations/100.jsonl --val-files ... --curve --out curve.json

--dump is what the validation wrote with trainer.validation_data_dir=DIR: DIR itself (its highest
<step>.jsonl is read) or one .jsonl. --val-files are the parquet files the validation ran on: each problem's
benchmark (data_source) is the one whose prompt occurs in its dumped input. A sample is correct iff its
reward's ``acc`` (``score`` where absent) is >= 0.5.

pass@k is the unbiased estimator of Chen et al. 2021, 1 - C(n-c, k) / C(n, k) for n samples with c
correct, averaged over problems; not verl's val-core best@k/mean, which is a bootstrap over resampled
subsets. avg@n is the mean of c / n. The JSON holds fractions in [0, 1]:
{"n": n, "benchmarks": {data_source: {"problems", "samples_per_problem", "avg", "pass@k": {"k": ...}}},
"dump": path}; the printed table is in percent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlrt_recipe.evaluation import evaluate, table_lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dump", required=True, help="trainer.validation_data_dir, or one <step>.jsonl in it")
    parser.add_argument(
        "--val-files", action="append", required=True, metavar="A.parquet,B.parquet",
        help="validation parquet files, comma-separated (repeatable)",
    )
    ks = parser.add_mutually_exclusive_group()
    ks.add_argument("--k", type=int, action="append", help="a k of pass@k (repeatable; default 16)")
    ks.add_argument("--curve", action="store_true", help="pass@k for every k from 1 to n")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    val_files = [path for spec in args.val_files for path in spec.split(",") if path]
    try:
        result = evaluate(args.dump, val_files, ks=None if args.curve else args.k or [16])
    except (ValueError, FileNotFoundError) as err:
        parser.exit(1, f"{parser.prog}: error: {err}\n")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n".join(table_lines(result)))
    print(f"percent; {result['n']} samples per problem from {result['dump']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
