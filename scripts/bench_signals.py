"""Cost of our advantage estimators against verl's own ``grpo`` estimator, on the same inputs, on CPU.

    python scripts/bench_signals.py                      # 512 rollouts x 8192 tokens + the scaling sweep
    python scripts/bench_signals.py --tiny               # CI: two small sizes, a few repeats, every field printed
    python scripts/bench_signals.py --json out.json

Every estimator is called through verl's registry (``get_adv_estimator_fn(name)``) with the keyword
contract of docs/methods.md; ours call verl's GRPO function unchanged and reshape A per token, so

    cost(ours) = cost(verl grpo) + cost(Δ, w_t, Â_t: a fixed number of elementwise passes over [B, T])
    ratio      = median_seconds(ours) / median_seconds(grpo)        (target ≤ 1.5)

Inputs per size (B rollouts, T = max response tokens): groups of ``--group`` rollouts sharing a uid, response
lengths uniform in [T/4, T], reward 1 on about half of the rollouts (on the last response token), s and τ
random log-probs in [-5, 0), every row scored. One torch thread unless ``--threads`` says otherwise. Times are the median (and the minimum) of ``--repeats`` calls
after one warm-up call; ``passes`` = (ours − grpo) / the time of one elementwise pass over a [B, T] float32
tensor, i.e. what reshaping A costs in units of memory traffic.

Then, once every size above is done (so that their figures are as before), every preset of the token-weight family
(``recipes/method/<name>.yaml``: its ``algorithm.adv_estimator`` and ``rlrt:`` keys, following its defaults chain)
and ``family``, all pieces at once (negative gate, thinking span, CAST's boxes, the confidence factor, AntiSD's term),
each eager and with ``rlrt.fused_advantage=true`` (``+fused``: one torch.compile'd kernel). A fresh [B, T] buffer
costs page faults, and how many depends on what the process allocated before (compiling changes it), so each size
re-times grpo next to the presets; their ratios use that grpo. ``compile s`` = the first fused call minus the median
warm one: the compilation, at the first size only (B and T are symbols: later sizes reuse the kernel, and presets
with the same kernel variant share it).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from rlrt_recipe.config import RlrtConfig
from rlrt_recipe.integration.estimators import estimator_inputs  # importing it registers our estimators with verl
from rlrt_recipe.testing.bench import timed, write_json

OURS = ("rlrt", "rlsd", "opsd", "grpo_opsd")
METHOD_RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "method"
#: The family's presets (recipes/method/), then ``family``: every piece at once, as tests/test_e2e_family.py runs it.
PRESETS = ("rlsd", "rlrt", "rlrt_all", "rlrt_teacher_up", "rlsd_negative", "cast", "grpo_opsd", "antisd", "family")
FAMILY = ("rlsd", dict(gate="negative", span="thinking", correct_box=[0.8, 1.05], incorrect_box=[0.95, 1.2],
                       confidence_min=0.1, additive="antisd"))
OPEN_TAG, CLOSE_TAG, VOCAB = 151667, 151668, 151936  # Qwen3's <think>, </think> and |V|
FULL_SIZES = ((64, 1024), (128, 2048), (256, 4096), (512, 2048), (512, 8192))
TINY_SIZES = ((16, 64), (32, 256))
TARGET_RATIO = 1.5


def make_inputs(rollouts: int, tokens: int, group: int, seed: int = 0) -> dict:
    """verl-shaped padded inputs for one advantage call: rewards, mask, uid index and both log-probs [B, T]."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(tokens // 4, tokens + 1, (rollouts,), generator=gen)  # [B]
    positions = torch.arange(tokens)[None, :]  # [1, T]
    mask = (positions < lengths[:, None]).to(torch.int64)  # [B, T]
    scores = (torch.rand(rollouts, generator=gen) < 0.5).float()  # [B]
    rewards = torch.zeros(rollouts, tokens)  # [B, T]
    rewards[torch.arange(rollouts), lengths - 1] = scores
    index = np.array([f"uid{i // group}" for i in range(rollouts)], dtype=object)  # [B]
    old = -5 * torch.rand(rollouts, tokens, generator=gen)  # [B, T] s
    teacher = -5 * torch.rand(rollouts, tokens, generator=gen)  # [B, T] τ
    return dict(rewards=rewards, mask=mask, index=index, old=old, teacher=teacher, correct=scores >= 0.5)


def preset(name: str) -> tuple[str, dict]:
    """(adv_estimator, rlrt keys) of a preset: recipes/method/<name>.yaml over the presets in its defaults list."""
    if name == "family":
        return FAMILY
    recipe = OmegaConf.to_container(OmegaConf.load(METHOD_RECIPES / f"{name}.yaml"))
    estimator, section = None, {}
    for parent in recipe.get("defaults", []):
        if parent != "_self_":
            estimator, section = preset(parent)
    estimator = recipe.get("algorithm", {}).get("adv_estimator", estimator)
    return estimator, {**section, **recipe.get("rlrt", {})}


