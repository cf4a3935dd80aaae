"""Reproduction table and training curves from verl's file-logger JSONL (no verl import).

A *run* is one experiment's metrics (a directory of launch files or one file, read with
``rlrt_recipe.logs.read_metrics``: all launches, last value per step). Runs are grouped by method; several
runs of one method (seeds) are averaged, with the sample standard deviation (ddof = 1) beside the mean.

Metric names are verl 0.9.1's (``trainer/ppo/metric_utils.py``, ``trainer/ppo/v1/trainer_base.py``):
``critic/score/mean`` (reward), ``response_length/mean``, ``actor/entropy``, and for validation
``val-core/<data_source>/acc/mean@<n>`` (avg@n of the reward's ``acc``); ours are ``rlrt/*``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

from rlrt_recipe.data import EVAL_SOURCES
from rlrt_recipe.logs import metric_series, read_metrics

Steps = dict[int, dict[str, float]]

# Paper numbers, shipped as found, never checked against the paper itself.
PAPER_LABEL = "paper (unverified)"
PAPER_PROVENANCE = (
    "RLRT paper (arXiv 2605.10781), Qwen3-4B-Base, avg@16, as reported by a secondary source "
    "(the paper body was not available to us)"
)
PAPER_AVG16: dict[str, dict[str, float]] = {
    "grpo": {"aime24": 15.0, "aime25": 14.4, "aime26": 12.3},
    "rlsd": {"aime24": 13.3, "aime25": 11.2, "aime26": 9.0},
    "rlrt": {"aime24": 22.5, "aime25": 18.5, "aime26": 19.8},
}
BENCHMARKS: tuple[tuple[str, str], ...] = tuple((s.name, s.label) for s in EVAL_SOURCES)
CURVE_METRICS = ("critic/score/mean", "response_length/mean", "actor/entropy")
CSV_FIELDS = ("method", "source", "benchmark", "data_source", "avg", "std", "runs")


def avg_key(data_source: str, n: int = 16) -> str:
    """verl's validation key for avg@n of ``data_source``."""
    return f"val-core/{data_source}/acc/mean@{n}"


def parse_runs(specs: Sequence[str]) -> dict[str, list[Path]]:
    """``["grpo=logs/grpo_s1", "grpo=logs/grpo_s2", "rlrt=..."]`` -> ``{method: [paths]}``, order kept."""
    runs: dict[str, list[Path]] = {}
    for spec in specs:
        method, sep, path = spec.partition("=")
        if not sep or not method or not path:
            raise ValueError(f"--run expects METHOD=PATH (a metrics .jsonl or a directory of them), got {spec!r}")
        runs.setdefault(method, []).append(Path(path))
    return runs


def load_runs(runs: dict[str, list[str | os.PathLike]]) -> dict[str, list[Steps]]:
    """Read every run: ``{method: [read_metrics(path) per run]}``."""
    return {method: [read_metrics(path) for path in paths] for method, paths in runs.items()}


def last_value(steps: Steps, key: str) -> float | None:
    """The value of ``key`` at the last step that logged it, or None."""
    _, values = metric_series(steps, key)
    return values[-1] if values else None


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def table_rows(method_runs: dict[str, list[Steps]], n: int = 16) -> list[dict[str, object]]:
    """Long-format rows (``CSV_FIELDS``), percent with the paper's scale: ours per method, then the paper's.

    Each method of ours is followed by its paper row when the paper has one; paper-only methods come
    last. ``avg``/``std`` are None where nothing was logged (std also for a single run).
    """
    rows: list[dict[str, object]] = []

    def add(method: str, source: str, per_benchmark: dict[str, tuple[float, float | None, int]]) -> None:
        for data_source, label in BENCHMARKS:
            avg, std, count = per_benchmark.get(data_source, (None, None, 0))
            rows.append(
                {"method": method, "source": source, "benchmark": label, "data_source": data_source,
                 "avg": avg, "std": std, "runs": count}
            )

    def add_paper(method: str) -> None:
        add(method, PAPER_LABEL, {ds: (v, None, 1) for ds, v in PAPER_AVG16[method].items()})

    for method, runs in method_runs.items():
        ours = {}
        for data_source, _ in BENCHMARKS:
            values = [v for v in (last_value(steps, avg_key(data_source, n)) for steps in runs) if v is not None]
            if values:
                mean, std = _mean_std([100.0 * v for v in values])
                ours[data_source] = (mean, std, len(values))
        add(method, "ours", ours)
        if method in PAPER_AVG16:
            add_paper(method)
    for method in PAPER_AVG16:
        if method not in method_runs:
            add_paper(method)
    return rows


