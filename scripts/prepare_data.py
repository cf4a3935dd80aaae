#!/usr/bin/env python3
"""Write verl parquet files: the RLRT text sets (the training set and six benchmarks) and the RLSD image sets.

    python scripts/prepare_data.py --out-dir data                      # the seven text sets, from the hub
    python scripts/prepare_data.py --out-dir data aime24 math500       # some of them
    python scripts/prepare_data.py --out-dir data aime26 --source aime26=downloads/aime26.jsonl \\
        --column aime26.question=problem --column aime26.answer=answer
    python scripts/prepare_data.py --out-dir data rlsd                 # the six image sets, hub untested offline
    python scripts/prepare_data.py --out-dir data mmfinereason_123k \\
        --source mmfinereason_123k=downloads/mmfr/train.json --image-dir mmfinereason_123k=downloads/mmfr
    python scripts/prepare_data.py --out-dir data mmmu_val --source mmmu_val=downloads/mmmu_validation.parquet

Writes <out-dir>/<name>.parquet per source (names: see --help) and prints, per source, the rows read,
kept and dropped, with the index and reason of each dropped row (the source's file is on the first line).
Exit status 1 if a source cannot be read or ends up empty. Train with data.train_files=<out-dir>/dapo_math_17k.parquet
and evaluate with data.val_files=[<out-dir>/aime24.parquet,...].

Image sets (RLSD Table 2) go into verl's multimodal schema: a prompt with one <image> placeholder per image, an
images column of PNG bytes, extra_info.answer_format and .options (rlrt_recipe.data, rlrt_recipe.choices).
Their record layouts are our assumption about the hub copies, and their hub paths are untested offline (no hub
here); both are listed below. A local --source file for an image set is .json/.jsonl/.parquet in that layout,
its images file paths (relative ones under --image-dir NAME=DIR, by default the data file's folder),
data:image/...;base64 URIs, or {"bytes": ..., "path": ...} entries (bytes in parquet, base64 text in JSON).
MMFineReason's hub copy keeps its images as files in the dataset repo: download the repo (huggingface-cli
download iieycx/rlsd-train-MMFineReason-123K --repo-type dataset --local-dir DIR), then pass its records file
with --source and DIR with --image-dir. Images are stored as PNG: PNG data byte for byte, other formats
re-encoded losslessly. The prompt wording is ours: free-form questions end with the text sets' \\boxed{}
instruction; multiple choice lists the options as "A. ..." lines and asks for the letter in \\boxed{}.
MMFineReason rows without a reasoning trace are kept with extra_info.solution = None (their count is printed).
Which split and which score each benchmark stands for: rlrt_recipe.data.RLSD_EVALUATION.
"""

from __future__ import annotations

import argparse
import os
import sys

from rlrt_recipe.data import (
    COLUMN_FIELDS,
    SOURCES,
    VISION_SOURCES,
    SourceError,
    convert,
    convert_images,
    is_local,
    load_rows,
    summary,
    with_columns,
    write_parquet,
)

GROUPS = {"rlrt": list(SOURCES), "rlsd": list(VISION_SOURCES)}


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}``; a value without ``=`` is an argparse error naming ``flag``."""
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


def _image_sets_help() -> str:
    lines = ["image sets (hub ids untested offline; the layout is the record schema we assume):"]
    for source in VISION_SOURCES.values():
        lines.append(f"  {source.name}  (data_source {source.data_source}; hub {source.hub}@{source.hub_split}, "
                     f"untested offline)\n      {source.layout}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=_image_sets_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(SOURCES),
                        help=f"sources to convert (default: the text sets {list(SOURCES)}); image sets "
                        f"{list(VISION_SOURCES)}; groups {list(GROUPS)}")
    parser.add_argument("--out-dir", required=True, help="directory for <name>.parquet")
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="read NAME from a local .json/.jsonl/.parquet file or another hub id owner/name[:config][@split]",
    )
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="NAME.FIELD=COLUMN",
        help=f"(text sets) column of NAME holding FIELD ({'/'.join(COLUMN_FIELDS)}); dotted paths reach nested "
        "columns; an empty COLUMN for solution drops reference solutions",
    )
    parser.add_argument(
        "--image-dir",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="(image sets) folder that relative image paths of NAME's records are under (default: the folder of "
        "its --source file)",
    )
    args = parser.parse_args(argv)

    names = [name for group_or_name in args.names for name in GROUPS.get(group_or_name, [group_or_name])]
    unknown = sorted(set(names) - set(SOURCES) - set(VISION_SOURCES))
    if unknown:
        parser.error(f"unknown source(s) {unknown}; known: {list(SOURCES)} {list(VISION_SOURCES)} {list(GROUPS)}")
    specs = _pairs(args.source, "--source")
    image_dirs = _pairs(args.image_dir, "--image-dir")
    columns: dict[str, dict[str, str]] = {}
    for key, column in _pairs(args.column, "--column").items():
        name, _, field = key.partition(".")
        if field not in COLUMN_FIELDS:
            parser.error(f"--column {key}={column}: FIELD must be one of {COLUMN_FIELDS}")
        columns.setdefault(name, {})[field] = column
    for name in sorted((set(specs) | set(columns) | set(image_dirs)) - set(names)):
        parser.error(f"--source/--column/--image-dir given for {name!r}, which is not being converted ({names})")
    for name in sorted(set(columns) & set(VISION_SOURCES)):
        parser.error(f"--column {name}: image sets have fixed record layouts (see below); rename the columns instead")
    for name in sorted(set(image_dirs) & set(SOURCES)):
        parser.error(f"--image-dir {name}: {name} is a text set")

    failed = []
    for name in names:
        if name in VISION_SOURCES:
            ok = _convert_image_set(name, specs.get(name), image_dirs.get(name), args.out_dir)
        else:
            ok = _convert_text_set(name, specs.get(name), columns.get(name, {}), args.out_dir)
        if not ok:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


def _convert_text_set(name: str, spec: str | None, columns: dict[str, str], out_dir: str) -> bool:
    source = with_columns(SOURCES[name], columns)
    try:
        rows, origin = load_rows(source, spec)
    except SourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return False
    conversion = convert(source, rows, origin)
    for line in summary(conversion):
        print(line)
    if not conversion.rows:
        print(f"error: {name}: no usable rows, nothing written (check the column names with --column)", file=sys.stderr)
        return False
    print(f"  -> {write_parquet(conversion.rows, f'{out_dir}/{name}.parquet')}")
    return True


def _convert_image_set(name: str, spec: str | None, image_dir: str | None, out_dir: str) -> bool:
    source = VISION_SOURCES[name]
    try:
        rows, origin = load_rows(source, spec)
    except SourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return False
    if image_dir is None and spec is not None and is_local(spec):
        image_dir = os.path.dirname(os.path.abspath(spec))
    path = os.path.join(out_dir, f"{name}.parquet")
    partial = f"{path}.partial"  # rows are written as they are converted; renamed once the file is complete
    conversion = convert_images(source, rows, origin, image_dir=image_dir, path=partial)
    for line in summary(conversion):
        print(line)
    if not conversion.kept:
        os.remove(partial)
        print(f"error: {name}: no usable rows, nothing written (check the record layout in --help)", file=sys.stderr)
        return False
    os.replace(partial, path)
    print(f"  -> {path}")
    return True


if __name__ == "__main__":
    sys.exit(main())
