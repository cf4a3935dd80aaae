"""The exploration comparison's report: per method, over seeds, the training reward curve, held-out pass@k and the
distinct correct paths per problem, each with a 95 % Student-t interval across seeds (``analysis.t_interval``).

Each run is ``--run METHOD=DIR`` (one per seed and method), DIR holding the launch's metrics JSONL (verl's file
logger, ``critic/score/mean`` per step) and ``val/<step>.jsonl``, verl's validation dump of the last step
(``trainer.validation_data_dir=DIR/val``: every held-out problem sampled n times at temperature 1). A problem is
its prompt text (the dump's ``input``); a sample is correct when its ``score`` is 1.

Figures (``--out`` prefix): ``.json`` (every number), ``_paired.json`` (each method's paired difference from GRPO,
seed by seed: ``paired_differences``), ``.md`` (both tables), ``_reward.png`` (claim 2, RLSD learns
faster early: reward per step as each seed's trailing mean over ``SMOOTH_STEPS``, mean and interval band, and
where λ reaches 0), ``_pass_at_k.png`` (claim 1, RLRT keeps exploring:
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
SMOOTH_STEPS = 5  # the reward figure's curve: each seed's trailing mean over 5 steps (ours: 32 rollouts a step swing ±0.3)
LAMBDA = "rlrt/lambda"


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
    lambdas = {step: data[LAMBDA] for step, data in sorted(metrics.items()) if LAMBDA in data}
    return {
        "reward": reward,
        "reward_smoothed": {step: statistics.fmean(reward[s] for s in steps[max(0, i + 1 - SMOOTH_STEPS):i + 1])
                            for i, step in enumerate(steps)},
        # the first step whose λ is 0 after a step with λ > 0 (a decaying schedule: RLSD's here), None if it never is
        "lambda_zero_from": next((step for step, value in lambdas.items() if value == 0.0
                                  and any(v > 0.0 for s, v in lambdas.items() if s < step)), None),
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
            "reward_smoothed": {step: interval([s["reward_smoothed"][step] for s in seeds]) for step in steps},
            "lambda_zero_from": seeds[0]["lambda_zero_from"],
            "early_reward": interval([s["early_reward"] for s in seeds]),
            "final_reward": interval([s["final_reward"] for s in seeds]),
            "pass_at_k": {k: interval([s["pass_at_k"][k] for s in seeds]) for k in ks},
            "distinct_correct_paths": interval([s["distinct_correct_paths"] for s in seeds]),
        }
    return summary


def scalar_figures(figures: dict[str, Any]) -> dict[str, float]:
    """The figures of one run that the table compares: early and final reward, pass@k per k, distinct paths."""
    return {"early_reward": figures["early_reward"], "final_reward": figures["final_reward"],
            **{f"pass@{k}": value for k, value in figures["pass_at_k"].items()},
            "distinct_correct_paths": figures["distinct_correct_paths"]}


def paired_differences(runs: Sequence[tuple[str, str]], baseline: str = "grpo") -> dict[str, Any]:
    """Per method other than ``baseline``: (method − baseline) of every ``scalar_figures`` figure, seed by seed, as
    mean and 95 % interval across the seeds both ran (a paired t-interval). Runs pair by their directory's name
    (``seed<N>``: the same data order and sampling seed; CPU rollouts still differ between launches), so what a
    seed's runs share cancels, and a difference's interval is narrower than the two methods' own intervals
    suggest when the paired runs are positively correlated."""
    by_seed: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for method, run_dir in runs:
        seed = os.path.basename(os.path.normpath(run_dir))
        if seed in by_seed[method]:
            raise ValueError(f"{run_dir}: a second {method} run named {seed!r}; runs pair by directory name")
        by_seed[method][seed] = scalar_figures(seed_figures(run_dir))
    if baseline not in by_seed:
        return {}
    out = {}
    for method, seeds in by_seed.items():
        shared = sorted(set(seeds) & set(by_seed[baseline]))
        if method == baseline or not shared:
            continue
        keys = sorted(set.intersection(*(set(seeds[s]) & set(by_seed[baseline][s]) for s in shared)))
        out[method] = {key: interval([seeds[s][key] - by_seed[baseline][s][key] for s in shared]) for key in keys}
    return out


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


def differences_table(differences: dict[str, Any], n: int, baseline: str = "grpo") -> str:
    """Markdown: per method, its paired difference from ``baseline`` in the table's figures."""
    named = {"early_reward": "early reward", "final_reward": "final reward", "pass@1": "pass@1", "pass@8": "pass@8",
             f"pass@{n}": f"pass@{n}", "distinct_correct_paths": "distinct correct paths"}  # n = 8: one pass@8
    columns, names = list(named), list(named.values())
    lines = [f"| method − {baseline} (paired by seed) | seeds | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(columns)]
    for method, d in differences.items():
        seeds = next(iter(d.values()))["seeds"]
        lines.append(f"| {method} | {seeds} | " + " | ".join(cell(d[c]) if c in d else "—" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], prefix: str, differences: dict[str, Any] | None = None,
         baseline: str = "grpo") -> list[str]:
    """The two figures, one per claim; the pass@k figure gets a second panel with each method's paired difference
    from ``baseline`` per k (``paired_differences``) when there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    color = {method: f"C{i}" for i, method in enumerate(summary)}  # a method's colour in both panels

    def draw(ax, curves: dict[str, dict], label: dict[str, str], marker: str | None) -> None:
        for method, curve in curves.items():
            xs = sorted(curve)
            ax.plot(xs, [curve[x]["mean"] for x in xs], label=label[method], marker=marker, color=color[method])
            if all(curve[x]["seeds"] >= 2 for x in xs):
                ax.fill_between(xs, [curve[x]["low"] for x in xs], [curve[x]["high"] for x in xs],
                                color=color[method], alpha=0.2)
        ax.legend()
        ax.grid(alpha=0.3)

    label = {method: f"{method} ({s['seeds']} seeds)" for method, s in summary.items()}
    written = []
    for name, key, xlabel, ylabel in (("reward", "reward_smoothed", "training step",
                                       f"training reward (trailing mean of {SMOOTH_STEPS} steps)"),
                                      ("pass_at_k", "pass_at_k", "k", "held-out pass@k")):
        paired = {method: {int(k.split("@")[1]): v for k, v in d.items() if k.startswith("pass@")}
                  for method, d in (differences or {}).items()} if key == "pass_at_k" else {}
        fig, axes = plt.subplots(1, 2 if paired else 1, figsize=(11 if paired else 6, 4), squeeze=False)
        marker = "o" if key == "pass_at_k" else None
        draw(axes[0][0], {method: s[key] for method, s in summary.items()}, label, marker)
        axes[0][0].set(xlabel=xlabel, ylabel=ylabel)
        for method, figures in summary.items():
            if key == "reward_smoothed" and figures["lambda_zero_from"] is not None:
                axes[0][0].axvline(figures["lambda_zero_from"], color=color[method], linestyle=":",
                                   label=f"{method}: λ = 0 from step {figures['lambda_zero_from']}")
                axes[0][0].legend()
        if paired:
            draw(axes[0][1], paired, {m: f"{m} − {baseline}" for m in paired}, marker)
            axes[0][1].axhline(0.0, color="black", linewidth=0.8)
            axes[0][1].set(xlabel=xlabel, ylabel=f"pass@k − {baseline}'s (paired by seed)")
        if key == "pass_at_k":
            for ax in axes[0]:
                ax.set_xscale("log", base=2)
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
    differences = paired_differences(runs)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(f"{args.out}.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1, default=str)
    with open(f"{args.out}_paired.json", "w", encoding="utf-8") as fh:
        json.dump(differences, fh, indent=1)
    markdown = table(summary)
    if differences:
        markdown += "\n" + differences_table(differences, next(iter(summary.values()))["n"])
    with open(f"{args.out}.md", "w", encoding="utf-8") as fh:
        fh.write(markdown)
    written = plot(summary, args.out, differences)
    print(markdown)
    print("wrote", f"{args.out}.json", f"{args.out}_paired.json", f"{args.out}.md", *written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
