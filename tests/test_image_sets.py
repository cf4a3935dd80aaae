"""RLSD's image sets (MMFineReason-123K and five benchmarks) into verl's multimodal schema: one converter per source on
a local fixture in the record layout we assume (real PNGs drawn here), bad rows refused with their index, parquet
round trips, and verl's dataset keeping every row with its images."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from PIL import Image

from rlrt_recipe.data import (
    INSTRUCTION,
    MC_INSTRUCTION,
    RLSD_BENCHMARKS,
    RLSD_EVALUATION,
    VISION_SOURCES,
    convert_images,
    load_rows,
    place_images,
    png_bytes,
    summary,
)

ROOT = Path(__file__).resolve().parents[1]
COLOURS = [(220, 40, 40), (40, 170, 60), (40, 80, 220), (230, 200, 30), (120, 40, 160), (0, 160, 160), (90, 90, 90)]


def draw(number: int, size: tuple[int, int] = (64, 64), fmt: str = "PNG") -> bytes:
    """A one-colour image, colour ``COLOURS[number]``, so a decoded image tells which one it is."""
    buffer = io.BytesIO()
    Image.new("RGB", size, COLOURS[number]).save(buffer, format=fmt)
    return buffer.getvalue()


def nearest(pixel: tuple[int, int, int]) -> int:
    """The ``draw`` number whose colour is nearest ``pixel`` (JPEG shifts colours by a few levels)."""
    return min(range(len(COLOURS)), key=lambda n: sum((a - b) ** 2 for a, b in zip(COLOURS[n], pixel)))


def colour_of(image: dict) -> int:
    """Which ``draw`` number a stored ``{"bytes", "path"}`` image is."""
    assert image["path"] is None and image["bytes"].startswith(b"\x89PNG")
    return nearest(Image.open(io.BytesIO(image["bytes"])).convert("RGB").getpixel((0, 0)))


def struct(number: int) -> dict:
    """An image as hub parquet files store it."""
    return {"bytes": draw(number), "path": None}


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def write_parquet(path: Path, records: list[dict]) -> str:
    pq.write_table(pa.Table.from_pylist(records), path)
    return str(path)


def run(name: str, spec: str, image_dir=None, path=None):
    source = VISION_SOURCES[name]
    rows, origin = load_rows(source, spec)
    return convert_images(source, rows, origin, image_dir=image_dir, path=path)


# --- MMFineReason-123K: JSONL records, images as files in a folder --------------------------------------------------

@pytest.fixture
def mmfinereason_file(tmp_path) -> str:
    folder = tmp_path / "images"
    folder.mkdir()
    for number in range(3):
        (folder / f"{number}.png").write_bytes(draw(number))
    (folder / "3.jpg").write_bytes(draw(3, fmt="JPEG"))
    trace = "<think>The bar is 4 units tall.</think> The answer is \\boxed{4}."
    return write_jsonl(tmp_path / "train.jsonl", [
        {"problem": "<image>How tall is the bar?", "answer": "4", "images": ["images/0.png"],
         "problem_type": "math", "problem_id": "p0", "qwen3vl_235b_thinking_response": trace},
        {"problem": "Which is larger?", "answer": "B", "images": ["images/1.png", "images/2.png"],
         "problem_type": "multiple choice", "options": ["A. 3", "B. 4", "C. 5"]},
        {"problem": "<image>Pick the area.", "answer": "12", "images": ["images/3.jpg"],
         "problem_type": "Multiple-Choice", "options": ["10", "12"], "qwen3vl_235b_thinking_response": "  "},
        {"problem": "What is 2 + 2?", "answer": "4", "images": [], "problem_type": "math",
         "qwen3vl_235b_thinking_response": "2 + 2 = \\boxed{4}"},
        {"problem": "<image>No answer here.", "images": ["images/0.png"]},
        {"problem": "<image><image>Two placeholders, one image.", "answer": "1", "images": ["images/0.png"]},
        {"problem": "Missing file.", "answer": "1", "images": ["images/9.png"]},
        {"problem": "Answer not an option.", "answer": "7", "images": ["images/0.png"],
         "problem_type": "multiple choice", "options": ["10", "12"]},
    ])


def test_mmfinereason_rows(mmfinereason_file):
    """MMFineReason records: free-form and multiple choice (answer as letter or as option text, labelled options
    stripped), images from the folder in order (a JPEG re-encoded as PNG), the verified trace as extra_info.solution,
    missing traces kept as None and counted, a text-only row kept; bad rows dropped with index and reason."""
    result = run("mmfinereason_123k", mmfinereason_file, image_dir=str(Path(mmfinereason_file).parent))
    missing = Path(mmfinereason_file).parent / "images" / "9.png"
    assert (result.read, result.kept) == (8, 4)
    assert result.dropped == [
        (4, "no answer column (tried ['answer'])"),
        (5, "1 image(s) but 2 <image> placeholder(s) in the text"),
        (6, f"image 1: cannot read image file {missing}: No such file or directory"),
        (7, "answer '7' is neither an option letter (A-B) nor the text of exactly one option"),
    ]
    free, choice, by_text, text_only = result.rows
    assert free == {
        "data_source": "mmfinereason",
        "prompt": [{"role": "user", "content": f"<image>How tall is the bar?\n\n{INSTRUCTION}"}],
        "images": [{"bytes": draw(0), "path": None}],  # a PNG file byte for byte
        "ability": "vision",
        "reward_model": {"style": "rule", "ground_truth": "4"},
        "extra_info": {"split": "train", "index": 0, "answer_format": "free_form", "options": [],
                       "solution": "<think>The bar is 4 units tall.</think> The answer is \\boxed{4}."},
    }
    assert choice["prompt"][0]["content"] == (
        f"<image><image>Which is larger?\n\nOptions:\nA. 3\nB. 4\nC. 5\n\n{MC_INSTRUCTION}")
    assert [colour_of(image) for image in choice["images"]] == [1, 2]
    assert choice["reward_model"]["ground_truth"] == "B"
    assert choice["extra_info"] == {"split": "train", "index": 1, "answer_format": "multiple_choice",
                                    "options": ["3", "4", "5"], "solution": None}
    assert by_text["reward_model"]["ground_truth"] == "B" and by_text["extra_info"]["solution"] is None
    assert [colour_of(image) for image in by_text["images"]] == [3]  # the JPEG, now PNG
    assert text_only["images"] == [] and text_only["prompt"][0]["content"].startswith("What is 2 + 2?")
    lines = list(summary(result))
    assert lines[0] == f"mmfinereason_123k: read 8, kept 4, dropped 4  ({mmfinereason_file})"
    assert "  2 kept rows have no reasoning trace (qwen3vl_235b_thinking_response): kept with extra_info.solution " \
           "= None (OPSD's solution context uses the answer for them)" in lines


# --- MMMU validation: parquet as the hub stores it, image_1 ... image_7, <image k> references ----------------------

def mmmu_record(question: str, options, answer: str, images: dict[int, int]) -> dict:
    record = {"id": "validation_x", "question": question, "options": options, "answer": answer}
    record.update({f"image_{k}": struct(images[k]) if k in images else None for k in range(1, 8)})
    return record


@pytest.fixture
def mmmu_file(tmp_path) -> str:
    return write_parquet(tmp_path / "mmmu.parquet", [
        mmmu_record("Compare <image 2> with <image 1>. Which is red?", "['the first', 'the second']", "B",
                    {1: 0, 2: 1}),
        mmmu_record("Order: <image 1> <image 2> <image 3> <image 4>. Which comes next?",
                    "['<image 5>', '<image 6>', '<image 7>', 'none of them']", "C",
                    {k: k - 1 for k in range(1, 8)}),
        mmmu_record("What is the total in <image 1>?", "[]", "24", {1: 3}),
        mmmu_record("Compare <image 1> and <image 3>.", "['x', 'y']", "A", {1: 0, 2: 1}),
        mmmu_record("Only <image 1> is referred to.", "['x', 'y']", "A", {1: 0, 2: 1}),
        mmmu_record("Five options? <image 1>", "['a', 'b', 'c', 'd']", "E", {1: 0}),
        mmmu_record("Not a list <image 1>", "['a', 'b'", "A", {1: 0}),
    ])


def test_mmmu_rows_keep_image_order_and_placeholders(mmmu_file):
    """MMMU: <image k> references (in the question and in the options) become <image> where they stand and the
    images follow the references' order, up to 7 per row; options from their Python text; open questions free-form;
    a reference to an absent image, an unreferenced image, a letter beyond the options refused."""
    result = run("mmmu_val", mmmu_file)
    assert result.kept == 3
    assert result.dropped == [
        (3, "the text refers to image(s) [3], which the row does not have"),
        (4, "image(s) [2] given but the text never refers to them"),
        (5, "answer 'E' is neither an option letter (A-D) nor the text of exactly one option"),
        (6, "column 'options' is text but not a list: \"['a', 'b'\""),
    ]
    two, seven, open_ = result.rows
    assert two["prompt"][0]["content"] == (
        f"Compare <image> with <image>. Which is red?\n\nOptions:\nA. the first\nB. the second\n\n{MC_INSTRUCTION}")
    assert [colour_of(image) for image in two["images"]] == [1, 0]
    assert two["reward_model"]["ground_truth"] == "B"
    content = seven["prompt"][0]["content"]
    assert content.count("<image>") == len(seven["images"]) == 7
    assert "A. <image>\nB. <image>\nC. <image>\nD. none of them" in content
    assert [colour_of(image) for image in seven["images"]] == list(range(7))
    assert seven["extra_info"] == {"split": "test", "index": 1, "answer_format": "multiple_choice",
                                   "options": ["<image 5>", "<image 6>", "<image 7>", "none of them"]}
    assert open_["extra_info"]["answer_format"] == "free_form" and open_["reward_model"]["ground_truth"] == "24"
    assert open_["prompt"][0]["content"] == f"What is the total in <image>?\n\n{INSTRUCTION}"
    assert open_["data_source"] == "mmmu"


# --- MathVista testmini: JSON list, decoded_image as base64 text, answers as the choice's text ---------------------

@pytest.fixture
def mathvista_file(tmp_path) -> str:
    def image(number):
        return {"bytes": base64.b64encode(draw(number)).decode(), "path": None}

    records = [
        {"pid": "1", "question": "Which value is shown?", "choices": ["3", "4", "5"], "answer": "4",
         "question_type": "multi_choice", "answer_type": "text", "precision": None, "decoded_image": image(0)},
        {"pid": "2", "question": "How many bars?", "choices": None, "answer": "7", "question_type": "free_form",
         "answer_type": "integer", "precision": None, "decoded_image": image(1)},
        {"pid": "3", "question": "What is the slope?", "choices": None, "answer": "1.5", "question_type": "free_form",
         "answer_type": "float", "precision": 1.0, "decoded_image": image(2)},
        {"pid": "4", "question": "Which label is on top?", "choices": ["B", "A"], "answer": "A",
         "question_type": "multi_choice", "answer_type": "text", "precision": None, "decoded_image": image(3)},
        {"pid": "5", "question": "Which one?", "choices": ["3", "4"], "answer": "6", "question_type": "multi_choice",
         "answer_type": "text", "precision": None, "decoded_image": image(0)},
        {"pid": "6", "question": "Where is the image?", "choices": None, "answer": "1", "question_type": "free_form",
         "decoded_image": None},
    ]
    path = tmp_path / "mathvista.json"
    path.write_text(json.dumps(records))
    return str(path)


def test_mathvista_rows(mathvista_file):
    """MathVista: the multi_choice answer is the choice's text, so it is matched as text before as a letter (choices
    "B", "A" with answer "A" is option B); free_form answers as text; a float answer's precision becomes a sentence
    of ours before the instruction; an answer that is no choice, or no image, refused."""
    result = run("mathvista_testmini", mathvista_file)
    assert [r["reward_model"]["ground_truth"] for r in result.rows] == ["B", "7", "1.5", "B"]
    assert [r["extra_info"]["answer_format"] for r in result.rows] == [
        "multiple_choice", "free_form", "free_form", "multiple_choice"]
    assert result.rows[0]["prompt"][0]["content"] == (
        f"<image>Which value is shown?\n\nOptions:\nA. 3\nB. 4\nC. 5\n\n{MC_INSTRUCTION}")
    assert result.rows[2]["prompt"][0]["content"] == (
        f"<image>What is the slope?\n\nGive the final number with 1 decimal place. {INSTRUCTION}")
    assert [colour_of(r["images"][0]) for r in result.rows] == [0, 1, 2, 3]
    assert result.dropped == [
        (4, "answer '6' is neither an option letter (A-B) nor the text of exactly one option"),
        (5, "no image"),
    ]
    assert "  warning: 4 rows, but MathVista has 1000 questions: scores are not over the whole benchmark" in list(
        summary(result))


# --- MathVision test: parquet, <image1> in the question, options empty for free-form -------------------------------

def test_mathvision_rows(tmp_path):
    """MathVision: its own <image1> reference becomes the placeholder in place; options give multiple choice with a
    letter answer, no options free-form; a missing image or a reference to a second image refused."""
    path = write_parquet(tmp_path / "mathvision.parquet", [
        {"id": "1", "question": "<image1>\nWhich shape has the most sides?", "options": ["A", "B", "C", "D", "E"],
         "answer": "C", "decoded_image": struct(4)},
        {"id": "2", "question": "How many squares are there in <image1>?", "options": [], "answer": "12",
         "decoded_image": struct(5)},
        {"id": "3", "question": "<image1>Which?", "options": ["1", "2"], "answer": "B", "decoded_image": None},
        {"id": "4", "question": "<image1> and <image2>?", "options": [], "answer": "3", "decoded_image": struct(5)},
    ])
    result = run("mathvision_test", path)
    choice, free = result.rows
    assert choice["prompt"][0]["content"] == (
        f"<image>\nWhich shape has the most sides?\n\nOptions:\nA. A\nB. B\nC. C\nD. D\nE. E\n\n{MC_INSTRUCTION}")
    assert choice["reward_model"]["ground_truth"] == "C" and choice["extra_info"]["options"] == list("ABCDE")
    assert free["prompt"][0]["content"] == f"How many squares are there in <image>?\n\n{INSTRUCTION}"
    assert free["extra_info"] == {"split": "test", "index": 1, "answer_format": "free_form", "options": []}
    assert [colour_of(choice["images"][0]), colour_of(free["images"][0])] == [4, 5]
    assert result.dropped == [(2, "the text refers to image(s) [1], which the row does not have"),
                              (3, "the text refers to image(s) [2], which the row does not have")]


# --- ZeroBench: JSONL, several images per question as paths, free-form answers --------------------------------------

def test_zerobench_rows(tmp_path):
    """ZeroBench: all images of a question in front of it, in order; free-form answers; an empty question or a
    question without images refused."""
    for number in range(3):
        (tmp_path / f"z{number}.png").write_bytes(draw(number, size=(32 * (number + 1), 32)))
    path = write_jsonl(tmp_path / "zerobench.jsonl", [
        {"question_id": "1", "question_text": "How many dots in total?", "question_answer": "12",
         "question_images_decoded": ["z2.png", "z0.png", "z1.png"]},
        {"question_id": "2", "question_text": " ", "question_answer": "3", "question_images_decoded": ["z0.png"]},
        {"question_id": "3", "question_text": "No picture?", "question_answer": "3", "question_images_decoded": []},
    ])
    result = run("zerobench", path, image_dir=str(tmp_path))
    (row,) = result.rows
    assert row["prompt"][0]["content"] == f"<image><image><image>How many dots in total?\n\n{INSTRUCTION}"
    assert [colour_of(image) for image in row["images"]] == [2, 0, 1]
    assert [Image.open(io.BytesIO(image["bytes"])).width for image in row["images"]] == [96, 32, 64]
    assert row["reward_model"]["ground_truth"] == "12" and row["extra_info"]["answer_format"] == "free_form"
    assert result.dropped == [(1, "column 'question_text' is not a non-empty string"), (2, "no image")]


# --- WeMath: JSONL, options inside the question, answer letter, image as a data URI --------------------------------

def test_wemath_rows(tmp_path):
    """WeMath: multiple choice with the options left inside the question (extra_info.options empty, the letter is
    the ground truth); an answer that is not a letter refused."""
    uri = "data:image/png;base64," + base64.b64encode(draw(6)).decode()
    path = write_jsonl(tmp_path / "wemath.jsonl", [
        {"ID": "1", "question": "What is angle x?\nA. 30°; B. 45°; C. 60°", "answer": "B", "image": uri},
        {"ID": "2", "question": "Which?", "answer": "45°", "image": uri},
        {"ID": "3", "question": "Which?", "answer": "", "image": uri},
    ])
    result = run("wemath", path)
    (row,) = result.rows
    assert row["prompt"][0]["content"] == f"<image>What is angle x?\nA. 30°; B. 45°; C. 60°\n\n{MC_INSTRUCTION}"
    assert row["reward_model"]["ground_truth"] == "B" and colour_of(row["images"][0]) == 6
    assert row["extra_info"] == {"split": "test", "index": 0, "answer_format": "multiple_choice", "options": []}
    assert result.dropped == [
        (1, "answer '45°' is neither an option letter nor the text of exactly one option"),
        (2, "answer is empty"),
    ]


# --- shared pieces ------------------------------------------------------------------------------------------------

def test_place_images():
    """Placeholders: none -> one per image in front; numbered -> in place, repeats repeat the image; plain -> in
    order; mixed or miscounted refused."""
    assert place_images("Q", ["a", "b"]) == ("<image><image>Q", ["a", "b"])
    assert place_images("<image 2> vs <image1>, again <image 2>", ["a", "b"]) == (
        "<image> vs <image>, again <image>", ["b", "a", "b"])
    assert place_images("<image> then <image>", ["a", "b"]) == ("<image> then <image>", ["a", "b"])
    with pytest.raises(ValueError, match="mixes numbered"):
        place_images("<image 1> and <image>", ["a", "b"])
    with pytest.raises(ValueError, match=r"2 image\(s\) but 1 <image> placeholder"):
        place_images("<image> only", ["a", "b"])


def test_png_bytes_refuses_what_is_not_an_image(tmp_path):
    """Undecodable bytes, a truncated PNG, a URL and a relative path without an image folder are refused with the
    reason; a CMYK JPEG becomes an RGB PNG."""
    with pytest.raises(ValueError, match="PIL cannot decode"):
        png_bytes(b"not an image")
    with pytest.raises(ValueError, match="PIL cannot decode"):
        png_bytes(draw(0)[:60])
    with pytest.raises(ValueError, match="image URLs are not fetched"):
        png_bytes("https://example.com/a.png")
    with pytest.raises(ValueError, match="relative image path 'a.png' and no image folder"):
        png_bytes("a.png")
    buffer = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(buffer, format="JPEG")
    converted = Image.open(io.BytesIO(png_bytes(buffer.getvalue())))
    assert (converted.format, converted.mode) == ("PNG", "RGB")


def test_evaluation_choices_name_every_benchmark():
    """RLSD_EVALUATION (what the recipe and docs cite) covers Table 2's five benchmarks, in its order, with the file
    each is written to and a stated split size and score."""
    assert list(RLSD_EVALUATION) == ["mmmu", "mathvista", "mathvision", "zerobench", "wemath"]
    assert [entry["file"] for entry in RLSD_EVALUATION.values()] == [
        "mmmu_val.parquet", "mathvista_testmini.parquet", "mathvision_test.parquet", "zerobench.parquet",
        "wemath.parquet"]
    assert [entry["questions"] for entry in RLSD_EVALUATION.values()] == [900, 1000, 3040, 100, 1740]
    assert "per-question accuracy" in RLSD_EVALUATION["wemath"]["score"]
    assert all(entry["score"] and entry["basis"] for entry in RLSD_EVALUATION.values())


# --- parquet round trip, verl's dataset, CLI ------------------------------------------------------------------------

def test_written_parquet_round_trips_and_benchmarks_concatenate(tmp_path, mmmu_file, mathvista_file):
    """Rows written in batches read back equal to the rows converted in memory; benchmark files whose options are all
    empty (ZeroBench) still concatenate with the others, as verl's dataset does with data.val_files."""
    in_memory = run("mmmu_val", mmmu_file).rows
    written = run("mmmu_val", mmmu_file, path=tmp_path / "out" / "mmmu_val.parquet")
    assert written.rows == [] and written.written == 3
    assert pq.read_table(tmp_path / "out" / "mmmu_val.parquet").to_pylist() == in_memory
    for number in range(2):
        (tmp_path / f"z{number}.png").write_bytes(draw(number))
    zerobench = write_jsonl(tmp_path / "zb.jsonl", [{"question_text": "How many?", "question_answer": "2",
                                                     "question_images_decoded": ["z0.png", "z1.png"]}])
    run("zerobench", zerobench, image_dir=str(tmp_path), path=tmp_path / "out" / "zerobench.parquet")
    run("mathvista_testmini", mathvista_file, path=tmp_path / "out" / "mathvista_testmini.parquet")
    merged = datasets.concatenate_datasets([
        datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / f"{name}.parquet"))["train"]
        for name in ("mmmu_val", "zerobench", "mathvista_testmini")])
    assert len(merged) == 3 + 1 + 4
    assert [row["data_source"] for row in merged] == ["mmmu"] * 3 + ["zerobench"] + ["mathvista"] * 4
    assert merged[3]["extra_info"]["options"] == [] and merged[4]["extra_info"]["options"] == ["3", "4", "5"]


