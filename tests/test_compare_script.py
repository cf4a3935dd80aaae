"""scripts/compare_methods_cpu.sh's calls, pinned without running them: a stub interpreter records its arguments.

The exploration experiment's documented settings (docs/toy_comparison.md, "Exploration") are these lines; a change
to the script that would make a rerun differ from the published figures fails here first.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUB = "#!/usr/bin/env bash\nprintf '%s\\037' \"$@\" >> \"$STUB_LOG\"\necho >> \"$STUB_LOG\"\n"


def calls(tmp_path: Path, *args: str, built: bool = True, **env: str) -> list[list[str]]:
    """Every interpreter call of ``compare_methods_cpu.sh *args`` (warm start, launches, report), as argument lists;
    ``built``: the model and data exist already, so no warm start runs."""
    model, data = tmp_path / "model", tmp_path / "data"
    if built:
        for path in (model / "warm_start.txt", data / "train.parquet", data / "heldout.parquet"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    stub, log = tmp_path / "python", tmp_path / "calls.log"
    stub.write_text(STUB)
    stub.chmod(0o755)
    subprocess.run(["bash", str(ROOT / "scripts" / "compare_methods_cpu.sh"), *args], check=True, capture_output=True,
                   timeout=120, env={**os.environ, "PYTHON": str(stub), "STUB_LOG": str(log), "OUT": str(tmp_path / "out"),
                                     "MODEL_DIR": str(model), "DATA_DIR": str(data), **env})
    return [line.rstrip("\037").split("\037") for line in log.read_text().splitlines()]


def launches(all_calls: list[list[str]]) -> list[dict[str, str]]:
    """The main_ppo calls as {override key: value}."""
    return [dict(arg.split("=", 1) for arg in call if "=" in arg) for call in all_calls
            if call[:2] == ["-m", "verl.trainer.main_ppo"]]


def test_the_exploration_experiment_as_published(tmp_path):
    """TASK=explore: 5 seeds × GRPO, RLSD, RLRT, 50 steps × 4 prompts × 8 rollouts at lr 1e-4, 24 response tokens,
    every held-out problem sampled 64 times at T = 1 after the last step; RLSD's λ decays over 12 steps, RLRT has
    no fallback teacher; then the report over all 15 runs."""
    all_calls = calls(tmp_path, TASK="explore")
    runs = launches(all_calls)
    assert [(run["algorithm.adv_estimator"], run["data.seed"]) for run in runs] == \
        [(method, str(seed)) for seed in range(1, 6) for method in ("grpo", "rlsd", "rlrt")]
    for run in runs:
        assert run["actor_rollout_ref.actor.optim.lr"] == "1e-4" and run["trainer.total_training_steps"] == "50"
        assert (run["data.train_batch_size"], run["actor_rollout_ref.rollout.n"]) == ("4", "8")
        assert (run["data.max_prompt_length"], run["data.max_response_length"]) == ("64", "24")
        assert run["actor_rollout_ref.rollout.val_kwargs.n"] == "64"
        assert run["actor_rollout_ref.rollout.val_kwargs.temperature"] == "1.0"
        assert run["actor_rollout_ref.rollout.val_kwargs.do_sample"] == "true"
        assert (run["trainer.test_freq"], run["trainer.val_before_train"]) == ("50", "false")
        assert run["reward.custom_reward_function.path"] == str(ROOT / "examples" / "rlrt_explore" / "reward.py")
        assert run["actor_rollout_ref.rollout.seed"] == run["data.seed"]
        method, seed = run["algorithm.adv_estimator"], run["data.seed"]
        assert run["trainer.validation_data_dir"] == str(tmp_path / "out" / "runs" / method / f"seed{seed}" / "val")
        assert run["trainer.v1.trainer_mode"] == ("sync" if method == "grpo" else "rlrt_sync")
        assert run.get("++rlrt.lambda_decay_steps") == ("12" if method == "rlsd" else None)
        assert run.get("rlrt.sibling_fallback") == ("none" if method == "rlrt" else None)
    report = all_calls[-1]
    assert report[0] == str(ROOT / "examples" / "rlrt_explore" / "report.py")
    assert report.count("--run") == 15 and f"rlrt={tmp_path / 'out' / 'runs' / 'rlrt' / 'seed5'}" in report


def test_the_toy_comparison_is_unchanged(tmp_path):
    """The default task: GRPO, RLSD, RLRT, OPSD, one seed of 12 steps × 4 prompts × 8 rollouts at lr 1e-3 with the
    math-verify reward, no validation; then the toy's report."""
    all_calls = calls(tmp_path)
    runs = launches(all_calls)
    assert [run["algorithm.adv_estimator"] for run in runs] == ["grpo", "rlsd", "rlrt", "opsd"]
    for run in runs:
        assert run["actor_rollout_ref.actor.optim.lr"] == "1e-3" and run["trainer.total_training_steps"] == "12"
        assert run["reward.custom_reward_function.path"] == "pkg://rlrt_recipe.reward"
        assert "actor_rollout_ref.rollout.val_kwargs.n" not in run and "data.max_response_length" not in run
    assert all_calls[-1][0] == str(ROOT / "scripts" / "toy_report.py") and all_calls[-1][-2:] == ["--last", "3"]


@pytest.mark.parametrize("task, warm_start", [
    ("explore", ["-m", "rlrt_explore", "--heldout-problems", "4", "--steps", "60"]),
    ("toy", [str(ROOT / "scripts" / "warm_start.py"), "--steps", "150"]),
])
def test_quick_mode_builds_a_short_warm_start_when_none_exists(tmp_path, task, warm_start):
    """--quick without a model: the task's short warm start first (with its data), then 2-step launches."""
    all_calls = calls(tmp_path, "--quick", built=False, TASK=task)
    assert all(arg in all_calls[0] for arg in warm_start)
    assert all_calls[0][all_calls[0].index("--out") + 1] == str(tmp_path / "model")
    assert {run["trainer.total_training_steps"] for run in launches(all_calls)} == {"2"}
