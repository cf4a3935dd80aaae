"""A tiny random-weight Qwen2-architecture model with a tokenizer trained locally, saved like a hub model.

``build_tiny_model(out_dir, TinyModelSpec(...))`` writes ``config.json``, the weights, a BPE tokenizer
(byte-level, trained in well under a second on arithmetic text) with a chat template, and
``generation_config.json`` whose EOS ids are ``<|im_end|>`` and ``<|endoftext|>``. The default spec has
about 0.1 M parameters; raise ``hidden_size``/``num_layers``/``vocab_size`` for benchmarks (e.g.
hidden 512, 4 layers, vocab 8192: about 21 M).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from rlrt_recipe.testing.data import math_rows

END_OF_TEXT, IM_START, IM_END, THINK_START, THINK_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, THINK_START, THINK_END]
# Qwen3 registers its thinking tags as added tokens with "special": false, so decoding with
# skip_special_tokens=True keeps them (the sibling text then carries <think>…</think>, as on Qwen3).
PLAIN_ADDED_TOKENS = [THINK_START, THINK_END]

# ChatML, as Qwen2/Qwen2.5 instruct models format chats (without their default system prompt).
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Qwen3-style: ChatML; assistant turns before the last user turn lose their <think> block; with
# enable_thinking=false the generation prompt closes an empty think block so the model answers directly.
QWEN3_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1) -%}"
    "{%- for message in messages -%}{%- if message['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- for message in messages -%}"
    "{%- set content = message['content'] -%}"
    "{%- if message['role'] == 'assistant' and loop.index0 < ns.last_user and '</think>' in content -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}{%- endif -%}"
)

CHAT_TEMPLATES = {"chatml": CHATML_TEMPLATE, "qwen3": QWEN3_TEMPLATE}


@dataclass(frozen=True)
class TinyModelSpec:
    """Size and format of a tiny model. ``vocab_size`` is the embedding size; the BPE vocabulary trained
    on the small corpus may be smaller (the rest are unused rows, as in real padded vocabularies)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int | None = None  # default: 2 * hidden_size
    vocab_size: int = 512
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = True  # as Qwen2.5-0.5B/1.5B
    chat_template: str = "chatml"  # "chatml" or "qwen3"
    seed: int = 0

    def __post_init__(self):
        if self.chat_template not in CHAT_TEMPLATES:
            raise ValueError(f"chat_template must be one of {sorted(CHAT_TEMPLATES)}, got {self.chat_template!r}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads}) and "
                f"num_heads by num_kv_heads ({self.num_kv_heads})"
            )
        if self.vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (bytes + added tokens)")


def _training_corpus(seed: int) -> list[str]:
    """Text like what the tokenizer will see: the tiny math prompts and solutions in chat format."""
    corpus = []
    for row in math_rows(2000, seed=seed):
        corpus.append(f"{IM_START}user\n{row['prompt'][0]['content']}{IM_END}\n")
        corpus.append(f"{IM_START}assistant\n{THINK_START}\n{row['extra_info']['solution']}\n{THINK_END}\n{IM_END}\n")
    return corpus


def build_tokenizer(spec: TinyModelSpec) -> PreTrainedTokenizerFast:
    """The tokenizer of a tiny text model: ``train_tokenizer`` with the spec's size, seed and chat template.

    Saved beside a Qwen2 config (``build_tiny_model``), it loads back through ``AutoTokenizer`` — as verl loads it
    — as transformers' Qwen2 tokenizer, whose pre-tokenizer spells numbers digit by digit (" 17" → "Ġ", "1", "7";
    this object keeps "Ġ17"): count tokens on the reloaded tokenizer (tests/test_explore_task.py pins both)."""
    return train_tokenizer(spec.vocab_size, CHAT_TEMPLATES[spec.chat_template],
                           model_max_length=spec.max_position_embeddings, seed=spec.seed)


def train_tokenizer(vocab_size: int, chat_template: str, *, model_max_length: int, seed: int,
                    extra_special_tokens: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes) with ChatML special tokens (then ``extra_special_tokens``, e.g.
    Qwen-VL's vision tokens), ``<think>``/``</think>`` as plain added tokens (as Qwen3's) and ``chat_template``;
    ``vocab_size`` ids in all."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + list(extra_special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_training_corpus(seed), trainer)
    # Re-adding the trained thinking tags keeps their ids and clears their "special" flag.
    bpe.add_tokens([AddedToken(token, special=False, normalized=False) for token in PLAIN_ADDED_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        additional_special_tokens=[IM_START, *extra_special_tokens],
        chat_template=chat_template,
        model_max_length=model_max_length,
    )


def build_tiny_model(out_dir: str | os.PathLike, spec: TinyModelSpec = TinyModelSpec()) -> str:
    """Write a random-weight Qwen2 model, its tokenizer and generation config to ``out_dir``; return it."""
    out_dir = os.fspath(out_dir)
    tokenizer = build_tokenizer(spec)
    eos_ids = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(END_OF_TEXT)]
    config = Qwen2Config(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size or 2 * spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=eos_ids[1],
        eos_token_id=eos_ids[0],
        pad_token_id=eos_ids[1],
    )
    torch.manual_seed(spec.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=eos_ids[1], bos_token_id=eos_ids[1])
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "tiny_model_spec.txt"), "w", encoding="utf-8") as fh:
        fh.write(repr(dataclasses.asdict(spec)) + "\n")
    return out_dir


def num_parameters(model_dir: str | os.PathLike) -> int:
    """Parameter count of a saved model (tied weights counted once)."""
    model = Qwen2ForCausalLM.from_pretrained(os.fspath(model_dir))
    return sum(p.numel() for p in model.parameters())