def test_verls_dataset_keeps_every_row_with_its_images(tmp_path, mmmu_file, mmfinereason_file, tiny_vl_model_dir):
    """The written files through verl's dataset class for CPU (its length filter drops rows whose images fail): every
    row is kept, each <image> placeholder becomes an image block in order, and the images the rollout gets number
    as many as the row's images (7 for the 7-image MMMU row)."""
    from verl.utils.tokenizer import hf_processor, hf_tokenizer

    from rlrt_recipe.cpu.dataset import TorchvisionFreeRLHFDataset

    files = [str(tmp_path / "mmmu_val.parquet"), str(tmp_path / "mmfinereason_123k.parquet")]
    run("mmmu_val", mmmu_file, path=files[0])
    run("mmfinereason_123k", mmfinereason_file, image_dir=str(Path(mmfinereason_file).parent), path=files[1])
    config = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096,
                               "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1,
                               "image_patch_size": None})
    for file, expected in zip(files, ([2, 7, 1], [1, 2, 1, 0])):
        dataset = TorchvisionFreeRLHFDataset(file, hf_tokenizer(tiny_vl_model_dir), config,
                                             processor=hf_processor(tiny_vl_model_dir))
        assert len(dataset) == len(expected)
        for index, count in enumerate(expected):
            messages = dataset[index]["raw_prompt"]
            blocks = messages[0]["content"]
            if count == 0:  # a text-only row: verl leaves the content a string
                assert isinstance(blocks, str)
                continue
            assert [block["type"] for block in blocks].count("image") == count
            images, _, _ = TorchvisionFreeRLHFDataset._process_multi_modal_info(messages, 16, config)
            assert len(images) == count
    seven = TorchvisionFreeRLHFDataset(files[0], hf_tokenizer(tiny_vl_model_dir), config,
                                       processor=hf_processor(tiny_vl_model_dir))[1]["raw_prompt"][0]["content"]
    colours = [nearest(block["image"].convert("RGB").getpixel((0, 0))) for block in seven
               if block["type"] == "image"]
    assert colours == list(range(7))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, check=False)


