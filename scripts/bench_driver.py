"""The teacher step's driver-side cost at paper scale, on one CPU core, with no model behind it.

    python scripts/bench_driver.py                        # 2048 rows x 16 k-token responses, >= 32 k-merge BPE
    python scripts/bench_driver.py --tiny                 # CI: 64 rows x 256 tokens, small BPE, every field printed
    python scripts/bench_driver.py --json out.json

Once per training step ``TeacherStep.run`` (rlrt_recipe/integration/teacher.py) runs serially on the driver:
re-render and check the student prompts, choose the rows to score, decode the responses that need text, build the privileged
teacher contexts (``privileged.teacher_contexts``, which tokenises every sibling prompt for its length budget),
tokenise the teacher prompts, build the teacher TensorDict, then collect the fields and the ``rlrt/*`` metrics.
This script times that part alone: ``compute_log_prob`` is ``zero_log_probs``, a function returning zeros of the
nested shape the actor returns (one per input token), and its own time is reported apart and left out.

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
``torch.set_num_threads(1)``. Per part the script reports process CPU seconds (one thread, so one-core seconds)
and wall seconds, each as the part's self time (a part nested in another, such as the token counting inside
``teacher_contexts`` or the fake forward inside ``score``, is subtracted from it). The split comes from
``timed_parts``, which calls TeacherStep's methods and the privileged functions in the order ``run`` does; the
script then runs ``TeacherStep.run`` itself on the same batch, checks its fields and metrics equal the split's,
and reports its driver seconds (wall minus the fake forward) next to the sum of the parts. One what-if is
measured apart: the row fields with each non-tensor column read once (``row_infos_columns_once``).

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
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from tensordict import TensorDict  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX  # noqa: E402
from verl.trainer.config import AlgoConfig  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402

from rlrt_recipe import privileged  # noqa: E402
from rlrt_recipe.config import RlrtConfig  # noqa: E402
from rlrt_recipe.signals import scored_log_prob_means  # noqa: E402
from rlrt_recipe.integration.teacher import TeacherBatchLayout, TeacherStep, _nested  # noqa: E402
from rlrt_recipe.testing.launch import ROOT  # noqa: E402
from rlrt_recipe.testing.tiny_model import CHATML_TEMPLATE, END_OF_TEXT, IM_END, IM_START  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/ is not a package (verl's wheel owns `scripts`)
from bench_teacher import forward_flops  # noqa: E402

ESTIMATOR = "rlrt"
TARGET_SHARE = 0.05  # driver CPU seconds / projected teacher forward
GPUS, PEAK_FLOPS, MFU = 8, 989e12, 0.40  # H100 SXM dense bf16 peak; 40 % utilisation
FORWARD = "fake forward (not driver)"
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
        prompt = torch.tensor(step.builder.build_initial_tokens(messages), dtype=torch.int64)
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
    """What the actor's ``compute_log_prob`` returns, without a model: a log-prob of 0 for every input token."""
    input_ids = td["input_ids"]  # nested [B, L_b]
    values = torch.zeros(input_ids.values().shape[0])  # [ΣL]
    log_probs = torch.nested.nested_tensor_from_jagged(values, offsets=input_ids.offsets())
    return TensorDict({"log_probs": log_probs}, batch_size=[len(td)])


# ---------------------------------------------------------------------------------------------- timing

