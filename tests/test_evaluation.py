"""avg@n and unbiased pass@k from verl's validation dump (rlrt_recipe.evaluation, scripts/pass_at_k.py)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlrt_recipe.data import INSTRUCTION
from rlrt_recipe.evaluation import (
    benchmark_prompts,
    dump_file,
    evaluate,
    match_benchmark,
    occurs_in,
    pass_at_k,
    problem_correctness,
    read_dump,
    table_lines,
)

ROOT = Path(__file__).resolve().parents[1]

# Two benchmarks, two problems each, 4 samples per problem: (data_source, question, acc of each sample).
PROBLEMS = {
    "p1": ("aime24", "Find $x$ if $2x = 10$.", [1, 0, 0, 0]),
    "p2": ("aime24", "How many primes are below 20?", [1, 1, 0, 1]),
    "p3": ("math500", "Compute $\\sqrt{49}$.", [0, 0, 0, 0]),
    "p4": ("math500", "What is $1 + 1$?", [1, 1, 1, 1]),
}
# Hand-computed: aime24 c = 1, 3 and math500 c = 0, 4 of n = 4.
# pass@2 of c = 1: 1 - C(3,2)/C(4,2) = 1/2; of c = 3: 1 (n - c < k). pass@4 is 1 whenever c > 0.
EXPECTED = {
    "aime24": {"problems": 2, "samples_per_problem": 4, "avg": 0.5, "pass@k": {1: 0.5, 2: 0.75, 4: 1.0}},
    "math500": {"problems": 2, "samples_per_problem": 4, "avg": 0.5, "pass@k": {1: 0.5, 2: 0.5, 4: 0.5}},
}


def content(question: str) -> str:
    return f"{question}\n\n{INSTRUCTION}"


def decoded_prompt(question: str) -> str:
    """What verl dumps as ``input`` for a ChatML prompt: the chat decoded with special tokens skipped."""
    return f"system\nYou are a helpful assistant.\nuser\n{content(question)}\nassistant\n"


def verl_row(data_source: str, question: str, index: int) -> dict:
    """A row as rlrt_recipe.data.convert_row writes it."""
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": content(question)}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": "5"},
        "extra_info": {"split": "test", "index": index},
    }


def write_parquet(path: Path, rows: list[dict]) -> str:
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


def dump_line(problem: str, session: int, acc: float, question: str, index: int = 0) -> dict:
    """One line of verl 0.9.1's ``_write_generations`` with our reward's extra-info keys."""
    return {
        "input": decoded_prompt(question), "output": f"... \\boxed{{{acc}}}", "gts": "5", "score": float(acc),
        "step": 10, "reward": float(acc), "acc": float(acc), "has_answer": 1.0, "timeout": 0.0,
        "uid": f"{problem}-0000-4000-8000-000000000000_{session}_{index}",
    }


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def bench(tmp_path):
    """``{"dump": dir, "val_files": [aime24, math500 parquet], "tmp": tmp_path}``; the dump directory holds an
    older step (2.jsonl, every sample wrong), the evaluated one (10.jsonl) and an unrelated notes.jsonl."""
    by_source: dict[str, list[dict]] = {}
    for source, question, _ in PROBLEMS.values():
        by_source.setdefault(source, []).append(verl_row(source, question, len(by_source.get(source, []))))
    val_files = [write_parquet(tmp_path / f"{source}.parquet", rows) for source, rows in by_source.items()]
    dump = tmp_path / "generations"
    dump.mkdir()
    lines = [dump_line(p, s, acc, q) for p, (_, q, accs) in PROBLEMS.items() for s, acc in enumerate(accs)]
    write_jsonl(dump / "10.jsonl", lines)
    write_jsonl(dump / "2.jsonl", [dump_line(p, s, 0, q) for p, (_, q, accs) in PROBLEMS.items() for s in range(4)])
    write_jsonl(dump / "notes.jsonl", [{"note": "not a dump"}])
    return {"dump": dump, "val_files": val_files, "tmp": tmp_path, "lines": lines}


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(4, 1, 1, 0.25), (4, 1, 2, 0.5), (5, 2, 2, 0.7), (16, 0, 16, 0.0), (16, 0, 1, 0.0), (16, 16, 1, 1.0),
     (16, 16, 16, 1.0), (4, 3, 2, 1.0)],
)
def test_pass_at_k_hand_values(n, c, k, expected):
    """1 - C(n-c, k)/C(n, k) on hand-computed cases, e.g. n=5, c=2, k=2: 1 - 3/10."""
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [(1, 0, 1), (1, 1, 1), (5, 2, 2), (6, 1, 3), (7, 3, 4), (8, 0, 5), (8, 8, 3), (9, 4, 9), (10, 3, 1), (10, 5, 7),
     (12, 2, 6)],
)
def test_pass_at_k_matches_enumeration(n, c, k):
    """The estimator equals the share of all k-subsets of the n samples that hold a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    exact = Fraction(sum(any(subset) for subset in subsets), len(subsets))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12, abs=1e-15)


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_properties(nck):
    """In [0, 1], non-decreasing in k and in c, and pass@1 is c/n (avg@n)."""
    n, c, k = nck
    value = pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    if k < n:
        assert pass_at_k(n, c, k + 1) >= value
    if c < n:
        assert pass_at_k(n, c + 1, k) >= value
    assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-15)