def test_cli_writes_image_sets_and_names_file_and_index_of_bad_rows(tmp_path, mmfinereason_file, mmmu_file):
    """End to end: the fixed output names, the image folder defaulting to the data file's folder, and each refused
    row printed with its index under the line that names its file; an image set left empty fails with nothing
    written."""
    out = tmp_path / "data"
    proc = _cli("--out-dir", str(out), "mmfinereason_123k", "mmmu_val",
                "--source", f"mmfinereason_123k={mmfinereason_file}", "--source", f"mmmu_val={mmmu_file}")
    assert proc.returncode == 0, proc.stderr
    assert f"mmfinereason_123k: read 8, kept 4, dropped 4  ({mmfinereason_file})" in proc.stdout
    assert "  dropped row 5: 1 image(s) but 2 <image> placeholder(s) in the text" in proc.stdout
    assert f"mmmu_val: read 7, kept 3, dropped 4  ({mmmu_file})" in proc.stdout
    assert "  dropped row 3: the text refers to image(s) [3], which the row does not have" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["mmfinereason_123k.parquet", "mmmu_val.parquet"]
    assert pq.read_table(out / "mmmu_val.parquet").num_rows == 3

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question_text": "Q", "question_answer": "1"}])
    proc = _cli("--out-dir", str(out), "zerobench", "--source", f"zerobench={bad}")
    assert proc.returncode == 1
    assert "  dropped row 0: no question_images_decoded column (tried ['question_images_decoded'])" in proc.stdout
    assert "error: zerobench: no usable rows, nothing written" in proc.stderr
    assert not any(p.name.startswith("zerobench") for p in out.iterdir())