def _cell(avg: object, std: object) -> str:
    if avg is None:
        return "—"
    return f"{avg:.1f}" if std is None else f"{avg:.1f} ± {std:.1f}"


def to_markdown(rows: list[dict[str, object]], n: int = 16) -> str:
    """Wide markdown table: one line per (method, source), one column per benchmark, and the provenance."""
    header = ["method", "source", *(label for _, label in BENCHMARKS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = list(dict.fromkeys((r["method"], r["source"]) for r in rows))
    for method, source in keys:
        cells = {r["data_source"]: _cell(r["avg"], r["std"]) for r in rows if (r["method"], r["source"]) == (method, source)}
        lines.append("| " + " | ".join([str(method), str(source), *(cells[ds] for ds, _ in BENCHMARKS)]) + " |")
    lines += [
        "",
        f"avg@{n} in percent (`val-core/<data_source>/acc/mean@{n}`, last logged value; mean ± sample std over runs).",
        f"{PAPER_LABEL}: {PAPER_PROVENANCE}.",
    ]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, object]]) -> str:
    """Long-format CSV (``CSV_FIELDS``); missing values are empty cells."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_FIELDS})
    return out.getvalue()


def curve_metrics(method_runs: dict[str, list[Steps]], extra: Sequence[str] = ()) -> list[str]:
    """Reward, response length, entropy, then ``extra``, then every ``rlrt/*`` key any run logged (sorted)."""
    logged = {key for runs in method_runs.values() for steps in runs for data in steps.values() for key in data}
    ours = sorted(key for key in logged if key.startswith("rlrt/"))
    return list(dict.fromkeys([*CURVE_METRICS, *extra, *ours]))


def mean_curve(runs: list[Steps], key: str) -> tuple[list[int], list[float], list[float]]:
    """Steps where any run logged ``key``; the mean over the runs that did, and the sample std (0 for one)."""
    by_step: dict[int, list[float]] = {}
    for steps in runs:
        for step, value in zip(*metric_series(steps, key)):
            by_step.setdefault(step, []).append(value)
    xs = sorted(by_step)
    means = [statistics.fmean(by_step[x]) for x in xs]
    stds = [statistics.stdev(by_step[x]) if len(by_step[x]) > 1 else 0.0 for x in xs]
    return xs, means, stds


def plot_curves(method_runs: dict[str, list[Steps]], metrics: Sequence[str] | None = None, ncols: int = 3):
    """One panel per metric, one line per method that logged it (mean over runs, ± std band for several).

    A method keeps one colour in every panel, so a method that logs no ``rlrt/*`` (grpo) does not shift the
    others' colours in those panels.

    Returns the matplotlib ``Figure``. It is built without pyplot (no global figure registry, no display
    needed), so ``fig.savefig("x.png")`` renders with Agg whatever backend the caller has.
    """
    from matplotlib.figure import Figure

    metrics = list(metrics) if metrics is not None else curve_metrics(method_runs)
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig = Figure(figsize=(5 * ncols, 3.5 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = {method: f"C{k}" for k, method in enumerate(method_runs)}
    for ax, metric in zip(axes.flat, metrics):
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
        for method, runs in method_runs.items():
            xs, means, stds = mean_curve(runs, metric)
            if not xs:
                continue
            ax.plot(xs, means, label=method, color=colours[method])
            if len(runs) > 1:
                low = [m - s for m, s in zip(means, stds)]
                high = [m + s for m, s in zip(means, stds)]
                ax.fill_between(xs, low, high, color=colours[method], alpha=0.2, linewidth=0)
        if ax.get_lines():
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
