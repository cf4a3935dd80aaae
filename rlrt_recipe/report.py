"""Reproduction table and training curves from verl's file-logger JSONL (no verl import).

A *run* is one experiment's metrics (a directory of launch files or one file, read with
``rlrt_recipe.logs.read_metrics``: all launches, last value per step). Runs are grouped by method; several
runs of one method (seeds) are averaged, with the sample standard deviation (ddof = 1) beside the mean.

Metric names are verl 0.9.1's (``trainer/ppo/metric_utils.py``, ``trainer/ppo/v1/trainer_base.py``):
``critic/score/mean`` (reward), ``response_length/mean``, ``actor/entropy``, and for validation
``val-core/<data_source>/acc/mean@<n>`` (avg@n of the reward's ``acc``); ours are ``rlrt/*``. verl logs no
pass@k: a run directory may hold a ``pass_at_k.json`` (``PASS_AT_K_FILE``) computed from the dumped samples.

The table sets ours beside one paper's published table (``PAPERS``, ``make_table.py --paper``): the RLRT paper's
Tables 1/3 ("avg@16 / pass@16" per benchmark, the six-benchmark mean, RLRT's relative gain over the best baseline) or
the RLSD paper's Table 2 (accuracy per benchmark, the five-benchmark average, RLSD's gain in points over the best
baseline and over the base model).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rlrt_recipe.logs import metric_series, read_metrics

Steps = dict[int, dict[str, float]]
# {backbone: {method: {data_source: (avg, pass@n or None)}}} in percent
PaperRows = Mapping[str, Mapping[str, Mapping[str, tuple[float, float | None]]]]

PAPER_LABEL = "paper"
PAPER_CITATION = "RLRT (arXiv 2605.10781) Table 1 (avg@16) / Table 3 (pass@16)"
BASE_MODEL = "base_model"  # the untrained backbone: a row of the tables, never a baseline
# Our backbone recipe name -> the paper's row label.
PAPER_BACKBONES = {
    "qwen3_4b_base": "Qwen3-4B-Base",
    "qwen3_8b_base": "Qwen3-8B-Base",
    "qwen3_4b_instruct_2507": "Qwen3-4B-Instruct-2507",
    "qwen3_8b": "Qwen3-8B (thinking off)",
}
DEFAULT_BACKBONE = "qwen3_4b_base"
# RLRT Tables 1/3, left to right: (our data_source, the column the paper prints)
BENCHMARKS: tuple[tuple[str, str], ...] = (
    ("aime24", "AIME24"), ("aime25", "AIME25"), ("aime26", "AIME26"), ("hmmt26_feb", "HMMT26 Feb"),
    ("amc23", "AMC23"), ("math500", "MATH500"),
)


def _paper_row(*cells: tuple[float, float]) -> dict[str, tuple[float, float]]:
    return dict(zip((data_source for data_source, _ in BENCHMARKS), cells, strict=True))


# {backbone: {method: {data_source: (avg@16, pass@16)}}} in percent, rows in the paper's order; SDPO and SRPO
# were not run on the base backbones (they collapse there).
PAPER_TABLES: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "qwen3_4b_base": {
        "base_model": _paper_row((9.6, 33.3), (6.9, 30.0), (6.5, 16.7), (3.6, 24.2), (43.3, 90.0), (66.8, 92.2)),
        "grpo": _paper_row((15.0, 40.0), (14.4, 33.3), (12.3, 36.7), (10.0, 27.3), (58.3, 87.5), (80.2, 94.2)),
        "rlsd": _paper_row((13.3, 40.0), (11.2, 33.3), (9.0, 26.7), (6.2, 27.3), (55.2, 82.5), (77.9, 91.2)),
        "rlrt": _paper_row((22.5, 50.0), (18.5, 36.7), (19.8, 40.0), (15.9, 33.3), (63.9, 95.0), (83.8, 94.2)),
    },
    "qwen3_8b_base": {
        "base_model": _paper_row((10.4, 33.3), (10.2, 30.3), (9.8, 30.0), (5.3, 30.3), (56.3, 85.0), (74.4, 93.0)),
        "grpo": _paper_row((19.8, 40.0), (17.5, 36.7), (16.5, 36.7), (11.0, 33.3), (62.5, 90.0), (83.6, 95.4)),
        "rlsd": _paper_row((17.3, 40.0), (15.0, 33.3), (13.5, 36.7), (8.1, 27.3), (64.2, 87.5), (80.9, 92.4)),
        "rlrt": _paper_row((27.9, 63.3), (18.8, 50.0), (21.9, 53.3), (15.9, 33.3), (67.3, 97.5), (84.4, 95.6)),
    },
    "qwen3_4b_instruct_2507": {
        "base_model": _paper_row((64.4, 86.7), (47.3, 76.7), (54.0, 83.3), (36.4, 57.6), (94.7, 100.0), (94.1, 97.8)),
        "grpo": _paper_row((69.4, 93.3), (58.3, 80.0), (62.7, 83.3), (37.9, 60.6), (96.2, 100.0), (94.4, 97.8)),
        "sdpo": _paper_row((53.1, 83.3), (37.1, 70.0), (42.9, 73.3), (31.6, 45.5), (89.1, 100.0), (91.8, 97.4)),
        "rlsd": _paper_row((61.5, 90.0), (51.9, 76.7), (58.1, 83.3), (37.1, 51.5), (93.1, 97.5), (94.3, 97.2)),
        "rlrt": _paper_row((70.4, 90.0), (62.9, 83.3), (67.9, 83.3), (40.2, 66.7), (97.0, 100.0), (94.8, 97.8)),
    },
    "qwen3_8b": {
        "base_model": _paper_row((25.2, 63.3), (20.0, 43.3), (15.4, 50.0), (20.3, 33.3), (67.0, 95.0), (83.7, 95.8)),
        "grpo": _paper_row((70.2, 86.7), (59.4, 83.3), (62.9, 86.7), (41.7, 66.7), (93.6, 100.0), (94.8, 98.2)),
        "sdpo": _paper_row((26.9, 63.3), (22.3, 40.0), (14.4, 36.7), (18.6, 30.3), (72.8, 95.0), (82.2, 94.4)),
        "srpo": _paper_row((15.4, 26.7), (9.8, 26.7), (8.3, 26.7), (9.7, 21.2), (49.2, 77.5), (75.0, 90.2)),
        "rlsd": _paper_row((65.4, 83.3), (57.9, 83.3), (57.7, 83.3), (39.2, 51.5), (93.6, 100.0), (93.1, 98.2)),
        "rlrt": _paper_row((70.6, 93.3), (62.9, 86.7), (65.0, 86.7), (43.2, 69.7), (95.5, 100.0), (94.9, 98.2)),
    },
}
# RLSD Table 2 (arXiv 2604.03128, Sec. 5.2.1), left to right: (our data_source, the column the paper prints)
RLSD_BENCHMARKS: tuple[tuple[str, str], ...] = (
    ("mmmu", "MMMU"), ("mathvista", "MathVista"), ("mathvision", "MathVision"), ("zerobench", "ZeroBench"),
    ("wemath", "WeMath"),
)


def _rlsd_row(*accuracy: float) -> dict[str, tuple[float, None]]:
    return {data_source: (value, None) for (data_source, _), value in zip(RLSD_BENCHMARKS, accuracy, strict=True)}


# {backbone: {method: {data_source: (accuracy, None)}}} in percent, rows in the paper's order ("Base LLM" is our
# base_model, "GRPO+OPSD" our grpo_opsd_loss); one number per cell, as the paper reports.
RLSD_TABLE_2: dict[str, dict[str, dict[str, tuple[float, None]]]] = {
    "qwen3_vl_8b_instruct": {
        "base_model": _rlsd_row(62.44, 73.80, 47.37, 19.76, 54.10),
        "grpo": _rlsd_row(65.11, 76.20, 48.82, 22.60, 56.57),
        "opsd": _rlsd_row(63.82, 75.10, 47.53, 21.06, 54.95),
        "sdpo": _rlsd_row(65.11, 74.00, 47.27, 25.15, 52.19),
        "grpo_opsd_loss": _rlsd_row(63.22, 75.90, 48.52, 22.16, 54.76),
        "rlsd": _rlsd_row(67.22, 78.10, 52.73, 24.85, 58.00),
    },
}


@dataclass(frozen=True)
class Paper:
    """One paper's published table and how ours is set beside it (``make_table.py --paper <name>``).

    ``rows`` are ``{backbone: {method: {data_source: (avg, pass@n or None)}}}`` in percent; ``backbones`` map our
    backbone recipe names to the paper's labels (the first is the default). ``n`` is our evaluation's samples per
    problem (``val-core/<data_source>/acc/mean@n``); ``with_pass`` adds pass@n to every cell, as RLRT Tables 1/3 do.
    ``method`` is the paper's own method, compared with the best trained baseline as a ``"relative"`` gain in percent
    (RLRT's headline) or in ``"points"`` of accuracy, also over the base model (RLSD's headline).
    """

    name: str
    citation: str
    benchmarks: tuple[tuple[str, str], ...]
    rows: PaperRows
    backbones: Mapping[str, str]
    n: int
    with_pass: bool
    method: str
    mean_label: str
    gain: str
    decimals: int

    @property
    def default_backbone(self) -> str:
        return next(iter(self.backbones))


PAPERS: dict[str, Paper] = {
    "rlrt": Paper(
        name="rlrt", citation=PAPER_CITATION, benchmarks=BENCHMARKS, rows=PAPER_TABLES, backbones=PAPER_BACKBONES,
        n=16, with_pass=True, method="rlrt", mean_label="mean", gain="relative", decimals=1,
    ),
    "rlsd": Paper(
        name="rlsd", citation="RLSD (arXiv 2604.03128) Table 2 (accuracy)", benchmarks=RLSD_BENCHMARKS,
        rows=RLSD_TABLE_2, backbones={"qwen3_vl_8b_instruct": "Qwen3-VL-8B-Instruct"},
        n=1,  # ours: one sample per problem (the paper states accuracy only; docs/reproduce.md)
        with_pass=False, method="rlsd", mean_label="avg", gain="points", decimals=2,
    ),
}
DEFAULT_PAPER = "rlrt"
# data_source -> the column label any paper prints
_LABELS = {data_source: label for paper in PAPERS.values() for data_source, label in paper.benchmarks}
CURVE_METRICS = ("critic/score/mean", "response_length/mean", "actor/entropy")
CSV_FIELDS = ("method", "source", "benchmark", "data_source", "avg", "std", "runs", "pass", "pass_std", "pass_runs")
PASS_AT_K_FILE = "pass_at_k.json"


def avg_key(data_source: str, n: int = 16) -> str:
    """verl's validation key for avg@n of ``data_source``."""
    return f"val-core/{data_source}/acc/mean@{n}"


