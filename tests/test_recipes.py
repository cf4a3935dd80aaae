"""The RLRT-paper recipes: every method × backbone pair composed on verl's ppo_trainer and validated.

All pairs are composed in this one process with Hydra's compose API (the CLI path is checked once, through the
scripts' --dry-run, which runs `main_ppo --cfg job`). Expected values are written out here from
docs/methods.md, not read from the package, so a drift on either side fails.
"""

from __future__ import annotations

import copy
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
PRIMARY = "rlrt_paper"

# method: (adv_estimator, teacher trainer, lr, norm_adv_by_std_in_grpo, entropy_coeff, loss_mode, distill_loss_coef)
# RLRT Table 5: lr 1e-6 for GRPO, RLSD, RLRT; std normalisation off for GRPO, on for RLSD and RLRT. opsd (RLSD's
# baseline) keeps RLSD's lr 1e-5; the methods in neither paper follow GRPO or the primary recipe.
METHODS = {
    "grpo": ("grpo", False, 1e-6, False, 0.0, "vanilla", 0.0),
    "entropy_bonus": ("grpo", False, 1e-6, False, 0.001, "vanilla", 0.0),
    "rlsd": ("rlsd", True, 1e-6, True, 0.0, "vanilla", 0.0),
    "rlrt": ("rlrt", True, 1e-6, True, 0.0, "vanilla", 0.0),
    "rlrt_all": ("rlrt", True, 1e-6, True, 0.0, "vanilla", 0.0),
    "rlrt_teacher_up": ("rlrt", True, 1e-6, True, 0.0, "vanilla", 0.0),
    "opsd": ("opsd", True, 1e-5, True, 0.0, "vanilla", 0.0),
    "grpo_opsd": ("grpo_opsd", True, 1e-6, True, 0.0, "vanilla", 0.0),
    "grpo_opsd_loss": ("grpo", True, 1e-6, True, 0.0, "self_distill", 0.1),
    "grpo_eb": ("grpo_eb", False, 1e-6, False, 0.0, "vanilla", 0.0),  # std off: ours, as GRPO
    # RLRT Table 5: SDPO lr 1e-5 (its advantage is unused: the primary's std setting stays), SRPO 5e-6, std off
    "sdpo": ("grpo", True, 1e-5, True, 0.0, "sdpo", 0.0),
    "srpo": ("grpo", True, 5e-6, False, 0.0, "srpo", 0.0),
    # the token-weight family's presets: RLSD with the official code's negative_only, CAST's boxes on mixed groups,
    # AntiSD's additive term (their recipes cite each value)
    "rlsd_negative": ("rlsd", True, 1e-6, True, 0.0, "vanilla", 0.0),
    "cast": ("rlsd", True, 1e-6, True, 0.0, "vanilla", 0.0),
    "antisd": ("grpo_opsd", True, 1e-6, True, 0.0, "vanilla", 0.0),
}
# method: (correct_box, incorrect_box, additive), the family settings the presets add
FAMILY = {"cast": ([0.8, 1.05], [0.95, 1.2], None), "antisd": (None, None, "antisd"),
          "grpo_opsd": (None, None, "delta")}
