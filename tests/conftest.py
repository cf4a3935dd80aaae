"""Shared fixtures: tiny random Qwen2 and Qwen3-VL models and tiny math parquet files, built once per session."""

from __future__ import annotations

import pytest

from rlrt_recipe.testing import TinyModelSpec, TinyVLSpec, build_tiny_model, build_tiny_vl_model, write_math_parquet


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


@pytest.fixture(scope="session")
def toy_warm_start(tmp_path_factory) -> dict:
    """The toy task's default warm start (``rlrt_toy`` in examples/; 45–140 s on 2 cores) and its RL data, as
    scripts/warm_start.py writes them: ``{"summary", "model_dir", "data_dir"}``."""
    from rlrt_toy import task
    from rlrt_toy.warm_start import warm_start

    root = tmp_path_factory.mktemp("toy")
    summary = warm_start(root / "model")
    task.write_rl_data(root / "data")
    return {"summary": summary, "model_dir": str(root / "model"), "data_dir": str(root / "data")}


@pytest.fixture(scope="session")
def explore_warm_start(tmp_path_factory) -> dict:
    """The exploration task's default warm start (``rlrt_explore`` in examples/; 2–3 minutes on 2 cores) and its RL
    data with 4 held-out problems (the comparison's ``--quick`` size), as ``python -m rlrt_explore`` writes them:
    ``{"summary", "model_dir", "data_dir"}``."""
    from rlrt_explore import task
    from rlrt_explore.warm_start import warm_start

    root = tmp_path_factory.mktemp("explore")
    summary = warm_start(root / "model")
    task.write_rl_data(root / "data", heldout_problems=4)
    return {"summary": summary, "model_dir": str(root / "model"), "data_dir": str(root / "data")}


@pytest.fixture(scope="session")
def tiny_vl_model_dir(tmp_path_factory) -> str:
    """Default TinyVLSpec (≈0.22 M parameters, Qwen3-VL, Qwen-VL chat template, PIL image processor). Without
    torchvision, transformers can build (and load) its processor only with the CPU backend's video-processor fix."""
    from rlrt_recipe.cpu.vision import use_real_video_processor

    use_real_video_processor()
    return build_tiny_vl_model(tmp_path_factory.mktemp("tiny_vl_model"), TinyVLSpec())
