"""The teacher step's driver-side cost at paper scale, on one CPU core, with no model behind it.

    python scripts/bench_driver.py                        # 2048 rows x 16 k-token responses, >= 32 k-merge BPE
    python scripts/bench_driver.py --tiny                 # CI: 64 rows x 256 tokens, small BPE, every field printed
    python scripts/bench_driver.py --json out.json

Once per training step ``TeacherStep.run`` (rlrt_recipe/integration/teacher.py) runs serially on the driver and
times its own parts (``timing_s/teacher/<part>``: rows, select, decode, contexts — which tokenises every sibling
prompt for its length budget —, batch, forward, outputs, metrics). This script runs it once on a synthetic
paper-scale batch and reports those seconds. ``compute_log_prob`` is ``zero_log_probs``, a function returning
zeros of the nested shape the engine returns (one per input token), so ``forward`` is no model's time and is
left out of the driver figures.

The step (``--tiny`` in brackets): 128 [4] uids x 16 rollouts = 2048 [64] rows, every response 16384 [256]
tokens (the response-length limit, as a long-reasoning policy hits it; EOS last), prompts of ~320 [~120] tokens
(``max_prompt_length`` 1024 [256]), reward 1 on ~50 % of rows at random, ``adv_estimator=rlrt`` with the
recipe's defaults: gate ``correct``, rollout context, random sibling, answer fallback, so the scored rows are the
correct rollouts of mixed groups (1050 [33]) and each teacher prompt carries a whole sibling response.
Text is synthetic and math-like (Zipf-distributed pseudo-words, digits, inline LaTeX); responses are windows of
one encoded text pool, so each decodes to a different text that re-encodes to about its own length.

Tokenizer: a byte-level BPE trained here (nothing downloaded) with Qwen2's pipeline — NFC normaliser, the
``PRETOKENIZE_REGEX`` split of transformers' Qwen2 tokenizer, byte-level alphabet and decoder — with 32768 [2048]
merges and the tiny model's ChatML chat template and special tokens; ``hf_model_type=qwen2`` selects verl's Qwen
continuous-token builder, as in training. It is cached under the work directory.

One core: ``RAYON_NUM_THREADS=1`` and ``TOKENIZERS_PARALLELISM=false`` are set before ``tokenizers`` loads and
``torch.set_num_threads(1)``. The parts are run()'s wall seconds on that one thread; the script also reports the
process CPU seconds of the whole run minus the fake forward's (one-core seconds, whatever the machine's load).

Projection (not measured): the teacher forward of that batch on 8 x H100 at 40 % of 989 TFLOP/s (dense bf16),
with docs/performance.md's FLOP model F = 2·N·ΣL + 2·n_layers·d·ΣL² (``bench_teacher.forward_flops``) over the
teacher rows' ΣL and ΣL² from the step's metrics, N = matmul parameters incl. the LM head and d = the attention
width (heads x head_dim) of Qwen3-4B and Qwen3-8B. Target: driver CPU seconds <= 5 % of that forward.
"""

from __future__ import annotations

import os

# One core for the whole process: both pools are sized when the libraries first load, so set this before imports.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import bisect  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX  # noqa: E402
from verl.trainer.config import AlgoConfig  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402