# The top-K losses (every method checks RLRT Table 5's top-100 and α 0.5, SDPO's cap 2 and SRPO's own β 1, the defaults)
TOPK = ("sdpo", "srpo")
# method: (eb_alpha, eb_kappa), Cheng et al.'s values; rlrt_sync passes the entropy, no teacher step
ENTROPY_BONUS = {"grpo_eb": (0.4, 2.0)}
# backbone: (model path, backbone_kind, chat template kwargs, max_position_embeddings of the model)
BACKBONES = {
    "qwen3_4b_base": ("Qwen/Qwen3-4B-Base", "base", {}, 32768),
    "qwen3_8b_base": ("Qwen/Qwen3-8B-Base", "base", {}, 32768),
    "qwen3_4b_instruct_2507": ("Qwen/Qwen3-4B-Instruct-2507", "instruct", {}, 262144),
    "qwen3_8b": ("Qwen/Qwen3-8B", "thinking", {"enable_thinking": False}, 40960),
}
PROMPT, RESPONSE = 2048, 20480  # RLRT Table 5
RLRT_EPS_W = {"base": 1.0, "instruct": 0.5, "thinking": 0.2}  # RLRT Table 5
# RLRT Table 5: RLRT's λ does not decay on base backbones, decays over 30 steps on instruct and thinking
RLRT_LAMBDA = {"base": ("constant", None), "instruct": ("linear_decay", 30), "thinking": ("linear_decay", 30)}
# method: (direction, gate); None = the method has no token weight
WEIGHTS = {"rlsd": (1, "all"), "rlrt": (-1, "correct"), "rlrt_all": (-1, "all"), "rlrt_teacher_up": (1, "correct"),
           "rlsd_negative": (1, "negative"), "cast": (1, "mixed")}
PAIRS = [(m, b) for m in METHODS for b in BACKBONES]


@pytest.fixture(scope="module", autouse=True)
def reproduce_dry_run(tmp_path_factory):
    """reproduce_rlrt_table.sh --dry-run for one method, started first so that it runs beside the in-process
    compositions: it composes the training config and, through evaluate.sh --dry-run, the evaluation config
    (both `main_ppo --cfg job`: the CLI path, no Ray). Yields (output dir, Popen)."""
    out = tmp_path_factory.mktemp("dry_run")
    env = {**os.environ, "PYTHON": sys.executable, "METHODS": "rlrt", "BACKBONE": "qwen3_4b_instruct_2507",
           "OUTPUT_DIR": str(out), "DATA_DIR": str(out / "data"), "STEPS": "7"}
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "reproduce_rlrt_table.sh"), "--dry-run", "trainer.n_gpus_per_node=4"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
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


def _compose(*overrides: str, method: str = "grpo", backbone: str = "qwen3_4b_base"):
    return compose(config_name=PRIMARY, overrides=[f"method={method}", f"backbone={backbone}", *overrides])


@pytest.fixture(scope="module")
def composed(hydra_ctx):
    """{(method, backbone): config} for every pair, composed once."""
    return {(m, b): _compose(method=m, backbone=b) for m, b in PAIRS}


def _changed(cfg, updates: dict):
    """A copy of a composed config with existing dotted keys set, as a command-line override would."""
    cfg = copy.deepcopy(cfg)
    for key, value in updates.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


