"""Side-by-side summary of the toy comparison runs (scripts/compare_methods_cpu.sh) from verl's JSONL logs.

Each run is read with ``rlrt_recipe.report.load_runs`` (all launches, last value per step). For a metric
m and a run, the *final value* is the mean of m over the last ``last`` logged steps (one step's reward on
32 rollouts is noisy); the table gives its mean ± sample std over the seeds of a method (just the mean,
marked "single seed", for one run).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from rlrt_recipe.logs import metric_series
from rlrt_recipe.report import CURVE_METRICS, Steps

#: Panels of the comparison figure: verl's reward, length and entropy, then the teacher signals.
PLOT_METRICS = (
    *CURVE_METRICS,
    "rlrt/delta_mean", "rlrt/delta_abs_mean", "rlrt/w_mean", "rlrt/w_clip_low_frac", "rlrt/w_clip_high_frac",
    "rlrt/lambda", "rlrt/gate_pass_frac", "rlrt/degenerate_group_frac", "rlrt/scored_row_frac",
)
#: Columns of the summary table.
TABLE_METRICS = ("critic/score/mean", "response_length/mean", "actor/entropy", "rlrt/delta_mean", "rlrt/w_mean",
                 "rlrt/degenerate_group_frac")


def final_value(steps: Steps, key: str, last: int) -> float | None:
    """Mean of ``key`` over the last ``last`` steps that logged it (None if it was never logged)."""
    _, values = metric_series(steps, key)
    return statistics.fmean(values[-last:]) if values else None


def summary_markdown(method_runs: dict[str, list[Steps]], metrics: Sequence[str] = TABLE_METRICS,
                     last: int = 3) -> str:
    """Markdown table: one line per method, one column per metric, ``mean ± std`` of the final values."""
    lines = ["| method | runs | first reward | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 3)]
    for method, runs in method_runs.items():
        first = [v for v in (final_value(dict(list(s.items())[:1]), "critic/score/mean", 1) for s in runs) if v is not None]
        cells = [_cell(first)]
        for key in metrics:
            cells.append(_cell([v for v in (final_value(steps, key, last) for steps in runs) if v is not None]))
        lines.append(f"| {method} | {len(runs)} | " + " | ".join(cells) + " |")
    seeds = {len(runs) for runs in method_runs.values()}
    note = "single seed" if seeds == {1} else "mean ± sample std over seeds"
    lines += ["", f"first reward: step 1; other columns: mean over the last {last} steps of each run ({note}); "
              "— = not logged by that method."]
    return "\n".join(lines) + "\n"


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"
