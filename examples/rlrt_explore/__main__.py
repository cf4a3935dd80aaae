"""Build the model, warm-start it on the "reach the target" task, write the RL data, print the figures.

    PYTHONPATH=examples python -m rlrt_explore --out artifacts/explore/model --data-dir artifacts/explore/data

Writes the model (the toy's ``TOY_SPEC``, tokenizer trained locally, warm-started on the ``warm`` problems) to
--out and, with --data-dir, ``train.parquet`` (the RL problems, each --repeat times) and ``heldout.parquet``
(the held-out problems once) there; prints one JSON line: parameters, losses, for the RL (``train``) and
held-out problems the pass rate, pass@k, distinct correct paths per problem and solved fraction at temperature
1, the teacher's Δ̄ with the rollout's own path and with another correct path as sibling, and the wall time.
Exits 1 if ``warm_start.failures`` finds the model unfit (a pass rate outside ``PASS_RATE_BAND``, or a teacher
that does not read its sibling).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rlrt_explore import task
from rlrt_explore.warm_start import ExploreWarmStartConfig, failures, warm_start


def main(argv: list[str] | None = None) -> int:
    defaults = ExploreWarmStartConfig()
    parser = argparse.ArgumentParser(prog="python -m rlrt_explore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--data-dir", default=None, help="also write train.parquet and heldout.parquet here")
    parser.add_argument("--rl-problems", type=int, default=None,
                        help=f"RL problems in train.parquet (default all {task.NUM_RL})")
    parser.add_argument("--repeat", type=int, default=16, help="copies of each of them in train.parquet")
    parser.add_argument("--heldout-problems", type=int, default=None, help="held-out problems in heldout.parquet "
                        f"(default all {task.NUM_HELDOUT})")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--privileged-frac", type=float, default=defaults.privileged_frac)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)

    start = time.time()
    cfg = ExploreWarmStartConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                 privileged_frac=args.privileged_frac, seed=args.seed)
    summary = warm_start(args.out, cfg, log_every=100)
    if args.data_dir:
        task.write_rl_data(args.data_dir, rl_problems=args.rl_problems, repeat=args.repeat,
                           heldout_problems=args.heldout_problems)
    summary["wall_s"] = round(time.time() - start, 1)
    print(json.dumps(summary))
    problems = failures(summary)
    for problem in problems:
        print(f"check failed: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