def get_paper(paper: str) -> Paper:
    """The ``PAPERS`` entry ``paper`` ("rlrt" or "rlsd"); an unknown name is an error naming the known ones."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}: the tables are {', '.join(PAPERS)}")
    return PAPERS[paper]


def _check_backbone(backbone: str, paper: Paper) -> None:
    if backbone not in paper.rows:
        raise ValueError(f"unknown backbone {backbone!r}: the {paper.name} paper's tables have {', '.join(paper.rows)}")


def paper_table(backbone: str, paper: str = DEFAULT_PAPER) -> Mapping[str, Mapping[str, tuple[float, float | None]]]:
    """A paper's rows for one backbone (our recipe name): ``{method: {data_source: (avg, pass@n or None)}}``."""
    table = get_paper(paper)
    _check_backbone(backbone, table)
    return table.rows[backbone]


def paper_backbone_label(backbone: str, paper: str = DEFAULT_PAPER) -> str:
    """The paper's name of one backbone (our recipe name), e.g. ``Qwen3-8B (thinking off)``."""
    table = get_paper(paper)
    _check_backbone(backbone, table)
    return table.backbones[backbone]


def benchmark_mean(cells: Mapping[str, float | None], benchmarks: Sequence[tuple[str, str]]) -> float | None:
    """The mean of ``cells`` (``{data_source: value}``) over ``benchmarks`` (``(data_source, label)``, a paper's
    columns); None if any is missing: the papers average every benchmark of their table."""
    values = [cells.get(data_source) for data_source, _ in benchmarks]
    if any(v is None for v in values):
        return None
    return statistics.fmean(values)


