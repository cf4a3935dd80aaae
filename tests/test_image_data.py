"""The generated image task (rlrt_recipe/testing/image_data.py): verl's multimodal schema, answers that match the
pixels, answers our math reward checks, and prompt lengths that differ (verl#7899)."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image
from verl.utils.tokenizer import hf_processor, hf_tokenizer
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

from rlrt_recipe.cpu.dataset import TorchvisionFreeRLHFDataset
from rlrt_recipe.reward import compute_score
from rlrt_recipe.testing.image_data import (
    CELL,
    COLOURS,
    MARGIN,
    image_rows,
    processor_prompt_length,
    write_image_parquet,
)

LISTED = re.compile(r"a (\w+) (circle|square|triangle) in row (\d+), column (\d+)")
WHITE = (255, 255, 255)


def decode_shapes(image: Image.Image) -> list[tuple[str, str, int, int]]:
    """(shape, colour, column, row) of every non-empty 32-px cell, read from the pixels: the colour at the cell's
    centre; the shape from two corners of the shape's box (a square fills both, a triangle only the bottom-left,
    a circle neither)."""
    colour_names = {rgb: name for name, rgb in COLOURS.items()}
    shapes = []
    for row in range(image.height // CELL):
        for column in range(image.width // CELL):
            centre = image.getpixel((column * CELL + CELL // 2, row * CELL + CELL // 2))
            if centre == WHITE:
                continue
            left, top, bottom = column * CELL + MARGIN + 1, row * CELL + MARGIN + 1, (row + 1) * CELL - MARGIN - 1
            corners = (image.getpixel((left, top)) != WHITE, image.getpixel((left, bottom)) != WHITE)
            shape = {(True, True): "square", (False, True): "triangle", (False, False): "circle"}[corners]
            shapes.append((shape, colour_names[centre], column, row))
    return shapes


def expected_answer(question: str, shapes: list[tuple[str, str, int, int]]) -> int:
    for shape in ("circle", "square", "triangle"):
        if f"{shape}s" in question:
            return sum(s == shape for s, _, _, _ in shapes)
    for colour in COLOURS:
        if colour in question:
            return sum(c == colour for _, c, _, _ in shapes)
    return len(shapes)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return image_rows(40, seed=0)


def test_rows_follow_verls_multimodal_schema(rows, tmp_path):
    """One user message with one ``<image>`` placeholder and one ``{"bytes": png, "path": None}`` image, sides
    multiples of 32 from 64 to 128 (no resize anywhere, multimodal.md §1); the parquet round-trips."""
    for index, row in enumerate(rows):
        assert set(row) == {"data_source", "prompt", "images", "ability", "reward_model", "extra_info"}
        (message,) = row["prompt"]
        assert message["role"] == "user" and message["content"].startswith("<image>")
        assert message["content"].count("<image>") == 1 and message["content"].endswith("\\boxed{}.")
        (image,) = row["images"]
        assert image["path"] is None
        width, height = Image.open(io.BytesIO(image["bytes"])).size
        assert width % 32 == height % 32 == 0 and 64 <= min(width, height) and max(width, height) <= 128
        assert row["extra_info"]["index"] == index and row["extra_info"]["split"] == "train"
    table = pd.read_parquet(write_image_parquet(tmp_path / "d" / "train.parquet", 3, seed=0))
    assert table["images"][0][0]["bytes"] == image_rows(3, seed=0)[0]["images"][0]["bytes"]
    assert len({row["reward_model"]["ground_truth"] for row in rows}) >= 3  # not one answer for all


def test_answers_and_solutions_match_the_pixels(rows):
    """The ground truth is the count the question asks for, and the solution lists exactly the shapes drawn, both
    checked against shapes decoded from the image itself."""
    for row in rows:
        drawn = decode_shapes(Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB"))
        listed = [(s, c, int(col) - 1, int(r) - 1) for c, s, r, col in LISTED.findall(row["extra_info"]["solution"])]
        assert sorted(drawn) == sorted(listed)
        question = row["prompt"][0]["content"]
        assert row["reward_model"]["ground_truth"] == str(expected_answer(question, drawn))
        assert row["extra_info"]["solution"].endswith(f"\\boxed{{{row['reward_model']['ground_truth']}}}.")


def test_our_math_reward_checks_the_answers(rows):
    """Every ground truth is a number math-verify compares: the right boxed answer scores 1, a wrong one 0."""
    for row in rows[:8]:
        truth = row["reward_model"]["ground_truth"]
        right = compute_score(row["data_source"], f"I count them. \\boxed{{{truth}}}", truth)
        wrong = compute_score(row["data_source"], f"I count them. \\boxed{{{int(truth) + 1}}}", truth)
        assert (right["score"], wrong["score"]) == (1.0, 0.0)


def test_prompt_lengths_differ_and_are_what_verls_builder_builds(tiny_vl_model_dir, tmp_path):
    """With the processor's lengths every row's prompt length is its own (verl#7899 breaks batches whose rows are
    all the same length), and each is the length verl's Qwen-VL token builder gives the row as the dataset and the
    agent loop prepare it."""
    processor = hf_processor(tiny_vl_model_dir)
    prompt_length = processor_prompt_length(processor)
    path = write_image_parquet(tmp_path / "train.parquet", 32, seed=0, prompt_length=prompt_length)
    lengths = [prompt_length(row) for row in image_rows(32, seed=0, prompt_length=prompt_length)]
    assert len(set(lengths)) == 32
    config = OmegaConf.create({"max_prompt_length": 256, "filter_overlong_prompts": False, "image_patch_size": None})
    dataset = TorchvisionFreeRLHFDataset(path, hf_tokenizer(tiny_vl_model_dir), config, processor=processor)
    builder = create_continuous_token_builder(hf_tokenizer(tiny_vl_model_dir), hf_model_type="qwen3_vl",
                                              chat_template_kwargs={}, processor=processor)
    for index in range(4):
        messages = dataset[index]["raw_prompt"]
        images, _, _ = TorchvisionFreeRLHFDataset._process_multi_modal_info(messages, 16, config)
        assert len(builder.build_initial_tokens(messages, images=images)) == lengths[index]


def test_a_split_with_too_few_lengths_left_fails_clearly():
    """Asking for more distinct lengths than the wordings and sizes give fails naming the split, the row and the
    lengths taken, instead of looping for ever or silently repeating a length."""
    with pytest.raises(ValueError, match=r"train: no prompt length left for row 1 after 200 draws \(taken: \[7\]\)"):
        image_rows(2, prompt_length=lambda row: 7)