def test_pass_at_k_large_n_is_finite():
    """Exact binomials: no overflow or nan where C(n, k) exceeds the float range."""
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5, abs=1e-15)
    assert 0.0 < pass_at_k(5000, 3, 2) < 1.0


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [(4, 1, 5, "k must be <= n"), (4, 5, 1, "c .*must be <= n"), (-1, 0, 1, "n must be a non-negative"),
     (4, -1, 1, "c must be a non-negative"), (4, 1, -2, "k must be a non-negative"), (4, 1, 0, "k must be >= 1"),
     (4.0, 1, 1, "n must be a non-negative integer"), (4, True, 1, "c must be a non-negative integer")],
)
def test_pass_at_k_errors(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def test_evaluate_hand_built_dump(bench):
    """Per benchmark: problems, n, avg = mean c/n, and pass@k, from the last step's file of the directory
    (10.jsonl, not 2.jsonl: steps compare as numbers)."""
    result = evaluate(bench["dump"], bench["val_files"], ks=(4, 1, 2))
    assert result == {"n": 4, "benchmarks": EXPECTED, "dump": str(bench["dump"] / "10.jsonl")}
    assert list(result["benchmarks"]["aime24"]["pass@k"]) == [1, 2, 4]


def test_evaluate_curve_and_one_file(bench):
    """ks=None is every k from 1 to n; a .jsonl path is read as given (here the older step)."""
    curve = evaluate(bench["dump"], bench["val_files"], ks=None)
    assert list(curve["benchmarks"]["aime24"]["pass@k"]) == [1, 2, 3, 4]
    # aime24 pass@3: c = 1 gives 1 - C(3,3)/C(4,3) = 3/4, c = 3 gives 1.
    assert curve["benchmarks"]["aime24"]["pass@k"][3] == pytest.approx(0.875)
    old = evaluate(bench["dump"] / "2.jsonl", bench["val_files"], ks=[4])
    assert old["dump"] == str(bench["dump"] / "2.jsonl")
    assert {s: b["pass@k"][4] for s, b in old["benchmarks"].items()} == {"aime24": 0.0, "math500": 0.0}


def test_evaluate_k_beyond_n(bench):
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, n=4\].*got 16"):
        evaluate(bench["dump"], bench["val_files"], ks=(16,))


def test_problem_matching_no_benchmark(bench):
    """A problem whose prompt is in none of the validation files is named, not silently dropped."""
    with pytest.raises(ValueError, match=r"problem 'system\\nYou are .*no prompt of the validation files.*'aime24'"):
        evaluate(bench["dump"], bench["val_files"][:1], ks=(1,))


def test_problem_matching_ambiguous(bench):
    """The same prompt in two benchmarks cannot be attributed: the error names both candidates."""
    extra = write_parquet(bench["tmp"] / "aime25.parquet", [verl_row("aime25", PROBLEMS["p1"][1], 0)])
    with pytest.raises(ValueError, match=r"several benchmarks \['aime24', 'aime25'\]") as err:
        evaluate(bench["dump"], [*bench["val_files"], extra], ks=(1,))
    assert "Find $x$ if $2x = 10$." in str(err.value)


def test_duplicate_prompt_within_one_benchmark_is_fine(bench):
    """Two rows of one benchmark with the same prompt are one candidate benchmark, not an ambiguity."""
    again = write_parquet(bench["tmp"] / "aime24_again.parquet", [verl_row("aime24", PROBLEMS["p1"][1], 9)])
    result = evaluate(bench["dump"], [*bench["val_files"], again], ks=(1,))
    assert result["benchmarks"]["aime24"]["problems"] == 2


