"""A seeded supervised warm start of a few-million-parameter model on the toy task (CPU, about a minute).

The model is ``build_tiny_model(TOY_SPEC)`` (random Qwen2 weights, locally trained tokenizer), then trained
with plain next-token cross-entropy on the response tokens of chat-formatted examples:

    L(θ) = − (1 / Σ_i |y_i|) · Σ_i Σ_t log π_θ(y_{i,t} | x_i, y_{i,<t})        y_i = "\\boxed{a+b}" <|im_end|>

x_i is the student prompt (probability 1 − ``privileged_frac``) or a teacher prompt holding the *correct*
reference — the answer, the worked solution or a correct rollout, rendered with
``rlrt_recipe.privileged``'s default templates — so the model learns to read context, as an instruct
model does. Prompts are rendered with verl's continuous-token builder, as the trainer renders them. A few
hundred steps leave the student right on part of the problems only (``sample_accuracy``), which is what
RL needs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, GenerationConfig, Qwen2ForCausalLM

from rlrt_recipe import privileged
from rlrt_recipe.integration.teacher import PromptRenderer
from rlrt_recipe.reward import compute_score
from rlrt_recipe.testing import TinyModelSpec, build_tiny_model
from rlrt_toy import task

#: ≈ 0.56 M parameters (hidden 128, 2 layers, MLP 512, vocabulary 512): a step costs ~0.3 s on one shared core.
TOY_SPEC = TinyModelSpec(hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=512,
                         vocab_size=512, max_position_embeddings=512)


@dataclass(frozen=True)
class WarmStartConfig:
    """Warm-start hyper-parameters. The defaults take 45–140 s on 2 cores shared with other jobs and leave
    the student right on ~15 % of sampled answers while the teacher reads its context (semantic check)."""

    steps: int = 400  # optimizer steps
    batch_size: int = 16  # examples per step
    lr: float = 5e-3  # AdamW, linear warm-up over the first 10 % of steps, then constant
    privileged_frac: float = 0.7  # share of examples whose prompt holds a correct reference
    seed: int = 0
    threads: int = 1  # torch CPU threads; on cores shared with other jobs, 2 threads ran 5-10x slower than 1


def row_info(problem: task.Problem, index: int = 0) -> privileged.RowInfo:
    """The ``RowInfo`` the trainer would extract from this problem's dataset row."""
    row = task.row(problem, index, "toy")
    return privileged.RowInfo.from_fields(
        index, raw_prompt=row["prompt"], reward_model=row["reward_model"], extra_info=row["extra_info"],
        data_source=row["data_source"], uid=str(index),
    )


