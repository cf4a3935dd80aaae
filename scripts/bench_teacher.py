"""The teacher pass against its physical limit, through verl's real main_ppo loop on CPU (``rlrt_sync``).

    python scripts/bench_teacher.py                       # ≥ 20 M-parameter model, 256-token responses, 3 steps
    python scripts/bench_teacher.py --tiny                # CI: tiny model, 32-token responses, 1 step per method
    python scripts/bench_teacher.py --json out.json

One run = two launches of scripts/run_cpu_demo.sh, one after the other (never two at once): ``rlsd`` (the
``answer`` context: short teacher prompts) and ``rlrt`` (the ``rollout`` context: a correct sibling's response
in the teacher prompt, long). Both use the seeded ~50 % test reward, so groups are mixed and siblings exist,
``ppo_epochs=2`` with two mini-batches per epoch, and ``log_prob_micro_batch_size_per_gpu=1`` (one row per
forward: with verl's remove-padding packing and CPU sdpa a micro-batch of k rows would attend over their
concatenation, which no longer matches the per-row attention term below).

The model is built locally (``TinyModelSpec``) with an untied LM head whose EOS rows are zeroed and whose other
rows are scaled ×5: a random model then emits EOS with probability ~1e-4 per token instead of ~2/vocab, so
responses run to ``data.max_response_length`` as they would with a long-reasoning policy.

FLOPs of one forward over a row of L tokens (prompt + response), from the model config:

    F(L) = 2 · N · L  +  2 · n_layers · L² · d

N = parameters that take part in a matmul (all but the input embedding, which is a lookup), d = hidden size.
Summed over rows: F = 2·N·ΣL + 2·n_layers·d·ΣL², with ΣL and ΣL² logged per step by the teacher step
(``rlrt/{student,teacher}_tokens``, ``rlrt/{student,teacher}_sq_tokens``; student = every real row, teacher =
the scored rows). Reported, over the measured steps (step 1, which starts the workers lazily, is left out
when there is more than one step):

- time ratio  = Σ timing_s/teacher / Σ timing_s/old_log_prob_student, and the same with only the seconds
  inside the teacher's compute_log_prob call (``rlrt/teacher_forward_s``);
- FLOP ratio  = F_teacher / F_student;  time ratio / FLOP ratio is the cost over the physical limit (target ≤ 1.10);
- overhead    = (timing_s/teacher − rlrt/teacher_forward_s) / real rows, in ms per row (prompt re-rendering,
  teacher prompts, TransferQueue get/put, the Ray round trip is inside the forward figure);
- scored rows / real rows; teacher forwards per scored row = rows sent to compute_log_prob, less the
  data-parallel padding rows, / scored rows, with the number of calls per step (``rlrt/teacher_calls``);
- the actor worker's own count of compute_log_prob tasks per step and its resident memory (RSS, from
  psutil, sampled every 10 ms while Ray's process title names the task being run): peak RSS
  during each pass minus the RSS just before it, and the RSS left after the teacher pass;
- per teacher identity (``--teachers live frozen snapshot``): the teacher's weight bytes beyond the actor's own,
  on the accelerator and in host memory. ``live`` is 0 by construction: the teacher step calls
  ``actor_rollout_wg.compute_log_prob`` on the actor's FSDP shards and loads no model. ``frozen`` and
  ``snapshot`` score with verl's reference model, 4·N_params of fp32 weights: in host memory here (the CPU
  env builds it as a plain FSDP2 module, a wiring check), and in pinned host memory on a GPU, where verl's
  forward-only reference streams its shards to the accelerator per micro-batch. Also the snapshot's refresh
  time (``timing_s/teacher_refresh``, one copy of the actor's shards; N = ``SNAPSHOT_SYNC_STEPS`` so that a
  measured step refreshes) and the teacher pass itself, as for ``live``;
- teacher share of the step = Σ timing_s/teacher / Σ timing_s/step, and a labelled projection for a
  synchronous GPU step: with rollout share ρ of the step and the remaining (1 − ρ) split as one old-log-prob
  forward F plus an update of ≈ 3F (forward + backward, one epoch), the teacher adds r·F with r the FLOP
  ratio, so its share is  s = r·(1 − ρ)/4 / (1 + r·(1 − ρ)/4)  (ρ = 0.7, verl DAPO-32B; ρ = 0.8, OpenRLHF).
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch
from transformers import Qwen2ForCausalLM

from rlrt_recipe.logs import read_metrics
from rlrt_recipe.testing import TinyModelSpec, build_tiny_model, write_math_parquet
from rlrt_recipe.testing.launch import ROOT, run_cpu_demo
from rlrt_recipe.testing.bench import write_json

METHODS = {"rlsd": "answer", "rlrt": "rollout"}  # estimator -> privileged context it uses
TARGET_TIME_OVER_FLOPS = 1.10
ROLLOUT_SHARES = {"verl DAPO-32B report": 0.7, "OpenRLHF README": 0.8}
LOG_PROB_MICRO_BATCH = 1  # rows per log-prob forward (module docstring); the teacher pads to a multiple of it
TEACHERS = ("live", "frozen", "snapshot")
SNAPSHOT_SYNC_STEPS = 2  # refreshes at steps 1, 3, …: step 3 is measured in the default 3-step run
WORKER_TITLE = "ray::WorkerDict"  # Ray's process title of the actor worker; ".<task>" is appended while it runs one


@dataclass(frozen=True)
class BenchSize:
    """One benchmark configuration: the model and the shape of a training step."""

    spec: TinyModelSpec
    max_prompt_length: int
    max_response_length: int
    prompts_per_step: int
    rollouts_per_prompt: int
    steps: int


FULL = BenchSize(
    TinyModelSpec(hidden_size=768, num_layers=4, num_heads=12, num_kv_heads=4, vocab_size=512,
                  tie_word_embeddings=False),  # 21.2 M parameters
    max_prompt_length=64, max_response_length=256, prompts_per_step=2, rollouts_per_prompt=8, steps=3,
)
TINY = BenchSize(
    TinyModelSpec(hidden_size=64, num_layers=2, vocab_size=512, tie_word_embeddings=False),
    max_prompt_length=64, max_response_length=32, prompts_per_step=2, rollouts_per_prompt=4, steps=1,
)


# ---------------------------------------------------------------------------------------------- model

def build_bench_model(out_dir: Path, spec: TinyModelSpec) -> dict:
    """Build the model, make EOS (almost) never sampled, and return its FLOP-relevant sizes."""
    build_tiny_model(out_dir, spec)
    model = Qwen2ForCausalLM.from_pretrained(out_dir)
    eos_ids = model.generation_config.eos_token_id
    with torch.no_grad():
        head = model.lm_head.weight  # [V, d], untied from the input embedding
        head.mul_(5.0)  # wider logits: EOS at logit 0 loses to e^{σ²/2}·V of the rest
        head[eos_ids] = 0.0
    model.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    config = model.config
    return {
        "params": params,
        "matmul_params": params - model.model.embed_tokens.weight.numel(),
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "vocab": config.vocab_size,
        "weight_bytes_fp32": 4 * params,
    }


def forward_flops(tokens: float, sq_tokens: float, model: dict) -> float:
    """F = 2·N·ΣL + 2·n_layers·d·ΣL² over a set of rows (module docstring)."""
    return 2 * model["matmul_params"] * tokens + 2 * model["layers"] * model["hidden"] * sq_tokens


# ---------------------------------------------------------------------------------------------- worker sampling

def title_and_rss(process: psutil.Process) -> tuple[str, int] | None:
    """(process title, resident bytes) of ``process``, or None if it is gone."""
    try:
        with process.oneshot():
            cmdline, rss = process.cmdline(), process.memory_info().rss
    except psutil.Error:  # the process ended between the listing and the read
        return None
    return (cmdline[0].strip(), rss) if cmdline else None


class WorkerSampler(threading.Thread):
    """Samples title and RSS of this process's Ray actor workers every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 0.01, rescan: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.rescan = interval, rescan
        self.samples: dict[int, list[tuple[str, int]]] = {}  # pid -> [(title, rss bytes)] in time order
        self.done = threading.Event()

    def run(self) -> None:
        workers: list[psutil.Process] = []
        next_scan = 0.0
        while not self.done.is_set():
            if time.monotonic() >= next_scan:
                workers = [p for p in psutil.Process().children(recursive=True)
                           if (s := title_and_rss(p)) and s[0].startswith(WORKER_TITLE)]
                next_scan = time.monotonic() + self.rescan
            for process in workers:
                sample = title_and_rss(process)
                if sample:
                    self.samples.setdefault(process.pid, []).append(sample)
            self.done.wait(self.interval)

    def passes(self, task: str = "compute_log_prob") -> list[dict]:
        """Runs of consecutive samples whose title names ``task``, on the worker that ran it most often:
        RSS just before, peak RSS during and RSS just after each run."""
        best: list[dict] = []
        for samples in self.samples.values():
            runs: list[dict] = []
            for k, (title, rss) in enumerate(samples):
                if not title.endswith(task):
                    continue
                if k == 0 or not samples[k - 1][0].endswith(task):
                    runs.append({"rss_before": samples[k - 1][1] if k else rss, "rss_peak": rss, "rss_after": None})
                runs[-1]["rss_peak"] = max(runs[-1]["rss_peak"], rss)
                if k + 1 < len(samples) and not samples[k + 1][0].endswith(task):
                    runs[-1]["rss_after"] = samples[k + 1][1]
            best = max(best, runs, key=len)
        return best


