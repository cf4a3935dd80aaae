"""Reproduction table and curves from verl file-logger JSONL fixtures (tests/fixtures/logs)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlrt_recipe.data import SOURCES
from rlrt_recipe.report import (
    BASE_MODEL,
    BENCHMARKS,
    PAPER_BACKBONES,
    PAPER_LABEL,
    PAPER_TABLES,
    PAPERS,
    RLSD_BENCHMARKS,
    RLSD_TABLE_2,
    benchmark_mean,
    curve_metrics,
    gain_over_best_baseline,
    load_pass_at_k,
    load_runs,
    parse_runs,
    plot_curves,
    read_pass_at_k,
    relative_gain,
    six_benchmark_mean,
    table_rows,
    to_csv,
    to_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
LOGS = Path(__file__).parent / "fixtures" / "logs"
DATA_SOURCES = [data_source for data_source, _ in BENCHMARKS]  # RLRT Tables 1/3
RLSD_SOURCES = [data_source for data_source, _ in RLSD_BENCHMARKS]  # RLSD Table 2


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


def _by(rows, method, source, fields=("avg", "std", "runs")):
    return {
        r["data_source"]: tuple(r[f] for f in fields) for r in rows if (r["method"], r["source"]) == (method, source)
    }


def _write_pass_at_k(run_dir: Path, pass_at_k: dict[str, dict[str, float]], n: int = 16) -> None:
    """A pass_at_k.json as the evaluation helper writes it (fractions)."""
    benchmarks = {
        ds: {"problems": 30, "samples_per_problem": n, "avg": 0.0, "pass@k": values} for ds, values in pass_at_k.items()
    }
    (run_dir / "pass_at_k.json").write_text(json.dumps({"n": n, "benchmarks": benchmarks, "dump": "dump.jsonl"}))


def _write_eval_log(path: Path, acc: dict[str, float], n: int = 16) -> Path:
    """One verl file-logger validation record: val-core/<data_source>/acc/mean@n per benchmark."""
    data = {f"val-core/{ds}/acc/mean@{n}": value for ds, value in acc.items()}
    path.write_text(json.dumps({"step": 0, "data": data}) + "\n")
    return path


# --- the paper's numbers and its table arithmetic ---------------------------------------------------------------

# A few cells of RLRT Table 1 / Table 3 ("avg@16 / pass@16"), typed in from the paper's tables.
PAPER_SPOT_VALUES = [
    ("qwen3_4b_base", "rlrt", "aime24", (22.5, 50.0)),
    ("qwen3_8b_base", "base_model", "hmmt26_feb", (5.3, 30.3)),
    ("qwen3_4b_instruct_2507", "sdpo", "amc23", (89.1, 100.0)),
    ("qwen3_8b", "srpo", "math500", (75.0, 90.2)),
]
# The paper's headline gains: RLRT's six-benchmark mean avg@16 over the best baseline's, in percent.
PAPER_HEADLINE_GAINS = {"qwen3_4b_base": 18.0, "qwen3_8b_base": 12.0, "qwen3_4b_instruct_2507": 3.4, "qwen3_8b": 2.2}


@pytest.mark.parametrize("backbone, method, data_source, cell", PAPER_SPOT_VALUES)
def test_paper_spot_values(backbone, method, data_source, cell):
    """Guards the transcription of the paper's tables (a shifted column or row would move these cells)."""
    assert PAPER_TABLES[backbone][method][data_source] == cell


def test_paper_tables_shape():
    """Every backbone of ours, every method row of the paper (SDPO/SRPO only where the paper ran them), all six
    benchmarks under our data_source names."""
    assert list(PAPER_TABLES) == list(PAPER_BACKBONES) == list(PAPER_HEADLINE_GAINS)
    methods = {backbone: list(table) for backbone, table in PAPER_TABLES.items()}
    assert methods == {
        "qwen3_4b_base": ["base_model", "grpo", "rlsd", "rlrt"],
        "qwen3_8b_base": ["base_model", "grpo", "rlsd", "rlrt"],
        "qwen3_4b_instruct_2507": ["base_model", "grpo", "sdpo", "rlsd", "rlrt"],
        "qwen3_8b": ["base_model", "grpo", "sdpo", "srpo", "rlsd", "rlrt"],
    }
    for table in PAPER_TABLES.values():
        for cells in table.values():
            assert sorted(cells) == sorted(DATA_SOURCES)
            assert all(0 <= avg <= pass_ <= 100 for avg, pass_ in cells.values())


