"""Helpers for tests, scripts and benchmarks: tiny local models, tiny math and image data, a seeded test reward.

Nothing here downloads anything: the tokenizer is trained locally, the model has random weights.
"""

from rlrt_recipe.testing.data import DATA_SOURCE, math_rows, write_math_parquet
from rlrt_recipe.testing.image_data import image_rows, write_image_parquet
from rlrt_recipe.testing.reward import compute_score
from rlrt_recipe.testing.tiny_model import TinyModelSpec, build_tiny_model
from rlrt_recipe.testing.tiny_vl_model import TinyVLSpec, build_tiny_vl_model

__all__ = [
    "DATA_SOURCE",
    "TinyModelSpec",
    "TinyVLSpec",
    "build_tiny_model",
    "build_tiny_vl_model",
    "compute_score",
    "image_rows",
    "math_rows",
    "write_image_parquet",
    "write_math_parquet",
]