# ---------------------------------------------------------------------------------------------- one launch

def launch(method: str, teacher: str, size: BenchSize, model_dir: Path, data_dir: Path,
           experiment: Path) -> tuple[dict, list[dict], list[dict], float]:
    """Train ``size.steps`` steps of ``method`` with ``teacher`` under rlrt_sync; return (metrics per step, the
    student's and the teacher's log-prob passes on the worker, wall s)."""
    overrides = [
        "trainer.v1.trainer_mode=rlrt_sync",
        f"algorithm.adv_estimator={method}",
        f"data.max_prompt_length={size.max_prompt_length}",
        f"data.max_response_length={size.max_response_length}",
        f"data.train_batch_size={size.prompts_per_step}",
        f"actor_rollout_ref.rollout.n={size.rollouts_per_prompt}",
        "actor_rollout_ref.actor.ppo_epochs=2",  # the teacher must still run once per step
        "actor_rollout_ref.actor.ppo_mini_batch_size=1",  # two mini-batches per epoch
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={LOG_PROB_MICRO_BATCH}",
        f"trainer.experiment_name=bench_teacher_{method}_{teacher}",
        f"+rlrt.teacher={teacher}", f"+rlrt.teacher_sync_steps={SNAPSHOT_SYNC_STEPS}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={LOG_PROB_MICRO_BATCH}",
    ]
    sampler = WorkerSampler()
    sampler.start()
    start = time.monotonic()
    try:
        run_cpu_demo(experiment, str(model_dir), str(data_dir), steps=size.steps, overrides=overrides, timeout=3600)
    finally:
        sampler.done.set()
        sampler.join()
    steps = read_metrics(experiment)
    if teacher == "live":  # both passes are the actor's compute_log_prob, student first
        passes = sampler.passes("compute_log_prob")
        student, teacher_passes = (passes[0::2], passes[1::2]) if len(passes) == 2 * len(steps) else ([], [])
    else:
        student, teacher_passes = sampler.passes("compute_log_prob"), sampler.passes("compute_ref_log_prob")
    return steps, student, teacher_passes, time.monotonic() - start