@pytest.mark.parametrize("backbone, expected", PAPER_HEADLINE_GAINS.items())
def test_paper_headline_gains(backbone, expected):
    """The arithmetic on the paper's own rows reproduces its headline gains, over GRPO every time."""
    means = {
        method: six_benchmark_mean({ds: avg for ds, (avg, _) in cells.items()})
        for method, cells in PAPER_TABLES[backbone].items()
    }
    best, gain = gain_over_best_baseline(means)
    assert best == "grpo"
    assert round(gain, 1) == expected


def test_gain_arithmetic():
    """Hand-computed: the mean needs all six benchmarks; the untrained base_model is never the baseline, even when
    it scores highest; baselines without a mean are skipped; explicit baselines restrict the comparison."""
    assert six_benchmark_mean(dict.fromkeys(DATA_SOURCES, 10.0) | {"math500": 40.0}) == 15.0
    assert six_benchmark_mean(dict.fromkeys(DATA_SOURCES, 10.0) | {"amc23": None}) is None
    assert six_benchmark_mean(dict.fromkeys(DATA_SOURCES[:5], 10.0)) is None
    assert relative_gain(33.0, 30.0) == pytest.approx(10.0)
    assert relative_gain(27.0, 30.0) == pytest.approx(-10.0)
    means = {"base_model": 90.0, "grpo": 50.0, "rlsd": 60.0, "sdpo": None, "rlrt": 66.0}
    assert gain_over_best_baseline(means) == ("rlsd", pytest.approx(10.0))
    assert gain_over_best_baseline(means, baselines=["grpo"]) == ("grpo", pytest.approx(32.0))
    assert gain_over_best_baseline(means, method="rlsd") == ("rlrt", pytest.approx(-100 / 11))
    assert gain_over_best_baseline(means | {"rlrt": None}) is None
    assert gain_over_best_baseline({"base_model": 20.0, "rlrt": 30.0}) is None
    # RLRT's own ablations and sweep runs are not baselines
    assert gain_over_best_baseline({"grpo": 20.0, "rlrt": 30.0, "rlrt_all": 40.0, "rlrt_eps_w_0.2": 35.0}) == (
        "grpo", pytest.approx(50.0))
    with pytest.raises(ValueError, match="positive baseline"):
        relative_gain(1.0, 0.0)


# --- the table ------------------------------------------------------------------------------------------------


def test_table_values(eval_runs):
    """avg@16 in percent, last logged value per run (the resumed launch wins), mean ± sample std over seeds;
    the default backbone's paper rows, each after our row of the same method, paper-only methods last."""
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
    assert set(_by(rows, "rlrt", "ours", ("pass", "pass_std", "pass_runs")).values()) == {(None, None, 0)}
    for method, cells in PAPER_TABLES["qwen3_4b_base"].items():
        assert _by(rows, method, PAPER_LABEL, ("avg", "pass")) == cells
    order = list(dict.fromkeys((r["method"], r["source"]) for r in rows))
    assert order == [
        ("grpo", "ours"), ("grpo", PAPER_LABEL), ("rlrt", "ours"), ("rlrt", PAPER_LABEL),
        ("base_model", PAPER_LABEL), ("rlsd", PAPER_LABEL),
    ]


def test_table_other_n(eval_runs):
    """--n picks mean@n: only rlrt_s2 logged mean@8 (aime24 0.5)."""
    rows = table_rows(load_runs(eval_runs), n=8)
    assert _by(rows, "rlrt", "ours")["aime24"] == (50.0, None, 1)
    assert _by(rows, "grpo", "ours")["aime24"] == (None, None, 0)


def test_table_backbone(eval_runs):
    """--backbone picks the paper's rows (qwen3_8b has SDPO and SRPO); an unknown one names the allowed ones."""
    rows = table_rows(load_runs(eval_runs), backbone="qwen3_8b")
    assert _by(rows, "srpo", PAPER_LABEL, ("avg", "pass"))["math500"] == (75.0, 90.2)
    assert _by(rows, "rlrt", PAPER_LABEL, ("avg", "pass"))["aime24"] == (70.6, 93.3)
    with pytest.raises(ValueError, match="qwen3_4b_base, qwen3_8b_base, qwen3_4b_instruct_2507, qwen3_8b"):
        table_rows(load_runs(eval_runs), backbone="qwen3_14b")


