"""Shared fixtures: a tiny random Qwen2 model and tiny math parquet files, built once per session."""

from __future__ import annotations

import pytest

from rlrt_recipe.testing import TinyModelSpec, build_tiny_model, write_math_parquet


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Default TinyModelSpec (≈0.1 M parameters, ChatML template, tied embeddings)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), TinyModelSpec())


@pytest.fixture(scope="session")
def qwen3_model_dir(tmp_path_factory) -> str:
    """Same size, Qwen3-style chat template (``enable_thinking``, ``<think>`` tags)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen3_model"), TinyModelSpec(chat_template="qwen3"))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """``train.parquet`` (16 rows) and ``test.parquet`` (4 rows) in verl's RL schema."""
    data_dir = tmp_path_factory.mktemp("tiny_data")
    write_math_parquet(data_dir / "train.parquet", 16, seed=0, split="train")
    write_math_parquet(data_dir / "test.parquet", 4, seed=1, split="test")
    return str(data_dir)