def summarize(method: str, teacher: str, steps: dict, student_passes: list[dict], teacher_passes: list[dict],
              wall: float, model: dict) -> dict:
    """Every reported field for one method (module docstring), over the measured steps."""
    measured = [s for s in steps if s >= 2] if len(steps) > 1 else list(steps)

    def total(key: str) -> float:
        return sum(float(steps[s][key]) for s in measured)

    student_s, teacher_s = total("timing_s/old_log_prob_student"), total("timing_s/teacher")
    forward_s = total("rlrt/teacher_forward_s")
    student_flops = forward_flops(total("rlrt/student_tokens"), total("rlrt/student_sq_tokens"), model)
    teacher_flops = forward_flops(total("rlrt/teacher_tokens"), total("rlrt/teacher_sq_tokens"), model)
    time_ratio, flop_ratio = teacher_s / student_s, teacher_flops / max(student_flops, 1.0)
    real, scored = total("rlrt/real_rows"), total("rlrt/scored_rows")
    sent, calls = total("rlrt/teacher_rows_sent"), total("rlrt/teacher_calls")
    dp_padding = sum(-int(steps[s]["rlrt/scored_rows"]) % LOG_PROB_MICRO_BATCH for s in measured)  # TeacherBatchLayout
    contexts = {k.split("/", 2)[2]: total(k) for k in steps[measured[0]] if k.startswith("rlrt/context/")}
    lp_per_step = (len(student_passes) + len(teacher_passes)) / len(steps)
    refreshes = [float(steps[s]["timing_s/teacher_refresh"]) for s in measured if "timing_s/teacher_refresh" in steps[s]]
    reference_bytes = 0 if teacher == "live" else model["weight_bytes_fp32"]

    def peak_delta(runs: list[dict]) -> float | None:
        return max((r["rss_peak"] - r["rss_before"] for r in runs), default=None)

    return {
        "method": method,
        "teacher": teacher,
        "context": METHODS[method],
        "measured_steps": measured,
        "launch_wall_s": wall,
        "response_length_mean": sum(float(steps[s]["response_length/mean"]) for s in measured) / len(measured),
        "response_length_clip_ratio": sum(float(steps[s]["response_length/clip_ratio"]) for s in measured) / len(measured),
        "real_rows": real,
        "scored_rows": scored,
        "scored_over_real": scored / max(real, 1.0),
        "context_cases": contexts,
        "teacher_token_ratio": total("rlrt/teacher_tokens") / max(total("rlrt/student_tokens"), 1.0),
        "student_tokens_per_row": total("rlrt/student_tokens") / max(real, 1.0),
        "teacher_tokens_per_scored_row": total("rlrt/teacher_tokens") / max(scored, 1.0),
        "student_seconds": student_s,
        "teacher_seconds": teacher_s,
        "teacher_forward_seconds": forward_s,
        "time_ratio": time_ratio,
        "forward_time_ratio": forward_s / student_s,
        "student_flops": student_flops,
        "teacher_flops": teacher_flops,
        "flop_ratio": flop_ratio,
        "time_over_flops": time_ratio / flop_ratio if flop_ratio else None,
        "forward_time_over_flops": forward_s / student_s / flop_ratio if flop_ratio else None,
        "target_time_over_flops": TARGET_TIME_OVER_FLOPS,
        "overhead_ms_per_real_row": 1e3 * (teacher_s - forward_s) / max(real, 1.0),
        "overhead_ms_per_scored_row": 1e3 * (teacher_s - forward_s) / max(scored, 1.0),
        "teacher_calls_per_step": calls / len(measured),
        "teacher_rows_sent": sent,
        "teacher_forwards_per_scored_row": (sent - dp_padding) / max(scored, 1.0),
        "worker_log_prob_tasks_per_step": lp_per_step,
        "teacher_weight_bytes_beyond_actor_host": reference_bytes,
        "teacher_weight_bytes_beyond_actor_accelerator": 0,  # CPU here; on a GPU the forward-only ref is pinned host
        "teacher_refresh_seconds": sum(refreshes) / len(refreshes) if refreshes else None,
        "teacher_age_steps_mean": sum(float(steps[s]["rlrt/teacher_age_steps"]) for s in measured) / len(measured),
        "actor_weight_bytes_fp32": model["weight_bytes_fp32"],
        "student_pass_rss_peak_delta_bytes": peak_delta(student_passes),
        "teacher_pass_rss_peak_delta_bytes": peak_delta(teacher_passes),
        "teacher_pass_rss_left_after_bytes": max(
            (r["rss_after"] - r["rss_before"] for r in teacher_passes if r["rss_after"] is not None), default=None
        ),
        "teacher_share_of_step": teacher_s / total("timing_s/step"),
        "projected_gpu_teacher_share": {
            source: flop_ratio * (1 - rho) / 4 / (1 + flop_ratio * (1 - rho) / 4) for source, rho in ROLLOUT_SHARES.items()
        },
    }