def test_pass_at_k_from_json(eval_runs):
    """pass@16 from a run directory's pass_at_k.json (fractions -> percent); a run that is a single .jsonl has
    none, nor has a benchmark without the key 16; --n 8 reads the key 8."""
    rlrt_s1 = eval_runs["rlrt"][0]
    _write_pass_at_k(rlrt_s1, {
        "aime24": {"1": 0.25, "8": 0.375, "16": 0.5}, "aime25": {"16": 0.4375}, "math500": {"8": 0.75},
    })
    assert read_pass_at_k(rlrt_s1) == {"aime24": 0.5, "aime25": 0.4375}
    assert read_pass_at_k(rlrt_s1, k=8) == {"aime24": 0.375, "math500": 0.75}
    assert read_pass_at_k(eval_runs["rlrt"][1]) == read_pass_at_k(eval_runs["grpo"][0]) == {}
    rows = table_rows(load_runs(eval_runs), method_pass=load_pass_at_k(eval_runs))
    passes = _by(rows, "rlrt", "ours", ("pass", "pass_std", "pass_runs"))
    assert passes["aime24"] == (50.0, None, 1)
    assert passes["aime25"] == (43.75, None, 1)
    assert passes["math500"] == (None, None, 0)
    lines = to_markdown(rows).splitlines()
    assert lines[4] == "| rlrt | ours | 21.9 ± 4.4 / 50.0 | 18.8 ± 0.0 / 43.8 | 25.0 / — | — / — | — / — | 62.5 / — | — |"


def test_pass_at_k_bad_file(tmp_path):
    """A pass_at_k.json in percent, or not in the helper's schema, is an error naming the file."""
    _write_pass_at_k(tmp_path, {"aime24": {"16": 50.0}})
    with pytest.raises(ValueError, match=r"pass_at_k.json: aime24 pass@16 is 50.0, expected a fraction"):
        read_pass_at_k(tmp_path)
    (tmp_path / "pass_at_k.json").write_text(json.dumps({"aime24": {"16": 0.5}}))
    with pytest.raises(ValueError, match=r"pass_at_k.json: not a pass@k file.*expected"):
        read_pass_at_k(tmp_path)


def test_markdown_and_csv(eval_runs):
    """Cells "avg / pass" like the paper's tables, "—" where missing (never 0), the six-benchmark mean, the
    citation, and RLRT's gain over the best baseline ("—" for ours: rlrt misses two benchmarks)."""
    rows = table_rows(load_runs(eval_runs))
    markdown = to_markdown(rows)
    lines = markdown.splitlines()
    assert lines[0] == "| method | source | AIME24 | AIME25 | AIME26 | HMMT26 Feb | AMC23 | MATH500 | mean |"
    assert lines[2] == "| grpo | ours | 15.6 / — | 12.5 / — | 12.5 / — | 6.2 / — | 50.0 / — | 75.0 / — | 28.6 |"
    assert lines[3] == (
        "| grpo | paper | 15.0 / 40.0 | 14.4 / 33.3 | 12.3 / 36.7 | 10.0 / 27.3 | 58.3 / 87.5 | 80.2 / 94.2 | 31.7 |"
    )
    assert lines[4] == "| rlrt | ours | 21.9 ± 4.4 / — | 18.8 ± 0.0 / — | 25.0 / — | — / — | — / — | 62.5 / — | — |"
    assert lines[5] == (
        "| rlrt | paper | 22.5 / 50.0 | 18.5 / 36.7 | 19.8 / 40.0 | 15.9 / 33.3 | 63.9 / 95.0 | 83.8 / 94.2 | 37.4 |"
    )
    assert lines[6] == "| base_model | paper | 9.6 / 33.3 | 6.9 / 30.0 | 6.5 / 16.7 | 3.6 / 24.2 | 43.3 / 90.0 | 66.8 / 92.2 | 22.8 |"
    assert lines[7] == "| rlsd | paper | 13.3 / 40.0 | 11.2 / 33.3 | 9.0 / 26.7 | 6.2 / 27.3 | 55.2 / 82.5 | 77.9 / 91.2 | 28.8 |"
    assert "paper: RLRT (arXiv 2605.10781) Table 1 (avg@16) / Table 3 (pass@16), Qwen3-4B-Base." in lines
    assert lines[-1].endswith("ours —; paper +18.0 % over grpo (compared: grpo, rlsd).")
    assert "unverified" not in markdown
    csv_lines = to_csv(rows).splitlines()
    assert csv_lines[0] == "method,source,benchmark,data_source,avg,std,runs,pass,pass_std,pass_runs"
    assert csv_lines[1] == "grpo,ours,AIME24,aime24,15.625,,1,,,0"
    assert "rlrt,ours,AIME25,aime25,18.75,0.0,2,,,0" in csv_lines
    assert "rlrt,ours,HMMT26 Feb,hmmt26_feb,,,0,,,0" in csv_lines
    assert "rlsd,paper,AIME26,aime26,9.0,,1,26.7,,1" in csv_lines
    assert len(csv_lines) == 1 + 6 * 6


