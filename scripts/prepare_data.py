#!/usr/bin/env python3
"""Write verl parquet files for the training set and the six evaluation benchmarks.

    python scripts/prepare_data.py --out-dir data                      # all seven, from the hub
    python scripts/prepare_data.py --out-dir data aime24 math500       # some of them
    python scripts/prepare_data.py --out-dir data aime26 --source aime26=downloads/aime26.jsonl \\
        --column aime26.question=problem --column aime26.answer=answer

Writes <out-dir>/<name>.parquet per source (names: see --help) and prints, per source, the rows read,
kept and dropped, with the index and reason of each dropped row. Exit status 1 if a source cannot be read
or ends up empty. Train with data.train_files=<out-dir>/dapo_math_17k.parquet and evaluate with
data.val_files=[<out-dir>/aime24.parquet,...].
"""

from __future__ import annotations

import argparse
import sys

from rlrt_recipe.data import COLUMN_FIELDS, SOURCES, SourceError, convert, load_rows, summary, with_columns, write_parquet


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b"}``; a value without ``=`` is an argparse error naming ``flag``."""
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(SOURCES), help=f"sources to convert (default: all of {list(SOURCES)})")
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
        help=f"column of NAME holding FIELD ({'/'.join(COLUMN_FIELDS)}); dotted paths reach nested columns; "
        "an empty COLUMN for solution drops reference solutions",
    )
    args = parser.parse_args(argv)

    unknown = sorted(set(args.names) - set(SOURCES))
    if unknown:
        parser.error(f"unknown source(s) {unknown}; known: {list(SOURCES)}")
    specs = _pairs(args.source, "--source")
    columns: dict[str, dict[str, str]] = {}
    for key, column in _pairs(args.column, "--column").items():
        name, _, field = key.partition(".")
        if field not in COLUMN_FIELDS:
            parser.error(f"--column {key}={column}: FIELD must be one of {COLUMN_FIELDS}")
        columns.setdefault(name, {})[field] = column
    for name in sorted((set(specs) | set(columns)) - set(args.names)):
        parser.error(f"--source/--column given for {name!r}, which is not being converted ({args.names})")

    failed = []
    for name in args.names:
        source = with_columns(SOURCES[name], columns.get(name, {}))
        try:
            rows, origin = load_rows(source, specs.get(name))
        except SourceError as err:
            print(f"error: {err}", file=sys.stderr)
            failed.append(name)
            continue
        conversion = convert(source, rows, origin)
        for line in summary(conversion):
            print(line)
        if not conversion.rows:
            print(f"error: {name}: no usable rows, nothing written (check the column names with --column)", file=sys.stderr)
            failed.append(name)
            continue
        print(f"  -> {write_parquet(conversion.rows, f'{args.out_dir}/{name}.parquet')}")
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