def estimator_calls(x: dict, rollouts: int, tokens: int, presets: tuple[str, ...] = ()) -> dict:
    """Zero-argument calls of verl's grpo, each of ours (default settings) and each preset eager and ``+fused``,
    through verl's registry, on the inputs ``x``."""
    algo = AlgoConfig(norm_adv_by_std_in_grpo=True)
    has_teacher = torch.ones(rollouts, dtype=torch.bool)  # [B] every row scored: the most work for ours
    # the family's optional inputs: response ids with a thinking span over the first ~60 % of each response, and the
    # teacher's token entropy in [0, 3)
    responses = torch.randint(0, 151000, (rollouts, tokens), generator=torch.Generator().manual_seed(1))  # [B, T]
    lengths = x["mask"].sum(-1)  # [B]
    responses[:, 0] = OPEN_TAG
    responses[torch.arange(rollouts), (0.6 * lengths).long()] = CLOSE_TAG
    entropy = 3 * torch.rand(rollouts, tokens, generator=torch.Generator().manual_seed(2))  # [B, T]
    optional = dict(responses=responses, span_tag_ids=([OPEN_TAG], [CLOSE_TAG]), teacher_entropy=entropy,
                    vocab_size=VOCAB)

    def grpo():
        # verl mutates nothing it is given here, but clone the rewards like a fresh batch would arrive
        return get_adv_estimator_fn("grpo")(x["rewards"].clone(), x["mask"], x["index"], config=algo)

    def ours(name: str, cfg: RlrtConfig):
        wanted = estimator_inputs(name, cfg)
        extra = {key: value for key, value in optional.items() if key in wanted}
        return lambda: get_adv_estimator_fn(name)(
            x["rewards"].clone(), x["mask"], x["index"], algo, old_log_probs=x["old"], teacher_log_probs=x["teacher"],
            correct=x["correct"], has_teacher=has_teacher, global_step=1, rlrt_cfg=cfg, **extra,
        )

    def resolved(name: str, section: dict) -> RlrtConfig:
        return RlrtConfig.from_section(section).resolved(name, max_prompt_length=512, max_response_length=tokens)

    calls = {"grpo": grpo}
    for name in OURS:
        calls[name] = ours(name, resolved(name, {}))
    for name in presets:
        estimator, section = preset(name)
        calls[name] = ours(estimator, resolved(estimator, section))
        calls[f"{name}+fused"] = ours(estimator, resolved(estimator, {**section, "fused_advantage": True}))
    return calls


def bench_size(rollouts: int, tokens: int, *, group: int, repeats: int) -> dict:
    """Median seconds of verl's grpo and of each of our estimators at one size, and ours / grpo."""
    x = make_inputs(rollouts, tokens, group)
    calls = estimator_calls(x, rollouts, tokens)

    def one_pass():
        return x["old"] + x["teacher"]  # one elementwise pass over [B, T] float32: the unit of our extra cost

    row = {"rollouts": rollouts, "tokens": tokens, "response_tokens": int(x["mask"].sum()),
           "seconds": {}, "min_seconds": {}, "ratio": {}, "min_ratio": {}, "extra_passes": {}}
    row["seconds"]["pass"], row["min_seconds"]["pass"] = timed(one_pass, repeats)
    row["seconds"]["grpo"], row["min_seconds"]["grpo"] = timed(calls["grpo"], repeats)
    for name in OURS:
        row["seconds"][name], row["min_seconds"][name] = timed(calls[name], repeats)
        row["ratio"][name] = row["seconds"][name] / row["seconds"]["grpo"]
        row["min_ratio"][name] = row["min_seconds"][name] / row["min_seconds"]["grpo"]
        # (ours − grpo) in units of one elementwise pass: what the reshaping of A costs beyond verl's function
        row["extra_passes"][name] = (row["min_seconds"][name] - row["min_seconds"]["grpo"]) / row["min_seconds"]["pass"]
    return row