def six_benchmark_mean(cells: Mapping[str, float | None]) -> float | None:
    """The mean over the six benchmarks of RLRT Table 1 (``{data_source: value}``); None if any is missing."""
    return benchmark_mean(cells, BENCHMARKS)


def relative_gain(method_mean: float, baseline_mean: float) -> float:
    """Relative gain in percent: 100 · (m − b) / b."""
    if baseline_mean <= 0:
        raise ValueError(f"relative gain needs a positive baseline mean, got {baseline_mean}")
    return 100.0 * (method_mean - baseline_mean) / baseline_mean


def trained_baselines(methods: Iterable[str], method: str = "rlrt") -> list[str]:
    """The methods ``method`` is compared with: every other one but the untrained ``BASE_MODEL`` and ``method``'s own
    variants (``<method>_*``: the ablations and ε_w sweep runs of reproduce_rlrt_table.sh)."""
    return [m for m in methods if m not in (method, BASE_MODEL) and not m.startswith(f"{method}_")]


def gain_over_best_baseline(
    means: Mapping[str, float | None], method: str = "rlrt", baselines: Iterable[str] | None = None,
    unit: str = "relative",
) -> tuple[str, float] | None:
    """``(best baseline, gain)`` of ``method``'s mean over the highest baseline mean: ``unit="relative"``, in percent
    of the baseline's mean (RLRT's headline form), or ``"points"``, the difference of the two means (RLSD's).

    ``baselines`` default to every method of ``means`` except ``method`` and ``BASE_MODEL``: the RLRT paper's
    headline gains (+18.0 / +12.0 / +3.4 / +2.2 %) are over its best *trained* baseline (GRPO on every backbone), as
    is RLSD's +2.32 points (Sec. 5.2.1). Baselines without a mean are left out; None when ``method`` or every baseline
    has none.
    """
    if unit not in ("relative", "points"):
        raise ValueError(f"unit must be 'relative' or 'points', got {unit!r}")
    if baselines is None:
        baselines = trained_baselines(means, method)
    candidates = {b: means[b] for b in baselines if means.get(b) is not None}
    if means.get(method) is None or not candidates:
        return None
    best = max(candidates, key=candidates.__getitem__)
    if unit == "points":
        return best, means[method] - candidates[best]
    return best, relative_gain(means[method], candidates[best])


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


