#!/usr/bin/env python3
"""Training curves per method: reward, response length, entropy and every rlrt/* metric, one panel each.

    python scripts/plot_curves.py --run grpo=outputs/grpo --run rlrt=outputs/rlrt --out results/curves.png

Each --run METHOD=PATH is one training experiment (a verl file-logger .jsonl or a directory of launch
files; all launches read, last value per step). Repeat a METHOD for several seeds: the line is the mean,
the band ± one sample std. --metric adds panels for other logged keys.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrt_recipe.report import curve_metrics, load_runs, parse_runs, plot_curves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="METHOD=PATH", help="one training run")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--metric", action="append", default=[], help="extra metric key to plot (repeatable)")
    args = parser.parse_args(argv)
    try:
        runs = parse_runs(args.run)
    except ValueError as err:
        parser.error(str(err))
    method_runs = load_runs(runs)
    metrics = curve_metrics(method_runs, extra=args.metric)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(method_runs, metrics).savefig(out, dpi=120)
    print(f"wrote {out} ({len(metrics)} panels: {', '.join(metrics)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