@pytest.mark.parametrize("method, backbone", PAIRS)
def test_pair_composes_and_validates(composed, method, backbone):
    """Each pair, composed, carries RLRT Table 5's settings (or the method's own, where noted) through the rlrt:
    dataclass, verl's actor dataclass and the trainer's own config check."""
    cfg = composed[(method, backbone)]
    estimator, teacher, lr, norm_by_std, entropy_coeff, loss_mode, distill_loss_coef = METHODS[method]
    model_path, kind, chat_kwargs, max_positions = BACKBONES[backbone]

    rlrt = load_rlrt_config(cfg)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    check_config(cfg)

    assert cfg.algorithm.adv_estimator == estimator
    assert cfg.trainer.v1.trainer_mode == ("rlrt_sync" if teacher or method in ENTROPY_BONUS else "sync")
    assert (rlrt.eb_alpha, rlrt.eb_kappa) == ENTROPY_BONUS.get(method, (0.4, 2.0))
    assert rlrt.needs_teacher(estimator, loss_mode) == teacher
    assert (rlrt.distill_topk, rlrt.distill_jsd_alpha, rlrt.distill_is_cap, rlrt.srpo_beta) == (100, 0.5, 2.0, 1.0)
    assert rlrt.backbone_kind == kind
    if method in WEIGHTS:
        direction, gate = WEIGHTS[method]
        if estimator == "rlsd":  # RLRT Table 5: ε_w 0.2, λ over 50 steps on every backbone (CAST: its own boxes)
            eps_w, (schedule, decay_steps) = (None if method == "cast" else 0.2), ("linear_decay", 50)
        else:
            eps_w, (schedule, decay_steps) = RLRT_EPS_W[kind], RLRT_LAMBDA[kind]
        assert (rlrt.direction, rlrt.gate, rlrt.eps_w) == (direction, gate, eps_w)
        assert (rlrt.lambda_schedule, rlrt.lambda_0, rlrt.lambda_decay_steps) == (schedule, 0.5, decay_steps)
    else:
        assert (rlrt.direction, rlrt.gate, rlrt.eps_w, rlrt.lambda_schedule, rlrt.lambda_0) == (None,) * 5
    assert (rlrt.correct_box, rlrt.incorrect_box, rlrt.additive) == FAMILY.get(method, (None, None, None))
    assert rlrt.lambda_warmup_steps is None
    assert rlrt.distill_loss_coef == distill_loss_coef
    assert actor.policy_loss.loss_mode == loss_mode
    # RLSD's teacher: a snapshot synchronised every 10 steps (RLSD Sec. 5.1); SDPO's and SRPO's the frozen θ₀
    # (RLRT Table 5); the others: the live actor
    teacher_of = {"rlsd": "snapshot", "rlsd_negative": "snapshot", "cast": "snapshot", "sdpo": "frozen", "srpo": "frozen"}
    assert (rlrt.teacher, rlrt.teacher_sync_steps) == (teacher_of.get(method, "live"), 10)
    if estimator == "rlrt" or method in (*TOPK, "antisd"):  # c = another correct rollout; none: no teacher (PAPERS.md)
        assert (rlrt.context, rlrt.sibling_fallback) == ("rollout", "none")
    # ours: teacher rows fit the model (the trainer refuses to start otherwise)
    assert rlrt.max_privileged_prompt_length == max_positions - RESPONSE

    # RLRT Table 5, every method
    assert actor.optim.lr == lr
    assert (actor.optim.lr_warmup_steps, actor.optim.weight_decay, actor.grad_clip) == (10, 0.01, 1.0)
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.clip_ratio_c) == (0.2, 0.28, 3.0)
    assert actor.loss_agg_mode == "token-mean"
    assert cfg.algorithm.norm_adv_by_std_in_grpo == norm_by_std
    assert actor.entropy_coeff == entropy_coeff
    assert not actor.use_kl_loss and not cfg.algorithm.use_kl_in_reward
    correction = cfg.algorithm.rollout_correction
    assert (correction.rollout_is, correction.rollout_is_threshold, correction.bypass_mode) == ("token", 2.0, False)
    assert (cfg.data.train_batch_size, actor.ppo_mini_batch_size, actor.ppo_epochs) == (256, 128, 1)
    assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (PROMPT, RESPONSE)
    assert actor.use_dynamic_bsz and actor.ppo_max_token_len_per_gpu >= PROMPT + RESPONSE

    rollout = cfg.actor_rollout_ref.rollout
    assert (rollout.name, rollout.n, rollout.temperature, rollout.calculate_log_probs) == ("vllm", 8, 1.0, True)
    val = rollout.val_kwargs  # RLRT "Evaluation"
    assert (val.n, val.do_sample, val.temperature, val.top_p, val.top_k) == (16, True, 0.7, 0.8, 20)
    assert cfg.actor_rollout_ref.model.path == model_path
    assert OmegaConf.to_container(cfg.data.apply_chat_template_kwargs) == chat_kwargs
    assert cfg.reward.custom_reward_function.path == "pkg://rlrt_recipe.reward"
    assert "file" in cfg.trainer.logger
    # A distinct checkpoint directory per pair: resume_mode=auto never picks up another method's run.
    assert (cfg.trainer.project_name, cfg.trainer.experiment_name) == (f"rlrt_paper_{backbone}", method)