def test_markdown_gain_for_ours(tmp_path):
    """Complete runs of ours: the gain line compares rlrt with the best trained baseline, never with our
    base_model evaluation (here the highest) — 31.25 over grpo's 25.0 is +25.0 %."""
    runs = parse_runs([
        f"base_model={_write_eval_log(tmp_path / 'base.jsonl', dict.fromkeys(DATA_SOURCES, 0.5))}",
        f"grpo={_write_eval_log(tmp_path / 'grpo.jsonl', dict.fromkeys(DATA_SOURCES, 0.25))}",
        f"rlsd={_write_eval_log(tmp_path / 'rlsd.jsonl', dict.fromkeys(DATA_SOURCES, 0.125))}",
        f"rlrt={_write_eval_log(tmp_path / 'rlrt.jsonl', dict.fromkeys(DATA_SOURCES, 0.3125))}",
    ])
    lines = to_markdown(table_rows(load_runs(runs))).splitlines()
    assert lines[2] == "| base_model | ours | " + "50.0 / — | " * 6 + "50.0 |"
    assert lines[-1].endswith(
        "ours +25.0 % over grpo (compared: grpo, rlsd); paper +18.0 % over grpo (compared: grpo, rlsd)."
    )


def test_make_table_cli(eval_runs, tmp_path):
    """The script writes the markdown and CSV of table_rows/to_markdown with pass@16 read from the run directory;
    --backbone qwen3_8b puts that backbone's paper rows beside ours."""
    _write_pass_at_k(eval_runs["rlrt"][0], {"aime24": {"16": 0.5}})
    specs = [f"--run={m}={p}" for m, paths in eval_runs.items() for p in paths]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/make_table.py"), *specs, "--out", str(tmp_path / "out/table"),
         "--backbone", "qwen3_8b"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(load_runs(eval_runs), backbone="qwen3_8b", method_pass=load_pass_at_k(eval_runs))
    assert (tmp_path / "out/table.md").read_text() == to_markdown(rows, backbone="qwen3_8b")
    assert (tmp_path / "out/table.csv").read_text() == to_csv(rows)
    assert "| rlrt | ours | 21.9 ± 4.4 / 50.0 |" in proc.stdout
    assert "| srpo | paper | 15.4 / 26.7 |" in proc.stdout
    assert "paper +2.2 % over grpo (compared: grpo, sdpo, srpo, rlsd)." in proc.stdout