def test_mixed_sample_counts(bench, tmp_path):
    """A problem with a lost session (3 of 4 samples) makes avg@n and pass@k ill-defined: error naming it."""
    lines = [line for line in bench["lines"] if not line["uid"].startswith("p3") or not line["uid"].endswith("_3_0")]
    file = write_jsonl(tmp_path / "7.jsonl", lines)
    with pytest.raises(ValueError, match=r"different sample counts \(samples: problems = \{3: 1, 4: 3\}\).*p3-.*has 3"):
        evaluate(file, bench["val_files"])


def test_problem_correctness_sessions_and_fallback():
    """One count per session (a multi-output session's lines share its final score), ``score`` where ``acc``
    is missing or null, correct iff >= threshold."""
    lines = [
        dump_line("a", 0, 1, "q", index=0), dump_line("a", 0, 1, "q", index=1),  # one session, two outputs
        dump_line("a", 1, 0, "q"),
        {**dump_line("b", 0, 0, "r"), "acc": None, "score": 0.75},
        {key: v for key, v in dump_line("b", 1, 0, "r").items() if key != "acc"} | {"score": 0.25},
    ]
    problems = problem_correctness(lines)
    assert problems == {
        "a-0000-4000-8000-000000000000": (decoded_prompt("q"), 2, 1),
        "b-0000-4000-8000-000000000000": (decoded_prompt("r"), 2, 1),
    }
    assert problem_correctness(lines, threshold=0.8)["b-0000-4000-8000-000000000000"][2] == 0


def test_problem_correctness_rejects_foreign_dumps():
    with pytest.raises(ValueError, match="not a verl 0.9 validation key"):
        problem_correctness([{"input": "x", "acc": 1.0, "uid": "no-session"}])
    with pytest.raises(ValueError, match="no numeric 'acc' or 'score'"):
        problem_correctness([{"input": "x", "uid": "u_0_0", "acc": None, "score": None}])


def test_read_dump_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no validation dump"):
        read_dump(tmp_path / "missing")
    (tmp_path / "notes.jsonl").write_text("{}\n")
    with pytest.raises(FileNotFoundError, match=r"no <step>\.jsonl validation dump"):
        dump_file(tmp_path)
    (tmp_path / "3.jsonl").write_text('{"uid": "u_0_0"}\n\nnot json\n')
    with pytest.raises(ValueError, match=r"3\.jsonl:3: not a JSON value"):
        read_dump(tmp_path)


def test_benchmark_prompts_last_user_message(tmp_path):
    """The last user message is the problem (a system message or earlier turns may precede it)."""
    row = verl_row("amc23", "Q", 0)
    row["prompt"] = [{"role": "system", "content": "S"}, {"role": "user", "content": "first"},
                     {"role": "assistant", "content": "A"}, {"role": "user", "content": content("Q")}]
    path = write_parquet(tmp_path / "amc23.parquet", [row])
    assert benchmark_prompts(path) == {content("Q"): {"amc23"}}
    bad = write_parquet(tmp_path / "bad.parquet", [{**row, "prompt": [{"role": "system", "content": "S"}]}])
    with pytest.raises(ValueError, match=r"bad\.parquet: row 0 \(data_source='amc23'\): prompt has no user message"):
        benchmark_prompts([bad])