def test_primary_rlrt_block_equals_the_dataclass_defaults():
    """The rlrt: block of the primary recipe lists every RlrtConfig key with its default, so users override
    rlrt.<key> without `+` and a changed default in config.py cannot silently differ from the recipe."""
    block = OmegaConf.to_container(OmegaConf.load(RECIPES / f"{PRIMARY}.yaml").rlrt)
    assert block == dataclasses.asdict(RlrtConfig())


def test_backbones_never_set_eps_w():
    """ε_w follows rlrt.backbone_kind (docs/methods.md); a backbone file pinning it would defeat that."""
    for path in (RECIPES / "backbone").glob("*.yaml"):
        assert "eps_w" not in OmegaConf.load(path).get("rlrt", {}), path.name


def test_group_files_are_the_tested_ones():
    """Every shipped method and backbone file is covered by the pair test above (the RLSD recipe's backbone by
    tests/test_rlsd_recipe.py)."""
    assert {p.stem for p in (RECIPES / "method").glob("*.yaml")} == set(METHODS)
    assert {p.stem for p in (RECIPES / "backbone").glob("*.yaml")} == {*BACKBONES, "qwen3_vl_8b_instruct"}


def test_override_precedence(composed):
    """Command line > group > primary: `_self_` right after ppo_trainer (with `_self_` last, the primary's
    lr 1e-6 would silently beat method=opsd's 1e-5); every rlrt key is overridable without `+`."""
    assert composed[("opsd", "qwen3_4b_base")].actor_rollout_ref.actor.optim.lr == 1e-5
    cfg = _compose("actor_rollout_ref.actor.optim.lr=3e-6", "rlrt.gate=correct", "rlrt.eps_w=0.5", method="rlrt_all")
    assert cfg.actor_rollout_ref.actor.optim.lr == 3e-6
    rlrt = load_rlrt_config(cfg)
    assert (rlrt.gate, rlrt.eps_w) == ("correct", 0.5)


@pytest.mark.parametrize(
    "method, backbone",
    [("rlrt", "qwen3_8b"), ("rlsd", "qwen3_4b_base"), ("grpo_opsd_loss", "qwen3_4b_instruct_2507"),
     ("opsd", "qwen3_8b_base")],
)
def test_cpu_group_composes_after_the_groups(hydra_ctx, method, backbone):
    """`+env=cpu` lands after method and backbone: CPU rollout and tiny lengths whatever the pair."""
    cfg = _compose("+env=cpu", method=method, backbone=backbone)
    omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    check_config(cfg)
    assert cfg.actor_rollout_ref.rollout.name == "hf"
    assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (64, 16)
    assert cfg.algorithm.adv_estimator == METHODS[method][0]
    assert cfg.actor_rollout_ref.model.path == BACKBONES[backbone][0]  # the CPU run overrides it on the command line


def test_cpu_vl_group_is_the_cpu_group_plus_the_image_dataset(hydra_ctx):
    """`+env=cpu_vl` (scripts/run_cpu_demo.sh with VL=1) keeps every env/cpu value and adds what image rows need:
    verl resolves the torchvision-free dataset class from it, and image prompts get a larger budget."""
    from verl.utils.dataset.rl_dataset import get_dataset_class

    from rlrt_recipe.cpu.dataset import TorchvisionFreeRLHFDataset

    cpu, vl = _compose("+env=cpu"), _compose("+env=cpu_vl")
    assert get_dataset_class(vl.data) is TorchvisionFreeRLHFDataset
    assert (vl.data.image_key, vl.data.image_patch_size, vl.data.max_prompt_length) == ("images", None, 128)
    changed = {"custom_cls", "image_patch_size", "max_prompt_length"}
    assert ({k: v for k, v in vl.data.items() if k not in changed}
            == {k: v for k, v in cpu.data.items() if k not in changed})
    assert vl.actor_rollout_ref.rollout.prompt_length == 128  # verl's interpolation of data.max_prompt_length
    for section in ("actor_rollout_ref", "trainer", "ray_kwargs"):
        assert OmegaConf.to_container(vl[section]) == OmegaConf.to_container(cpu[section]), section


