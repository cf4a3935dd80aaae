"""The benchmark scripts: bench_signals, bench_driver and bench_topk --tiny run and report every field; bench_teacher's
FLOP formula and its reading of the worker's process-title samples. No timing is asserted anywhere."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

from rlrt_recipe.testing.launch import ROOT

ESTIMATORS = ("rlrt", "rlsd", "opsd", "grpo_opsd")


def _load(name: str):
    """``scripts/<name>.py`` as a module (scripts/ is not a package: verl's wheel owns a top-level ``scripts``)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_bench_signals_tiny_reports_every_field(tmp_path):
    """CI's bench_signals --tiny: exits 0, prints a row per size and the headline, and its JSON holds a time and a
    ratio for every estimator at every size (guards a renamed estimator or a broken keyword contract)."""
    out = tmp_path / "signals.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_signals.py"), "--tiny", "--repeats", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "headline" in result.stdout
    data = json.loads(out.read_text())
    assert len(data["sizes"]) == 2
    for row in data["sizes"]:
        assert set(row["seconds"]) == {"pass", "grpo", *ESTIMATORS}
        assert set(row["ratio"]) == set(row["min_ratio"]) == set(row["extra_passes"]) == set(ESTIMATORS)
    assert set(data["headline"]) == {"rollouts", "tokens", "worst_ratio", "target_met"}
    presets = _load("bench_signals").PRESETS
    assert {"rlsd_negative", "cast", "antisd", "family"} <= set(presets)  # every preset recipe of the family
    for row in data["presets"]["sizes"]:
        timed_names = {*presets, *(f"{name}+fused" for name in presets)}
        assert set(row["seconds"]) == {"grpo", *timed_names} and set(row["ratio"]) == timed_names
        assert set(row["compile_seconds"]) == {f"{name}+fused" for name in presets}


def test_forward_flops_by_hand():
    """F = 2·N·ΣL + 2·n_layers·d·ΣL²: rows of 3 and 5 tokens, N = 10, 2 layers, d = 4."""
    bench = _load("bench_teacher")
    model = {"matmul_params": 10, "layers": 2, "hidden": 4}
    assert bench.forward_flops(3 + 5, 9 + 25, model) == 2 * 10 * 8 + 2 * 2 * 4 * 34


def test_worker_passes_from_title_samples():
    """Two compute_log_prob runs separated by other tasks: each is one pass with the RSS before, its peak and the
    RSS after; another worker with fewer runs is ignored."""
    bench = _load("bench_teacher")
    sampler = bench.WorkerSampler()
    idle, task = "ray::WorkerDict", "ray::WorkerDict.actor_rollout_compute_log_prob"
    sampler.samples = {
        1: [(idle, 100), (task, 150), (task, 170), (idle, 120), ("ray::WorkerDict.actor_rollout_update_actor", 300),
            (idle, 130), (task, 140), (idle, 135)],
        2: [(idle, 10), (task, 20), (idle, 10)],
    }
    passes = sampler.passes()
    assert passes == [
        {"rss_before": 100, "rss_peak": 170, "rss_after": 120},
        {"rss_before": 130, "rss_peak": 140, "rss_after": 135},
    ]



DRIVER_PARTS = ("rows", "select", "decode", "contexts", "batch", "forward", "outputs", "metrics")


def test_bench_driver_tiny_reports_every_field(tmp_path):
    """CI's bench_driver --tiny: exits 0 and prints and writes every part TeacherStep.run times
    (timing_s/teacher/<part>), the driver total and CPU seconds, the step's facts and the labelled projection for
    both backbones (guards a renamed or dropped part of run() and the script's reading of its metrics)."""
    out = tmp_path / "driver.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_driver.py"), "--tiny", "--work-dir", str(tmp_path / "work"),
         "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert tuple(data["parts_s"]) == DRIVER_PARTS
    assert {"driver_s", "run_cpu_s", "fake_forward", "driver_cpu_s"} <= set(data)
    assert set(data["projection"]["backbones"]) == {"Qwen3-4B", "Qwen3-8B"}
    assert data["step"]["scored_rows"] > 0 and data["step"]["contexts"]["sibling"] > 0
    for text in (*DRIVER_PARTS, "driver total", "driver CPU s", "PROJECTION, not measured", "Qwen3-4B", "Qwen3-8B",
                 *(f"{key}=" for key in data["step"])):
        assert text in result.stdout, text


TOPK_ROW_FIELDS = ("lr", "overlap", "loss_rel", "grad_rel", "grad_rel_fp32")
TOPK_COST_FIELDS = ("exact_s", "exact_min_s", "shipped_s", "shipped_min_s", "select_pass_s", "select_pass_min_s",
                    "shipped_ratio", "shipped_min_ratio", "select_pass_ratio", "select_pass_min_ratio",
                    "bytes_per_token", "gb_per_step")


def _numbers(value):
    """Every number inside a JSON value (nested dicts and lists included)."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_bench_topk_tiny_reports_every_field(tmp_path):
    """CI's bench_topk --tiny: exits 0, prints and writes every figure (finite) for every lr of the sweep and the step
    time of all three paths (exact; as shipped, top-K in the old-log-prob pass; our first version's separate select
    pass); at θ_old (mini-batch 1) the exact live-top-K gradient equals the stored-ids one with fp32 values, and the
    separate select pass picks the same ids as the old-log-prob pass — guards the stored path drifting from SDPO's
    exact one (other ids, another teacher row, a different loss) where they must coincide, and either (b) variant's
    timing dropping out of the report."""
    out = tmp_path / "topk.json"
    lrs = ("1e-06", "0.001")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_topk.py"), "--tiny", "--lrs", *lrs, "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert all(math.isfinite(n) for n in _numbers(data))
    support, cost = data["support"], data["cost"]
    assert [row["lr"] for row in support["lrs"]] == [float(lr) for lr in lrs]
    for row in support["lrs"]:
        assert tuple(row) == TOPK_ROW_FIELDS
        assert 0.0 <= row["overlap"] <= 1.0
    assert support["mb1_grad_rel_diff_fp32"] < 1e-5
    assert support["select_ids_same"] == 1.0
    assert 0.0 < support["mb1_grad_rel_diff_bf16"] < 1e-1  # bf16 rounding of the stored values, and nothing else
    assert cost["bytes_per_token"] == 6 * data["k"] + 12
    assert set(TOPK_COST_FIELDS) <= set(cost)
    assert all(cost[name] > 0 for name in TOPK_COST_FIELDS if name.endswith("_s"))
    for text in ("mb1_grad_rel_diff_fp32", "mb1_grad_rel_diff_bf16", "select_ids_same", "entropy", "top-K mass",
                 *TOPK_ROW_FIELDS[1:], "exact_s", "shipped_s", "select_pass_s", "shipped_ratio", "select_pass_ratio",
                 "(b) as shipped: top-K in the old-log-prob pass",
                 "(b) with a separate select pass (our first version, not shipped)",
                 "stored bytes per response token", "20480 tokens"):
        assert text in result.stdout, text