def read_pass_at_k(run: str | os.PathLike, k: int = 16) -> dict[str, float]:
    """``{data_source: pass@k}`` (fractions) from ``<run>/pass_at_k.json``; empty if ``run`` is not a directory
    holding one. Schema: ``{"n": n, "benchmarks": {data_source: {"problems": P, "samples_per_problem": n,
    "avg": float, "pass@k": {"16": float, ...}}}, "dump": path}``; a benchmark without pass@k is left out."""
    path = Path(run) / PASS_AT_K_FILE
    if not path.is_file():
        return {}
    expected = f'expected {{"benchmarks": {{data_source: {{"pass@k": {{"{k}": fraction}}}}}}}}'
    try:
        benchmarks = json.loads(path.read_text(encoding="utf-8"))["benchmarks"]
        values = {ds: entry["pass@k"].get(str(k)) for ds, entry in benchmarks.items()}
        found = {ds: float(v) for ds, v in values.items() if v is not None}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a pass@k file ({err!r}); {expected}") from err
    for data_source, value in found.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{path}: {data_source} pass@{k} is {value}, expected a fraction in [0, 1]")
    return found


def read_pass_at_k_curves(run: str | os.PathLike) -> dict[str, dict[int, float]]:
    """``{data_source: {k: pass@k}}`` (fractions, every k the file holds, ascending) from ``<run>/pass_at_k.json``
    (``read_pass_at_k``'s schema; written with ``--curve`` for every k from 1 to n); an error if there is none."""
    path = Path(run) / PASS_AT_K_FILE
    if not path.is_file():
        raise ValueError(f"no {PASS_AT_K_FILE} in {run}: run scripts/evaluate.sh (CURVE=1) on it first")
    ks = sorted({int(k) for entry in json.loads(path.read_text(encoding="utf-8"))["benchmarks"].values()
                 for k in entry["pass@k"]})
    by_k = {k: read_pass_at_k(run, k) for k in ks}
    sources = sorted({ds for values in by_k.values() for ds in values})
    return {ds: {k: by_k[k][ds] for k in ks if ds in by_k[k]} for ds in sources}


