#!/usr/bin/env python3
"""pass@k against k, one panel per benchmark and one line per method: the RLRT paper's exploration figure (Fig. 8).

    python scripts/plot_pass_at_k.py --run grpo=outputs/grpo/eval --run rlrt=outputs/rlrt/eval --out pass_at_k.png

Each --run METHOD=PATH is one evaluated run: a directory holding the pass_at_k.json that scripts/evaluate.sh writes
(with CURVE=1: every k from 1 to the number of samples, the unbiased estimator 1 − C(n−c, k)/C(n, k)).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrt_recipe.report import parse_runs, plot_pass_at_k, read_pass_at_k_curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="METHOD=PATH", help="one evaluated run")
    parser.add_argument("--out", required=True, help="PNG file to write")
    args = parser.parse_args(argv)
    try:
        runs = parse_runs(args.run)
        duplicated = [method for method, paths in runs.items() if len(paths) > 1]
        if duplicated:
            raise ValueError(f"one run per method: {', '.join(duplicated)} given more than once")
        curves = {method: read_pass_at_k_curves(paths[0]) for method, paths in runs.items()}
    except ValueError as err:
        parser.error(str(err))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_pass_at_k(curves).savefig(out, dpi=120)
    largest = max((k for per_method in curves.values() for ks in per_method.values() for k in ks), default=0)
    print(f"wrote {out}: {len(curves)} methods, k up to {largest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