from rlrt_recipe.config import RlrtConfig  # noqa: E402
from rlrt_recipe.integration.teacher import TeacherBatchLayout, TeacherStep  # noqa: E402
from rlrt_recipe.testing.launch import ROOT  # noqa: E402
from rlrt_recipe.testing.tiny_model import CHATML_TEMPLATE, END_OF_TEXT, IM_END, IM_START  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/ is not a package (verl's wheel owns `scripts`)
from bench_teacher import forward_flops  # noqa: E402

ESTIMATOR = "rlrt"
TARGET_SHARE = 0.05  # driver CPU seconds / projected teacher forward
GPUS, PEAK_FLOPS, MFU = 8, 989e12, 0.40  # H100 SXM dense bf16 peak; 40 % utilisation
TIMING = "timing_s/teacher/"
FORWARD = "forward"  # run()'s part around compute_log_prob: the fake forward here, not driver work
# config.json of Qwen/Qwen3-4B and Qwen/Qwen3-8B (the paper's backbones)
QWEN3 = {
    "Qwen3-4B": dict(hidden=2560, intermediate=9728, layers=36, heads=32, kv_heads=8, head_dim=128, vocab=151936),
    "Qwen3-8B": dict(hidden=4096, intermediate=12288, layers=36, heads=32, kv_heads=8, head_dim=128, vocab=151936),
}
INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


@dataclass(frozen=True)
class DriverSize:
    """One step's shape and the tokenizer's size."""

    uids: int
    rollouts_per_uid: int
    response_length: int  # every response, EOS included (= data.max_response_length)
    max_prompt_length: int
    prompt_words: int  # words of synthetic text per question
    merges: int  # BPE merges of the tokenizer
    pseudo_words: int  # distinct pseudo-words of the synthetic language
    tokenizer_sentences: int  # training text for the tokenizer, in 200-word lines
    pool_tokens: int  # distinct response tokens the responses are windows of
    layout: tuple[int, int]  # (dp_size, max_token_len_per_gpu) of the teacher call (use_dynamic_bsz)
    correct_frac: float = 0.5
    seed: int = 0


FULL = DriverSize(uids=128, rollouts_per_uid=16, response_length=16384, max_prompt_length=1024, prompt_words=100,
                  merges=32768, pseudo_words=60000, tokenizer_sentences=6000, pool_tokens=1 << 20, layout=(8, 34816))
TINY = DriverSize(uids=4, rollouts_per_uid=16, response_length=256, max_prompt_length=256, prompt_words=20,
                  merges=2048, pseudo_words=3000, tokenizer_sentences=300, pool_tokens=4096, layout=(2, 1024))


# ---------------------------------------------------------------------------------------------- synthetic text

class MathText:
    """Math-like synthetic text: Zipf-distributed pseudo-words (weight 1/(rank + 20)) with a few common words,
    ~10 % numbers, ~5 % inline LaTeX, punctuation and paragraph breaks."""

    ONSETS = ("", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
              "br", "cr", "st", "tr", "pl", "gr", "sh", "ch", "th")
    VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "io")
    CODAS = ("", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "x")
    COMMON = ("the", "of", "and", "is", "so", "we", "that", "let", "then", "sum", "number", "equation", "therefore",
              "since", "each", "term", "integer", "wait", "check", "answer", "Let", "So", "Now", "Then", "Wait")

    def __init__(self, n_words: int, seed: int):
        rng = random.Random(seed)
        words: set[str] = set()
        while len(words) < n_words:
            words.add("".join(rng.choice(self.ONSETS) + rng.choice(self.VOWELS) + rng.choice(self.CODAS)
                              for _ in range(rng.randint(1, 4))))
        self.words = list(self.COMMON) + sorted(words)
        self.cum_weights = list(itertools.accumulate(1.0 / (rank + 20) for rank in range(len(self.words))))

    def text(self, n_words: int, rng: random.Random) -> str:
        parts = []
        total = self.cum_weights[-1]
        for _ in range(n_words):
            r = rng.random()
            if r < 0.10:
                part = str(rng.randint(0, 9999))
            elif r < 0.15:
                a, b, k, c = rng.randint(1, 99), rng.randint(2, 99), rng.randint(2, 9), rng.randint(0, 999)
                part = f"$\\frac{{{a}}}{{{b}}} + x^{{{k}}} = {c}$"
            else:
                part = self.words[bisect.bisect(self.cum_weights, rng.random() * total)]
            r = rng.random()
            if r < 0.08:
                part += rng.choice((".", ",", ":", " ="))
            elif r < 0.09:
                part += ".\n\n"
            parts.append(part)
        return " ".join(parts)


# ---------------------------------------------------------------------------------------------- tokenizer