@pytest.mark.parametrize(
    "method, updates, key",
    [
        ("rlrt", {"rlrt.teacher": "snapshot"}, "actor_rollout_ref.actor.strategy=fsdp2"),
        ("rlsd", {"algorithm.rollout_correction.bypass_mode": True}, "algorithm.rollout_correction.bypass_mode"),
        ("grpo_eb", {"algorithm.rollout_correction.bypass_mode": True}, "algorithm.rollout_correction.bypass_mode"),
        ("opsd", {"algorithm.filter_groups.enable": True}, "algorithm.filter_groups.enable"),
        ("grpo", {"rlrt.distill_loss_coef": 0.1}, "rlrt.distill_loss_coef"),
        ("grpo_opsd_loss", {"actor_rollout_ref.actor.policy_loss.loss_mode": "vanilla"}, "policy_loss.loss_mode=self_distill"),
        ("rlrt", {"rlrt.teacher": "snapshot", "actor_rollout_ref.model.lora_rank": 8},
         "actor_rollout_ref.model.lora_rank"),  # the FSDP key (review E5)
        ("rlsd", {"rlrt.teacher": "frozen", "actor_rollout_ref.actor.use_dynamic_bsz": False},
         "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu"),
        ("grpo", {"distillation.enabled": True}, "distillation.enabled"),
        ("rlsd", {"distillation.enabled": True}, "distillation.enabled"),
        ("rlrt", {"actor_rollout_ref.rollout.multi_turn.enable": True}, "actor_rollout_ref.rollout.multi_turn.enable"),
        ("opsd", {"actor_rollout_ref.rollout.agent.default_agent_loop": "tool_agent"},
         "actor_rollout_ref.rollout.agent.default_agent_loop"),
        ("sdpo", {"algorithm.adv_estimator": "grpo_eb"}, "algorithm.adv_estimator=grpo"),
        ("srpo", {"actor_rollout_ref.actor.loss_agg_mode": "seq-mean-token-mean"},
         "actor_rollout_ref.actor.loss_agg_mode=token-mean"),
        ("srpo", {"actor_rollout_ref.model.use_fused_kernels": True}, "actor_rollout_ref.model.use_fused_kernels"),
        ("sdpo", {"actor_rollout_ref.ref.ulysses_sequence_parallel_size": 2},
         "actor_rollout_ref.ref.ulysses_sequence_parallel_size"),
        ("sdpo", {"actor_rollout_ref.actor.entropy_coeff": 0.01}, "actor_rollout_ref.actor.entropy_coeff"),
    ],
)
def test_check_config_refusals_name_the_key(composed, method, updates, key):
    """Settings the teacher step cannot serve are refused before any worker starts, naming the key."""
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        check_config(_changed(composed[(method, "qwen3_4b_base")], updates))


def test_rlrt_with_one_rollout_warns_that_there_are_no_siblings(composed, caplog):
    """rollout.n = 1 leaves RLRT without siblings: accepted, with a warning naming the key and the fallback."""
    with caplog.at_level("WARNING", logger="rlrt_recipe"):
        check_config(_changed(composed[("rlrt", "qwen3_4b_base")], {"actor_rollout_ref.rollout.n": 1}))
    assert "actor_rollout_ref.rollout.n=1" in caplog.text and "sibling_fallback" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="rlrt_recipe"):
        check_config(composed[("rlrt", "qwen3_4b_base")])
    assert "rollout.n" not in caplog.text


def test_distillation_loss_mode_with_zero_beta_is_accepted(composed):
    """loss_mode=self_distill with β_loss = 0 (the GRPO+OPSD recipe swept to 0) passes the check; the trainer installs
    the loss function that makes it verl's vanilla loss (test_loss.py)."""
    check_config(_changed(composed[("grpo_opsd_loss", "qwen3_4b_base")], {"rlrt.distill_loss_coef": 0.0}))