def test_decoded_chat_prompt_contains_the_content(tmp_path):
    """The matching rests on verl's dumped input (chat template applied, tokenized, decoded with special tokens
    skipped) containing the user content verbatim: checked with a byte-level BPE tokenizer like Qwen's."""
    from rlrt_recipe.testing.tiny_model import TinyModelSpec, build_tokenizer

    question = "Let $f(x)=\\frac{x^2}{3}$ and  ∑ a_i ≥ 2€.\nFind $f(12)$."
    tokenizer = build_tokenizer(TinyModelSpec(chat_template="qwen3"))
    messages = [{"role": "user", "content": content(question)}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, enable_thinking=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert "<|im_start|>" not in decoded
    path = write_parquet(tmp_path / "aime26.parquet", [verl_row("aime26", question, 0)])
    dump = write_jsonl(tmp_path / "1.jsonl", [{"input": decoded, "acc": 1.0, "uid": f"u_{s}_0"} for s in range(2)])
    result = evaluate(dump, [path], ks=[2])
    assert result["benchmarks"] == {
        "aime26": {"problems": 1, "samples_per_problem": 2, "avg": 1.0, "pass@k": {2: 1.0}}
    }


def test_table_lines(bench):
    result = evaluate(bench["dump"], bench["val_files"], ks=(1, 4))
    assert table_lines(result) == [
        "benchmark     problems    avg@4    pass@1    pass@4",
        "aime24               2     50.0      50.0     100.0",
        "math500              2     50.0      50.0      50.0",
    ]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts/pass_at_k.py"), *args], capture_output=True, text=True)


def test_cli_writes_schema(bench, tmp_path):
    """scripts/pass_at_k.py end to end: the JSON schema (k as string keys, fractions) and the printed table."""
    out = tmp_path / "out/pass_at_k.json"
    files = bench["val_files"]
    proc = run_cli("--dump", str(bench["dump"]), "--val-files", f"{files[0]},{files[1]}",
                   "--k", "4", "--k", "1", "--k", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    written = json.loads(out.read_text())
    expected = {s: {**b, "pass@k": {str(k): v for k, v in b["pass@k"].items()}} for s, b in EXPECTED.items()}
    assert written == {"n": 4, "benchmarks": expected, "dump": str(bench["dump"] / "10.jsonl")}
    assert list(written) == ["n", "benchmarks", "dump"]
    assert "aime24               2     50.0      50.0      75.0     100.0" in proc.stdout


def test_cli_curve_and_errors(bench, tmp_path):
    """--curve gives k = 1..n; --val-files may be repeated; evaluation errors exit 1 with the message."""
    out = tmp_path / "curve.json"
    files = bench["val_files"]
    proc = run_cli("--dump", str(bench["dump"]), "--val-files", files[0], "--val-files", files[1], "--curve",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(out.read_text())["benchmarks"]["math500"]["pass@k"]) == ["1", "2", "3", "4"]
    proc = run_cli("--dump", str(bench["dump"]), "--val-files", files[0], "--k", "1", "--out", str(tmp_path / "x.json"))
    assert proc.returncode == 1
    assert "no prompt of the validation files" in proc.stderr and not (tmp_path / "x.json").exists()
    proc = run_cli("--dump", str(bench["dump"]), "--val-files", files[0], "--out", str(tmp_path / "x.json"))
    assert proc.returncode == 1 and "k must be an integer in [1, n=4]" in proc.stderr and "got 16" in proc.stderr
    proc = run_cli("--dump", str(bench["dump"]), "--val-files", files[0], "--curve", "--k", "1", "--out", "y.json")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def test_image_prompts_are_matched_by_their_text_around_the_placeholders(tmp_path, tiny_vl_model_dir):
    """verl dumps an image prompt decoded with special tokens skipped, so its `<image>` placeholders leave no text:
    the prompt is found by the text pieces around them, in order. Real rows: the image task's parquet, rendered by
    verl's Qwen-VL token builder with the row's images (as the agent loop does) and decoded as verl's dump does."""
    import rlrt_recipe.cpu  # noqa: F401  (makes the Qwen3-VL processor loadable without torchvision)
    from omegaconf import OmegaConf
    from verl.utils.tokenizer import hf_processor, hf_tokenizer
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    from rlrt_recipe.cpu.dataset import TorchvisionFreeRLHFDataset
    from rlrt_recipe.testing.image_data import write_image_parquet

    path = write_image_parquet(tmp_path / "shapes.parquet", 3, seed=1, split="test")
    tokenizer, processor = hf_tokenizer(tiny_vl_model_dir), hf_processor(tiny_vl_model_dir)
    config = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 256,
                               "filter_overlong_prompts": False, "image_patch_size": None})
    dataset = TorchvisionFreeRLHFDataset(data_files=str(path), tokenizer=tokenizer, processor=processor, config=config)
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen3_vl", processor=processor)
    prompts = benchmark_prompts([path])
    assert all("<image>" in content for content in prompts)
    for row in (dataset[i] for i in range(len(dataset))):
        messages = row["raw_prompt"]
        images, _, _ = TorchvisionFreeRLHFDataset._process_multi_modal_info(messages, 16, config)
        dumped = tokenizer.decode(builder.build_initial_tokens(messages, images=images), skip_special_tokens=True)
        assert "<image>" not in dumped
        assert match_benchmark(dumped, prompts) == "rlrt/tiny_shapes"
    assert not occurs_in("<image>How many circles?", "How many squares?")
    assert occurs_in("<image>Compare<image>these two.", "user\nCompare these two.\nassistant")
    assert not occurs_in("<image>these two.<image>Compare", "Compare these two.")  # the pieces' order counts