def build_tokenizer(size: DriverSize, language: MathText) -> PreTrainedTokenizerFast:
    """Byte-level BPE with Qwen2's normaliser and pre-tokenizer, ``size.merges`` merges, ChatML specials/template."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    specials = [END_OF_TEXT, IM_START, IM_END]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + len(specials) + size.merges, special_tokens=specials,
                                  initial_alphabet=alphabet, show_progress=False)
    rng = random.Random(size.seed)
    bpe.train_from_iterator((language.text(200, rng) for _ in range(size.tokenizer_sentences)), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=IM_END, pad_token=END_OF_TEXT,
                                   additional_special_tokens=[IM_START], chat_template=CHATML_TEMPLATE)


def load_tokenizer(size: DriverSize, language: MathText, directory: Path) -> tuple[PreTrainedTokenizerFast, int]:
    """The cached tokenizer for ``size`` (trained and saved on first use) and its number of merges."""
    stamp = directory / "bench_driver_tokenizer.json"
    key = {k: getattr(size, k) for k in ("merges", "pseudo_words", "tokenizer_sentences", "seed")}
    if not (stamp.exists() and json.loads(stamp.read_text()) == key):
        build_tokenizer(size, language).save_pretrained(directory)
        stamp.write_text(json.dumps(key))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    merges = len(json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"])
    return tokenizer, merges


# ---------------------------------------------------------------------------------------------- the stored batch

def build_batch(size: DriverSize, step: TeacherStep, language: MathText) -> tuple[TensorDict, list[bool]]:
    """What ``tq.kv_batch_get`` returns for one step (``teacher.INPUT_FIELDS``), with no padding rows."""
    # a stream of its own, not the tokenizer's: the batch is the same whether the tokenizer was cached or trained
    tokenizer, rng = step.tokenizer, random.Random(size.seed + 1)
    gen = torch.Generator().manual_seed(size.seed)
    pool: list[int] = []
    while len(pool) < size.pool_tokens + size.response_length:
        pool += tokenizer.encode(language.text(2000, rng) + " ", add_special_tokens=False)
    pool_ids = torch.tensor(pool, dtype=torch.int64)  # [P]
    T = size.response_length
    eos = torch.tensor([tokenizer.eos_token_id])
    columns: dict[str, list] = {k: [] for k in ("prompts", "responses", "response_mask", "old_log_probs", "rm_scores",
                                                 "raw_prompt", "reward_model", "extra_info", "data_source", "uid")}
    for g in range(size.uids):
        messages = [{"role": "user", "content": f"{language.text(size.prompt_words, rng)} {INSTRUCTION}"}]
        prompt = torch.tensor(step.render(messages), dtype=torch.int64)
        if len(prompt) > size.max_prompt_length:
            raise ValueError(f"synthetic prompt of {len(prompt)} tokens over max_prompt_length="
                             f"{size.max_prompt_length}; lower prompt_words")
        uid, answer = f"{rng.getrandbits(128):032x}", str(rng.randint(0, 999))
        for _ in range(size.rollouts_per_uid):
            start = rng.randrange(len(pool_ids) - T)
            reward = torch.zeros(T)  # [T]
            reward[-1] = float(rng.random() < size.correct_frac)
            columns["prompts"].append(prompt)
            columns["responses"].append(torch.cat([pool_ids[start : start + T - 1], eos]))  # [T], EOS last
            columns["response_mask"].append(torch.ones(T, dtype=torch.int64))
            columns["old_log_probs"].append(-torch.rand(T, generator=gen))  # [T] s
            columns["rm_scores"].append(reward)
            columns["raw_prompt"].append(messages)
            columns["reward_model"].append({"style": "rule", "ground_truth": answer})
            columns["extra_info"].append({"index": g, "split": "train"})
            columns["data_source"].append("bench/synthetic_math")
            columns["uid"].append(uid)
    tensors = ("prompts", "responses", "response_mask", "old_log_probs", "rm_scores")
    data = tu.get_tensordict(
        {k: tu.nested_tensor_from_tensor_list(v) if k in tensors else v for k, v in columns.items()}
    )
    return data, [False] * len(columns["uid"])


def zero_log_probs(td: TensorDict) -> TensorDict:
    """What the engine's ``compute_log_prob`` returns, without a model: a log-prob of 0 for every input token."""
    log_probs = tu.nested_tensor_from_tensor_list([torch.zeros(len(ids)) for ids in td["input_ids"].unbind()])
    return TensorDict({"log_probs": log_probs}, batch_size=[len(td)])  # nested [B, L_b]