def test_weight_key_on_a_method_without_weights_is_refused(composed):
    """rlrt.eps_w on grpo would be silently ignored; the config loader refuses it instead."""
    with pytest.raises(ValueError, match=r"rlrt\.eps_w"):
        load_rlrt_config(_changed(composed[("grpo", "qwen3_4b_base")], {"rlrt.eps_w": 0.5}))


# --- shell scripts -------------------------------------------------------------------------------------------

SCRIPTS = ["evaluate.sh", "reproduce_rlrt_table.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses(script):
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)


def test_reproduce_dry_run_prints_every_command(dry_run_output):
    out, stdout = dry_run_output
    lines = stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "evaluate base_model", "train rlrt", "evaluate rlrt", "table", "curves", "composed configs"]
    assert "trainer.resume_mode=disable" in lines[0]  # the untrained backbone: the tables' base-model row
    assert f"trainer.default_local_dir={out}/rlrt/checkpoints" in lines[1]
    assert f"trainer.resume_from_path={out}/rlrt/checkpoints/global_step_7" in lines[2]
    assert "--backbone qwen3_4b_instruct_2507" in lines[3]
    assert f"--run base_model={out}/base_model/eval --run rlrt={out}/rlrt/eval" in lines[3]
    assert f"--run rlrt={out}/rlrt/train" in lines[4]
    assert not (out / "rlrt" / "checkpoints").exists()  # nothing ran


def _evaluation_config(path: Path):
    """The command line, the pass@k line and the composed config that evaluate.sh --dry-run prints."""
    command, pass_at_k, config = path.read_text().split("\n", 2)
    assert pass_at_k.startswith("pass@k: ")
    return command, pass_at_k, OmegaConf.create(config)


def test_dry_run_composes_through_the_cli(dry_run_output):
    """The CLI path (`main_ppo --cfg job`): the training config, and the evaluation config of evaluate.sh."""
    out, _ = dry_run_output
    train = OmegaConf.create((out / "dry_run" / "rlrt.train.yaml").read_text())
    assert train.algorithm.adv_estimator == "rlrt" and train.trainer.v1.trainer_mode == "rlrt_sync"
    assert train.rlrt.backbone_kind == "instruct" and train.trainer.total_training_steps == 7
    assert train.trainer.n_gpus_per_node == 4
    assert load_rlrt_config(train).eps_w == 0.5

    command, pass_at_k, evaluation = _evaluation_config(out / "dry_run" / "rlrt.eval.txt")
    assert "verl.trainer.main_ppo" in command
    assert evaluation.trainer.val_before_train and evaluation.trainer.val_only
    assert evaluation.trainer.resume_mode == "resume_path"
    assert evaluation.trainer.resume_from_path == f"{out}/rlrt/checkpoints/global_step_7"
    # evaluation needs no teacher: verl's stock trainer whatever trained the checkpoint (ours)
    assert evaluation.trainer.v1.trainer_mode == "sync" and evaluation.algorithm.adv_estimator == "grpo"
    val = evaluation.actor_rollout_ref.rollout.val_kwargs
    assert (val.n, val.do_sample, val.temperature, val.top_p, val.top_k) == (16, True, 0.7, 0.8, 20)
    # RLRT "Evaluation": 38 912 response tokens (the instruct model has 262 144 positions)
    assert (evaluation.data.max_prompt_length, evaluation.data.max_response_length) == (2048, 38912)
    assert len(evaluation.data.val_files) == 6 and evaluation.trainer.n_gpus_per_node == 4
    assert evaluation.trainer.validation_data_dir == f"{out}/rlrt/eval/samples"
    assert f"--dump {out}/rlrt/eval/samples" in pass_at_k and "--k 1 --k 16" in pass_at_k
    _, _, base = _evaluation_config(out / "dry_run" / "base_model.eval.txt")
    assert base.trainer.resume_mode == "disable" and base.actor_rollout_ref.model.path == "Qwen/Qwen3-4B-Instruct-2507"


