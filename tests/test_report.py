"""Reproduction table and curves from verl file-logger JSONL fixtures (tests/fixtures/logs)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlrt_recipe.report import (
    PAPER_AVG16,
    PAPER_LABEL,
    curve_metrics,
    load_runs,
    parse_runs,
    plot_curves,
    table_rows,
    to_csv,
    to_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
LOGS = Path(__file__).parent / "fixtures" / "logs"


@pytest.fixture
def eval_runs(tmp_path):
    """The evaluation fixtures, with launch-2 (a resume re-logging step 3) strictly newer than launch-1:
    git does not keep mtimes, and read_metrics orders launches by mtime."""
    shutil.copytree(LOGS / "eval", tmp_path / "eval")
    os.utime(tmp_path / "eval/rlrt_s1/launch-1.jsonl", (1_000, 1_000))
    os.utime(tmp_path / "eval/rlrt_s1/launch-2.jsonl", (2_000, 2_000))
    return parse_runs(
        [f"grpo={tmp_path}/eval/grpo.jsonl", f"rlrt={tmp_path}/eval/rlrt_s1", f"rlrt={tmp_path}/eval/rlrt_s2.jsonl"]
    )


def _by(rows, method, source):
    return {r["data_source"]: (r["avg"], r["std"], r["runs"]) for r in rows if (r["method"], r["source"]) == (method, source)}


def test_table_values(eval_runs):
    """avg@16 in percent, last logged value per run (the resumed launch wins), mean ± sample std over seeds."""
    rows = table_rows(load_runs(eval_runs))
    assert _by(rows, "grpo", "ours") == {
        "aime24": (15.625, None, 1), "aime25": (12.5, None, 1), "aime26": (12.5, None, 1),
        "hmmt26_feb": (6.25, None, 1), "amc23": (50.0, None, 1), "math500": (75.0, None, 1),
    }
    rlrt = _by(rows, "rlrt", "ours")
    # s1: aime24 0.25 and aime25 0.1875 from the resumed launch's step 3, math500 0.625 kept from launch 1.
    assert rlrt["aime24"] == (21.875, pytest.approx(6.25 / math.sqrt(2), abs=1e-12), 2)
    assert rlrt["aime25"] == (18.75, 0.0, 2)
    assert rlrt["aime26"] == (25.0, None, 1)
    assert rlrt["math500"] == (62.5, None, 1)
    assert rlrt["hmmt26_feb"] == rlrt["amc23"] == (None, None, 0)
    for method, numbers in PAPER_AVG16.items():
        paper = _by(rows, method, PAPER_LABEL)
        assert {ds: v[0] for ds, v in paper.items() if v[0] is not None} == numbers
    order = list(dict.fromkeys((r["method"], r["source"]) for r in rows))
    assert order == [("grpo", "ours"), ("grpo", PAPER_LABEL), ("rlrt", "ours"), ("rlrt", PAPER_LABEL), ("rlsd", PAPER_LABEL)]


def test_table_other_n(eval_runs):
    """--n picks mean@n: only rlrt_s2 logged mean@8 (aime24 0.5)."""
    rows = table_rows(load_runs(eval_runs), n=8)
    assert _by(rows, "rlrt", "ours")["aime24"] == (50.0, None, 1)
    assert _by(rows, "grpo", "ours")["aime24"] == (None, None, 0)


def test_markdown_and_csv(eval_runs):
    rows = table_rows(load_runs(eval_runs))
    markdown = to_markdown(rows)
    lines = markdown.splitlines()
    assert lines[0] == "| method | source | AIME24 | AIME25 | AIME26 | HMMT26 Feb | AMC23 | MATH500 |"
    assert lines[2] == "| grpo | ours | 15.6 | 12.5 | 12.5 | 6.2 | 50.0 | 75.0 |"
    assert lines[3] == "| grpo | paper (unverified) | 15.0 | 14.4 | 12.3 | — | — | — |"
    assert lines[4] == "| rlrt | ours | 21.9 ± 4.4 | 18.8 ± 0.0 | 25.0 | — | — | 62.5 |"
    assert lines[5] == "| rlrt | paper (unverified) | 22.5 | 18.5 | 19.8 | — | — | — |"
    assert lines[6] == "| rlsd | paper (unverified) | 13.3 | 11.2 | 9.0 | — | — | — |"
    assert "arXiv 2605.10781" in markdown and "Qwen3-4B-Base" in markdown and "secondary source" in markdown
    csv_lines = to_csv(rows).splitlines()
    assert csv_lines[0] == "method,source,benchmark,data_source,avg,std,runs"
    assert csv_lines[1] == "grpo,ours,AIME24,aime24,15.625,,1"
    assert "rlrt,ours,AIME25,aime25,18.75,0.0,2" in csv_lines
    assert "rlrt,ours,HMMT26 Feb,hmmt26_feb,,,0" in csv_lines
    assert "rlsd,paper (unverified),AIME26,aime26,9.0,,1" in csv_lines
    assert len(csv_lines) == 1 + 5 * 6


def test_make_table_cli(eval_runs, tmp_path):
    specs = [f"--run={m}={p}" for m, paths in eval_runs.items() for p in paths]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/make_table.py"), *specs, "--out", str(tmp_path / "out/table")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/table.md").read_text() == to_markdown(table_rows(load_runs(eval_runs)))
    assert (tmp_path / "out/table.csv").read_text().startswith("method,source,benchmark")
    assert "| rlrt | ours | 21.9 ± 4.4 |" in proc.stdout


def test_bad_run_spec():
    with pytest.raises(ValueError, match="METHOD=PATH"):
        parse_runs(["logs/grpo"])


TRAIN = {
    "grpo": {
        "critic/score/mean": [0.125, 0.25, 0.375],
        "response_length/mean": [900.0, 950.0, 1000.0],
        "actor/entropy": [0.5, 0.45, 0.4],
    },
    "rlrt_s1": {
        "critic/score/mean": [0.25, 0.5, 0.625],
        "response_length/mean": [800.0, 820.0, 840.0],
        "actor/entropy": [0.6, 0.625, 0.65],
        "rlrt/delta_mean": [-0.5, -0.25, -0.125],
        "rlrt/lambda": [0.5, 0.5, 0.5],
    },
}


def _panels(fig):
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}


def test_plot_one_line_per_method_with_fixture_values():
    """One panel per metric (reward, length, entropy, then rlrt/*), one line per method that logged it,
    whose data are exactly the logged values."""
    runs = load_runs(parse_runs([f"grpo={LOGS}/train/grpo.jsonl", f"rlrt={LOGS}/train/rlrt_s1.jsonl"]))
    fig = plot_curves(runs)
    panels = _panels(fig)
    assert list(panels) == curve_metrics(runs) == [
        "critic/score/mean", "response_length/mean", "actor/entropy", "rlrt/delta_mean", "rlrt/lambda",
    ]
    for metric, ax in panels.items():
        expected = {m: vals[metric] for m, vals in (("grpo", TRAIN["grpo"]), ("rlrt", TRAIN["rlrt_s1"])) if metric in vals}
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == list(expected)
        for line in lines:
            assert list(line.get_xdata()) == [1, 2, 3]
            assert list(line.get_ydata()) == expected[line.get_label()]
        assert not ax.collections  # one run per method: no std band


def test_plot_mean_over_seeds_with_band(tmp_path):
    """Two seeds of rlrt (s2 stops at step 2): the line is their mean where both logged, s1 alone after;
    a band is drawn. The figure saves as PNG."""
    runs = load_runs(parse_runs([f"rlrt={LOGS}/train/rlrt_s1.jsonl", f"rlrt={LOGS}/train/rlrt_s2.jsonl"]))
    fig = plot_curves(runs, ["critic/score/mean", "rlrt/delta_mean"])
    panels = _panels(fig)
    assert list(panels) == ["critic/score/mean", "rlrt/delta_mean"]
    (score,) = panels["critic/score/mean"].get_lines()
    assert list(score.get_xdata()) == [1, 2, 3]
    assert list(score.get_ydata()) == [0.5, 0.5, 0.625]
    (delta,) = panels["rlrt/delta_mean"].get_lines()
    assert list(delta.get_ydata()) == [-1.0, -0.5, -0.125]
    assert len(panels["critic/score/mean"].collections) == 1
    fig.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_curves_cli(tmp_path):
    out = tmp_path / "plots/curves.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/plot_curves.py"), "--run", f"grpo={LOGS}/train/grpo.jsonl",
         "--run", f"rlrt={LOGS}/train/rlrt_s1.jsonl", "--out", str(out), "--metric", "training/global_step"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "6 panels" in proc.stdout
