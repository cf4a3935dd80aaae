"""Tiny counting questions about generated images, in verl's multimodal RL parquet schema.

Each image is a white canvas with coloured circles, squares and triangles, one per 32-pixel cell; each question
asks for a count ("How many circles are in the image?", "How many red shapes …?", "How many shapes …?"), so
every answer is a number our math reward (``rlrt_recipe.reward``, math-verify on the last ``\\boxed{}``) checks.
Colours stay in the questions, not the answers: math-verify reads a bare word as a product of one-letter
symbols, so ``\\boxed{lowyel}`` would count as "yellow".

Each row: ``data_source``, ``prompt`` (one user message whose text starts with the ``<image>`` placeholder),
``images`` (``[{"bytes": <png>, "path": None}]``, what verl's ``RLHFDataset`` opens), ``ability``,
``reward_model`` (``style: rule``, ``ground_truth``), ``extra_info`` (``index``, ``split``, ``solution``: which
shapes are where, the privileged context a self-distillation teacher sees).

Image sides are multiples of 32 from 64 to 128, so neither verl's image fetch nor the Qwen3-VL image processor of
the tiny model (16-pixel patches merged 2×2, at most 128² pixels) resizes them; a W×H image is (W/32)·(H/32)
image tokens. Sizes and question wordings vary from row to row, so prompt lengths vary too: verl 0.9.1 mis-lays
3-D position ids when every row of a batch has the same length (verl#7899).
"""

from __future__ import annotations

import io
import os
import random
import re
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw

from rlrt_recipe.data import INSTRUCTION

DATA_SOURCE = "rlrt/tiny_shapes"
CELL = 32  # pixels per grid cell: one shape per cell, and the image-token grid of the tiny model
SIZES = [(64, 64), (96, 64), (64, 96), (96, 96), (128, 64), (128, 96), (96, 128), (128, 128)]  # (width, height)
SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
MARGIN = 5  # pixels between a shape and its cell's border


def draw_shapes(width: int, height: int, shapes: list[tuple[str, str, int, int]]) -> Image.Image:
    """An RGB image with each ``(shape, colour, column, row)`` drawn inside its 32-pixel cell."""
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for shape, colour, column, row in shapes:
        left, top = column * CELL + MARGIN, row * CELL + MARGIN
        right, bottom = (column + 1) * CELL - MARGIN, (row + 1) * CELL - MARGIN
        fill = COLOURS[colour]
        if shape == "circle":
            draw.ellipse((left, top, right, bottom), fill=fill)
        elif shape == "square":
            draw.rectangle((left, top, right, bottom), fill=fill)
        else:
            draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=fill)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# Wordings per kind of question, of different lengths (so prompts of one split can all differ in length).
SHAPE_QUESTIONS = ("How many {}s?", "How many {}s are in the image?",
                   "Count the {}s in this image. How many are there?")
COLOUR_QUESTIONS = ("How many {} shapes?", "How many shapes in the image are {}?",
                    "Look at the colours. How many of the shapes are {}?")
TOTAL_QUESTIONS = ("How many shapes?", "Count all the shapes in the picture.",
                   "How many shapes are drawn on the white background of this image?")
MAX_DRAWS = 200  # draws per row when prompt lengths must differ


def _question(rng: random.Random, shapes: list[tuple[str, str, int, int]]) -> tuple[str, int]:
    """A counting question about ``shapes`` and its answer; asks about a shape or colour that is present."""
    kind = rng.choice(("shape", "colour", "total"))
    if kind == "shape":
        shape = rng.choice([s for s, _, _, _ in shapes])
        return rng.choice(SHAPE_QUESTIONS).format(shape), sum(s == shape for s, _, _, _ in shapes)
    if kind == "colour":
        colour = rng.choice([c for _, c, _, _ in shapes])
        return rng.choice(COLOUR_QUESTIONS).format(colour), sum(c == colour for _, c, _, _ in shapes)
    return rng.choice(TOTAL_QUESTIONS), len(shapes)


def _solution(shapes: list[tuple[str, str, int, int]], answer: int) -> str:
    listed = "; ".join(f"a {colour} {shape} in row {row + 1}, column {column + 1}"
                       for shape, colour, column, row in shapes)
    return f"The image shows {listed}. So the answer is \\boxed{{{answer}}}."


def _draw_row(rng: random.Random, index: int, split: str) -> dict[str, Any]:
    width, height = rng.choice(SIZES)
    cells = [(column, row) for row in range(height // CELL) for column in range(width // CELL)]
    placed = rng.sample(cells, rng.randint(1, min(len(cells), 5)))
    shapes = [(rng.choice(SHAPES), rng.choice(list(COLOURS)), column, row) for column, row in placed]
    question, answer = _question(rng, shapes)
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": f"<image>{question} {INSTRUCTION}"}],
        "images": [{"bytes": png_bytes(draw_shapes(width, height, shapes)), "path": None}],
        "ability": "vision",
        "reward_model": {"style": "rule", "ground_truth": str(answer)},
        "extra_info": {"index": index, "split": split, "solution": _solution(shapes, answer)},
    }


def image_rows(num_rows: int, seed: int = 0, split: str = "train",
               prompt_length: Callable[[dict[str, Any]], int] | None = None) -> list[dict[str, Any]]:
    """``num_rows`` counting questions, each about its own generated image, reproducible from ``seed``.

    With ``prompt_length`` (a row's prompt length in tokens, e.g. ``processor_prompt_length(processor)``) every
    row's prompt length differs from all others': a row is redrawn until its length is new.
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    lengths: set[int] = set()
    for index in range(num_rows):
        for _ in range(MAX_DRAWS):
            row = _draw_row(rng, index, split)
            length = prompt_length(row) if prompt_length is not None else None
            if length is None or length not in lengths:
                break
        else:
            raise ValueError(
                f"{split}: no prompt length left for row {index} after {MAX_DRAWS} draws (taken: {sorted(lengths)}); "
                "ask for fewer rows or add wordings/sizes"
            )
        if length is not None:
            lengths.add(length)
        rows.append(row)
    return rows


def processor_prompt_length(processor: Any) -> Callable[[dict[str, Any]], int]:
    """A row's prompt length in tokens as verl's agent loop builds it: the processor's chat template over the
    user message with each ``<image>`` as an image block, image placeholders expanded by the processor."""

    def prompt_length(row: dict[str, Any]) -> int:
        content = []
        for segment in re.split("(<image>)", row["prompt"][0]["content"]):
            if segment == "<image>":
                content.append({"type": "image"})
            elif segment:
                content.append({"type": "text", "text": segment})
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                             tokenize=False)
        images = [Image.open(io.BytesIO(image["bytes"])).convert("RGB") for image in row["images"]]
        return len(processor(text=[text], images=images)["input_ids"][0])

    return prompt_length


def write_image_parquet(path: str | os.PathLike, num_rows: int, seed: int = 0, split: str = "train",
                        prompt_length: Callable[[dict[str, Any]], int] | None = None) -> str:
    """Write ``image_rows`` to a parquet file (parent directories created); return its path."""
    import pandas as pd

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pd.DataFrame(image_rows(num_rows, seed=seed, split=split, prompt_length=prompt_length)).to_parquet(path)
    return path