def _printed_launches(tmp_path, *args, **env) -> list[str]:
    """reproduce_rlrt_table.sh --dry-run with COMPOSE=0: the printed launch lines (no config composed)."""
    full_env = {**os.environ, "PYTHON": sys.executable, "COMPOSE": "0", "OUTPUT_DIR": str(tmp_path),
                "DATA_DIR": str(tmp_path / "data"), **env}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_rlrt_table.sh"), "--dry-run", *args],
                         env=full_env, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.splitlines()


@pytest.mark.parametrize("backbone, methods, response_length", [
    # RLRT Tables 1/3: the methods per backbone; 38 912 response tokens, capped at 32 768 − 2048 on the base models
    ("qwen3_4b_base", ["grpo", "rlsd", "rlrt"], 30720),
    ("qwen3_8b_base", ["grpo", "rlsd", "rlrt"], 30720),
    ("qwen3_4b_instruct_2507", ["grpo", "sdpo", "rlsd", "rlrt"], 38912),
    ("qwen3_8b", ["grpo", "sdpo", "srpo", "rlsd", "rlrt"], 38912),
])
def test_reproduction_runs_each_backbones_method_set(tmp_path, backbone, methods, response_length):
    lines = _printed_launches(tmp_path, BACKBONE=backbone)
    trained = [line.split(":")[0].removeprefix("train ") for line in lines if line.startswith("train ")]
    evaluated = [line.split(":")[0].removeprefix("evaluate ") for line in lines if line.startswith("evaluate ")]
    assert trained == methods and evaluated == ["base_model", *methods]
    assert all(f"data.max_response_length={response_length}" in line for line in lines if line.startswith("evaluate"))
    assert all(f"method={m} backbone={backbone}" in line for m, line in zip(methods, (
        line for line in lines if line.startswith("train "))))


def test_reproduction_ablations_and_exploration(tmp_path):
    """The ablations as options (no gate, teacher-up on correct, the ε_w sweep), and --exploration: Qwen3-8B-Base,
    GRPO, GRPO+EB and RLRT, 256 samples on AIME24 and AIME26, every k of pass@k, the pass@k plot."""
    lines = _printed_launches(tmp_path, BACKBONE="qwen3_4b_instruct_2507", METHODS="rlrt",
                              ABLATIONS="rlrt_all rlrt_teacher_up", EPS_W_SWEEP="0.2 1.0", BASE_ROW="0")
    trained = {line.split(":")[0].removeprefix("train "): line for line in lines if line.startswith("train ")}
    assert list(trained) == ["rlrt", "rlrt_all", "rlrt_teacher_up", "rlrt_eps_w_0.2", "rlrt_eps_w_1.0"]
    assert "method=rlrt_all" in trained["rlrt_all"] and "rlrt.eps_w=1.0" in trained["rlrt_eps_w_1.0"]
    assert "method=rlrt " in trained["rlrt_eps_w_0.2"] and "trainer.experiment_name=rlrt_eps_w_0.2" in trained["rlrt_eps_w_0.2"]

    lines = _printed_launches(tmp_path / "x", "--exploration")
    trained = [line.split(":")[0].removeprefix("train ") for line in lines if line.startswith("train ")]
    assert trained == ["grpo", "grpo_eb", "rlrt"]
    assert all("backbone=qwen3_8b_base" in line for line in lines if line.startswith(("train", "evaluate")))
    evaluations = [line for line in lines if line.startswith("evaluate ")]
    assert len(evaluations) == 3 and all("actor_rollout_ref.rollout.val_kwargs.n=256" in e for e in evaluations)
    assert all("aime24.parquet" in e and "aime26.parquet" in e and "math500" not in e for e in evaluations)
    assert any(line.startswith("pass@k plot: ") and "plot_pass_at_k.py" in line for line in lines)
