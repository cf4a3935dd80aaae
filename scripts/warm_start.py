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
from rlrt_toy.warm_start import WarmStartConfig, load, warm_start


def main(argv: list[str] | None = None) -> int:
    defaults = WarmStartConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--data-dir", default=None, help="also write train.parquet and heldout.parquet here")
    parser.add_argument("--rl-problems", type=int, default=8, help="train problems in train.parquet (RL set)")
    parser.add_argument("--repeat", type=int, default=16, help="copies of each of them in train.parquet")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--privileged-frac", type=float, default=defaults.privileged_frac)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)

    start = time.time()
    cfg = WarmStartConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          privileged_frac=args.privileged_frac, seed=args.seed)
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