# ---------------------------------------------------------------------------------------------- projection

def qwen3_flop_model(c: dict) -> dict:
    """bench_teacher.forward_flops' model dict: matmul parameters incl. the LM head (tied or not, it is a matmul),
    layers, and d = the attention width heads x head_dim (the attention term's width)."""
    attn = c["heads"] * c["head_dim"]
    kv = c["kv_heads"] * c["head_dim"]
    per_layer = 2 * c["hidden"] * attn + 2 * c["hidden"] * kv + 3 * c["hidden"] * c["intermediate"]  # q, o; k, v; MLP
    return {"matmul_params": c["layers"] * per_layer + c["vocab"] * c["hidden"], "layers": c["layers"], "hidden": attn}


def projection(metrics: dict[str, float], driver_cpu_s: float) -> dict:
    """Projected teacher forward seconds per backbone on 8 x H100 at 40 % MFU, and the driver's share of it."""
    throughput = GPUS * MFU * PEAK_FLOPS
    out = {"gpus": GPUS, "peak_flops_per_gpu": PEAK_FLOPS, "mfu": MFU, "backbones": {}}
    for name, config in QWEN3.items():
        model = qwen3_flop_model(config)
        flops = forward_flops(metrics["rlrt/teacher_tokens"], metrics["rlrt/teacher_sq_tokens"], model)
        seconds = flops / throughput
        out["backbones"][name] = {"matmul_params": model["matmul_params"], "teacher_flops": flops,
                                  "forward_s": seconds, "driver_share": driver_cpu_s / seconds,
                                  "target_met": driver_cpu_s / seconds <= TARGET_SHARE}
    return out


# ---------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CI mode: 64 rows x 256 tokens, 2048-merge BPE")
    parser.add_argument("--work-dir", default=None, help="tokenizer cache (default artifacts/bench_driver[_tiny])")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = TINY if args.tiny else FULL
    work = Path(args.work_dir or ROOT / "artifacts" / ("bench_driver_tiny" if args.tiny else "bench_driver"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    language = MathText(size.pseudo_words, size.seed)
    tokenizer, merges = load_tokenizer(size, language, work / "tokenizer")
    rlrt_cfg = RlrtConfig.from_section({}).resolved(ESTIMATOR, max_prompt_length=size.max_prompt_length,
                                                    max_response_length=size.response_length)
    dp_size, max_tokens = size.layout
    step = TeacherStep(
        rlrt_cfg=rlrt_cfg, adv_estimator=ESTIMATOR, tokenizer=tokenizer, hf_model_type="qwen2",
        chat_template_kwargs={}, prompt_length=size.max_prompt_length,
        layout=TeacherBatchLayout(dp_size=dp_size, micro_batch_size_per_gpu=None, max_token_len_per_gpu=max_tokens,
                                  temperature=1.0),
        algorithm_config=AlgoConfig(norm_adv_by_std_in_grpo=True),
    )
    data, is_padding = build_batch(size, step, language)
    setup_s = time.perf_counter() - start
    print(f"setup {setup_s:.1f} s ({len(is_padding)} rows); timing TeacherStep.run", flush=True)

    fake = {"cpu_s": 0.0, "wall_s": 0.0}  # the fake forward alone; run()'s `forward` also slices τ out of it

    def fake_forward(td: TensorDict) -> TensorDict:
        wall, cpu = time.perf_counter(), time.process_time()
        out = zero_log_probs(td)
        fake["wall_s"] += time.perf_counter() - wall
        fake["cpu_s"] += time.process_time() - cpu
        return out

    cpu = time.process_time()
    fields, metrics = step.run(data, is_padding, 1, fake_forward)
    run_cpu_s = time.process_time() - cpu

    parts = {key.removeprefix(TIMING): seconds for key, seconds in metrics.items() if key.startswith(TIMING)}
    driver_cpu_s = run_cpu_s - fake["cpu_s"]
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "rayon_threads": os.environ["RAYON_NUM_THREADS"],
                    "load_average": os.getloadavg()},
        "size": asdict(size),
        "tokenizer": {"merges": merges, "vocab": len(tokenizer),
                      "pre_tokenizer": "Qwen2 PRETOKENIZE_REGEX + ByteLevel"},
        "step": {
            "rows": len(is_padding), "correct_rows": int(fields["correct"].sum()),
            "scored_rows": int(metrics["rlrt/scored_rows"]), "rows_sent": int(metrics["rlrt/teacher_rows_sent"]),
            "contexts": {k.split("/", 2)[2]: v for k, v in metrics.items() if k.startswith("rlrt/context/")},
            "student_tokens": metrics["rlrt/student_tokens"], "teacher_tokens": metrics["rlrt/teacher_tokens"],
            "teacher_sq_tokens": metrics["rlrt/teacher_sq_tokens"],
        },
        "parts_s": parts,  # run()'s own timing_s/teacher/<part>, wall seconds on one thread
        "driver_s": sum(s for name, s in parts.items() if name != FORWARD),
        "run_cpu_s": run_cpu_s,
        "fake_forward": fake,
        "driver_cpu_s": driver_cpu_s,  # run's process CPU seconds minus the fake forward's
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # ru_maxrss is in KiB on Linux
        "projection": projection(metrics, driver_cpu_s),
        "target_share": TARGET_SHARE,
        "setup_s": setup_s,
        "metrics": metrics,
    }
    result["total_s"] = time.perf_counter() - start
    print_result(result)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
        print(f"json: {args.json}")