def test_cli_groups_and_flag_checks(tmp_path):
    """``rlsd`` names the six image sets; --column is refused for them, --image-dir for text sets, and a missing
    local file is a SourceError naming the source and its layout."""
    assert [s.name for s in RLSD_BENCHMARKS] == ["mmmu_val", "mathvista_testmini", "mathvision_test", "zerobench",
                                                 "wemath"]
    proc = _cli("--out-dir", str(tmp_path), "mmmu_val", "--column", "mmmu_val.question=q")
    assert proc.returncode == 2 and "image sets have fixed record layouts" in proc.stderr
    proc = _cli("--out-dir", str(tmp_path), "aime24", "--image-dir", "aime24=x")
    assert proc.returncode == 2 and "aime24 is a text set" in proc.stderr
    proc = _cli("--out-dir", str(tmp_path), "rlsd", "--source", "wemath=missing/wemath.jsonl",
                "--source", "mmfinereason_123k=missing/a.json", "--source", "mmmu_val=missing/b.json",
                "--source", "mathvista_testmini=missing/c.json", "--source", "mathvision_test=missing/d.json",
                "--source", "zerobench=missing/e.json")
    assert proc.returncode == 1
    assert "cannot read source 'wemath' from missing/wemath.jsonl" in proc.stderr
    assert "records: question (options written inside it" in proc.stderr
    assert "failed: ['mmfinereason_123k', 'mmmu_val', 'mathvista_testmini', 'mathvision_test', 'zerobench', " \
           "'wemath']" in proc.stderr
