#!/usr/bin/env python3
"""Table and curves of the toy comparison (scripts/compare_methods_cpu.sh): reward, response length,
entropy and the rlrt/* teacher signals, one line per method (mean over seeds, ± std band).

    python scripts/toy_report.py --run grpo=artifacts/toy_comparison/runs/grpo/seed1 ... --out artifacts/toy_comparison/summary

Each --run METHOD=PATH is one training run (a verl file-logger .jsonl or a directory of launch files);
repeat a METHOD for several seeds. Writes <out>.md (examples/rlrt_toy/compare.py summary_markdown, also
printed) and <out>.png (rlrt_recipe.report.plot_curves over PLOT_METRICS: one colour per method in every panel).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrt_recipe.report import load_runs, parse_runs, plot_curves

# The toy task is an example, not part of the installed package: examples/rlrt_toy beside this script's folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from rlrt_toy.compare import PLOT_METRICS, summary_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="METHOD=PATH", help="one training run")
    parser.add_argument("--out", required=True, help="output path without suffix: writes <out>.md and <out>.png")
    parser.add_argument("--last", type=int, default=3, help="final value = mean over this many last steps")
    parser.add_argument("--dpi", type=int, default=70)
    args = parser.parse_args(argv)
    try:
        runs = parse_runs(args.run)
    except ValueError as err:
        parser.error(str(err))
    method_runs = load_runs(runs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = summary_markdown(method_runs, last=args.last)
    out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    plot_curves(method_runs, PLOT_METRICS, ncols=4).savefig(out.with_suffix(".png"), dpi=args.dpi)
    print(markdown)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