def print_result(result: dict) -> None:
    model = result["model"]
    print(f"machine: {result['machine']}")
    print(f"model: {model['params']:,} parameters ({model['matmul_params']:,} in matmuls), {model['layers']} layers, "
          f"hidden {model['hidden']}, vocab {model['vocab']}; size: {result['size']}")
    for row in result["methods"]:
        print(f"--- {row['method']} (context: {row['context']}; teacher: {row['teacher']}) ---")
        for key, value in row.items():
            if key in ("method", "context", "teacher"):
                continue
            if isinstance(value, float):
                value = f"{value:.4g}"
            elif isinstance(value, dict):
                value = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
            print(f"  {key:<42} {value}")
        verdict = row["time_over_flops"] is not None and row["time_over_flops"] <= TARGET_TIME_OVER_FLOPS
        print(f"  {'target time/FLOP ratio <= 1.10':<42} {'met' if verdict else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CI mode: tiny model, 32-token responses, 1 step per method")
    parser.add_argument("--steps", type=int, default=None, help="training steps per method (default 3; 1 with --tiny)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--teachers", nargs="+", default=["live"], choices=list(TEACHERS),
                        help="teacher identities (rlrt.teacher) to run each method with (default: live)")
    parser.add_argument("--work-dir", default=None, help="model, data and runs (default artifacts/bench_teacher[_tiny])")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    size = TINY if args.tiny else FULL
    if args.steps:
        size = BenchSize(**{**asdict(size), "spec": size.spec, "steps": args.steps})
    work = Path(args.work_dir or ROOT / "artifacts" / ("bench_teacher_tiny" if args.tiny else "bench_teacher"))
    model_dir, data_dir = work / "model", work / "data"

    model = build_bench_model(model_dir, size.spec)
    train_rows = size.prompts_per_step * size.steps
    write_math_parquet(data_dir / "train.parquet", train_rows, seed=size.spec.seed)
    write_math_parquet(data_dir / "test.parquet", 2, seed=size.spec.seed + 1, split="test")

    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "size": {k: v for k, v in asdict(size).items() if k != "spec"},
        "model": model,
        "methods": [],
    }
    for method in args.methods:
        for teacher in args.teachers:
            experiment = work / "runs" / f"{method}-{teacher}-{time.strftime('%Y%m%d-%H%M%S')}"
            steps, student, teacher_passes, wall = launch(method, teacher, size, model_dir, data_dir, experiment)
            result["methods"].append(summarize(method, teacher, steps, student, teacher_passes, wall, model))
    print_result(result)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
