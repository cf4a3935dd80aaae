"""The exploration comparison's report: per method, over seeds, the training reward curve, held-out pass@k and the
distinct correct paths per problem, each with a 95 % Student-t interval across seeds (``analysis.t_interval``).

Each run is ``--run METHOD=DIR`` (one per seed and method), DIR holding the launch's metrics JSONL (verl's file
logger, ``critic/score/mean`` per step) and ``val/<step>.jsonl``, verl's validation dump of the last step
(``trainer.validation_data_dir=DIR/val``: every held-out problem sampled n times at temperature 1). A problem is
its prompt text (the dump's ``input``); a sample is correct when its ``score`` is 1.

Figures (``--out`` prefix): ``.json`` (every number), ``.md`` (the table), ``_reward.png`` (claim 2, RLSD learns
faster early: reward per step, mean and interval band), ``_pass_at_k.png`` (claim 1, RLRT keeps exploring:
held-out pass@k for k = 1 … n, log-scaled k).

    python examples/rlrt_explore/report.py --run grpo=artifacts/explore/runs/grpo/seed1 ... --out artifacts/explore/summary
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # examples/ for rlrt_explore

from rlrt_explore import analysis  # noqa: E402
from rlrt_recipe.evaluation import read_dump  # noqa: E402
from rlrt_recipe.logs import read_metrics  # noqa: E402

REWARD = "critic/score/mean"
EARLY_STEPS = 10  # "early": the mean training reward over steps 1 … 10 (RLSD Fig. 1's claim, at our scale)


def ks_up_to(n: int) -> list[int]:
    """1, 2, 4, … up to n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def seed_figures(run_dir: str) -> dict[str, Any]:
    """One run's figures: reward per step, the early and final reward, pass@k per k, distinct correct paths."""
    metrics = read_metrics(run_dir)
    reward = {step: data[REWARD] for step, data in sorted(metrics.items()) if REWARD in data}
    if not reward:
        raise ValueError(f"{run_dir}: no {REWARD} in the launch metrics")
    samples = read_dump(os.path.join(run_dir, "val"))
    records = [(s["input"], s["output"], float(s["score"]) >= 1.0) for s in samples]
    counts = analysis.correct_counts(records)
    n_values = {n for n, _ in counts.values()}
    if len(n_values) != 1:
        raise ValueError(f"{run_dir}/val: problems were sampled {sorted(n_values)} times; pass@k needs one n")
    n = n_values.pop()
    ks = ks_up_to(n)
    distinct = analysis.distinct_correct_paths(records)
    steps = sorted(reward)
    last = steps[-min(3, len(steps)):]
    return {
        "reward": reward,
        "early_reward": statistics.fmean(reward[s] for s in steps[:EARLY_STEPS]),
        "final_reward": statistics.fmean(reward[s] for s in last),
        "n": n,
        "problems": len(counts),
        "pass_at_k": dict(zip(ks, analysis.mean_pass_at_k(list(counts.values()), ks))),
        "distinct_correct_paths": statistics.fmean(distinct.values()),
    }


def interval(values: Sequence[float]) -> dict[str, float]:
    """mean and the 95 % interval across seeds (the mean alone for one seed)."""
    if len(values) < 2:
        return {"mean": float(values[0]), "low": float("nan"), "high": float("nan"), "seeds": len(values)}
    mean, low, high = analysis.t_interval(values)
    return {"mean": mean, "low": low, "high": high, "seeds": len(values)}


def summarize(runs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Per method: every figure of ``seed_figures`` as mean and interval across its seeds."""
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for method, run_dir in runs:
        by_method[method].append(seed_figures(run_dir))
    summary = {}
    for method, seeds in by_method.items():
        steps = sorted(set.intersection(*(set(s["reward"]) for s in seeds)))
        ks = sorted(set.intersection(*(set(s["pass_at_k"]) for s in seeds)))
        summary[method] = {
            "seeds": len(seeds),
            "n": seeds[0]["n"],
            "problems": seeds[0]["problems"],
            "reward": {step: interval([s["reward"][step] for s in seeds]) for step in steps},
            "early_reward": interval([s["early_reward"] for s in seeds]),
            "final_reward": interval([s["final_reward"] for s in seeds]),
            "pass_at_k": {k: interval([s["pass_at_k"][k] for s in seeds]) for k in ks},
            "distinct_correct_paths": interval([s["distinct_correct_paths"] for s in seeds]),
        }
    return summary


def cell(value: dict[str, float], scale: float = 1.0, digits: int = 3) -> str:
    if value["seeds"] < 2:
        return f"{value['mean'] * scale:.{digits}f}"
    return (f"{value['mean'] * scale:.{digits}f} [{value['low'] * scale:.{digits}f}, "
            f"{value['high'] * scale:.{digits}f}]")


def table(summary: dict[str, Any]) -> str:
    """Markdown: per method the early and final reward, pass@1, pass@8, pass@n and distinct correct paths."""
    lines = ["| method | seeds | early reward (steps 1–10) | final reward | pass@1 | pass@8 | pass@n | "
             "distinct correct paths |", "|---|---|---|---|---|---|---|---|"]
    for method, s in summary.items():
        n = s["n"]
        p = s["pass_at_k"]
        pass_8 = cell(p[8]) if 8 in p else "—"
        lines.append(f"| {method} | {s['seeds']} | {cell(s['early_reward'])} | {cell(s['final_reward'])} | "
                     f"{cell(p[1])} | {pass_8} | {cell(p[n])} (n = {n}) | {cell(s['distinct_correct_paths'], digits=2)} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], prefix: str) -> list[str]:
    """The two figures, one per claim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, key, xlabel, ylabel in (("reward", "reward", "training step", "training reward (mean score)"),
                                      ("pass_at_k", "pass_at_k", "k", "held-out pass@k")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for method, s in summary.items():
            xs = sorted(s[key])
            means = [s[key][x]["mean"] for x in xs]
            line, = ax.plot(xs, means, label=f"{method} ({s['seeds']} seeds)", marker="o" if key == "pass_at_k" else None)
            if s["seeds"] >= 2:
                ax.fill_between(xs, [s[key][x]["low"] for x in xs], [s[key][x]["high"] for x in xs],
                                color=line.get_color(), alpha=0.2)
        if key == "pass_at_k":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = f"{prefix}_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="METHOD=DIR",
                        help="one seed's run directory of a method (repeat per seed and method)")
    parser.add_argument("--out", required=True, help="prefix of the .json, .md and .png files")
    args = parser.parse_args(argv)
    runs = []
    for item in args.run:
        method, sep, run_dir = item.partition("=")
        if not sep or not method or not run_dir:
            parser.error(f"--run {item!r}: expected METHOD=DIR")
        runs.append((method, run_dir))
    summary = summarize(runs)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(f"{args.out}.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1, default=str)
    markdown = table(summary)
    with open(f"{args.out}.md", "w", encoding="utf-8") as fh:
        fh.write(markdown)
    written = plot(summary, args.out)
    print(markdown)
    print("wrote", f"{args.out}.json", f"{args.out}.md", *written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
