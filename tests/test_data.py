"""Data preparation: verl's parquet schema from json/jsonl/parquet fixtures, dropped rows, unreadable sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from rlrt_recipe.data import INSTRUCTION, SOURCES, SourceError, convert, load_rows, parse_hub_spec, with_columns

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "data"


def _prompt(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{question}\n\n{INSTRUCTION}"}]


def test_json_source_schema_and_dropped_rows():
    """AIME-style .json list: schema, int answer as text, solution kept (None when empty), bad rows dropped."""
    source = SOURCES["aime24"]
    rows, origin = load_rows(source, str(FIXTURES / "aime_small.json"))
    result = convert(source, rows, origin)
    assert (result.read, len(result.rows)) == (6, 3)
    assert result.dropped == [
        (2, "no answer column (tried ['answer'])"),
        (3, "answer is empty"),
        (4, "answer is a list, expected a string or a number"),
    ]
    assert result.rows[0] == {
        "data_source": "aime24",
        "prompt": _prompt("Find the remainder when $2^{10}$ is divided by $1000$."),
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": "24"},
        "extra_info": {"split": "test", "index": 0, "solution": "$2^{10} = 1024$, so the remainder is $\\boxed{24}$."},
    }
    assert result.rows[1]["reward_model"]["ground_truth"] == "21"
    assert result.rows[1]["extra_info"] == {"split": "test", "index": 1, "solution": None}
    assert result.rows[2]["reward_model"]["ground_truth"] == "\\frac{3}{4}"
    assert result.rows[2]["extra_info"]["index"] == 5


def test_jsonl_source_with_float_null_bool_and_missing_question():
    """AMC-style .jsonl (blank line skipped): 42.0 -> "42", 1.5 -> "1.5"; null, bool and no question dropped."""
    source = SOURCES["amc23"]
    rows, _ = load_rows(source, str(FIXTURES / "amc_small.jsonl"))
    result = convert(source, rows)
    assert [r["reward_model"]["ground_truth"] for r in result.rows] == ["42", "1.5", "4"]
    assert [r["extra_info"] for r in result.rows] == [
        {"split": "test", "index": 0},
        {"split": "test", "index": 1},
        {"split": "test", "index": 5},
    ]
    assert result.dropped == [
        (2, "answer is null"),
        (3, "no question column (tried ['problem', 'question'])"),
        (4, "answer is a bool, expected a string or a number"),
    ]


def test_parquet_training_source_nested_ground_truth():
    """DAPO-Math-17k-Processed layout: ground truth from the nested reward_model column, no solution key."""
    source = SOURCES["dapo_math_17k"]
    rows, _ = load_rows(source, str(FIXTURES / "dapo_small.parquet"))
    result = convert(source, rows)
    assert [r["reward_model"]["ground_truth"] for r in result.rows] == ["4", "7"]
    assert result.rows[0]["prompt"] == _prompt("Let $x + 1 = 5$. Find $x$.")
    assert result.rows[0]["data_source"] == "dapo_math_17k"
    assert result.rows[0]["extra_info"] == {"split": "train", "index": 0}
    assert result.dropped == [
        (2, "answer is empty"),
        (3, "answer is null"),
        (4, "question column 'prompt' is not a non-empty string"),
    ]


def test_column_overrides():
    """--column: a renamed question column and a dotted path; an empty solution turns solutions off."""
    source = with_columns(SOURCES["math500"], {"question": "problem", "answer": "answer", "solution": ""})
    rows, _ = load_rows(source, str(FIXTURES / "math_small.parquet"))
    result = convert(source, rows)
    assert [r["extra_info"] for r in result.rows] == [{"split": "test", "index": 0}, {"split": "test", "index": 1}]
    source = with_columns(SOURCES["dapo_math_17k"], {"question": "prompt", "answer": "solution"})
    assert [r["reward_model"]["ground_truth"] for r in convert(source, load_rows(source, str(FIXTURES / "dapo_small.parquet"))[0]).rows] == ["4", "7"]
    with pytest.raises(ValueError, match="unknown column field"):
        with_columns(SOURCES["aime24"], {"ground_truth": "answer"})


def test_hub_spec_defaults():
    """A source's own config/split apply to its own hub id only."""
    dapo = SOURCES["dapo_math_17k"]
    assert parse_hub_spec(dapo.hub, dapo) == ("open-r1/DAPO-Math-17k-Processed", "en", "train")
    assert parse_hub_spec("me/aime:all@test", dapo) == ("me/aime", "all", "test")
    assert parse_hub_spec("me/aime", dapo) == ("me/aime", None, "train")