def privileged_messages(problem: task.Problem, kind: str, text: str | None = None,
                        templates: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
    """The teacher messages of ``problem`` with context ``kind`` (answer, solution, rollout).

    ``text`` defaults to the correct context: the answer, the worked solution, the reference response.
    """
    default = {"answer": task.answer(problem), "solution": task.solution(problem), "rollout": task.response(problem)}
    return privileged.teacher_messages(row_info(problem), kind, default[kind] if text is None else text,
                                       privileged.validate_templates(templates))


def response_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a response as the policy emits it: the text, then ``<|im_end|>`` (the EOS)."""
    return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]


def warm_start_examples(tokenizer: Any, render: PromptRenderer, problems: list[task.Problem]) -> dict[str, list]:
    """``{"student": [(prompt_ids, response_ids)], "privileged": [...]}`` for every problem (3 contexts each)."""
    examples: dict[str, list] = {"student": [], "privileged": []}
    for problem in problems:
        target = response_ids(tokenizer, task.response(problem))
        examples["student"].append((render([{"role": "user", "content": task.question(problem)}]), target))
        for kind in privileged.TEMPLATE_KINDS:
            examples["privileged"].append((render(privileged_messages(problem, kind)), target))
    return examples


def _batch(examples: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (−100 on prompt and padding) [B, L]."""
    length = max(len(p) + len(r) for p, r in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)  # [B, L]
    mask = torch.zeros_like(ids)  # [B, L]
    labels = torch.full_like(ids, -100)  # [B, L]
    for i, (prompt, response) in enumerate(examples):
        n = len(prompt) + len(response)
        ids[i, :n] = torch.tensor(prompt + response)
        mask[i, :n] = 1
        labels[i, len(prompt):n] = torch.tensor(response)
    return ids, mask, labels


def fit(model: torch.nn.Module, *, steps: int, lr: float, seed: int,
        step_loss: Callable[[random.Random], torch.Tensor], log_every: int = 0) -> list[float]:
    """``steps`` AdamW steps (no weight decay; lr warmed up linearly over the first 10 % of steps, then constant),
    each on the gradient ``step_loss(rng)`` leaves: it draws a batch with ``rng`` (``random.Random(seed)``; torch is
    seeded with ``seed`` too), runs the backward pass and returns the batch's loss (detached). Returns the loss of
    every step; the model is left in eval mode."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / warmup))
    model.train()
    losses = []
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = step_loss(rng)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"warm start step {step + 1}/{steps}: loss {loss.item():.3f}", flush=True)
    model.eval()
    return losses


def train(model: Qwen2ForCausalLM, tokenizer: Any, render: PromptRenderer, cfg: WarmStartConfig,
          problems: list[task.Problem], log_every: int = 0) -> list[float]:
    """``fit`` with response-token cross-entropy (mean over the batch's response tokens) on batches of
    ``cfg.batch_size`` examples, each privileged with probability ``cfg.privileged_frac``; returns every loss."""
    examples = warm_start_examples(tokenizer, render, problems)

    def step_loss(rng: random.Random) -> torch.Tensor:
        batch = [rng.choice(examples["privileged" if rng.random() < cfg.privileged_frac else "student"])
                 for _ in range(cfg.batch_size)]
        ids, mask, labels = _batch(batch, tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss  # mean over response tokens
        loss.backward()
        return loss.detach()

    return fit(model, steps=cfg.steps, lr=cfg.lr, seed=cfg.seed, step_loss=step_loss, log_every=log_every)


#: The warm-start config fields every warm-start command takes as options (``--batch-size`` for ``batch_size``).
CONFIG_OPTIONS = ("steps", "batch_size", "lr", "privileged_frac", "seed")


def add_warm_start_arguments(parser: argparse.ArgumentParser, defaults: Any) -> argparse.ArgumentParser:
    """The options every warm-start command takes: ``--out``, ``--data-dir``, ``--repeat`` and the
    ``CONFIG_OPTIONS`` fields of a warm-start config, defaulting to ``defaults``'; ``config_from_arguments``
    reads the config back."""
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--data-dir", default=None, help="also write train.parquet and heldout.parquet here")
    parser.add_argument("--repeat", type=int, default=16, help="copies of each RL problem in train.parquet")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--privileged-frac", type=float, default=defaults.privileged_frac)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    return parser


def config_from_arguments(config_class: type, args: argparse.Namespace) -> Any:
    """``config_class`` with the ``CONFIG_OPTIONS`` fields ``add_warm_start_arguments`` parsed, the others at their
    defaults."""
    return config_class(**{name: getattr(args, name) for name in CONFIG_OPTIONS})


@torch.no_grad()
def sample_responses(model: Qwen2ForCausalLM, tokenizer: Any, prompts: list[list[int]], *, temperature: float = 1.0,
                     max_new_tokens: int = 12, seed: int = 0) -> list[str]:
    """Sample one response per prompt with ``model.generate`` — ancestral sampling from softmax(logits / T), no
    top-k/top-p, as verl's rollout at ``temperature`` — decoded up to EOS. Prompts of equal length are batched,
    so nothing is padded; the global RNG is seeded inside a fork and left as it was."""
    eos = tokenizer.eos_token_id
    config = GenerationConfig(do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                              max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=eos)
    by_length: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(i)
    texts: list[str] = [""] * len(prompts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for rows in by_length.values():
            ids = torch.tensor([prompts[i] for i in rows])  # [B, P]
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)  # [B, P + R]
            for i, tokens in zip(rows, out[:, ids.shape[1]:].tolist()):
                texts[i] = tokenizer.decode(tokens[: tokens.index(eos)] if eos in tokens else tokens,
                                            skip_special_tokens=True)
    return texts


def sample_accuracy(model: Qwen2ForCausalLM, tokenizer: Any, render: PromptRenderer, problems: list[task.Problem], *,
                    samples: int = 4, temperature: float = 1.0, seed: int = 0) -> float:
    """Mean reward (``rlrt_recipe.reward``, math-verify on the last ``\\boxed{}``) of ``samples`` sampled
    student responses per problem: the policy's pass rate at ``temperature``."""
    prompts = [render([{"role": "user", "content": task.question(p)}]) for p in problems] * samples
    texts = sample_responses(model, tokenizer, prompts, temperature=temperature, seed=seed)
    gold = [task.answer(p) for p in problems] * samples
    return sum(compute_score(task.DATA_SOURCE, t, g)["score"] for t, g in zip(texts, gold)) / len(texts)


def load(model_dir: str | os.PathLike) -> tuple[Qwen2ForCausalLM, Any, PromptRenderer]:
    """The saved model (eval mode, fp32), its tokenizer and a prompt renderer."""
    model_dir = os.fspath(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = Qwen2ForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="sdpa").eval()
    model_type = AutoConfig.from_pretrained(model_dir).model_type
    # rendered as the trainer renders prompts, data.apply_chat_template_kwargs empty
    return model, tokenizer, PromptRenderer(tokenizer, hf_model_type=model_type, chat_template_kwargs={})


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU thread count set to ``threads`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_and_train(out_dir: str | os.PathLike, spec: TinyModelSpec, cfg: Any,
                    train_on: Callable[[Qwen2ForCausalLM, Any, PromptRenderer], list[float]]
                    ) -> tuple[Qwen2ForCausalLM, Any, PromptRenderer, dict[str, Any]]:
    """Build ``spec`` (seeded with ``cfg.seed``) in ``out_dir``, train it with ``train_on(model, tokenizer, render)``
    (the loss of every step), save it and ``cfg`` (``warm_start.txt``, what the scripts test for) there; return the
    trained model, its tokenizer and renderer, and the summary's training figures: parameters, the first loss and
    the mean of the last 10."""
    out_dir = os.fspath(out_dir)
    build_tiny_model(out_dir, dataclasses.replace(spec, seed=cfg.seed))
    model, tokenizer, render = load(out_dir)
    losses = train_on(model, tokenizer, render)
    model.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "warm_start.txt"), "w", encoding="utf-8") as fh:
        fh.write(repr(dataclasses.asdict(cfg)) + "\n")
    summary = {"parameters": sum(p.numel() for p in model.parameters()), "loss_first": losses[0],
               "loss_last": sum(losses[-10:]) / len(losses[-10:])}
    return model, tokenizer, render, summary


def warm_start(out_dir: str | os.PathLike, cfg: WarmStartConfig = WarmStartConfig(),
               spec: TinyModelSpec = TOY_SPEC, log_every: int = 0) -> dict[str, Any]:
    """Build ``spec`` in ``out_dir``, warm-start it on the train problems, save it there; return a summary
    (parameters, first/last loss, pass rate on train and held-out problems at temperature 1)."""
    splits = task.split_problems()
    with torch_threads(cfg.threads):
        model, tokenizer, render, summary = build_and_train(
            out_dir, spec, cfg, lambda m, t, r: train(m, t, r, cfg, splits["train"], log_every))
        return {
            **summary,
            "pass_rate_train": sample_accuracy(model, tokenizer, render, splits["train"], seed=cfg.seed),
            "pass_rate_heldout": sample_accuracy(model, tokenizer, render, splits["heldout"], seed=cfg.seed),
        }