def print_result(result: dict) -> None:
    size, stepinfo, tok = result["size"], result["step"], result["tokenizer"]
    print(f"machine: {result['machine']}")
    print(f"step: {stepinfo['rows']} rows ({size['uids']} uids x {size['rollouts_per_uid']}) x "
          f"{size['response_length']} response tokens; tokenizer: {tok['merges']} merges, vocab {tok['vocab']} "
          f"({tok['pre_tokenizer']})")
    print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stepinfo.items()))
    print(f"{'TeacherStep.run part (timing_s/teacher)':<44} {'s':>9} {'share':>6}")
    for name, seconds in result["parts_s"].items():
        if name == FORWARD:
            print(f"{name + ' (fake forward + τ slicing, not driver)':<44} {seconds:>9.3f}")
        else:
            print(f"{name:<44} {seconds:>9.3f} {seconds / result['driver_s']:>6.1%}")
    print(f"{'driver total (parts except forward)':<44} {result['driver_s']:>9.3f}")
    print(f"{'driver CPU s (run minus the fake forward)':<44} {result['driver_cpu_s']:>9.3f}"
          f"  (run {result['run_cpu_s']:.3f} CPU s, fake forward {result['fake_forward']['cpu_s']:.3f} CPU s / "
          f"{result['fake_forward']['wall_s']:.3f} s)")
    print(f"peak RSS {result['peak_rss_gib']:.2f} GiB (batch + run)")
    proj = result["projection"]
    print(f"PROJECTION, not measured: teacher forward of the scored rows on {proj['gpus']} x H100 at "
          f"{proj['mfu']:.0%} of {proj['peak_flops_per_gpu'] / 1e12:.0f} TFLOP/s")
    for name, row in proj["backbones"].items():
        print(f"  {name:<9} N={row['matmul_params'] / 1e9:.2f}e9  F={row['teacher_flops']:.3e}  "
              f"forward {row['forward_s']:.1f} s  driver CPU/forward {row['driver_share']:.1%} "
              f"(target <= {result['target_share']:.0%}: {'met' if row['target_met'] else 'MISSED'})")
    print(f"setup {result['setup_s']:.1f} s, total {result['total_s']:.1f} s")


if __name__ == "__main__":
    main()