class Clock:
    """Self time per named part, in wall and process CPU seconds: a part entered while another runs is
    subtracted from the outer one, so the parts add up to the whole."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._open: list[list[float]] = []  # per open part: [wall start, cpu start, wall of inner parts, cpu of inner]

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        self.wall.setdefault(name, 0.0)  # report the parts in the order they start
        self.cpu.setdefault(name, 0.0)
        frame = [time.perf_counter(), time.process_time(), 0.0, 0.0]
        self._open.append(frame)
        try:
            yield
        finally:
            self._open.pop()
            wall, cpu = time.perf_counter() - frame[0], time.process_time() - frame[1]
            self.wall[name] += wall - frame[2]
            self.cpu[name] += cpu - frame[3]
            if self._open:
                self._open[-1][2] += wall
                self._open[-1][3] += cpu

    def timed(self, name: str, fn: Callable) -> Callable:
        """``fn`` with every call counted as part ``name``."""
        def call(*args, **kwargs):
            with self.part(name):
                return fn(*args, **kwargs)
        return call


def timed_parts(step: TeacherStep, data: TensorDict, is_padding: list[bool], step_no: int,
                compute_log_prob: Callable) -> tuple[TensorDict, dict[str, float], Clock, dict, list]:
    """``TeacherStep.run``, part by part: the same methods and privileged calls in the same order, each timed."""
    clock = Clock()
    step._rendered = {}
    n = len(is_padding)
    with clock.part("row fields"):
        real = torch.tensor([not p for p in is_padding], dtype=torch.bool)  # [B]
        rows = [
            privileged.RowInfo.from_fields(
                i, raw_prompt=data["raw_prompt"][i], reward_model=data["reward_model"][i],
                extra_info=data["extra_info"][i], data_source=data["data_source"][i], uid=data["uid"][i],
            )
            for i in range(n)
        ]
        prompts, responses = data["prompts"].unbind(), data["responses"].unbind()
    with clock.part("student prompt re-render check"):
        step.check_student_prompts(rows, prompts, real)
    with clock.part("padded tensors, correct"):
        padded = data.select("rm_scores", "response_mask", "old_log_probs").to_padded_tensor()
        response_mask = padded["response_mask"]  # [B, T]
        scores = padded["rm_scores"].float().sum(-1)  # [B]
        correct = (scores >= step.cfg.correct_threshold) & real  # [B]
    with clock.part("row selection (GRPO)"):
        scored = step.rows_to_score(padded["rm_scores"], response_mask, rows, real, correct, step_no)  # [B]
    with clock.part("response decode"):
        probe = step.leak_probe_rows(real, step_no)
        wanted = step.sibling_rows(rows, correct, scored) + probe
        texts = step.decode(responses, wanted)
    with clock.part("teacher contexts"):
        contexts = privileged.teacher_contexts(
            rows, context=step.context, scored=scored.tolist(),
            count_tokens=clock.timed("teacher prompt tokenisation", step._count_tokens),
            budget=step.cfg.max_privileged_prompt_length, templates=step.cfg.privileged_templates,
            correct=correct.tolist(), texts=texts, step=step_no, sibling_choice=step.cfg.sibling_choice,
            sibling_fallback=step.cfg.sibling_fallback, sibling_strip_thinking=step.cfg.sibling_strip_thinking,
        )
        teacher_rows = [i for i, ctx in enumerate(contexts) if ctx.messages is not None]
    with clock.part("teacher prompt tokenisation"):
        teacher_prompts = [step._render(contexts[i].messages) for i in teacher_rows]
    with clock.part("teacher TensorDict (score)"):
        scored_log_probs = step.score(teacher_prompts, [responses[i] for i in teacher_rows],
                                      clock.timed(FORWARD, compute_log_prob))
    with clock.part("output fields, finite check"):
        old = data["old_log_probs"].unbind()
        teacher = list(old)
        for i, log_probs in zip(teacher_rows, scored_log_probs):
            teacher[i] = log_probs.to(old[i].dtype)
        has_teacher = torch.zeros(n, dtype=torch.bool)
        has_teacher[teacher_rows] = True
        step.check_finite(teacher, old, response_mask, rows, has_teacher)
        step.warn_once_if_16_bit(data["old_log_probs"].dtype, *(lp.dtype for lp in scored_log_probs[:1]))
        fields = TensorDict(
            {"teacher_log_probs": _nested(teacher), "has_teacher": has_teacher, "correct": correct}, batch_size=[n]
        )
    with clock.part("metrics (incl. leak-cue probe)"):
        metrics = step.metrics(
            rows=rows, real=real, correct=correct, scored=scored, contexts=contexts,
            probe_texts=[texts[i] for i in probe], scores=scores, teacher_prompts=teacher_prompts,
            teacher_rows=teacher_rows, prompts=prompts, response_mask=response_mask,
        )
        means = scored_log_prob_means(_nested(teacher).to_padded_tensor(0.0), padded["old_log_probs"], response_mask,
                                      has_teacher)
        metrics.update({f"rlrt/{key}": value for key, value in means.items()})
    start = time.process_time()
    privileged.leak_cue_rate([texts[i] for i in probe], privileged.CUE_PHRASES[step.context])  # inside metrics
    facts = {"rows_decoded": len(set(wanted)), "leak_probe_rows": len(probe),
             "leak_probe_cpu_s": time.process_time() - start}
    return fields, metrics, clock, facts, rows


def row_infos_columns_once(data: TensorDict, n: int) -> list[privileged.RowInfo]:
    """The "row fields" part with each non-tensor column read once. ``data[key]`` rebuilds the whole column on every
    access, so ``run``'s ``data[key][i]`` per row is quadratic in the batch; this is the part's cost without that."""
    columns = {key: data[key] for key in ("raw_prompt", "reward_model", "extra_info", "data_source", "uid")}
    return [
        privileged.RowInfo.from_fields(
            i, raw_prompt=columns["raw_prompt"][i], reward_model=columns["reward_model"][i],
            extra_info=columns["extra_info"][i], data_source=columns["data_source"][i], uid=columns["uid"][i],
        )
        for i in range(n)
    ]


def same_outputs(a: tuple[TensorDict, dict], b: tuple[TensorDict, dict]) -> str | None:
    """None if the fields and (shared, non-timing) metrics of two runs are equal, else what differs."""
    (fields_a, metrics_a), (fields_b, metrics_b) = a, b
    for key in ("has_teacher", "correct"):
        if not torch.equal(fields_a[key], fields_b[key]):
            return key
    if not torch.equal(fields_a["teacher_log_probs"].values(), fields_b["teacher_log_probs"].values()):
        return "teacher_log_probs"
    for key in sorted(set(metrics_a) & set(metrics_b) - {"rlrt/teacher_forward_s"}):
        if metrics_a[key] != metrics_b[key]:
            return f"{key}: {metrics_a[key]} != {metrics_b[key]}"
    return None


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
    print(f"setup {setup_s:.1f} s ({len(is_padding)} rows); timing the parts", flush=True)

    fields, metrics, clock, facts, rows = timed_parts(step, data, is_padding, 1, zero_log_probs)
    print("timing TeacherStep.run", flush=True)
    run_clock = Clock()
    with run_clock.part("TeacherStep.run"):
        run_out = step.run(data, is_padding, 1, run_clock.timed(FORWARD, zero_log_probs))
    mismatch = same_outputs((fields, metrics), run_out)
    if mismatch:
        raise SystemExit(f"timed_parts no longer mirrors TeacherStep.run ({mismatch} differs); update it to the "
                         "current run() before reading its split")
    what_if = Clock()
    with what_if.part("row fields, each column read once"):
        if row_infos_columns_once(data, len(is_padding)) != rows:
            raise SystemExit("row_infos_columns_once builds other rows than TeacherStep.run")

    parts = {name: {"cpu_s": clock.cpu[name], "wall_s": clock.wall[name]} for name in clock.cpu}
    driver_cpu = sum(p["cpu_s"] for name, p in parts.items() if name != FORWARD)
    driver_wall = sum(p["wall_s"] for name, p in parts.items() if name != FORWARD)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "rayon_threads": os.environ["RAYON_NUM_THREADS"],
                    "load_average": os.getloadavg()},
        "size": asdict(size),
        "tokenizer": {"merges": merges, "vocab": len(tokenizer),
                      "pre_tokenizer": "Qwen2 PRETOKENIZE_REGEX + ByteLevel"},
        "step": {
            "rows": len(is_padding), "correct_rows": int(fields["correct"].sum()),
            "scored_rows": int(metrics["rlrt/scored_rows"]),
            "contexts": {k.split("/", 2)[2]: v for k, v in metrics.items() if k.startswith("rlrt/context/")},
            "student_tokens": metrics["rlrt/student_tokens"], "teacher_tokens": metrics["rlrt/teacher_tokens"],
            "teacher_sq_tokens": metrics["rlrt/teacher_sq_tokens"], **facts,
        },
        "parts": parts,
        "driver_cpu_s": driver_cpu,
        "driver_wall_s": driver_wall,
        "run": {"driver_cpu_s": run_clock.cpu["TeacherStep.run"], "driver_wall_s": run_clock.wall["TeacherStep.run"],
                "fake_forward_wall_s": run_clock.wall[FORWARD], "outputs_equal_split": True},
        "what_if": {name: {"cpu_s": what_if.cpu[name], "wall_s": what_if.wall[name]} for name in what_if.cpu},
        "projection": projection(metrics, driver_cpu),
        "target_share": TARGET_SHARE,
        "setup_s": setup_s,
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
    print(f"{'part (self time)':<36} {'cpu s':>9} {'wall s':>9} {'share':>6}")
    for name, part in result["parts"].items():
        share = "" if name == FORWARD else f"{part['cpu_s'] / result['driver_cpu_s']:>6.1%}"
        print(f"{name:<36} {part['cpu_s']:>9.3f} {part['wall_s']:>9.3f} {share:>6}")
    print(f"{'driver total (parts, no forward)':<36} {result['driver_cpu_s']:>9.3f} {result['driver_wall_s']:>9.3f}")
    run = result["run"]
    print(f"{'TeacherStep.run (no forward)':<36} {run['driver_cpu_s']:>9.3f} {run['driver_wall_s']:>9.3f}"
          f"  (outputs equal the split's: {run['outputs_equal_split']})")
    for name, part in result["what_if"].items():
        print(f"what if: {name} (vs 'row fields' above): {part['cpu_s']:.3f} cpu s, {part['wall_s']:.3f} wall s")
    proj = result["projection"]
    print(f"PROJECTION, not measured: teacher forward of the scored rows on {proj['gpus']} x H100 at "
          f"{proj['mfu']:.0%} of {proj['peak_flops_per_gpu'] / 1e12:.0f} TFLOP/s")
    for name, row in proj["backbones"].items():
        print(f"  {name:<9} N={row['matmul_params'] / 1e9:.2f}e9  F={row['teacher_flops']:.3e}  "
              f"forward {row['forward_s']:.1f} s  driver/forward {row['driver_share']:.1%} "
              f"(target <= {result['target_share']:.0%}: {'met' if row['target_met'] else 'MISSED'})")
    print(f"setup {result['setup_s']:.1f} s, total {result['total_s']:.1f} s")


if __name__ == "__main__":
    main()