def test_make_table_bad_backbone(tmp_path):
    """An unknown --backbone fails before reading anything, naming the allowed backbones."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/make_table.py"), "--run", "grpo=missing.jsonl", "--out",
         str(tmp_path / "table"), "--backbone", "qwen3_14b"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "--backbone" in proc.stderr and "qwen3_14b" in proc.stderr
    for backbone in PAPER_TABLES:
        assert backbone in proc.stderr
    assert not (tmp_path / "table.md").exists()


def test_rlrt_columns_are_the_data_sources_of_prepare_data():
    """RLRT's columns are rlrt_recipe.data's evaluation sources, with the labels its tables print (the report keeps
    its own copy so that sources added for the other paper never become RLRT columns)."""
    assert [(data_source, SOURCES[data_source].label) for data_source in DATA_SOURCES] == list(BENCHMARKS)


# --- RLSD Table 2 -----------------------------------------------------------------------------------------------

# RLSD Table 2's Avg. column, as printed (the paper: "Avg. is computed over the five selected benchmarks")
RLSD_PAPER_AVG = {"base_model": 51.49, "grpo": 53.86, "opsd": 52.49, "sdpo": 52.74, "grpo_opsd_loss": 52.91,
                  "rlsd": 56.18}


def test_rlsd_table_2_transcription():
    """Guards the transcription of RLSD Table 2: its rows in order, five benchmarks, a few cells typed in from the
    paper, one number per cell, and every row's mean equal to the paper's Avg. column."""
    table = RLSD_TABLE_2["qwen3_vl_8b_instruct"]
    assert list(table) == list(RLSD_PAPER_AVG)
    assert table["base_model"]["mmmu"] == (62.44, None)
    assert table["sdpo"]["zerobench"] == (25.15, None)
    assert table["rlsd"]["mathvision"] == (52.73, None)
    assert table["grpo_opsd_loss"]["wemath"] == (54.76, None)
    for method, cells in table.items():
        assert list(cells) == RLSD_SOURCES
        assert round(benchmark_mean({ds: acc for ds, (acc, _) in cells.items()}, RLSD_BENCHMARKS), 2) == (
            RLSD_PAPER_AVG[method]), method


def test_rlsd_headline_gains():
    """RLSD Sec. 5.2.1: RLSD's average is 2.32 points over GRPO (the best baseline), 3.27 over GRPO+OPSD and 4.69 over
    the base model; the same arithmetic on the shipped rows gives them."""
    means = {m: benchmark_mean({ds: a for ds, (a, _) in cells.items()}, RLSD_BENCHMARKS)
             for m, cells in RLSD_TABLE_2["qwen3_vl_8b_instruct"].items()}
    best, points = gain_over_best_baseline(means, "rlsd", unit="points")
    assert best == "grpo" and round(points, 2) == 2.32
    assert round(gain_over_best_baseline(means, "rlsd", ["grpo_opsd_loss"], unit="points")[1], 2) == 3.27
    assert round(means["rlsd"] - means["base_model"], 2) == 4.69
    with pytest.raises(ValueError, match="unit must be"):
        gain_over_best_baseline(means, "rlsd", unit="percent")


@pytest.fixture
def rlsd_runs(tmp_path):
    """Synthetic evaluation logs at one sample per problem (mean@1): the base model, GRPO, two RLSD seeds, and a GRPO 2×
    run that never logged ZeroBench (its average is then "—")."""
    logs = {
        "base_model": {"mmmu": 0.625, "mathvista": 0.75, "mathvision": 0.5, "zerobench": 0.125, "wemath": 0.5},
        "grpo": {"mmmu": 0.625, "mathvista": 0.75, "mathvision": 0.5, "zerobench": 0.25, "wemath": 0.625},
        "grpo_2x": {"mmmu": 0.75, "mathvista": 0.75, "mathvision": 0.5, "wemath": 0.625},
        "rlsd_s1": {"mmmu": 0.75, "mathvista": 0.75, "mathvision": 0.5, "zerobench": 0.25, "wemath": 0.75},
        "rlsd_s2": {"mmmu": 0.625, "mathvista": 0.875, "mathvision": 0.5, "zerobench": 0.25, "wemath": 0.75},
    }
    paths = {name: _write_eval_log(tmp_path / f"{name}.jsonl", acc, n=1) for name, acc in logs.items()}
    return parse_runs([f"{name.split('_s')[0]}={path}" for name, path in paths.items()])


def test_rlsd_table_on_synthetic_logs(rlsd_runs):
    """Ours (mean@1, percent, two decimals as Table 2) beside Table 2's rows, the five-benchmark average, "—" for
    ZeroBench GRPO 2× never logged (and so for its average), the paper-only rows last, RLSD's gains in points."""
    rows = table_rows(load_runs(rlsd_runs), paper="rlsd")
    assert _by(rows, "rlsd", "ours")["mathvista"] == (81.25, pytest.approx(12.5 / math.sqrt(2)), 2)
    assert set(_by(rows, "rlsd", "ours", ("pass", "pass_std", "pass_runs")).values()) == {(None, None, 0)}
    lines = to_markdown(rows, paper="rlsd").splitlines()
    assert lines[0] == "| method | source | MMMU | MathVista | MathVision | ZeroBench | WeMath | avg |"
    assert lines[2:12] == [
        "| base_model | ours | 62.50 | 75.00 | 50.00 | 12.50 | 50.00 | 50.00 |",
        "| base_model | paper | 62.44 | 73.80 | 47.37 | 19.76 | 54.10 | 51.49 |",
        "| grpo | ours | 62.50 | 75.00 | 50.00 | 25.00 | 62.50 | 55.00 |",
        "| grpo | paper | 65.11 | 76.20 | 48.82 | 22.60 | 56.57 | 53.86 |",
        "| grpo_2x | ours | 75.00 | 75.00 | 50.00 | — | 62.50 | — |",
        "| rlsd | ours | 68.75 ± 8.84 | 81.25 ± 8.84 | 50.00 ± 0.00 | 25.00 ± 0.00 | 75.00 ± 0.00 | 60.00 |",
        "| rlsd | paper | 67.22 | 78.10 | 52.73 | 24.85 | 58.00 | 56.18 |",
        "| opsd | paper | 63.82 | 75.10 | 47.53 | 21.06 | 54.95 | 52.49 |",
        "| sdpo | paper | 65.11 | 74.00 | 47.27 | 25.15 | 52.19 | 52.74 |",
        "| grpo_opsd_loss | paper | 63.22 | 75.90 | 48.52 | 22.16 | 54.76 | 52.91 |",
    ]
    assert "paper: RLSD (arXiv 2604.03128) Table 2 (accuracy), Qwen3-VL-8B-Instruct." in lines
    assert lines[-2].endswith("ours +5.00 points over grpo (compared: grpo); "
                              "paper +2.32 points over grpo (compared: grpo, opsd, sdpo, grpo_opsd_loss).")
    assert lines[-1] == "Gain of rlsd's avg over base_model: ours +10.00 points; paper +4.69 points."
    csv_lines = to_csv(rows).splitlines()
    assert "grpo_2x,ours,ZeroBench,zerobench,,,0,,,0" in csv_lines
    assert "rlsd,paper,MathVision,mathvision,52.73,,1,,,0" in csv_lines


