#!/usr/bin/env python3
"""Build the toy model, warm-start it on single-digit sums, write the RL data, check the teacher.

    python scripts/warm_start.py --out artifacts/toy/model --data-dir artifacts/toy/data

Writes the model (``TOY_SPEC``, tokenizer trained locally) to --out, ``train.parquet`` (the RL set: the
first --rl-problems train problems, repeated) and ``heldout.parquet`` to --data-dir, then prints one JSON line: parameters, losses, pass rates at
temperature 1, and the semantic check's mean Δ = τ − s on held-out answer tokens for the right reference,
a wrong reference and the identity template (examples/rlrt_toy/semantic.py). Exits 1 if the check fails
(right ≥ 0.5, wrong ≤ −0.5, |identity| ≤ 1e-5) or the pass rate is 0 or 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# The toy task is an example, not part of the installed package: examples/rlrt_toy beside this script's folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from rlrt_toy import semantic, task
from rlrt_toy.warm_start import WarmStartConfig, add_warm_start_arguments, config_from_arguments, load, warm_start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_warm_start_arguments(parser, WarmStartConfig())
    parser.add_argument("--rl-problems", type=int, default=8, help="train problems in train.parquet (RL set)")
    args = parser.parse_args(argv)

    start = time.time()
    cfg = config_from_arguments(WarmStartConfig, args)
    summary = warm_start(args.out, cfg, log_every=50)
    model, tokenizer, render = load(args.out)
    summary["delta"] = semantic.answer_gaps(model, tokenizer, render, task.split_problems()["heldout"], seed=args.seed)
    if args.data_dir:
        task.write_rl_data(args.data_dir, rl_problems=args.rl_problems, repeat=args.repeat)
    summary["wall_s"] = round(time.time() - start, 1)
    print(json.dumps(summary))
    failures = semantic.failures(summary["delta"])
    if not 0.0 < summary["pass_rate_train"] < 1.0:
        failures.append(f"train pass rate {summary['pass_rate_train']} is not strictly between 0 and 1")
    for failure in failures:
        print(f"check failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
