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
from rlrt_toy.warm_start import add_warm_start_arguments, config_from_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlrt_explore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_warm_start_arguments(parser, ExploreWarmStartConfig())
    parser.add_argument("--rl-problems", type=int, default=None,
                        help=f"RL problems in train.parquet (default all {task.NUM_RL})")
    parser.add_argument("--heldout-problems", type=int, default=None, help="held-out problems in heldout.parquet "
                        f"(default all {task.NUM_HELDOUT})")
    args = parser.parse_args(argv)

    start = time.time()
    cfg = config_from_arguments(ExploreWarmStartConfig, args)
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