def test_make_table_cli_rlsd(rlsd_runs, tmp_path):
    """--paper rlsd: Table 2 beside ours at --n 1 by default, whatever pass_at_k.json a run directory holds; a backbone
    of the other paper is refused before anything is read."""
    specs = [f"--run={m}={p}" for m, paths in rlsd_runs.items() for p in paths]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/make_table.py"), *specs, "--paper", "rlsd",
                           "--out", str(tmp_path / "out/table")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(load_runs(rlsd_runs), paper="rlsd")
    assert (tmp_path / "out/table.md").read_text() == to_markdown(rows, paper="rlsd")
    assert (tmp_path / "out/table.csv").read_text() == to_csv(rows)
    assert "| grpo_2x | ours | 75.00 | 75.00 | 50.00 | — | 62.50 | — |" in proc.stdout
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/make_table.py"), "--paper", "rlsd", "--backbone",
                           "qwen3_8b", "--run", "grpo=missing.jsonl", "--out", str(tmp_path / "bad")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "the rlsd paper's tables have qwen3_vl_8b_instruct" in proc.stderr
    assert not (tmp_path / "bad.md").exists()


def test_papers_are_consistent():
    """Each paper's rows cover its benchmarks for every backbone it names, its method is one of its rows, and its
    default n is the evaluation the recipes run (RLRT avg@16; RLSD ours, one sample)."""
    for paper in PAPERS.values():
        assert list(paper.rows) == list(paper.backbones)
        for table in paper.rows.values():
            assert paper.method in table and BASE_MODEL in table
            for cells in table.values():
                assert list(cells) == [data_source for data_source, _ in paper.benchmarks]
                assert all((p is not None) == paper.with_pass for _, p in cells.values())
    assert (PAPERS["rlrt"].n, PAPERS["rlsd"].n) == (16, 1)


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


def test_pass_at_k_curves_and_plot(tmp_path):
    """plot_pass_at_k.py reads every k of each run's pass_at_k.json and draws one panel per benchmark, log-x."""
    import json
    import subprocess
    import sys

    from rlrt_recipe.report import read_pass_at_k_curves

    runs = []
    for method, scale in (("grpo", 0.5), ("rlrt", 0.8)):
        run = tmp_path / method
        run.mkdir()
        curve = {str(k): scale * (1 - 0.5 ** k) for k in (1, 2, 4, 8)}
        benchmarks = {ds: {"problems": 3, "samples_per_problem": 8, "avg": curve["1"], "pass@k": curve}
                      for ds in ("aime24", "aime26")}
        (run / "pass_at_k.json").write_text(json.dumps({"n": 8, "benchmarks": benchmarks, "dump": "x"}))
        runs += ["--run", f"{method}={run}"]
    curves = read_pass_at_k_curves(tmp_path / "rlrt")
    assert list(curves) == ["aime24", "aime26"] and list(curves["aime24"]) == [1, 2, 4, 8]
    assert curves["aime26"][4] == pytest.approx(0.8 * (1 - 0.5 ** 4))
    out = tmp_path / "fig.png"
    result = subprocess.run([sys.executable, "scripts/plot_pass_at_k.py", *runs, "--out", str(out)],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert "2 methods, k up to 8" in result.stdout and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no pass_at_k.json"):
        read_pass_at_k_curves(tmp_path)
