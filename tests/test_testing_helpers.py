"""rlrt_recipe.testing: the seeded test reward, the tiny models' chat templates, the tiny parquet."""

from __future__ import annotations

import pandas as pd
import pytest
from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer, GenerationConfig

from rlrt_recipe.testing import DATA_SOURCE, TinyVLSpec, build_tiny_vl_model, compute_score
from rlrt_recipe.testing.tiny_model import num_parameters
from rlrt_recipe.testing.tiny_vl_model import VISION_TOKENS


def test_seeded_reward_marks_about_half_deterministically():
    """The e2e GRPO checks need non-zero advantages on a random model: about half correct, repeatably."""
    texts = [f"response {i}" for i in range(400)]
    scores = [compute_score(DATA_SOURCE, text, "7")["score"] for text in texts]
    assert 0.4 < sum(scores) / len(scores) < 0.6
    assert scores == [compute_score(DATA_SOURCE, text, "7")["score"] for text in texts]
    other_seed = [compute_score(DATA_SOURCE, text, "7", seed=1)["score"] for text in texts]
    assert other_seed != scores
    result = compute_score(DATA_SOURCE, texts[0], "7", extra_info={"index": 0})
    assert result == {"score": scores[0], "acc": scores[0]}


def test_chatml_template_and_eos(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.decode(tokenizer("What is 17 * 3?")["input_ids"]) == "What is 17 * 3?"
    assert num_parameters(tiny_model_dir) == 107_072


def test_qwen3_template_handles_enable_thinking(qwen3_model_dir):
    """Qwen3 semantics: enable_thinking=False closes an empty think block; earlier turns lose their thoughts."""
    tokenizer = AutoTokenizer.from_pretrained(qwen3_model_dir)
    user = [{"role": "user", "content": "Hi"}]
    thinking = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    direct = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False, enable_thinking=False)
    assert thinking == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert direct == thinking + "<think>\n\n</think>\n\n"
    history = user + [{"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello"}, {"role": "user", "content": "2+2?"}]
    rendered = tokenizer.apply_chat_template(history, add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>assistant\nHello<|im_end|>" in rendered and "hmm" not in rendered
    assert tokenizer("<think>")["input_ids"] == [tokenizer.convert_tokens_to_ids("<think>")]  # one special token


def test_tiny_parquet_has_verls_rl_schema(tiny_data_dir):
    frame = pd.read_parquet(f"{tiny_data_dir}/train.parquet")
    assert list(frame.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    row = frame.iloc[0]
    assert row["prompt"][0]["role"] == "user"
    assert row["reward_model"]["style"] == "rule"
    assert row["extra_info"]["solution"].endswith(f"#### {row['reward_model']['ground_truth']}")
    assert list(frame["extra_info"].map(lambda info: info["index"])) == list(range(16))


def test_tiny_vl_model_ids_agree_and_size(tiny_vl_model_dir):
    """The model scatters image features by config.image_token_id and the processor expands the tokenizer's
    <|image_pad|>: they must be one id; EOS as the text model's; about 0.22 M parameters, embeddings tied."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_vl_model_dir)
    config = AutoConfig.from_pretrained(tiny_vl_model_dir)
    vision_ids = tokenizer.convert_tokens_to_ids(VISION_TOKENS)
    assert [config.vision_start_token_id, config.vision_end_token_id, config.image_token_id, config.video_token_id] == vision_ids
    assert tokenizer.decode(vision_ids, skip_special_tokens=True) == ""  # verl strips them before re-processing
    assert GenerationConfig.from_pretrained(tiny_vl_model_dir).eos_token_id == tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    model = AutoModelForImageTextToText.from_pretrained(tiny_vl_model_dir)  # the class verl's actor uses
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration" and config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) == 225_056


def test_tiny_vl_builder_refuses_an_mrope_section_that_does_not_fill_the_head(tmp_path):
    """transformers accepts any mrope_section and silently leaves part of each head with 1-D rotary."""
    with pytest.raises(AssertionError, match=r"must sum to head_dim // 2 = 8"):
        build_tiny_vl_model(tmp_path, TinyVLSpec(mrope_section=(4, 2, 1)))
