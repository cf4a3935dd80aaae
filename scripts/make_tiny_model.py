"""Build a tiny random-weight Qwen2 model (+ locally trained tokenizer) and, optionally, tiny math parquet; with
``--vl`` a tiny Qwen3-VL model (default TinyVLSpec) and the generated image-counting task instead.

    python scripts/make_tiny_model.py --out artifacts/tiny_model
    python scripts/make_tiny_model.py --out artifacts/bench_model --hidden-size 512 --num-layers 4 --vocab-size 8192
    python scripts/make_tiny_model.py --out artifacts/tiny_model --data-dir artifacts/tiny_data
    python scripts/make_tiny_model.py --vl --out artifacts/tiny_vl_model --data-dir artifacts/image_data
"""

from __future__ import annotations

import argparse
import os

from rlrt_recipe.testing import TinyModelSpec, TinyVLSpec, build_tiny_model, build_tiny_vl_model, write_math_parquet
from rlrt_recipe.testing.image_data import processor_prompt_length, write_image_parquet
from rlrt_recipe.testing.tiny_model import CHAT_TEMPLATES, num_parameters

SIZE_OPTIONS = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
                "chat_template", "untied")


def main() -> None:
    defaults = TinyModelSpec()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--hidden-size", type=int, default=defaults.hidden_size)
    parser.add_argument("--num-layers", type=int, default=defaults.num_layers)
    parser.add_argument("--num-heads", type=int, default=defaults.num_heads)
    parser.add_argument("--num-kv-heads", type=int, default=defaults.num_kv_heads)
    parser.add_argument("--intermediate-size", type=int, default=None, help="default: 2 x hidden size")
    parser.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    parser.add_argument("--chat-template", choices=sorted(CHAT_TEMPLATES), default=defaults.chat_template)
    parser.add_argument("--untied", action="store_true", help="separate lm_head instead of tied embeddings")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--data-dir", default=None, help="also write train.parquet and test.parquet here")
    parser.add_argument("--train-rows", type=int, default=None, help="default: 64 (text), 32 (--vl)")
    parser.add_argument("--test-rows", type=int, default=8)
    parser.add_argument("--vl", action="store_true",
                        help="a tiny Qwen3-VL model (default TinyVLSpec, seed from --seed) and image-counting data")
    args = parser.parse_args()
    if args.vl:
        changed = [f"--{name.replace('_', '-')}" for name in SIZE_OPTIONS
                   if getattr(args, name) != parser.get_default(name)]
        if changed:
            parser.error(f"--vl builds the default TinyVLSpec; not for it: {', '.join(changed)} (text model only)")
        make_vl(args)
        return

    spec = TinyModelSpec(
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        num_kv_heads=args.num_kv_heads,
        intermediate_size=args.intermediate_size,
        vocab_size=args.vocab_size,
        tie_word_embeddings=not args.untied,
        chat_template=args.chat_template,
        seed=args.seed,
    )
    model_dir = build_tiny_model(args.out, spec)
    print(f"model: {model_dir} ({num_parameters(model_dir):,} parameters)")
    if args.data_dir:
        for split, rows, seed in (("train", args.train_rows or 64, args.seed), ("test", args.test_rows, args.seed + 1)):
            path = write_math_parquet(os.path.join(args.data_dir, f"{split}.parquet"), rows, seed=seed, split=split)
            print(f"data: {path} ({rows} rows)")


def make_vl(args: argparse.Namespace) -> None:
    """The tiny Qwen3-VL model and, with --data-dir, image-counting rows whose prompt lengths all differ within a
    split (measured with the model's processor; verl 0.9.1 mis-lays 3-D position ids of equal-length batches)."""
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    from rlrt_recipe.cpu.vision import use_real_video_processor

    use_real_video_processor()  # transformers cannot build or load a Qwen3-VL processor without it (no torchvision)
    model_dir = build_tiny_vl_model(args.out, TinyVLSpec(seed=args.seed))
    num_params = sum(p.numel() for p in Qwen3VLForConditionalGeneration.from_pretrained(model_dir).parameters())
    print(f"model: {model_dir} ({num_params:,} parameters, Qwen3-VL)")
    if args.data_dir:
        prompt_length = processor_prompt_length(AutoProcessor.from_pretrained(model_dir))
        for split, rows, seed in (("train", args.train_rows or 32, args.seed), ("test", args.test_rows, args.seed + 1)):
            path = write_image_parquet(os.path.join(args.data_dir, f"{split}.parquet"), rows, seed=seed, split=split,
                                       prompt_length=prompt_length)
            print(f"data: {path} ({rows} rows, image prompts of distinct lengths)")


if __name__ == "__main__":
    main()
