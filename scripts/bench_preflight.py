"""Cost of the rlrt pre-flight (rlrt_recipe/integration/preflight.py) on a DAPO-Math-sized training set, on CPU.

    python scripts/bench_preflight.py                    # 17 000 rows, the tiny tokenizer and a 32k byte-level BPE
    python scripts/bench_preflight.py --rows 500 --tokenizers tiny --json out.json   # CI-sized

Rows (DAPO-Math-17k-like, synthetic, seeded): a problem of 100–400 words of math prose, a short integer answer,
and on ``--solution-frac`` of the rows a worked solution of 500–2000 words. The check is the heaviest context,
``solution`` (every row's student prompt, and a teacher prompt with its solution or else its answer), with
``rollout.prompt_length = 1024`` and the default budget ``2 × 1024``.

Measured per tokenizer (one run each, after a warm-up on 64 rows; wall and CPU seconds):
  read    ``dataset_rows``: RowInfo for every row from a ``datasets.Dataset`` (verl's ``RLHFDataset.dataframe``)
  check   ``find_unservable_rows`` with ``PromptLengths`` (batched ``apply_chat_template``), both prompts per row
  sample  the student prompts of ``--sample`` rows, through verl's builder row by row and through
          ``PromptLengths`` (lengths checked equal)
Tokenizers: ``tiny`` is the test suite's (``build_tiny_model``, loaded from disk as the trainer loads it; its
512-entry vocabulary makes about 3× more tokens per word than a real one); ``bpe32k`` is a byte-level BPE with a
32k vocabulary trained here on the synthetic text, with the ChatML template (closer to Qwen's token counts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time

import datasets
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from rlrt_recipe import privileged
from rlrt_recipe.integration.preflight import PromptLengths, dataset_rows, find_unservable_rows
from rlrt_recipe.testing import build_tiny_model
from rlrt_recipe.testing.tiny_model import CHATML_TEMPLATE, END_OF_TEXT, IM_END, SPECIAL_TOKENS

PROMPT_LENGTH = 1024
BUDGET = 2 * PROMPT_LENGTH
WORDS = ("let", "the", "of", "and", "find", "number", "integer", "positive", "sum", "triangle", "circle", "radius",
         "point", "such", "that", "is", "a", "prime", "value", "minimum", "maximum", "polynomial", "roots", "real",
         "sequence", "probability", "expected", "area", "angle", "compute", "where", "with", "each", "how", "many",
         "$x$", "$y$", "$n$", "$\\frac{1}{2}$", "$a_n$", "$x^2+y^2$", "\\sqrt{2}", "=", "+", "(", ")", "modulo")
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def synthetic_rows(n: int, *, solution_frac: float, seed: int = 0) -> list[dict]:
    """``n`` rows in verl's schema with DAPO-Math-like lengths (see the module docstring)."""
    rng = random.Random(seed)

    def text(n_words: int) -> str:
        return " ".join(rng.choice(WORDS) if rng.random() < 0.8 else str(rng.randint(0, 9999)) for _ in range(n_words))

    rows = []
    for index in range(n):
        answer = str(rng.randint(0, 99999))
        solution = f"{text(rng.randint(500, 2000))}\n\\boxed{{{answer}}}" if rng.random() < solution_frac else None
        rows.append({
            "data_source": "synthetic_dapo",
            "prompt": [{"role": "user", "content": f"{text(rng.randint(100, 400))}\n\n{INSTRUCTION}"}],
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"index": index, "solution": solution},
        })
    return rows


def tiny_tokenizer(tmp_dir: str):
    return AutoTokenizer.from_pretrained(build_tiny_model(os.path.join(tmp_dir, "tiny_model")))


def bpe32k_tokenizer(rows: list[dict]):
    """A 32k byte-level BPE trained on the rows' own text, ChatML template (like tiny_model.build_tokenizer)."""
    corpus = [r["prompt"][0]["content"] for r in rows[:4000]] + \
             [r["extra_info"]["solution"] for r in rows[:4000] if r["extra_info"]["solution"]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=32768, special_tokens=SPECIAL_TOKENS,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=IM_END, pad_token=END_OF_TEXT,
                                   chat_template=CHATML_TEMPLATE, model_max_length=1 << 20)