def plot_pass_at_k(curves: Mapping[str, Mapping[str, Mapping[int, float]]]):
    """The RLRT paper's Fig. 8: one panel per benchmark, pass@k (percent) against k on a log₂ axis, one line per
    method; ``curves`` is ``{method: read_pass_at_k_curves(run)}``. Returns the matplotlib ``Figure``."""
    from matplotlib.figure import Figure

    sources = list(dict.fromkeys(ds for per_method in curves.values() for ds in per_method))
    fig = Figure(figsize=(5 * max(1, len(sources)), 3.8))
    axes = fig.subplots(1, max(1, len(sources)), squeeze=False)[0]
    for ax, data_source in zip(axes, sources):
        for k, (method, per_method) in enumerate(curves.items()):
            points = sorted(per_method.get(data_source, {}).items())
            if points:
                ax.plot([x for x, _ in points], [100.0 * y for _, y in points], label=method, color=f"C{k}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (%)")
        ax.set_title(_LABELS.get(data_source, data_source), fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def load_pass_at_k(runs: dict[str, list[str | os.PathLike]], k: int = 16) -> dict[str, list[dict[str, float]]]:
    """Every run's pass@k: ``{method: [read_pass_at_k(path, k) per run]}``, aligned with ``load_runs``."""
    return {method: [read_pass_at_k(path, k) for path in paths] for method, paths in runs.items()}


def last_value(steps: Steps, key: str) -> float | None:
    """The value of ``key`` at the last step that logged it, or None."""
    _, values = metric_series(steps, key)
    return values[-1] if values else None


def _percent_stats(values: list[float]) -> tuple[float | None, float | None, int]:
    """Fractions -> (mean, sample std or None for one value, count), in percent; (None, None, 0) if empty."""
    if not values:
        return None, None, 0
    percent = [100.0 * v for v in values]
    return statistics.fmean(percent), statistics.stdev(percent) if len(percent) > 1 else None, len(percent)


def table_rows(
    method_runs: dict[str, list[Steps]],
    n: int | None = None,
    backbone: str | None = None,
    method_pass: dict[str, list[dict[str, float]]] | None = None,
    paper: str = DEFAULT_PAPER,
) -> list[dict[str, object]]:
    """Long-format rows (``CSV_FIELDS``), percent with the paper's scale: ours per method, then the paper's.

    ``paper`` picks the published table (``PAPERS``) and its benchmarks; ``n`` defaults to its evaluation's samples
    per problem and ``backbone`` to its first backbone. Ours: avg@n from ``val-core/<data_source>/acc/mean@n`` (last
    logged value), pass@n from ``method_pass`` (``load_pass_at_k``; only for a paper that reports pass@n). Each method
    of ours is followed by its paper row when the paper has one; paper-only methods come last, in the paper's order.
    Values are None where nothing was logged (std also for a single run).
    """
    table = get_paper(paper)
    n = table.n if n is None else n
    published = paper_table(table.default_backbone if backbone is None else backbone, paper)
    method_pass = (method_pass or {}) if table.with_pass else {}
    rows: list[dict[str, object]] = []

    def add(method: str, source: str, cells: dict[str, tuple[tuple[float | None, float | None, int], ...]]) -> None:
        for data_source, label in table.benchmarks:
            (avg, std, count), (pass_, pass_std, pass_count) = cells[data_source]
            rows.append(
                {"method": method, "source": source, "benchmark": label, "data_source": data_source,
                 "avg": avg, "std": std, "runs": count, "pass": pass_, "pass_std": pass_std, "pass_runs": pass_count}
            )

    def add_paper(method: str) -> None:
        add(method, PAPER_LABEL, {ds: ((a, None, 1), (p, None, 0 if p is None else 1))
                                  for ds, (a, p) in published[method].items()})

    for method, runs in method_runs.items():
        passes = method_pass.get(method, [])
        ours = {}
        for data_source, _ in table.benchmarks:
            avgs = [v for v in (last_value(steps, avg_key(data_source, n)) for steps in runs) if v is not None]
            pass_values = [p[data_source] for p in passes if data_source in p]
            ours[data_source] = (_percent_stats(avgs), _percent_stats(pass_values))
        add(method, "ours", ours)
        if method in published:
            add_paper(method)
    for method in published:
        if method not in method_runs:
            add_paper(method)
    return rows


def _group(rows: list[dict[str, object]]) -> dict[tuple[str, str], dict[str, dict[str, object]]]:
    """``{(method, source): {data_source: row}}``, in row order."""
    groups: dict[tuple[str, str], dict[str, dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["source"]), {})[row["data_source"]] = row
    return groups


def _number(value: object, std: object = None, decimals: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:.{decimals}f}" if std is None else f"{value:.{decimals}f} ± {std:.{decimals}f}"


def _gain_text(means: dict[str, float | None], paper: Paper) -> str:
    gain = gain_over_best_baseline(means, paper.method, unit=paper.gain)
    if gain is None:
        return "—"
    best, value = gain
    compared = [m for m in trained_baselines(means, paper.method) if means[m] is not None]
    unit = "%" if paper.gain == "relative" else "points"
    return f"{value:+.{paper.decimals}f} {unit} over {best} (compared: {', '.join(compared)})"


def _over_base_text(means: dict[str, float | None], paper: Paper) -> str:
    if means.get(paper.method) is None or means.get(BASE_MODEL) is None:
        return "—"
    return f"{means[paper.method] - means[BASE_MODEL]:+.{paper.decimals}f} points"


def to_markdown(
    rows: list[dict[str, object]], n: int | None = None, backbone: str | None = None, paper: str = DEFAULT_PAPER
) -> str:
    """Wide markdown table like the paper's: one line per (method, source), each benchmark's cell ("avg / pass" for
    RLRT Tables 1/3, the accuracy for RLSD Table 2) and the mean over the paper's benchmarks; then the notes and the
    paper's method's gain over the best baseline (and, in points, over the base model)."""
    table = get_paper(paper)
    n = table.n if n is None else n
    backbone = table.default_backbone if backbone is None else backbone
    header = ["method", "source", *(label for _, label in table.benchmarks), table.mean_label]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = [data_source for data_source, _ in table.benchmarks]
    means: dict[str, dict[str, float | None]] = {}
    digits = table.decimals
    for (method, source), cells in _group(rows).items():
        mean = benchmark_mean({ds: row["avg"] for ds, row in cells.items()}, table.benchmarks)
        means.setdefault(source, {})[method] = mean
        if table.with_pass:
            text = [f"{_number(r['avg'], r['std'], digits)} / {_number(r['pass'], r['pass_std'], digits)}"
                    for r in map(cells.get, order)]
        else:
            text = [_number(r["avg"], r["std"], digits) for r in map(cells.get, order)]
        lines.append("| " + " | ".join([str(method), str(source), *text, _number(mean, decimals=digits)]) + " |")
    ours, published = means.get("ours", {}), means.get(PAPER_LABEL, {})
    if table.with_pass:
        cell_note = (f"avg@{n} / pass@{n} in percent. ours: avg@{n} is `val-core/<data_source>/acc/mean@{n}` (last logged "
                     f"value), pass@{n} is from the run directory's {PASS_AT_K_FILE}")
        averaged = f" of avg@{n}"
    else:
        cell_note = (f"Accuracy in percent. ours: `val-core/<data_source>/acc/mean@{n}` (last logged value, "
                     f"{n} sample{'' if n == 1 else 's'} per problem)")
        averaged = ""
    lines += [
        "",
        f"{cell_note}; mean ± sample std over runs; — where missing.",
        f"{table.mean_label}: the mean over the {len(table.benchmarks)} benchmarks{averaged} (— if one is missing).",
        f"{PAPER_LABEL}: {table.citation}, {paper_backbone_label(backbone, paper)}.",
    ]
    kind = "Relative gain" if table.gain == "relative" else "Gain"
    lines.append(
        f"{kind} of {table.method}'s {table.mean_label} over the best baseline (every method but {table.method}, "
        f"its {table.method}_* variants and {BASE_MODEL}): "
        f"ours {_gain_text(ours, table)}; {PAPER_LABEL} {_gain_text(published, table)}."
    )
    if table.gain == "points":  # RLSD's headline also states the gain over the untrained model (Sec. 5.2.1)
        lines.append(f"Gain of {table.method}'s {table.mean_label} over {BASE_MODEL}: ours {_over_base_text(ours, table)}; "
                     f"{PAPER_LABEL} {_over_base_text(published, table)}.")
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
