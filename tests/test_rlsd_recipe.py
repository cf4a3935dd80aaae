"""The RLSD paper's own comparison (recipes/rlsd_paper.yaml): every method × variant composed on verl's ppo_trainer and
validated, its CPU overlay, and scripts/reproduce_rlsd_table.sh's launches.

Expected values are written out here from ../shared/PAPERS.md (RLSD Sec. 5.1, "The official code departs from the
paper") and the recipe's documented choices, not read from the package, so a drift on either side fails. The CLI path
(`main_ppo --cfg job`) is checked once, through the script's --dry-run, started first so it runs beside the in-process
compositions.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from verl.utils.config import omega_conf_to_dataclass

from rlrt_recipe.config import RlrtConfig, load_rlrt_config
from rlrt_recipe.integration.trainer import check_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
RECIPE = "rlsd_paper"
SCRIPT = ROOT / "scripts" / "reproduce_rlsd_table.sh"

# method: (adv_estimator, policy loss, lr, context, teacher, distill_loss_coef). RLSD Sec. 5.1: lr 1e-6 for GRPO,
# GRPO+OPSD and RLSD, 1e-5 for OPSD and SDPO; OPSD's context the verified trace (extra_info.solution), SDPO's a
# successful rollout of the group (ours: read as a correct rollout of the same group), RLSD's the answer, GRPO+OPSD's
# the OPSD baseline's (ours); RLSD's teacher a snapshot, SDPO's the frozen θ₀ (as built for RLRT), the others' θ_old of
# the step (ours); GRPO+OPSD's β_loss 0.1 (ours: "tuned", not given).
METHODS = {
    "grpo": ("grpo", "vanilla", 1e-6, None, None, 0.0),
    "opsd": ("opsd", "vanilla", 1e-5, "solution", "live", 0.0),
    "sdpo": ("grpo", "sdpo", 1e-5, "rollout", "frozen", 0.0),
    "grpo_opsd_loss": ("grpo", "self_distill", 1e-6, "solution", "live", 0.1),
    "rlsd": ("rlsd", "vanilla", 1e-6, "answer", "snapshot", 0.0),
}
# variant: (loss_agg_mode, teacher sync steps, RLSD's λ decay steps, project). The paper: Eq. 2's seq-mean-token-mean,
# every 10 steps, λ over 50 steps; the official code: a global token mean, every 20, over 60.
VARIANTS = {
    "paper": ("seq-mean-token-mean", 10, 50, "rlsd_paper"),
    "official": ("token-mean", 20, 60, "rlsd_paper_official"),
}
PAIRS = [(m, v) for v in VARIANTS for m in METHODS]
VAL_FILES = ["mmmu_val", "mathvista_testmini", "mathvision_test", "zerobench", "wemath"]


@pytest.fixture(scope="module", autouse=True)
def reproduce_dry_run(tmp_path_factory):
    """reproduce_rlsd_table.sh --dry-run composing GRPO 2× and RLSD under the official variant through the CLI (both
    training configs and, through evaluate.sh --dry-run, both evaluation configs). Yields (output dir, Popen)."""
    out = tmp_path_factory.mktemp("rlsd_dry_run")
    env = {**os.environ, "PYTHON": sys.executable, "METHODS": "grpo_2x rlsd", "VARIANT": "official", "BASE_ROW": "0",
           "OUTPUT_DIR": str(out), "DATA_DIR": str(out / "data")}
    proc = subprocess.Popen(["bash", str(SCRIPT), "--dry-run", "trainer.nnodes=1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield out, proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def dry_run_output(reproduce_dry_run):
    out, proc = reproduce_dry_run
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-4000:]
    return out, stdout


@pytest.fixture(scope="module")
def hydra_ctx():
    with initialize_config_dir(config_dir=str(RECIPES), version_base=None):
        yield


def _compose(*overrides: str, method: str = "rlsd", variant: str = "paper"):
    return compose(config_name=RECIPE, overrides=[f"method={method}", f"rlsd_variant={variant}", *overrides])


@pytest.fixture(scope="module")
def composed(hydra_ctx):
    """{(method, variant): config} for every pair, composed once."""
    return {(m, v): _compose(method=m, variant=v) for m, v in PAIRS}


@pytest.mark.parametrize("method, variant", PAIRS)
def test_pair_composes_and_carries_the_papers_settings(composed, method, variant):
    """Each method under each variant carries RLSD Sec. 5.1's settings (the variant's departures where noted) through
    the rlrt: dataclass, verl's actor dataclass and the trainer's own config check."""
    cfg = composed[(method, variant)]
    estimator, loss_mode, lr, context, teacher, distill_loss_coef = METHODS[method]
    loss_agg_mode, sync_steps, decay_steps, project = VARIANTS[variant]
    rlrt = load_rlrt_config(cfg)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    check_config(cfg)

    assert cfg.algorithm.adv_estimator == estimator and actor.policy_loss.loss_mode == loss_mode
    assert cfg.trainer.v1.trainer_mode == ("sync" if method == "grpo" else "rlrt_sync")
    assert actor.optim.lr == lr
    assert rlrt.distill_loss_coef == distill_loss_coef
    if context is not None:
        assert (rlrt.context, rlrt.teacher) == (context, teacher)
    if method == "sdpo":  # SDPO's code: no loss on a row without another successful rollout
        assert rlrt.sibling_fallback == "none"
    assert rlrt.teacher_sync_steps == sync_steps
    if method == "rlsd":  # RLSD Sec. 5.1: ε_w 0.2, λ 0.5 → 0 linearly over 50 steps (official: 60), every rollout
        assert (rlrt.direction, rlrt.gate, rlrt.eps_w) == (1, "all", 0.2)
        assert (rlrt.lambda_schedule, rlrt.lambda_0, rlrt.lambda_decay_steps) == ("linear_decay", 0.5, decay_steps)
        assert rlrt.lambda_warmup_steps is None
        assert (rlrt.lambda_at(1), rlrt.lambda_at(decay_steps + 1)) == (0.5, 0.0)
    else:
        assert (rlrt.direction, rlrt.gate, rlrt.eps_w, rlrt.lambda_schedule) == (None,) * 4
    # Eq. 2 (paper) or a global token mean (official); SDPO's loss is a token mean under both
    assert actor.loss_agg_mode == ("token-mean" if method == "sdpo" else loss_agg_mode)
    assert cfg.algorithm.norm_adv_by_std_in_grpo  # RLSD Eq. 1, GRPO included

    # RLSD Sec. 5.1, every method
    assert (actor.clip_ratio_low, actor.clip_ratio_high) == (0.2, 0.28)
    assert not actor.use_kl_loss and not cfg.algorithm.use_kl_in_reward and actor.entropy_coeff == 0
    assert (cfg.data.train_batch_size, cfg.data.max_prompt_length, cfg.data.max_response_length) == (256, 4096, 4096)
    rollout = cfg.actor_rollout_ref.rollout
    assert (rollout.n, rollout.temperature) == (8, 1.0)
    assert cfg.trainer.total_training_steps == 200
    assert (cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node) == (4, 8)
    assert cfg.actor_rollout_ref.model.path == "Qwen/Qwen3-VL-8B-Instruct"
    assert cfg.data.train_files == "data/mmfinereason_123k.parquet"
    assert list(cfg.data.val_files) == [f"data/{name}.parquet" for name in VAL_FILES]
    assert (cfg.data.image_key, cfg.data.image_patch_size) == ("images", None)  # Qwen3-VL: the processor's patch size
    assert cfg.reward.custom_reward_function.path == "pkg://rlrt_recipe.reward"
    # ours: no off-policy correction, one update per step (the official config), evaluation as its validation
    assert cfg.algorithm.rollout_correction.rollout_is is None
    assert (actor.ppo_mini_batch_size, actor.ppo_epochs) == (256, 1)
    val = rollout.val_kwargs
    assert (val.n, val.do_sample, val.temperature, val.top_p, val.top_k) == (1, True, 0.7, 0.8, 20)
    # a distinct checkpoint directory per method and variant: resume_mode=auto never picks up another run
    assert (cfg.trainer.project_name, cfg.trainer.experiment_name) == (project, method)


def test_grpo_twice_the_steps(hydra_ctx):
    """"GRPO (2× steps)" (RLSD Fig. 1b): method=grpo for 400 steps, as reproduce_rlsd_table.sh launches it."""
    cfg = _compose("trainer.total_training_steps=400", "trainer.experiment_name=grpo_2x", method="grpo")
    check_config(cfg)
    assert (cfg.trainer.total_training_steps, cfg.algorithm.adv_estimator) == (400, "grpo")
    assert cfg.actor_rollout_ref.actor.optim.lr == 1e-6


def test_rlrt_block_equals_the_dataclass_defaults_but_the_teacher_budget():
    """The rlrt: block lists every RlrtConfig key (overridable without `+`) at its default, except the teacher prompt
    budget the verified traces need (ours, documented in the recipe)."""
    block = OmegaConf.to_container(OmegaConf.load(RECIPES / f"{RECIPE}.yaml").rlrt)
    defaults = dataclasses.asdict(RlrtConfig())
    assert set(block) == set(defaults)
    assert {k: v for k, v in block.items() if v != defaults[k]} == {"max_privileged_prompt_length": 16384}


def test_variant_group_files_are_the_tested_ones():
    """Every variant file is a tested variant; every <variant>_<method> file names a tested pair (a misspelt one would
    silently never apply: the group is optional)."""
    assert {p.stem for p in (RECIPES / "rlsd_variant").glob("*.yaml")} == set(VARIANTS)
    pairs = {f"{v}_{m}" for m, v in PAIRS}
    stems = {p.stem for p in (RECIPES / "rlsd_variant_method").glob("*.yaml")}
    assert stems and stems <= pairs


@pytest.mark.parametrize("method", ["rlsd", "opsd", "grpo"])
def test_cpu_vl_overlay_composes_with_the_recipe(hydra_ctx, method):
    """`+env=cpu_vl` (the VL demo's CPU overlay) lands after every group of the RLSD recipe: CPU rollout, the
    torchvision-free image dataset, tiny lengths and the default teacher budget, the method untouched."""
    from verl.utils.dataset.rl_dataset import get_dataset_class

    from rlrt_recipe.cpu.dataset import TorchvisionFreeRLHFDataset

    cfg = _compose("+env=cpu_vl", method=method)
    omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    check_config(cfg)
    assert get_dataset_class(cfg.data) is TorchvisionFreeRLHFDataset
    assert cfg.actor_rollout_ref.rollout.name == "hf"
    assert (cfg.data.image_key, cfg.data.max_prompt_length, cfg.data.max_response_length) == ("images", 128, 16)
    rlrt = load_rlrt_config(cfg)
    assert cfg.algorithm.adv_estimator == METHODS[method][0]
    assert rlrt.max_privileged_prompt_length == 2 * 128  # the default budget of the tiny lengths
    if method == "rlsd":
        assert (rlrt.teacher, rlrt.context) == ("snapshot", "answer")


# --- scripts/reproduce_rlsd_table.sh ---------------------------------------------------------------------------


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def _printed_launches(tmp_path, *args, **env) -> list[str]:
    """reproduce_rlsd_table.sh --dry-run with COMPOSE=0: the printed launch lines (no config composed)."""
    full_env = {**os.environ, "PYTHON": sys.executable, "COMPOSE": "0", "OUTPUT_DIR": str(tmp_path),
                "DATA_DIR": str(tmp_path / "data"), **env}
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], env=full_env, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.splitlines()


def test_dry_run_prints_every_launch(tmp_path):
    """The default run: the base model's evaluation, then each Table 2 method and GRPO 2×, trained and evaluated at
    its last step, then the table beside Table 2."""
    lines = _printed_launches(tmp_path)
    methods = ["grpo", "grpo_2x", "opsd", "sdpo", "grpo_opsd_loss", "rlsd"]
    expected = ["evaluate base_model"] + [f"{kind} {m}" for m in methods for kind in ("train", "evaluate")]
    assert [line.split(":")[0] for line in lines] == [*expected, "table", "curves", "composed configs"]
    launches = {line.split(":")[0]: line for line in lines}
    for m in methods:
        steps = 400 if m == "grpo_2x" else 200
        train = launches[f"train {m}"]
        assert f"method={'grpo' if m == 'grpo_2x' else m} backbone=qwen3_vl_8b_instruct rlsd_variant=paper" in train
        assert f"trainer.total_training_steps={steps}" in train and f"trainer.experiment_name={m}" in train
        assert f"data.train_files={tmp_path}/data/mmfinereason_123k.parquet" in train
        assert f"trainer.resume_from_path={tmp_path}/{m}/checkpoints/global_step_{steps}" in launches[f"evaluate {m}"]
    assert "trainer.resume_mode=disable" in launches["evaluate base_model"]
    for line in lines:
        if line.startswith("evaluate "):  # RLSD Sec. 5.1: the training lengths; ours: one sample per problem
            assert "--config-name rlsd_paper method=grpo backbone=qwen3_vl_8b_instruct" in line
            assert "data.max_prompt_length=4096 data.max_response_length=4096" in line
            assert "actor_rollout_ref.rollout.val_kwargs.n=1 " in line
            assert all(f"{tmp_path}/data/{name}.parquet" in line for name in VAL_FILES)
    runs = " ".join(f"--run {m}={tmp_path}/{m}/eval" for m in ["base_model", *methods])
    assert f"make_table.py --paper rlsd --n 1 {runs} --out {tmp_path}/table" in launches["table"]


def test_dry_run_variant_and_sdpo(tmp_path):
    """VARIANT=official reaches every training launch; METHODS picks the methods and their order."""
    lines = _printed_launches(tmp_path, VARIANT="official", METHODS="sdpo rlsd", BASE_ROW="0")
    trained = [line for line in lines if line.startswith("train ")]
    assert [line.split(":")[0] for line in trained] == ["train sdpo", "train rlsd"]
    assert all("rlsd_variant=official" in line for line in trained)
    assert f"--run sdpo={tmp_path}/sdpo/eval --run rlsd={tmp_path}/rlsd/eval" in lines[-3]


def test_dry_run_composes_through_the_cli(dry_run_output):
    """The CLI path (`main_ppo --cfg job`, the interpolated `rlsd_variant_method` group included): GRPO 2× trains
    400 steps and RLSD the official code's schedule; evaluate.sh takes the recipe (RECIPE=rlsd_paper) with RLSD's
    lengths, the five benchmarks and one sample per problem."""
    out, stdout = dry_run_output
    assert [line.split(":")[0] for line in stdout.splitlines()] == [
        "train grpo_2x", "evaluate grpo_2x", "train rlsd", "evaluate rlsd", "table", "curves", "composed configs"]
    grpo_2x = OmegaConf.create((out / "dry_run" / "grpo_2x.train.yaml").read_text())
    assert (grpo_2x.trainer.total_training_steps, grpo_2x.algorithm.adv_estimator) == (400, "grpo")
    assert (grpo_2x.trainer.nnodes, grpo_2x.actor_rollout_ref.actor.loss_agg_mode) == (1, "token-mean")
    rlsd = OmegaConf.create((out / "dry_run" / "rlsd.train.yaml").read_text())
    assert rlsd.trainer.v1.trainer_mode == "rlrt_sync" and rlsd.trainer.project_name == "rlsd_paper_official"
    resolved = load_rlrt_config(rlsd)
    assert (resolved.lambda_decay_steps, resolved.teacher_sync_steps, resolved.teacher) == (60, 20, "snapshot")

    command, pass_at_k, config = (out / "dry_run" / "grpo_2x.eval.txt").read_text().split("\n", 2)
    evaluation = OmegaConf.create(config)
    assert "--config-name rlsd_paper" in command and pass_at_k.startswith("pass@k: ")
    assert evaluation.trainer.val_only and evaluation.trainer.resume_mode == "resume_path"
    assert evaluation.trainer.resume_from_path == f"{out}/grpo_2x/checkpoints/global_step_400"
    assert evaluation.trainer.v1.trainer_mode == "sync" and evaluation.algorithm.adv_estimator == "grpo"
    assert (evaluation.data.max_prompt_length, evaluation.data.max_response_length) == (4096, 4096)
    assert list(evaluation.data.val_files) == [f"{out}/data/{name}.parquet" for name in VAL_FILES]
    val = evaluation.actor_rollout_ref.rollout.val_kwargs
    assert (val.n, val.do_sample, val.temperature, val.top_p, val.top_k) == (1, True, 0.7, 0.8, 20)
    assert evaluation.actor_rollout_ref.model.path == "Qwen/Qwen3-VL-8B-Instruct"
    assert not (out / "grpo_2x" / "checkpoints").exists()  # nothing ran