def bench(tokenizer, rows: list[dict], *, sample: int) -> dict:
    """Seconds of each part for one tokenizer (see the module docstring) and the problems found."""
    dataframe = datasets.Dataset.from_list(rows)
    lengths = PromptLengths(tokenizer, hf_model_type="qwen2", chat_template_kwargs={})
    templates = privileged.validate_templates()
    settings = dict(file="synthetic", context="solution", sibling_fallback="answer", templates=templates,
                    prompt_length=PROMPT_LENGTH, budget=BUDGET)
    find_unservable_rows(dataset_rows(dataframe.select(range(64)), "prompt"), lengths, **settings)  # warm-up

    (infos, read_s, read_cpu) = timed(lambda: dataset_rows(dataframe, "prompt"))
    (problems, check_s, check_cpu) = timed(lambda: find_unservable_rows(infos, lengths, **settings))

    student = [list(r.messages) for r in infos[:sample]]
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2", chat_template_kwargs={})
    (row_by_row, builder_s, builder_cpu) = timed(lambda: [len(builder.build_initial_tokens(m)) for m in student])
    (batched, batched_s, batched_cpu) = timed(lambda: lengths(student))
    if batched != row_by_row:
        raise AssertionError("batched prompt lengths differ from verl's builder row by row")
    n = len(rows)
    return {
        "rows": n, "read_s": read_s, "check_s": check_s, "total_s": read_s + check_s,
        "total_cpu_s": read_cpu + check_cpu, "us_per_row": (read_s + check_s) / n * 1e6,
        "sample": len(student), "builder_us_per_prompt": builder_s / len(student) * 1e6,
        "batched_us_per_prompt": batched_s / len(student) * 1e6,
        "builder_cpu_us_per_prompt": builder_cpu / len(student) * 1e6,
        "batched_cpu_us_per_prompt": batched_cpu / len(student) * 1e6,
        "mean_student_tokens": statistics.mean(batched),
        "problems": len(problems), "problem_rows": len({p.index for p in problems}),
    }


def timed(call):
    """(result, wall seconds, CPU seconds of this process, all threads) of one ``call()``. CPU seconds show the
    work when other processes share the cores; wall seconds < CPU seconds means the tokenizer ran in parallel."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=17000)
    parser.add_argument("--solution-frac", type=float, default=0.3)
    parser.add_argument("--sample", type=int, default=1000, help="rows measured with the row-by-row builder")
    parser.add_argument("--tokenizers", nargs="+", default=["tiny", "bpe32k"], choices=["tiny", "bpe32k"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    rows = synthetic_rows(args.rows, solution_frac=args.solution_frac)
    results = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "load_average_before": os.getloadavg()[0],
               "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset"), "runs": {}}
    print(f"{args.rows} rows, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp_dir:
        for name in args.tokenizers:
            tokenizer = tiny_tokenizer(tmp_dir) if name == "tiny" else bpe32k_tokenizer(rows)
            r = results["runs"][name] = bench(tokenizer, rows, sample=min(args.sample, args.rows))
            print(f"{name:7s} {r['total_s']:.1f} s total, {r['us_per_row']:.0f} µs/row (read {r['read_s']:.1f} s, "
                  f"check {r['check_s']:.1f} s; {r['total_cpu_s']:.1f} s CPU); mean student prompt "
                  f"{r['mean_student_tokens']:.0f} tokens; {r['problem_rows']} rows flagged; student prompts of "
                  f"{r['sample']} rows: builder row by row {r['builder_us_per_prompt']:.0f} µs each "
                  f"({r['builder_cpu_us_per_prompt']:.0f} CPU), batched {r['batched_us_per_prompt']:.0f} µs "
                  f"({r['batched_cpu_us_per_prompt']:.0f} CPU)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