def bench_presets_size(rollouts: int, tokens: int, *, group: int, repeats: int) -> dict:
    """At one size: grpo, each of ``PRESETS`` eager and ``name+fused`` (median, min seconds, ratios to this grpo), and
    the first fused call minus the median warm one (``compile_seconds``)."""
    x = make_inputs(rollouts, tokens, group)
    calls = estimator_calls(x, rollouts, tokens, PRESETS)
    row = {"rollouts": rollouts, "tokens": tokens, "seconds": {}, "min_seconds": {}, "ratio": {}, "min_ratio": {},
           "compile_seconds": {}}
    row["seconds"]["grpo"], row["min_seconds"]["grpo"] = timed(calls["grpo"], repeats)
    for name in PRESETS:
        row["seconds"][name], row["min_seconds"][name] = timed(calls[name], repeats)
        start = time.perf_counter()
        calls[f"{name}+fused"]()
        first = time.perf_counter() - start
        row["seconds"][f"{name}+fused"], row["min_seconds"][f"{name}+fused"] = timed(calls[f"{name}+fused"], repeats)
        row["compile_seconds"][f"{name}+fused"] = first - row["seconds"][f"{name}+fused"]
    for name in row["seconds"]:
        if name != "grpo":
            row["ratio"][name] = row["seconds"][name] / row["seconds"]["grpo"]
            row["min_ratio"][name] = row["min_seconds"][name] / row["min_seconds"]["grpo"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help=f"CI mode: sizes {TINY_SIZES}, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per estimator and size (default 7; 3 with --tiny)")
    parser.add_argument("--group", type=int, default=8, help="rollouts per prompt (rollout.n)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on a shared machine a parallel op waits for its "
                             "slowest thread, i.e. for a scheduler slice when another process holds the core)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = TINY_SIZES if args.tiny else FULL_SIZES
    repeats = args.repeats or (3 if args.tiny else 7)

    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "repeats": repeats, "group": args.group, "target_ratio": TARGET_RATIO, "sizes": [],
    }
    print(f"machine: {result['machine']}  repeats={repeats} group={args.group}")
    print("median ms per call, ratio = ours / grpo (medians); min-ratio = the same with minimum times; "
          "passes = (ours - grpo) / one elementwise [B, T] pass (minimum times)")
    header = f"{'rollouts':>8} {'tokens':>6} {'pass ms':>8} {'grpo ms':>8}"
    header += "".join(f" {n + ' ms':>13} {'ratio':>6} {'min-ratio':>9} {'passes':>6}" for n in OURS)
    print(header)
    for rollouts, tokens in sizes:
        row = bench_size(rollouts, tokens, group=args.group, repeats=repeats)
        result["sizes"].append(row)
        seconds = row["seconds"]
        line = f"{rollouts:>8} {tokens:>6} {1e3 * seconds['pass']:>8.2f} {1e3 * seconds['grpo']:>8.2f}"
        line += "".join(
            f" {1e3 * seconds[n]:>13.2f} {row['ratio'][n]:>6.2f} {row['min_ratio'][n]:>9.2f} {row['extra_passes'][n]:>6.1f}"
            for n in OURS
        )
        print(line, flush=True)
    headline = result["sizes"][-1]
    worst = max(headline["ratio"].values())
    result["headline"] = {"rollouts": headline["rollouts"], "tokens": headline["tokens"], "worst_ratio": worst,
                          "target_met": worst <= TARGET_RATIO}
    print(f"headline {headline['rollouts']} x {headline['tokens']}: worst ours/grpo = {worst:.2f} "
          f"(target <= {TARGET_RATIO}: {'met' if worst <= TARGET_RATIO else 'MISSED'})")

    print("\npresets (recipes/method/ and family = every piece), eager and +fused (rlrt.fused_advantage=true), after "
          "every size above; grpo re-timed; compile s = first fused call - warm median")
    result["presets"] = {"sizes": []}
    for rollouts, tokens in sizes:
        row = bench_presets_size(rollouts, tokens, group=args.group, repeats=repeats)
        result["presets"]["sizes"].append(row)
        seconds = row["seconds"]
        print(f"{rollouts} x {tokens}: grpo {1e3 * seconds['grpo']:.2f} ms")
        print(f"  {'preset':<16} {'ms':>8} {'ratio':>6} {'min-ratio':>9} {'+fused ms':>10} {'ratio':>6} "
              f"{'min-ratio':>9} {'compile s':>9}")
        for name in PRESETS:
            fused = f"{name}+fused"
            print(f"  {name:<16} {1e3 * seconds[name]:>8.2f} {row['ratio'][name]:>6.2f} {row['min_ratio'][name]:>9.2f}"
                  f" {1e3 * seconds[fused]:>10.2f} {row['ratio'][fused]:>6.2f} {row['min_ratio'][fused]:>9.2f}"
                  f" {row['compile_seconds'][fused]:>9.2f}", flush=True)
    headline = result["presets"]["sizes"][-1]
    for label, names in (("eager", PRESETS), ("fused", [f"{n}+fused" for n in PRESETS])):
        worst = max(headline["ratio"][n] for n in names)
        result["presets"][f"{label}_headline"] = {"worst_ratio": worst, "target_met": worst <= TARGET_RATIO}
        print(f"presets {label} headline {headline['rollouts']} x {headline['tokens']}: worst / grpo = {worst:.2f} "
              f"(target <= {TARGET_RATIO}: {'met' if worst <= TARGET_RATIO else 'MISSED'})")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