def test_missing_local_file_is_an_error_naming_the_source():
    source = SOURCES["aime26"]
    with pytest.raises(SourceError, match=r"source 'aime26' from /nonexistent/aime26\.jsonl.*--source aime26=path/to/file\.jsonl"):
        load_rows(source, "/nonexistent/aime26.jsonl")


def test_malformed_json_line_is_an_error_naming_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": oops}\n')
    with pytest.raises(SourceError, match=r"bad\.jsonl:2: not a JSON object"):
        load_rows(SOURCES["amc23"], str(bad))


def test_unreachable_hub_is_an_error_naming_the_source(monkeypatch):
    """No network: datasets raises; we re-raise naming the source, the hub id and the --source fix."""

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'HuggingFaceH4/MATH-500' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(SourceError, match=r"source 'math500' from hub dataset 'HuggingFaceH4/MATH-500'.*--source math500="):
        load_rows(SOURCES["math500"])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prepare_data.py"), *args], capture_output=True, text=True, cwd=ROOT
    )


def test_cli_writes_parquet_and_prints_counts(tmp_path):
    """End to end: two sources from local files, verl's columns in the parquet, counts and drops printed."""
    proc = _cli(
        "--out-dir", str(tmp_path), "aime24", "dapo_math_17k",
        "--source", f"aime24={FIXTURES / 'aime_small.json'}",
        "--source", f"dapo_math_17k={FIXTURES / 'dapo_small.parquet'}",
    )
    assert proc.returncode == 0, proc.stderr
    assert "aime24: read 6, kept 3, dropped 3" in proc.stdout
    assert "  dropped row 3: answer is empty" in proc.stdout
    assert "dapo_math_17k: read 5, kept 2, dropped 3" in proc.stdout
    table = pq.read_table(tmp_path / "aime24.parquet")
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    rows = table.to_pylist()
    assert [r["reward_model"] for r in rows] == [
        {"style": "rule", "ground_truth": g} for g in ["24", "21", "\\frac{3}{4}"]
    ]
    assert [r["extra_info"]["index"] for r in rows] == [0, 1, 5]
    assert pq.read_table(tmp_path / "dapo_math_17k.parquet").num_rows == 2
    # verl's RLHFDataset loads each file with datasets and concatenates them: files with and without
    # extra_info.solution must align.
    files = [datasets.load_dataset("parquet", data_files=str(tmp_path / f"{n}.parquet"))["train"] for n in ("aime24", "dapo_math_17k")]
    merged = datasets.concatenate_datasets(files)
    assert [r["extra_info"] for r in merged][3:] == [
        {"split": "train", "index": 0, "solution": None},
        {"split": "train", "index": 1, "solution": None},
    ]


def test_cli_unreadable_source_fails(tmp_path):
    proc = _cli("--out-dir", str(tmp_path), "hmmt26_feb", "--source", "hmmt26_feb=missing/hmmt.parquet")
    assert proc.returncode == 1
    assert "cannot read source 'hmmt26_feb' from missing/hmmt.parquet" in proc.stderr
    assert "--source hmmt26_feb=path/to/file.jsonl" in proc.stderr
    assert not (tmp_path / "hmmt26_feb.parquet").exists()


def test_long_conversion_shows_a_progress_bar(capsys):
    """Conversions of PROGRESS_MIN_ROWS rows or more draw a tqdm bar on stderr; short ones stay quiet."""
    from rlrt_recipe.data import PROGRESS_MIN_ROWS

    rows = [{"prompt": f"q{i}", "solution": str(i)} for i in range(PROGRESS_MIN_ROWS)]
    assert len(convert(SOURCES["dapo_math_17k"], rows).rows) == PROGRESS_MIN_ROWS
    assert f"{PROGRESS_MIN_ROWS}/{PROGRESS_MIN_ROWS}" in capsys.readouterr().err
    convert(SOURCES["dapo_math_17k"], rows[:10])
    assert capsys.readouterr().err == ""
